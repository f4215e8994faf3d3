package wal

import (
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/vfs"
)

// TestRetainedBounded: under interval (an hour, so the ticker never
// fires) and never, the bytes kept for repair stay bounded: the flusher
// fsyncs once maxRetained wait, and no more than a bound stays allocated
// after (issue 17: the largest interval's writes stayed in RSS).
func TestRetainedBounded(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncInterval(time.Hour), FsyncNever} {
		l := mustOpen(t, vfs.NewMem(), "/w", Options{Fsync: policy, SegmentSize: 1 << 30})
		payload := make([]byte, 64<<10)
		for range 5 * maxRetained / len(payload) {
			if _, err := l.Append(payload); err != nil {
				t.Fatal(err)
			}
		}
		if s := l.Stats().Syncs; s < 3 {
			t.Errorf("%v: %d fsyncs for %d MiB written; want one every %d MiB", policy, s, 5*maxRetained>>20, maxRetained>>20)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if c := cap(l.retained); c > 2*maxRetained {
			t.Errorf("%v: %d bytes retained after Close", policy, c)
		}
	}
}

package outbox

import (
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/vfs"
)

// slowSyncFS makes every fsync take d: a real disk's latency, so that
// "appended" and "durable" are far apart in time.
type slowSyncFS struct {
	vfs.FS
	d time.Duration
}

type slowSyncFile struct {
	vfs.File
	d time.Duration
}

func (f slowSyncFile) Sync() error { time.Sleep(f.d); return f.File.Sync() }

func (s slowSyncFS) Create(name string) (vfs.File, error) {
	f, err := s.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return slowSyncFile{f, s.d}, nil
}

func (s slowSyncFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := s.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return slowSyncFile{f, s.d}, nil
}

// TestSyncCrash: appenders on several goroutines each append and Sync,
// then cut the power (CrashClone) at once: what each appended before its
// Sync returned must be in the image. The fsync takes 3 ms, so without
// Sync's wait the image would lack the newest events; the appenders
// share fsyncs (group commit), fewer than one per Sync.
func TestSyncCrash(t *testing.T) {
	mem := vfs.NewMem()
	ff := vfs.NewFaultFS(slowSyncFS{mem, 3 * time.Millisecond})
	x := open(t, ff, Options{SegmentBytes: 4 << 10})
	defer x.Close()
	const workers, rounds = 8, 15
	syncs0 := ff.Count(vfs.OpSync)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				var last uint64
				for j := range 1 + (w+i)%3 {
					seq, ok := x.Append(uint64(w), payload(w*1000+i*10+j))
					if !ok {
						errs <- errors.New("shed")
						return
					}
					last = seq
				}
				if err := x.Sync(); err != nil {
					errs <- err
					return
				}
				img := mem.CrashClone(vfs.CrashOptions{})
				y, err := Open(Options{FS: img, Dir: "ob", Logger: quiet})
				if err != nil {
					errs <- err
					return
				}
				depth := y.Stats().Depth
				y.Close()
				if depth < int64(last)+1 {
					errs <- errors.New("an event appended before Sync returned is not in the crash image")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	syncs := ff.Count(vfs.OpSync) - syncs0
	t.Logf("%d Syncs, %d fsyncs", workers*rounds, syncs)
	if syncs >= workers*rounds {
		t.Fatalf("%d fsyncs for %d Syncs: no group commit", syncs, workers*rounds)
	}
}

// TestSyncNothingPending: a Sync with nothing waiting costs no fsync and
// does not wait.
func TestSyncNothingPending(t *testing.T) {
	ff := vfs.NewFaultFS(vfs.NewMem())
	x := open(t, ff, Options{})
	defer x.Close()
	x.Append(1, payload(1))
	if err := x.Sync(); err != nil {
		t.Fatal(err)
	}
	n := ff.Count(vfs.OpSync)
	start := time.Now()
	for range 1000 {
		if err := x.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if ff.Count(vfs.OpSync) != n {
		t.Fatal("Sync with nothing pending fsynced")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("1000 idle Syncs took %s", d)
	}
}

// TestSyncDiskFails: while fsync fails Sync answers ErrNotDurable (never
// hangs); once the disk recovers the events are written and Sync is nil.
func TestSyncDiskFails(t *testing.T) {
	ff := vfs.NewFaultFS(vfs.NewMem())
	x := open(t, ff, Options{})
	defer x.Close()
	defer x.CloseReader()
	ff.FailAll(vfs.OpSync, errors.New("EIO"))
	x.Append(1, payload(1))
	if err := x.Sync(); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("Sync on a failing disk: %v", err)
	}
	ff.Reset()
	deadline := time.Now().Add(10 * time.Second)
	for x.Sync() != nil {
		if time.Now().After(deadline) {
			t.Fatal("not durable after the disk recovered")
		}
	}
	if r := next(t, x); string(r.Payload) != string(payload(1)) {
		t.Fatalf("record %q", r.Payload)
	}
	x.Close()
	if err := x.Sync(); err != nil {
		t.Fatalf("Sync after Close with everything written: %v", err)
	}
}

package wal

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/fleetd/fleetd/internal/vfs"
)

const benchBatch = 10_000 // entries per Append, as ingest batches them

func benchPayloads(n int) [][]byte {
	rng := rand.New(rand.NewPCG(21, 22))
	out := make([][]byte, n)
	for i := range out {
		es := randomEntries(rng, benchBatch)
		for j := range es {
			es[j].Kind = KindUpdate
		}
		out[i] = AppendUpdates(nil, es)
	}
	return out
}

// BenchmarkAppendGroupCommit: 8 goroutines append 10,000-update batches
// to a real temp dir with FsyncAlways; one op is one batch.
func BenchmarkAppendGroupCommit(b *testing.B) {
	const appenders = 8
	payloads := benchPayloads(appenders)
	l, err := Open(vfs.Default, b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + appenders - 1) / appenders
	for w := range appenders {
		wg.Go(func() {
			for range per {
				if _, err := l.Append(payloads[w]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	st := l.Stats()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	updates := float64(per * appenders * benchBatch)
	b.ReportMetric(updates/b.Elapsed().Seconds(), "updates/s")
	b.ReportMetric(float64(st.Bytes)/updates, "bytes/update")
	b.ReportMetric(float64(st.Records)/float64(st.Groups), "records/fsync")
}

// BenchmarkReplay replays and decodes 1,000,000 updates (100 batches)
// from a real temp dir (page cache warm); one op is the whole log.
func BenchmarkReplay(b *testing.B) {
	payloads := benchPayloads(10)
	dir := b.TempDir()
	l, err := Open(vfs.Default, dir, Options{Fsync: FsyncNever})
	if err != nil {
		b.Fatal(err)
	}
	const batches = 100
	for i := range batches {
		if _, err := l.Append(payloads[i%len(payloads)]); err != nil {
			b.Fatal(err)
		}
	}
	var sum int64
	apply := func(e *Entry) { sum += int64(e.Lat) + int64(len(e.ID)) }
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		err := l.Replay(0, func(_ LSN, _ byte, p []byte) error {
			n++
			return DecodeUpdates(p, apply)
		})
		if err != nil || n != batches {
			b.Fatalf("replayed %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N)*batches*benchBatch/b.Elapsed().Seconds(), "updates/s")
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOpen measures recovery's verification scan of the same log.
func BenchmarkOpen(b *testing.B) {
	payloads := benchPayloads(10)
	dir := b.TempDir()
	l, err := Open(vfs.Default, dir, Options{Fsync: FsyncNever})
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for i := range 100 {
		if _, err := l.Append(payloads[i%len(payloads)]); err != nil {
			b.Fatal(err)
		}
		size += int64(headerSize + len(payloads[i%len(payloads)]))
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		l, err := Open(vfs.Default, dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*100*benchBatch/b.Elapsed().Seconds(), "updates/s")
}

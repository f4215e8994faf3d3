package snapshot

import (
	"math/rand/v2"
	"testing"

	"github.com/fleetd/fleetd/internal/vfs"
	"github.com/fleetd/fleetd/internal/wal"
)

const benchEntries = 1_000_000

// BenchmarkWrite writes a 1,000,000-entry snapshot to a real temp dir
// (fsync, rename and directory fsync included); one op is one snapshot.
func BenchmarkWrite(b *testing.B) {
	es := entries(rand.New(rand.NewPCG(1, 2)), benchEntries)
	d := b.TempDir()
	var info Info
	b.ReportAllocs()
	for b.Loop() {
		w, err := Create(vfs.Default, d, 1)
		if err != nil {
			b.Fatal(err)
		}
		for i := range es {
			if err := w.Add(&es[i]); err != nil {
				b.Fatal(err)
			}
		}
		if info, err = w.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*benchEntries/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(info.Bytes)/benchEntries, "bytes/entry")
}

// BenchmarkLoad loads a 1,000,000-entry snapshot (verification pass and
// delivery pass) from a real temp dir with a warm page cache.
func BenchmarkLoad(b *testing.B) {
	d := b.TempDir()
	w, err := Create(vfs.Default, d, 1)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.AddBatch(entries(rand.New(rand.NewPCG(1, 2)), benchEntries)); err != nil {
		b.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	var sum int64
	b.ReportAllocs()
	for b.Loop() {
		res, err := Load(vfs.Default, d, func(e *wal.Entry) error {
			sum += int64(e.Lat)
			return nil
		})
		if err != nil || res.Count != benchEntries {
			b.Fatalf("Load = %+v, %v", res, err)
		}
	}
	b.ReportMetric(float64(b.N)*benchEntries/b.Elapsed().Seconds(), "entries/s")
}

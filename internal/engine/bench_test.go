package engine

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wal"
)

const benchTrucks = 1_000_000

func benchPass(r *rand.Rand, pass int) []store.Update {
	ups := make([]store.Update, benchTrucks)
	ids := make([]byte, 0, benchTrucks*13)
	for i := range ups {
		start := len(ids)
		ids = fmt.Appendf(ids, "truck-%07d", i)
		ups[i] = store.Update{ID: ids[start:len(ids):len(ids)],
			Position: store.MakePosition(25+r.Float64()*24, -124+r.Float64()*57, int64(1_764_000_000+pass), r.Float64()*100, float64(r.IntN(360)))}
	}
	return ups
}

// BenchmarkRecover measures restart time for a 1M-truck fleet, from a
// snapshot (clean shutdown) and from the WAL alone (a crash before any
// snapshot: two full passes, 2M updates, are replayed), and reports the
// WAL's bytes per update and replay rate.
func BenchmarkRecover(b *testing.B) {
	dir := b.TempDir()
	r := rand.New(rand.NewPCG(1, 1))
	passes := [][]store.Update{benchPass(r, 0), benchPass(r, 1)}
	build := func(sub string, crash bool) string {
		d := filepath.Join(dir, sub)
		e, err := Open(Options{DataDir: d, Logger: quiet, Fsync: wal.FsyncNever, SnapshotEvery: -1})
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range passes {
			for i := 0; i < len(p); i += 10_000 {
				if _, err := e.Apply(p[i : i+10_000]); err != nil {
					b.Fatal(err)
				}
			}
		}
		if crash {
			e.abandon()
		} else {
			e.Close()
		}
		return d
	}
	snapDir, walDir := build("snap", false), build("wal", true)
	walPerUpdate := float64(dirSize(b, filepath.Join(walDir, "wal"))) / float64(2*benchTrucks)
	for _, c := range []struct{ name, dir string }{{"from-snapshot", snapDir}, {"from-wal-2M-updates", walDir}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				start := time.Now()
				e, err := Open(Options{DataDir: c.dir, Logger: quiet, SnapshotEvery: -1})
				if err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				if e.Store().Len() != benchTrucks {
					b.Fatalf("recovered %d trucks", e.Store().Len())
				}
				rep := e.Recovery()
				e.abandon()
				b.ReportMetric(took.Seconds(), "restart_s")
				if rep.ReplayedUpdates > 0 {
					b.ReportMetric(float64(rep.ReplayedUpdates)/took.Seconds(), "replayed_updates/s")
					b.ReportMetric(walPerUpdate, "wal_B/update")
				}
			}
		})
	}
}

func dirSize(b *testing.B, dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			b.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// BenchmarkApplyEncoded8 applies 4,096-update batches as eight stream
// messages' records each, as a cluster node does, under --fsync always on
// the real disk: fsyncs/op says how many fsyncs a batch waits for.
func BenchmarkApplyEncoded8(b *testing.B) {
	e, err := Open(Options{DataDir: b.TempDir(), Logger: quiet, Fsync: wal.FsyncAlways, SnapshotEvery: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	r := rand.New(rand.NewPCG(1, 2))
	batch := randBatch(r, 4096, 100_000, uint32(time.Now().Unix()))
	var entries []wal.Entry
	for i := range batch {
		var en wal.Entry
		en.SetUpdate(&batch[i])
		entries = append(entries, en)
	}
	var buf []byte
	var recs [][]byte
	for i := 0; i < len(entries); i += 512 {
		start := len(buf)
		buf = wal.AppendUpdates(buf, entries[i:i+512])
		recs = append(recs, buf[start:])
	}
	syncs := e.Stats().WAL.Syncs
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.ApplyEncoded(batch, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(e.Stats().WAL.Syncs-syncs)/float64(b.N), "fsyncs/op")
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "updates/s")
}

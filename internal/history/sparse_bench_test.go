package history

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/vfs"
)

// BenchmarkWriteSparse writes buffers of 40,000 points of 40,000 trucks
// (one point each: what a flush holds at a million trucks) to real files:
// the cost of history's first-level runs, per point.
func BenchmarkWriteSparse(b *testing.B) {
	now := time.Unix(1_764_000_000, 0)
	h, err := Open(Options{FS: vfs.Default, Dir: b.TempDir(), Logger: quiet, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	const n = 40000
	ups := make([]fleet.Update, n)
	for i := range ups {
		ups[i] = fleet.Update{ID: fmt.Appendf(nil, "truck-%07d", i*13), Position: fleet.MakePosition(40+float64(i%1000)/1000, -100+float64(i%777)/777, now.Unix()-1800, 50, 90)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for i := range b.N {
		for j := range ups {
			ups[j].TS++
		}
		h.Add(ups)
		if err := h.Write(h.Seal(uint64(i + 1))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "points/s")
	b.ReportMetric(float64(processCPU()-cpu)/float64(n*b.N), "cpu_ns/point")
	b.ReportMetric(float64(h.Stats().DiskBytes)/float64(n*b.N), "disk_B/point") // level 0: Write merges nothing
}

// processCPU is the process's CPU time so far (user and system): on a
// shared machine, CPU per point is steadier than points per second.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMergeSparse merges MergeFanIn first-level runs of 40,000
// points each, of a fleet of 640,000 trucks (about one point a truck in
// the merged run: what a filling hour's first merges hold at a million
// trucks), on real files: the cost of history's first merge tier, per
// point merged. Its output's bytes per point are reported too. Full
// flushes wait for FirstMergeFanIn of them (256 by default: see
// BenchmarkMergeFirst), so it sets that to MergeFanIn.
func BenchmarkMergeSparse(b *testing.B) {
	now := time.Unix(1_764_000_000, 0)
	const n, fleetSize = 40000, 640_000
	ups := make([]fleet.Update, n)
	var cpu time.Duration
	var disk float64
	for i := range b.N {
		b.StopTimer()
		h, err := Open(Options{FS: vfs.Default, Dir: b.TempDir(), Logger: quiet, Now: func() time.Time { return now }, FirstMergeFanIn: DefaultMergeFanIn})
		if err != nil {
			b.Fatal(err)
		}
		writeFlushes(b, h, ups, DefaultMergeFanIn, i*DefaultMergeFanIn, now, func(r, j int) int { return (j*DefaultMergeFanIn + r) * 7919 % fleetSize })
		b.StartTimer()
		c0 := processCPU()
		h.Housekeep()
		cpu += processCPU() - c0
		b.StopTimer()
		st := h.Stats()
		if st.Runs != 1 {
			b.Fatalf("%d runs after the merge, want 1", st.Runs)
		}
		disk = float64(st.DiskBytes) / float64(n*DefaultMergeFanIn)
		h.Close()
		b.StartTimer()
	}
	points := float64(n * DefaultMergeFanIn * b.N)
	b.ReportMetric(points/b.Elapsed().Seconds(), "points/s")
	b.ReportMetric(float64(cpu)/points, "cpu_ns/point")
	b.ReportMetric(disk, "disk_B/point")
}

// BenchmarkTrailFilling looks up one truck's points in an hour being
// filled by a million trucks: 255 flushes of 40,000 points (about 4
// points a truck), each followed by Housekeep's merges, as the engine
// runs them. With the first merge deferred (first=256, the default: 255
// full flushes, none merged yet, the most a lookup meets) and with full
// flushes merged at MergeFanIn as the other tiers are (first=16: 15
// flushes and 15 first-tier runs): what Options.FirstMergeFanIn costs a
// lookup of the current hour. One op is one lookup of a random truck.
func BenchmarkTrailFilling(b *testing.B) {
	for _, first := range []int{DefaultMergeFanIn * DefaultMergeFanIn, DefaultMergeFanIn} {
		b.Run(fmt.Sprintf("first=%d", first), func(b *testing.B) { trailFilling(b, first) })
	}
}

func trailFilling(b *testing.B, first int) {
	now := time.Unix(1_764_000_000, 0)
	const n, fleetSize, flushes = 40000, 1_000_000, 255
	h, err := Open(Options{FS: vfs.Default, Dir: b.TempDir(), Logger: quiet, Now: func() time.Time { return now }, FirstMergeFanIn: first})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	ups := make([]fleet.Update, n)
	for f := range flushes {
		for j := range ups {
			t := (f*n + j) * 7919 % fleetSize
			ups[j] = fleet.Update{ID: fmt.Appendf(ups[j].ID[:0], "truck-%07d", t),
				Position: fleet.MakePosition(40+float64(t%1000)/1000, -100+float64(t%777)/777, now.Unix()-1800+int64(f), float64(t%90), float64(t%360))}
		}
		h.Add(ups)
		if err := h.Write(h.Seal(uint64(f + 1))); err != nil {
			b.Fatal(err)
		}
		h.Housekeep()
	}
	runs := h.Stats().Runs
	from, to := uint32(now.Unix()-3600), uint32(now.Unix())
	var dst []Point
	points := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Appendf(nil, "truck-%07d", i*104729%fleetSize)
		var ans Answer
		if dst, ans, err = h.Trail(id, from, to, dst[:0]); err != nil || ans.Incomplete {
			b.Fatalf("Trail: %v %+v", err, ans)
		}
		points += len(dst)
	}
	b.ReportMetric(float64(runs), "runs")
	b.ReportMetric(float64(points)/float64(b.N), "points/lookup")
}

// BenchmarkMergeFirst merges 256 full flushes of a filling hour (40,000
// points each, of a million trucks: about 10 points a truck once merged)
// the way Housekeep does: with the first merge deferred (first=256, the
// default), one merge of the 256; with full flushes merged at MergeFanIn
// (first=16), the two tiers that replaced, 16 merges of 16 and one of
// their 16 outputs. cpu_ns/point is CPU over the 10.24M points, both
// tiers together.
func BenchmarkMergeFirst(b *testing.B) {
	for _, first := range []int{DefaultMergeFanIn * DefaultMergeFanIn, DefaultMergeFanIn} {
		b.Run(fmt.Sprintf("first=%d", first), func(b *testing.B) { mergeFirst(b, first) })
	}
}

// writeFlushes writes flushes level-0 runs of len(ups) points each, point
// j of flush f from truck truck(f, j), flush f at second f of the half
// hour before now, with LSNs from lsn0+1.
func writeFlushes(b *testing.B, h *History, ups []fleet.Update, flushes, lsn0 int, now time.Time, truck func(f, j int) int) {
	for f := range flushes {
		for j := range ups {
			t := truck(f, j)
			ups[j] = fleet.Update{ID: fmt.Appendf(ups[j].ID[:0], "truck-%07d", t),
				Position: fleet.MakePosition(40+float64(t%1000)/1000, -100+float64(t%777)/777, now.Unix()-1800+int64(f), float64(t%90), float64(t%360))}
		}
		h.Add(ups)
		if err := h.Write(h.Seal(uint64(lsn0 + f + 1))); err != nil {
			b.Fatal(err)
		}
	}
}

func mergeFirst(b *testing.B, first int) {
	now := time.Unix(1_764_000_000, 0)
	const n, fleetSize, flushes = 40000, 1_000_000, 256
	ups := make([]fleet.Update, n)
	var cpu time.Duration
	for i := range b.N {
		b.StopTimer()
		h, err := Open(Options{FS: vfs.Default, Dir: b.TempDir(), Logger: quiet, Now: func() time.Time { return now }, FirstMergeFanIn: first})
		if err != nil {
			b.Fatal(err)
		}
		writeFlushes(b, h, ups, flushes, i*flushes, now, func(f, j int) int { return (f*n + j) * 7919 % fleetSize })
		b.StartTimer()
		c0 := processCPU()
		h.Housekeep()
		cpu += processCPU() - c0
		b.StopTimer()
		if st := h.Stats(); st.Runs != 1 {
			b.Fatalf("%d runs after the merges, want 1", st.Runs)
		}
		h.Close()
		b.StartTimer()
	}
	points := float64(n * flushes * b.N)
	b.ReportMetric(points/b.Elapsed().Seconds(), "points/s")
	b.ReportMetric(float64(cpu)/points, "cpu_ns/point")
}

// BenchmarkAdd is the ingest path's share of history: one op adds a
// batch of 10,000 updates of distinct trucks (the e2e benchmark's batch)
// to the active buffer. Every fourth op the buffer, about BufferBytes
// then, is sealed and written with the timer stopped.
func BenchmarkAdd(b *testing.B) {
	now := time.Unix(1_764_000_000, 0)
	h, err := Open(Options{FS: vfs.NewMem(), Dir: "/h", Logger: quiet, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	const n = 10000
	ups := make([]fleet.Update, n)
	for i := range ups {
		ups[i] = fleet.Update{ID: fmt.Appendf(nil, "truck-%07d", i*13), Position: fleet.MakePosition(40+float64(i%1000)/1000, -100+float64(i%777)/777, now.Unix()-1800, 50, 90)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h.Add(ups)
		if i%4 == 3 {
			b.StopTimer()
			if err := h.Write(h.Seal(uint64(i + 1))); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/point")
}

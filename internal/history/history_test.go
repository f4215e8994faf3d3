package history

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/vfs"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// seeded returns a random source and logs its seed; FLEETD_SEED=n
// replays a failure's seed.
func seeded(t testing.TB) *rand.Rand {
	seed := rand.Uint64()
	if s := os.Getenv("FLEETD_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("FLEETD_SEED: %v", err)
		}
	}
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 7))
}

// model is what was posted: every distinct point per truck.
type model map[string][]Point

func (m model) trail(id string, from, to uint32) []Point {
	var out []Point
	for _, p := range m[id] {
		if p.TS >= from && p.TS <= to {
			out = append(out, p)
		}
	}
	return sortPoints(out)
}

func (m model) within(rg Region, from, to uint32) map[string]Visit {
	out := map[string]Visit{}
	for id, ps := range m {
		var in []Point
		for _, p := range ps {
			if p.TS >= from && p.TS <= to && rg.Contains(p.Lat, p.Lon) {
				in = append(in, p)
			}
		}
		if in = sortPoints(in); len(in) > 0 {
			out[id] = Visit{ID: id, FirstTS: in[0].TS, LastTS: in[len(in)-1].TS, Points: len(in)}
		}
	}
	return out
}

// TestModel posts random fleets with late, duplicated and out-of-order
// points through many flushes, merges and reopenings, and compares every
// query with brute force over what was posted.
func TestModel(t *testing.T) {
	t.Run("merges", func(t *testing.T) { runModel(t, 30*24*time.Hour, 0, 1, nil) })
	// Flushes of at least 25 points are full (fullFlushPoints) and wait
	// for 3 of them (Options.FirstMergeFanIn), the smaller ones for 4 of
	// their tier; merges read the index 16 entries at a time and blocks
	// through 4 KiB buffers (cursorBuffers' floors).
	t.Run("full-flushes", func(t *testing.T) {
		defer func(n int) { mergeReadBytes = n }(mergeReadBytes)
		mergeReadBytes = 1
		runModel(t, 30*24*time.Hour, 0, 1, func(o *Options) { o.BufferBytes, o.FirstMergeFanIn = 100*pointBytes, 3 })
	})
	// A 5-hour retention while the clock moves 2 minutes a round: hours
	// drop out of history as the test goes, and late points arrive older
	// than the retention; answers never hold what is past it.
	t.Run("retention", func(t *testing.T) { runModel(t, 5*time.Hour, 2*time.Minute, 1, nil) })
	// Attributes on one update in 100: most blocks are raw without any
	// (the positions path of flushes and merges), some have them, and
	// merges meet both for one truck.
	t.Run("rare-attributes", func(t *testing.T) { runModel(t, 30*24*time.Hour, 0, 50, nil) })
	// Run writers keep at most three index entries in memory: every run
	// with more moves its index to the side file, in several spills.
	t.Run("spilled-index", func(t *testing.T) {
		defer func(n int) { idxMemMax = n }(idxMemMax)
		idxMemMax = 3 * entrySize
		runModel(t, 30*24*time.Hour, 0, 1, nil)
	})
}

// runModel runs the model test; attributes go with a fifth of the
// updates, divided by attrRarity; opt, if not nil, changes the options.
func runModel(t *testing.T, retention, step time.Duration, attrRarity int, opt func(*Options)) {
	r := seeded(t)
	fs := vfs.NewMem()
	now := time.Unix(1_764_000_000, 0)
	o := Options{FS: fs, Dir: "/h", Logger: quiet, Now: func() time.Time { return now }, Retention: retention, MergeFanIn: 4}
	if opt != nil {
		opt(&o)
	}
	h, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	m := model{}
	const trucks = 60
	pos := make([]fleet.Position, trucks)
	for i := range pos {
		pos[i] = fleet.MakePosition(40+r.Float64(), -74+r.Float64(), now.Unix()-3*3600, 0, 0)
	}
	lsn := uint64(0)
	merged := 0 // merged runs seen, summed over rounds
	for round := range 40 {
		now = now.Add(step)
		var ups []fleet.Update
		for range 200 {
			i := r.IntN(trucks)
			p := &pos[i]
			p.TS += uint32(r.IntN(60))
			if r.IntN(4) > 0 { // moving
				lat, lon := geo.Destination(p.LatDeg(), p.LonDeg(), float64(r.IntN(360)), r.Float64()*800)
				p.Lat, p.Lon, p.Speed, p.Heading = geo.ToFixed(lat), geo.ToFixed(lon), uint16(r.IntN(1200)), uint16(r.IntN(360))
			}
			u := fleet.Update{ID: fmt.Appendf(nil, "truck-%03d", i), Position: *p}
			kind := r.IntN(10)
			if (kind == 1 || kind == 2) && r.IntN(attrRarity) != 0 {
				kind = 3
			}
			switch kind {
			case 0: // late: hours old
				u.TS -= uint32(r.IntN(5 * 3600))
			case 1:
				u.Attrs.Set(fleet.Altitude, int32(r.IntN(90000)))
			case 2: // several attributes, not all
				u.Attrs.Set(fleet.Odometer, int32(r.IntN(1_000_000)))
				u.Attrs.Set(fleet.Satellites, int32(r.IntN(20)))
				if r.IntN(2) == 0 {
					u.Attrs.Set(fleet.Ignition, 1)
				}
			}
			ups = append(ups, u)
			m[string(u.ID)] = append(m[string(u.ID)], Point{Position: u.Position, Attrs: u.Attrs})
			if r.IntN(20) == 0 { // a resend
				ups = append(ups, u)
			}
		}
		lsn++
		h.Add(ups)
		if round%3 == 0 {
			b := h.Seal(lsn)
			if err := writeAll(h, b); err != nil {
				t.Fatal(err)
			}
		}
		if round%13 == 12 { // reopen: what was not written is replayed, as the engine does from the log
			b := h.Seal(lsn)
			h.Close() // the sealed buffer's chunks stay b's: it is never written

			if h, err = Open(o); err != nil {
				t.Fatal(err)
			}
			var replay []fleet.Update
			for i := range b.n {
				p := b.at(i)
				replay = append(replay, fleet.Update{ID: b.id(p), Position: p.Position, Attrs: b.point(p).Attrs})
			}
			h.Add(replay)
			h.Add(replay[:len(replay)/2]) // and some twice
		}
		checkModel(t, r, h, m, round)
		for _, p := range h.partitions() {
			for _, r := range p.runs {
				if r.level > 0 {
					merged++
				}
			}
		}
	}
	// Export, once everything is written, equals the model.
	if err := writeAll(h, h.Seal(lsn)); err != nil {
		t.Fatal(err)
	}
	exported := map[string][]Point{}
	ans, err := h.Export(0, ^uint32(0), func(id []byte, ps []Point) error {
		exported[string(id)] = append(exported[string(id)], ps...)
		return nil
	})
	if err != nil || ans.Incomplete {
		t.Fatalf("Export: %v %+v", err, ans)
	}
	floor := h.retentionCutoff() * 3600
	for id := range m {
		if want := m.trail(id, floor, ^uint32(0)); !slices.Equal(exported[id], want) {
			t.Fatalf("Export of %s: %d points, want %d", id, len(exported[id]), len(want))
		}
	}
	for id := range exported {
		if len(m.trail(id, floor, ^uint32(0))) == 0 {
			t.Fatalf("Export: %s has points, the model none past the retention", id)
		}
	}
	st := h.Stats()
	if st.Runs == 0 || step == 0 && merged == 0 || step > 0 && st.Dropped == 0 {
		t.Fatalf("stats %+v, merged runs seen %d times", st, merged)
	}
	t.Logf("stats %+v, merged runs seen %d times", st, merged)
	h.Close()
}

func checkModel(t *testing.T, r *rand.Rand, h *History, m model, round int) {
	t.Helper()
	floor := h.retentionCutoff() * 3600 // answers hold nothing older than the retention
	for id := range m {
		from := uint32(1_764_000_000 - 9*3600 + r.IntN(9*3600))
		to := from + uint32(r.IntN(6*3600))
		if r.IntN(3) == 0 {
			from, to = 0, ^uint32(0)-1
		}
		got, ans, err := h.Trail([]byte(id), from, to, nil)
		if err != nil || ans.Incomplete {
			t.Fatalf("round %d: Trail(%s): %v %+v", round, id, err, ans)
		}
		if want := m.trail(id, max(from, floor), to); !slices.Equal(got, want) {
			t.Fatalf("round %d: Trail(%s, %d, %d): %d points, want %d", round, id, from, to, len(got), len(want))
		}
	}
	for range 5 {
		lat, lon := 40+r.Float64(), -74+r.Float64()
		rg := CircleRegion(lat, lon, 2000+r.Float64()*20000)
		if r.IntN(2) == 0 {
			rg = BoxRegion(geo.Box{MinLat: lat, MinLon: lon, MaxLat: lat + r.Float64()*0.3, MaxLon: lon + r.Float64()*0.3})
		}
		from := uint32(1_764_000_000 - 9*3600 + r.IntN(9*3600))
		to := from + uint32(r.IntN(3*3600))
		got, ans, err := h.Within(rg, from, to)
		if err != nil || ans.Incomplete {
			t.Fatalf("round %d: Within: %v %+v", round, err, ans)
		}
		want := m.within(rg, max(from, floor), to)
		if len(got) != len(want) {
			t.Fatalf("round %d: Within: %d trucks, want %d", round, len(got), len(want))
		}
		for _, v := range got {
			if want[v.ID] != v {
				t.Fatalf("round %d: Within: %+v, want %+v", round, v, want[v.ID])
			}
		}
	}
}

// TestRetention: partitions older than the retention are dropped whole,
// and points that arrive older than it are dropped at write, counted.
func TestRetention(t *testing.T) {
	fs := vfs.NewMem()
	now := time.Unix(1_764_000_000, 0)
	h, err := Open(Options{FS: fs, Dir: "/h", Logger: quiet, Now: func() time.Time { return now }, Retention: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	at := func(ts int64) []fleet.Update {
		return []fleet.Update{{ID: []byte("a"), Position: fleet.MakePosition(1, 1, ts, 0, 0)}}
	}
	h.Add(at(now.Unix() - 3600))
	h.Add(at(now.Unix() - 5*3600)) // past the retention already
	if err := writeAll(h, h.Seal(1)); err != nil {
		t.Fatal(err)
	}
	got, _, _ := h.Trail([]byte("a"), 0, ^uint32(0), nil)
	if len(got) != 1 || h.Stats().Dropped != 1 {
		t.Fatalf("trail %v, stats %+v", got, h.Stats())
	}
	now = now.Add(3 * time.Hour)
	h.Add(at(now.Unix()))
	if err := writeAll(h, h.Seal(2)); err != nil {
		t.Fatal(err)
	}
	got, _, _ = h.Trail([]byte("a"), 0, ^uint32(0), nil)
	if len(got) != 1 || got[0].TS != uint32(now.Unix()) || h.Stats().Partitions != 1 {
		t.Fatalf("after retention: trail %v, stats %+v", got, h.Stats())
	}
}

// TestConcurrentReads reads trails while one goroutine adds, seals,
// writes and merges: every point added before a read began is in its
// answer (run under -race, this also checks that writes never touch what
// readers scan).
func TestConcurrentReads(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	h, err := Open(Options{FS: vfs.NewMem(), Dir: "/h", Logger: quiet, Now: func() time.Time { return now }, BufferBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var added atomic.Int64 // points of truck "a" added so far
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 3000 {
			ts := now.Unix() - 3*3600 + int64(i*3)
			h.Add([]fleet.Update{
				{ID: []byte("a"), Position: fleet.MakePosition(1, 1+float64(i)*1e-4, ts, 10, 90)},
				{ID: fmt.Appendf(nil, "b%d", i%50), Position: fleet.MakePosition(2, 2, ts, 0, 0)},
			})
			added.Add(1)
			if i%40 == 39 {
				if err := writeAll(h, h.Seal(uint64(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for reads := 0; ; reads++ {
		select {
		case <-done:
			if reads < 10 {
				t.Fatalf("only %d reads overlapped the writes", reads)
			}
			return
		default:
		}
		before := added.Load()
		got, _, err := h.Trail([]byte("a"), 0, ^uint32(0), nil)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) < before {
			t.Fatalf("read %d: %d points of a, %d were added before the read", reads, len(got), before)
		}
		if _, _, err := h.Within(BoxRegion(geo.Box{MinLat: 0, MinLon: 0, MaxLat: 3, MaxLon: 3}), 0, ^uint32(0)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCorruptRun damages one run: the queries that need it say their
// answer is incomplete and the rest keeps serving; Repair moves it to the
// quarantine, after which answers are complete again (without its points).
func TestCorruptRun(t *testing.T) {
	fs := vfs.NewMem()
	now := time.Unix(1_764_000_000, 0)
	o := Options{FS: fs, Dir: "/h", Logger: quiet, Now: func() time.Time { return now }}
	h, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for hour := range 3 {
		var ups []fleet.Update
		for i := range 20 {
			ups = append(ups, fleet.Update{ID: fmt.Appendf(nil, "t%d", i), Position: fleet.MakePosition(45, 7, now.Unix()-int64(3-hour)*3600, 0, 0)})
		}
		h.Add(ups)
		if err := writeAll(h, h.Seal(uint64(hour+1))); err != nil {
			t.Fatal(err)
		}
	}
	h.Close()
	// Flip a byte inside the first block of the oldest hour's run.
	dirs, _ := fs.List("/h")
	slices.Sort(dirs)
	runs, _ := fs.List("/h/" + dirs[0])
	path := "/h/" + dirs[0] + "/" + runs[0]
	b, _ := vfs.ReadFile(fs, path)
	b[headerSize+8] ^= 0xff
	if err := vfs.WriteFile(fs, path, b); err != nil {
		t.Fatal(err)
	}
	h, err = Open(o)
	if err != nil {
		t.Fatal(err)
	}
	// The run's first block (a group of trucks: the run is a filling
	// hour's) is lost: its trucks' answers say so, the others' are whole.
	damaged := 0
	for i := range 20 {
		id := fmt.Sprintf("t%d", i)
		got, ans, err := h.Trail([]byte(id), 0, ^uint32(0), nil)
		switch {
		case err != nil:
			t.Fatal(err)
		case ans.Incomplete && len(got) == 2:
			damaged++
		case ans.Incomplete || len(got) != 3:
			t.Fatalf("%s: %d points, incomplete %v", id, len(got), ans.Incomplete)
		}
	}
	if damaged == 0 || h.Stats().Corrupt == 0 {
		t.Fatalf("the damaged block went unnoticed: %+v", h.Stats())
	}
	if _, ans, _ := h.Within(BoxRegion(geo.Box{MinLat: 44, MinLon: 6, MaxLat: 46, MaxLon: 8}), 0, ^uint32(0)); !ans.Incomplete {
		t.Fatal("Within over the damaged run did not say it is incomplete")
	}
	h.Close()
	rep, err := Repair(fs, "/h")
	if err != nil || len(rep.Quarantined) != 1 || rep.Runs != 3 {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	t.Logf("repair: %+v", rep)
	if h, err = Open(o); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for i := range 20 {
		got, ans, _ := h.Trail(fmt.Appendf(nil, "t%d", i), 0, ^uint32(0), nil)
		if ans.Incomplete || len(got) != 2 {
			t.Fatalf("after repair t%d: %d points, incomplete %v", i, len(got), ans.Incomplete)
		}
	}
}

// TestExportBadIndexHash: an index entry's hash, which no block's
// checksum covers, orders the merge's cursors (they take a block's first
// truck's hash from it): an export over a run whose index fails its
// checksum says it is incomplete, and a merge refuses the run.
func TestExportBadIndexHash(t *testing.T) {
	fs := vfs.NewMem()
	now := time.Unix(1_764_000_000, 0)
	o := Options{FS: fs, Dir: "/h", Logger: quiet, Now: func() time.Time { return now }}
	h, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for r := range 2 {
		var ups []fleet.Update
		for i := range 300 {
			ups = append(ups, fleet.Update{ID: fmt.Appendf(nil, "t%d", i), Position: fleet.MakePosition(45, 7, now.Unix()-1800+int64(r), 0, 0)})
		}
		h.Add(ups)
		if err := writeAll(h, h.Seal(uint64(r+1))); err != nil {
			t.Fatal(err)
		}
	}
	h.Close()
	dirs, _ := fs.List("/h")
	slices.Sort(dirs)
	runs, _ := fs.List("/h/" + dirs[0])
	path := "/h/" + dirs[0] + "/" + runs[0]
	b, _ := vfs.ReadFile(fs, path)
	idxOff := binary.LittleEndian.Uint64(b[len(b)-trailerSize:])
	b[idxOff+entrySize] ^= 0x01 // the second block's hash
	if err := vfs.WriteFile(fs, path, b); err != nil {
		t.Fatal(err)
	}
	if h, err = Open(o); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ans, err := h.Export(0, ^uint32(0), func([]byte, []Point) error { return nil })
	if err != nil || !ans.Incomplete {
		t.Fatalf("export over a run whose index fails its checksum: %+v %v", ans, err)
	}
	p := h.partitions()[0]
	if err := h.merge(p, slices.Clone(p.runs), false); err == nil {
		t.Fatal("merged a run whose index fails its checksum")
	}
}

// TestLateTrickle: late points into a finished hour make small runs that
// the tiered merges fold together; the hour's big run is not rewritten for
// each of them, only once the hour has been quiet for CompactAfter.
func TestLateTrickle(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	h, err := Open(Options{FS: vfs.NewMem(), Dir: "/h", Logger: quiet, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	old := now.Unix() - 5*3600 // an hour long over
	var ups []fleet.Update
	for i := range 2000 {
		ups = append(ups, fleet.Update{ID: fmt.Appendf(nil, "t%d", i), Position: fleet.MakePosition(45, 7, old+int64(i%3000), 0, 0)})
	}
	h.Add(ups)
	if err := writeAll(h, h.Seal(1)); err != nil {
		t.Fatal(err)
	}
	p := h.partitions()[0]
	big := p.runs[0]
	for i := range 20 {
		now = now.Add(time.Minute / 4)
		h.Add([]fleet.Update{{ID: []byte("late"), Position: fleet.MakePosition(45, 7, old+int64(i), 0, 0)}})
		if err := writeAll(h, h.Seal(uint64(2+i))); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(p.runs, big) {
			t.Fatalf("late point %d rewrote the hour's big run", i)
		}
	}
	now = now.Add(CompactAfter)
	h.Housekeep()
	if len(p.runs) != 1 || slices.Contains(p.runs, big) {
		t.Fatalf("after a quiet CompactAfter: %d runs", len(p.runs))
	}
	if got, _, _ := h.Trail([]byte("late"), 0, ^uint32(0), nil); len(got) != 20 {
		t.Fatalf("late points: %d", len(got))
	}
}

// writeAll writes a sealed buffer and housekeeps, as the engine's writer
// and housekeeper do between them.
func writeAll(h *History, b *Sealed) error {
	if err := h.Write(b); err != nil {
		return err
	}
	h.Housekeep()
	return h.SyncCovered()
}

// TestFindManyTrucks looks trucks up in runs larger than the fence's
// stride, in blocks of one truck (a compacted hour) and grouped (a
// filling one): every truck is found with its points, absent ones are
// not.
func TestFindManyTrucks(t *testing.T) {
	// Small runs (fenceStride: smallFenceEvery), then large ones.
	t.Run("solo-small", func(t *testing.T) { findManyTrucks(t, 3*smallFenceEvery+17, true) })
	t.Run("solo", func(t *testing.T) { findManyTrucks(t, smallFenceEvery*smallFenceEvery+3*fenceEvery+17, true) })
	t.Run("grouped", func(t *testing.T) { findManyTrucks(t, 3*fenceEvery+17, false) })
	t.Run("grouped-strides", func(t *testing.T) { findManyTrucks(t, 3*smallFenceEvery*groupPoints+17, false) })
}

func findManyTrucks(t *testing.T, trucks int, compact bool) {
	now := time.Unix(1_764_000_000, 0)
	h, err := Open(Options{FS: vfs.NewMem(), Dir: "/h", Logger: quiet, Now: func() time.Time { return now }, BufferBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for round := range 2 {
		var ups []fleet.Update
		for i := range trucks {
			ups = append(ups, fleet.Update{ID: fmt.Appendf(nil, "t%d", i), Position: fleet.MakePosition(45, 7, now.Unix()-3600+int64(round), float64(i%100), 0)})
		}
		h.Add(ups)
		if err := writeAll(h, h.Seal(uint64(round+1))); err != nil {
			t.Fatal(err)
		}
	}
	if compact {
		if err := h.compact(h.partitions()[0]); err != nil {
			t.Fatal(err)
		}
	}
	if p := h.partitions(); len(p) != 1 || h.compacted(p[0]) != compact || !compact && !p[0].runs[0].grouped() {
		t.Fatalf("set-up: %d partitions, compacted %v", len(p), compact)
	}
	for i := 0; i < trucks; i += 1 + trucks/5000 {
		got, ans, err := h.Trail(fmt.Appendf(nil, "t%d", i), 0, ^uint32(0), nil)
		if err != nil || ans.Incomplete || len(got) != 2 || got[0].Speed != uint16(i%100*10) {
			t.Fatalf("t%d: %v %v %+v", i, err, ans, got)
		}
	}
	for _, id := range []string{"t-1", "nobody", fmt.Sprintf("t%d", trucks)} {
		if got, _, _ := h.Trail([]byte(id), 0, ^uint32(0), nil); len(got) != 0 {
			t.Fatalf("%s: %d points", id, len(got))
		}
	}
}

// TestDiskLimit: over MaxDisk, older partitions are compacted first (an
// hour still being filled shrinks several times), then the oldest dropped
// whole and counted; the newest is kept and stays complete.
func TestDiskLimit(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	h, err := Open(Options{FS: vfs.NewMem(), Dir: "/h", Logger: quiet, Now: func() time.Time { return now }, MaxDisk: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	add := func(ts int64, round int) {
		var ups []fleet.Update
		for i := range 2000 {
			ups = append(ups, fleet.Update{ID: fmt.Appendf(nil, "t%d", i), Position: fleet.MakePosition(45+float64(i)/1e4, 7, ts+int64(round), 0, 0)})
		}
		h.Add(ups)
		if err := h.Write(h.Seal(uint64(round + 1))); err != nil {
			t.Fatal(err)
		}
	}
	for r := range 6 { // an older hour, sparse runs
		add(now.Unix()-2*3600, r)
	}
	for r := range 6 { // the current one
		add(now.Unix()-60, 10+r)
	}
	before := h.Stats()
	if before.Runs < 10 {
		t.Fatalf("set-up: %+v", before)
	}
	limit := before.DiskBytes - 1
	h.o.MaxDisk = limit
	h.Housekeep()
	after := h.Stats()
	t.Logf("before %d bytes in %d runs, after %d bytes in %d runs, %d points dropped", before.DiskBytes, before.Runs, after.DiskBytes, after.Runs, after.Dropped)
	if after.DiskBytes > limit && after.Partitions > 1 {
		t.Fatalf("still over the limit with %d partitions: %+v", after.Partitions, after)
	}
	// Tighter: compacted, it is still over, so the oldest hour goes.
	h.o.MaxDisk = after.DiskBytes - 1
	h.Housekeep()
	if st := h.Stats(); st.Partitions != 1 || st.Dropped != 6*2000 {
		t.Fatalf("at a tighter limit: %+v", st)
	}
	for i := range 2000 {
		got, _, _ := h.Trail(fmt.Appendf(nil, "t%d", i), 0, ^uint32(0), nil)
		if len(got) != 6 || got[0].TS < uint32(now.Unix()-600) {
			t.Fatalf("t%d: %d points, want the newest hour's 6", i, len(got))
		}
	}
}

// TestLegacyRun: a version 1 run (one truck per block, the legacy
// columns: what fleetd wrote before grouped runs) is read, and compaction
// rewrites it with the hour's newer runs into the current layout.
func TestLegacyRun(t *testing.T) {
	fs := vfs.NewMem()
	now := time.Unix(1_764_000_000, 0)
	hour := uint32(now.Unix()/3600) - 3
	dir := "/h/" + hourName(hour)
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := createRun(fs, dir+"/"+runName(0, 0), hour, 1, layoutLegacy)
	if err != nil {
		t.Fatal(err)
	}
	var ids [][]byte
	for i := range 50 {
		ids = append(ids, fmt.Appendf(nil, "t%d", i))
	}
	slices.SortFunc(ids, func(a, b []byte) int { return cmp.Or(cmp.Compare(idHash(a), idHash(b)), bytes.Compare(a, b)) })
	want := map[string][]Point{}
	for i, id := range ids {
		var ps []Point
		for k := range 3 + i%5 {
			p := Point{Position: fleet.MakePosition(45+float64(k)*1e-3, 7+float64(i)*1e-3, int64(hour)*3600+int64(k*30), float64(10*k), 90)}
			if k%2 == 0 {
				p.Attrs.Set(fleet.Altitude, int32(100*k))
			}
			ps = append(ps, p)
		}
		if err := w.Add(id, ps); err != nil {
			t.Fatal(err)
		}
		want[string(id)] = ps
	}
	if _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	h, err := Open(Options{FS: fs, Dir: "/h", Logger: quiet, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	check := func(stage string) {
		t.Helper()
		for id, ps := range want {
			got, ans, err := h.Trail([]byte(id), 0, ^uint32(0), nil)
			if err != nil || ans.Incomplete || !slices.Equal(got, ps) {
				t.Fatalf("%s: %s: %v %v\n got %+v\nwant %+v", stage, id, err, ans, got, ps)
			}
		}
	}
	check("legacy run")
	late := fleet.Update{ID: []byte("t7"), Position: fleet.MakePosition(46, 8, int64(hour)*3600+3000, 0, 0)}
	h.Add([]fleet.Update{late})
	if err := writeAll(h, h.Seal(2)); err != nil {
		t.Fatal(err)
	}
	want["t7"] = append(want["t7"], Point{Position: late.Position})
	check("legacy and raw runs")
	if err := h.compact(h.partitions()[0]); err != nil {
		t.Fatal(err)
	}
	if p := h.partitions()[0]; len(p.runs) != 1 || p.runs[0].version != versionSolo {
		t.Fatalf("compacted into %d runs, version %d", len(p.runs), p.runs[0].version)
	}
	check("compacted")
}

// TestCoveredMark: the covered mark's two slots are written in turn; the
// mark read back is the larger valid one (a torn slot loses only itself),
// an older fleetd's decimal mark is read and replaced, and after a power
// cut the mark is at least what SyncCovered made durable.
func TestCoveredMark(t *testing.T) {
	two := appendCoverSlot(appendCoverSlot(nil, 5), 7)
	torn := slices.Clone(two)
	torn[coverSlot+9] ^= 0x10
	for _, c := range []struct {
		b    []byte
		want uint64
		err  bool
	}{
		{[]byte("123\n"), 123, false},
		{two, 7, false},
		{torn, 5, false},
		{appendCoverSlot(nil, 9), 9, false},
		{append(slices.Clone(torn[:coverSlot+4]), 'x'), 5, false},
		{func() []byte { b := slices.Clone(torn); b[3] ^= 1; return b }(), 0, true},
		{[]byte(""), 0, true},
		{[]byte("12x\n"), 0, true},
	} {
		v, err := parseCovered(c.b)
		if v != c.want || (err != nil) != c.err {
			t.Errorf("parseCovered(%q) = %d, %v; want %d, error %v", c.b, v, err, c.want, c.err)
		}
	}

	fs := vfs.NewMem()
	now := time.Unix(1_764_000_000, 0)
	o := Options{FS: fs, Dir: "/h", Logger: quiet, Now: func() time.Time { return now }}
	if err := fs.MkdirAll("/h", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := vfs.WriteFile(fs, "/h/"+coveredFile, []byte("41\n")); err != nil {
		t.Fatal(err)
	}
	h, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if h.Covered() != 41 {
		t.Fatalf("older mark read as %d, want 41", h.Covered())
	}
	write := func(lsn uint64) {
		t.Helper()
		h.Add([]fleet.Update{{ID: []byte("t1"), Position: fleet.MakePosition(45, 7, now.Unix()-int64(lsn), 0, 0)}})
		if err := h.Write(h.Seal(lsn)); err != nil {
			t.Fatal(err)
		}
	}
	for lsn := uint64(50); lsn < 55; lsn++ {
		write(lsn)
		if lsn == 52 {
			if err := h.SyncCovered(); err != nil {
				t.Fatal(err)
			}
		}
	}
	crashed := fs.CrashClone(vfs.CrashOptions{})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := vfs.ReadFile(fs, "/h/"+coveredFile)
	if len(b) != 2*coverSlot {
		t.Fatalf("the mark's file is %d bytes, want %d", len(b), 2*coverSlot)
	}
	if h, err = Open(o); err != nil {
		t.Fatal(err)
	}
	if h.Covered() != 54 || h.DurableCovered() != 54 {
		t.Fatalf("reopened at %d (durable %d), want 54", h.Covered(), h.DurableCovered())
	}
	h.Close()
	o.FS = crashed
	if h, err = Open(o); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if v := h.Covered(); v < 52 || v > 54 {
		t.Fatalf("after a power cut the mark is %d, want 52 (synced) to 54", v)
	}
}

// TestMergeableFullFlushes: full flushes (level 0, at least
// fullFlushPoints) wait for Options.FirstMergeFanIn of them, oldest
// first, and go before the tiers; small flushes and merged runs are
// merged by size tier at MergeFanIn.
func TestMergeableFullFlushes(t *testing.T) {
	h, err := Open(Options{FS: vfs.NewMem(), Dir: "/h", Logger: quiet, MergeFanIn: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.o.FirstMergeFanIn != 16 {
		t.Fatalf("FirstMergeFanIn defaults to %d, want MergeFanIn² = 16", h.o.FirstMergeFanIn)
	}
	full := h.fullFlushPoints()
	p := &partition{}
	seq := uint64(100)
	add := func(level int, points uint64) *run {
		seq--
		r := &run{level: level, points: points, size: int64(points) * 20, seq: seq}
		p.runs = append(p.runs, r)
		return r
	}
	var fulls []*run
	for range 15 {
		fulls = append(fulls, add(0, full))
	}
	for range 3 {
		add(0, full-1) // small flushes: a tier of their own, 3 < MergeFanIn
	}
	add(1, 16*full) // a merged run
	if got := h.mergeable(p); got != nil {
		t.Fatalf("15 full flushes, 3 small ones: mergeable = %d runs, want none", len(got))
	}
	small := add(0, full-1)
	got := h.mergeable(p)
	if len(got) != 4 || !slices.Contains(got, small) || slices.ContainsFunc(got, func(r *run) bool { return r.points >= full }) {
		t.Fatalf("4 small flushes: mergeable = %v, want the 4 small ones", got)
	}
	fulls = append(fulls, add(0, 2*full))
	got = h.mergeable(p)
	slices.Reverse(fulls) // oldest (lowest seq) first
	if !slices.Equal(got, fulls) {
		t.Fatalf("16 full flushes: mergeable = %v, want them, oldest first", got)
	}
}

// TestBufferMemory: buffers draw fixed chunks from a free list bounded by
// BufferBytes, so that batches overshooting Reserve's bound (a single
// huge one here: replay adds without reserving) cost chunks only while
// their buffer is held: flush after flush, no new chunk is made, and the
// free list never holds more than one full buffer's worth. Points and IDs
// of every length up to 24 bytes (an ID never straddles two chunks) read back as added.
func TestBufferMemory(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	const bufferBytes = 64 << 10
	h, err := Open(Options{FS: vfs.NewMem(), Dir: "/h", Logger: quiet, BufferBytes: bufferBytes, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// 1 to 24 bytes, 12.5 on average: within the 16 bytes a point that
	// BufferBytes counts for its ID.
	id := func(i int) []byte { return fmt.Appendf(nil, "%0*d", 1+i%24, i) }
	batch := func(round, n int) []fleet.Update {
		ups := make([]fleet.Update, n)
		for i := range ups {
			ups[i] = fleet.Update{ID: id(i), Position: fleet.MakePosition(45, 7, now.Unix()-600+int64(round), 0, 0)}
		}
		return ups
	}
	perBuffer := bufferBytes / pointBytes
	var made int64
	for round := range 40 {
		n := perBuffer
		if round == 5 {
			n = 9 * perBuffer // far past 2·BufferBytes
		}
		ups := batch(round, n)
		h.Add(ups)
		b := h.Seal(uint64(round + 1))
		for i := range b.n {
			if p := b.at(i); !bytes.Equal(b.id(p), ups[i].ID) || p.Position != ups[i].Position {
				t.Fatalf("round %d: point %d reads back as %q %+v, added %q %+v", round, i, b.id(p), p.Position, ups[i].ID, ups[i].Position)
			}
		}
		if err := writeAll(h, b); err != nil {
			t.Fatal(err)
		}
		h.mu.Lock()
		pool := h.mu.pool
		h.mu.Unlock()
		if len(pool.pts) > pool.keepPts || len(pool.ids) > pool.keepIDs {
			t.Fatalf("round %d: %d point and %d ID chunks free, keeping at most %d and %d", round, len(pool.pts), len(pool.ids), pool.keepPts, pool.keepIDs)
		}
		switch {
		case round == 2:
			made = pool.allocated
		case round > 2 && round != 5 && round != 6 && pool.allocated != made:
			t.Fatalf("round %d: %d chunks made, %d after round 2 (the one huge batch may cost chunks in its round and the next only)", round, pool.allocated, made)
		case round == 6:
			made = pool.allocated
		}
	}
	if got, _, _ := h.Trail(id(7), 0, ^uint32(0), nil); len(got) != 40 {
		t.Fatalf("truck %q: %d points, want 40", id(7), len(got))
	}
}

// TestReserveCounts: a batch held back by a full buffer is counted once,
// and the time it waited is summed, until the buffer is sealed.
func TestReserveCounts(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	const bufferBytes = 16 << 10
	h, err := Open(Options{FS: vfs.NewMem(), Dir: "/h", Logger: quiet, BufferBytes: bufferBytes, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.Reserve(1, nil) // room: returns at once
	h.Release(1)
	if st := h.Stats(); st.Waits != 0 || st.WaitSeconds != 0 {
		t.Fatalf("no wait yet: %d waits, %v s", st.Waits, st.WaitSeconds)
	}
	ups := make([]fleet.Update, 3*bufferBytes/pointBytes)
	for i := range ups {
		ups[i] = fleet.Update{ID: fmt.Appendf(nil, "t%d", i), Position: fleet.MakePosition(45, 7, now.Unix()-60, 0, 0)}
	}
	h.Add(ups)
	done := make(chan struct{})
	go func() { defer close(done); h.Reserve(1, nil); h.AddReserved(ups[:1]) }()
	const held = 50 * time.Millisecond
	time.Sleep(held)
	select {
	case <-done:
		t.Fatal("Reserve returned while the buffer held 3x BufferBytes")
	default:
	}
	if err := writeAll(h, h.Seal(1)); err != nil {
		t.Fatal(err)
	}
	<-done
	if st := h.Stats(); st.Waits != 1 || st.WaitSeconds < held.Seconds() {
		t.Fatalf("after one held batch: %d waits, %v s waited, want 1 and >= %v", st.Waits, st.WaitSeconds, held.Seconds())
	}
}

// TestReserveBound: batches reserving at once, from 8 goroutines, of
// random sizes up to half the bound, some given back unadded (a failed
// log append), never take the active buffer and the reservations past
// 2·BufferBytes; the waiting ones ask the writer for a seal (Full), the
// only way the buffer empties here; every reservation is given back.
func TestReserveBound(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	const bufferBytes = 32 << 10
	h, err := Open(Options{FS: vfs.NewMem(), Dir: "/h", Logger: quiet, BufferBytes: bufferBytes, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	stop := sealOnFull(t, h)
	r := seeded(t)
	const workers, rounds = 8, 60
	sizes := make([][]int, workers)
	for w := range sizes {
		for range rounds {
			sizes[w] = append(sizes[w], 1+r.IntN(bufferBytes/pointBytes))
		}
	}
	var added atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for round, n := range sizes[w] {
				h.Reserve(n, nil)
				if round%7 == 3 {
					h.Release(n)
					continue
				}
				ups := make([]fleet.Update, n)
				for i := range ups {
					ups[i] = fleet.Update{ID: fmt.Appendf(nil, "w%d-%d", w, i), Position: fleet.MakePosition(45, 7, now.Unix()-600+int64(round), 0, 0)}
				}
				h.AddReserved(ups)
				added.Add(int64(n))
				h.mu.Lock()
				size, res := h.mu.active.size(), h.mu.reserved
				h.mu.Unlock()
				if size+res > 2*bufferBytes {
					t.Errorf("active buffer %d bytes and %d reserved: past 2·BufferBytes (%d)", size, res, 2*bufferBytes)
					return
				}
			}
		})
	}
	wg.Wait()
	stop()
	h.mu.Lock()
	res := h.mu.reserved
	h.mu.Unlock()
	if res != 0 {
		t.Errorf("%d bytes still reserved after every batch was added or released", res)
	}
	if got := h.Stats().Points; got != added.Load() {
		t.Errorf("history took %d points, %d were added", got, added.Load())
	}
}

// TestReserveAlone: a batch too large for an empty buffer waits until the
// buffer is empty and nothing else is reserved, then goes (alone); the
// next batch waits for it to be sealed.
func TestReserveAlone(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	const bufferBytes = 16 << 10
	h, err := Open(Options{FS: vfs.NewMem(), Dir: "/h", Logger: quiet, BufferBytes: bufferBytes, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	batch := func(n int) []fleet.Update {
		ups := make([]fleet.Update, n)
		for i := range ups {
			ups[i] = fleet.Update{ID: fmt.Appendf(nil, "t%d", i), Position: fleet.MakePosition(45, 7, now.Unix()-60, 0, 0)}
		}
		return ups
	}
	small, huge := batch(10), batch(5*bufferBytes/pointBytes)
	h.Reserve(len(small), nil)
	h.AddReserved(small)
	done := make(chan struct{})
	go func() { defer close(done); h.Reserve(len(huge), nil); h.AddReserved(huge) }()
	select {
	case <-h.Full(): // the waiting Reserve asks for a seal
	case <-time.After(10 * time.Second):
		t.Fatal("a Reserve waiting for an empty buffer did not ask the writer to seal")
	}
	heldUntilSeal(t, h, 1, done, "the huge batch went in beside another")
	if n := h.Stats().Buffered; n != len(huge) {
		t.Fatalf("%d points buffered, want the huge batch's %d alone", n, len(huge))
	}
	next := make(chan struct{})
	go func() { defer close(next); h.Reserve(1, nil); h.AddReserved(small[:1]) }()
	heldUntilSeal(t, h, 2, next, "a batch went in beside the huge one")
}

// heldUntilSeal checks that done stays open for a while (fails with
// what if not), then seals and writes h's active buffer at seq and
// waits for done.
func heldUntilSeal(t *testing.T, h *History, seq uint64, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
		t.Fatal(what)
	case <-time.After(20 * time.Millisecond):
	}
	if err := writeAll(h, h.Seal(seq)); err != nil {
		t.Fatal(err)
	}
	<-done
}

// sealOnFull runs what the engine's writer does for the test's History:
// it seals and writes the active buffer each time Full delivers, until
// the returned function is called.
func sealOnFull(t *testing.T, h *History) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint64(1); ; seq++ {
			select {
			case <-quit:
				return
			case <-h.Full():
			}
			if err := writeAll(h, h.Seal(seq)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

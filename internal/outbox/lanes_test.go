package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/vfs"
)

// drainLane reads lane i until nothing is ready within wait, calling
// done for each record (Done it or not).
func drainLane(t *testing.T, x *Outbox, i int, wait time.Duration, done func(Record) bool) []Record {
	t.Helper()
	var got []Record
	l := x.Lane(i)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		rec, err := l.Next(ctx)
		cancel()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("lane %d: %v", i, err)
			}
			return got
		}
		got = append(got, rec)
		if done(rec) {
			l.Done(rec.Seq)
		}
	}
}

// TestLanesCrash is TestCrash with several lanes against a model: each
// lane hands out only its keys' records, in Seq order; after a power
// cut, every record of a lane at or above the lane's checkpointed cursor
// that was handed out (or Synced) comes back to that lane, intact; a
// lane whose consumer never calls Done (stuck) keeps its records while
// the others' are read and done; segments are deleted only below every
// lane's cursor.
func TestLanesCrash(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	defer func(d time.Duration) { checkpointEvery = d }(checkpointEvery)
	checkpointEvery = time.Hour // only the test checkpoints
	rounds := 20
	if testing.Short() {
		rounds = 10
	}
	for round := range rounds {
		fs := vfs.NewMem()
		nl := 1 + r.IntN(8)
		o := Options{SegmentBytes: int64(100 + r.IntN(2000)), Window: 1 + r.IntN(20), Lanes: nl}
		x := open(t, fs, o)
		stuck := r.IntN(nl + 1) // == nl: none stuck
		n := 1 + r.IntN(400)
		byLane := make([][]uint64, nl) // Seqs appended, per lane
		payloads := map[uint64]string{}
		seen := make([][]Record, nl)
		done := map[uint64]bool{}
		// lost: per lane, the Seqs the last checkpoint may have put
		// behind the lane's cursor (the model's: done, and below every
		// record the lane handed out and had not done).
		lost := make([]map[uint64]bool, nl)
		var synced uint64 // records below it are durable (Sync returned)
		for i := range n {
			key := uint64(r.IntN(3 * nl))
			p := payload(i)
			seq, ok := x.Append(key, p)
			if !ok {
				t.Fatalf("round %d: shed", round)
			}
			byLane[key%uint64(nl)] = append(byLane[key%uint64(nl)], seq)
			payloads[seq] = string(p)
			if r.IntN(20) == 0 {
				if err := x.Sync(); err != nil {
					t.Fatal(err)
				}
				synced = seq + 1
			}
			if r.IntN(10) == 0 {
				for l := range nl {
					got := drainLane(t, x, l, time.Millisecond, func(rec Record) bool {
						if l != stuck && r.IntN(3) > 0 {
							done[rec.Seq] = true
						}
						return done[rec.Seq]
					})
					seen[l] = append(seen[l], got...)
					// Done, later, some of those left undone.
					for _, s := range seen[l] {
						if l != stuck && !done[s.Seq] && r.IntN(4) == 0 {
							done[s.Seq] = true
							x.Lane(l).Done(s.Seq)
						}
					}
				}
			}
			if r.IntN(40) == 0 {
				x.checkpoint()
				for l := range nl {
					low := uint64(1 << 63)
					for _, s := range seen[l] {
						if !done[s.Seq] {
							low = min(low, s.Seq)
						}
					}
					lost[l] = map[uint64]bool{}
					for _, s := range seen[l] {
						if done[s.Seq] && s.Seq < low {
							lost[l][s.Seq] = true
						}
					}
				}
			}
		}
		for l := range nl {
			for i, rec := range seen[l] {
				if rec.Key%uint64(nl) != uint64(l) || i > 0 && rec.Seq <= seen[l][i-1].Seq {
					t.Fatalf("round %d (seed %d): lane %d handed out %+v after %+v", round, seed, l, rec, seen[l][max(i-1, 0)])
				}
			}
			if stuck == l && len(seen[l]) > o.Window {
				t.Fatalf("round %d: the stuck lane got %d records past its window %d", round, len(seen[l]), o.Window)
			}
		}
		img := fs.CrashClone(vfs.CrashOptions{Rand: r})
		x.Close()
		x.CloseReader()
		y := open(t, img, o)
		for l := range nl {
			got := drainLane(t, y, l, 20*time.Millisecond, func(Record) bool { return true })
			gs := make([]uint64, len(got))
			for i, g := range got {
				gs[i] = g.Seq
				if g.Key%uint64(nl) != uint64(l) || payloads[g.Seq] != string(g.Payload) {
					t.Fatalf("round %d (seed %d): lane %d after the crash: %+v", round, seed, l, g)
				}
				if i > 0 && g.Seq <= got[i-1].Seq {
					t.Fatalf("round %d (seed %d): lane %d out of order after the crash", round, seed, l)
				}
			}
			handed := map[uint64]bool{}
			for _, s := range seen[l] {
				handed[s.Seq] = true
			}
			for _, s := range byLane[l] {
				if lost[l][s] || !handed[s] && s >= synced {
					continue // done before the checkpoint, or never durable
				}
				if _, ok := slices.BinarySearch(gs, s); !ok {
					t.Fatalf("round %d (seed %d): lane %d lost record %d", round, seed, l, s)
				}
			}
		}
		if st := y.Stats(); st.Depth != 0 {
			t.Fatalf("round %d: depth %d after every lane read and did all", round, st.Depth)
		}
		y.Close()
		y.CloseReader()
	}
}

// TestStuckLane: a lane whose consumer stops calling Done holds its
// window and its segments, never the other lanes; once it does its
// records, a checkpoint deletes the segments.
func TestStuckLane(t *testing.T) {
	x := open(t, vfs.NewMem(), Options{Lanes: 4, Window: 8, SegmentBytes: 500})
	defer x.Close()
	defer x.CloseReader()
	const n = 400
	for i := range n {
		x.Append(uint64(i), payload(i))
		if i%20 == 19 { // a write each: segments of 20 records
			if err := x.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	held := drainLane(t, x, 0, 10*time.Millisecond, func(Record) bool { return false })
	if len(held) != 8 {
		t.Fatalf("the stuck lane got %d records, want its window of 8", len(held))
	}
	for l := 1; l < 4; l++ {
		if got := drainLane(t, x, l, 10*time.Millisecond, func(Record) bool { return true }); len(got) != n/4 {
			t.Fatalf("lane %d got %d of its %d records behind a stuck lane", l, len(got), n/4)
		}
	}
	if st := x.Stats(); st.Depth != n/4 {
		t.Fatalf("depth %d, want the stuck lane's %d", st.Depth, n/4)
	}
	x.checkpoint()
	segs := func() int { x.smu.Lock(); defer x.smu.Unlock(); return len(x.smu.segs) }
	before := segs()
	if before < 10 {
		t.Fatalf("the stuck lane's cursor let segments go: %d left", before)
	}
	for _, r := range held {
		x.Lane(0).Done(r.Seq)
	}
	drainLane(t, x, 0, 10*time.Millisecond, func(Record) bool { return true })
	x.checkpoint()
	if st, after := x.Stats(), segs(); st.Depth != 0 || after != 1 {
		t.Fatalf("after the stuck lane caught up: depth %d, %d segments (were %d)", st.Depth, after, before)
	}
}

// TestCursorFormats: the cursor file of one cursor (older fleetd, one
// lane) and that of one a lane are read back; a file of another number
// of lanes gives every lane the lowest; a damaged one, none.
func TestCursorFormats(t *testing.T) {
	// The one-cursor file as older fleetd wrote it.
	one := binary.LittleEndian.AppendUint64([]byte(cursorMagic), 42)
	one = binary.LittleEndian.AppendUint32(one, crc32.Checksum(one, crcTable))
	for _, tc := range []struct {
		name  string
		file  []byte
		lanes int
		want  []uint64
	}{
		{"one cursor, one lane", one, 1, []uint64{42}},
		{"one cursor, four lanes", one, 4, []uint64{42, 42, 42, 42}},
		{"a cursor a lane", appendCursors(nil, []uint64{7, 9, 8}), 3, []uint64{7, 9, 8}},
		{"three cursors, two lanes", appendCursors(nil, []uint64{7, 9, 5}), 2, []uint64{5, 5}},
		{"damaged", flip(appendCursors(nil, []uint64{7, 9, 8}), 13), 3, nil},
		{"short", appendCursors(nil, []uint64{7, 9, 8})[:20], 3, nil},
		{"empty", nil, 3, nil},
	} {
		fs := vfs.NewMem()
		if err := fs.MkdirAll("ob", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := vfs.WriteFile(fs, "ob/cursor", tc.file); err != nil {
			t.Fatal(err)
		}
		x := &Outbox{opts: Options{Dir: "ob"}, fs: fs, log: quiet, lanes: make([]Lane, tc.lanes)}
		if got := x.readCursors(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func flip(b []byte, i int) []byte { b[i] ^= 1; return b }

// TestLanesReopenKeepsCursors: each lane's cursor survives a clean
// restart: what a lane did is not handed out again, what it did not
// is, even when another lane did more.
func TestLanesReopenKeepsCursors(t *testing.T) {
	fs := vfs.NewMem()
	o := Options{Lanes: 3, SegmentBytes: 300}
	x := open(t, fs, o)
	for i := range 90 {
		x.Append(uint64(i), payload(i))
	}
	if err := x.Sync(); err != nil {
		t.Fatal(err)
	}
	doneUpTo := []int{30, 0, 10} // records of each lane done before the restart
	for l := range 3 {
		k := 0
		drainLane(t, x, l, 10*time.Millisecond, func(Record) bool { k++; return k <= doneUpTo[l] })
	}
	x.Close()
	x.CloseReader()
	y := open(t, fs, o)
	defer y.Close()
	defer y.CloseReader()
	if st := y.Stats(); st.Depth < 30 || st.Depth > 60 {
		t.Fatalf("depth after the restart %d: an estimate within what is on disk, want 30…60", st.Depth)
	}
	for l := range 3 {
		got := drainLane(t, y, l, 10*time.Millisecond, func(Record) bool { return true })
		if len(got) != 30-doneUpTo[l] {
			t.Fatalf("lane %d: %d records after the restart, want %d", l, len(got), 30-doneUpTo[l])
		}
		if len(got) > 0 && got[0].Seq != uint64(3*doneUpTo[l]+l) {
			t.Fatalf("lane %d starts again at %d", l, got[0].Seq)
		}
	}
	if st := y.Stats(); st.Depth != 0 {
		t.Fatalf("depth %d once every lane did all", st.Depth)
	}
}

func FuzzParseCursors(f *testing.F) {
	f.Add(appendCursors(nil, []uint64{1, 2, 3}))
	f.Add([]byte(cursorMagic + "\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := parseCursors(b)
		if err != nil {
			return
		}
		if len(cs) == 0 || len(cs) > MaxLanes {
			t.Fatalf("%d cursors", len(cs))
		}
		if len(b) != cursorSize {
			if again, err := parseCursors(appendCursors(nil, cs)); err != nil || !slices.Equal(again, cs) {
				t.Fatalf("round trip: %v %v", again, err)
			}
		}
	})
}

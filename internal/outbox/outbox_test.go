package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetd/fleetd/internal/vfs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t testing.TB, fs vfs.FS, o Options) *Outbox {
	t.Helper()
	o.FS, o.Dir, o.Logger = fs, "ob", quiet
	x, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func payload(i int) []byte { return fmt.Appendf(nil, `{"n":%d}`, i) }

// next reads one record within a second.
func next(t testing.TB, x *Outbox) Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := x.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAppendNextDoneReopen(t *testing.T) {
	fs := vfs.NewMem()
	x := open(t, fs, Options{SegmentBytes: 200}) // a few records a segment
	for i := range 50 {
		if seq, ok := x.Append(uint64(i%3), payload(i)); !ok || seq != uint64(i) {
			t.Fatalf("Append %d: seq %d ok %v", i, seq, ok)
		}
	}
	for i := range 20 {
		r := next(t, x)
		if r.Seq != uint64(i) || string(r.Payload) != string(payload(i)) || r.Key != uint64(i%3) {
			t.Fatalf("record %d: %+v %q", i, r, r.Payload)
		}
		if i < 10 {
			x.Done(r.Seq)
		}
	}
	if st := x.Stats(); st.Depth != 40 || st.Appended != 50 || st.Oldest.IsZero() {
		t.Fatalf("stats %+v", st)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	x.CloseReader()
	// Reopened: 10..49 again (10..19 were handed out, never Done).
	x = open(t, fs, Options{SegmentBytes: 200})
	defer x.Close()
	defer x.CloseReader()
	for i := 10; i < 50; i++ {
		r := next(t, x)
		if r.Seq != uint64(i) || string(r.Payload) != string(payload(i)) {
			t.Fatalf("after reopen, record %d: %+v", i, r)
		}
		x.Done(r.Seq)
	}
	if seq, _ := x.Append(0, payload(50)); seq != 50 {
		t.Fatalf("seq after reopen %d, want 50", seq)
	}
	if r := next(t, x); r.Seq != 50 {
		t.Fatalf("got %d", r.Seq)
	}
	x.Done(50)
	x.checkpoint()
	names, _ := fs.List("ob")
	if len(names) > 3 { // the cursor and the last segments
		t.Fatalf("delivered segments not deleted: %v", names)
	}
	if st := x.Stats(); st.Depth != 0 {
		t.Fatalf("depth %d after all done", st.Depth)
	}
}

func TestDoneOutOfOrderAndWindow(t *testing.T) {
	x := open(t, vfs.NewMem(), Options{Window: 4})
	defer x.Close()
	defer x.CloseReader()
	for i := range 10 {
		x.Append(0, payload(i))
	}
	var rs []Record
	for range 4 {
		rs = append(rs, next(t, x))
	}
	// The window is full: Next waits.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if _, err := x.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past the window: %v", err)
	}
	cancel()
	x.Done(rs[2].Seq)
	x.Done(rs[1].Seq)
	if c := cursor(x, 0); c != 0 {
		t.Fatalf("cursor moved past an undone record: %d", c)
	}
	if st := x.Stats(); st.Depth != 8 {
		t.Fatalf("depth %d, want 8 (Done out of order counts)", st.Depth)
	}
	x.Done(rs[0].Seq)
	if c, st := cursor(x, 0), x.Stats(); c != 3 || st.Depth != 7 {
		t.Fatalf("cursor %d depth %d, want 3 and 7", c, st.Depth)
	}
	if r := next(t, x); r.Seq != 4 {
		t.Fatalf("got %d", r.Seq)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Done of a record not handed out did not panic")
		}
	}()
	x.Done(9)
}

// TestCrash appends from a random workload, takes a power-cut image at
// random moments and checks that every record Next had handed out is
// handed out again from the image, unless Done before the last
// checkpoint, in order and intact.
func TestCrash(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	// Only the test checkpoints, so that it knows the cursor on disk.
	defer func(d time.Duration) { checkpointEvery = d }(checkpointEvery)
	checkpointEvery = time.Hour
	for round := range 20 {
		fs := vfs.NewMem()
		o := Options{SegmentBytes: int64(100 + r.IntN(2000))}
		x := open(t, fs, o)
		n := 1 + r.IntN(300)
		var seen []Record
		for i := range n {
			x.Append(uint64(r.IntN(5)), payload(i))
			if r.IntN(10) == 0 {
				for {
					ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
					rec, err := x.Next(ctx)
					cancel()
					if err != nil {
						break
					}
					seen = append(seen, rec)
					if r.IntN(2) == 0 {
						x.Done(rec.Seq)
					}
				}
			}
			if r.IntN(50) == 0 {
				x.checkpoint()
			}
		}
		x.smu.Lock()
		saved := x.smu.saved
		x.smu.Unlock()
		img := fs.CrashClone(vfs.CrashOptions{Rand: r})
		x.Close()
		x.CloseReader()
		y := open(t, img, o)
		// Everything handed out and not below the saved cursor must come
		// back, in order.
		var want []Record
		for _, s := range seen {
			if s.Seq >= saved {
				want = append(want, s)
			}
		}
		var got []Record
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			rec, err := y.Next(ctx)
			cancel()
			if err != nil {
				break
			}
			y.Done(rec.Seq)
			got = append(got, rec)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Seq != got[i-1].Seq+1 {
				t.Fatalf("round %d: gap %d → %d", round, got[i-1].Seq, got[i].Seq)
			}
		}
		gi := 0
		for _, w := range want {
			for gi < len(got) && got[gi].Seq < w.Seq {
				gi++
			}
			if gi == len(got) || got[gi].Seq != w.Seq || string(got[gi].Payload) != string(w.Payload) {
				t.Fatalf("round %d (seed %d): record %d handed out before the crash is lost", round, seed, w.Seq)
			}
		}
		y.Close()
		y.CloseReader()
	}
}

func TestShedAtMaxBytes(t *testing.T) {
	x := open(t, vfs.NewMem(), Options{MaxBytes: 10 * (recHeader + 8)})
	defer x.Close()
	defer x.CloseReader()
	ok := 0
	for i := range 100 {
		if _, k := x.Append(0, []byte("12345678")); k {
			ok++
		}
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if ok != 10 {
		t.Fatalf("%d appended under a 10-record bound", ok)
	}
	if st := x.Stats(); st.Shed != 90 || st.Appended != 10 {
		t.Fatalf("stats %+v", st)
	}
	// Delivering frees the disk once the segment is deleted.
	for range 10 {
		x.Done(next(t, x).Seq)
	}
	x.mu.Lock()
	x.mu.Unlock()
	// A new segment starts only once the current is full, so the full
	// one stays until the next one exists; with one-record segments the
	// bound frees up.
	if _, k := x.Append(0, []byte("x")); k {
		t.Fatal("appended past MaxBytes before the segment was freed")
	}
}

func TestShedStagedBehindFailingDisk(t *testing.T) {
	mem := vfs.NewMem()
	ff := vfs.NewFaultFS(mem)
	x := open(t, ff, Options{MaxStaged: 1000})
	defer x.Close()
	defer x.CloseReader()
	ff.FailAll(vfs.OpSync, errors.New("injected: disk gone"))
	shed := 0
	for range 200 {
		if _, ok := x.Append(0, payload(1)); !ok {
			shed++
		}
	}
	if shed == 0 {
		t.Fatal("a failing disk did not make Append shed at MaxStaged")
	}
	deadline := time.Now().Add(5 * time.Second)
	for x.Stats().WriteErrors == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ff.Reset()
	// Everything not shed is written once the disk is back, in order.
	for i := range 200 - shed {
		if r := next(t, x); r.Seq != uint64(i) {
			t.Fatalf("got %d want %d", r.Seq, i)
		}
	}
	if st := x.Stats(); st.WriteErrors == 0 || st.Shed != int64(shed) {
		t.Fatalf("stats %+v", st)
	}
}

func TestFailedWriteRetried(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	ff := vfs.NewFaultFS(vfs.NewMem())
	x := open(t, ff, Options{SegmentBytes: 300})
	defer x.Close()
	defer x.CloseReader()
	const n = 300
	for i := range n {
		if i%60 == 0 { // five faults, each once, spread over the writes
			ff.FailNth(vfs.OpWrite|vfs.OpSync|vfs.OpCreate, 1+r.IntN(3), errors.New("injected"))
			time.Sleep(20 * time.Millisecond)
		}
		if _, ok := x.Append(0, payload(i)); !ok {
			t.Fatalf("shed %d", i)
		}
	}
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rec, err := x.Next(ctx)
		cancel()
		if err != nil {
			st := x.Stats()
			x.smu.Lock()
			segs, durable, readNext := x.smu.segs, x.smu.durable, x.lanes[0].readNext
			x.smu.Unlock()
			t.Fatalf("record %d: %v; stats %+v segs %v durable %d readNext %d", i, err, st, segs, durable, readNext)
		}
		if rec.Seq != uint64(i) || string(rec.Payload) != string(payload(i)) {
			t.Fatalf("record %d: %+v", i, rec)
		}
		x.Done(rec.Seq)
	}
}

func TestCorruptRecordSkipsSegment(t *testing.T) {
	fs := vfs.NewMem()
	o := Options{SegmentBytes: 1}
	x := open(t, fs, o)
	for i := range 3 {
		x.Append(0, payload(i))
		for durable(x) <= uint64(i) {
			time.Sleep(time.Millisecond)
		}
	}
	x.Close()
	x.CloseReader()
	// Flip a payload byte of the first segment (not the last: that one
	// would be a torn tail).
	path := filepath.Join("ob", segName(0))
	b, _ := vfs.ReadFile(fs, path)
	b[recHeader] ^= 0xff
	if err := vfs.WriteFile(fs, path, b); err != nil {
		t.Fatal(err)
	}
	y := open(t, fs, o)
	defer y.Close()
	defer y.CloseReader()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := y.Next(ctx); err == nil {
		t.Fatal("corrupt record handed out")
	}
	if r := next(t, y); r.Seq != 1 {
		t.Fatalf("after the bad segment: %d", r.Seq)
	}
	if y.Stats().Corrupt != 1 {
		t.Fatal("corruption not counted")
	}
}

// cursor reads lane i's cursor under its lock.
func cursor(x *Outbox, i int) uint64 {
	x.smu.Lock()
	defer x.smu.Unlock()
	return x.lanes[i].cursorLocked()
}

// durable reads the durable Seq under its lock.
func durable(x *Outbox) uint64 {
	x.smu.Lock()
	defer x.smu.Unlock()
	return x.smu.durable
}

func TestRemove(t *testing.T) {
	fs := vfs.NewMem()
	x := open(t, fs, Options{})
	x.Append(0, payload(0))
	if err := x.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat("ob"); err == nil {
		t.Fatal("directory left")
	}
}

// FuzzRecover opens an outbox whose segment and cursor are arbitrary
// bytes: it must open or fail with an error, and hand out only records
// that check, never panic.
func FuzzRecover(f *testing.F) {
	good := appendRecord(nil, 0, 1, 2, []byte("hello"))
	good = appendRecord(good, 1, 1, 2, []byte("world"))
	f.Add(good, []byte(nil))
	f.Add(good[:40], []byte("FLOBXCUR\x01\x00\x00\x00\x00\x00\x00\x00abcd"))
	f.Add([]byte{1, 2, 3}, []byte{})
	f.Fuzz(func(t *testing.T, seg, cur []byte) {
		fs := vfs.NewMem()
		_ = fs.MkdirAll("ob", 0o755)
		_ = vfs.WriteFile(fs, "ob/"+segName(0), seg)
		if cur != nil {
			_ = vfs.WriteFile(fs, "ob/cursor", cur)
		}
		x, err := Open(Options{FS: fs, Dir: "ob", Logger: quiet})
		if err != nil {
			return
		}
		defer x.Close()
		defer x.CloseReader()
		for range 10 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			r, err := x.Next(ctx)
			cancel()
			if err != nil {
				break
			}
			x.Done(r.Seq)
		}
	})
}

// TestSmallMaxBytesRotates: an outbox whose MaxBytes is below
// SegmentBytes still frees what was delivered: its segments are cut at
// a fraction of MaxBytes, so a steady flow through it never sheds.
func TestSmallMaxBytesRotates(t *testing.T) {
	checkpointEvery = 10 * time.Millisecond
	defer func() { checkpointEvery = time.Second }()
	x := open(t, vfs.NewMem(), Options{MaxBytes: 64 << 10})
	defer x.Close()
	p := make([]byte, 200)
	for i := range 3000 { // ~700 KiB through a 64 KiB outbox
		for {
			if _, ok := x.Append(uint64(i), p); ok {
				break
			}
			if x.Stats().Shed > 200 {
				t.Fatalf("event %d: still shedding with everything before it delivered: %+v", i, x.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := x.Sync(); err != nil {
			t.Fatal(err)
		}
		r := next(t, x)
		x.Done(r.Seq)
	}
}

// TestPins: a lane pins the outbox when over half of MaxBytes is used,
// every other lane is done with the oldest segment and it is not;
// never with one lane, never below half.
func TestPins(t *testing.T) {
	x := open(t, vfs.NewMem(), Options{MaxBytes: 64 << 10, Lanes: 2}) // 8 KiB segments
	defer x.Close()
	p := make([]byte, 200)
	for i := range 200 { // ~46 KB: keys alternate between the lanes
		if _, ok := x.Append(uint64(i), p); !ok {
			t.Fatalf("append %d shed", i)
		}
		if i%20 == 19 { // a write of ~4.6 KB: segments are cut past 8 KiB
			if err := x.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	l0, l1 := x.Lane(0), x.Lane(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 100 { // lane 1 delivers everything
		r, err := l1.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l1.Done(r.Seq)
	}
	head, err := l0.Next(ctx) // lane 0 holds its first record
	if err != nil {
		t.Fatal(err)
	}
	if !l0.Pins() || l1.Pins() {
		t.Fatalf("Pins: lane 0 %v (want true), lane 1 %v (want false)", l0.Pins(), l1.Pins())
	}
	l0.Done(head.Seq)
	for range 99 {
		r, err := l0.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l0.Done(r.Seq)
	}
	if l0.Pins() {
		t.Fatal("lane 0 pins with everything done")
	}
	y := open(t, vfs.NewMem(), Options{MaxBytes: 64 << 10})
	defer y.Close()
	for i := range 200 {
		y.Append(uint64(i), p)
	}
	_ = y.Sync()
	if _, err := y.Next(ctx); err != nil || y.Lane(0).Pins() {
		t.Fatalf("one lane pins (err %v)", err)
	}
}

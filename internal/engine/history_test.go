package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/vfs"
)

// smallHistory seals a buffer every few hundred points, so that tests
// cross many writes, merges and log truncations.
func smallHistory() *history.Options {
	return &history.Options{BufferBytes: 16 << 10, FlushEvery: time.Millisecond}
}

// TestHistoryCrashKeepsAcknowledged cuts the power at random moments while
// several goroutines ingest, history writes and snapshots truncate the
// log, and checks that every acknowledged point — not only each truck's
// newest — is in history after recovery, and that nothing is there twice.
func TestHistoryCrashKeepsAcknowledged(t *testing.T) {
	r := seeded(t)
	base := uint32(time.Now().Unix()) - 3600
	for round := range 4 {
		fs := vfs.NewMem()
		e := openAt(t, fs, Options{SnapshotEvery: 20_000, History: smallHistory()})
		var (
			mu      sync.Mutex
			acked   []store.Update
			calls   int
			crashAt = 5 + r.IntN(60)
			crashed *vfs.MemFS
			atCrash []store.Update
		)
		var wg sync.WaitGroup
		for range 4 {
			seed := r.Uint64()
			wg.Go(func() {
				rr := rand.New(rand.NewPCG(seed, 2))
				for i := range 20 {
					b := randBatch(rr, 200, 300, base+uint32(i*10))
					if rr.IntN(4) == 0 { // a device's late, buffered points
						for j := range b[:50] {
							b[j].TS -= uint32(rr.IntN(3000))
						}
					}
					if _, err := e.Apply(b); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked = append(acked, b...)
					if calls++; calls == crashAt {
						crashed = fs.CrashClone(vfs.CrashOptions{Rand: rand.New(rand.NewPCG(seed, 3))})
						atCrash = slices.Clone(acked)
					}
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			for range 10 {
				if err := e.Snapshot(); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
			}
		})
		wg.Wait()
		hs := e.Stats().History
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if hs == nil || hs.Runs == 0 {
			t.Fatalf("round %d: history wrote no runs: %+v", round, hs)
		}
		checkHistory(t, crashed, atCrash, false)
		checkHistory(t, fs, acked, true) // and after the clean close, exactly
	}
}

// checkHistory opens fs and checks that every update of want is in its
// truck's trail, and with exact, that the trails hold nothing else.
func checkHistory(t *testing.T, fs *vfs.MemFS, want []store.Update, exact bool) {
	t.Helper()
	e := openAt(t, fs, Options{History: smallHistory()})
	defer e.Close()
	byID := map[string][]store.Position{}
	for _, u := range want {
		byID[string(u.ID)] = append(byID[string(u.ID)], u.Position)
	}
	h := e.History()
	for id, ps := range byID {
		got, ans, err := h.Trail([]byte(id), 0, ^uint32(0), nil)
		if err != nil || ans.Incomplete {
			t.Fatalf("Trail(%s): %v %+v", id, err, ans)
		}
		have := map[store.Position]int{}
		for i, p := range got {
			if i > 0 && p.TS < got[i-1].TS {
				t.Fatalf("Trail(%s) not in ts order at %d", id, i)
			}
			if have[p.Position]++; have[p.Position] > 1 {
				t.Fatalf("Trail(%s) has %+v twice", id, p.Position)
			}
		}
		distinct := map[store.Position]bool{}
		for _, p := range ps {
			distinct[p] = true
			if have[p] == 0 {
				t.Fatalf("acknowledged point %+v of %s is not in history (%d points there)", p, id, len(got))
			}
		}
		if exact && len(got) != len(distinct) {
			t.Fatalf("Trail(%s): %d points, %d were posted", id, len(got), len(distinct))
		}
	}
}

// TestApplyLargeBatch: a batch of several ApplyChunks, from two
// goroutines at once into a history of a 16 KiB buffer (each piece is
// many times the buffer: Reserve lets it in alone), is applied whole,
// durable across a restart, every point in history exactly once.
func TestApplyLargeBatch(t *testing.T) {
	r := seeded(t)
	base := uint32(time.Now().Unix()) - 3600
	fs := vfs.NewMem()
	e := openAt(t, fs, Options{History: smallHistory()})
	var all []store.Update
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 2 {
		b := randBatch(r, 2*ApplyChunk+777, 100_000, base+uint32(g*100))
		all = append(all, b...)
		wg.Go(func() {
			res, err := e.Apply(b)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if n := res.Inserted + res.Updated + res.Stale; n != len(b) {
				t.Errorf("Apply of %d updates counted %d: %+v", len(b), n, res)
			}
		})
	}
	wg.Wait()
	want := state(e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openAt(t, fs, Options{History: smallHistory()})
	got := state(e2)
	e2.Close()
	if len(got) != len(want) {
		t.Fatalf("after restart %d trucks, %d before", len(got), len(want))
	}
	for id, p := range want {
		if got[id] != p {
			t.Fatalf("truck %s after restart %+v, before %+v", id, got[id], p)
		}
	}
	checkHistory(t, fs, all, true)
}

// TestApplyChunkFails: when logging the second piece of a large batch
// fails, Apply reports the error with the first piece counted, and that
// piece, and only it, is applied and survives a restart.
func TestApplyChunkFails(t *testing.T) {
	mem := vfs.NewMem()
	ffs := vfs.NewFaultFS(mem)
	e := openAt(t, ffs, Options{})
	base := int64(time.Now().Unix()) - 60
	b := make([]store.Update, 2*ApplyChunk+10)
	for i := range b {
		b[i] = store.Update{ID: fmt.Appendf(nil, "t%07d", i), Position: store.MakePosition(45, 7, base, 10, 90)}
	}
	ffs.FailNth(vfs.OpSync, 2, syscall.EIO)
	res, err := e.Apply(b)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("Apply with the second piece's fsync failing: %v, want EIO", err)
	}
	if res.Inserted != ApplyChunk {
		t.Fatalf("Apply reported %+v, want the first piece's %d inserted", res, ApplyChunk)
	}
	check := func(when string, st map[string]store.Position) {
		t.Helper()
		if len(st) != ApplyChunk {
			t.Fatalf("%s: %d trucks, want the first piece's %d", when, len(st), ApplyChunk)
		}
		for _, u := range b[:ApplyChunk] {
			if _, ok := st[string(u.ID)]; !ok {
				t.Fatalf("%s: %s of the first piece is missing", when, u.ID)
			}
		}
	}
	check("after the failure", state(e))
	e.Close()
	ffs.Reset()
	e2 := openAt(t, mem, Options{})
	defer e2.Close()
	check("after restart", state(e2))
}

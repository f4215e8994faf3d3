package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/snapshot"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/vfs"
	"github.com/fleetd/fleetd/internal/wal"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openAt(t *testing.T, fs vfs.FS, o Options) *Engine {
	t.Helper()
	o.DataDir, o.FS, o.Logger = "/data", fs, quiet
	if o.SweepEvery == 0 {
		o.SweepEvery = time.Hour
	}
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// state reads every truck out of the engine.
func state(e *Engine) map[string]store.Position {
	m := map[string]store.Position{}
	e.Store().Range(func(id []byte, p store.Position) bool {
		m[string(id)] = p
		return true
	})
	return m
}

func randBatch(r *rand.Rand, n, ids int, ts uint32) []store.Update {
	b := make([]store.Update, n)
	for i := range b {
		b[i] = store.Update{ID: fmt.Appendf(nil, "truck-%07d", r.IntN(ids)),
			Position: store.MakePosition(25+r.Float64()*24, -124+r.Float64()*57, int64(ts)+int64(r.IntN(3)), r.Float64()*100, float64(r.IntN(360)))}
	}
	return b
}

func seeded(t *testing.T) *rand.Rand {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 1))
}

func TestRecoverAfterCleanClose(t *testing.T) {
	r := seeded(t)
	fs := vfs.NewMem()
	e := openAt(t, fs, Options{})
	for i := 0; i < 20; i++ {
		if _, err := e.Apply(randBatch(r, 500, 3000, uint32(1000+i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ {
		if _, err := e.Delete(fmt.Appendf(nil, "truck-%07d", i)); err != nil {
			t.Fatal(err)
		}
	}
	want := state(e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openAt(t, fs, Options{})
	defer e2.Close()
	if got := state(e2); !maps.Equal(got, want) {
		t.Fatalf("after restart %d trucks, want %d", len(got), len(want))
	}
	if rec := e2.Recovery(); rec.SnapshotTrucks != uint64(len(want)) || rec.ReplayedUpdates != 0 {
		t.Fatalf("clean close should leave a full snapshot and nothing to replay: %+v", rec)
	}
}

// TestCrashKeepsAcknowledged cuts the power at a random moment while
// several goroutines ingest and snapshots are taken, and checks that every
// update acknowledged before the cut survives it.
func TestCrashKeepsAcknowledged(t *testing.T) {
	r := seeded(t)
	for round := 0; round < 6; round++ {
		fs := vfs.NewMem()
		e := openAt(t, fs, Options{SnapshotEvery: 20_000})
		var (
			mu      sync.Mutex
			acked   = map[string]store.Position{} // newest acknowledged per truck
			calls   int
			crashAt = 5 + r.IntN(60)
			crashed *vfs.MemFS
			atCrash map[string]store.Position
		)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			seed := r.Uint64()
			wg.Go(func() {
				rr := rand.New(rand.NewPCG(seed, 2))
				for i := 0; i < 20; i++ {
					b := randBatch(rr, 200, 1000, uint32(1000+i))
					if _, err := e.Apply(b); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for _, u := range b {
						if p, ok := acked[string(u.ID)]; !ok || u.TS >= p.TS {
							acked[string(u.ID)] = u.Position
						}
					}
					if calls++; calls == crashAt {
						crashed = fs.CrashClone(vfs.CrashOptions{Rand: rand.New(rand.NewPCG(seed, 3))})
						atCrash = maps.Clone(acked)
					}
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			for i := 0; i < 10; i++ {
				if err := e.Snapshot(); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
			}
		})
		wg.Wait()
		e.Close()
		checkCrash(t, crashed, atCrash)
	}
}

func checkCrash(t *testing.T, fs *vfs.MemFS, acked map[string]store.Position) {
	t.Helper()
	e := openAt(t, fs, Options{})
	defer e.Close()
	got := state(e)
	for id, p := range acked {
		q, ok := got[id]
		if !ok {
			t.Errorf("acknowledged truck %s lost in the crash", id)
			continue
		}
		if q.TS < p.TS {
			t.Errorf("truck %s went back in time: ts %d, acknowledged %d", id, q.TS, p.TS)
		}
	}
}

func TestDiskFullAnswersErrorAndResumes(t *testing.T) {
	r := seeded(t)
	mem := vfs.NewMem()
	ffs := vfs.NewFaultFS(mem)
	e := openAt(t, ffs, Options{})
	defer e.Close()
	ok := randBatch(r, 100, 500, 1000)
	if _, err := e.Apply(ok); err != nil {
		t.Fatal(err)
	}
	before := state(e)
	ffs.FailAll(vfs.OpWrite|vfs.OpSync, syscall.ENOSPC)
	bad := randBatch(r, 100, 500, 2000)
	if _, err := e.Apply(bad); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Apply on a full disk: %v, want ENOSPC", err)
	}
	if got := state(e); !maps.Equal(got, before) {
		t.Fatal("a batch that failed to log was applied")
	}
	ffs.Reset()
	if _, err := e.Apply(bad); err != nil {
		t.Fatalf("Apply after the disk has room: %v", err)
	}
	want := state(e)
	e.Close()
	e2 := openAt(t, mem, Options{})
	defer e2.Close()
	if got := state(e2); !maps.Equal(got, want) {
		t.Fatal("state after restart differs")
	}
}

func TestCorruptSnapshotFallsBack(t *testing.T) {
	r := seeded(t)
	fs := vfs.NewMem()
	e := openAt(t, fs, Options{SnapshotEvery: -1})
	e.Apply(randBatch(r, 300, 1000, 1000))
	if err := e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	e.Apply(randBatch(r, 300, 1000, 2000))
	want := state(e)
	e.Close() // writes a second snapshot
	infos, err := snapshot.List(fs, "/data/snap")
	if err != nil || len(infos) != 2 {
		t.Fatalf("snapshots: %v %v", infos, err)
	}
	newest := infos[0].Path
	if infos[1].LSN > infos[0].LSN {
		newest = infos[1].Path
	}
	data, _ := vfs.ReadFile(fs, newest)
	data[len(data)/2] ^= 0xFF
	vfs.WriteFile(fs, newest, data)
	e2 := openAt(t, fs, Options{})
	defer e2.Close()
	if got := state(e2); !maps.Equal(got, want) {
		t.Fatalf("after falling back: %d trucks, want %d", len(got), len(want))
	}
	if len(e2.Recovery().SkippedSnaps) != 1 {
		t.Fatalf("recovery report: %+v", e2.Recovery())
	}
}

func TestRealDirectory(t *testing.T) {
	dir := t.TempDir()
	r := seeded(t)
	e, err := Open(Options{DataDir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.Apply(randBatch(r, 1000, 1000, 1000))
	want := state(e)
	e.Close()
	e2, err := Open(Options{DataDir: filepath.Clean(dir), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if !maps.Equal(state(e2), want) {
		t.Fatal("state differs after reopening a real directory")
	}
}

// TestExpiryReplaysInOrder: an expired truck recreated by a late update
// (older ts than the one it expired with) is in the log after its expiry,
// so a crash and replay bring back exactly the live fleet.
func TestExpiryReplaysInOrder(t *testing.T) {
	fs := vfs.NewMem()
	now := time.Unix(1_764_000_000, 0)
	e := openAt(t, fs, Options{TTL: time.Minute, Now: func() time.Time { return now }})
	at := func(id string, ts int64) []store.Update {
		return []store.Update{{ID: []byte(id), Position: store.MakePosition(1, 1, ts, 0, 0)}}
	}
	if _, err := e.Apply(append(at("gone", 2000), at("back", 2000)...)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if n := e.Sweep(); n != 2 {
		t.Fatalf("swept %d", n)
	}
	if _, err := e.Apply(at("back", 1000)); err != nil { // late, recreating it
		t.Fatal(err)
	}
	want := state(e)
	crashed := fs.CrashClone(vfs.CrashOptions{})
	e.Close()
	e2 := openAt(t, crashed, Options{TTL: time.Minute})
	defer e2.Close()
	if got := state(e2); !maps.Equal(got, want) {
		t.Fatalf("after replay %v, want %v", got, want)
	}
}

// TestMarksNotAheadOfLog: with --fsync interval or never, a snapshot and
// history's runs say which log records they cover; if they reached the
// disk before those records did, a power cut left the log ending below the
// mark, the restarted log numbered new records as if the mark covered
// them, and the next recovery skipped them: acknowledged updates lost on
// a clean restart after the crash.
func TestMarksNotAheadOfLog(t *testing.T) {
	r := seeded(t)
	for _, withHistory := range []bool{false, true} {
		t.Run(fmt.Sprintf("history=%v", withHistory), func(t *testing.T) {
			o := Options{Fsync: wal.FsyncNever, SnapshotEvery: -1}
			if withHistory {
				o.History = &history.Options{Retention: 24 * time.Hour, Now: func() time.Time { return time.Unix(5000, 0) }}
			}
			fs := vfs.NewMem()
			e := openAt(t, fs, o)
			if _, err := e.Apply(randBatch(r, 50, 100, 1000)); err != nil {
				t.Fatal(err)
			}
			if withHistory {
				if err := e.flushHistory(); err != nil {
					t.Fatal(err)
				}
				if err := e.History().SyncCovered(); err != nil { // as historyKeeper does next
					t.Fatal(err)
				}
			} else if err := e.Snapshot(); err != nil {
				t.Fatal(err)
			}
			crashed := fs.CrashClone(vfs.CrashOptions{})
			e.Close()

			// Acknowledged durably this time, then another power cut.
			o.Fsync = wal.FsyncAlways
			e = openAt(t, crashed, o)
			after := randBatch(r, 50, 100, 2000)
			if _, err := e.Apply(after); err != nil {
				t.Fatal(err)
			}
			want := state(e)
			var trail int
			if withHistory {
				trail = historyPoints(t, e, after[0].ID)
			}
			crashed = crashed.CrashClone(vfs.CrashOptions{})
			e.Close()

			e = openAt(t, crashed, o)
			defer e.Close()
			if got := state(e); !maps.Equal(got, want) {
				t.Fatalf("after the second crash %d trucks, want %d: updates acknowledged after the first were skipped", len(got), len(want))
			}
			if withHistory {
				if got := historyPoints(t, e, after[0].ID); got != trail {
					t.Fatalf("truck %s has %d history points after the second crash, %d before it", after[0].ID, got, trail)
				}
			}
		})
	}
}

// historyPoints is how many points history holds of truck id.
func historyPoints(t *testing.T, e *Engine, id []byte) int {
	t.Helper()
	ps, _, err := e.History().Trail(id, 0, 1<<31, nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(ps)
}

// TestApplyEncodedRecovers checks ApplyEncoded's promise: a batch applied
// with its own wal encoding as the log record (what a cluster node logs)
// is applied now and recovered after a power cut exactly as Apply's, with
// Apply and ApplyEncoded interleaved and history on. It would fail if
// ApplyEncoded logged something else than the payload, skipped the log
// or the history, or if the engine re-encoded a record differently.
func TestApplyEncodedRecovers(t *testing.T) {
	r := seeded(t)
	hist := func() *history.Options { return &history.Options{Retention: 24 * time.Hour} }
	fsA, fsB := vfs.NewMem(), vfs.NewMem()
	a := openAt(t, fsA, Options{History: hist()})
	b := openAt(t, fsB, Options{History: hist()})
	var entries []wal.Entry
	var buf []byte
	updates := 0
	for i := range 40 {
		batch := randBatch(r, 1+r.IntN(300), 500, uint32(time.Now().Unix())-3600+uint32(i*10))
		updates += len(batch)
		ra, err := a.Apply(batch)
		if err != nil {
			t.Fatal(err)
		}
		var rb store.Result
		if r.IntN(4) == 0 {
			rb, err = b.Apply(batch)
		} else {
			entries = entries[:0]
			for j := range batch {
				var e wal.Entry
				e.SetUpdate(&batch[j])
				entries = append(entries, e)
			}
			// Split in random records, as a node gathers several messages.
			var recs [][]byte
			buf = buf[:0]
			for rest := entries; len(rest) > 0; {
				k := 1 + r.IntN(len(rest))
				start := len(buf)
				buf = wal.AppendUpdates(buf, rest[:k])
				recs = append(recs, buf[start:])
				rest = rest[k:]
			}
			groups := b.Stats().WAL.Groups
			rb, err = b.ApplyEncoded(batch, recs)
			clear(buf) // copied before it returned
			if g := b.Stats().WAL.Groups - groups; err == nil && g != 1 {
				t.Fatalf("batch %d: %d records took %d group commits, want 1 (one fsync)", i, len(recs), g)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if ra != rb {
			t.Fatalf("batch %d: Apply %+v, ApplyEncoded %+v", i, ra, rb)
		}
	}
	want := state(a)
	if got := state(b); !maps.Equal(got, want) {
		t.Fatalf("live: %d trucks, want %d", len(got), len(want))
	}
	if ha, hb := a.Stats().History, b.Stats().History; ha.Points != hb.Points || ha.Points != int64(updates) {
		t.Fatalf("history points: Apply %d, ApplyEncoded %d, want %d", ha.Points, hb.Points, updates)
	}
	crashed := fsB.CrashClone(vfs.CrashOptions{})
	a.Close()
	b.Close()
	b2 := openAt(t, crashed, Options{History: hist()})
	defer b2.Close()
	if got := state(b2); !maps.Equal(got, want) {
		t.Fatalf("after the power cut %d trucks, want %d", len(got), len(want))
	}
	if rep := b2.Recovery(); rep.ReplayedUpdates != updates {
		t.Fatalf("replayed %d updates, want %d (all from the log)", rep.ReplayedUpdates, updates)
	}
	if _, err := b2.ApplyEncoded(randBatch(r, 1, 10, 1), nil); err == nil {
		t.Fatal("ApplyEncoded without records: no error")
	}
}

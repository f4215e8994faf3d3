package engine

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/store"
)

func TestApplyCountsAndRate(t *testing.T) {
	e, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := store.MakePosition(40, -74, 1000, 10, 90)
	res, err := e.Apply([]store.Update{{ID: []byte("a"), Position: p}, {ID: []byte("b"), Position: p}})
	if err != nil || res.Inserted != 2 {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if got := e.Stats().UpdatesTotal; got != 2 {
		t.Fatalf("UpdatesTotal = %d", got)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(nil); err != ErrClosed {
		t.Fatalf("Apply after Close: %v", err)
	}
	if e.Ready() {
		t.Fatal("ready after Close")
	}
}

func TestRateMeter(t *testing.T) {
	var m rateMeter
	for s := int64(100); s < 120; s++ {
		m.add(s, 50)
	}
	if got := m.perSec(120); got != 50 {
		t.Fatalf("perSec = %v, want 50", got)
	}
	if got := m.perSec(200); got != 0 {
		t.Fatalf("stale buckets counted: %v", got)
	}
}

// TestSweepExpires: the TTL counts from when the engine last heard from a
// truck, whatever its ts says. A truck reporting days-old points stays as
// long as it keeps reporting; one that falls silent is removed after the
// TTL, never sooner, and within two epochs after it.
func TestSweepExpires(t *testing.T) {
	start := time.Unix(1_764_000_000, 0)
	now := start
	obs := &recorder{}
	e, err := Open(Options{TTL: time.Hour, SweepEvery: time.Hour, Now: func() time.Time { return now },
		Observers: []Observer{obs}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	at := func(ts time.Time) store.Position { return store.MakePosition(1, 1, ts.Unix(), 0, 0) }
	e.Apply([]store.Update{
		{ID: []byte("late"), Position: at(start.Add(-48 * time.Hour))}, // a device's buffered past
		{ID: []byte("silent"), Position: at(start)},
		{ID: []byte("chatty-late"), Position: at(start.Add(-time.Hour))},
	})
	epoch := time.Hour / ttlEpochs
	for now.Sub(start) < time.Hour {
		if n := e.Sweep(); n != 0 {
			t.Fatalf("at +%v: Sweep expired %d before the TTL", now.Sub(start), n)
		}
		now = now.Add(epoch / 3)
		// Older than what is stored: stale, but heard.
		if res, _ := e.Apply([]store.Update{{ID: []byte("chatty-late"), Position: at(start.Add(-2 * time.Hour))}}); res.Stale != 1 {
			t.Fatalf("late update: %+v", res)
		}
	}
	for e.Stats().ExpiredTotal < 2 {
		if now.Sub(start) > time.Hour+2*epoch+epoch/3 {
			t.Fatalf("at +%v: expired %v, want late and silent", now.Sub(start), obs.removed)
		}
		e.Sweep()
		now = now.Add(epoch / 3)
		e.Apply([]store.Update{{ID: []byte("chatty-late"), Position: at(start.Add(-2 * time.Hour))}})
	}
	if len(obs.removed) != 2 || obs.removed[0] == obs.removed[1] {
		t.Fatalf("observer saw removals %v", obs.removed)
	}
	if _, ok := e.Store().Get([]byte("chatty-late")); !ok {
		t.Fatal("a truck that keeps reporting late points expired")
	}
	if st := e.Stats(); st.StaleTotal == 0 || st.Sweeps == 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestMemoryGuardRefusesNewTrucks(t *testing.T) {
	// A limit below what the process already uses leaves no room: new
	// trucks are refused, known ones still update.
	e, err := Open(Options{MemoryLimit: 1, SweepEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := store.MakePosition(1, 1, 100, 0, 0)
	e.Apply([]store.Update{{ID: []byte("known"), Position: p}})
	e.guardMemory()
	r, _ := e.Apply([]store.Update{{ID: []byte("new"), Position: p}, {ID: []byte("known"), Position: p}})
	if r.Refused != 1 || r.Updated != 1 {
		t.Fatalf("result %+v", r)
	}
}

// recorder is an Observer that remembers what it saw.
type recorder struct {
	mu      sync.Mutex
	applied []string // id@ts, prev ts or "new"
	removed []string // id/why
}

func (r *recorder) Applied(b *Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, u := range b.Updates {
		if !b.Changed[i] {
			continue
		}
		prev := "new"
		if b.HadPrev[i] {
			prev = fmt.Sprint(b.Prev[i].TS)
		}
		r.applied = append(r.applied, fmt.Sprintf("%s@%d<-%s", u.ID, u.TS, prev))
	}
}

func (r *recorder) Removed(id []byte, _ store.Position, why Removal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, fmt.Sprintf("%s/%d", id, why))
}

func TestObserversSeeChanges(t *testing.T) {
	obs := &recorder{}
	e, err := Open(Options{Observers: []Observer{obs}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := func(ts int64) store.Position { return store.MakePosition(1, 1, ts, 0, 0) }
	e.Apply([]store.Update{{ID: []byte("a"), Position: p(10)}})
	e.Apply([]store.Update{{ID: []byte("a"), Position: p(20)}, {ID: []byte("a"), Position: p(5)}})
	e.Delete([]byte("a"))
	want := []string{"a@10<-new", "a@20<-10"}
	if !slices.Equal(obs.applied, want) || !slices.Equal(obs.removed, []string{"a/0"}) {
		t.Fatalf("applied %v (want %v), removed %v", obs.applied, want, obs.removed)
	}
}

package engine

import (
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

func TestSweepExpires(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	var gone []string
	e, err := Open(Options{TTL: time.Hour, SweepEvery: time.Hour, Now: func() time.Time { return now },
		OnExpire: func(id []byte, _ store.Position) { gone = append(gone, string(id)) }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	old := store.MakePosition(1, 1, now.Add(-2*time.Hour).Unix(), 0, 0)
	fresh := store.MakePosition(1, 1, now.Add(-time.Minute).Unix(), 0, 0)
	e.Apply([]store.Update{{ID: []byte("old"), Position: old}, {ID: []byte("fresh"), Position: fresh}})
	if n := e.Sweep(); n != 1 {
		t.Fatalf("Sweep expired %d, want 1", n)
	}
	if len(gone) != 1 || gone[0] != "old" {
		t.Fatalf("OnExpire saw %v", gone)
	}
	if _, ok := e.Store().Get([]byte("fresh")); !ok {
		t.Fatal("fresh truck expired")
	}
	if e.Stats().ExpiredTotal != 1 {
		t.Fatal("expiry not counted")
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

package engine

import (
	"testing"

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

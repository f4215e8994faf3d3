package engine

import (
	"sync"

	"github.com/fleetd/fleetd/internal/fleet"

	"github.com/fleetd/fleetd/internal/store"
)

// The observer contract lives in package fleet, beside the types it
// carries, so that observers (the live feed, the alert rules) implement it
// in their own packages without importing the engine.
type (
	Batch    = fleet.Batch
	Removal  = fleet.Removal
	Observer = fleet.Observer
)

// Why a truck left the store.
const (
	Deleted = fleet.Deleted
	Expired = fleet.Expired
)

var batchPool = sync.Pool{New: func() any { return new(Batch) }}

// applyObserved applies a batch recording previous positions for the
// observers, then hands it to each of them.
func (e *Engine) applyObserved(batch []store.Update) store.Result {
	b := batchPool.Get().(*Batch)
	defer batchPool.Put(b)
	n := len(batch)
	if cap(b.Changed) < n {
		b.Changed, b.HadPrev, b.Prev = make([]bool, n), make([]bool, n), make([]store.Position, n)
	}
	b.Updates, b.Changed, b.HadPrev, b.Prev = batch, b.Changed[:n], b.HadPrev[:n], b.Prev[:n]
	clear(b.Changed)
	res := e.st.ApplyFunc(batch, func(i int, prev store.Position, ok bool) {
		b.Changed[i], b.HadPrev[i], b.Prev[i] = true, ok, prev
	})
	for _, o := range e.opts.Observers {
		o.Applied(b)
	}
	b.Updates = nil
	return res
}

func (e *Engine) notifyRemoved(id []byte, p store.Position, why Removal) {
	for _, o := range e.opts.Observers {
		o.Removed(id, p, why)
	}
}

package engine

import (
	"sync"

	"github.com/fleetd/fleetd/internal/store"
)

// Batch is what an Observer sees of one applied batch.
type Batch struct {
	Updates []store.Update
	// Changed[i] says whether Updates[i] changed the store: it was not
	// stale, invalid or refused. For those, HadPrev[i] says whether the
	// truck existed before and Prev[i] is where it was.
	Changed []bool
	HadPrev []bool
	Prev    []store.Position
}

// Removal says why a truck left the store.
type Removal uint8

const (
	Deleted Removal = iota // DELETE by a client
	Expired                // not updated for the TTL
)

// Observer sees every change after it is durable and applied, outside the
// store's locks: the live feed and the alert rules are observers.
// Applied and Removed are called from many goroutines at once; a Batch and
// an id are valid only during the call.
type Observer interface {
	Applied(b *Batch)
	Removed(id []byte, p store.Position, why Removal)
}

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

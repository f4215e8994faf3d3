package server

import (
	"sync"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/feed"
	"github.com/fleetd/fleetd/internal/store"
)

// feedObserver publishes what the engine applies to the live feed: the
// updates that changed the store (not stale ones), and expiries.
type feedObserver struct {
	hub  *feed.Hub
	pool sync.Pool // *[]store.Update
}

func newFeedObserver(h *feed.Hub) *feedObserver {
	return &feedObserver{hub: h, pool: sync.Pool{New: func() any { return new([]store.Update) }}}
}

func (f *feedObserver) Applied(b *engine.Batch) {
	n := 0
	for _, c := range b.Changed {
		if c {
			n++
		}
	}
	switch n {
	case 0:
		return
	case len(b.Updates): // the common case: nothing to filter
		f.hub.PublishPositions(b.Updates)
		return
	}
	p := f.pool.Get().(*[]store.Update)
	changed := (*p)[:0]
	for i := range b.Updates {
		if b.Changed[i] {
			changed = append(changed, b.Updates[i])
		}
	}
	f.hub.PublishPositions(changed)
	clear(changed) // drop references to the request's ID bytes
	*p = changed[:0]
	f.pool.Put(p)
}

func (f *feedObserver) Removed(id []byte, p store.Position, why engine.Removal) {
	if why == engine.Expired {
		f.hub.PublishExpired(id, p.Lat, p.Lon, p.TS)
	}
}

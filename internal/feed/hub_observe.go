package feed

import "github.com/fleetd/fleetd/internal/fleet"

var _ fleet.Observer = (*Hub)(nil)

// Applied publishes the updates of b that changed the store (not stale,
// invalid or refused ones) to the live feed (fleet.Observer).
func (h *Hub) Applied(b *fleet.Batch) {
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
		h.PublishPositions(b.Updates)
		return
	}
	p, _ := h.changed.Get().(*[]fleet.Update)
	if p == nil {
		p = new([]fleet.Update)
	}
	changed := (*p)[:0]
	for i := range b.Updates {
		if b.Changed[i] {
			changed = append(changed, b.Updates[i])
		}
	}
	h.PublishPositions(changed)
	clear(changed) // drop references to the request's ID bytes
	*p = changed[:0]
	h.changed.Put(p)
}

// Removed publishes an expiry (fleet.Observer); a deletion by a client is
// not an event of the feed.
func (h *Hub) Removed(id []byte, p fleet.Position, why fleet.Removal) {
	if why == fleet.Expired {
		h.PublishExpired(id, p.Lat, p.Lon, p.TS)
	}
}

package feed

import (
	"github.com/fleetd/fleetd/internal/store"
)

// Limits on what one event carries inline.
const (
	// MaxIDLen is the longest truck ID an event carries (the store's limit).
	// Events with an empty or longer ID are not queued; Stats counts them
	// as Invalid.
	MaxIDLen = store.MaxIDLen
	// MaxRuleLen is the longest alert rule name carried; longer names are
	// cut at a UTF-8 boundary at or below this many bytes.
	MaxRuleLen = 128
)

// Kinds of control events.
const (
	kindExpired uint8 = iota + 1
	kindAlert
)

// Alert states as stored in a ctlEntry.
const (
	stateFiring uint8 = iota + 1
	stateResolved
)

// posEntry is one pending position event in a subscriber's ring. It has no
// pointers: a ring of them is one allocation the garbage collector never
// scans.
//
//	| lat int32 | lon int32 | ts uint32 | speed uint16 | heading uint16 | idLen uint8 | id [64]byte | pad 3 |
//	= 84 bytes (checked by TestEntrySizes)
type posEntry struct {
	lat, lon int32
	ts       uint32
	speed    uint16
	heading  uint16
	idLen    uint8
	id       [MaxIDLen]byte
}

// ctlEntry is one pending expired or alert event. mark is the subscriber's
// position sequence number when it was queued: it is delivered after the
// positions numbered below mark and before the others, so the two rings
// together keep publish order.
//
//	| mark uint64 | ts uint32 | lat int32 | lon int32 | kind | state | idLen | ruleLen |
//	| id [64]byte | rule [128]byte |
//	= 216 bytes (checked by TestEntrySizes)
type ctlEntry struct {
	mark                        uint64
	ts                          uint32
	lat, lon                    int32
	kind, state, idLen, ruleLen uint8
	id                          [MaxIDLen]byte
	rule                        [MaxRuleLen]byte
}

// ring is a fixed-capacity FIFO of pointer-free entries. head and tail count
// entries ever taken and ever queued; slot i lives at buf[i&(len(buf)-1)],
// len(buf) being a power of two. It grows by doubling up to a limit and then
// drops its oldest entry to make room: it never blocks and never exceeds the
// limit.
type ring[T any] struct {
	buf        []T
	head, tail uint64
}

func (r *ring[T]) len() int { return int(r.tail - r.head) }

// at returns the entry with sequence number i (head ≤ i < tail).
func (r *ring[T]) at(i uint64) *T { return &r.buf[i&uint64(len(r.buf)-1)] }

// push returns the slot for a new entry at the tail. When the ring is full at
// limit entries it first drops the oldest and reports dropped.
func (r *ring[T]) push(limit int) (e *T, dropped bool) {
	if r.len() == len(r.buf) {
		if len(r.buf) < limit {
			r.grow(min(2*len(r.buf), limit))
		} else {
			r.head++
			dropped = true
		}
	}
	e = r.at(r.tail)
	r.tail++
	return e, dropped
}

// grow reallocates to n entries (a power of two), keeping sequence numbers.
func (r *ring[T]) grow(n int) {
	nb := make([]T, n)
	mask := uint64(n - 1)
	for i := r.head; i != r.tail; i++ {
		nb[i&mask] = *r.at(i)
	}
	r.buf = nb
}

// copyOut copies the n oldest entries into dst[:n] and removes them.
func (r *ring[T]) copyOut(dst []T, n int) {
	mask := uint64(len(r.buf) - 1)
	start := int(r.head & mask)
	k := copy(dst[:n], r.buf[start:])
	if k < n {
		copy(dst[k:n], r.buf)
	}
	r.head += uint64(n)
}

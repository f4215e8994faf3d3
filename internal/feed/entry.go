package feed

import (
	"github.com/fleetd/fleetd/internal/fleet"
)

// Limits on what one event carries inline.
const (
	// MaxIDLen is the longest truck ID an event carries (the store's limit).
	// Events with an empty or longer ID are not queued; Stats counts them
	// as Invalid.
	MaxIDLen = fleet.MaxIDLen
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

// posRing is a FIFO of encoded position events, with no pointers: each
// event's JSON after its constant start (its payload, see
// appendPositionPayload) lies in buf, contiguous modulo len(buf) and
// possibly wrapping around its end, and its length in lens.
//
//	buf:  | payload head | payload head+1 | … | payload tail-1 |   (from hoff, used bytes)
//	lens: | n head | n head+1 | … | n tail-1 |                   (lens[seq & (len(lens)-1)])
//
// head and tail count events ever taken and ever queued. Both arrays grow
// by doubling, lens up to the event limit and buf up to the byte limit;
// then the oldest events are dropped to make room: it never blocks and
// never holds more than its limits. The lengths live apart from the
// payloads so that finding where the first n events end reads a few
// dense cache lines rather than one line per event.
type posRing struct {
	lens       []uint16 // a power of two long
	buf        []byte
	head, tail uint64 // event sequence numbers
	hoff, used int    // byte offset of the oldest payload, bytes in use
}

func (r *posRing) len() int { return int(r.tail - r.head) }

// lenOf returns the payload length of event seq (head ≤ seq < tail).
func (r *posRing) lenOf(seq uint64) int { return int(r.lens[seq&uint64(len(r.lens)-1)]) }

// dropOldest removes the oldest event.
func (r *posRing) dropOldest() {
	n := r.lenOf(r.head)
	if r.hoff += n; r.hoff >= len(r.buf) {
		r.hoff -= len(r.buf)
	}
	r.used -= n
	r.head++
}

// push appends payload p, dropping the oldest events while the ring holds
// maxEvents events (a power of two) or p would not fit in maxBytes. It
// returns how many it dropped. p must not be longer than maxBytes.
func (r *posRing) push(p []byte, maxEvents, maxBytes int) (dropped int) {
	for r.len() == len(r.lens) {
		if len(r.lens) < maxEvents {
			r.growLens(min(2*len(r.lens), maxEvents))
			break
		}
		r.dropOldest()
		dropped++
	}
	for r.used+len(p) > len(r.buf) {
		if len(r.buf) < maxBytes {
			r.growBuf(min(2*len(r.buf), maxBytes))
			continue
		}
		if r.len() == 0 {
			panic("BUG: feed: a position payload longer than its ring's byte limit")
		}
		r.dropOldest()
		dropped++
	}
	toff := r.hoff + r.used
	if toff >= len(r.buf) {
		toff -= len(r.buf)
	}
	if k := copy(r.buf[toff:], p); k < len(p) {
		copy(r.buf, p[k:])
	}
	r.used += len(p)
	r.lens[r.tail&uint64(len(r.lens)-1)] = uint16(len(p))
	r.tail++
	return dropped
}

// growLens reallocates lens to n entries (a power of two), keeping
// sequence numbers.
func (r *posRing) growLens(n int) {
	nl := make([]uint16, n)
	for i := r.head; i != r.tail; i++ {
		nl[i&uint64(n-1)] = uint16(r.lenOf(i))
	}
	r.lens = nl
}

// growBuf reallocates buf to n bytes, the payloads moved to its start.
func (r *posRing) growBuf(n int) {
	nb := make([]byte, n)
	r.copyBytes(nb, r.used)
	r.buf, r.hoff = nb, 0
}

// copyBytes copies the n oldest bytes into dst[:n].
func (r *posRing) copyBytes(dst []byte, n int) {
	k := copy(dst[:n], r.buf[r.hoff:])
	if k < n {
		copy(dst[k:n], r.buf)
	}
}

// span returns how many of the oldest events, at most n, fit in maxBytes
// bytes, and their size.
func (r *posRing) span(n, maxBytes int) (events, size int) {
	for ; events < n; events++ {
		l := r.lenOf(r.head + uint64(events))
		if size+l > maxBytes {
			break
		}
		size += l
	}
	return events, size
}

// copyOut moves the n oldest events, size bytes (from span), out: their
// payloads to buf[:size] and their lengths to lens[:n].
func (r *posRing) copyOut(buf []byte, lens []uint16, n, size int) {
	r.copyBytes(buf, size)
	for i := range n {
		lens[i] = uint16(r.lenOf(r.head + uint64(i)))
	}
	if r.hoff += size; r.hoff >= len(r.buf) {
		r.hoff -= len(r.buf)
	}
	r.used -= size
	r.head += uint64(n)
}

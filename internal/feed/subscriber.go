package feed

import (
	"math"
	"sync"
	"sync/atomic"
)

// Sizes of a subscriber's fixed structures.
const (
	minRing    = 64       // a ring's first allocation in events, grown by doubling to its limit
	takeMax    = 256      // position events copied out per take
	takeBytes  = 32 << 10 // position payload bytes copied out per take (≥ maxPosPayload)
	ctlTakeMax = 32       // control events copied out per take
	hzWays     = 4        // max_hz table associativity
	hzSets     = 2048     // max_hz table sets: 8192 slots × 8 bytes = 64 KiB
	noWake     = math.MaxInt
)

// hzSlot remembers when a truck's last position was queued to a subscriber
// with max_hz. tag is 32 bits of the ID's hash with the low bit set (0 =
// empty); last is the hub's millisecond clock, compared with wrap-around
// subtraction.
type hzSlot struct {
	tag, last uint32
}

// subscriber is one connected client: its immutable filter, its bounded
// queues, and the counters publishers keep for it.
type subscriber struct {
	slot     uint32   // index in the hub's subscriber table while connected
	m        match    // immutable after subscribe
	ids      []string // immutable; for unsubscribe
	posMax   int      // position ring limits: events (a power of two) and bytes
	posBytes int
	ctlMax   int           // control ring limit (a power of two)
	wake     chan struct{} // capacity 1: publisher → consumer, "events are waiting"
	// A wide subscriber's conflation class (nil for others), and what its
	// consumer has written of it: the last frame's seq and total. The
	// class's loop sets frameReady when it seals a frame.
	cls                *class
	sentSeq, sentTotal uint64
	frameReady         atomic.Bool

	// mu guards everything below. Publishers hold it while they queue a
	// batch's events; the consumer holds it while it copies a chunk out.
	// Neither does I/O or allocates under it (except a ring's bounded
	// growth, at most log2(Buffer/64) times in the subscriber's life).
	mu struct {
		sync.Mutex
		pos         posRing
		ctl         ring[ctlEntry]
		hz          []hzSlot // hzSets*hzWays entries when m.hzMs != 0
		lag         uint64   // events dropped since the last take
		behindSince int64    // hub clock (ns) of the first drop of the current behind spell; 0 = keeping up
		passDrops   uint64   // events dropped while busy in the consumer's current pass
		busy        bool     // the consumer is in a pass: between a take of events and its next sleep
		wakeAt      int      // signal wake when this many events are pending
		closed      bool     // unsubscribed: publishers still holding an old snapshot queue nothing

		queued, dropped, throttled uint64
	}
}

func newSubscriber(f *filter, posMax, posBytes, ctlMax int) *subscriber {
	s := &subscriber{
		m:        f.m,
		ids:      f.ids,
		posMax:   posMax,
		posBytes: posBytes,
		ctlMax:   ctlMax,
		wake:     make(chan struct{}, 1),
	}
	s.mu.pos.lens = make([]uint16, min(minRing, posMax))
	s.mu.pos.buf = make([]byte, min(minRing*posPayloadBudget, posBytes))
	s.mu.ctl.buf = make([]ctlEntry, min(minRing/4, ctlMax))
	if f.m.hzMs != 0 && !f.m.wide { // a wide one's max_hz is its frame period
		s.mu.hz = make([]hzSlot, hzSets*hzWays)
	}
	s.mu.wakeAt = noWake
	return s
}

// hzAllowLocked applies max_hz to a truck whose ID hashes to h at time now
// (ms) and, when it lets the event through, records now for the truck.
//
// The table is 4-way set associative and never grows: a truck not found
// takes an empty way or evicts the way sent longest ago. An evicted truck
// is "new" on its next event and is let through early, so a crowded set
// over-sends slightly; the table never under-sends (two trucks share a
// way only if 11 bits of set index and 31 bits of tag all collide).
func (s *subscriber) hzAllowLocked(h uint64, now uint32) bool {
	set := s.mu.hz[(h%hzSets)*hzWays:][:hzWays]
	tag := uint32(h>>32) | 1
	oldest := 0
	for i := range set {
		w := &set[i]
		if w.tag == tag {
			if now-w.last < s.m.hzMs {
				return false
			}
			w.last = now
			return true
		}
		if w.tag == 0 { // ways fill in order and are never emptied
			*w = hzSlot{tag, now}
			return true
		}
		if now-w.last > now-set[oldest].last {
			oldest = i
		}
	}
	set[oldest] = hzSlot{tag, now}
	return true
}

// pushPositions queues, for every i in idx (in order), the payload of the
// position record at enc[at[i]:] (see appendPositionRecord). hashes[i] is
// the ID hash of update i when the subscriber uses max_hz. nowMs is the
// hub's ms clock; clock reads the ns clock, called only if something is
// dropped.
func (s *subscriber) pushPositions(enc []byte, at, idx []uint32, hashes []uint64, nowMs uint32, clock func() int64) {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return
	}
	var queued, dropped, throttled uint64
	for _, i := range idx {
		if s.m.hzMs != 0 && !s.hzAllowLocked(hashes[i], nowMs) {
			throttled++
			continue
		}
		o := int(at[i])
		n := int(enc[o]) | int(enc[o+1])<<8
		dropped += uint64(s.mu.pos.push(enc[o+2:o+2+n], s.posMax, s.posBytes))
		queued++
	}
	s.mu.throttled += throttled
	wake := s.queuedLocked(queued, dropped, clock)
	s.mu.Unlock()
	if wake {
		s.signal()
	}
}

// pushCtl queues a copy of one expired or alert event (its mark is set
// here).
func (s *subscriber) pushCtl(ev *ctlEntry, clock func() int64) {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return
	}
	e, drop := s.mu.ctl.push(s.ctlMax)
	*e = *ev
	e.mark = s.mu.pos.tail
	var dropped uint64
	if drop {
		dropped = 1
	}
	wake := s.queuedLocked(1, dropped, clock)
	s.mu.Unlock()
	if wake {
		s.signal()
	}
}

// queuedLocked accounts for queued and dropped events and reports whether
// the consumer must be woken.
func (s *subscriber) queuedLocked(queued, dropped uint64, clock func() int64) bool {
	s.mu.queued += queued
	if dropped != 0 {
		s.mu.dropped += dropped
		s.mu.lag += dropped
		// Drops while the consumer is idle come from a burst larger than
		// the ring, not from a slow client: they do not make it behind.
		if s.mu.busy {
			s.mu.passDrops += dropped
			if s.mu.behindSince == 0 {
				s.mu.behindSince = max(clock(), 1)
			}
		}
	}
	if queued != 0 && s.mu.wakeAt != noWake &&
		(s.mu.pos.len()+s.mu.ctl.len() >= s.mu.wakeAt || 2*s.mu.pos.used >= s.posBytes) {
		s.mu.wakeAt = noWake
		return true
	}
	return false
}

func (s *subscriber) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeBuf receives one chunk of a subscriber's pending events.
type takeBuf struct {
	lag      uint64     // events dropped before this chunk
	posFirst uint64     // sequence number of the first position
	posLens  []uint16   // payload lengths of the positions taken; cap = takeMax
	pos      []byte     // their payloads, one after the other; cap = takeBytes
	ctl      []ctlEntry // len = taken, cap = ctlTakeMax
}

func newTakeBuf() *takeBuf {
	return &takeBuf{posLens: make([]uint16, 0, takeMax), pos: make([]byte, 0, takeBytes), ctl: make([]ctlEntry, 0, ctlTakeMax)}
}

// take copies the oldest pending events (at most takeMax positions in
// takeBytes, and ctlTakeMax control events, never splitting their order) into t and
// removes them. It reports whether t holds anything and, if the
// subscriber is behind and has lost events during the current pass, the
// time since which it has been behind (else 0). It marks the consumer busy
// and stops wake signals until the consumer sleeps.
func (s *subscriber) take(t *takeBuf) (got bool, behindSince int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.wakeAt = noWake
	p, c := &s.mu.pos, &s.mu.ctl
	t.lag, s.mu.lag = s.mu.lag, 0
	np, size := p.span(min(p.len(), cap(t.posLens)), cap(t.pos))
	limit := p.head + uint64(np)
	nc := 0
	for nc < c.len() && nc < cap(t.ctl) && c.at(c.head+uint64(nc)).mark <= limit {
		nc++
	}
	if nc < c.len() {
		// More control events than fit: positions after the first one
		// left behind must wait for it.
		if m := c.at(c.head + uint64(nc)).mark; m < limit {
			np, size = p.span(int(max(m, p.head)-p.head), cap(t.pos))
		}
	}
	t.posFirst = p.head
	t.pos, t.posLens = t.pos[:size], t.posLens[:np]
	p.copyOut(t.pos, t.posLens, np, size)
	t.ctl = t.ctl[:nc]
	c.copyOut(t.ctl, nc)
	if np+nc != 0 {
		s.mu.busy = true
	}
	behindSince = 0
	if s.mu.passDrops != 0 {
		behindSince = s.mu.behindSince
	}
	return t.lag != 0 || np != 0 || nc != 0, behindSince
}

// sleep ends a pass of the consumer (takes and the writes that follow
// them) and arms the wake signal: when nothing is pending, for the first
// event; otherwise (the consumer is holding back to batch) only when the
// ring is half full. It reports whether events are pending and, if the
// pass lost events, the time since which the subscriber has been behind.
//
// A subscriber is behind from a drop during a pass until a whole pass
// goes by without one. Drops while the consumer sleeps do not count: they
// come from a single burst larger than the ring, not from a slow client.
func (s *subscriber) sleep() (pending bool, behindSince int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.busy = false
	if s.mu.passDrops == 0 {
		s.mu.behindSince = 0
	}
	s.mu.passDrops = 0
	behindSince = s.mu.behindSince
	n := s.mu.pos.len() + s.mu.ctl.len()
	pending = n != 0 || s.mu.lag != 0 || s.frameReady.Load()
	if pending {
		s.mu.wakeAt = max(s.posMax/2, 1)
	} else {
		s.mu.wakeAt = 1
	}
	return pending, behindSince
}

// subCounters are a subscriber's lifetime counts.
type subCounters struct {
	queued, dropped, throttled uint64
}

func (s *subscriber) counters() subCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return subCounters{s.mu.queued, s.mu.dropped, s.mu.throttled}
}

// close stops all queueing, frees the rings and returns the final counts.
func (s *subscriber) close() subCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.closed = true
	s.mu.pos = posRing{}
	s.mu.ctl = ring[ctlEntry]{}
	s.mu.hz = nil
	return subCounters{s.mu.queued, s.mu.dropped, s.mu.throttled}
}

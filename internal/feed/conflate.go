package feed

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// Conflation of wide subscribers (see doc.go): each distinct frame period
// is a class; every position published while a class has subscribers is
// written into the class's builder once (the newest per truck kept), and
// every period the builder is sealed into an immutable frame that all the
// class's subscribers write out from.
const (
	// frameTick is the conflation clock: frame periods are multiples of
	// it, so wide subscribers get at most 1/frameTick frames a second.
	frameTick = 100 * time.Millisecond
	// defaultWideHz is Options.WideHz's default.
	defaultWideHz = 1
	// defaultFrameTrucks is Options.FrameTrucks's default: frames of about
	// 25 MiB with IDs like truck-0000042.
	defaultFrameTrucks = 1 << 18
)

// frameRec is one truck's newest position in a builder or frame: its
// encoded payload at enc[off:off+n] (after posPrefix) and its position,
// for bbox filtering.
type frameRec struct {
	off      uint32
	n        uint16
	lat, lon int32
}

// frame is a sealed, immutable period of positions: the newest of each
// truck published during the period, in the order the trucks first
// appeared in it.
type frame struct {
	seq     uint64 // 1, 2, … per class
	recs    []frameRec
	enc     []byte // the records' payloads
	payload int    // len(enc)
	dropped uint64 // trucks refused during the period: the frame was full
	total   uint64 // records in every frame of the class up to this one

	// The whole frame framed for subscribers without a bbox, built once
	// by the first that needs it: SSE records one after the other, and
	// WebSocket messages (JSON arrays of at most about wsBatchBytes) with
	// their ends.
	sseOnce, wsOnce sync.Once
	sse, ws         []byte
	wsEnds          []uint32
}

// sizeSSE returns the length of the frame's SSE framing (the WebSocket
// one is a little shorter).
func (f *frame) sizeSSE() int {
	return f.payload + len(f.recs)*(len("data: \n\n")+len(posPrefix))
}

// framedSSE returns the frame as SSE records.
func (f *frame) framedSSE() []byte {
	f.sseOnce.Do(func() {
		b := make([]byte, 0, f.sizeSSE())
		for _, r := range f.recs {
			b = append(b, "data: "+posPrefix...)
			b = append(append(b, f.enc[r.off:r.off+uint32(r.n)]...), '\n', '\n')
		}
		f.sse = b
	})
	return f.sse
}

// framedWS returns the frame as WebSocket messages: ws[ends[i-1]:ends[i]].
func (f *frame) framedWS() ([]byte, []uint32) {
	f.wsOnce.Do(func() {
		b := make([]byte, 0, len(f.enc)+len(f.recs)*(1+len(posPrefix))+len(f.enc)/wsBatchBytes+2)
		var ends []uint32
		start := 0
		for _, r := range f.recs {
			if len(b) == start {
				b = append(b, '[')
			} else {
				b = append(b, ',')
			}
			b = append(append(b, posPrefix...), f.enc[r.off:r.off+uint32(r.n)]...)
			if len(b)-start >= wsBatchBytes {
				b = append(b, ']')
				start = len(b)
				ends = append(ends, uint32(start))
			}
		}
		if len(b) > start {
			b = append(b, ']')
			ends = append(ends, uint32(len(b)))
		}
		f.ws, f.wsEnds = b, ends
	})
	return f.ws, f.wsEnds
}

// pendingRec is one truck's newest position in a builder, its ID at
// ids[idOff:idOff+idLen]; idLen 0 is a hole (the truck was removed). The
// builder keeps positions, not their JSON: a truck updated many times in
// a period is encoded once, when the frame is sealed.
type pendingRec struct {
	pos   fleet.Position
	idOff uint32
	idLen uint8
}

// class is the conflation state of one frame period.
type class struct {
	periodTicks int64
	subs        int   // subscribers, guarded by Hub.mu
	sealAt      int64 // the conflation loop's tick before which no frame is sealed (the byte budget); its own
	cur         atomic.Pointer[frame]

	// The sealer's (conflateLoop's) own: the builder's slices of the
	// frame before last, emptied, swapped in at the next seal; and the
	// records sealed so far.
	spare    []pendingRec
	spareIDs []byte
	total    uint64

	// mu guards the builder. Publishers hold it to add a batch; the
	// sealing tick to swap the builder out.
	mu struct {
		sync.Mutex
		at      map[uint64]int32 // ID hash → index in recs
		recs    []pendingRec
		ids     []byte
		dropped uint64
		seq     uint64
	}
}

func newClass(periodTicks int64) *class {
	c := &class{periodTicks: periodTicks}
	c.mu.at = map[uint64]int32{}
	return c
}

// add writes ups (hashes[i] = maphash of ups[i].ID) into the builder,
// replacing a truck's earlier position of the period. Past limit trucks a
// new truck is refused and counted.
func (c *class) add(ups []fleet.Update, hashes []uint64, limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range ups {
		u := &ups[i]
		if n := len(u.ID); n == 0 || n > MaxIDLen {
			continue
		}
		if j, ok := c.mu.at[hashes[i]]; ok {
			c.mu.recs[j].pos = u.Position
			continue
		}
		if len(c.mu.recs) >= limit {
			c.mu.dropped++
			continue
		}
		c.mu.at[hashes[i]] = int32(len(c.mu.recs))
		c.mu.recs = append(c.mu.recs, pendingRec{pos: u.Position, idOff: uint32(len(c.mu.ids)), idLen: uint8(len(u.ID))})
		c.mu.ids = append(c.mu.ids, u.ID...)
	}
}

// remove forgets a truck's position of the period (it expired: a frame
// must not bring it back).
func (c *class) remove(hash uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	j, ok := c.mu.at[hash]
	if !ok {
		return
	}
	c.mu.recs[j].idLen = 0 // a hole, skipped when sealed
	delete(c.mu.at, hash)
}

// seal turns the builder into the class's next frame and starts an empty
// one. It returns false (and publishes nothing) if the period had no
// position and dropped none. Only the swap holds the builder's lock: the
// positions are encoded after it, so publishers never wait for a frame's
// encoding. Frames are never reused: a subscriber still writing an older
// frame keeps it alive, and the garbage collector frees it after (frames
// are two slices of pointer-free data). Only conflateLoop seals.
func (c *class) seal() bool {
	c.mu.Lock()
	if len(c.mu.recs) == 0 && c.mu.dropped == 0 {
		c.mu.Unlock()
		return false
	}
	pend, ids := c.mu.recs, c.mu.ids
	c.mu.recs, c.mu.ids = c.spare[:0], c.spareIDs[:0]
	clear(c.mu.at)
	c.mu.seq++
	seq, dropped := c.mu.seq, c.mu.dropped
	c.mu.dropped = 0
	c.mu.Unlock()

	recs := make([]frameRec, 0, len(pend))
	enc := make([]byte, 0, len(ids)+len(pend)*encPerPosition)
	for i := range pend {
		r := &pend[i]
		if r.idLen == 0 {
			continue // a hole: a removed truck
		}
		off := len(enc)
		enc = appendPositionPayload(enc, ids[r.idOff:r.idOff+uint32(r.idLen)], &r.pos)
		recs = append(recs, frameRec{off: uint32(off), n: uint16(len(enc) - off), lat: r.pos.Lat, lon: r.pos.Lon})
	}
	c.spare, c.spareIDs = pend, ids
	c.total += uint64(len(recs))
	c.cur.Store(&frame{seq: seq, recs: recs, enc: enc, payload: len(enc), dropped: dropped, total: c.total})
	return true
}

// encPerPosition is about what a position's payload takes besides its ID
// (coordinates, ts, speed, heading and the keys), to size a frame's
// encoding in one allocation.
const encPerPosition = 80

// widePeriod returns the frame period, in frameTicks, of a subscriber with
// filter f if it is wide (conflated), else 0.
func (h *Hub) widePeriod(f *filter) int64 {
	if h.opt.WideHz < 0 || f.m.hasIDs || f.m.types&typePosition == 0 {
		return 0
	}
	if f.m.hasBox && f.m.boxCells(nil) <= gridMaxCells {
		return 0
	}
	ms := 1000 / h.opt.WideHz
	if f.m.hzMs != 0 {
		ms = float64(f.m.hzMs)
	}
	return max(1, int64(math.Ceil(ms/float64(frameTick.Milliseconds()))))
}

// conflateLoop seals each class's frame every period, on a frameTick
// clock, and wakes the class's subscribers. It runs from the first wide
// subscriber's subscribe until a tick finds none left (or Close).
//
// With a byte budget (Options.WideBytesPerSec), a class whose frame,
// written to each of its subscribers, takes more than a period of its
// share of the budget (the budget over the classes) seals its next frame
// only once that time has passed: frames come less often and hold more
// trucks' newest positions instead of being skipped by paced writers, so
// the subscribers keep writing the same frame and no more frames are
// pinned than without a budget.
func (h *Hub) conflateLoop() {
	defer h.loopWG.Done()
	t := time.NewTicker(frameTick)
	defer t.Stop()
	var tick int64
	var subs []int // by class in sn.classes, this tick
	for {
		select {
		case <-h.quit:
			h.mu.Lock()
			h.mu.looping = false
			h.mu.Unlock()
			return
		case <-t.C:
		}
		tick++
		sn := h.snap.Load()
		h.mu.Lock()
		if len(h.mu.classes) == 0 {
			h.mu.looping = false
			h.mu.Unlock()
			return
		}
		subs = subs[:0]
		if sn != nil {
			for _, c := range sn.classes {
				subs = append(subs, c.subs)
			}
		}
		h.mu.Unlock()
		if sn == nil {
			continue
		}
		for k, c := range sn.classes {
			if tick%c.periodTicks != 0 || tick < c.sealAt || !c.seal() {
				continue
			}
			f := c.cur.Load()
			c.sealAt = tick + h.budgetTicks(f, subs[k], len(sn.classes))
			h.frames.Add(1)
			if f.dropped != 0 {
				h.frameDropped.Add(f.dropped)
			}
			for _, s := range sn.subs {
				if s != nil && s.cls == c {
					s.frameReady.Store(true)
					s.signal()
				}
			}
		}
	}
}

// budgetTicks returns how many frameTicks writing frame f to subs
// subscribers takes at a classes-th of the byte budget (0 without one).
func (h *Hub) budgetTicks(f *frame, subs, classes int) int64 {
	if h.pace == nil || subs == 0 {
		return 0
	}
	bytes := float64(f.sizeSSE()) * float64(subs) * float64(classes)
	return int64(bytes * h.pace.nsPerByte / float64(frameTick))
}

// publishWide adds a batch to every conflation class.
func (h *Hub) publishWide(sn *snapshot, ups []fleet.Update, sc *pubScratch) {
	sc.hashes = growTo(sc.hashes, len(ups))
	for i := range ups {
		sc.hashes[i] = maphash.Bytes(h.seed, ups[i].ID)
	}
	for _, c := range sn.classes {
		c.add(ups, sc.hashes, h.opt.FrameTrucks)
	}
}

// writeFrame writes the class's newest frame, if the subscriber has not
// written it yet: first a lag notice for the records of frames it skipped
// (it was slower than the period) and the trucks the frame refused, then
// the positions its bbox (if any) passes. Each write of frame bytes waits
// for the hub's budget (pace).
func (p *pump) writeFrame(ctx context.Context) error {
	s := p.s
	s.frameReady.Store(false)
	f := s.cls.cur.Load()
	if f == nil || f.seq == s.sentSeq {
		return nil
	}
	lost := f.total - uint64(len(f.recs)) - s.sentTotal + f.dropped
	s.sentSeq, s.sentTotal = f.seq, f.total
	queued := uint64(0)
	if lost != 0 && s.m.types&typeLag != 0 {
		p.open()
		p.buf = appendLag(p.buf, lost)
		if err := p.end(false); err != nil {
			return err
		}
	}
	if !s.m.hasBox && len(f.recs) > 0 {
		// The shared framing: written as it is, no copy per subscriber.
		if len(p.buf) > 0 {
			if err := p.send(); err != nil {
				return err
			}
		}
		if err := p.writeShared(ctx, f); err != nil {
			return err
		}
		queued = uint64(len(f.recs))
		p.h.delivered.Add(queued)
	}
	for _, r := range f.recs {
		if !s.m.hasBox {
			break
		}
		if !s.m.inBox(r.lat, r.lon) {
			continue
		}
		if p.ws {
			p.open()
			p.buf = append(p.buf, posPrefix...)
		} else {
			p.buf = append(p.buf, "data: "+posPrefix...)
			p.nitems++
		}
		p.buf = append(p.buf, f.enc[r.off:r.off+uint32(r.n)]...)
		queued++
		if len(p.buf) >= p.limit {
			if err := p.pace(ctx, len(p.buf)); err != nil {
				return err
			}
			p.h.frameBytes.Add(uint64(len(p.buf)))
		}
		if err := p.end(true); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.mu.queued += queued
	s.mu.dropped += lost
	s.mu.Unlock()
	return nil
}

// writeShared writes the whole frame from its shared framing: SSE in
// writes of at most sseBatchBytes, WebSocket one message per batch.
func (p *pump) writeShared(ctx context.Context, f *frame) error {
	write := func(b []byte) error {
		if err := p.pace(ctx, len(b)); err != nil {
			return err
		}
		if err := p.k.write(b); err != nil {
			return err
		}
		p.h.frameBytes.Add(uint64(len(b)))
		return nil
	}
	if p.ws {
		b, ends := f.framedWS()
		start := uint32(0)
		for _, end := range ends {
			if err := write(b[start:end]); err != nil {
				return err
			}
			start = end
		}
	} else {
		b := f.framedSSE()
		for len(b) > 0 {
			n := min(len(b), sseBatchBytes)
			if err := write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
	}
	p.wrote = true
	return nil
}

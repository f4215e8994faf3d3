package feed

import (
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
)

// Options configures a Hub. The zero value gives the defaults.
type Options struct {
	// MaxSubscribers caps concurrent subscribers (default 1000); past it
	// ServeSSE and ServeWS answer 503.
	MaxSubscribers int
	// Buffer is the most position events pending per subscriber (default
	// 4096), rounded up to a power of two. Control events (expired, alert)
	// have their own ring of max(16, Buffer/16) entries.
	Buffer int
	// Stall is how long a subscriber may stay behind, or one write to it
	// may take, before it is disconnected (default 30s).
	Stall time.Duration
	// Heartbeat is the idle interval after which an SSE subscriber gets a
	// ": ping" comment and a WebSocket subscriber a ping frame (default 15s).
	Heartbeat time.Duration
	// FlushInterval is the shortest interval between two flushes to one
	// subscriber (default 50ms): events arriving meanwhile are batched into
	// the next write, unless half the subscriber's ring fills first.
	FlushInterval time.Duration
	// OriginPatterns lists the cross-origin hosts allowed to open a
	// WebSocket (see websocket.AcceptOptions); same-origin is always
	// allowed.
	OriginPatterns []string
	// WideHz is the max_hz of a wide subscriber (no ids, and no bbox or
	// one over more than 1024 1° cells) that asks for none: such
	// subscribers get conflated frames (see doc.go) at most this many
	// times a second (default 1, at most 10). Negative turns conflation
	// off: every subscriber gets per-update delivery.
	WideHz float64
	// FrameTrucks caps the trucks in one conflated frame (default
	// 262,144); more in one period are refused and reported as lag.
	FrameTrucks int
	// WideBytesPerSec caps the bytes of conflated frames written per
	// second to all wide subscribers together (default 32 MiB/s per core,
	// GOMAXPROCS; see doc.go): past it their writes wait their turn and
	// they skip frames (reported as lag). Negative: no cap.
	WideBytesPerSec int64
}

const (
	defaultMaxSubscribers = 1000
	defaultBuffer         = 4096
	maxBuffer             = 1 << 20
	defaultStall          = 30 * time.Second
	defaultHeartbeat      = 15 * time.Second
	defaultFlushInterval  = 50 * time.Millisecond
	maxSubscribersLimit   = 1 << 20
)

// Stats are the hub's counts since New. Counts of events are per
// subscriber: one update delivered to three subscribers counts three times
// in Queued and Delivered.
type Stats struct {
	Subscribers int // connected now
	// Published counts events handed to Publish* while at least one
	// subscriber was connected (with none, publishing does no accounting).
	Published uint64
	Queued    uint64 // events queued to subscribers
	Delivered uint64 // events written to clients (lag notices not included)
	Dropped   uint64 // events dropped from full rings
	Throttled uint64 // position events skipped by max_hz
	Invalid   uint64 // published events with an empty or over-long ID, or a bad alert state
	// StallDisconnects counts subscribers disconnected for staying behind
	// or for a write not completing within Stall.
	StallDisconnects uint64
	Rejected         uint64 // subscriptions refused at MaxSubscribers
	// Wide subscribers (conflated) connected now, frames sealed, and
	// trucks refused by full frames.
	WideSubscribers            int
	Frames, FrameTrucksDropped uint64
	// FrameBytes counts bytes of frames written to wide subscribers;
	// FramePaceWaits the writes that waited for Options.WideBytesPerSec.
	FrameBytes, FramePaceWaits uint64
}

// Hub fans published events out to subscribers. It is safe for concurrent
// use; see the package documentation for the contract.
type Hub struct {
	opt      Options
	posMax   int // position ring limits: events (a power of two) and bytes
	posBytes int
	ctlMax   int // control ring limit, a power of two
	seed     maphash.Seed
	start    time.Time
	clock    func() int64 // ns since start (monotonic); replaced by tests
	pace     *pacer       // the wide frames' byte budget; nil: none
	quit     chan struct{}
	subsWG   sync.WaitGroup // one per subscriber until it is unsubscribed
	loopWG   sync.WaitGroup // the conflation loop, while it runs

	snap     atomic.Pointer[snapshot] // nil when nobody is subscribed
	scratch  sync.Pool                // *pubScratch
	pumpBufs sync.Pool                // *pumpBufs
	changed  sync.Pool                // *[]fleet.Update, Applied's changed updates

	published, delivered, invalid, stalls, rejected atomic.Uint64
	frames, frameDropped, frameBytes, paceWaits     atomic.Uint64

	// mu guards subscription changes and the master ID index.
	mu struct {
		sync.Mutex
		closed  bool
		subs    []*subscriber       // by slot; nil = free
		free    []uint32            // free slots below len(subs)
		n       int                 // connected subscribers
		byID    map[string][]uint32 // master ID index; slices are copy-on-write
		idsDirt bool                // byID changed since the last snapshot
		retired subCounters         // counts of unsubscribed subscribers
		classes map[int64]*class    // conflation classes by period, while they have subscribers
		wide    int                 // wide subscribers
		looping bool                // conflateLoop runs (from the first wide subscriber until none is left)
		// Scratch of publishSnapshotLocked, kept between rebuilds.
		gridScratch, nextScratch []uint32
	}
}

// New returns a Hub. Negative options are errors; zero means the default.
func New(o Options) (*Hub, error) {
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"MaxSubscribers", int64(o.MaxSubscribers)}, {"Buffer", int64(o.Buffer)},
		{"Stall", int64(o.Stall)}, {"Heartbeat", int64(o.Heartbeat)}, {"FlushInterval", int64(o.FlushInterval)},
	} {
		if c.v < 0 {
			return nil, fmt.Errorf("feed: option %s is negative (%d)", c.name, c.v)
		}
	}
	if o.MaxSubscribers == 0 {
		o.MaxSubscribers = defaultMaxSubscribers
	}
	if o.MaxSubscribers > maxSubscribersLimit {
		return nil, fmt.Errorf("feed: MaxSubscribers %d is more than %d", o.MaxSubscribers, maxSubscribersLimit)
	}
	if o.Buffer == 0 {
		o.Buffer = defaultBuffer
	}
	if o.Buffer > maxBuffer {
		return nil, fmt.Errorf("feed: Buffer %d is more than %d", o.Buffer, maxBuffer)
	}
	if o.Stall == 0 {
		o.Stall = defaultStall
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = defaultHeartbeat
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = defaultFlushInterval
	}
	if o.WideHz == 0 {
		o.WideHz = defaultWideHz
	}
	if o.WideHz > 1/frameTick.Seconds() || o.WideHz != o.WideHz {
		return nil, fmt.Errorf("feed: WideHz %v is more than %v", o.WideHz, 1/frameTick.Seconds())
	}
	if o.FrameTrucks < 0 {
		return nil, fmt.Errorf("feed: FrameTrucks %d is negative", o.FrameTrucks)
	}
	if o.FrameTrucks == 0 {
		o.FrameTrucks = defaultFrameTrucks
	}
	if o.WideBytesPerSec == 0 {
		o.WideBytesPerSec = defaultWideBytes()
	}
	posMax := 1 << bits.Len(uint(o.Buffer-1))
	h := &Hub{
		opt:      o,
		posMax:   posMax,
		posBytes: max(posMax*posPayloadBudget, maxPosPayload),
		ctlMax:   max(16, posMax/16),
		seed:     maphash.MakeSeed(),
		start:    time.Now(),
		quit:     make(chan struct{}),
	}
	h.clock = func() int64 { return int64(time.Since(h.start)) }
	if o.WideBytesPerSec > 0 {
		h.pace = newPacer(o.WideBytesPerSec)
	}
	h.mu.byID = map[string][]uint32{}
	h.mu.classes = map[int64]*class{}
	return h, nil
}

// Options returns the options in effect (defaults filled in).
func (h *Hub) Options() Options { return h.opt }

// errClosed and tooManyError are the 503 reasons.
var errClosed = errors.New("feed: shutting down")

type tooManyError struct{ limit int }

func (e tooManyError) Error() string {
	return fmt.Sprintf("too many subscribers (limit %d)", e.limit)
}

// subscribe registers a subscriber and publishes a new snapshot. Every
// successful subscribe must be paired with unsubscribe.
func (h *Hub) subscribe(f *filter) (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return nil, errClosed
	}
	if h.mu.n >= h.opt.MaxSubscribers {
		h.rejected.Add(1)
		return nil, tooManyError{h.opt.MaxSubscribers}
	}
	if ticks := h.widePeriod(f); ticks > 0 {
		f.m.wide = true
		c := h.mu.classes[ticks]
		if c == nil {
			c = newClass(ticks)
			h.mu.classes[ticks] = c
		}
		c.subs++
		h.mu.wide++
		if !h.mu.looping {
			h.mu.looping = true
			h.loopWG.Add(1)
			go h.conflateLoop()
		}
	}
	s := newSubscriber(f, h.posMax, h.posBytes, h.ctlMax)
	if s.m.wide {
		s.cls = h.mu.classes[h.widePeriod(f)]
		if cur := s.cls.cur.Load(); cur != nil {
			s.sentSeq, s.sentTotal = cur.seq, cur.total // earlier frames are not owed
		}
	}
	if k := len(h.mu.free); k > 0 {
		s.slot = h.mu.free[k-1]
		h.mu.free = h.mu.free[:k-1]
		h.mu.subs[s.slot] = s
	} else {
		s.slot = uint32(len(h.mu.subs))
		h.mu.subs = append(h.mu.subs, s)
	}
	h.mu.n++
	for _, id := range s.ids {
		h.mu.byID[id] = append(slices.Clip(h.mu.byID[id]), s.slot)
		h.mu.idsDirt = true
	}
	h.subsWG.Add(1)
	h.publishSnapshotLocked()
	return s, nil
}

// unsubscribe removes s; publishers holding an older snapshot may still
// call into s, which then queues nothing.
func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	if h.mu.subs[s.slot] != s {
		h.mu.Unlock()
		panic("BUG: feed: unsubscribe of a subscriber not in its slot")
	}
	h.mu.subs[s.slot] = nil
	h.mu.free = append(h.mu.free, s.slot)
	h.mu.n--
	for _, id := range s.ids {
		rest := slices.DeleteFunc(slices.Clone(h.mu.byID[id]), func(v uint32) bool { return v == s.slot })
		if len(rest) == 0 {
			delete(h.mu.byID, id)
		} else {
			h.mu.byID[id] = rest
		}
		h.mu.idsDirt = true
	}
	if s.cls != nil {
		h.mu.wide--
		if s.cls.subs--; s.cls.subs == 0 {
			delete(h.mu.classes, s.cls.periodTicks)
		}
	}
	c := s.close()
	h.mu.retired.queued += c.queued
	h.mu.retired.dropped += c.dropped
	h.mu.retired.throttled += c.throttled
	// Trim free slots at the end so the snapshot's tables stay short.
	for len(h.mu.subs) > 0 && h.mu.subs[len(h.mu.subs)-1] == nil {
		last := uint32(len(h.mu.subs) - 1)
		h.mu.subs = h.mu.subs[:last]
		h.mu.free = slices.DeleteFunc(h.mu.free, func(v uint32) bool { return v == last })
	}
	h.publishSnapshotLocked()
	h.mu.Unlock()
	h.subsWG.Done()
}

// Stats returns the hub's counts.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	st := Stats{Subscribers: h.mu.n, WideSubscribers: h.mu.wide}
	c := h.mu.retired
	for _, s := range h.mu.subs {
		if s != nil {
			sc := s.counters()
			c.queued += sc.queued
			c.dropped += sc.dropped
			c.throttled += sc.throttled
		}
	}
	h.mu.Unlock()
	st.Queued, st.Dropped, st.Throttled = c.queued, c.dropped, c.throttled
	st.Published = h.published.Load()
	st.Delivered = h.delivered.Load()
	st.Invalid = h.invalid.Load()
	st.StallDisconnects = h.stalls.Load()
	st.Rejected = h.rejected.Load()
	st.Frames, st.FrameTrucksDropped = h.frames.Load(), h.frameDropped.Load()
	st.FrameBytes, st.FramePaceWaits = h.frameBytes.Load(), h.paceWaits.Load()
	return st
}

// Close disconnects every subscriber (WebSocket clients get a going-away
// close frame, SSE streams end), refuses new ones, and waits until every
// subscriber's handler has finished with it. That takes a round trip per
// client, in parallel; a WebSocket client that does not answer the close
// handshake holds it for at most the library's 10 s (5 s to write the
// frame, 5 s for the answer). Publishing after Close is allowed and does
// nothing. Close is idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	if !h.mu.closed {
		h.mu.closed = true
		close(h.quit)
	}
	h.mu.Unlock()
	h.subsWG.Wait()
	h.loopWG.Wait()
}

// snapshot is an immutable index of the subscribers' filters, replaced
// wholesale (copy on write) on every subscribe and unsubscribe so that
// publishers read it with one atomic load and no lock.
//
// Routing: a subscriber with ids= is found through byID only; one with a
// bbox covering at most gridMaxCells cells is listed in each grid cell its
// box touches; every other subscriber is in every. So each event (a
// position, an alert, or an expiry at the truck's last position) visits
// only the subscribers of its cell, the "everywhere" list, and those
// naming its ID, and checks their types and box.
//
// The cell table covers only win, the smallest rectangle of cells that
// holds every grid subscriber's box: about 1,500 cells for boxes over the
// contiguous US instead of the world's 64,800, so that the rebuild on each
// subscribe and unsubscribe costs O(subscribers' cells), not O(world).
type snapshot struct {
	subs      []*subscriber // by slot; nil = free
	filt      []match       // by slot, copied for locality
	win       cellRect      // the cells cellStart covers
	winCols   int           // win's width in cells
	cellStart []uint32      // CSR over win, row-major: cell k's subscribers are cellSubs[cellStart[k]:cellStart[k+1]]; nil if no one uses the grid
	cellSubs  []uint32
	every     []uint32            // no ids, no bbox or a large one
	everyPos  []uint32            // those of every that get positions one by one (not wide)
	byID      map[string][]uint32 // nil if no subscriber has ids; shared read-only with the master while unchanged
	anyHz     bool                // some subscriber uses max_hz (not counting wide ones)
	classes   []*class            // conflation classes with subscribers
}

// The routing grid: fleet.Grid's mapping with whole-degree cells (a point
// at lon 180° is in column 0, with -180°).
var grid = func() fleet.Grid {
	g, err := fleet.NewGrid(1)
	if err != nil {
		panic("BUG: feed: " + err.Error())
	}
	return g
}()

const (
	gridCells    = 180 * 360
	gridMaxCells = 1024 // a bbox over more cells goes to every
)

func cellOf(lat, lon int32) int { return grid.Row(lat)*grid.Cols + grid.Col(lon) }

// gridSubs returns the grid subscribers listed in the cell of (lat, lon).
func (sn *snapshot) gridSubs(lat, lon int32) []uint32 {
	r, c := grid.Row(lat)-sn.win.la0, grid.Col(lon)-sn.win.lo0
	if r < 0 || c < 0 || r > sn.win.la1-sn.win.la0 || c >= sn.winCols {
		return nil
	}
	k := r*sn.winCols + c
	return sn.cellSubs[sn.cellStart[k]:sn.cellStart[k+1]]
}

// cellRect is a rectangle of grid cells, edges included: rows la0…la1,
// columns lo0…lo1.
type cellRect struct{ la0, la1, lo0, lo1 int }

func (r cellRect) cells() int { return (r.la1 - r.la0 + 1) * (r.lo1 - r.lo0 + 1) }

// union returns the smallest rectangle holding r and o.
func (r cellRect) union(o cellRect) cellRect {
	return cellRect{min(r.la0, o.la0), max(r.la1, o.la1), min(r.lo0, o.lo0), max(r.lo1, o.lo1)}
}

// boxRects returns the rectangles of grid cells that a point inside m's
// box can fall in: none for a box left empty by rounding to fixed point,
// two for a box that crosses the antimeridian or ends on it (lon 180° is
// in column 0), never two that overlap.
func (m *match) boxRects() (rs [2]cellRect, n int) {
	if m.minLat > m.maxLat {
		return rs, 0
	}
	la0, la1 := grid.Row(m.minLat), grid.Row(m.maxLat)
	lo0, lo1 := grid.Col(m.minLon), grid.Col(m.maxLon)
	last := grid.Cols - 1
	switch {
	case m.cross && lo0 <= lo1:
		// [minLon, 180°] and [-180°, maxLon] share a column (or minLon
		// is 180°, in column 0): every column.
		rs[0] = cellRect{la0, la1, 0, last}
		return rs, 1
	case m.cross:
		rs[0], rs[1] = cellRect{la0, la1, lo0, last}, cellRect{la0, la1, 0, lo1}
		return rs, 2
	case m.minLon > m.maxLon:
		return rs, 0
	case m.maxLon < geo.MaxLonFixed:
		rs[0] = cellRect{la0, la1, lo0, lo1}
		return rs, 1
	case m.minLon == geo.MaxLonFixed:
		rs[0] = cellRect{la0, la1, 0, 0}
		return rs, 1
	case lo0 == 0:
		rs[0] = cellRect{la0, la1, 0, last}
		return rs, 1
	}
	// Up to 180°, whose column is column 0.
	rs[0], rs[1] = cellRect{la0, la1, lo0, last}, cellRect{la0, la1, 0, 0}
	return rs, 2
}

// boxCells calls fn (if not nil) for every grid cell that a point inside
// m's box can fall in, and returns how many there are.
func (m *match) boxCells(fn func(cell int)) int {
	rs, nr := m.boxRects()
	n := 0
	for _, r := range rs[:nr] {
		n += r.cells()
		if fn != nil {
			for la := r.la0; la <= r.la1; la++ {
				for lo := r.lo0; lo <= r.lo1; lo++ {
					fn(la*grid.Cols + lo)
				}
			}
		}
	}
	return n
}

// publishSnapshotLocked builds and publishes the snapshot for the current
// subscribers. Its cost is O(subscribers + their grid cells + the cell
// window), plus a copy of the ID index when it changed.
func (h *Hub) publishSnapshotLocked() {
	if h.mu.n == 0 {
		h.snap.Store(nil)
		return
	}
	subs := h.mu.subs
	sn := &snapshot{
		subs: slices.Clone(subs),
		filt: make([]match, len(subs)),
	}
	onGrid := h.mu.gridScratch[:0] // slots of grid subscribers
	total := 0
	var win cellRect
	for slot, s := range subs {
		if s == nil {
			continue
		}
		sl := uint32(slot)
		sn.filt[slot] = s.m
		sn.anyHz = sn.anyHz || s.m.hzMs != 0 && !s.m.wide
		if s.m.hasIDs {
			continue
		}
		rs, nr := s.m.boxRects()
		n := 0
		for _, r := range rs[:nr] {
			n += r.cells()
		}
		if !s.m.hasBox || n > gridMaxCells {
			sn.every = append(sn.every, sl)
			if s.m.types&typePosition != 0 && !s.m.wide {
				sn.everyPos = append(sn.everyPos, sl)
			}
			continue
		}
		for _, r := range rs[:nr] {
			if total == 0 {
				win = r
			} else {
				win = win.union(r)
			}
			total += r.cells()
		}
		if nr > 0 {
			onGrid = append(onGrid, sl)
		}
	}
	h.mu.gridScratch = onGrid
	if total > 0 {
		cols := win.lo1 - win.lo0 + 1
		start := make([]uint32, win.cells()+1)
		// Count each cell's subscribers, then place them (a counting sort).
		for _, sl := range onGrid {
			rs, nr := sn.filt[sl].boxRects()
			for _, r := range rs[:nr] {
				for la := r.la0; la <= r.la1; la++ {
					row := start[(la-win.la0)*cols+1:]
					for c := r.lo0 - win.lo0; c <= r.lo1-win.lo0; c++ {
						row[c]++
					}
				}
			}
		}
		for k := 1; k < len(start); k++ {
			start[k] += start[k-1]
		}
		cellSubs := make([]uint32, total)
		next := append(h.mu.nextScratch[:0], start[:len(start)-1]...)
		for _, sl := range onGrid {
			rs, nr := sn.filt[sl].boxRects()
			for _, r := range rs[:nr] {
				for la := r.la0; la <= r.la1; la++ {
					row := next[(la-win.la0)*cols:]
					for c := r.lo0 - win.lo0; c <= r.lo1-win.lo0; c++ {
						cellSubs[row[c]] = sl
						row[c]++
					}
				}
			}
		}
		h.mu.nextScratch = next
		sn.win, sn.winCols, sn.cellStart, sn.cellSubs = win, cols, start, cellSubs
	}
	if len(h.mu.byID) > 0 {
		old := h.snap.Load()
		if h.mu.idsDirt || old == nil || old.byID == nil {
			sn.byID = maps.Clone(h.mu.byID)
		} else {
			sn.byID = old.byID
		}
	}
	for _, c := range h.mu.classes {
		sn.classes = append(sn.classes, c)
	}
	h.mu.idsDirt = false
	h.snap.Store(sn)
}

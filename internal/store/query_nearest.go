package store

import (
	"cmp"
	"math"
	"slices"

	"github.com/fleetd/fleetd/internal/geo"
)

// candidate is a k-nearest candidate kept in the max-heap.
type candidate struct {
	h     float64
	shard uint16
	slot  uint32
}

// knn is the state of one Nearest query; every shard is read-locked.
type knn struct {
	s      *Store
	q      point
	k      int
	limitH float64 // radius bound as hav, 1 when none
	heap   []candidate
	cells  []cellDist // searchOccupied's cells
	latLim int64      // fixed-point windows outside which no truck can beat limH
	lonLim int64
	limH   float64
	// gather holds a run of a cell's slots that passed the sub-cell test
	// and then their records' coordinates: the records are read in one
	// loop of independent loads, so their cache misses overlap instead of
	// each waiting behind the branch on the one before.
	gather struct {
		slot     [gatherRun]uint32
		shard    [gatherRun]uint16
		lat, lon [gatherRun]int32
	}
	pend, sorted []uint64       // a cell's entries that pass the windows (visit)
	blocks       [256]cellBlock // visit's per-shard blocks of one cell (at most 256 shards)
	touch        uint32         // keeps visit's early loads of the blocks
}

const gatherRun = 64

// cellBlock is one shard's entries of a cell and whether their hints are exact.
type cellBlock struct {
	ents  []uint32
	exact bool
}

// maxPooledPend bounds the pending-entry buffers a pooled query keeps
// (2 × 32 KiB).
const maxPooledPend = 4096

// setLimits recomputes the windows for bound h. Windows computed for a
// larger bound are still correct, only looser, so visit refreshes them only
// when the bound has shrunk by a fifth: the trigonometry stays off the
// per-truck path.
func (n *knn) setLimits(h float64) {
	n.limH = h
	n.latLim = latLimit(h)
	n.lonLim = n.q.lonLimit(h, n.latLim)
}

func (n *knn) bound() float64 {
	if len(n.heap) < n.k {
		return n.limitH
	}
	return n.heap[0].h
}

// A pending entry of a cell, in knn.pend, is a uint64:
//
//	| ring 16 | loose 1 | 7 unused | shard 8 | entry 32 |
//
// the entry as the cell's block holds it (sub-cell and slot), the shard
// (at most 256 of them, store.go), and the ring: its sub-cell's Chebyshev
// distance in sub-cells from the query's, capped at maxRing (0 for a loose
// cell's entries, whose hints say nothing).
const (
	ringShift = 48
	maxRing   = 31
	pendLoose = 1 << 47
)

// visit reads the trucks of cell key that can beat the bound. It gathers
// the entries of every shard whose sub-cell passes the windows, orders them
// by ring around the query's sub-cell (a counting sort) and reads their
// records nearest rings first, a few rings at a time, testing each entry
// against the windows again as they shrink: the far sub-cells, whose
// records the windows would have admitted in block order, are then mostly
// ruled out before their records are read (a query at 1M trucks reads
// 24.1 records instead of 31.1 and computes 17.0 haversines instead of
// 22.3). Chunks of k entries read fewer records than larger ones (16:
// 26.5, 32: 33.5) and no more haversines.
func (n *knn) visit(key uint32) {
	// The cell is skipped when it lies outside the windows (integer
	// arithmetic: subMask) or, failing that, farther than the bound (the
	// box distance's trigonometry). Of ~4.7 cells a query considers at 1M
	// trucks ~3 are pruned, most by the windows.
	gr := &n.s.shards[0].grid // subMask depends only on the geometry
	rows, cols := gr.subMask(key, n.q.flat, n.q.flon, n.latLim, n.lonLim)
	if rows == 0 || cols == 0 {
		return
	}
	if b := n.bound(); b < 1 && geo.BoxMinHav(n.q.lat, n.q.lon, n.s.geom.CellBox(key))*pruneSlack > b {
		return
	}
	limH := n.limH // the bound rows and cols were computed for
	qr, qc := n.subPos(gr, key)
	// Every shard's block is looked up, and its first entry loaded, in
	// one loop before any is scanned: the lookups' cache misses (index,
	// cell, block) overlap across shards instead of each waiting behind
	// the scan of the shard before.
	blocks := n.blocks[:len(n.s.shards)]
	var touch uint32
	for si := range blocks {
		ents, exact := n.s.shards[si].grid.members(key)
		blocks[si] = cellBlock{ents, exact}
		if len(ents) > 0 {
			touch |= ents[0]
		}
	}
	n.touch = touch
	pend := n.pend[:0]
	for si, b := range blocks {
		ents, exact := b.ents, b.exact
		if len(ents) == 0 {
			continue
		}
		r, c, tag, ringOn := rows, cols, uint64(si)<<32, int32(1)
		if !exact {
			r, c, tag, ringOn = ^uint32(0), ^uint32(0), tag|pendLoose, 0
		}
		pend = slices.Grow(pend, len(ents))
		m, buf := len(pend), pend[:cap(pend)]
		// Branch-free: every entry is written, the count advances only
		// for those whose sub-cell passes.
		for _, e := range ents {
			sub := e >> slotBits
			dr, dc := int32(sub>>subBits)-qr, int32(sub&subMax)-qc
			ring := min(max(dr, -dr, dc, -dc), maxRing) * ringOn
			buf[m] = uint64(ring)<<ringShift | tag | uint64(e)
			m += int((r >> (sub >> subBits)) & (c >> (sub & subMax)) & 1)
		}
		pend = buf[:m]
	}
	n.pend = pend
	if len(pend) == 0 {
		return
	}
	var start [maxRing + 2]int32
	for _, p := range pend {
		start[p>>ringShift+1]++
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	sorted := slices.Grow(n.sorted[:0], len(pend))[:len(pend)]
	n.sorted = sorted
	for _, p := range pend {
		r := p >> ringShift
		sorted[start[r]] = p
		start[r]++
	}
	// Chunks of whole rings, at least chunkMin entries (unless the cell
	// runs out) and at most gatherRun: the windows shrink between chunks,
	// and a chunk's records are read in one loop of independent loads.
	chunkMin := min(max(n.k, 8), gatherRun)
	g := &n.gather
	for i := 0; i < len(sorted); {
		if limH != n.limH {
			limH = n.limH
			rows, cols = gr.subMask(key, n.q.flat, n.q.flon, n.latLim, n.lonLim)
		}
		end, ring := i, sorted[i]>>ringShift
		for end < len(sorted) && end-i < gatherRun && (end-i < chunkMin || sorted[end]>>ringShift == ring) {
			ring = sorted[end] >> ringShift
			end++
		}
		m := 0
		for _, p := range sorted[i:end] {
			e := uint32(p)
			sub := e >> slotBits
			g.slot[m], g.shard[m] = e&slotMask, uint16(p>>32&0xFF)
			m += int((rows>>(sub>>subBits))&(cols>>(sub&subMax))&1 | uint32(p>>47)&1)
		}
		i = end
		for j := range m {
			r := n.s.shards[g.shard[j]].rec(g.slot[j])
			g.lat[j], g.lon[j] = r.lat, r.lon
		}
		for j := range m {
			lat, lon := g.lat[j], g.lon[j]
			if d := int64(lat) - int64(n.q.flat); d > n.latLim || -d > n.latLim || lonDiff(lon, n.q.flon) > n.lonLim {
				continue
			}
			h := n.q.hav(lat, lon)
			if len(n.heap) < n.k {
				if h > n.limitH {
					continue
				}
				n.push(candidate{h, g.shard[j], g.slot[j]})
			} else if h < n.heap[0].h {
				n.heap[0] = candidate{h, g.shard[j], g.slot[j]}
				n.down(0)
			} else {
				continue
			}
			if len(n.heap) == n.k && n.heap[0].h < 0.8*n.limH {
				n.setLimits(n.heap[0].h)
			}
		}
	}
}

// subPos returns the query's sub-row and sub-column in cell key's
// sub-grid: outside 0..subMax when the query lies outside the cell, the
// short way round in longitude, clamped to ±4·subMax.
func (n *knn) subPos(gr *grid, key uint32) (int32, int32) {
	la, lo := gr.cellOrigin(key)
	cf := gr.geom.CellFixed
	dlon := int64(n.q.flon) - lo // in (-360°, 360°]
	if dlon >= geo.MaxLonFixed {
		dlon -= 2 * geo.MaxLonFixed
	} else if dlon < -geo.MaxLonFixed {
		dlon += 2 * geo.MaxLonFixed
	}
	pos := func(d int64) int32 {
		d <<= subBits
		q := d / cf
		if d < 0 && q*cf != d {
			q-- // floor
		}
		return int32(min(max(q, -4*subMax), 4*subMax))
	}
	return pos(int64(n.q.flat) - la), pos(dlon)
}

func (n *knn) push(c candidate) {
	n.heap = append(n.heap, c)
	i := len(n.heap) - 1
	for i > 0 {
		p := (i - 1) / 2
		if n.heap[p].h >= n.heap[i].h {
			break
		}
		n.heap[p], n.heap[i] = n.heap[i], n.heap[p]
		i = p
	}
}

func (n *knn) down(i int) { n.downTo(i, len(n.heap)) }

// downTo sifts heap[i] down within heap[:end].
func (n *knn) downTo(i, end int) {
	h := n.heap[:end]
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		if r := l + 1; r < len(h) && h[r].h > h[l].h {
			l = r
		}
		if h[i].h >= h[l].h {
			return
		}
		h[i], h[l] = h[l], h[i]
		i = l
	}
}

// Nearest appends to dst the k trucks nearest to (lat, lon), nearest first,
// limited to radiusM metres when radiusM > 0. Distances are haversine on
// the sphere. It searches grid rings outward from the query's cell and stops
// once no unvisited cell can hold a closer truck; for sparse fleets, where
// rings would be mostly empty, it switches to visiting the occupied cells
// in order of distance.
func (s *Store) Nearest(lat, lon float64, k int, radiusM float64, dst []Hit) []Hit {
	if k <= 0 || !geo.ValidLatLon(lat, lon) {
		return dst
	}
	// The query's scratch (heap, gather buffers, sparse-search cells) is
	// pooled: a query makes no allocation.
	n, _ := s.knnPool.Get().(*knn)
	if n == nil {
		n = &knn{}
	}
	defer func() {
		if cap(n.pend) > maxPooledPend { // a huge loose cell's, not kept
			n.pend, n.sorted = nil, nil
		}
		s.knnPool.Put(n)
	}()
	// Field by field rather than *n = knn{…}, which cleared the 768-byte
	// gather buffers on every query (2% of BenchmarkNearest10); visit
	// writes those before it reads them. Every other field is set here.
	n.s, n.q, n.k = s, newPoint(lat, lon), k
	n.limitH, n.latLim, n.lonLim, n.limH = 1, math.MaxInt64, math.MaxInt64, 2
	n.heap, n.cells = n.heap[:0], n.cells[:0]
	if cap(n.heap) < min(k, 1024) || cap(n.heap) > 1024 {
		n.heap = make([]candidate, 0, min(k, 1024))
	}
	if radiusM > 0 {
		n.limitH = geo.MToHav(radiusM)
		n.setLimits(n.limitH)
	}
	for i := range s.shards {
		s.shards[i].mu.RLock()
	}
	defer func() {
		for i := range s.shards {
			s.shards[i].mu.RUnlock()
		}
	}()
	// A first pass bounded by a guess from the local density skips the
	// trigonometry for most trucks in the first cells. It is exact whenever
	// it finds k trucks: the k nearest then all lie within the guess.
	// Otherwise the search runs again without the guess.
	limitH, latLim, lonLim, limH := n.limitH, n.latLim, n.lonLim, n.limH
	if guess := s.densityGuess(&n.q, k); guess < n.limitH {
		n.limitH = guess
		n.setLimits(guess)
		s.searchRings(n)
		if len(n.heap) < k {
			n.heap = n.heap[:0]
			n.limitH, n.latLim, n.lonLim, n.limH = limitH, latLim, lonLim, limH
			s.searchRings(n)
		}
	} else {
		s.searchRings(n)
	}
	// Sort ascending in place by popping the max-heap (no comparator
	// calls: slices.SortFunc was 3% of BenchmarkNearest10), and copy out.
	for end := len(n.heap) - 1; end > 0; end-- {
		n.heap[0], n.heap[end] = n.heap[end], n.heap[0]
		n.downTo(0, end)
	}
	for _, c := range n.heap {
		sh := &s.shards[c.shard]
		r := sh.rec(c.slot)
		dst = append(dst, Hit{Position: r.pos(), DistM: havToM(c.h)})
		dst[len(dst)-1].setID(sh.idOf(r))
	}
	return dst
}

// densityGuess returns, as hav, a radius that probably holds 1.5²·k
// trucks judging by the density of the query's own cell, or 1 when the
// cell is too sparse to judge. Every shard is read-locked. The factor
// trades the records the first pass reads against how often it comes back
// short and the search runs again: for the uniform 1M-truck fleet a factor
// of 2 read 39.0 records a query (28.7 haversines, 4.1 window updates) and
// never ran twice; 1.5 reads 31.1 (22.3, 2.4) and runs twice in 0.15% of
// queries; 1.3 reads 28.6 but runs twice in 2.4%.
func (s *Store) densityGuess(q *point, k int) float64 {
	key := s.geom.Cell(q.flat, q.flon)
	cnt := 0
	for i := range s.shards {
		m, _ := s.shards[i].grid.members(key)
		cnt += len(m)
	}
	if cnt < k || cnt < 16 {
		return 1
	}
	b := s.geom.CellBox(key)
	area := geo.EarthRadiusM * geo.EarthRadiusM * (b.MaxLon - b.MinLon) * rad *
		math.Abs(math.Sin(b.MaxLat*rad)-math.Sin(b.MinLat*rad))
	r := 1.5 * math.Sqrt(float64(k)*area/(math.Pi*float64(cnt)))
	return geo.MToHav(r)
}

// ring describes the block of rows and columns around a query's cell.
type ring struct {
	g      *gridGeom
	r0, c0 int
}

func (rg ring) rowLo(r int) int    { return max(0, rg.r0-r) }
func (rg ring) rowHi(r int) int    { return min(rg.g.Rows-1, rg.r0+r) }
func (rg ring) colCount(r int) int { return min(2*r+1, rg.g.Cols) }
func (rg ring) whole(r int) bool {
	return rg.rowLo(r) == 0 && rg.rowHi(r) == rg.g.Rows-1 && rg.colCount(r) == rg.g.Cols
}

func (rg ring) col(c int) int {
	c %= rg.g.Cols
	if c < 0 {
		c += rg.g.Cols
	}
	return c
}

// each calls fn for every cell of ring r (the block of radius r minus the
// block of radius r-1) and returns how many there were.
func (rg ring) each(r int, fn func(key uint32)) int {
	cols := rg.g.Cols
	if r == 0 {
		fn(uint32(rg.r0*cols + rg.c0))
		return 1
	}
	cnt, prev := rg.colCount(r), rg.colCount(r-1)
	emitRow := func(row, from, count int) {
		for i := 0; i < count; i++ {
			fn(uint32(row*cols + rg.col(from+i)))
		}
	}
	n := 0
	for row := rg.rowLo(r); row <= rg.rowHi(r); row++ {
		switch {
		case row < rg.rowLo(r-1) || row > rg.rowHi(r-1): // a new row: all of its columns
			emitRow(row, rg.c0-r, cnt)
			n += cnt
		case prev == cols: // no new columns
		case cnt < cols:
			emitRow(row, rg.c0-r, 1)
			emitRow(row, rg.c0+r, 1)
			n += 2
		default: // the columns just wrapped round the globe
			emitRow(row, rg.c0+r, cols-prev)
			n += cols - prev
		}
	}
	return n
}

// outsideHav is a lower bound (as hav) on the distance from the query point
// to any cell outside the block of radius r.
func (rg ring) outsideHav(q *point, r int) float64 {
	g := rg.g
	a := math.Inf(1)
	if lo := rg.r0 - r; lo > 0 {
		l, _ := g.RowBounds(lo)
		a = min(a, q.p-l*rad)
	}
	if hi := rg.r0 + r; hi < g.Rows-1 {
		_, h := g.RowBounds(hi)
		a = min(a, h*rad-q.p)
	}
	if 2*r+1 < g.Cols {
		w, e := g.ColBounds(rg.c0)
		lon := q.lon
		if lon > e { // longitude 180 lies in column 0, west of which is -180
			lon -= 360
		}
		dw := (lon - w + float64(r)*g.CellDeg) * rad
		de := (e + float64(r)*g.CellDeg - lon) * rad
		a = min(a, geo.MeridianMinAngle(q.p, dw), geo.MeridianMinAngle(q.p, de))
	}
	if math.IsInf(a, 1) {
		return 1
	}
	a = max(a, 0)
	s := math.Sin(a / 2)
	return s * s
}

// holdsWindow reports whether the block of radius r contains the query's
// fixed-point windows, so that every truck outside it fails the window
// test (it is farther than n.limH, which is never below the bound): the
// integer form of the outsideHav test, which it spares its trigonometry
// in most queries. Like outsideHav it needs 2r+1 columns short of the
// whole circle of longitude to say anything about columns.
func (rg ring) holdsWindow(n *knn, r int) bool {
	g := rg.g
	cf := g.CellFixed
	if rg.r0-r > 0 { // rows south of the block exist
		if south := int64(rg.r0-r)*cf - geo.MaxLatFixed; n.latLim >= int64(n.q.flat)-south {
			return false
		}
	}
	if rg.r0+r < g.Rows-1 { // rows north of it
		if north := int64(rg.r0+r+1)*cf - geo.MaxLatFixed; n.latLim >= north-int64(n.q.flat) {
			return false
		}
	}
	if 2*r+1 >= g.Cols {
		return true
	}
	// The query's offset into its own column (longitude 180 lies at the
	// start of column 0).
	off := int64(n.q.flon) + geo.MaxLonFixed - int64(rg.c0)*cf
	if off >= 2*geo.MaxLonFixed {
		off -= 2 * geo.MaxLonFixed
	}
	west, east := off+int64(r)*cf, int64(r+1)*cf-off // to the block's edges
	return n.lonLim < west && n.lonLim < east
}

func (rg ring) inBlock(key uint32, r int) bool {
	row, col := int(key)/rg.g.Cols, int(key)%rg.g.Cols
	if row < rg.rowLo(r) || row > rg.rowHi(r) {
		return false
	}
	if rg.colCount(r) == rg.g.Cols {
		return true
	}
	d := rg.col(col - rg.c0)
	return d <= r || d >= rg.g.Cols-r
}

func (s *Store) searchRings(n *knn) {
	g := &s.geom
	rg := ring{g: g, r0: g.Row(n.q.flat), c0: g.Col(n.q.flon)}
	occupied := 0
	for i := range s.shards {
		occupied += s.shards[i].grid.nindex
	}
	visited := 0
	for r := 0; ; r++ {
		visited += rg.each(r, n.visit)
		if rg.whole(r) {
			return
		}
		if rg.holdsWindow(n, r) || rg.outsideHav(&n.q, r)*pruneSlack > n.bound() {
			return
		}
		if visited > 2*occupied+64 {
			s.searchOccupied(n, rg, r)
			return
		}
	}
}

// searchOccupied finishes a k-nearest search by visiting the occupied cells
// outside the block of radius r in order of distance.
func (s *Store) searchOccupied(n *knn, rg ring, r int) {
	cells := n.cells[:0]
	for i := range s.shards {
		gr := &s.shards[i].grid
		for _, c := range gr.cells {
			if c.class != noClass && !rg.inBlock(c.key, r) {
				cells = append(cells, cellDist{key: c.key})
			}
		}
	}
	// A cell occupied in several shards is listed once per shard.
	slices.SortFunc(cells, func(a, b cellDist) int { return cmp.Compare(a.key, b.key) })
	cells = slices.CompactFunc(cells, func(a, b cellDist) bool { return a.key == b.key })
	for i := range cells {
		cells[i].h = geo.BoxMinHav(n.q.lat, n.q.lon, s.geom.CellBox(cells[i].key))
	}
	slices.SortFunc(cells, func(a, b cellDist) int { return cmp.Compare(a.h, b.h) })
	n.cells = cells
	for _, c := range cells {
		if c.h*pruneSlack > n.bound() {
			return
		}
		n.visit(c.key)
	}
}

// cellDist is an occupied cell and its distance (as hav) from the query.
type cellDist struct {
	h   float64
	key uint32
}

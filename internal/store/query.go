package store

import (
	"iter"
	"math"
	"slices"
	"sync"

	"github.com/fleetd/fleetd/internal/geo"
)

const rad = math.Pi / 180

// pruneSlack keeps box pruning conservative against rounding: a cell is
// skipped only when its exact distance clearly exceeds the bound.
const pruneSlack = 1 - 1e-12

// Hit is one query result: a truck, its position and, for distance queries,
// its distance from the query point.
type Hit struct {
	Position
	DistM float64
	idLen uint8
	id    [MaxIDLen]byte
}

// ID returns the truck's ID; the slice aliases the Hit.
func (h *Hit) ID() []byte { return h.id[:h.idLen] }

func (h *Hit) setID(id []byte) { h.idLen = uint8(copy(h.id[:], id)) }

// point is a query point with what every distance test needs precomputed.
type point struct {
	lat, lon   float64 // degrees
	p          float64 // latitude in radians
	sinP, cosP float64
	flat, flon int32 // fixed point
}

func newPoint(lat, lon float64) point {
	s, c := math.Sincos(lat * rad)
	return point{lat: lat, lon: lon, p: lat * rad, sinP: s, cosP: c, flat: geo.ToFixed(lat), flon: geo.ToFixed(lon)}
}

// hav is the haversine between the query point and a stored record. It
// needs two sines and a square root: with s = sin(Δφ/2),
// cos φ2 = cos φ·(1-2s²) - sin φ·2s·√(1-s²).
func (q *point) hav(lat, lon int32) float64 {
	dp := geo.FromFixed(lat)*rad - q.p
	sp := math.Sin(dp / 2)
	sp2 := sp * sp
	cos2 := q.cosP*(1-2*sp2) - q.sinP*2*sp*math.Sqrt(1-sp2)
	dl := geo.FromFixed(lon) - q.lon
	if dl > 180 {
		dl -= 360
	} else if dl < -180 {
		dl += 360
	}
	sl := math.Sin(dl * rad / 2)
	h := sp2 + q.cosP*cos2*sl*sl
	return min(max(h, 0), 1)
}

// lonDiff is the absolute longitude difference in fixed point, the short
// way round.
func lonDiff(a, b int32) int64 {
	d := int64(a) - int64(b)
	if d < 0 {
		d = -d
	}
	if d > geo.MaxLonFixed {
		d = 2*geo.MaxLonFixed - d
	}
	return d
}

// latLimit returns the latitude difference, in fixed-point units, beyond
// which a truck is farther than hav h: distance ≥ |Δφ|.
func latLimit(h float64) int64 {
	if h >= 1 {
		return math.MaxInt64
	}
	a := 2 * math.Asin(math.Sqrt(h)) // radians
	return int64(a/rad*geo.Scale) + 2
}

// lonLimit returns the longitude difference, in fixed-point units, beyond
// which a truck that passed the latitude filter latLim is farther than hav
// h: h ≥ cos φ·cos φ2·sin²(Δλ/2), and cos φ2 is at least its value at the
// edge of the latitude window.
func (q *point) lonLimit(h float64, latLim int64) int64 {
	if h >= 1 || latLim == math.MaxInt64 {
		return math.MaxInt64
	}
	edge := math.Abs(q.lat) + float64(latLim)/geo.Scale
	if edge >= 90 {
		return math.MaxInt64
	}
	c := q.cosP * math.Cos(edge*rad)
	if c <= 0 || h >= c {
		return math.MaxInt64
	}
	return int64(2*math.Asin(math.Sqrt(h/c))/rad*geo.Scale) + 2
}

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
	latLim int64 // fixed-point windows outside which no truck can beat limH
	lonLim int64
	limH   float64
}

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

func (n *knn) visit(key uint32) {
	if b := n.bound(); b < 1 && geo.BoxMinHav(n.q.lat, n.q.lon, n.s.geom.cellBox(key))*pruneSlack > b {
		return
	}
	for si := range n.s.shards {
		sh := &n.s.shards[si]
		for _, slot := range sh.grid.members(key) {
			r := sh.rec(slot)
			if d := int64(r.lat) - int64(n.q.flat); d > n.latLim || -d > n.latLim || lonDiff(r.lon, n.q.flon) > n.lonLim {
				continue
			}
			h := n.q.hav(r.lat, r.lon)
			if len(n.heap) < n.k {
				if h > n.limitH {
					continue
				}
				n.push(candidate{h, uint16(si), slot})
			} else if h < n.heap[0].h {
				n.heap[0] = candidate{h, uint16(si), slot}
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

func (n *knn) down(i int) {
	h := n.heap
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
	n := knn{s: s, q: newPoint(lat, lon), k: k, limitH: 1, latLim: math.MaxInt64, lonLim: math.MaxInt64, limH: 2}
	if radiusM > 0 {
		n.limitH = geo.MToHav(radiusM)
		n.setLimits(n.limitH)
	}
	n.heap = make([]candidate, 0, min(k, 1024))
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
		s.searchRings(&n)
		if len(n.heap) < k {
			n.heap = n.heap[:0]
			n.limitH, n.latLim, n.lonLim, n.limH = limitH, latLim, lonLim, limH
			s.searchRings(&n)
		}
	} else {
		s.searchRings(&n)
	}
	// Sort ascending and copy out.
	slices.SortFunc(n.heap, func(a, b candidate) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return 0
	})
	for _, c := range n.heap {
		sh := &s.shards[c.shard]
		r := sh.rec(c.slot)
		dst = append(dst, Hit{Position: r.pos(), DistM: geo.HavToM(c.h)})
		dst[len(dst)-1].setID(sh.idOf(r))
	}
	return dst
}

// densityGuess returns, as hav, a radius that probably holds 2²·k trucks
// judging by the density of the query's own cell, or 1 when the cell is
// too sparse to judge. Every shard is read-locked.
func (s *Store) densityGuess(q *point, k int) float64 {
	key := s.geom.cellOf(q.flat, q.flon)
	cnt := 0
	for i := range s.shards {
		cnt += len(s.shards[i].grid.members(key))
	}
	if cnt < k || cnt < 16 {
		return 1
	}
	b := s.geom.cellBox(key)
	area := geo.EarthRadiusM * geo.EarthRadiusM * (b.MaxLon - b.MinLon) * rad *
		math.Abs(math.Sin(b.MaxLat*rad)-math.Sin(b.MinLat*rad))
	r := 2 * math.Sqrt(float64(k)*area/(math.Pi*float64(cnt)))
	return geo.MToHav(r)
}

// ring describes the block of rows and columns around a query's cell.
type ring struct {
	g      *gridGeom
	r0, c0 int
}

func (rg ring) rowLo(r int) int    { return max(0, rg.r0-r) }
func (rg ring) rowHi(r int) int    { return min(rg.g.rows-1, rg.r0+r) }
func (rg ring) colCount(r int) int { return min(2*r+1, rg.g.cols) }
func (rg ring) whole(r int) bool {
	return rg.rowLo(r) == 0 && rg.rowHi(r) == rg.g.rows-1 && rg.colCount(r) == rg.g.cols
}

func (rg ring) col(c int) int {
	c %= rg.g.cols
	if c < 0 {
		c += rg.g.cols
	}
	return c
}

// each calls fn for every cell of ring r (the block of radius r minus the
// block of radius r-1) and returns how many there were.
func (rg ring) each(r int, fn func(key uint32)) int {
	cols := rg.g.cols
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
		l, _ := g.rowBounds(lo)
		a = min(a, q.p-l*rad)
	}
	if hi := rg.r0 + r; hi < g.rows-1 {
		_, h := g.rowBounds(hi)
		a = min(a, h*rad-q.p)
	}
	if 2*r+1 < g.cols {
		w, e := g.colBounds(rg.c0)
		dw := (q.lon - w + float64(r)*g.cellDeg) * rad
		de := (e + float64(r)*g.cellDeg - q.lon) * rad
		a = min(a, geo.MeridianMinAngle(q.p, dw), geo.MeridianMinAngle(q.p, de))
	}
	if math.IsInf(a, 1) {
		return 1
	}
	a = max(a, 0)
	s := math.Sin(a / 2)
	return s * s
}

func (rg ring) inBlock(key uint32, r int) bool {
	row, col := int(key)/rg.g.cols, int(key)%rg.g.cols
	if row < rg.rowLo(r) || row > rg.rowHi(r) {
		return false
	}
	if rg.colCount(r) == rg.g.cols {
		return true
	}
	d := rg.col(col - rg.c0)
	return d <= r || d >= rg.g.cols-r
}

func (s *Store) searchRings(n *knn) {
	g := &s.geom
	rg := ring{g: g, r0: g.rowOf(n.q.flat), c0: g.colOf(n.q.flon)}
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
		lb := rg.outsideHav(&n.q, r) * pruneSlack
		if lb > n.bound() {
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
	type cellDist struct {
		h   float64
		key uint32
	}
	var cells []cellDist
	seen := make(map[uint32]struct{})
	for i := range s.shards {
		gr := &s.shards[i].grid
		for _, c := range gr.cells {
			if c.class == noClass || rg.inBlock(c.key, r) {
				continue
			}
			if _, dup := seen[c.key]; dup {
				continue
			}
			seen[c.key] = struct{}{}
			cells = append(cells, cellDist{geo.BoxMinHav(n.q.lat, n.q.lon, s.geom.cellBox(c.key)), c.key})
		}
	}
	slices.SortFunc(cells, func(a, b cellDist) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return 0
	})
	for _, c := range cells {
		if c.h*pruneSlack > n.bound() {
			return
		}
		n.visit(c.key)
	}
}

// Region is the area of a Within query: a circle or a box.
type Region struct {
	circle         bool
	box            geo.Box
	q              point
	radiusH        float64
	latLim, lonLim int64 // fixed-point windows around q outside the circle
}

// Circle is the region within radiusM metres of (lat, lon).
func Circle(lat, lon, radiusM float64) Region {
	rg := Region{circle: true, q: newPoint(lat, lon), radiusH: geo.MToHav(radiusM)}
	rg.latLim = latLimit(rg.radiusH)
	rg.lonLim = rg.q.lonLimit(rg.radiusH, rg.latLim)
	return rg
}

// BoxRegion is a latitude/longitude box; MinLon > MaxLon crosses the
// antimeridian.
func BoxRegion(b geo.Box) Region { return Region{box: b} }

// Contains reports whether a stored point is in the region, and its
// distance from the circle's centre (0 for boxes).
func (rg *Region) contains(lat, lon int32) (bool, float64) {
	if rg.circle {
		if d := int64(lat) - int64(rg.q.flat); d > rg.latLim || -d > rg.latLim || lonDiff(lon, rg.q.flon) > rg.lonLim {
			return false, 0
		}
		h := rg.q.hav(lat, lon)
		return h <= rg.radiusH, h
	}
	return rg.box.Contains(geo.FromFixed(lat), geo.FromFixed(lon)), 0
}

// plan is the block of grid cells that covers a region.
type plan struct {
	rowLo, rowHi int
	colFrom      int // first column, may be negative: taken modulo cols
	colCount     int
}

func (s *Store) planFor(rg *Region) plan {
	g := &s.geom
	floorCol := func(lon float64) int { return int(math.Floor((lon + 180) / g.cellDeg)) }
	floorRow := func(lat float64) int { return int(math.Floor((lat + 90) / g.cellDeg)) }
	var latLo, latHi float64
	p := plan{}
	allCols := false
	var c1, c2 int
	if rg.circle {
		a := 2 * math.Asin(math.Sqrt(rg.radiusH)) / rad // degrees
		latLo, latHi = rg.q.lat-a, rg.q.lat+a
		if latLo <= -90 || latHi >= 90 {
			allCols = true
		} else {
			s := math.Sin(a*rad) / rg.q.cosP
			if s >= 1 {
				allCols = true
			} else {
				dl := math.Asin(s) / rad
				c1, c2 = floorCol(rg.q.lon-dl), floorCol(rg.q.lon+dl)
			}
		}
	} else {
		latLo, latHi = rg.box.MinLat, rg.box.MaxLat
		c1, c2 = floorCol(rg.box.MinLon), floorCol(rg.box.MaxLon)
		if rg.box.MinLon > rg.box.MaxLon {
			c2 += g.cols
		}
	}
	// One cell of margin each way absorbs rounding at cell edges.
	p.rowLo = max(0, floorRow(latLo)-1)
	p.rowHi = min(g.rows-1, floorRow(latHi)+1)
	if allCols || c2-c1+3 >= g.cols {
		p.colFrom, p.colCount = 0, g.cols
	} else {
		p.colFrom, p.colCount = c1-1, c2-c1+3
	}
	return p
}

func (p *plan) cells() int { return (p.rowHi - p.rowLo + 1) * p.colCount }

func (p *plan) has(g *gridGeom, key uint32) bool {
	row, col := int(key)/g.cols, int(key)%g.cols
	if row < p.rowLo || row > p.rowHi {
		return false
	}
	d := (col - p.colFrom) % g.cols
	if d < 0 {
		d += g.cols
	}
	return d < p.colCount
}

// withinRun bounds how many hits Within copies under one read lock.
const withinRun = 512

// smallPlan is the most cells Within enumerates up front; larger regions
// filter each shard's occupied cells instead.
const smallPlan = 4096

// withinScratch is the reusable working memory of one Within query.
type withinScratch struct {
	plan  []uint32 // candidate cells of the region (small plans only)
	keys  []uint32 // one shard's occupied candidate cells
	buf   []Hit
	slots []uint32 // slots of buf, for the dedupe bitmap
	seen  []uint64
}

var withinPool = sync.Pool{New: func() any { return &withinScratch{buf: make([]Hit, 0, withinRun)} }}

// Within streams the trucks inside a region, shard by shard, in no
// particular order, without materialising the result: it holds a shard's
// read lock only while copying a run of about withinRun hits. Circle hits
// carry their distance from the centre. Stop early by breaking out of the
// loop.
func (s *Store) Within(rg Region) iter.Seq[*Hit] {
	return func(yield func(*Hit) bool) { s.within(&rg, yield) }
}

func (s *Store) cellMayMatch(rg *Region, key uint32) bool {
	return !rg.circle || geo.BoxMinHav(rg.q.lat, rg.q.lon, s.geom.cellBox(key))*pruneSlack <= rg.radiusH
}

func (s *Store) within(rg *Region, yield func(*Hit) bool) {
	sc := withinPool.Get().(*withinScratch)
	defer withinPool.Put(sc)
	g := &s.geom
	p := s.planFor(rg)
	small := p.cells() <= smallPlan
	if small {
		sc.plan = sc.plan[:0]
		for row := p.rowLo; row <= p.rowHi; row++ {
			for i := 0; i < p.colCount; i++ {
				col := (p.colFrom + i) % g.cols
				if col < 0 {
					col += g.cols
				}
				if key := uint32(row*g.cols + col); s.cellMayMatch(rg, key) {
					sc.plan = append(sc.plan, key)
				}
			}
		}
	}
	for si := range s.shards {
		sh := &s.shards[si]
		gr := &sh.grid
		sc.keys = sc.keys[:0]
		sh.mu.RLock()
		if small && len(sc.plan) <= 2*gr.nindex {
			for _, key := range sc.plan {
				if gr.find(key) >= 0 {
					sc.keys = append(sc.keys, key)
				}
			}
		} else {
			for _, c := range gr.cells {
				if c.class != noClass && p.has(g, c.key) && s.cellMayMatch(rg, c.key) {
					sc.keys = append(sc.keys, c.key)
				}
			}
		}
		// The first run shares the lock hold with planning; most queries
		// end here and need no dedupe.
		i := sh.scanRun(rg, sc, 0, nil)
		if i < len(sc.keys) {
			words := int(sh.nslots/64) + 1
			if cap(sc.seen) < words {
				sc.seen = make([]uint64, words+words/4)
			}
			sc.seen = sc.seen[:cap(sc.seen)]
			clear(sc.seen)
			for _, slot := range sc.slots {
				sc.seen[slot/64] |= 1 << (slot % 64)
			}
		}
		sh.mu.RUnlock()
		for {
			for j := range sc.buf {
				if !yield(&sc.buf[j]) {
					return
				}
			}
			if i >= len(sc.keys) {
				break
			}
			sh.mu.RLock()
			i = sh.scanRun(rg, sc, i, sc.seen)
			sh.mu.RUnlock()
		}
	}
}

// scanRun copies the hits of sc.keys[i:] into sc.buf until about withinRun
// are collected and returns the index of the next cell. With seen, it skips
// and marks slots already reported. The caller holds the read lock.
func (sh *shard) scanRun(rg *Region, sc *withinScratch, i int, seen []uint64) int {
	sc.buf, sc.slots = sc.buf[:0], sc.slots[:0]
	for ; i < len(sc.keys) && len(sc.buf) < withinRun; i++ {
		for _, slot := range sh.grid.members(sc.keys[i]) {
			r := sh.rec(slot)
			ok, h := rg.contains(r.lat, r.lon)
			if !ok {
				continue
			}
			if seen != nil {
				if w := int(slot / 64); w < len(seen) {
					if seen[w]&(1<<(slot%64)) != 0 {
						continue
					}
					seen[w] |= 1 << (slot % 64)
				}
			}
			sc.buf = append(sc.buf, Hit{Position: r.pos()})
			sc.slots = append(sc.slots, slot)
			hit := &sc.buf[len(sc.buf)-1]
			hit.setID(sh.idOf(r))
			if rg.circle {
				hit.DistM = geo.HavToM(h)
			}
		}
	}
	return i
}

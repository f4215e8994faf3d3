package store

import (
	"iter"
	"math"
	"slices"

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
	lat, lon float64 // degrees
	p, cosP  float64 // radians, cos
}

func newPoint(lat, lon float64) point {
	return point{lat: lat, lon: lon, p: lat * rad, cosP: math.Cos(lat * rad)}
}

// hav is the haversine between the query point and a stored record.
func (q *point) hav(lat, lon int32) float64 {
	p2 := geo.FromFixed(lat) * rad
	sp := math.Sin((p2 - q.p) / 2)
	sl := math.Sin((geo.FromFixed(lon) - q.lon) * rad / 2)
	h := sp*sp + q.cosP*math.Cos(p2)*sl*sl
	return min(max(h, 0), 1)
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
	qlat   int32
	k      int
	limitH float64 // radius bound as hav, 1 when none
	heap   []candidate
	latLim int64
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
			if d := int64(r.lat) - int64(n.qlat); d > n.latLim || -d > n.latLim {
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
			if len(n.heap) == n.k {
				n.latLim = latLimit(n.heap[0].h)
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
	n := knn{s: s, q: newPoint(lat, lon), qlat: geo.ToFixed(lat), k: k, limitH: 1, latLim: math.MaxInt64}
	if radiusM > 0 {
		n.limitH = geo.MToHav(radiusM)
		n.latLim = latLimit(n.limitH)
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
	s.searchRings(&n)
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
	rg := ring{g: g, r0: g.rowOf(n.qlat), c0: g.colOf(geo.ToFixed(n.q.lon))}
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
	circle  bool
	box     geo.Box
	q       point
	radiusH float64
	radiusM float64
}

// Circle is the region within radiusM metres of (lat, lon).
func Circle(lat, lon, radiusM float64) Region {
	return Region{circle: true, q: newPoint(lat, lon), radiusH: geo.MToHav(radiusM), radiusM: radiusM}
}

// BoxRegion is a latitude/longitude box; MinLon > MaxLon crosses the
// antimeridian.
func BoxRegion(b geo.Box) Region { return Region{box: b} }

// Contains reports whether a stored point is in the region, and its
// distance from the circle's centre (0 for boxes).
func (rg *Region) contains(lat, lon int32) (bool, float64) {
	if rg.circle {
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

// Within streams the trucks inside a region, shard by shard, in no
// particular order, without materialising the result: it holds a shard's
// read lock only while copying a run of about withinRun hits. Circle hits
// carry their distance from the centre. Stop early by breaking out of the
// loop.
func (s *Store) Within(rg Region) iter.Seq[*Hit] {
	return func(yield func(*Hit) bool) {
		g := &s.geom
		p := s.planFor(&rg)
		var keys []uint32
		var seen []uint64
		buf := make([]Hit, 0, withinRun)
		for si := range s.shards {
			sh := &s.shards[si]
			keys = keys[:0]
			sh.mu.RLock()
			gr := &sh.grid
			if p.cells() <= 2*gr.nindex {
				for row := p.rowLo; row <= p.rowHi; row++ {
					for i := 0; i < p.colCount; i++ {
						col := (p.colFrom + i) % g.cols
						if col < 0 {
							col += g.cols
						}
						key := uint32(row*g.cols + col)
						if gr.find(key) >= 0 {
							keys = append(keys, key)
						}
					}
				}
			} else {
				for _, c := range gr.cells {
					if c.class != noClass && p.has(g, c.key) {
						keys = append(keys, c.key)
					}
				}
			}
			words := int(sh.nslots/64) + 1
			sh.mu.RUnlock()
			if rg.circle {
				keys = slices.DeleteFunc(keys, func(k uint32) bool {
					return geo.BoxMinHav(rg.q.lat, rg.q.lon, g.cellBox(k))*pruneSlack > rg.radiusH
				})
			}
			if cap(seen) < words {
				seen = make([]uint64, words)
			}
			seen = seen[:cap(seen)]
			clear(seen)
			for i := 0; i < len(keys); {
				buf = buf[:0]
				sh.mu.RLock()
				for ; i < len(keys) && len(buf) < withinRun; i++ {
					for _, slot := range gr.members(keys[i]) {
						r := sh.rec(slot)
						ok, h := rg.contains(r.lat, r.lon)
						if !ok {
							continue
						}
						if w := int(slot / 64); w < len(seen) {
							if seen[w]&(1<<(slot%64)) != 0 {
								continue
							}
							seen[w] |= 1 << (slot % 64)
						}
						buf = append(buf, Hit{Position: r.pos()})
						hit := &buf[len(buf)-1]
						hit.setID(sh.idOf(r))
						if rg.circle {
							hit.DistM = geo.HavToM(h)
						}
					}
				}
				sh.mu.RUnlock()
				for j := range buf {
					if !yield(&buf[j]) {
						return
					}
				}
			}
		}
	}
}

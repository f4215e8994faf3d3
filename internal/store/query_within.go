package store

import (
	"iter"
	"math"
	"sync"

	"github.com/fleetd/fleetd/internal/geo"
)

// Region is the area of a Within query: a circle or a box.
type Region struct {
	circle         bool
	box            geo.Box
	q              point
	radiusH        float64
	latLim, lonLim int64 // fixed-point windows around q outside the circle
	// The window around (wLat, wLon) (fixed point, the short way round in
	// longitude) outside which no point is in the region: cells' sub-cell
	// hints are tested against it before any record is read.
	wLat, wLon       int32
	wLatLim, wLonLim int64
}

// Circle is the region within radiusM metres of (lat, lon).
func Circle(lat, lon, radiusM float64) Region {
	rg := Region{circle: true, q: newPoint(lat, lon), radiusH: geo.MToHav(radiusM)}
	rg.latLim = latLimit(rg.radiusH)
	rg.lonLim = rg.q.lonLimit(rg.radiusH, rg.latLim)
	rg.wLat, rg.wLon, rg.wLatLim, rg.wLonLim = rg.q.flat, rg.q.flon, rg.latLim, rg.lonLim
	return rg
}

// BoxRegion is a latitude/longitude box; MinLon > MaxLon crosses the
// antimeridian.
func BoxRegion(b geo.Box) Region {
	rg := Region{box: b, wLatLim: math.MaxInt64, wLonLim: math.MaxInt64}
	if math.IsNaN(b.MinLat + b.MaxLat + b.MinLon + b.MaxLon) {
		return rg
	}
	// The window is the box widened by a unit and more each way, so that
	// every fixed-point value Contains admits lies inside it.
	fix := func(deg float64, up bool) int64 {
		v := deg * geo.Scale
		if up {
			return int64(math.Ceil(min(v, 4*geo.MaxLonFixed))) + 1
		}
		return int64(math.Floor(max(v, -4*geo.MaxLonFixed))) - 1
	}
	latLo, latHi := fix(b.MinLat, false), fix(b.MaxLat, true)
	lonLo, lonHi := fix(b.MinLon, false), fix(b.MaxLon, true)
	if b.MinLon > b.MaxLon {
		lonHi += 2 * geo.MaxLonFixed
	}
	if latHi >= latLo {
		c := latLo + (latHi-latLo)/2
		rg.wLat, rg.wLatLim = int32(min(max(c, -geo.MaxLatFixed), geo.MaxLatFixed)), (latHi-latLo)/2+1+max(c-geo.MaxLatFixed, -geo.MaxLatFixed-c, 0)
	}
	if w := (lonHi - lonLo) / 2; lonHi >= lonLo && w+1 < geo.MaxLonFixed {
		c := lonLo + w
		for c > geo.MaxLonFixed {
			c -= 2 * geo.MaxLonFixed
		}
		for c < -geo.MaxLonFixed {
			c += 2 * geo.MaxLonFixed
		}
		rg.wLon, rg.wLonLim = int32(c), w+1
	}
	return rg
}

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
	floorCol := func(lon float64) int { return int(math.Floor((lon + 180) / g.CellDeg)) }
	floorRow := func(lat float64) int { return int(math.Floor((lat + 90) / g.CellDeg)) }
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
			c2 += g.Cols
		}
	}
	// One cell of margin each way absorbs rounding at cell edges.
	p.rowLo = max(0, floorRow(latLo)-1)
	p.rowHi = min(g.Rows-1, floorRow(latHi)+1)
	if allCols || c2-c1+3 >= g.Cols {
		p.colFrom, p.colCount = 0, g.Cols
	} else {
		p.colFrom, p.colCount = c1-1, c2-c1+3
	}
	return p
}

func (p *plan) cells() int { return (p.rowHi - p.rowLo + 1) * p.colCount }

func (p *plan) has(g *gridGeom, key uint32) bool {
	row, col := int(key)/g.Cols, int(key)%g.Cols
	if row < p.rowLo || row > p.rowHi {
		return false
	}
	d := (col - p.colFrom) % g.Cols
	if d < 0 {
		d += g.Cols
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

// cellMayMatch reports whether cell key may hold a point of the region:
// first by the region's fixed-point window (integer arithmetic; every
// shard's grid has the same geometry), then, for circles, by the cell
// box's exact distance.
func (s *Store) cellMayMatch(rg *Region, key uint32) bool {
	if rows, cols := s.shards[0].grid.subMask(key, rg.wLat, rg.wLon, rg.wLatLim, rg.wLonLim); rows == 0 || cols == 0 {
		return false
	}
	return !rg.circle || geo.BoxMinHav(rg.q.lat, rg.q.lon, s.geom.CellBox(key))*pruneSlack <= rg.radiusH
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
				col := (p.colFrom + i) % g.Cols
				if col < 0 {
					col += g.Cols
				}
				if key := uint32(row*g.Cols + col); s.cellMayMatch(rg, key) {
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
		key := sc.keys[i]
		ents, exact := sh.grid.members(key)
		var rows, cols uint32
		if exact {
			if rows, cols = sh.grid.subMask(key, rg.wLat, rg.wLon, rg.wLatLim, rg.wLonLim); rows == 0 || cols == 0 {
				continue
			}
		}
		for _, e := range ents {
			if sub := e >> slotBits; exact && (rows>>(sub>>subBits))&(cols>>(sub&subMax))&1 == 0 {
				continue // no point of this sub-cell is in the region
			}
			slot := e & slotMask
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

package fence

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Limits on one zone.
const (
	// MaxVertices caps the positions of one zone, closing positions
	// included.
	MaxVertices = 100_000

	// margin is how far, in degrees (about 0.1 mm), an edge may miss a cell
	// and still be listed in it. Any rounding error in locating a point's
	// cell or an edge's cells is below 1e-12°, so an edge that is not
	// listed is at least ~margin from every point that maps to the cell and
	// its ray-crossing test can be decided geometrically (doc.go, "Why it
	// is exact").
	margin = 1e-9

	// quantum is the resolution coordinates are rounded to on input,
	// 1e-12° (0.1 µm). It keeps every nonzero difference of two
	// coordinates at 1e-12 or more, so the products in crosses can never
	// underflow (a fuzzed zone 5e-324° tall once broke the index's
	// exactness that way). Inputs with 12 or fewer decimals are unchanged.
	quantum = 1e12 // steps per degree

	cellsPerEdge = 2  // grid cells per edge: ~1-3 edges per boundary cell
	minCells     = 16 // so a rectangle has an empty middle
)

// NewPolygon builds a zone from one polygon given as GeoJSON-ordered rings:
// rings[0] is the exterior ring, the others holes, each position is
// {longitude, latitude} in degrees and each ring is closed (its last
// position equals its first). The input is validated as Parse does and is
// not retained.
func NewPolygon(rings [][][2]float64) (*Zone, error) {
	return compile(false, [][][][2]float64{rings})
}

// NewMultiPolygon builds a zone from several polygons, each as in
// NewPolygon.
func NewMultiPolygon(polys [][][][2]float64) (*Zone, error) {
	return compile(true, polys)
}

// compile validates the polygons and builds the zone and its index.
func compile(multi bool, polys [][][][2]float64) (*Zone, error) {
	if len(polys) == 0 {
		return nil, fmt.Errorf("fence: MultiPolygon has no polygons")
	}
	n := 0
	for _, rings := range polys {
		for _, ring := range rings {
			n += len(ring)
		}
	}
	if n > MaxVertices {
		return nil, fmt.Errorf("%w: %d positions, the limit is %d", ErrTooLarge, n, MaxVertices)
	}
	// Validate, and find each polygon's longitude range.
	type lonRange struct{ lo, hi float64 }
	ranges := make([]lonRange, len(polys))
	for p, rings := range polys {
		where := func(r int) string {
			if multi {
				return fmt.Sprintf("polygon %d ring %d", p, r)
			}
			return fmt.Sprintf("ring %d", r)
		}
		if len(rings) == 0 {
			if multi {
				return nil, fmt.Errorf("fence: polygon %d has no rings", p)
			}
			return nil, fmt.Errorf("fence: polygon has no rings")
		}
		lr := lonRange{math.Inf(1), math.Inf(-1)}
		for r, ring := range rings {
			if len(ring) < 4 {
				return nil, fmt.Errorf("fence: %s: %d positions, a linear ring needs at least 4", where(r), len(ring))
			}
			for i, q := range ring {
				lon, lat := q[0], q[1]
				if !(lon >= -180 && lon <= 180) {
					return nil, fmt.Errorf("fence: %s position %d: longitude %v out of range [-180, 180]", where(r), i, lon)
				}
				if !(lat >= -90 && lat <= 90) {
					return nil, fmt.Errorf("fence: %s position %d: latitude %v out of range [-90, 90]", where(r), i, lat)
				}
				lr.lo, lr.hi = min(lr.lo, quantize(lon)), max(lr.hi, quantize(lon))
			}
			if first, last := ring[0], ring[len(ring)-1]; first != last {
				return nil, fmt.Errorf("fence: %s is not closed: first position [%v, %v] != last [%v, %v]",
					where(r), first[0], first[1], last[0], last[1])
			}
		}
		if span := lr.hi - lr.lo; span > 180 {
			what := "polygon"
			if multi {
				what = fmt.Sprintf("polygon %d", p)
			}
			return nil, fmt.Errorf("fence: %s spans %.6g° of longitude, more than 180°: "+
				"a polygon crossing the antimeridian must be split at ±180° into a MultiPolygon (RFC 7946 §3.1.9)", what, span)
		}
		ranges[p] = lr
	}

	// Choose which polygons to shift east by 360° so that the zone's
	// longitude extent is smallest: try starting the extent at each
	// polygon's west edge, shifting the polygons that start further west.
	// Start 0 (after sorting) is the unshifted layout, preferred on ties.
	order := make([]int, len(polys))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return cmp.Compare(ranges[i].lo, ranges[j].lo) })
	suffixHi := make([]float64, len(order)+1) // max hi of order[k:]
	suffixHi[len(order)] = math.Inf(-1)
	for k := len(order) - 1; k >= 0; k-- {
		suffixHi[k] = max(suffixHi[k+1], ranges[order[k]].hi)
	}
	bestK, bestSpan := 0, suffixHi[0]-ranges[order[0]].lo
	prefixHi := math.Inf(-1) // max hi of order[:k]
	for k := 1; k < len(order); k++ {
		prefixHi = max(prefixHi, ranges[order[k-1]].hi)
		span := max(suffixHi[k], prefixHi+360) - ranges[order[k]].lo
		if span < bestSpan {
			bestK, bestSpan = k, span
		}
	}
	if bestSpan > 180 {
		return nil, fmt.Errorf("fence: zone spans %.6g° of longitude even when wrapped at the antimeridian; "+
			"a zone must fit within 180°", bestSpan)
	}
	shift := make([]bool, len(polys))
	for _, p := range order[:bestK] {
		shift[p] = true
	}

	z := &Zone{
		multi: multi,
		pts:   make([]pt, 0, n),
		polys: make([]uint32, 1, len(polys)+1),
	}
	nRings := 0
	for _, rings := range polys {
		nRings += len(rings)
	}
	z.rings = make([]uint32, 1, nRings+1)
	if bestK > 0 {
		z.orig = make([]pt, 0, n)
	}
	z.minX, z.minY = math.Inf(1), math.Inf(1)
	z.maxX, z.maxY = math.Inf(-1), math.Inf(-1)
	for p, rings := range polys {
		dx := 0.0
		if shift[p] {
			dx = 360
		}
		for _, ring := range rings {
			for _, q := range ring {
				lon, lat := quantize(q[0]), quantize(q[1])
				v := pt{lon + dx, lat}
				z.pts = append(z.pts, v)
				if z.orig != nil {
					z.orig = append(z.orig, pt{lon, lat})
				}
				z.minX, z.maxX = min(z.minX, v.X), max(z.maxX, v.X)
				z.minY, z.maxY = min(z.minY, v.Y), max(z.maxY, v.Y)
			}
			z.rings = append(z.rings, uint32(len(z.pts)))
		}
		z.polys = append(z.polys, uint32(len(z.rings)-1))
	}
	z.nEdge = len(z.pts) - nRings
	z.midX = (z.minX + z.maxX) / 2
	// Bounds in [-180, 180]: the west edge is the first unshifted
	// polygon's, the east edge is the original longitude of the polygon(s)
	// reaching maxX.
	z.minLon, z.maxLon = z.minX, z.maxX
	if bestK > 0 {
		z.minLon = ranges[order[bestK]].lo
		z.maxLon = math.Inf(-1)
		for p, lr := range ranges {
			if lr.hi+360*b2f(shift[p]) == z.maxX {
				z.maxLon = max(z.maxLon, lr.hi)
			}
		}
	}
	z.buildIndex()
	z.buildTree()
	return z, nil
}

// quantize rounds a coordinate to a multiple of 1/quantum degree. It is
// idempotent: |k·(rounding errors)| < 0.5 for |k| ≤ 180e12.
func quantize(v float64) float64 { return math.Round(v*quantum) / quantum }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// buildIndex sizes the grid and fills cells, edges and togs; see doc.go
// "Index layout" for what they hold and why the result is exact.
func (z *Zone) buildIndex() {
	// About cellsPerEdge cells an edge, fewer when long edges would list
	// themselves in too many cells (a scribble of 100,000 random points
	// would otherwise take gigabytes): at most maxListings listings.
	maxListings := 16*z.nEdge + 1024
	for target := max(minCells, cellsPerEdge*z.nEdge); ; target /= 4 {
		z.setGrid(target)
		if target == 1 || z.countListings(maxListings) <= maxListings {
			break
		}
	}
	nCells := z.rows * z.cols
	z.cells = make([]cell, nCells+1)

	// 1. Cell edge lists: count, then fill (edges ascend within a cell).
	count := make([]uint32, nCells+1)
	z.forEachListing(func(i int, _ uint32) { count[i]++ })
	total := prefixSums(count)
	if total >= baseBit {
		panic("BUG: fence: edge lists overflow 31 bits")
	}
	for i := range z.cells {
		z.cells[i].edges = count[i]
	}
	z.edges = make([]uint32, total)
	z.forEachListing(func(i int, e uint32) {
		z.edges[count[i]] = e
		count[i]++
	})

	// 2. Toggle latitudes, the same way; then sorted within each cell.
	clear(count)
	z.forEachToggle(func(i int, _ float64) { count[i]++ })
	total = prefixSums(count)
	for i := range z.cells {
		z.cells[i].togs = count[i]
	}
	z.togs = make([]float64, total)
	z.forEachToggle(func(i int, y float64) {
		z.togs[count[i]] = y
		count[i]++
	})
	for i := range nCells {
		slices.Sort(z.togs[z.cells[i].togs:z.cells[i+1].togs])
	}

	// 3. Base parity: for cell (r, c), the parity of the unlisted edges
	// that a ray from (east(c), y0) crosses, y0 being the south edge of the
	// row's band. crosses() is monotone in the ray's start, so an edge is
	// crossed from a prefix [0, k) of a row's columns: flip[r][k] records
	// it, a sweep from the east sums the flips, and the cell's listed
	// edges are taken out again.
	flip := make([]uint8, z.rows*(z.cols+1))
	z.forEachEdge(func(e uint32) {
		a, b := z.pts[e], z.pts[e+1]
		r0, r1 := z.rowOf(min(a.Y, b.Y)-2*margin), z.rowOf(max(a.Y, b.Y)+2*margin)
		for r := r0; r <= r1; r++ {
			if y0, _ := z.band(r); (a.Y > y0) != (b.Y > y0) {
				k := sort.Search(z.cols, func(c int) bool { return !crosses(z.east(c), y0, a, b) })
				flip[r*(z.cols+1)+k] ^= 1
			}
		}
	})
	for r := range z.rows {
		y0, _ := z.band(r)
		par := uint8(0)
		for c := z.cols - 1; c >= 0; c-- {
			par ^= flip[r*(z.cols+1)+c+1] // edges with k > c
			i := r*z.cols + c
			p := par
			x1 := z.east(c)
			for _, e := range z.edges[z.cells[i].edges&^baseBit : z.cells[i+1].edges&^baseBit] {
				if crosses(x1, y0, z.pts[e], z.pts[e+1]) {
					p ^= 1
				}
			}
			if p != 0 {
				z.cells[i].edges |= baseBit
			}
		}
	}
}

// setGrid sizes the grid for about target cells over the bounding box.
func (z *Zone) setGrid(target int) {
	w, h := z.maxX-z.minX, z.maxY-z.minY
	z.cols, z.rows = gridDims(target, w, h)
	z.cellW, z.invW, z.cellH, z.invH = 0, 0, 0, 0
	if w > 0 {
		z.cellW, z.invW = w/float64(z.cols), float64(z.cols)/w
	}
	if h > 0 {
		z.cellH, z.invH = h/float64(z.rows), float64(z.rows)/h
	}
}

// prefixSums turns counts into start offsets, count[len-1] into the total,
// and returns the total.
func prefixSums(count []uint32) uint32 {
	total := uint32(0)
	for i, k := range count[:len(count)-1] {
		count[i] = total
		total += k
	}
	count[len(count)-1] = total
	return total
}

// countListings counts the (cell, edge) listings, stopping past limit.
func (z *Zone) countListings(limit int) int {
	n := 0
	for r := range len(z.rings) - 1 {
		for e := z.rings[r]; e+1 < z.rings[r+1]; e++ {
			a, b := z.pts[e], z.pts[e+1]
			r0, r1 := z.rowOf(min(a.Y, b.Y)-2*margin), z.rowOf(max(a.Y, b.Y)+2*margin)
			for row := r0; row <= r1; row++ {
				if c0, c1, ok := z.colRange(a, b, row); ok {
					n += c1 - c0 + 1
				}
			}
			if n > limit {
				return n
			}
		}
	}
	return n
}

// forEachListing calls f for every cell i that lists edge e, in order of
// e. colRange has no multiply-add the compiler could fuse, so every call
// computes the same ranges.
func (z *Zone) forEachListing(f func(i int, e uint32)) {
	z.forEachEdge(func(e uint32) {
		a, b := z.pts[e], z.pts[e+1]
		r0, r1 := z.rowOf(min(a.Y, b.Y)-2*margin), z.rowOf(max(a.Y, b.Y)+2*margin)
		for r := r0; r <= r1; r++ {
			if c0, c1, ok := z.colRange(a, b, r); ok {
				for c := c0; c <= c1; c++ {
					f(r*z.cols+c, e)
				}
			}
		}
	})
}

// forEachToggle calls f for every toggle latitude y of every cell i. For a
// vertex v strictly inside a row's band whose incoming edge's columns
// start at a and outgoing edge's at b, the cells [min(a,b), max(a,b)) of
// the row list exactly one of the two edges, and the other, unlisted and
// east of them, starts or stops crossing their rays at latitude v.Y. Cells
// west of both see both change at v.Y, which cancels.
func (z *Zone) forEachToggle(f func(i int, y float64)) {
	for r := range len(z.rings) - 1 {
		start, end := z.rings[r], z.rings[r+1]
		for k := start; k+1 < end; k++ {
			v := z.pts[k]
			prev := k - 1
			if k == start {
				prev = end - 2
			}
			for row := z.rowOf(v.Y - 2*margin); row <= z.rowOf(v.Y+2*margin); row++ {
				if y0, y1 := z.band(row); !(v.Y > y0 && v.Y < y1) {
					continue
				}
				a, _, okA := z.colRange(z.pts[prev], v, row)
				b, _, okB := z.colRange(v, z.pts[k+1], row)
				if !okA || !okB {
					panic("BUG: fence: a vertex's edge misses the vertex's row")
				}
				for c := min(a, b); c < max(a, b); c++ {
					f(row*z.cols+c, v.Y)
				}
			}
		}
	}
}

// forEachEdge calls f with every edge's id: the index in pts of its first
// position; the edge runs to the next position.
func (z *Zone) forEachEdge(f func(e uint32)) {
	for r := range len(z.rings) - 1 {
		for k := z.rings[r]; k+1 < z.rings[r+1]; k++ {
			f(k)
		}
	}
}

// The grid's borders. The explicit float64 conversions round the products,
// so that no compiler fuses them with the addition into an FMA (the Go
// spec allows it on some CPUs): the index relies on every call computing
// the same border for the same cell.

// band returns row r's latitude band, widened by margin on both sides.
func (z *Zone) band(r int) (y0, y1 float64) {
	return z.south(r) - margin, z.south(r+1) + margin
}

// east returns column c's east border.
func (z *Zone) east(c int) float64 { return z.west(c + 1) }

// west returns column c's west border (c = cols gives the east edge).
func (z *Zone) west(c int) float64 { return z.minX + float64(float64(c)*z.cellW) }

// south returns row r's south border (r = rows gives the north edge).
func (z *Zone) south(r int) float64 { return z.minY + float64(float64(r)*z.cellH) }

// colRange returns the columns of row r whose cells, widened by margin,
// the edge a→b may touch; ok is false when it misses the row's band. It
// errs on the side of listing more columns.
func (z *Zone) colRange(a, b pt, r int) (c0, c1 int, ok bool) {
	y0, y1 := z.band(r)
	lo, hi := min(a.Y, b.Y), max(a.Y, b.Y)
	if hi < y0 || lo > y1 {
		return 0, 0, false
	}
	var xlo, xhi float64
	if a.Y == b.Y {
		xlo, xhi = min(a.X, b.X), max(a.X, b.X)
	} else {
		ya, yb := max(lo, y0), min(hi, y1)
		xa := a.X + (ya-a.Y)*(b.X-a.X)/(b.Y-a.Y)
		xb := a.X + (yb-a.Y)*(b.X-a.X)/(b.Y-a.Y)
		xlo, xhi = min(xa, xb), max(xa, xb)
	}
	return z.colOf(xlo - 2*margin), z.colOf(xhi + 2*margin), true
}

// gridDims picks about target cells, as square in degrees as the extent
// allows.
func gridDims(target int, w, h float64) (cols, rows int) {
	switch {
	case w <= 0 && h <= 0:
		return 1, 1
	case w <= 0:
		return 1, target
	case h <= 0:
		return target, 1
	}
	c := math.Round(math.Sqrt(float64(target) * w / h))
	cols = int(min(max(c, 1), float64(target)))
	rows = min(max((target+cols-1)/cols, 1), target)
	return cols, rows
}

package fence

import "math"

// leafEdges is the most edges a distance-tree leaf covers. 8 measured
// fastest of 4, 8 and 16 on the benchmark shapes.
const leafEdges = 8

// box is an axis-aligned box in the zone's planar frame.
type box struct{ minX, minY, maxX, maxY float64 }

// DistanceM returns 0 when Contains(lat, lon), otherwise the distance in
// metres from the point to the nearest point of the zone's boundary (the
// nearest edge of any ring), or +Inf for NaN or infinite coordinates.
//
// Point and edges are projected into a local equirectangular frame:
// mPerDeg = EarthRadiusM·π/180 metres per degree of latitude and
// mPerDeg·cos(φref) per degree of longitude, φref being the mean of the
// point's latitude and that latitude clamped into the zone's latitude
// range, so the cosine is taken between the point and the zone. doc.go
// ("Distances") states the accuracy. The nearest edge is found in the
// zone's distance tree, whose root is the bounding box: a zone far away
// costs a few box distances and a handful of edges.
func (z *Zone) DistanceM(lat, lon float64) float64 {
	x, y, in, ok := z.locate(lat, lon)
	if !ok {
		return math.Inf(1)
	}
	if in {
		return 0
	}
	kx, ky := z.scale(y)
	return math.Sqrt(z.nearest(x, y, kx, ky, math.Inf(1), -1))
}

// Near reports Contains(lat, lon) || DistanceM(lat, lon) <= m, stopping as
// soon as the answer is known: when the bounding box is further than m it
// costs one box distance, and the search ends at the first edge within m.
func (z *Zone) Near(lat, lon, m float64) bool {
	x, y, in, ok := z.locate(lat, lon)
	if !ok {
		return false
	}
	if in {
		return true
	}
	if !(m >= 0) {
		return false
	}
	kx, ky := z.scale(y)
	m2 := m * m
	// Prune beyond a hair more than m; stop at anything surely within m;
	// decide the rest exactly as DistanceM would.
	d2 := z.nearest(x, y, kx, ky, m2*(1+1e-9), m2*(1-1e-9))
	return math.Sqrt(d2) <= m
}

// locate validates a query point and wraps its longitude towards the zone;
// in reports Contains.
func (z *Zone) locate(lat, lon float64) (x, y float64, in, ok bool) {
	if math.IsNaN(lat) || math.IsNaN(lon) || math.IsInf(lat, 0) || math.IsInf(lon, 0) {
		return 0, 0, false, false
	}
	x, y = lon, lat
	if !(x >= z.minX && x <= z.maxX) {
		x = z.wrap(x)
	}
	in = y >= z.minY && y <= z.maxY && x >= z.minX && x <= z.maxX && z.containsXY(x, y)
	return x, y, in, true
}

// scale returns metres per degree of longitude and of latitude for the
// local projection around a point at latitude y.
func (z *Zone) scale(y float64) (kx, ky float64) {
	ref := (y + min(max(y, z.minY), z.maxY)) / 2
	return math.Cos(ref*(math.Pi/180)) * mPerDeg, mPerDeg
}

// segDist2 is the squared projected distance from (x, y) to the edge a→b:
// to the nearer end if the point projects outside the edge, else the
// squared cross product over the squared length.
func segDist2(x, y float64, a, b pt, kx, ky float64) float64 {
	ax, ay := (a.X-x)*kx, (a.Y-y)*ky
	dx, dy := (b.X-a.X)*kx, (b.Y-a.Y)*ky
	dot := -(ax*dx + ay*dy)
	if dot <= 0 {
		return ax*ax + ay*ay
	}
	l2 := dx*dx + dy*dy
	if dot >= l2 {
		bx, by := ax+dx, ay+dy
		return bx*bx + by*by
	}
	c := ax*dy - ay*dx
	return c * c / l2
}

// buildTree fills tree and stops; see doc.go "Distances".
func (z *Zone) buildTree() {
	n := len(z.pts)
	z.stops = make([]uint64, (n+63)/64)
	for _, end := range z.rings[1:] {
		k := end - 1
		z.stops[k/64] |= 1 << (k % 64)
	}
	size := 2
	var count func(node, i, j int)
	count = func(node, i, j int) {
		size = max(size, node+1)
		if j-i > leafEdges {
			m := (i + j) / 2
			count(2*node, i, m)
			count(2*node+1, m, j)
		}
	}
	count(1, 0, n-1)
	z.tree = make([]box, size)
	var build func(node, i, j int) box
	build = func(node, i, j int) box {
		var b box
		if j-i > leafEdges {
			m := (i + j) / 2
			l, r := build(2*node, i, m), build(2*node+1, m, j)
			b = box{min(l.minX, r.minX), min(l.minY, r.minY), max(l.maxX, r.maxX), max(l.maxY, r.maxY)}
		} else {
			b = box{math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)}
			for _, q := range z.pts[i : j+1] {
				b = box{min(b.minX, q.X), min(b.minY, q.Y), max(b.maxX, q.X), max(b.maxY, q.Y)}
			}
		}
		z.tree[node] = b
		return b
	}
	build(1, 0, n-1)
}

// query is one nearest-edge search in progress.
type query struct {
	z            *Zone
	x, y, kx, ky float64
	best2        float64 // squared distance of the nearest edge so far
	stop2        float64 // stop once best2 <= stop2
}

// nearest returns the smallest squared projected distance from (x, y) to
// an edge, or best2 if no edge is nearer than best2; it may return early
// with any distance at or below stop2.
func (z *Zone) nearest(x, y, kx, ky, best2, stop2 float64) float64 {
	q := query{z: z, x: x, y: y, kx: kx, ky: ky, best2: best2, stop2: stop2}
	q.visit(1, 0, len(z.pts)-1, q.boxDist2(1))
	return q.best2
}

// boxDist2 is the squared projected distance from the point to node's box.
func (q *query) boxDist2(node int) float64 {
	b := &q.z.tree[node]
	dx := max(b.minX-q.x, 0, q.x-b.maxX) * q.kx
	dy := max(b.minY-q.y, 0, q.y-b.maxY) * q.ky
	return dx*dx + dy*dy
}

// visit searches the edges starting at positions i..j-1 under node, whose
// box is at squared distance d2, nearer child first.
func (q *query) visit(node, i, j int, d2 float64) {
	z := q.z
	if d2 >= q.best2 {
		return
	}
	if j-i <= leafEdges {
		for k := i; k < j; k++ {
			if z.stops[k/64]&(1<<(k%64)) != 0 {
				continue // k closes its ring: k+1 starts the next one
			}
			if d2 := segDist2(q.x, q.y, z.pts[k], z.pts[k+1], q.kx, q.ky); d2 < q.best2 {
				q.best2 = d2
			}
		}
		return
	}
	m := (i + j) / 2
	l, r := q.boxDist2(2*node), q.boxDist2(2*node+1)
	if l <= r {
		q.visit(2*node, i, m, l)
		if q.best2 > q.stop2 {
			q.visit(2*node+1, m, j, r)
		}
	} else {
		q.visit(2*node+1, m, j, r)
		if q.best2 > q.stop2 {
			q.visit(2*node, i, m, l)
		}
	}
}

package fence

import (
	"flag"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: time-based)")

// newRand returns a seeded generator and logs the seed so that a failure
// can be replayed with -seed.
func newRand(t testing.TB) *rand.Rand {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// ring closes a list of {lon, lat} vertices.
func ring(vs ...[2]float64) [][2]float64 {
	return append(slices.Clone(vs), vs[0])
}

// rect returns a rectangle ring.
func rect(lon0, lat0, lon1, lat1 float64) [][2]float64 {
	return ring([2]float64{lon0, lat0}, [2]float64{lon1, lat0}, [2]float64{lon1, lat1}, [2]float64{lon0, lat1})
}

// star returns a star-shaped ring of n vertices around (cx, cy): sorted
// random angles, radii in [R(1-jag), R]. It is simple (no self-crossing).
func star(r *rand.Rand, n int, cx, cy, R, jag float64) [][2]float64 {
	angles := make([]float64, n)
	for i := range angles {
		angles[i] = r.Float64() * 2 * math.Pi
	}
	slices.Sort(angles)
	angles = slices.Compact(angles)
	vs := make([][2]float64, len(angles))
	for i, a := range angles {
		rad := R * (1 - jag*r.Float64())
		vs[i] = [2]float64{cx + rad*math.Cos(a), cy + rad*math.Sin(a)}
	}
	return ring(vs...)
}

// blob is a smooth star-shaped outline of n vertices, like a city's:
// r(θ) = R(1 + 0.2 sin 3θ + 0.1 sin(7θ+1)) with 0.2% noise.
func blob(r *rand.Rand, n int, cx, cy, R float64) [][2]float64 {
	vs := make([][2]float64, n)
	for i := range vs {
		a := 2 * math.Pi * float64(i) / float64(n)
		rad := R * (1 + 0.2*math.Sin(3*a) + 0.1*math.Sin(7*a+1) + 0.002*r.Float64())
		vs[i] = [2]float64{cx + rad*math.Cos(a), cy + rad*math.Sin(a)}
	}
	return ring(vs...)
}

// corridor is a winding road corridor of n vertices: a smooth random
// path of n/2 points of step s, buffered by w on each side.
func corridor(r *rand.Rand, n int, x0, y0, s, w float64) [][2]float64 {
	m := n / 2
	left, right := make([][2]float64, m), make([][2]float64, m)
	x, y, heading, turn := x0, y0, 0.0, 0.0
	for i := range m {
		turn = 0.9*turn + 0.02*(r.Float64()-0.5)
		heading += turn
		nx, ny := -math.Sin(heading), math.Cos(heading)
		left[i] = [2]float64{x + w*nx, y + w*ny}
		right[m-1-i] = [2]float64{x - w*nx, y - w*ny}
		x, y = x+s*math.Cos(heading), y+s*math.Sin(heading)
	}
	return ring(append(left, right...)...)
}

// starWithHoles is a star of n vertices (radii 0.6R–R) with up to 4
// disjoint star holes of about n/8 vertices each.
func starWithHoles(r *rand.Rand, n int, cx, cy, R float64) [][][2]float64 {
	rings := [][][2]float64{star(r, n, cx, cy, R, 0.4)}
	k := r.IntN(5)
	for j := range k {
		a := 2 * math.Pi * float64(j) / float64(k)
		hx, hy := cx+0.35*R*math.Cos(a), cy+0.35*R*math.Sin(a)
		rings = append(rings, star(r, max(3, n/8), hx, hy, 0.15*R, 0.6))
	}
	return rings
}

// comb is a concave comb on a lattice of step s: a base bar with teeth
// of random heights drawn from 3 values, so many vertices share a latitude
// and there are many horizontal edges.
func comb(r *rand.Rand, teeth int, x0, y0, s float64) [][2]float64 {
	heights := []float64{3, 5, 8}
	vs := [][2]float64{{x0, y0}, {x0 + float64(2*teeth-1)*s, y0}}
	for i := teeth - 1; i >= 0; i-- {
		xr := x0 + float64(2*i+1)*s
		xl := x0 + float64(2*i)*s
		top := y0 + heights[r.IntN(3)]*s
		vs = append(vs, [2]float64{xr, top}, [2]float64{xl, top})
		if i > 0 {
			vs = append(vs, [2]float64{xl, y0 + s}, [2]float64{xl - s, y0 + s})
		}
	}
	return ring(vs...)
}

// scribble is a ring through n random points in random order: it crosses
// itself everywhere, which the even-odd rule handles like anything else.
func scribble(r *rand.Rand, n int, cx, cy, R float64) [][2]float64 {
	vs := make([][2]float64, n)
	for i := range vs {
		vs[i] = [2]float64{cx + R*(2*r.Float64()-1), cy + R*(2*r.Float64()-1)}
	}
	return ring(vs...)
}

// latticeScribble is a self-crossing ring through n random points of the
// integer lattice [0,8]², so vertices repeat, edges overlap and vertices
// fall on cell borders.
func latticeScribble(r *rand.Rand, n int) [][2]float64 {
	vs := make([][2]float64, n)
	for i := range vs {
		vs[i] = [2]float64{float64(r.IntN(9)), float64(r.IntN(9))}
	}
	return ring(vs...)
}

// gridShape is a rectangle with rectangular holes, all on a coarse
// lattice, so vertices fall exactly on cell borders.
func gridShape(r *rand.Rand, x0, y0 float64) [][][2]float64 {
	rings := [][][2]float64{rect(x0, y0, x0+10, y0+8)}
	for i := range 3 {
		hx := x0 + 1 + 3*float64(i)
		hy := y0 + 1 + float64(r.IntN(4))
		rings = append(rings, rect(hx, hy, hx+2, hy+1+float64(r.IntN(3))))
	}
	return rings
}

// shapeCase is a named zone input.
type shapeCase struct {
	name  string
	multi bool
	polys [][][][2]float64
}

func (c shapeCase) zone(t testing.TB) *Zone {
	t.Helper()
	var z *Zone
	var err error
	if c.multi {
		z, err = NewMultiPolygon(c.polys)
	} else {
		z, err = NewPolygon(c.polys[0])
	}
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return z
}

// randomShapes returns a varied set of zones for the randomized tests.
func randomShapes(r *rand.Rand) []shapeCase {
	cx, cy := -120+240*r.Float64(), -60+120*r.Float64()
	single := func(name string, rings [][][2]float64) shapeCase {
		return shapeCase{name, false, [][][][2]float64{rings}}
	}
	cs := []shapeCase{
		single("rect", [][][2]float64{rect(cx, cy, cx+0.3, cy+0.2)}),
		single("star1000", [][][2]float64{star(r, 1000, cx, cy, 0.5, 0.5)}),
		single("star-holes", starWithHoles(r, 300, cx, cy, 0.2)),
		single("star-smooth", [][][2]float64{star(r, 200, cx, cy, 0.01, 0.05)}),
		single("comb", [][][2]float64{comb(r, 40, math.Round(cx), math.Round(cy), 0.01)}),
		single("comb-int", [][][2]float64{comb(r, 25, 0, 0, 1)}),
		single("grid-holes", gridShape(r, math.Round(cx), math.Round(cy))),
		single("scribble", [][][2]float64{scribble(r, 60, cx, cy, 0.1)}),
		single("scribble-lattice", [][][2]float64{latticeScribble(r, 40), latticeScribble(r, 7)}),
		single("tiny", [][][2]float64{star(r, 12, cx, cy, 1e-6, 0.5)}),
		single("degenerate-line", [][][2]float64{ring([2]float64{cx, cy}, [2]float64{cx + 1, cy}, [2]float64{cx + 0.5, cy})}),
		single("antimeridian-edge", [][][2]float64{rect(179.5, cy, 180, cy+0.5)}),
	}
	var mp [][][][2]float64
	for i := range 6 {
		x, y := cx+float64(i%3)*0.5, cy+float64(i/3)*0.5
		if i%2 == 0 {
			mp = append(mp, starWithHoles(r, 80, x, y, 0.2))
		} else {
			mp = append(mp, [][][2]float64{star(r, 50, x, y, 0.2, 0.3)})
		}
	}
	cs = append(cs, shapeCase{"multi", true, mp})
	// Split at the antimeridian as RFC 7946 asks: both halves share the
	// ±180 edge.
	cs = append(cs, shapeCase{"antimeridian-split", true, [][][][2]float64{
		{ring([2]float64{170, 10}, [2]float64{180, 10}, [2]float64{180, 20}, [2]float64{175, 25})},
		{ring([2]float64{-180, 10}, [2]float64{-170, 12}, [2]float64{-175, 20}, [2]float64{-180, 20})},
	}})
	return cs
}

// bruteContains is the reference: the even-odd ray test over every edge.
func bruteContains(z *Zone, x, y float64) bool {
	in := false
	z.forEachEdge(func(e uint32) {
		if crosses(x, y, z.pts[e], z.pts[e+1]) {
			in = !in
		}
	})
	return in
}

// textbookContains is W. R. Franklin's PNPOLY over the input rings, as
// independent of the package as possible: it divides where crosses
// multiplies, so the two can differ only for points within rounding of an
// edge.
func textbookContains(polys [][][][2]float64, x, y float64) bool {
	in := false
	for _, rings := range polys {
		for _, rg := range rings {
			for i, j := 0, len(rg)-1; i < len(rg); j, i = i, i+1 {
				xi, yi, xj, yj := rg[i][0], rg[i][1], rg[j][0], rg[j][1]
				if (yi > y) != (yj > y) && x < (xj-xi)*(y-yi)/(yj-yi)+xi {
					in = !in
				}
			}
		}
	}
	return in
}

// bruteDistanceM is the reference distance: 0 inside, else the minimum
// over every edge in the same projection as DistanceM.
func bruteDistanceM(z *Zone, lat, lon float64) float64 {
	x := lon
	if !(x >= z.minX && x <= z.maxX) {
		x = z.wrap(x)
	}
	if bruteContains(z, x, lat) {
		return 0
	}
	kx, ky := z.scale(lat)
	best := math.Inf(1)
	z.forEachEdge(func(e uint32) {
		best = min(best, segDist2(x, lat, z.pts[e], z.pts[e+1], kx, ky))
	})
	return math.Sqrt(best)
}

// testPoints returns query points {lon, lat} for a zone: uniform in and
// around the box, on vertex latitudes and longitudes, on vertices, on edge
// midpoints, on cell borders and a little off them.
func testPoints(r *rand.Rand, z *Zone, n int) [][2]float64 {
	w, h := z.maxX-z.minX, z.maxY-z.minY
	uni := func() (float64, float64) {
		return z.minX - 0.1*w + 1.2*w*r.Float64(), z.minY - 0.1*h + 1.2*h*r.Float64()
	}
	var ps [][2]float64
	for range n {
		x, y := uni()
		ps = append(ps, [2]float64{x, y})
		v := z.pts[r.IntN(len(z.pts))]
		ps = append(ps, [2]float64{x, v.Y}, [2]float64{v.X, y}, [2]float64{v.X, v.Y})
		ps = append(ps, [2]float64{math.Nextafter(v.X, math.Inf(1)), v.Y}, [2]float64{v.X, math.Nextafter(v.Y, math.Inf(-1))})
		e := r.IntN(len(z.pts) - 1)
		a, b := z.pts[e], z.pts[e+1]
		ps = append(ps, [2]float64{(a.X + b.X) / 2, (a.Y + b.Y) / 2})
		c, row := r.IntN(z.cols+1), r.IntN(z.rows+1)
		ps = append(ps, [2]float64{z.west(c), y}, [2]float64{x, z.south(row)}, [2]float64{z.west(c), z.south(row)})
		// lattice points for the grid-aligned shapes
		ps = append(ps, [2]float64{math.Round(x*100) / 100, math.Round(y*100) / 100})
		ps = append(ps, [2]float64{math.Round(x*2) / 2, math.Round(y)})
	}
	return ps
}

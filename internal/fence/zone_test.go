package fence

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/geo"
)

// TestContainsBruteForce checks Contains against the even-odd ray test over
// all edges on random shapes and on points chosen to hit the ray cast's
// edge cases: vertex latitudes, vertices, cell borders, lattice points.
// The grid is exact (doc.go), so every point must agree, including points
// on edges.
func TestContainsBruteForce(t *testing.T) {
	r := newRand(t)
	n := 400
	if testing.Short() {
		n = 100
	}
	for _, sc := range randomShapes(r) {
		z := sc.zone(t)
		checked, inside := 0, 0
		for _, p := range testPoints(r, z, n) {
			got, want := z.Contains(p[1], p[0]), bruteContains(z, p[0], p[1])
			if got != want {
				t.Fatalf("%s: Contains(lat %v, lon %v) = %v, brute force %v", sc.name, p[1], p[0], got, want)
			}
			checked++
			if got {
				inside++
			}
		}
		t.Logf("%-18s %6d vertices %4dx%-4d grid %7d bytes: %d points, %d inside",
			sc.name, z.NumVertices(), z.rows, z.cols, z.MemBytes(), checked, inside)
	}
}

// TestContainsTextbook checks Contains against PNPOLY over the raw input
// rings for uniform random points, allowing a difference only within 1e-9°
// of an edge, where division and multiplication may round apart.
func TestContainsTextbook(t *testing.T) {
	r := newRand(t)
	for _, sc := range randomShapes(r) {
		z := sc.zone(t)
		if z.orig != nil {
			continue // the textbook test has no antimeridian handling
		}
		w, h := z.maxX-z.minX, z.maxY-z.minY
		for range 2000 {
			x, y := z.minX-0.1*w+1.2*w*r.Float64(), z.minY-0.1*h+1.2*h*r.Float64()
			if got, want := z.Contains(y, x), textbookContains(sc.polys, x, y); got != want {
				kx, ky := z.scale(y)
				d := math.Inf(1)
				z.forEachEdge(func(e uint32) { d = min(d, segDist2(x, y, z.pts[e], z.pts[e+1], kx, ky)) })
				if math.Sqrt(d) > 1e-9*mPerDeg {
					t.Fatalf("%s: Contains(%v, %v) = %v, PNPOLY %v, %g m from an edge", sc.name, y, x, got, want, math.Sqrt(d))
				}
			}
		}
	}
}

// TestDistanceBruteForce checks DistanceM against the minimum over all
// edges in the same projection, for points around and far from the zone,
// and Near against its definition.
func TestDistanceBruteForce(t *testing.T) {
	r := newRand(t)
	for _, sc := range randomShapes(r) {
		z := sc.zone(t)
		w, h := max(z.maxX-z.minX, 1e-3), max(z.maxY-z.minY, 1e-3)
		for i := range 1500 {
			f := 1.6 // around the box
			if i%5 == 0 {
				f = 20 // far away
			}
			x := z.midX + f*w*(r.Float64()-0.5)
			y := (z.minY+z.maxY)/2 + f*h*(r.Float64()-0.5)
			y = min(max(y, -89.9), 89.9)
			if x < -180 || x > 180 {
				x = geo.NormLon(x)
			}
			got, want := z.DistanceM(y, x), bruteDistanceM(z, y, x)
			if math.Abs(got-want) > 1e-9*want+1e-6 {
				t.Fatalf("%s: DistanceM(%v, %v) = %v, brute force %v", sc.name, y, x, got, want)
			}
			m := want * 2 * r.Float64()
			if i%7 == 0 {
				m = want // the boundary case
			}
			if got, want := z.Near(y, x, m), z.Contains(y, x) || z.DistanceM(y, x) <= m; got != want {
				t.Fatalf("%s: Near(%v, %v, %v) = %v, want %v (DistanceM %v)", sc.name, y, x, m, got, want, z.DistanceM(y, x))
			}
		}
	}
}

// TestDistanceAccuracy measures DistanceM against great-circle distances
// (geo.DistanceM) to the nearest point of the edge found by a fine search
// along each edge, and asserts the bounds doc.go states.
func TestDistanceAccuracy(t *testing.T) {
	type cs struct {
		lat     float64 // zone's south-west corner
		sizeKm  float64 // zone's side
		maxKm   float64 // farthest query
		bound   float64 // relative error allowed
		dirs    int
		samples int
	}
	cases := []cs{
		{0, 20, 300, 0.0001, 16, 20},
		{45, 20, 300, 0.001, 16, 20},
		{60, 20, 100, 0.001, 16, 20},
		{60, 200, 300, 0.005, 16, 20},
		{70, 20, 50, 0.001, 16, 20},
	}
	for _, c := range cases {
		dLat := c.sizeKm * 1000 / mPerDeg
		dLon := dLat / math.Cos((c.lat+dLat/2)*math.Pi/180)
		z, err := NewPolygon([][][2]float64{rect(10, c.lat, 10+dLon, c.lat+dLat)})
		if err != nil {
			t.Fatal(err)
		}
		clat, clon := c.lat+dLat/2, 10+dLon/2
		worst := 0.0
		for d := range c.dirs {
			bearing := 360 * float64(d) / float64(c.dirs)
			for s := 1; s <= c.samples; s++ {
				// from the zone's edge outwards, 10 m to maxKm
				far := 10 * math.Pow(c.maxKm*100, float64(s)/float64(c.samples))
				lat, lon := geo.Destination(clat, clon, bearing, far+c.sizeKm*1000)
				got := z.DistanceM(lat, lon)
				if got == 0 {
					continue
				}
				want := geodesicToZone(z, lat, lon)
				rel := math.Abs(got-want) / want
				worst = max(worst, rel)
				if rel > c.bound {
					t.Errorf("lat %v size %v km: DistanceM(%.5f, %.5f) = %.1f m, great circle %.1f m: %.3f%% off, bound %.2f%%",
						c.lat, c.sizeKm, lat, lon, got, want, 100*rel, 100*c.bound)
				}
			}
		}
		t.Logf("zone at lat %2.0f, %3.0f km, queries to %3.0f km: worst error %.3f%%", c.lat, c.sizeKm, c.maxKm, 100*worst)
	}
}

// geodesicToZone is the great-circle distance from a point to the zone's
// boundary, minimised along each edge (straight in lon/lat) by ternary
// search from the best of 64 samples.
func geodesicToZone(z *Zone, lat, lon float64) float64 {
	best := math.Inf(1)
	z.forEachEdge(func(e uint32) {
		a, b := z.pts[e], z.pts[e+1]
		at := func(t float64) float64 {
			return geo.DistanceM(lat, lon, a.Y+t*(b.Y-a.Y), a.X+t*(b.X-a.X))
		}
		k := 0
		for i := range 65 {
			if at(float64(i)/64) < at(float64(k)/64) {
				k = i
			}
		}
		lo, hi := max(float64(k-1)/64, 0), min(float64(k+1)/64, 1)
		for range 100 {
			m1, m2 := lo+(hi-lo)/3, hi-(hi-lo)/3
			if at(m1) < at(m2) {
				hi = m2
			} else {
				lo = m1
			}
		}
		best = min(best, at((lo+hi)/2))
	})
	return best
}

func TestBoundsAndCounts(t *testing.T) {
	z, err := NewPolygon([][][2]float64{rect(10, 50, 11, 52), rect(10.2, 50.5, 10.4, 51)})
	if err != nil {
		t.Fatal(err)
	}
	minLat, minLon, maxLat, maxLon := z.Bounds()
	if minLat != 50 || minLon != 10 || maxLat != 52 || maxLon != 11 {
		t.Errorf("Bounds = %v %v %v %v", minLat, minLon, maxLat, maxLon)
	}
	if z.NumVertices() != 8 || z.NumRings() != 2 || z.NumPolygons() != 1 {
		t.Errorf("counts = %d vertices %d rings %d polygons", z.NumVertices(), z.NumRings(), z.NumPolygons())
	}
	if z.MemBytes() < 10*16 {
		t.Errorf("MemBytes = %d", z.MemBytes())
	}
	for _, c := range []struct {
		lat, lon float64
		in       bool
	}{
		{51, 10.5, true}, {50.7, 10.3, false}, {50.2, 10.3, true}, {49.9, 10.5, false},
		{52.1, 10.5, false}, {51, 11.01, false}, {math.NaN(), 10.5, false}, {51, math.NaN(), false},
	} {
		if got := z.Contains(c.lat, c.lon); got != c.in {
			t.Errorf("Contains(%v, %v) = %v", c.lat, c.lon, got)
		}
	}
	if d := z.DistanceM(math.NaN(), 10); !math.IsInf(d, 1) {
		t.Errorf("DistanceM(NaN) = %v", d)
	}
	if d := z.DistanceM(51, 10.5); d != 0 {
		t.Errorf("DistanceM inside = %v", d)
	}
	// 0.01° of latitude north of the box: 1111.95 m.
	if d := z.DistanceM(52.01, 10.5); math.Abs(d-0.01*mPerDeg) > 1e-6 {
		t.Errorf("DistanceM north = %v, want %v", d, 0.01*mPerDeg)
	}
}

// TestAntimeridian checks a MultiPolygon split at ±180° as RFC 7946 asks:
// both halves work as one zone, from either side, and Bounds crosses.
func TestAntimeridian(t *testing.T) {
	z, err := NewMultiPolygon([][][][2]float64{
		{rect(179, -1, 180, 1)},
		{rect(-180, -1, -179, 1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	minLat, minLon, maxLat, maxLon := z.Bounds()
	if minLat != -1 || minLon != 179 || maxLat != 1 || maxLon != -179 {
		t.Errorf("Bounds = %v %v %v %v, want -1 179 1 -179", minLat, minLon, maxLat, maxLon)
	}
	for _, c := range []struct {
		lat, lon float64
		in       bool
	}{
		{0, 179.5, true}, {0, -179.5, true}, {0, 180, true}, {0, -180, true},
		{0, 178.9, false}, {0, -178.9, false}, {0, 0, false}, {2, 180, false},
	} {
		if got := z.Contains(c.lat, c.lon); got != c.in {
			t.Errorf("Contains(%v, %v) = %v", c.lat, c.lon, got)
		}
	}
	// 0.5° of longitude east of -179 at the equator.
	if d, want := z.DistanceM(0, -178.5), 0.5*mPerDeg; math.Abs(d-want) > 1e-6*want {
		t.Errorf("DistanceM = %v, want %v", d, want)
	}
	if d, want := z.DistanceM(0, 178.5), 0.5*mPerDeg; math.Abs(d-want) > 1e-6*want {
		t.Errorf("DistanceM = %v, want %v", d, want)
	}
	// A zone near the antimeridian that does not cross it still sees
	// queries from the other side.
	z, err = NewPolygon([][][2]float64{rect(179, -1, 180, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// lon 180 and -180 are one meridian: the same answer (here outside:
	// the east edge is not crossed by a ray starting on it).
	if z.Contains(0, -180) != z.Contains(0, 180) || z.Contains(0.5, -180) != z.Contains(0.5, 180) {
		t.Error("Contains differs between lon 180 and -180")
	}
	if d, want := z.DistanceM(0, -179.5), 0.5*mPerDeg; math.Abs(d-want) > 1e-6*want {
		t.Errorf("DistanceM across the antimeridian = %v, want %v", d, want)
	}
}

// fuzzValues are the coordinates FuzzContains draws from: lattice points,
// values a margin or a quantum apart, the range's ends.
var fuzzValues = [...]float64{
	0, 1, 2, 3, -1, 0.5, 0.25, 1.5, 1e-12, 2e-12, 1e-9, 2e-9, 3e-9, 1 + 1e-9, 1 - 1e-12,
	10, 45, 89.999999999, 90, -90, 179.999999999, 180, -180, 33.3, 1.0 / 3, 2.0 / 3,
}

// FuzzContains builds rings from fuzzed indexes into fuzzValues and checks
// Contains against the brute force at fuzzed points and at every vertex,
// vertex latitude and cell corner.
func FuzzContains(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 1, 1, 0, 1, 255, 5, 5})
	f.Add([]byte{0, 0, 2, 0, 0, 2, 2, 2, 255, 7, 7, 255, 5, 5, 1, 5, 1, 1, 255, 1, 6})
	f.Add([]byte{8, 8, 9, 8, 9, 9, 8, 9, 255, 8, 9, 255, 10, 11, 12, 13, 14, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		var rings [][][2]float64
		var cur [][2]float64
		var probes [][2]float64
		flush := func() {
			if len(cur) >= 3 {
				rings = append(rings, ring(cur...))
			} else {
				probes = append(probes, cur...)
			}
			cur = nil
		}
		for i := 0; i+1 < len(data) && i < 2*64; i += 2 { // at most 64 positions
			if data[i] == 255 {
				flush()
				i-- // a separator is one byte
				continue
			}
			cur = append(cur, [2]float64{fuzzValues[int(data[i])%len(fuzzValues)], fuzzValues[int(data[i+1])%len(fuzzValues)]})
		}
		flush()
		for i := range rings { // latitudes must be in range
			for j := range rings[i] {
				rings[i][j][1] = max(min(rings[i][j][1], 90), -90)
			}
		}
		if len(rings) == 0 {
			return
		}
		z, err := NewPolygon(rings)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fence: ") {
				t.Fatal(err)
			}
			return
		}
		check := func(x, y float64) {
			// Longitude ±180 is one meridian: Contains wraps 180 to -180,
			// which puts such a point on any edge along the seam, where
			// either answer is right; the planar brute force cannot know.
			if got, want := z.Contains(y, x), bruteContains(z, x, y); got != want && math.Abs(x) < 180 {
				t.Fatalf("Contains(%v, %v) = %v, brute force %v", y, x, got, want)
			}
		}
		for _, p := range probes {
			check(p[0], p[1])
		}
		for _, v := range z.pts {
			for _, w := range z.pts {
				check(v.X, w.Y)
				check((v.X+w.X)/2, w.Y)
				check((v.X+w.X)/2, (v.Y+w.Y)/2)
			}
		}
		for r := 0; r <= z.rows; r++ {
			for c := 0; c <= z.cols; c++ {
				check(z.west(c), z.south(r))
			}
		}
	})
}

// TestPathologicalZones builds worst cases at the vertex limit: a ring
// through random points (every edge crosses the zone) and a sunburst whose
// spikes all meet in one cell. The build must stay bounded in time and
// memory and the answers exact.
func TestPathologicalZones(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 100,000-vertex zones")
	}
	r := newRand(t)
	n := MaxVertices - 1
	sun := make([][2]float64, n)
	for i := range sun {
		a := 2 * math.Pi * float64(i) / float64(n)
		rad := 1.0
		if i%2 == 1 {
			rad = 1e-6
		}
		sun[i] = [2]float64{rad * math.Cos(a), rad * math.Sin(a)}
	}
	for _, c := range []struct {
		name string
		ring [][2]float64
	}{
		{"scribble", scribble(r, n, 0, 0, 1)},
		{"sunburst", ring(sun...)},
	} {
		start := time.Now()
		z, err := NewPolygon([][][2]float64{c.ring})
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		listings := len(z.edges)
		t.Logf("%s: %d vertices, %dx%d grid, %d listings, %d toggles, %.1f MB, built in %v",
			c.name, z.NumVertices(), z.rows, z.cols, listings, len(z.togs), float64(z.MemBytes())/1e6, took)
		if listings > 16*z.nEdge+1024 || z.MemBytes() > 64<<20 {
			t.Errorf("%s: %d listings, %d bytes", c.name, listings, z.MemBytes())
		}
		for range 30 {
			x, y := 2*r.Float64()-1, 2*r.Float64()-1
			if got, want := z.Contains(y, x), bruteContains(z, x, y); got != want {
				t.Fatalf("%s: Contains(%v, %v) = %v, brute force %v", c.name, y, x, got, want)
			}
			got, want := z.DistanceM(y, x), bruteDistanceM(z, y, x)
			if math.Abs(got-want) > 1e-9*want+1e-6 {
				t.Fatalf("%s: DistanceM(%v, %v) = %v, brute force %v", c.name, y, x, got, want)
			}
		}
	}
}

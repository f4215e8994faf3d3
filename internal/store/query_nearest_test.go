package store

import (
	"math"
	"testing"

	"github.com/fleetd/fleetd/internal/geo"
)

// exactLatLimit and exactLonLimit are the windows by exact trigonometry,
// as query.go computed them before its trig-free bounds: the reference
// the bounds must never fall short of.
func exactLatLimit(h float64) int64 {
	if h >= 1 {
		return math.MaxInt64
	}
	return int64(2*math.Asin(math.Sqrt(h))/rad*geo.Scale) + 2
}

func exactLonLimit(q *point, h float64, latLim int64) int64 {
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

// TestWindowLimits checks the trig-free windows against the exact ones:
// never narrower (a narrower window would drop trucks), and for the short
// ranges k-nearest works at no more than a few units wider.
func TestWindowLimits(t *testing.T) {
	g := newGen(t)
	for i := 0; i < size(200000); i++ {
		h := math.Pow(10, -16+g.r.Float64()*16)
		lat := g.r.Float64()*180 - 90
		switch i % 8 {
		case 0:
			lat = []float64{90, -90, 89.9999999, 0, 45}[g.r.IntN(5)]
		case 1:
			h = []float64{0, 1, 0.999, 1e-2, 0.0025, 1e-18}[g.r.IntN(6)]
		}
		q := newPoint(lat, g.r.Float64()*360-180)
		la, el := latLimit(h), exactLatLimit(h)
		if la < el {
			t.Fatalf("latLimit(%g) = %d, exact %d", h, la, el)
		}
		if h < 1e-4 && float64(la) > float64(el)*(1+h)+3 { // up to ~60 km: asinUpper's x³/3
			t.Fatalf("latLimit(%g) = %d, exact %d: too loose", h, la, el)
		}
		// lonLimit for the window latLimit gives and for the exact one.
		for _, ll := range []int64{la, el} {
			lo, eo := q.lonLimit(h, ll), exactLonLimit(&q, h, ll)
			if lo < eo {
				t.Fatalf("lonLimit(lat %v, h %g, latLim %d) = %d, exact %d", lat, h, ll, lo, eo)
			}
			if h < 1e-4 && math.Abs(lat) < 80 && eo != math.MaxInt64 && float64(lo) > float64(eo)*(1+40*h)+3 { // asinUpper of h/c, c ≥ cos²80°
				t.Fatalf("lonLimit(lat %v, h %g, latLim %d) = %d, exact %d: too loose", lat, h, ll, lo, eo)
			}
		}
	}
}

// eps is the float64 machine epsilon, 2⁻⁵²: the polynomials below are as
// accurate as the library's functions when they stay within a few of it.
const eps = 0x1p-52

// TestSinSmall checks the polynomial against math.Sin across its range
// and past it (where it is math.Sin).
func TestSinSmall(t *testing.T) {
	g := newGen(t)
	for i := 0; i < size(100000); i++ {
		x := (g.r.Float64()*2 - 1) * math.Pow(10, -12+g.r.Float64()*12.5)
		if i%10 == 0 {
			x = []float64{0, sinSmallMax, -sinSmallMax, math.Nextafter(sinSmallMax, 1), 1e-300}[g.r.IntN(5)]
		}
		got, want := sinSmall(x), math.Sin(x)
		if math.Abs(got-want) > 2*eps*math.Abs(want) { // 2 units in the last place (CI met 2.3e-16, one ulp at 0.0086)
			t.Fatalf("sinSmall(%v) = %v, math.Sin %v", x, got, want)
		}
	}
}

// TestHoldsWindow checks the rings' integer stop test point by point: when
// it says the block of radius r holds the windows, every point outside the
// block (just past each edge, across the antimeridian, at the poles, or
// anywhere) must fail the window test.
func TestHoldsWindow(t *testing.T) {
	g := newGen(t)
	for _, deg := range []float64{0.5, 1, 0.1, 45} {
		s := mustNew(t, Options{CellDeg: deg})
		geom := &s.geom
		held := 0
		for i := 0; i < size(20000); i++ {
			lat, lon := g.r.Float64()*180-90, g.r.Float64()*360-180
			switch i % 6 {
			case 0:
				lon = []float64{180, -180, 179.9999999, -179.9999999}[g.r.IntN(4)]
			case 1:
				lat = []float64{90, -90, 89.9999, -89.9999}[g.r.IntN(4)]
			}
			n := &knn{q: newPoint(lat, lon)}
			h := math.Pow(10, -14+g.r.Float64()*14)
			if i%7 == 0 {
				h = 1 // no bound yet: unbounded windows
			}
			n.setLimits(h)
			rg := ring{g: geom, r0: geom.Row(n.q.flat), c0: geom.Col(n.q.flon)}
			r := g.r.IntN(4)
			if i%3 == 2 { // windows reaching exactly to the block's edges, ±1
				cf := geom.CellFixed
				south := int64(rg.r0-r)*cf - geo.MaxLatFixed
				north := int64(rg.r0+r+1)*cf - geo.MaxLatFixed
				off := int64(n.q.flon) + geo.MaxLonFixed - int64(rg.c0)*cf
				if off >= 2*geo.MaxLonFixed {
					off -= 2 * geo.MaxLonFixed
				}
				n.latLim = max(0, min(int64(n.q.flat)-south, north-int64(n.q.flat))+g.r.Int64N(3)-1)
				n.lonLim = max(0, min(off+int64(r)*cf, int64(r+1)*cf-off)+g.r.Int64N(3)-1)
			}
			if !rg.holdsWindow(n, r) {
				continue
			}
			held++
			// Points outside the block: around its corners and edges, one
			// unit either side, and random ones.
			rowLo, rowHi := rg.rowLo(r), rg.rowHi(r)
			south := int64(rowLo)*geom.CellFixed - geo.MaxLatFixed
			north := int64(rowHi+1)*geom.CellFixed - geo.MaxLatFixed
			west := int64(rg.c0-r)*geom.CellFixed - geo.MaxLonFixed
			east := int64(rg.c0+r+1)*geom.CellFixed - geo.MaxLonFixed
			lats := []int64{south - 1, south, north - 1, north, int64(n.q.flat), -geo.MaxLatFixed, geo.MaxLatFixed}
			lons := []int64{west - 1, west, east - 1, east, int64(n.q.flon), -geo.MaxLonFixed, geo.MaxLonFixed}
			for range 8 {
				lats = append(lats, int64(n.q.flat)+g.r.Int64N(4*geom.CellFixed)-2*geom.CellFixed)
				lons = append(lons, int64(n.q.flon)+g.r.Int64N(4*geom.CellFixed)-2*geom.CellFixed)
			}
			for _, la := range lats {
				if la < -geo.MaxLatFixed || la > geo.MaxLatFixed {
					continue
				}
				for _, lo := range lons {
					for lo > geo.MaxLonFixed {
						lo -= 2 * geo.MaxLonFixed
					}
					for lo < -geo.MaxLonFixed {
						lo += 2 * geo.MaxLonFixed
					}
					if rg.inBlock(geom.Cell(int32(la), int32(lo)), r) {
						continue
					}
					d := la - int64(n.q.flat)
					if d <= n.latLim && -d <= n.latLim && lonDiff(int32(lo), n.q.flon) <= n.lonLim {
						t.Fatalf("deg %v q (%d,%d) r %d lims %d,%d: (%d,%d) is outside the block but in the windows",
							deg, n.q.flat, n.q.flon, r, n.latLim, n.lonLim, la, lo)
					}
				}
			}
		}
		if held < size(20000)/20 {
			t.Fatalf("deg %v: the block held the windows only %d times", deg, held)
		}
	}
}

// TestNearestEdgeCases checks k-nearest against brute force where the
// window and ring shortcuts have edges: fewer trucks than k (the windows
// stay unbounded and the search must not stop early, in either
// hemisphere), empty cells between the query and every truck, trucks
// across the antimeridian and around the poles, and ties.
func TestNearestEdgeCases(t *testing.T) {
	g := newGen(t)
	type fleetCase struct {
		name  string
		place func(i int) (float64, float64)
		n     int
	}
	cases := []fleetCase{
		{"few-north", func(i int) (float64, float64) { return 10 + g.r.Float64()*60, g.r.Float64()*360 - 180 }, 7},
		{"few-south", func(i int) (float64, float64) { return -10 - g.r.Float64()*60, g.r.Float64()*360 - 180 }, 7},
		{"two-cities", func(i int) (float64, float64) { // empty cells between two dense blocks
			if i%2 == 0 {
				return 40.7 + g.r.Float64()*0.05, -74 + g.r.Float64()*0.05
			}
			return 34 + g.r.Float64()*0.05, -118.3 + g.r.Float64()*0.05
		}, 3000},
		{"antimeridian", func(i int) (float64, float64) {
			return g.r.Float64()*2 - 1, geo.NormLon(180 + (g.r.Float64()-0.5)*0.4)
		}, 2000},
		{"poles", func(i int) (float64, float64) {
			lat := 89 + g.r.Float64()
			if i%3 == 0 {
				lat = 90
			}
			if i%2 == 0 {
				lat = -lat
			}
			return lat, g.r.Float64()*360 - 180
		}, 2000},
		{"corner", func(i int) (float64, float64) { // a dense cell whose trucks sit in one corner:
			if i%10 == 0 { // densityGuess is far too small at the others and the search runs twice
				return 37 + g.r.Float64()*3, -99 + g.r.Float64()*3
			}
			return 38.0001 + g.r.Float64()*0.01, -97.9999 + g.r.Float64()*0.01
		}, 3000},
		{"ties", func(i int) (float64, float64) { // ten spots, many trucks on each
			return 39.5 + float64(i%10)*0.01, -100.25 + float64(i%10)*0.01
		}, 500},
	}
	// A dense cell made loose in most of 256 shards (hintMax trucks each),
	// with hinted trucks around it: visit's pending entries carry the
	// shard index and the loose flag side by side.
	cases = append(cases, fleetCase{"loose-256", func(i int) (float64, float64) {
		if i%4 == 0 {
			return 38 + g.r.Float64()*2, -99 + g.r.Float64()*2
		}
		return 38.1 + g.r.Float64()*0.3, -98.4 + g.r.Float64()*0.3
	}, 256 * hintMax * 3 / 2})
	for _, c := range cases {
		o := Options{}
		if c.name == "loose-256" {
			o.Shards = 256
		}
		s := mustNew(t, o)
		m := model{}
		batch := make([]Update, c.n)
		for i := range batch {
			lat, lon := c.place(i)
			batch[i] = Update{ID: id(i), Position: g.pos(lat, lon, 1000)}
		}
		s.Apply(batch)
		m.apply(batch)
		if c.name == "loose-256" { // moves inside loose cells leave their hints stale
			for i := range batch {
				lat, lon := c.place(i)
				batch[i].Position = g.pos(lat, lon, 1001)
			}
			s.Apply(batch)
			m.apply(batch)
		}
		queries := size(300)
		if c.name == "loose-256" {
			queries = size(60)
		}
		for q := 0; q < queries; q++ {
			var lat, lon float64
			switch q % 4 {
			case 0: // on or beside a truck
				p := batch[g.r.IntN(len(batch))].Position
				lat, lon = p.LatDeg(), p.LonDeg()
				if q%8 == 4 {
					lat, lon = math.Max(-90, math.Min(90, lat+(g.r.Float64()-0.5)*0.01)), geo.NormLon(lon+(g.r.Float64()-0.5)*0.01)
				}
			case 1: // anywhere
				lat, lon = g.r.Float64()*180-90, g.r.Float64()*360-180
			case 2: // the antimeridian or a pole
				lat, lon = g.r.Float64()*4-2, []float64{180, -180, 179.99999, -179.99999}[g.r.IntN(4)]
				if q%8 == 6 {
					lat, lon = []float64{90, -90, 89.99}[g.r.IntN(3)], g.r.Float64()*360-180
				}
			case 3:
				if c.name == "corner" && q%8 == 3 { // the corner cell's empty side
					lat, lon = 38.5-g.r.Float64()*0.1, -97.5-g.r.Float64()*0.1
					break
				}
				fallthrough
			default: // near the fleet
				lat, lon = c.place(g.r.IntN(c.n))
				lat, lon = math.Max(-90, math.Min(90, lat+(g.r.Float64()-0.5)*2)), geo.NormLon(lon+(g.r.Float64()-0.5)*2)
			}
			k := []int{1, 3, 10, 11, 50, min(c.n+5, 1000)}[q%6]
			radius := []float64{0, 0, 1000, 200000}[q%4]
			checkNearest(t, s, m, lat, lon, k, radius)
		}
	}
}

// TestHavToM checks the polynomial arcsine against geo.HavToM across its
// range and past it.
func TestHavToM(t *testing.T) {
	g := newGen(t)
	for i := 0; i < size(100000); i++ {
		h := math.Pow(10, -20+g.r.Float64()*20)
		if i%10 == 0 {
			h = []float64{0, 1, sinSmallMax * sinSmallMax, math.Nextafter(sinSmallMax*sinSmallMax, 1), 1e-300}[g.r.IntN(5)]
		}
		got, want := havToM(h), geo.HavToM(h)
		if math.Abs(got-want) > 3*eps*want { // 3 units in the last place: 50M samples' worst is 3.96e-16

			t.Fatalf("havToM(%v) = %v, geo.HavToM %v", h, got, want)
		}
	}
}

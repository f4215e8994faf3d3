package alert

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/fence"
	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/rules"
)

// TestKeyClause pins which clause of a rule's conditions the index is
// keyed by: the one least likely to hold, by atomPass.
func TestKeyClause(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want string // the key clause, "" for none
	}{
		{"speed > 90", "speed > 90"},
		{"speed >= 90.5", "speed >= 90.5"},
		{"heading < 10", "heading < 10"},
		{"dt <= 3", "dt <= 3"},
		{"prev.speed == 0", "prev.speed == 0"},
		{"90 < speed", "speed > 90"},
		{"speed > 90 && heading < 180 && dt < 60", "speed > 90"},
		{"prev.speed - speed > 30 && dt < 3", "dt < 3"},
		{"speed != 0 && speed > 5", ""}, // speed > 5 holds too often
		{"speed != 0 && speed > 120", "speed > 120"},
		{"speed != 0", ""},
		{"speed > 90 || dt > 5", ""}, // holds too often, by the guess
		{"speed > 130 || dt > 600 && speed > 0", "speed > 130 || dt > 600"},
		{"speed != 130 || dt > 600", ""},
		{"speed > 130 || moved_m > 2000", "speed > 130 || upper(moved_m) > 2000"},
		{"moved_m > 1000", "upper(moved_m) > 1000"},
		{"moved_m > 1000 && dt < 30", "dt < 30"},
		{"moved_m > 2500 && dt < 60", "upper(moved_m) > 2500"},
		{"ts > 5", "ts > 5"},
		{"hour() > 20 && speed > 10", "hour() > 20"},
		{"(hour() >= 20 || hour() < 4) && speed > 10", "hour() >= 20 || hour() < 4"},
		{"abs(heading - prev.heading) > 60 && speed > 30", "abs(heading - prev.heading) > 60"},
		{"lat > 47.5 && lat < 48.5 && lon > -122", "lat > 47.5"},
		{`speed > 20 && !inside("z")`, "speed > 20"},
		{"speed > 0 / 0 && dt < 5", "dt < 5"},
		{"-speed > 5", "-speed > 5"},
		{"true", ""},
		{"speed > 90 && false", ""},
	} {
		p, err := rules.Compile(tc.src, testResolver{})
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		cnf, _ := p.Conditions()
		got := ""
		if k := chooseKey(cnf); k >= 0 {
			var as []string
			for _, a := range cnf[k] {
				as = append(as, a.String())
			}
			got = strings.Join(as, " || ")
		}
		if got != tc.want {
			t.Errorf("%s: key %q, want %q (conditions %v)", tc.src, got, tc.want, cnf)
		}
	}
}

// testResolver knows one zone, "z", with ID 0.
type testResolver struct{}

func (testResolver) ZoneID(name string) (int, bool) { return 0, name == "z" }

// TestZoneReach: every point inside a zone or within the radius of it by
// fence's own distance lies in the reach, near the poles and the
// antimeridian too; and the reach is not grossly larger than needed.
func TestZoneReach(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 1))
	for range 200 {
		z := randomZone(t, r)
		radius := []float64{0, 1, 500, 20_000, 300_000}[r.IntN(5)]
		minLat, minLon, maxLat, maxLon := z.Bounds()
		rc := zoneReach(minLat, minLon, maxLat, maxLon, radius)
		for range 300 {
			// Points around the box, out to twice the radius.
			lat := minLat + (maxLat-minLat)*r.Float64()
			lon := minLon + (maxLon-minLon)*r.Float64()
			if maxLon < minLon {
				lon = geo.NormLon(minLon + (maxLon+360-minLon)*r.Float64())
			}
			lat, lon = geo.Destination(lat, lon, r.Float64()*360, r.Float64()*(2*radius+2000))
			if z.Contains(lat, lon) || z.DistanceM(lat, lon) <= radius {
				if !rc.contains(lat, lon) {
					t.Fatalf("zone %v radius %v: point (%v, %v) at %v m is outside the reach %+v",
						z.Box(), radius, lat, lon, z.DistanceM(lat, lon), rc)
				}
			}
		}
		// Tightness, away from the poles: the reach is the box grown by
		// about the radius, not much more.
		if !rc.allLon && math.Abs(minLat) < 60 && math.Abs(maxLat) < 60 {
			if grow := (rc.maxLat - maxLat) * mPerDeg; grow > radius*1.01+1 {
				t.Fatalf("reach grows latitude by %v m for radius %v", grow, radius)
			}
		}
	}
}

// randomZone is a rectangle, a circle-like polygon or an antimeridian
// MultiPolygon, anywhere from the equator to 85°.
func randomZone(t testing.TB, r *rand.Rand) *fence.Zone {
	lat := (r.Float64()*2 - 1) * 85
	lon := (r.Float64()*2 - 1) * 180
	size := math.Pow(10, -2+3*r.Float64()) // 0.01° to 10°
	var js string
	switch r.IntN(4) {
	case 0:
		lat = min(lat, 89-size)
		lon = min(lon, 180-size)
		js = rect(lat, lon, lat+size, lon+size)
	case 1:
		js = circle(min(max(lat, -80), 80), min(max(lon, -170), 170), size*20_000, 3+r.IntN(60))
	case 2:
		// Split at the antimeridian.
		lat = min(lat, 89-size)
		w, e := 180-size*r.Float64(), -180+size*r.Float64()
		js = fmt.Sprintf(`{"type":"MultiPolygon","coordinates":[[[[%v,%v],[180,%v],[180,%v],[%v,%v],[%v,%v]]],[[[-180,%v],[%v,%v],[%v,%v],[-180,%v],[-180,%v]]]]}`,
			w, lat, lat, lat+size, w, lat+size, w, lat,
			lat, e, lat, e, lat+size, lat+size, lat)
	default:
		lat = min(lat, 89-size)
		lon = min(lon, 180-2*size)
		js = fmt.Sprintf(`{"type":"MultiPolygon","coordinates":[[%s],[%s]]}`,
			ringOf(rect(lat, lon, lat+size/2, lon+size/2)), ringOf(rect(lat+size/2, lon+size, lat+size, lon+2*size)))
	}
	z, err := fence.Parse([]byte(js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return z
}

// ringOf extracts the ring array of a Polygon made by rect.
func ringOf(poly string) string {
	i := strings.Index(poly, "[[[")
	return poly[i+1 : len(poly)-2]
}

// TestIndexNeverSkips: the guard index (field guards, zone cells, reach
// boxes) returns exactly the rules that evaluating every rule on every
// update finds true.
func TestIndexNeverSkips(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 2))
	defer func(n int) { rebuildMinDead = n }(rebuildMinDead)
	for round := range 8 {
		// Odd rounds compact the index after a few deletions.
		rebuildMinDead = []int{1024, 4}[round%2]
		e, err := New(Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		var centres [][2]float64
		for i := range 10 {
			z := randomZone(t, r)
			name := fmt.Sprintf("z%d", i)
			if _, err := e.PutZone(name, strings.NewReader(string(z.AppendGeoJSON(nil)))); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
			b := z.Box()
			centres = append(centres, [2]float64{(b.MinLat + b.MaxLat) / 2, b.MinLon})
		}
		// Rules put one by one, then changed: replaced, deleted, added in
		// bulk, their zones reshaped, so that every incremental path of
		// the index (and its compaction) is checked against brute force.
		for i := range 80 {
			src := randomRule(r, names)
			if _, err := e.PutRule(fmt.Sprintf("r%03d", i), RuleSpec{When: src}); err != nil {
				t.Fatalf("%s: %v", src, err)
			}
		}
		var brute, evals uint64
		for phase := range 4 {
			switch phase {
			case 1: // replace and delete some, one by one
				for i := range 80 {
					name := fmt.Sprintf("r%03d", i)
					switch r.IntN(3) {
					case 0:
						if _, err := e.PutRule(name, RuleSpec{When: randomRule(r, names)}); err != nil {
							t.Fatal(err)
						}
					case 1:
						if err := e.DeleteRule(name); err != nil && !errors.Is(err, ErrNotFound) {
							t.Fatal(err)
						}
					}
				}
			case 2: // a bulk put over what is left, replacing some
				var rs []NamedRule
				for i := range 100 {
					rs = append(rs, NamedRule{Name: fmt.Sprintf("r%03d", 40+i), RuleSpec: RuleSpec{When: randomRule(r, names)}})
				}
				if _, _, err := e.PutRules(rs); err != nil {
					t.Fatal(err)
				}
			case 3: // reshape zones under their rules
				for i := range 5 {
					z := randomZone(t, r)
					if _, err := e.PutZone(names[i], strings.NewReader(string(z.AppendGeoJSON(nil)))); err != nil {
						t.Fatal(err)
					}
					b := z.Box()
					centres[i] = [2]float64{(b.MinLat + b.MaxLat) / 2, b.MinLon}
				}
			}
			sn := e.idx
			var in rules.Input
			sc := &scratch{}
			for range 1000 {
				c := centres[r.IntN(len(centres))]
				lat, lon := c[0], c[1]
				if r.IntN(4) == 0 {
					lat, lon = (r.Float64()*2-1)*90, (r.Float64()*2-1)*180
				}
				lat, lon = geo.Destination(lat, lon, r.Float64()*360, r.ExpFloat64()*30_000)
				in.State = rules.State{Lat: lat, Lon: lon, Speed: r.Float64() * 150, Heading: float64(r.IntN(360)), TS: 1_764_000_000 + int64(r.IntN(86400))}
				in.HasPrev = r.IntN(5) > 0
				in.Prev = rules.State{Lat: lat + r.NormFloat64()*0.01, Lon: lon, Speed: r.Float64() * 150, Heading: float64(r.IntN(360)), TS: in.TS - int64(r.IntN(10))}
				if r.IntN(10) == 0 {
					in.Speed = math.Round(in.Speed/10) * 10 // hit == and boundary constants
				}
				if r.IntN(50) == 0 {
					in.Speed = []float64{math.NaN(), math.Inf(1), math.Inf(-1)}[r.IntN(3)]
				}
				e.evalUpdate(sn, &in, sc)
				trues := slices.Sorted(slices.Values(sc.trues))
				var want []int32
				for i, lr := range sn.bySlot {
					if lr == nil {
						continue
					}
					brute++
					if lr.prog.Eval(&in, sn.zones) {
						want = append(want, int32(i))
					}
				}
				if !slices.Equal(trues, want) {
					t.Fatalf("round %d phase %d: update %+v: index found rules %v true, brute force %v\n%s",
						round, phase, in, ruleNames(sn, trues), ruleNames(sn, want), ruleNames(sn, nil))
				}
			}
			evals += sc.evals
			if n := 0; true {
				for _, lr := range sn.bySlot {
					if lr != nil {
						n++
					}
				}
				if n != sn.n || n != len(e.Rules()) {
					t.Fatalf("round %d phase %d: %d rules in slots, index counts %d, Rules lists %d", round, phase, n, sn.n, len(e.Rules()))
				}
			}
		}
		t.Logf("round %d: %d evaluations through the index, %d brute force", round, evals, brute)
	}
}

func ruleNames(sn *ruleIndex, idx []int32) string {
	var b strings.Builder
	if idx == nil {
		for _, r := range sn.bySlot {
			if r != nil {
				fmt.Fprintf(&b, "\t%s: %s\n", r.name, r.prog.Source())
			}
		}
		return b.String()
	}
	for _, i := range idx {
		fmt.Fprintf(&b, "%s ", sn.bySlot[i].name)
	}
	return b.String()
}

// randomRule returns a rule of one of the shapes dispatchers write,
// zone rules included, with constants that hit sometimes.
func randomRule(r *rand.Rand, zones []string) string {
	z := func() string { return zones[r.IntN(len(zones))] }
	cmp := func() string { return []string{">", ">=", "<", "<=", "==", "!="}[r.IntN(6)] }
	field := func() string {
		return []string{"speed", "heading", "lat", "lon", "prev.speed", "prev.heading", "prev.lat", "prev.lon", "dt"}[r.IntN(9)]
	}
	num := func() float64 { return math.Round(r.Float64()*150) / []float64{1, 10}[r.IntN(2)] }
	term := func() string {
		return []string{field(), "moved_m", "hour()", "abs(heading - prev.heading)", "prev.speed - speed", "ts % 3600"}[r.IntN(6)]
	}
	switch r.IntN(18) {
	case 12:
		return fmt.Sprintf("%s %s %v && (%s %s %v || %s %s %v)", term(), cmp(), num(), term(), cmp(), num(), term(), cmp(), num())
	case 13:
		return fmt.Sprintf("%s %s %v || %s %s %v && %s %s %v", term(), cmp(), num(), term(), cmp(), num(), term(), cmp(), num())
	case 14:
		return fmt.Sprintf("moved_m > %v && dt < %v", num()*10, r.IntN(10))
	case 15:
		return fmt.Sprintf("abs(heading - prev.heading) > %v && speed > %v", num(), num())
	case 16:
		return []string{"false", "true", "speed > 0/0", "speed != 0/0 && dt < 5", "speed > prev.speed", "!(speed > 50)"}[r.IntN(6)]
	case 17:
		return fmt.Sprintf("%s %s %v && %s(%q)", term(), cmp(), num(), []string{"inside", "!inside"}[r.IntN(2)], z())
	case 0:
		return fmt.Sprintf("%s %s %v", field(), cmp(), num())
	case 1:
		return fmt.Sprintf("%s %s %v && %s %s %v", field(), cmp(), num(), field(), cmp(), num())
	case 2:
		return fmt.Sprintf("prev.speed - speed > %v && dt < %v", num()/5, r.IntN(10))
	case 3:
		return fmt.Sprintf("inside(%q)", z())
	case 4:
		return fmt.Sprintf("near(%q, %v)", z(), []float64{0, 10, 1000, 50_000, 500_000}[r.IntN(5)])
	case 5:
		return fmt.Sprintf("inside(%q) && speed %s %v", z(), cmp(), num())
	case 6:
		return fmt.Sprintf("speed %s %v && near(%q, %v)", cmp(), num(), z(), r.IntN(20_000))
	case 7:
		return fmt.Sprintf("speed > %v && !inside(%q)", num(), z())
	case 8:
		return fmt.Sprintf("inside(%q) || speed > %v", z(), num())
	case 9:
		return fmt.Sprintf("%s %s %v || %s %s %v", field(), cmp(), num(), field(), cmp(), num())
	case 10:
		return fmt.Sprintf("near(%q, %v) && inside(%q)", z(), r.IntN(5000), z())
	default:
		return fmt.Sprintf("(hour() >= 20 || hour() < 5) && speed > %v", num())
	}
}

// TestFarTrucksSkipZoneRules: a truck far from every zone evaluates only
// the rules without a zone guard, however many zone rules there are.
func TestFarTrucksSkipZoneRules(t *testing.T) {
	e, err := New(Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		lat, lon := 30+float64(i%40)*0.4, -120+float64(i/40)*2
		name := fmt.Sprintf("city-%d", i)
		if _, err := e.PutZone(name, strings.NewReader(rect(lat, lon, lat+0.05, lon+0.05))); err != nil {
			t.Fatal(err)
		}
		if _, err := e.PutRule("in-"+name, RuleSpec{When: fmt.Sprintf(`inside(%q)`, name)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.PutRule("stopped", RuleSpec{When: "speed < 5 && prev.speed >= 5"}); err != nil {
		t.Fatal(err)
	}
	sn := e.idx
	sc := &scratch{}
	in := rules.Input{State: rules.State{Lat: 48, Lon: 10, Speed: 50}}
	e.evalUpdate(sn, &in, sc)
	if sc.evals != 0 {
		t.Fatalf("far truck: %d evaluations, want 0", sc.evals)
	}
	in.Lat, in.Lon = 30.01, -119.99
	e.evalUpdate(sn, &in, sc)
	if sc.evals > 2 || len(sc.trues) != 1 || sn.bySlot[sc.trues[0]].name != "in-city-0" {
		t.Fatalf("truck in city-0: %d evaluations, true %v", sc.evals, ruleNames(sn, sc.trues))
	}
}

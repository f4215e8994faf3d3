package rules

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// berlin is a truck at the depot-7 zone's centre, 10 s after a report
// 100 m further south at 80 km/h.
func berlin() Input {
	return Input{
		State:   State{Lat: 52.52, Lon: 13.405, Speed: 95, Heading: 170, TS: 1_700_000_000}, // 22:13:20 UTC
		Prev:    State{Lat: 52.519100679, Lon: 13.405, Speed: 80, Heading: 160, TS: 1_700_000_000 - 10},
		HasPrev: true,
	}
}

func TestEval(t *testing.T) {
	noPrev := berlin()
	noPrev.HasPrev = false
	noPrev.Prev = State{Lat: 1, Lon: 2, Speed: 3, Heading: 4, TS: 5} // ignored
	far := berlin()
	far.Lat, far.Lon = 48.137, 11.575+0.04 // ~3 km east of yard's centre, ~1 km outside
	nan := berlin()
	nan.Speed = math.NaN()

	tests := []struct {
		src  string
		in   Input
		want bool
	}{
		{"speed > 90", berlin(), true},
		{"speed > 95", berlin(), false},
		{"speed >= 95", berlin(), true},
		{"speed == 95 && heading != 171", berlin(), true},
		{"speed < 95 || heading <= 170", berlin(), true},
		{"90 < speed", berlin(), true},
		{"95 >= speed && 95 <= speed", berlin(), true},
		{"speed > 50 + 40", berlin(), true},
		{"prev.speed == 80 && prev.heading == 160 && prev.ts == ts - 10", berlin(), true},
		{"prev.lat < lat && prev.lon == lon", berlin(), true},
		{"dt == 10", berlin(), true},
		{"moved_m > 99.9 && moved_m < 100.1", berlin(), true},
		{"moved_m / dt * 3.6 > 35 && moved_m / dt * 3.6 < 37", berlin(), true}, // 36 km/h
		{"prev.speed - speed > 30 && dt < 3", berlin(), false},
		{"speed - prev.speed == 15", berlin(), true},
		// Without a previous state prev.* are the current values and the
		// derived fields are 0.
		{"prev.speed == speed && prev.heading == heading && prev.lat == lat && prev.lon == lon && prev.ts == ts", noPrev, true},
		{"dt == 0 && moved_m == 0", noPrev, true},
		{"ts == 1700000000", berlin(), true},
		{"hour() == 22", berlin(), true},
		{"hour() >= 22 || hour() < 6", berlin(), true},
		// Arithmetic.
		{"7 % 3 == 1 && -7 % 3 == -1 && 7.5 % 2 == 1.5", berlin(), true},
		{"speed % 10 == 5", berlin(), true},
		{"-speed == 0 - speed", berlin(), true},
		{"- -speed == speed", berlin(), true},
		{"2 * speed - 1 == 189", berlin(), true},
		{"speed / 5 == 19", berlin(), true},
		{"abs(heading - 200) == 30", berlin(), true},
		{"min(speed, heading) == 95 && max(speed, heading) == 170", berlin(), true},
		{"min(speed, 1) + max(dt, 100) == 101", berlin(), true},
		// Division by zero follows IEEE 754, and NaN compares false
		// except with !=.
		{"speed / 0 > 1e308", berlin(), true},
		{"-speed / 0 < -1e308", berlin(), true},
		{"0 / dt == 0", berlin(), true},
		{"dt / 0 * 0 == dt / 0 * 0", berlin(), false},
		{"dt / 0 * 0 != dt / 0 * 0", berlin(), true},
		{"speed % 0 == speed % 0", berlin(), false},
		{"dt / dt == 1", noPrev, false},
		{"!(dt / dt < 1) && !(dt / dt >= 1)", noPrev, true},
		{"speed > 0", nan, false},
		{"speed <= 0", nan, false},
		{"speed != speed", nan, true},
		{"abs(speed) > 0 || min(speed, 1) < 2 || max(speed, 1) > 0", nan, false},
		{"max(1 / 0, speed) != max(1 / 0, speed)", nan, true}, // NaN wins over +Inf, unlike math.Max
		{"max(speed / 0, dt / 0 * 0) != 0", berlin(), true},
		// Bool operators.
		{"true", berlin(), true},
		{"false", berlin(), false},
		{"!false && !!true", berlin(), true},
		{"(speed > 1) == (dt > 1)", berlin(), true},
		{"(speed > 1) != (dt > 100)", berlin(), true},
		{"speed > 1 && dt > 100 || heading > 100", berlin(), true},
		{"speed > 1 && (dt > 100 || heading > 200)", berlin(), false},
		// Zones.
		{`inside("depot-7")`, berlin(), true},
		{`!inside("depot-7")`, berlin(), false},
		{`speed > 90 && !inside("depot-7")`, berlin(), false},
		{`speed > 90 && !inside("yard")`, berlin(), true},
		{`inside("yard")`, far, false},
		{`near("yard", 10)`, far, false},
		{`near("yard", 2000)`, far, true},
		{`near("depot-7", 0)`, berlin(), true},
		{`distance_m(52.52, 13.405) == 0`, berlin(), true},
		{`distance_m(52.53, 13.405) > 1111 && distance_m(52.53, 13.405) < 1112`, berlin(), true},
	}
	z := testZones()
	for _, tt := range tests {
		p, err := Compile(tt.src, z)
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.src, err)
			continue
		}
		in := tt.in
		if got := p.Eval(&in, z); got != tt.want {
			t.Errorf("%s = %v, want %v\n%s", tt.src, got, tt.want, p.Disasm())
		}
		e, _ := parseAndCheck(tt.src, z)
		if got := evalAST(e, &in, z) != 0; got != tt.want {
			t.Errorf("evalAST(%s) = %v, want %v", tt.src, got, tt.want)
		}
	}
}

func TestEvalShortCircuit(t *testing.T) {
	tests := []struct {
		src              string
		inside, distance int
	}{
		{`speed > 100 && inside("yard")`, 0, 0},
		{`speed > 1 && inside("yard")`, 1, 0},
		{`speed > 1 || inside("yard")`, 0, 0},
		{`speed > 100 || inside("yard")`, 1, 0},
		{`inside("yard") && inside("depot-7")`, 1, 0},
		{`near("depot-7", 5)`, 1, 0}, // inside: no distance needed
		{`near("yard", 5)`, 1, 1},
		{`false && inside("yard")`, 0, 0},
		{`inside("yard") && false`, 0, 0}, // folded: zone functions are pure
	}
	for _, tt := range tests {
		z := &countingZones{fakeZones: testZones()}
		p, err := Compile(tt.src, z)
		if err != nil {
			t.Fatal(err)
		}
		in := berlin()
		p.Eval(&in, z)
		if z.inside != tt.inside || z.distance != tt.distance {
			t.Errorf("%s: %d Inside, %d DistanceM calls; want %d, %d", tt.src, z.inside, z.distance, tt.inside, tt.distance)
		}
	}
}

// A rule that names no zone runs with a nil ZoneTester.
func TestEvalNilZones(t *testing.T) {
	p, err := Compile("speed > 1 && hour() < 24", nil)
	if err != nil {
		t.Fatal(err)
	}
	in := berlin()
	if !p.Eval(&in, nil) {
		t.Error("want true")
	}
}

func TestHourUTC(t *testing.T) {
	tests := []struct {
		ts   int64
		want float64
	}{
		{0, 0}, {3599, 0}, {3600, 1}, {86399, 23}, {86400, 0}, {-1, 23}, {-3600, 23}, {-3601, 22},
		{1_700_000_000, 22}, {math.MaxInt64, 15}, {math.MinInt64, 8},
	}
	for _, tt := range tests {
		if got := hourUTC(tt.ts); got != tt.want {
			t.Errorf("hourUTC(%d) = %v, want %v", tt.ts, got, tt.want)
		}
	}
}

func TestHaversine(t *testing.T) {
	tests := []struct {
		lat1, lon1, lat2, lon2, want, tol float64
	}{
		{0, 0, 0, 0, 0, 0},
		{52.52, 13.405, 52.52, 13.405, 0, 0},
		{0, 0, 0, 1, 111195.08, 0.01},                      // one degree on the equator: 2πR/360
		{0, 0, 1, 0, 111195.08, 0.01},                      // one degree of latitude
		{90, 0, -90, 0, math.Pi * earthRadiusM, 1e-6},      // pole to pole
		{0, 0, 0, 180, math.Pi * earthRadiusM, 1e-6},       // antipodes
		{0, 179.5, 0, -179.5, 111195.08, 0.01},             // across the antimeridian
		{52.5200, 13.4050, 48.1351, 11.5820, 504_400, 500}, // Berlin–Munich ≈ 504 km
	}
	for _, tt := range tests {
		got := haversineM(tt.lat1, tt.lon1, tt.lat2, tt.lon2)
		if math.Abs(got-tt.want) > tt.tol {
			t.Errorf("haversineM(%v, %v, %v, %v) = %.3f, want %.3f ± %v", tt.lat1, tt.lon1, tt.lat2, tt.lon2, got, tt.want, tt.tol)
		}
	}
}

func TestEvalZeroAllocs(t *testing.T) {
	z := testZones()
	for _, src := range []string{
		"speed > 90 && heading < 180 && dt < 60",
		`speed > 90 && !inside("depot-7")`,
		"prev.speed - speed > 30 && dt < 3",
		`near("yard", 500) || moved_m / max(dt, 1) > 50 && hour() % 2 == 0 || distance_m(1, 2) < ts`,
		"((((((((speed + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * (2 + (1 * (2 + (1 * (2 + (1 * (2 + (1 * dt))))))))) > 0",
	} {
		p, err := Compile(src, z)
		if err != nil {
			t.Fatal(err)
		}
		in := berlin()
		if n := testing.AllocsPerRun(100, func() { p.Eval(&in, z) }); n != 0 {
			t.Errorf("%s: %v allocs per Eval, want 0", src, n)
		}
	}
}

// A rule deep enough to need more than smallStack slots runs on the
// large stack, and a rule deeper than maxStack does not compile.
func TestEvalStackBound(t *testing.T) {
	deep := strings.Repeat("(1 + ", 20) + "speed" + strings.Repeat(")", 20) + " > 20"
	p, err := Compile(deep, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.maxStack <= smallStack {
		t.Fatalf("max stack %d, want > %d", p.maxStack, smallStack)
	}
	in := berlin()
	if !p.Eval(&in, nil) {
		t.Errorf("%s = false, want true", deep)
	}
	// Each min(x, ...) nests one call and one expression level and
	// holds one more stack slot; the nesting limit stops it first.
	_, err = Compile(strings.Repeat("min(speed, ", 40)+"1"+strings.Repeat(")", 40)+" > 0", nil)
	if err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Errorf("deep min: %v", err)
	}
}

// Constant folding: the folded program has the constants the brief
// promises and no instruction for the folded parts.
func TestFold(t *testing.T) {
	tests := []struct {
		src, want string // want: the folded tree
	}{
		{"speed > 50 + 40", "(> speed 90)"},
		{"true && speed > 1", "(> speed 1)"},
		{"speed > 1 && true", "(> speed 1)"},
		{"false && speed > 1", "false"},
		{"speed > 1 && false", "false"},
		{"true || speed > 1", "true"},
		{"speed > 1 || true", "true"},
		{"false || speed > 1", "(> speed 1)"},
		{"speed > 1 || false", "(> speed 1)"},
		{"!true", "false"},
		{"!!(speed > 1)", "(> speed 1)"},
		{"- -speed > 1", "(> speed 1)"},
		{"-(2) * 3 < speed", "(< -6 speed)"},
		{"speed > abs(-3) + min(1, 2) * max(3, 4) % 3", "(> speed 4)"},
		{"1 / 0 > speed", "(> +Inf speed)"},
		{"speed * 0 == 0", "(== (* speed 0) 0)"}, // not folded: speed may be NaN
		{"!(speed < 1)", "(! (< speed 1))"},      // not speed >= 1: NaN
		{"2 < 3 && speed > 1", "(> speed 1)"},
		{"(1 == 1) == (2 != 2)", "false"},
		{`near("yard", 10 * 100)`, `(near "yard" 1000)`},
		{"distance_m(52, 13 + 1) < 5", "(< (distance_m 52 14) 5)"},
	}
	for _, tt := range tests {
		e, err := parseAndCheck(tt.src, testZones())
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		f, err := fold(tt.src, e)
		if err != nil {
			t.Fatalf("fold(%s): %v", tt.src, err)
		}
		if got := sexpr(f); got != tt.want {
			t.Errorf("fold(%s) = %s, want %s", tt.src, got, tt.want)
		}
	}
}

// haversineRef is the textbook formula, for checking haversineM's near
// path.
func haversineRef(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	sLat := math.Sin((lat2 - lat1) * rad / 2)
	sLon := math.Sin((lon2 - lon1) * rad / 2)
	a := sLat*sLat + math.Cos(lat1*rad)*math.Cos(lat2*rad)*sLon*sLon
	return 2 * earthRadiusM * math.Asin(math.Sqrt(min(a, 1)))
}

func TestHaversineNear(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 5))
	worst := 0.0
	for i := 0; i < 200_000; i++ {
		lat1, lon1 := r.Float64()*180-90, r.Float64()*360-180
		// Separations from millimetres to just past the near path's bound.
		scale := math.Pow(10, -8+r.Float64()*8) // degrees
		lat2 := math.Max(-90, math.Min(90, lat1+(r.Float64()-0.5)*2*scale*1.2))
		lon2 := lon1 + (r.Float64()-0.5)*2*scale*1.2
		got, want := haversineM(lat1, lon1, lat2, lon2), haversineRef(lat1, lon1, lat2, lon2)
		// At millimetres both are limited by the rounding of the degree
		// inputs: compare within a relative 1e-12 or an absolute 1 µm.
		if err := math.Abs(got - want); err > 1e-6 && err > 1e-12*want {
			t.Fatalf("haversineM(%v, %v, %v, %v) = %v, reference %v", lat1, lon1, lat2, lon2, got, want)
		} else if want > 1 {
			worst = math.Max(worst, err/want)
		}
	}
	t.Logf("worst relative difference from the reference above 1 m: %.2g", worst)
	// The near path is continuous with the general one at its bound.
	const deg = nearRad * 180 / math.Pi
	for _, lat := range []float64{0, 45, 89.9, -60} {
		a := haversineM(lat, 10, lat, 10+deg*0.9999999)
		b := haversineM(lat, 10, lat, 10+deg*1.0000001)
		if math.Abs(a-b) > 1e-3*a {
			t.Errorf("discontinuity at lat %v: %v vs %v", lat, a, b)
		}
	}
	if d := haversineM(math.NaN(), 0, 0, 0); !math.IsNaN(d) {
		t.Errorf("NaN input gave %v", d)
	}
}

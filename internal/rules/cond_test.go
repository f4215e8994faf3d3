package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// cnfString prints conditions as "(a || b) && c", "false" for an empty
// clause, "" for none, with " [exact]" when they are.
func cnfString(cnf [][]Atom, exact bool) string {
	var parts []string
	for _, c := range cnf {
		if len(c) == 0 {
			parts = append(parts, "false")
			continue
		}
		var as []string
		for _, a := range c {
			as = append(as, a.String())
		}
		s := strings.Join(as, " || ")
		if len(c) > 1 && len(cnf) > 1 {
			s = "(" + s + ")"
		}
		parts = append(parts, s)
	}
	s := strings.Join(parts, " && ")
	if exact {
		s += " [exact]"
	}
	return s
}

func TestConditions(t *testing.T) {
	// Clauses come in the compiled order: cheapest first.
	for _, tc := range []struct{ src, want string }{
		{"speed > 90", "speed > 90 [exact]"},
		{"90 < speed", "speed > 90 [exact]"},
		{"speed >= 50 + 40", "speed >= 90 [exact]"},
		{"speed > 90 && heading < 180 && dt < 60", "speed > 90 && heading < 180 && dt < 60 [exact]"},
		{"prev.speed - speed > 30 && dt < 3", "dt < 3 && prev.speed - speed > 30 [exact]"},
		{"abs(heading - prev.heading) > 60 && speed > 30", "speed > 30 && abs(heading - prev.heading) > 60 [exact]"},
		{"(hour() >= 20 || hour() < 4) && speed > 10", "speed > 10 && (hour() >= 20 || hour() < 4) [exact]"},
		{"moved_m > 1000 && dt < 30", "dt < 30 && moved_m > 1000 && upper(moved_m) > 1000 [exact]"},
		{"speed > 130 || dt > 600 && speed > 0", "(speed > 130 || dt > 600) && (speed > 130 || speed > 0) [exact]"},
		{"speed != 0", "speed != 0 [exact]"},
		{"ts % 86400 < 3600", "ts % 86400 < 3600 [exact]"},
		{"-speed > 5", "-speed > 5 [exact]"},
		{"min(speed, prev.speed) * 2 >= 7", "min(speed, prev.speed) * 2 >= 7 [exact]"},
		{"distance_m(52.5, 13.4) < 500", "distance_m(52.5, 13.4) < 500 [exact]"},
		{"speed > 0 / 0", "speed > NaN [exact]"},
		{"true", " [exact]"},
		{"speed > 90 && false", "false [exact]"},
		{"speed > 90 || true", " [exact]"},
		// Partly or not known.
		{`inside("depot-7") && speed > 10`, "speed > 10"},
		{`speed > 20 && !inside("depot-7")`, "speed > 20"},
		{`inside("depot-7") || speed > 10`, ""},
		{"speed > prev.speed", ""},
		{"!(speed > 5)", ""},
		{"(speed > 5) == (dt > 3)", ""},
		{"speed > prev.speed && dt < 3", "dt < 3"},
		{"(speed > prev.speed || dt < 3) && lat > 1", "lat > 1"},
		{`near("yard", speed) && speed < 5`, "speed < 5"},
	} {
		p, err := Compile(tc.src, testZones())
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if got := cnfString(p.Conditions()); got != tc.want {
			t.Errorf("Conditions(%s) = %q, want %q", tc.src, got, tc.want)
		}
	}
}

// TestTermKinds: the common terms are computed without the VM, and
// exactly as it computes them.
func TestTermKinds(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 12))
	z := testZones()
	for _, tc := range []struct {
		term string
		kind termKind
	}{
		{"speed", termField}, {"moved_m", termField}, {"ts", termField}, {"hour()", termHour},
		{"heading - prev.heading", termDiff}, {"abs(heading - prev.heading)", termAbsDiff},
		{"abs(dt - prev.lat)", termAbsDiff}, {"abs(ts - prev.ts)", termProg}, {"speed * 2", termProg},
	} {
		p, err := Compile(tc.term+" > 1", nil)
		if err != nil {
			t.Fatal(err)
		}
		cnf, _ := p.Conditions()
		tm := cnf[0][0].Term
		if tm.kind != tc.kind || tm.String() != tc.term {
			t.Errorf("%s: term %q of kind %d, want kind %d", tc.term, tm, tm.kind, tc.kind)
		}
		alone, err := compile(tc.term, nil, tyInvalid)
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			in := randInput(r, z)
			if v, w := tm.Eval(&in), alone.evalNumber(&in, nil); !sameNum(v, w) {
				t.Fatalf("seed %d: %s = %v, the VM says %v on %+v", seed, tc.term, v, w, in)
			}
		}
	}
}

// TestConditionsLimits: distributing || cannot blow up; what is dropped
// costs exactness.
func TestConditionsLimits(t *testing.T) {
	var ors []string
	for i := range 10 {
		ors = append(ors, fmt.Sprintf("(speed > %d && dt < %d)", i, i))
	}
	p, err := Compile(strings.Join(ors, " || "), nil)
	if err != nil {
		t.Fatal(err)
	}
	cnf, exact := p.Conditions()
	if exact || len(cnf) > maxClauses {
		t.Fatalf("%d clauses, exact %v", len(cnf), exact)
	}
	for _, c := range cnf {
		if len(c) == 0 || len(c) > maxClauseAtoms {
			t.Fatalf("clause of %d atoms", len(c))
		}
	}
}

// atomGen generates rules made of term-vs-constant comparisons joined by
// && and || (with the occasional opaque operand), the shapes Conditions
// describes exactly.
type atomGen struct {
	exprGen
}

func (g *atomGen) rule(depth int) string {
	if depth <= 0 || g.r.IntN(3) == 0 {
		switch g.r.IntN(10) {
		case 0:
			return g.exprGen.boolean(1) // anything
		case 1:
			return g.num(1) + " " + g.pick([]string{"<", ">=", "=="}) + " " + g.num(0)
		}
		x, c := g.num(g.r.IntN(3)), g.pick(genNumbers)
		if g.r.IntN(4) == 0 {
			c = "-" + c
		}
		op := g.pick([]string{"<", "<=", ">", ">=", "==", "!="})
		if g.r.IntN(3) == 0 {
			return c + " " + op + " " + x
		}
		return x + " " + op + " " + c
	}
	return "(" + g.rule(depth-1) + " " + g.pick([]string{"&&", "||"}) + " " + g.rule(depth-1) + ")"
}

// TestConditionsRandom: on random rules and inputs (NaN and infinities
// included), a true rule satisfies every clause; an exact one is true
// exactly when every clause holds; each term evaluates as its own text
// compiled alone does.
func TestConditionsRandom(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 9))
	z := testZones()
	g := &atomGen{exprGen{r: r, zones: z.ZoneNames()}}
	rulesN, inputs := 2000, 40
	if testing.Short() {
		rulesN = 400
	}
	var exacts, checks int
	for range rulesN {
		var src string
		if r.IntN(4) == 0 {
			src = g.boolean(r.IntN(6))
		} else {
			src = g.rule(r.IntN(5))
		}
		p, err := Compile(src, z)
		if err != nil {
			if strings.Contains(err.Error(), "radius") {
				continue
			}
			t.Fatalf("seed %d: Compile(%q): %v", seed, src, err)
		}
		cnf, exact := p.Conditions()
		if exact {
			exacts++
		}
		terms := map[*Term]bool{}
		for _, c := range cnf {
			for _, a := range c {
				terms[a.Term] = true
			}
		}
		for range inputs {
			in := randInput(r, z)
			if r.IntN(4) == 0 {
				in.TS = int64(r.IntN(86400 * 3)) // every hour, and small timestamps
			}
			holds := true
			for _, c := range cnf {
				any := false
				for _, a := range c {
					any = any || a.Holds(a.Term.Eval(&in))
				}
				holds = holds && any
			}
			got := p.Eval(&in, z)
			if got && !holds {
				t.Fatalf("seed %d: %q true but its conditions %q do not hold on %+v", seed, src, cnfString(cnf, exact), in)
			}
			if exact && got != holds {
				t.Fatalf("seed %d: %q is %v but its exact conditions %q give %v on %+v", seed, src, got, cnfString(cnf, exact), holds, in)
			}
			checks++
			var fast [NumFastFields]float64
			FastFields(&in, &fast)
			for tm := range terms {
				if f, ok := tm.FastField(); ok && !sameNum(fast[f], tm.Eval(&in)) {
					t.Fatalf("seed %d: FastFields[%d] = %v, term %s = %v", seed, f, fast[f], tm, tm.Eval(&in))
				}
				s := tm.String()
				if strings.Contains(s, "Inf") || strings.Contains(s, "NaN") || tm.kind == termMovedUpper {
					continue // not source syntax
				}
				alone, err := compile(s, nil, tyInvalid)
				if err != nil {
					t.Fatalf("seed %d: term %q of %q does not compile: %v", seed, s, src, err)
				}
				if v, w := tm.Eval(&in), alone.evalNumber(&in, nil); !sameNum(v, w) {
					t.Fatalf("seed %d: term %q of %q is %v, compiled alone %v, on %+v", seed, s, src, v, w, in)
				}
			}
		}
	}
	t.Logf("%d rules (%d exact), %d checks", rulesN, exacts, checks)
}

// TestMovedUpper: the bound is never below moved_m, on random pairs of
// points near and far, across the poles and the antimeridian, nearly
// antipodal, and with odd values; and it is not much above it for GPS
// fixes.
func TestMovedUpper(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 11))
	lat := func() float64 {
		switch r.IntN(6) {
		case 0:
			return []float64{90, -90, 0, 89.9999999, -89.9999999}[r.IntN(5)]
		}
		return r.Float64()*180 - 90
	}
	lon := func() float64 {
		switch r.IntN(6) {
		case 0:
			return []float64{180, -180, 0, 179.9999999, 540, -720}[r.IntN(6)]
		}
		return r.Float64()*360 - 180
	}
	odd := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 91, -1e308}
	for i := range 200_000 {
		var in Input
		in.HasPrev = true
		in.Prev.Lat, in.Prev.Lon = lat(), lon()
		switch i % 5 {
		case 0: // far
			in.Lat, in.Lon = lat(), lon()
		case 1: // nearly antipodal
			in.Lat = -in.Prev.Lat + (r.Float64()-0.5)*1e-6*float64(r.IntN(2))
			in.Lon = in.Prev.Lon + 180 + (r.Float64()-0.5)*1e-6*float64(r.IntN(2))
		case 2: // a GPS fix later
			in.Lat = in.Prev.Lat + (r.Float64()-0.5)*0.02
			in.Lon = in.Prev.Lon + (r.Float64()-0.5)*0.02
		case 3: // same meridian
			in.Lat, in.Lon = lat(), in.Prev.Lon
		default:
			in.Lat, in.Lon = lat(), lon()
			if r.IntN(2) == 0 {
				in.Lat = odd[r.IntN(len(odd))]
			} else {
				in.Prev.Lon = odd[r.IntN(len(odd))]
			}
		}
		m, up := loadField(&in, byte(fMovedM)), movedUpper(&in)
		if m > up || math.IsNaN(up) {
			t.Fatalf("seed %d: moved_m %v above its bound %v for %+v", seed, m, up, in)
		}
		if i%5 == 2 && math.Abs(in.Lat) < 60 && up > 2.5*m+1.5 {
			t.Fatalf("seed %d: bound %v for moved_m %v: too loose (%+v)", seed, up, m, in)
		}
	}
	var in Input
	if movedUpper(&in) != 0 {
		t.Fatal("bound without a previous state")
	}
}

func TestTermEvalNoAlloc(t *testing.T) {
	p, err := Compile("abs(heading - prev.heading) > 60 && moved_m > 5 && hour() < 3", nil)
	if err != nil {
		t.Fatal(err)
	}
	cnf, _ := p.Conditions()
	in := Input{State: State{Lat: 1, Lon: 2, Speed: 3, Heading: 350, TS: 1e9}, Prev: State{Lat: 1.001, Heading: 10}, HasPrev: true}
	sum := 0.0
	if n := testing.AllocsPerRun(100, func() {
		for _, c := range cnf {
			sum += c[0].Term.Eval(&in)
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
	if math.IsNaN(sum) {
		t.Fatal("NaN")
	}
}

package rules

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestZoneGuard(t *testing.T) {
	z := testZones()
	depot, _ := z.ZoneID("depot-7")
	yard, _ := z.ZoneID("yard")
	tests := []struct {
		src    string
		zone   int
		radius float64
		ok     bool
	}{
		{`inside("depot-7")`, depot, 0, true},
		{`near("yard", 500)`, yard, 500, true},
		{`near("yard", 250 * 2)`, yard, 500, true},
		{`near("yard", 0)`, yard, 0, true},
		{`speed > 90 && inside("depot-7")`, depot, 0, true},
		{`inside("depot-7") && speed > 90 && dt < 3`, depot, 0, true},
		{`speed > 1 && (dt < 3 && near("yard", 100))`, yard, 100, true},
		{`near("yard", 500) && inside("depot-7")`, depot, 0, true},    // smallest radius
		{`near("yard", 500) && near("depot-7", 80)`, depot, 80, true}, // smallest radius
		{`near("yard", 80) && near("depot-7", 80)`, yard, 80, true},   // first on a tie
		{`true && inside("depot-7")`, depot, 0, true},                 // after folding
		{`(true || speed > 1) && inside("depot-7")`, depot, 0, true},
		{`speed > 1 && near("yard", speed) && inside("depot-7")`, depot, 0, true},
		// No guard.
		{`speed > 90`, 0, 0, false},
		{`!inside("depot-7")`, 0, 0, false},
		{`speed > 90 && !inside("depot-7")`, 0, 0, false},
		{`inside("depot-7") || speed > 90`, 0, 0, false},
		{`inside("depot-7") || inside("yard")`, 0, 0, false},
		{`near("yard", speed)`, 0, 0, false},
		{`inside("depot-7") == true`, 0, 0, false},
		{`inside("depot-7") && false`, 0, 0, false}, // folded to false
		{`distance_m(52.52, 13.405) < 100`, 0, 0, false},
	}
	for _, tt := range tests {
		p, err := Compile(tt.src, z)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		zone, radius, ok := p.ZoneGuard()
		if ok != tt.ok || ok && (zone != tt.zone || radius != tt.radius) {
			t.Errorf("ZoneGuard(%s) = %d, %v, %v; want %d, %v, %v", tt.src, zone, radius, ok, tt.zone, tt.radius, tt.ok)
		}
	}
}

// TestZoneGuardSound checks the guard's promise on random rules built
// around a guard candidate: whenever Eval is true, the truck is inside
// the guard's zone or within its radius.
func TestZoneGuardSound(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 3))
	z := testZones()
	g := &exprGen{r: r, zones: z.ZoneNames()}
	var guarded, trueEvals int
	for i := 0; i < 600; i++ {
		zoneName := g.pick(g.zones)
		atom := fmt.Sprintf("inside(%q)", zoneName)
		if r.IntN(2) == 0 {
			atom = fmt.Sprintf("near(%q, %d)", zoneName, r.IntN(20000))
		}
		// Put the atom at a random place in a && chain, sometimes under
		// ||, ! or == where it must not yield a guard.
		parts := []string{atom}
		for n := r.IntN(4); n > 0; n-- {
			other := g.operand(g.boolean(r.IntN(3)))
			if r.IntN(2) == 0 {
				parts = append(parts, other)
			} else {
				parts = append([]string{other}, parts...)
			}
		}
		src := ""
		for j, part := range parts {
			if j > 0 {
				src += g.sp() + "&&" + g.sp()
			}
			src += part
		}
		switch r.IntN(6) {
		case 0:
			src = "(" + src + ") || " + g.operand(g.boolean(1))
		case 1:
			src = "!(" + src + ")"
		}
		p, err := Compile(src, z)
		if err != nil {
			continue // a random radius folded to a bad constant
		}
		zone, radius, ok := p.ZoneGuard()
		if !ok {
			continue
		}
		guarded++
		for j := 0; j < 200; j++ {
			in := randInput(r, z)
			if !p.Eval(&in, z) {
				continue
			}
			trueEvals++
			if !z.Inside(zone, in.Lat, in.Lon) && !(z.DistanceM(zone, in.Lat, in.Lon) <= radius) {
				t.Fatalf("seed %d: %s is true at (%v, %v) but the guard says zone %d within %v m (distance %v)\n%s",
					seed, src, in.Lat, in.Lon, zone, radius, z.DistanceM(zone, in.Lat, in.Lon), p.Disasm())
			}
		}
	}
	t.Logf("%d guarded rules, %d true evaluations checked", guarded, trueEvals)
	if guarded < 100 || trueEvals < 1000 {
		t.Fatalf("seed %d: too few cases exercised the guard (%d rules, %d true evaluations)", seed, guarded, trueEvals)
	}
}

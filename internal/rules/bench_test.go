package rules

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchInputs are varied updates (so that branches are not perfectly
// predicted), near the test zones and elsewhere.
func benchInputs(n int) []Input {
	r := rand.New(rand.NewPCG(1, 2))
	z := testZones()
	ins := make([]Input, n)
	for i := range ins {
		ins[i] = randInput(r, z)
		ins[i].HasPrev = true
		if ins[i].Speed != ins[i].Speed { // keep NaN out of the benchmarks
			ins[i].Speed = 50
		}
	}
	return ins
}

const benchRule = "speed > 90 && heading < 180 && dt < 60"

func benchEval(b *testing.B, src string) {
	z := testZones()
	p, err := Compile(src, z)
	if err != nil {
		b.Fatal(err)
	}
	ins := benchInputs(1024)
	b.ReportAllocs()
	n, i := 0, 0
	for b.Loop() {
		if p.Eval(&ins[i&1023], z) {
			n++
		}
		i++
	}
	b.ReportMetric(float64(n)/float64(i), "true/op")
}

// BenchmarkEval is the brief's target rule (≤ 15 ns, 0 allocs) and its
// two examples.
func BenchmarkEval(b *testing.B) {
	b.Run("speed_heading_dt", func(b *testing.B) { benchEval(b, benchRule) })
	b.Run("overspeed_outside_depot", func(b *testing.B) { benchEval(b, `speed > 90 && !inside("depot-7")`) })
	b.Run("harsh_braking", func(b *testing.B) { benchEval(b, "prev.speed - speed > 30 && dt < 3") })
}

// mixedRules returns n rules of the shapes dispatchers write, with
// varied constants and zones: speed limits, braking, stops, zone entry
// and exit, night driving, GPS jumps.
func mixedRules(n int) []string {
	r := rand.New(rand.NewPCG(3, 4))
	zones := testZones().ZoneNames()
	zone := func() string { return zones[r.IntN(len(zones))] }
	shapes := []func() string{
		func() string { return fmt.Sprintf("speed > %d", 80+r.IntN(60)) },
		func() string { return fmt.Sprintf("speed > %d && heading < %d && dt < 60", 80+r.IntN(40), r.IntN(360)) },
		func() string { return fmt.Sprintf("prev.speed - speed > %d && dt < %d", 20+r.IntN(20), 2+r.IntN(4)) },
		func() string { return fmt.Sprintf("speed - prev.speed > %d && dt < 3", 15+r.IntN(20)) },
		func() string { return fmt.Sprintf("speed < %d && prev.speed >= %d", 1+r.IntN(5), 5+r.IntN(10)) },
		func() string {
			return fmt.Sprintf("abs(heading - prev.heading) > %d && speed > %d", 60+r.IntN(60), 30+r.IntN(30))
		},
		func() string { return fmt.Sprintf("speed > %d && !inside(%q)", 20+r.IntN(60), zone()) },
		func() string { return fmt.Sprintf("inside(%q) && speed > %d", zone(), 10+r.IntN(30)) },
		func() string {
			return fmt.Sprintf("near(%q, %d) && speed < %d", zone(), 100+r.IntN(2000), 5+r.IntN(10))
		},
		func() string {
			return fmt.Sprintf("(hour() >= %d || hour() < %d) && speed > %d", 20+r.IntN(3), 4+r.IntN(3), 10+r.IntN(20))
		},
		func() string { return fmt.Sprintf("moved_m > %d && dt < %d", 1000+r.IntN(5000), 10+r.IntN(50)) },
		func() string { return fmt.Sprintf("dt > %d", 300+r.IntN(3000)) },
		func() string {
			return fmt.Sprintf("speed > %d || dt > %d && speed > 0", 130+r.IntN(20), 600+r.IntN(600))
		},
		func() string {
			return fmt.Sprintf("lat > %v && lat < %v && lon > %v", 47+r.Float64(), 53+r.Float64(), 8+r.Float64())
		},
	}
	rules := make([]string, n)
	for i := range rules {
		rules[i] = shapes[i%len(shapes)]()
	}
	return rules
}

// BenchmarkRuleSet100 evaluates 100 mixed rules per update, all of them,
// without the zone-guard prefilter the engine adds (target ≤ 1 µs per
// update). ns/op is per update.
func BenchmarkRuleSet100(b *testing.B) {
	z := testZones()
	srcs := mixedRules(100)
	progs := make([]*Program, len(srcs))
	for i, src := range srcs {
		p, err := Compile(src, z)
		if err != nil {
			b.Fatalf("%s: %v", src, err)
		}
		progs[i] = p
	}
	ins := benchInputs(1024)
	b.ReportAllocs()
	fired, i := 0, 0
	for b.Loop() {
		in := &ins[i&1023]
		for _, p := range progs {
			if p.Eval(in, z) {
				fired++
			}
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*len(progs)), "ns/rule")
	b.ReportMetric(float64(fired)/float64(i), "fired/update")
}

func BenchmarkCompile(b *testing.B) {
	z := testZones()
	src := `speed > 90 && !inside("depot-7") || prev.speed - speed > 30 && dt < 3`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(src, z); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCacheHit(b *testing.B) {
	z := testZones()
	c := NewCache(1024)
	src := `speed > 90 && !inside("depot-7") || prev.speed - speed > 30 && dt < 3`
	if _, err := c.Compile(src, z); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get(src, z); !ok {
			b.Fatal("miss")
		}
	}
}

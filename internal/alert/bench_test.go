package alert

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
)

// The benchmark fleet: 1M trucks, IDs truck-0000000…, spread over the
// continental US, each update moving its truck up to ~1 km. Two position
// sets alternate, so each set's positions are the other's previous ones.
const (
	benchTrucks = 1_000_000
	benchBatch  = 10_000
	benchTS     = 1_764_000_000
	passSeconds = 30 // ts advance between a truck's updates
)

type benchFleet struct {
	sets [2][]fleet.Update
	pos  [2][]fleet.Position // the sets' positions, for Batch.Prev
}

var (
	fleetOnce sync.Once
	theFleet  *benchFleet
)

// benchSpeed is a truck speed: a sixth stopped or crawling, the rest
// around 80 km/h (standard deviation 12, within 30-140).
func benchSpeed(r *rand.Rand) float64 {
	if r.IntN(6) == 0 {
		return r.Float64() * 3
	}
	return min(max(80+r.NormFloat64()*12, 30), 140)
}

func loadFleet() *benchFleet {
	fleetOnce.Do(func() {
		r := rand.New(rand.NewPCG(7, 7))
		f := &benchFleet{}
		ids := make([]byte, 0, benchTrucks*13)
		for k := range f.sets {
			f.sets[k] = make([]fleet.Update, benchTrucks)
			f.pos[k] = make([]fleet.Position, benchTrucks)
		}
		for i := range benchTrucks {
			start := len(ids)
			ids = fmt.Appendf(ids, "truck-%07d", i)
			id := ids[start:len(ids):len(ids)]
			var lat, lon float64
			if i%2 == 0 {
				// Half the fleet around the cities, half anywhere.
				c := usCities[r.IntN(len(usCities))]
				lat, lon = geo.Destination(c.lat, c.lon, r.Float64()*360, r.ExpFloat64()*20_000)
			} else {
				lat, lon = 25+r.Float64()*24, -124+r.Float64()*57
			}
			heading, speed := float64(r.IntN(360)), benchSpeed(r)
			for k := range f.sets {
				if k == 1 {
					// 30 s later: up to ~1 km further, a little faster or
					// slower, turned a little.
					lat, lon = geo.Destination(lat, lon, heading, r.Float64()*1000)
					heading = float64((int(heading) + r.IntN(60) - 30 + 360) % 360)
					if speed >= 5 {
						speed = max(speed+r.NormFloat64()*5, 5)
					}
				}
				p := fleet.MakePosition(lat, lon, benchTS+int64(k*passSeconds), speed, heading)
				f.sets[k][i] = fleet.Update{ID: id, Position: p}
				f.pos[k][i] = p
			}
		}
		theFleet = f
	})
	return theFleet
}

var usCities = []struct {
	name     string
	lat, lon float64
}{
	{"new-york", 40.7128, -74.0060}, {"los-angeles", 34.0522, -118.2437}, {"chicago", 41.8781, -87.6298},
	{"houston", 29.7604, -95.3698}, {"phoenix", 33.4484, -112.0740}, {"philadelphia", 39.9526, -75.1652},
	{"san-antonio", 29.4241, -98.4936}, {"san-diego", 32.7157, -117.1611}, {"dallas", 32.7767, -96.7970},
	{"jacksonville", 30.3322, -81.6557}, {"columbus", 39.9612, -82.9988}, {"charlotte", 35.2271, -80.8431},
	{"indianapolis", 39.7684, -86.1581}, {"seattle", 47.6062, -122.3321}, {"denver", 39.7392, -104.9903},
	{"nashville", 36.1627, -86.7816}, {"el-paso", 31.7619, -106.4850}, {"boston", 42.3601, -71.0589},
	{"portland", 45.5152, -122.6784}, {"memphis", 35.1495, -90.0490},
}

// mixedRules returns 90 rules without zones, of the shapes dispatchers
// write (speeding, braking, acceleration, stops, turns, night driving,
// GPS jumps, silence, a state line), with varied constants.
func mixedRules(n int) []string {
	r := rand.New(rand.NewPCG(3, 4))
	shapes := []func() string{
		func() string { return fmt.Sprintf("speed > %d", 100+r.IntN(40)) },
		func() string { return fmt.Sprintf("speed > %d && heading < %d && dt < 60", 90+r.IntN(30), r.IntN(360)) },
		func() string { return fmt.Sprintf("prev.speed - speed > %d && dt < %d", 20+r.IntN(20), 2+r.IntN(4)) },
		func() string { return fmt.Sprintf("speed - prev.speed > %d && dt < 3", 15+r.IntN(20)) },
		func() string { return fmt.Sprintf("speed < %d && prev.speed >= %d", 1+r.IntN(5), 5+r.IntN(10)) },
		func() string {
			return fmt.Sprintf("abs(heading - prev.heading) > %d && speed > %d", 60+r.IntN(60), 30+r.IntN(30))
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
			return fmt.Sprintf("lat > %v && lat < %v && lon > %v", 47+r.Float64(), 48.5+r.Float64(), -123+r.Float64())
		},
	}
	out := make([]string, n)
	for i := range out {
		out[i] = shapes[i%len(shapes)]()
	}
	return out
}

// zoneRule returns a zone rule of one of four shapes for the named zone.
func zoneRule(i int, zone string) string {
	switch i % 4 {
	case 0:
		return fmt.Sprintf("inside(%q)", zone)
	case 1:
		return fmt.Sprintf("inside(%q) && speed > %d", zone, 40+i%30)
	case 2:
		return fmt.Sprintf("near(%q, %d) && speed < 5", zone, 500+100*(i%20))
	default:
		return fmt.Sprintf("speed > %d && near(%q, 1000)", 60+i%40, zone)
	}
}

// benchEngine returns an alert engine with the 90 mixed rules and
// zoneRules zone rules: for 10 or fewer, zones around the cities (1,000-
// vertex circles of 10-30 km and rectangles, alternately); for more,
// 2 km squares on a grid over the US.
func benchEngine(b *testing.B, mixed, zoneRules int) *Evaluator {
	b.Helper()
	e, err := New(Options{Logger: quiet, Emit: func(Alert) {}})
	if err != nil {
		b.Fatal(err)
	}
	for i, src := range mixedRules(mixed) {
		if _, err := e.PutRule(fmt.Sprintf("mixed-%02d", i), RuleSpec{When: src}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range zoneRules {
		var name, js string
		if zoneRules <= len(usCities) {
			c := usCities[i]
			name = c.name
			if i%2 == 0 {
				js = circle(c.lat, c.lon, 10_000+2000*float64(i), 1000)
			} else {
				d := 0.1 + 0.02*float64(i)
				js = rect(c.lat-d, c.lon-d, c.lat+d, c.lon+d)
			}
		} else {
			lat, lon := 25+float64(i%40)*0.6, -124+float64(i/40)*2.3
			name = fmt.Sprintf("depot-%04d", i)
			js = rect(lat, lon, lat+0.018, lon+0.024)
		}
		if _, err := e.PutZone(name, strings.NewReader(js)); err != nil {
			b.Fatal(err)
		}
		if _, err := e.PutRule(fmt.Sprintf("zone-%04d", i), RuleSpec{When: zoneRule(i, name), For: time.Duration(i%2) * time.Minute}); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// retime sets the timestamps for pass: the set moved to, pass%2, is at
// benchTS + pass*passSeconds, the other set (the previous positions) 30 s
// earlier.
func retime(f *benchFleet, pass int) {
	k := pass % 2
	now, before := uint32(benchTS+pass*passSeconds), uint32(benchTS+(pass-1)*passSeconds)
	for i := range f.sets[k] {
		f.sets[k][i].TS, f.pos[k][i].TS = now, now
		f.sets[1-k][i].TS, f.pos[1-k][i].TS = before, before
	}
}

// BenchmarkApplied measures Applied on 10,000-update batches over the 1M
// fleet: ns/update (one op is one batch), rule evaluations and
// transitions per update. Run with -cpu 1 for the cost on one core; with
// more, a batch is split over the cores.
func BenchmarkApplied(b *testing.B) {
	f := loadFleet()
	for _, c := range []struct {
		name         string
		mixed, zoned int
	}{
		{"rules=0", 0, 0},
		{"rules=100/zone=10", 90, 10},
		{"rules=1090/zone=1000", 90, 1000},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := benchEngine(b, c.mixed, c.zoned)
			batch := &fleet.Batch{
				Changed: make([]bool, benchBatch),
				HadPrev: make([]bool, benchBatch),
			}
			for i := range batch.Changed {
				batch.Changed[i], batch.HadPrev[i] = true, true
			}
			// Warm the state up with one pass over the fleet.
			off, pass := 0, 0
			retime(f, pass)
			step := func() {
				if off+benchBatch > benchTrucks {
					off, pass = 0, pass+1
					b.StopTimer()
					retime(f, pass)
					b.StartTimer()
				}
				k := pass % 2
				batch.Updates = f.sets[k][off : off+benchBatch]
				batch.Prev = f.pos[1-k][off : off+benchBatch]
				e.Applied(batch)
				off += benchBatch
			}
			for range benchTrucks / benchBatch {
				step()
			}
			st0 := e.Stats()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			st := e.Stats()
			n := float64(b.N) * benchBatch
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/update")
			b.ReportMetric(float64(st.Evaluations-st0.Evaluations)/n, "evals/update")
			b.ReportMetric(float64(st.Fired+st.Resolved-st0.Fired-st0.Resolved)/n, "transitions/update")
			b.ReportMetric(float64(st.StateBytes)/benchTrucks, "state_B/truck")
		})
	}
}

// BenchmarkIngest is the end-to-end figure: in-memory fleet engines with
// an alert engine as their observer, one without rules and one with 100
// (90 mixed, 10 zone rules), and for reference one without observer, each
// moving the 1M fleet in 10,000-update batches; passes alternate between
// them so all see the same machine load. One op is a full pass of each.
// It reports the update rates and the ratio of 100 rules to none (target
// >= 0.70).
func BenchmarkIngest(b *testing.B) {
	f := loadFleet()
	type side struct {
		eng  *engine.Engine
		al   *Evaluator
		took time.Duration
	}
	// sides: no rules, 100 rules, and for reference no observer at all.
	var sides [3]*side
	for i := range sides {
		var al *Evaluator
		var obs []fleet.Observer
		switch i {
		case 0:
			al = benchEngine(b, 0, 0)
			obs = []fleet.Observer{al}
		case 1:
			al = benchEngine(b, 90, 10)
			obs = []fleet.Observer{al}
		}
		eng, err := engine.Open(engine.Options{Observers: obs, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Close()
		retime(f, 0)
		for off := 0; off < benchTrucks; off += benchBatch {
			if _, err := eng.Apply(f.sets[0][off : off+benchBatch]); err != nil {
				b.Fatal(err)
			}
		}
		sides[i] = &side{eng: eng, al: al}
	}
	pass := 0
	run := func(s *side, k int) {
		for off := 0; off < benchTrucks; off += benchBatch {
			if _, err := s.eng.Apply(f.sets[k][off : off+benchBatch]); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Each pass moves every truck to the other set, 30 s later.
	pass++
	retime(f, pass)
	for _, s := range sides {
		run(s, pass%2) // warm up
	}
	st0 := sides[1].al.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		pass++
		retime(f, pass)
		b.StartTimer()
		for _, s := range sides {
			start := time.Now()
			run(s, pass%2)
			s.took += time.Since(start)
		}
	}
	n := float64(b.N) * benchTrucks
	r0, r1, rn := n/sides[0].took.Seconds(), n/sides[1].took.Seconds(), n/sides[2].took.Seconds()
	b.ReportMetric(r0, "updates/s_0rules")
	b.ReportMetric(r1, "updates/s_100rules")
	b.ReportMetric(rn, "updates/s_noobserver")
	b.ReportMetric(r1/r0, "ratio")
	st := sides[1].al.Stats()
	b.ReportMetric(float64(st.Evaluations-st0.Evaluations)/n, "evals/update")
	b.ReportMetric(float64(st.Fired+st.Resolved-st0.Fired-st0.Resolved)/n, "transitions/update")
	b.ReportMetric(float64(st.FiringNow), "firing")
}

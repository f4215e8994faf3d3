package sim

import (
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/geo"
)

const maxSpeedKmh = 100 * (1 + waveAmp) // fastest cruise on the crest of the wave

// TestFleetMotion drives a fleet with random time steps and checks every
// pair of consecutive updates of a truck against the motion model.
func TestFleetMotion(t *testing.T) {
	r, seed := testRand(t)
	const trucks = 2000
	f, err := NewFleet(FleetOptions{Trucks: trucks, Seed: int64(seed), Region: Region(r.IntN(int(numRegions)))})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1764000000, 0).Add(time.Duration(r.Int64N(int64(time.Hour))))
	prev := f.Next(nil, trucks, now)
	legOf := make([][2]float64, trucks) // leg origin after the previous update
	for i := range f.trucks {
		legOf[i] = [2]float64{f.trucks[i].oLat, f.trucks[i].oLon}
	}
	var checked, sameLeg, moving, stopped, legChanges int
	cur := make([]Update, 0, trucks)
	for round := range 200 {
		var dt time.Duration
		switch {
		case round%50 == 49:
			dt = time.Duration(r.Int64N(int64(2 * time.Hour))) // a long gap
		default:
			dt = time.Duration(r.Int64N(int64(20*time.Second))) + time.Millisecond
		}
		now = now.Add(dt)
		cur = f.Next(cur[:0], trucks, now)
		for i, u := range cur {
			p := prev[i]
			if u.Truck != uint32(i) || u.TS != now.Unix() {
				t.Fatalf("round %d: update %d is truck %d ts %d", round, i, u.Truck, u.TS)
			}
			if !(u.Lat >= -90 && u.Lat <= 90 && u.Lon >= -180 && u.Lon < 180 &&
				u.Heading >= 0 && u.Heading < 360 && u.Speed >= 0 && u.Speed <= maxSpeedKmh+1e-9) {
				t.Fatalf("round %d truck %d: invalid update %+v", round, i, u)
			}
			dtS := dt.Seconds()
			dist := geo.DistanceM(p.Lat, p.Lon, u.Lat, u.Lon) / 1000
			path := u.Speed * dtS / 3600
			tr := &f.trucks[i]
			leg := [2]float64{tr.oLat, tr.oLon}
			checked++
			if u.Speed == 0 {
				stopped++
			} else {
				moving++
			}
			// The straight-line (great-circle) move can never exceed
			// the path driven: continuity, and no speeding. The slack
			// (10 cm) covers done and leg being float32 (~3 cm at 450 km).
			if dist > path+1e-4 {
				t.Fatalf("round %d truck %d: moved %.6f km in %v at %.3f km/h (path %.6f km)", round, i, dist, dt, u.Speed, path)
			}
			if leg != legOf[i] {
				legChanges++
				legOf[i] = leg
				continue
			}
			// Same leg: the move is along the great circle, so the
			// distance is the path length.
			sameLeg++
			if math.Abs(dist-path) > 1e-4+1e-4*path {
				t.Fatalf("round %d truck %d: moved %.6f km in %v, speed %.3f km/h says %.6f km", round, i, dist, dt, u.Speed, path)
			}
			if dist < 0.005 {
				continue
			}
			// The heading is the direction of the move as it ends:
			// the reverse of the bearing back to the previous
			// position; for short moves also about the bearing of
			// the move (great circles turn by ~1° per 100 km).
			if d := angleDiff(u.Heading, geo.Bearing(u.Lat, u.Lon, p.Lat, p.Lon)+180); d > 0.05 {
				t.Fatalf("round %d truck %d: heading %.3f, reverse bearing back %.3f", round, i, u.Heading, geo.Bearing(u.Lat, u.Lon, p.Lat, p.Lon)+180)
			}
			if d := angleDiff(u.Heading, geo.Bearing(p.Lat, p.Lon, u.Lat, u.Lon)); dist < 50 && d > 1 {
				t.Fatalf("round %d truck %d: heading %.2f, bearing of the move %.2f", round, i, u.Heading, geo.Bearing(p.Lat, p.Lon, u.Lat, u.Lon))
			}
		}
		prev, cur = cur, prev
	}
	t.Logf("%d pairs: %d on the same leg, %d leg changes, %d moving, %d stopped", checked, sameLeg, legChanges, moving, stopped)
	if legChanges == 0 || stopped == 0 || moving < checked*3/4 {
		t.Errorf("implausible fleet: %d leg changes, %d stopped, %d moving of %d", legChanges, stopped, moving, checked)
	}
}

// TestFleetSpeeds checks the speed profile: road speeds while cruising,
// slower near the ends.
func TestFleetSpeeds(t *testing.T) {
	f, err := NewFleet(FleetOptions{Trucks: 5000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	var mid, ends []float64
	for i := range f.trucks {
		tr := &f.trucks[i]
		d := tr.done
		v := tr.speedAt(d)
		if v < 10 || v > maxSpeedKmh {
			t.Fatalf("truck %d: speed %.1f at km %.1f of %.1f", i, v, d, tr.leg)
		}
		if e := min(d, float64(tr.leg)-d); e > rampKm {
			mid = append(mid, v)
			if v < 40 {
				t.Fatalf("truck %d: cruising at %.1f km/h", i, v)
			}
		} else if e < 1 {
			ends = append(ends, v)
		}
	}
	if mean(ends) >= mean(mid)/2 {
		t.Errorf("mean speed near leg ends %.1f, cruising %.1f: want slower", mean(ends), mean(mid))
	}
	t.Logf("mean speed cruising %.1f km/h (%d), within 1 km of an end %.1f km/h (%d)", mean(mid), len(mid), mean(ends), len(ends))
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// TestFleetDeterministic: same seed, same updates, however the trucks are
// split across Fleets; another seed, other updates.
func TestFleetDeterministic(t *testing.T) {
	const trucks = 1000
	times := []time.Time{time.Unix(1764000000, 0), time.Unix(1764000003, 5e8), time.Unix(1764000600, 0), time.Unix(1764007200, 0)}
	run := func(seed int64, parts int) []Update {
		var out []Update
		for p := range parts {
			lo, hi := trucks*p/parts, trucks*(p+1)/parts
			f, err := NewFleet(FleetOptions{Trucks: trucks, First: lo, Count: hi - lo, Seed: seed})
			if err != nil {
				t.Fatal(err)
			}
			for _, now := range times {
				out = f.Next(out, hi-lo, now)
			}
		}
		return out
	}
	byTruck := func(us []Update) map[[2]int64]Update {
		m := map[[2]int64]Update{}
		for _, u := range us {
			m[[2]int64{int64(u.Truck), u.TS}] = u
		}
		return m
	}
	a, b, c := byTruck(run(42, 1)), byTruck(run(42, 3)), byTruck(run(43, 1))
	if len(a) != trucks*len(times) || len(b) != len(a) {
		t.Fatalf("got %d and %d updates", len(a), len(b))
	}
	differ := 0
	for k, u := range a {
		if b[k] != u {
			t.Fatalf("truck %d at %d: %+v in one fleet, %+v in three", k[0], k[1], u, b[k])
		}
		if c[k] != u {
			differ++
		}
	}
	if differ < len(a)*9/10 {
		t.Errorf("seeds 42 and 43 agree on %d of %d updates", len(a)-differ, len(a))
	}
}

func TestFleetRoundRobin(t *testing.T) {
	f, err := NewFleet(FleetOptions{Trucks: 100, First: 90, Count: 7, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	us := f.Next(nil, 10, time.Unix(1764000000, 0))
	want := []uint32{90, 91, 92, 93, 94, 95, 96, 90, 91, 92}
	for i, u := range us {
		if u.Truck != want[i] {
			t.Fatalf("update %d is truck %d, want %d", i, u.Truck, want[i])
		}
	}
	if f.Len() != 7 || f.First() != 90 || f.IDWidth() != 7 {
		t.Errorf("Len %d First %d IDWidth %d", f.Len(), f.First(), f.IDWidth())
	}
	// Time going backwards does not move a truck.
	before := f.Next(nil, 7, time.Unix(1764000100, 0))
	after := f.Next(nil, 7, time.Unix(1764000050, 0))
	for i := range before {
		if before[i].Lat != after[i].Lat || before[i].Lon != after[i].Lon {
			t.Errorf("truck %d moved backwards in time", before[i].Truck)
		}
	}
}

func TestNewFleetErrors(t *testing.T) {
	for _, o := range []FleetOptions{
		{Trucks: 0},
		{Trucks: -1},
		{Trucks: 10, First: 10},
		{Trucks: 10, First: 5, Count: 6},
		{Trucks: 10, First: -1},
		{Trucks: 10, Region: numRegions},
	} {
		if _, err := NewFleet(o); err == nil {
			t.Errorf("NewFleet(%+v) succeeded", o)
		}
	}
}

// TestFleetMemory reports and bounds the memory per truck.
func TestFleetMemory(t *testing.T) {
	if BytesPerTruck != 64 {
		t.Errorf("BytesPerTruck = %d, want 64", BytesPerTruck)
	}
	const trucks = 200000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := NewFleet(FleetOptions{Trucks: trucks, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perTruck := float64(after.HeapAlloc-before.HeapAlloc) / trucks
	runtime.KeepAlive(f)
	t.Logf("heap per truck: %.1f bytes (struct %d bytes)", perTruck, BytesPerTruck)
	if perTruck > 72 {
		t.Errorf("heap per truck %.1f bytes, want <= 72", perTruck)
	}
}

func BenchmarkFleetNext(b *testing.B) {
	const trucks, batch = 100000, 10000
	f, err := NewFleet(FleetOptions{Trucks: trucks, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1764000000, 0)
	us := make([]Update, 0, batch)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(100 * time.Millisecond) // each truck ~1 s apart
		us = f.Next(us[:0], batch, now)
	}
	b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "updates/s")
	b.ReportMetric(float64(BytesPerTruck), "bytes/truck")
}

// BenchmarkGenerate is the load generator's CPU cost per batch: advance
// 10,000 trucks and render them.
func BenchmarkGenerate(b *testing.B) {
	const trucks, batch = 100000, 10000
	f, err := NewFleet(FleetOptions{Trucks: trucks, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1764000000, 0)
	us := make([]Update, 0, batch)
	buf := make([]byte, 0, batch*lineBytesEstimate)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(100 * time.Millisecond)
		us = f.Next(us[:0], batch, now)
		buf = AppendNDJSON(buf[:0], us, f.IDWidth())
	}
	b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "updates/s")
	b.SetBytes(int64(len(buf)))
}

package trip

import (
	"math"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/sim"
)

func detect(o Options, ps []fleet.Position) ([]Stop, []Trip) {
	var stops []Stop
	var trips []Trip
	d := New(o, func(s Stop) { stops = append(stops, s) }, func(t Trip) { trips = append(trips, t) })
	for _, p := range ps {
		d.Add(p)
	}
	d.Finish()
	return stops, trips
}

// line is a trail: n points every 30 s, starting at t0 and moving east at
// speed km/h (0: parked) from lon.
func line(t0 int64, lon float64, n int, speed float64) []fleet.Position {
	var ps []fleet.Position
	for i := range n {
		_, l := geo.Destination(45, lon, 90, speed/3.6*30*float64(i))
		ps = append(ps, fleet.MakePosition(45, l, t0+int64(30*i), speed, 90))
	}
	return ps
}

func TestShapes(t *testing.T) {
	const t0 = 1_764_000_000
	drive := line(t0, 7, 20, 60)      // 9.5 min, 9.5 km
	park := line(t0+600, 7.13, 21, 0) // 10 min parked
	drive2 := line(t0+1230, 7.13, 10, 60)
	for _, c := range []struct {
		name         string
		ps           []fleet.Position
		stops, trips int
	}{
		{"empty", nil, 0, 0},
		{"one point", drive[:1], 0, 0},
		{"driving", drive, 0, 1},
		{"parked", park, 1, 0},
		{"parked too briefly", park[:5], 0, 0},
		{"drive then park", append(append([]fleet.Position{}, drive...), park...), 1, 1},
		{"park then drive", append(append([]fleet.Position{}, park...), drive2...), 1, 1},
		{"drive park drive", append(append(append([]fleet.Position{}, drive...), park...), drive2...), 1, 2},
		{"a gap while parked", []fleet.Position{park[0], park[20]}, 1, 0},
	} {
		stops, trips := detect(Options{}, c.ps)
		if len(stops) != c.stops || len(trips) != c.trips {
			t.Errorf("%s: %d stops %d trips, want %d and %d: %+v %+v", c.name, len(stops), len(trips), c.stops, c.trips, stops, trips)
		}
	}
	stops, trips := detect(Options{}, append(append(append([]fleet.Position{}, drive...), park...), drive2...))
	s := stops[0]
	if s.Start != t0+600 || s.End != t0+1230 { // drive2 sets off from the stop
		t.Errorf("stop %+v, want %d..%d", s, t0+600, t0+1230)
	}
	if d := trips[0].DistanceM; math.Abs(d-9500-geo.DistanceM(45, drive[19].LonDeg(), 45, 7.13)) > 5 {
		t.Errorf("first trip's distance %v", d)
	}
	if trips[0].MaxSpeed != 600 || trips[1].Start != s.End {
		t.Errorf("trips %+v", trips)
	}
	// A larger radius merges a slow crawl into the stop; MinDuration is a
	// setting.
	if stops, _ := detect(Options{MinDuration: 20 * time.Minute}, park); len(stops) != 0 {
		t.Errorf("a 10-minute stop with MinDuration 20m: %+v", stops)
	}
}

// TestSimulatorGroundTruth runs the detector on the simulator's trails
// (a point every 30 s for a day) and compares the stops of at least five
// minutes with those the simulator made: precision and recall at least
// 95%, start and end within 60 s.
func TestSimulatorGroundTruth(t *testing.T) {
	trucks, hours := 300, 24
	if testing.Short() {
		trucks, hours = 60, 12
	}
	const every = 30
	var truth [][]sim.Stop
	truth = make([][]sim.Stop, trucks)
	f, err := sim.NewFleet(sim.FleetOptions{Trucks: trucks, Seed: 7, Region: sim.RegionUS, OnStop: func(s sim.Stop) {
		truth[s.Truck] = append(truth[s.Truck], s)
	}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1_764_000_000, 0)
	trails := make([][]fleet.Position, trucks)
	for lap := range hours * 3600 / every {
		for _, u := range f.Next(nil, trucks, start.Add(time.Duration(lap*every)*time.Second)) {
			trails[u.Truck] = append(trails[u.Truck], fleet.MakePosition(u.Lat, u.Lon, u.TS, u.Speed, u.Heading))
		}
	}
	first, last := uint32(start.Unix()), uint32(start.Unix())+uint32(hours*3600-every)
	const tol = 60
	var truthN, truthHit, detN, detHit int
	for i := range trucks {
		stops, _ := detect(Options{}, trails[i])
		var want []sim.Stop
		for _, s := range truth[i] {
			b, e := uint32(s.Start.Unix()), uint32(s.Start.Add(s.Duration).Unix())
			if s.Duration >= 5*time.Minute && b > first+tol && e+tol < last {
				want = append(want, s)
			}
		}
		match := func(d Stop, s sim.Stop) bool {
			b, e := s.Start.Unix(), s.Start.Add(s.Duration).Unix()
			return math.Abs(float64(int64(d.Start)-b)) <= tol && math.Abs(float64(int64(d.End)-e)) <= tol
		}
		for _, s := range want {
			truthN++
			for _, d := range stops {
				if match(d, s) {
					truthHit++
					break
				}
			}
		}
		for _, d := range stops {
			if d.Start <= first+tol || d.End+tol >= last {
				continue // cut by the window
			}
			detN++
			for _, s := range truth[i] {
				if match(d, s) {
					detHit++
					break
				}
			}
		}
	}
	recall, precision := float64(truthHit)/float64(truthN), float64(detHit)/float64(detN)
	t.Logf("%d trucks × %d h: %d true stops ≥ 5 min, %d detected; recall %.3f, precision %.3f", trucks, hours, truthN, detN, recall, precision)
	if truthN < 50 || recall < 0.95 || precision < 0.95 {
		t.Fatalf("recall %.3f, precision %.3f over %d true stops (want ≥ 0.95 each)", recall, precision, truthN)
	}
}

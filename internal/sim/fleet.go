package sim

import (
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/fleetd/fleetd/internal/geo"
)

// FleetOptions configures NewFleet.
type FleetOptions struct {
	// Trucks is the size of the whole fleet: truck indexes are
	// 0..Trucks-1 and the IDs are zero-padded to IDWidth(Trucks) digits.
	Trucks int
	// First and Count select the trucks this Fleet simulates:
	// [First, First+Count). Count 0 means all trucks from First on.
	// Disjoint ranges can be simulated by separate Fleets in parallel; a
	// truck behaves the same whichever Fleet simulates it.
	First, Count int
	// Seed makes the fleet deterministic: the same seed, truck and
	// sequence of times give the same positions.
	Seed int64
	// Region selects the places the trucks drive between.
	Region Region
	// OnStop, if set, is told of every stop as it begins (the ground truth
	// that tests of trip and stop detection compare with): the parking at
	// creation, and each stop between legs.
	OnStop func(Stop)
}

// Stop is a simulated truck standing still.
type Stop struct {
	Truck    uint32
	Start    time.Time
	Duration time.Duration
}

// Fleet simulates a range of trucks driving between the places of a region.
// It is not safe for concurrent use; give each goroutine its own Fleet over
// a disjoint truck range.
type Fleet struct {
	trucks []truck // trucks[i] is truck first+i
	first  uint32
	width  int // ID digits
	cursor int // next index into trucks for Next
	net    *network
	onStop func(Stop)
}

// truck is the whole state of one simulated truck: pointer-free, so a
// million trucks are one 64 MB allocation that the GC never scans.
//
//	oLat, oLon, dLat, dLon  4 × 8 = 32 bytes  leg endpoints (degrees)
//	lastNs                      8 bytes  time last advanced to (unix ns; 0 = never)
//	done                        8 bytes  km driven on the leg
//	leg, idle               2 × 4 =  8 bytes
//	rng                         4 bytes
//	dest                        2 bytes
//	cruise + padding        1 + 1 =  2 bytes
//	                               ---------
//	                               64 bytes per truck
//
// The position is not stored: it is the point done km along the great circle
// from the origin towards the destination, recomputed when reported. done is
// a float64 so that the reported speed (distance over time) stays exact even
// for updates milliseconds apart; leg is a float32 (~3 cm resolution at
// 450 km), which only decides when the truck arrives.
type truck struct {
	oLat, oLon float64 // leg origin: where the previous leg ended
	dLat, dLon float64 // leg destination: a depot near place dest
	lastNs     int64
	done       float64 // km driven on this leg, 0 <= done < leg
	leg        float32 // great-circle length of the leg, km
	idle       float32 // seconds still to wait before driving on, >= 0
	rng        uint32  // Weyl-sequence state of the truck's own generator
	dest       uint16  // place index of the destination
	cruise     uint8   // cruise speed on this leg, km/h
	_          uint8
}

// BytesPerTruck is the simulator's memory per truck.
const BytesPerTruck = int(unsafe.Sizeof(truck{}))

// Driving model constants.
const (
	rampKm       = 5.0   // trucks slow down within this distance of a leg's ends
	rampMinShare = 0.25  // ... to this share of their cruise speed at the end
	waveKm       = 2.5   // gentle speed variation: wavelength / 2π
	waveAmp      = 0.10  // ... and relative amplitude
	depotMinKm   = 0.5   // leg endpoints are depots this far
	depotMaxKm   = 4.0   // ... to this far from the place's centre
	maxStepS     = 5.0   // integration step, seconds (larger for long gaps)
	maxSteps     = 64    // integration steps per advance over a long gap, about
	maxIter      = 10000 // bound on the work one advance may do
)

// NewFleet creates the trucks of opts.
func NewFleet(opts FleetOptions) (*Fleet, error) {
	if opts.Trucks <= 0 || int64(opts.Trucks) > math.MaxUint32 {
		return nil, fmt.Errorf("sim: fleet of %d trucks, want 1..%d", opts.Trucks, uint32(math.MaxUint32))
	}
	count := opts.Count
	if count == 0 {
		count = opts.Trucks - opts.First
	}
	if opts.First < 0 || count <= 0 || opts.First+count > opts.Trucks {
		return nil, fmt.Errorf("sim: truck range [%d, %d+%d) outside fleet of %d", opts.First, opts.First, opts.Count, opts.Trucks)
	}
	net, err := regionNetwork(opts.Region)
	if err != nil {
		return nil, err
	}
	f := &Fleet{
		trucks: make([]truck, count),
		first:  uint32(opts.First),
		width:  IDWidth(opts.Trucks),
		net:    net,
		onStop: opts.OnStop,
	}
	for i := range f.trucks {
		f.initTruck(&f.trucks[i], uint64(opts.First+i), opts.Seed, opts.Region)
	}
	return f, nil
}

// Len returns the number of trucks this Fleet simulates.
func (f *Fleet) Len() int { return len(f.trucks) }

// First returns the index of the Fleet's first truck.
func (f *Fleet) First() uint32 { return f.first }

// IDWidth returns the number of digits of the fleet's truck IDs.
func (f *Fleet) IDWidth() int { return f.width }

// Next advances the next n trucks in round-robin order to now and appends
// their updates to dst. Updates carry TS = now.Unix(). A truck's first
// update reports its creation position; a time before a truck's last
// update does not move it.
func (f *Fleet) Next(dst []Update, n int, now time.Time) []Update {
	ns := now.UnixNano()
	ts := now.Unix()
	for ; n > 0; n-- {
		i := f.cursor
		f.cursor++
		if f.cursor == len(f.trucks) {
			f.cursor = 0
		}
		t := &f.trucks[i]
		moved, dt := f.advance(t, i, ns)
		u := Update{Truck: f.first + uint32(i), TS: ts}
		u.Lat, u.Lon, u.Heading = t.position()
		switch {
		case dt > 0:
			u.Speed = moved / dt * 3600
		case t.idle == 0:
			u.Speed = t.speedAt(t.done)
		}
		dst = append(dst, u)
	}
	return dst
}

// position returns the truck's current point on its leg and its heading:
// the direction of the great circle towards the destination there.
func (t *truck) position() (lat, lon, heading float64) {
	brg := geo.Bearing(t.oLat, t.oLon, t.dLat, t.dLon)
	if t.done == 0 {
		return t.oLat, t.oLon, brg
	}
	return geo.DestinationHeading(t.oLat, t.oLon, brg, t.done*1000)
}

// speedAt is the speed in km/h at km d of the leg: the leg's cruise speed
// with a gentle wave, slowing linearly to rampMinShare of it at the ends.
func (t *truck) speedAt(d float64) float64 {
	leg := float64(t.leg)
	cruise := float64(t.cruise)
	v := cruise * (1 + waveAmp*math.Sin(d/waveKm+cruise))
	if e := min(d, leg-d); e < rampKm {
		v *= rampMinShare + (1-rampMinShare)*max(e, 0)/rampKm
	}
	return v
}

// advance moves t forward to nowNs and returns the path length driven in km
// and the time elapsed since its last advance in seconds.
func (f *Fleet) advance(t *truck, i int, nowNs int64) (movedKm, dtS float64) {
	if t.lastNs == 0 || nowNs <= t.lastNs {
		if t.lastNs == 0 {
			t.lastNs = nowNs
			if t.idle > 0 && f.onStop != nil {
				f.onStop(Stop{Truck: f.first + uint32(i), Start: time.Unix(0, nowNs), Duration: time.Duration(float64(t.idle) * 1e9)})
			}
		}
		return 0, 0
	}
	dtS = float64(nowNs-t.lastNs) / 1e9
	t.lastNs = nowNs
	step := max(maxStepS, dtS/maxSteps)
	rem := dtS
	for iter := 0; rem > 0 && iter < maxIter; iter++ {
		if t.idle > 0 {
			if float64(t.idle) >= rem {
				t.idle -= float32(rem)
				return movedKm, dtS
			}
			rem -= float64(t.idle)
			t.idle = 0
			continue
		}
		h := min(rem, step)
		v := t.speedAt(t.done)
		ds := v * h / 3600
		if left := float64(t.leg) - t.done; ds >= left {
			movedKm += left
			rem -= left / v * 3600
			f.nextLeg(t)
			if f.onStop != nil {
				at := nowNs - int64(max(rem, 0)*1e9)
				f.onStop(Stop{Truck: f.first + uint32(i), Start: time.Unix(0, at), Duration: time.Duration(float64(t.idle) * 1e9)})
			}
			continue
		}
		t.done += ds
		movedKm += ds
		rem -= h
	}
	// maxIter reached only for gaps of days: the rest of the gap is
	// dropped (the truck stands still), which keeps positions continuous.
	return movedKm, dtS
}

// initTruck places truck i somewhere along a random first leg.
func (f *Fleet) initTruck(t *truck, i uint64, seed int64, r Region) {
	t.rng = uint32(mix64(uint64(seed)^mix64(i^uint64(r)<<56)) >> 32)
	from := f.net.pickStart(t.rand())
	t.oLat, t.oLon = f.depot(t, from)
	t.dest = f.net.pickNeighbour(from, t.rand())
	t.dLat, t.dLon = f.depot(t, t.dest)
	f.startLeg(t)
	t.done = t.rand() * float64(t.leg)
	t.idle = 0
	if t.rand() < 0.10 { // parked at creation, for up to an hour
		t.idle = float32(t.rand() * 3600)
	}
}

// nextLeg starts a new leg from the current destination, after a stop.
func (f *Fleet) nextLeg(t *truck) {
	t.oLat, t.oLon = t.dLat, t.dLon
	t.dest = f.net.pickNeighbour(t.dest, t.rand())
	t.dLat, t.dLon = f.depot(t, t.dest)
	f.startLeg(t)
	if t.rand() < 0.25 {
		t.idle = float32(300 + 2100*t.rand()) // 5–40 min: loading, rest
	} else {
		t.idle = float32(15 + 75*t.rand()) // 15–90 s: a short stop
	}
}

// startLeg sets the leg length and cruise speed from the endpoints.
func (f *Fleet) startLeg(t *truck) {
	t.done = 0
	t.leg = float32(geo.DistanceM(t.oLat, t.oLon, t.dLat, t.dLon) / 1000)
	if !(t.leg > 1) {
		// Places are >= minLegKm apart and depots <= depotMaxKm from
		// their centres, so a leg is at least 12 km long.
		panic(fmt.Sprintf("BUG: sim: leg of %v km from (%v,%v) to (%v,%v)", t.leg, t.oLat, t.oLon, t.dLat, t.dLon))
	}
	if t.leg < 80 {
		t.cruise = uint8(45 + 31*t.rand()) // regional roads: 45–75 km/h
	} else {
		t.cruise = uint8(70 + 31*t.rand()) // highway: 70–100 km/h
	}
}

// depot returns a random point near place p.
func (f *Fleet) depot(t *truck, p uint16) (lat, lon float64) {
	pl := &f.net.places[p]
	return geo.Destination(pl.lat, pl.lon, 360*t.rand(), 1000*(depotMinKm+(depotMaxKm-depotMinKm)*t.rand()))
}

// rand returns the truck's next pseudo-random number in [0, 1): a 32-bit
// Weyl sequence through the lowbias32 hash (Chris Wellons).
func (t *truck) rand() float64 {
	t.rng += 0x9e3779b9
	z := t.rng
	z ^= z >> 16
	z *= 0x21f0aaad
	z ^= z >> 15
	z *= 0x735a2d97
	z ^= z >> 15
	return float64(z>>8) / (1 << 24)
}

// mix64 is the splitmix64 finalizer.
func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

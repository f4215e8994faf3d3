// Package trip splits a truck's trail into stops and the trips between
// them, in one pass and constant memory.
//
// # Definitions
//
// A stop is a run of consecutive points that all lie within Radius metres
// of the run's first point (its anchor) and span at least MinDuration, from
// the first point's ts to the last's. A gap in reporting counts as stopped
// when the points on both sides of it are within Radius (a tracker that
// sleeps while the truck is parked): stops are measured by ts, not by the
// number of points. The stop's position is the mean of its points.
//
// A trip is what lies between two stops, or between the trail's first
// point and the first stop, or the last stop and the last point: it starts
// at the last point of the stop before (or the first point) and ends at
// the anchor of the stop after (or the last point). Its distance is the
// sum of the great-circle distances between its consecutive points, its
// max_speed the largest reported speed among them. A trail that never
// moves beyond Radius is one stop (if long enough) and no trip; a trip of
// a single point is not reported.
//
// With points every 30 s, a stop's start and end are found within one
// reporting interval plus the time the truck takes to cover Radius
// (100 m at 12 km/h: 30 s).
//
// A trail must be given in ts order (history's queries are); points with
// equal ts are taken in the order given.
package trip

import (
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
)

// Defaults of Options.
const (
	DefaultRadius      = 100.0 // metres
	DefaultMinDuration = 5 * time.Minute
)

// Options defines a stop.
type Options struct {
	Radius      float64       // metres; default DefaultRadius
	MinDuration time.Duration // default DefaultMinDuration
}

// Stop is a period the truck stood within Radius of one place.
type Stop struct {
	Start, End uint32 // ts of its first and last point
	Lat, Lon   int32  // mean of its points, 1e-7°
}

// Trip is a period the truck moved between stops.
type Trip struct {
	Start, End         uint32
	StartLat, StartLon int32
	EndLat, EndLon     int32
	DistanceM          float64
	MaxSpeed           uint16 // 0.1 km/h
}

// Detector finds the stops and trips of one trail. Its zero value is not
// usable: build one with New.
type Detector struct {
	radiusHav float64
	minDur    uint32
	onStop    func(Stop)
	onTrip    func(Trip)

	started bool
	last    fleet.Position

	// the candidate stop: points within Radius of anchor since anchor
	anchor         fleet.Position
	cEnd           fleet.Position
	cLat, cLon, cN float64 // sums for the mean
	cDist          float64 // trip distance when the candidate began
	cSpeed         uint16  // trip max speed when the candidate began

	// the trip in progress, since tripStart
	tripStart fleet.Position
	dist      float64
	maxSpeed  uint16
	moved     bool // a point has left a candidate since tripStart
}

// New returns a Detector that reports each stop and trip, in order, to
// onStop and onTrip as soon as it is certain of it.
func New(o Options, onStop func(Stop), onTrip func(Trip)) *Detector {
	if o.Radius <= 0 {
		o.Radius = DefaultRadius
	}
	if o.MinDuration <= 0 {
		o.MinDuration = DefaultMinDuration
	}
	return &Detector{radiusHav: geo.MToHav(o.Radius), minDur: uint32(o.MinDuration / time.Second), onStop: onStop, onTrip: onTrip}
}

// Add takes the trail's next point.
func (d *Detector) Add(p fleet.Position) {
	if !d.started {
		d.started = true
		d.last, d.tripStart = p, p
		d.anchorAt(p)
		return
	}
	d.dist += geo.DistanceM(d.last.LatDeg(), d.last.LonDeg(), p.LatDeg(), p.LonDeg())
	d.last = p
	if geo.Hav(d.anchor.LatDeg(), d.anchor.LonDeg(), p.LatDeg(), p.LonDeg()) <= d.radiusHav {
		d.cEnd = p
		d.cLat += p.LatDeg()
		d.cLon += p.LonDeg()
		d.cN++
		d.maxSpeed = max(d.maxSpeed, p.Speed)
		return
	}
	// p left the candidate: it was a stop if it lasted.
	if d.cEnd.TS-d.anchor.TS >= d.minDur {
		d.endStop()
		d.dist = geo.DistanceM(d.tripStart.LatDeg(), d.tripStart.LonDeg(), p.LatDeg(), p.LonDeg())
	}
	d.moved = true
	d.maxSpeed = max(d.maxSpeed, p.Speed)
	d.anchorAt(p)
}

// anchorAt starts a candidate stop at p.
func (d *Detector) anchorAt(p fleet.Position) {
	d.anchor, d.cEnd = p, p
	d.cLat, d.cLon, d.cN = p.LatDeg(), p.LonDeg(), 1
	d.cDist, d.cSpeed = d.dist, d.maxSpeed
}

// endStop reports the trip before the candidate (if any) and the
// candidate as a stop, and starts a trip at the stop's last point.
func (d *Detector) endStop() {
	if d.moved {
		d.onTrip(Trip{Start: d.tripStart.TS, End: d.anchor.TS, StartLat: d.tripStart.Lat, StartLon: d.tripStart.Lon,
			EndLat: d.anchor.Lat, EndLon: d.anchor.Lon, DistanceM: d.cDist, MaxSpeed: d.cSpeed})
	}
	d.onStop(Stop{Start: d.anchor.TS, End: d.cEnd.TS, Lat: geo.ToFixed(d.cLat / d.cN), Lon: geo.ToFixed(d.cLon / d.cN)})
	d.tripStart = d.cEnd
	d.maxSpeed = 0
	d.moved = false
}

// Finish reports what is left: the candidate as a stop if it lasted long
// enough (a stop still going on), and the trip before it.
func (d *Detector) Finish() {
	if !d.started {
		return
	}
	if d.cEnd.TS-d.anchor.TS >= d.minDur {
		d.endStop()
		return
	}
	if d.moved {
		d.onTrip(Trip{Start: d.tripStart.TS, End: d.last.TS, StartLat: d.tripStart.Lat, StartLon: d.tripStart.Lon,
			EndLat: d.last.Lat, EndLon: d.last.Lon, DistanceM: d.dist, MaxSpeed: d.maxSpeed})
	}
}

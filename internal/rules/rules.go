package rules

import "github.com/fleetd/fleetd/internal/fleet"

// State is a truck's last known position report, as the store keeps it.
type State struct {
	Lat, Lon       float64 // degrees, WGS84
	Speed, Heading float64 // km/h, degrees clockwise from north
	TS             int64   // Unix seconds
}

// Set sets s from a stored position (package fleet's fixed point): the
// one conversion between what the engine keeps and what rules read.
func (s *State) Set(p *fleet.Position) {
	*s = State{Lat: p.LatDeg(), Lon: p.LonDeg(), Speed: p.SpeedKmh(), Heading: float64(p.Heading), TS: int64(p.TS)}
}

// Input is what a rule sees for one GPS update: the new report (the
// embedded State, so in.Speed is the new speed), the truck's previous
// state and whether there was one. The VM reads fields straight from it;
// dt and moved_m are computed when a rule loads them.
//
// Size: 40 + 40 + 8 (bool, padded) = 88 bytes, no pointers.
type Input struct {
	State
	Prev    State
	HasPrev bool
}

// ZoneResolver maps a zone name to its ID at compile time. The fence
// package implements it.
type ZoneResolver interface {
	ZoneID(name string) (id int, ok bool)
}

// ZoneLister is optionally implemented by a ZoneResolver; when it is,
// "unknown zone" errors suggest the closest known name.
type ZoneLister interface {
	ZoneNames() []string
}

// ZoneTester answers geometric questions about zones at run time. The
// fence package implements it. DistanceM is the distance in metres from
// the point to the zone; it may be 0 or the distance to the boundary for
// points inside, since near() tests Inside first.
type ZoneTester interface {
	Inside(zone int, lat, lon float64) bool
	DistanceM(zone int, lat, lon float64) float64
}

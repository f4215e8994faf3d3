package teltonika

import (
	"errors"
	"fmt"

	"github.com/fleetd/fleetd/internal/fleet"
)

// MakeUpdate converts a record to the update of truck id (which it
// aliases): ts in whole seconds (milliseconds truncated), lat/lon as sent
// (both are 1e-7 degree), speed km/h to 0.1 km/h, angle 360 as 0,
// altitude as fleet.Altitude. The IO elements in r.IO have no attribute
// in fleet's table yet and are not carried. It refuses what no later
// check could fix: a record without a GPS fix (latitude and longitude
// both 0, as devices send before their first fix), a time before 1970 or
// after 2106, an angle over 360; the engine-wide rules (gateway.Check)
// come after.
func MakeUpdate(id []byte, r *Record) (fleet.Update, error) {
	u := fleet.Update{ID: id}
	switch {
	case r.Lat == 0 && r.Lon == 0:
		return u, errNoFix
	case r.TimeMs < 1000 || r.TimeMs/1000 > 1<<32-1:
		return u, fmt.Errorf("teltonika: timestamp %d ms out of range", r.TimeMs)
	case r.Angle > 360:
		return u, fmt.Errorf("teltonika: angle %d out of range [0, 360]", r.Angle)
	}
	u.Lat, u.Lon = r.Lat, r.Lon
	u.TS = uint32(r.TimeMs / 1000)
	u.Speed = min(r.Speed, fleet.MaxSpeed/10+1) * 10 // over 1000 km/h fails Valid
	u.Heading = r.Angle % 360
	if v, ok := fleet.Altitude.Fixed(float64(r.Altitude)); ok {
		u.Attrs.Set(fleet.Altitude, v)
	}
	return u, nil
}

var errNoFix = errors.New("teltonika: no GPS fix (latitude and longitude 0)")

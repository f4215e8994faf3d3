package teltonika

import (
	"errors"
	"fmt"

	"github.com/fleetd/fleetd/internal/fleet"
)

// MakeUpdate converts a record to the update of truck id (which it
// aliases): ts in whole seconds (milliseconds truncated), lat/lon as sent
// (both are 1e-7 degree), speed km/h to 0.1 km/h, angle 360 as 0,
// altitude, satellites and the kept IO elements as fleet attributes (doc.go
// has the table; a value outside an attribute's range, such as an
// odometer past 2,147,483 km, is left out, not refused). It refuses what no later
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
	u.Attrs.Set(fleet.Satellites, int32(r.Satellites))
	io := &r.IO
	if io.Mask == 0 {
		return u, nil
	}
	if io.Mask&HasIgnition != 0 {
		u.Attrs.Set(fleet.Ignition, flag(io.Ignition))
	}
	if io.Mask&HasMovement != 0 {
		u.Attrs.Set(fleet.Motion, flag(io.Movement))
	}
	if io.Mask&HasOdometer != 0 && io.Odometer <= uint32(fleet.Odometer.Max()) {
		u.Attrs.Set(fleet.Odometer, int32(io.Odometer))
	}
	setMax := func(a fleet.Attr, has uint8, v int32) {
		if io.Mask&has != 0 && v <= a.Max() {
			u.Attrs.Set(a, v)
		}
	}
	setMax(fleet.ExtVoltage, HasExtVoltage, int32(io.ExtVoltage))
	setMax(fleet.BatteryVoltage, HasBatteryVoltage, int32(io.BatteryVoltage))
	setMax(fleet.BatteryLevel, HasBatteryLevel, int32(io.BatteryLevel))
	setMax(fleet.HDOP, HasHDOP, int32(io.HDOP))
	return u, nil
}

func flag(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

var errNoFix = errors.New("teltonika: no GPS fix (latitude and longitude 0)")

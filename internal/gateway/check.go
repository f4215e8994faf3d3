package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// Check reports why u cannot be applied, or nil. now is the server's
// clock and maxAhead (seconds, 0: no limit) how far ahead of it a ts may
// be; the rules are those of the package doc. ErrFuture wraps a ts too
// far ahead.
func Check(u *fleet.Update, now, maxAhead int64) error {
	switch {
	case !fleet.ValidID(u.ID):
		return fmt.Errorf("gateway: invalid id %q: must be 1-64 bytes of [A-Za-z0-9_.:-]", clip(u.ID))
	case !u.Position.Valid():
		return fmt.Errorf("gateway: position out of range (lat %v, lon %v, speed %v km/h, heading %d)",
			u.LatDeg(), u.LonDeg(), u.SpeedKmh(), u.Heading)
	case u.TS == 0:
		return errors.New("gateway: ts 0 (the device's clock is not set)")
	case maxAhead > 0 && int64(u.TS) > now+maxAhead:
		return fmt.Errorf("%w: ts %s is %s ahead of the server clock (max %s)", ErrFuture,
			time.Unix(int64(u.TS), 0).UTC().Format(time.RFC3339),
			time.Duration(int64(u.TS)-now)*time.Second, time.Duration(maxAhead)*time.Second)
	case !u.Attrs.Valid():
		return errors.New("gateway: attribute out of range")
	}
	return nil
}

// ErrFuture is wrapped by Check's error for a ts too far ahead of the
// server's clock.
var ErrFuture = errors.New("gateway: ts in the future")

func clip(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

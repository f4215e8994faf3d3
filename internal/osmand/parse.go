package osmand

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// SpeedUnit is the unit of the speed parameter of a query or form.
type SpeedUnit uint8

// The speed units; Knots is the protocol's (what OsmAnd and Traccar
// Client send).
const (
	Knots SpeedUnit = iota
	MetresPerSecond
	KmPerHour
	MilesPerHour
)

// ParseSpeedUnit parses kn, mps, kmh or mph.
func ParseSpeedUnit(s string) (SpeedUnit, error) {
	switch s {
	case "kn", "knots", "":
		return Knots, nil
	case "mps", "m/s":
		return MetresPerSecond, nil
	case "kmh", "km/h":
		return KmPerHour, nil
	case "mph":
		return MilesPerHour, nil
	}
	return 0, fmt.Errorf("osmand: speed unit %q: want kn, mps, kmh or mph", s)
}

// kmh converts a speed in u to km/h.
func (u SpeedUnit) kmh(v float64) float64 {
	switch u {
	case Knots:
		return v * 1.852
	case MetresPerSecond:
		return v * 3.6
	case MilesPerHour:
		return v * 1.609344
	}
	return v
}

// ErrSyntax is wrapped by every error of Parse and ParseJSON.
var ErrSyntax = errors.New("osmand")

// Parse reads one position from query or form parameters (doc.go lists
// them). now is the server's clock, the ts of a point without timestamp.
// The update's ID aliases nothing: it is a fresh string's bytes.
func Parse(v url.Values, unit SpeedUnit, now int64) (fleet.Update, error) {
	var u fleet.Update
	id := first(v, "id", "deviceid")
	if id == "" {
		return u, fmt.Errorf("%w: missing id (or deviceid)", ErrSyntax)
	}
	u.ID = []byte(id)
	var lat, lon float64
	var err error
	if loc := v.Get("location"); loc != "" && v.Get("lat") == "" {
		a, b, ok := strings.Cut(loc, ",")
		if !ok {
			return u, fmt.Errorf("%w: location %q: want lat,lon", ErrSyntax, clip(loc))
		}
		if lat, err = number("location latitude", a); err != nil {
			return u, err
		}
		if lon, err = number("location longitude", b); err != nil {
			return u, err
		}
	} else {
		if lat, err = required(v, "lat"); err != nil {
			return u, err
		}
		if lon, err = required(v, "lon"); err != nil {
			return u, err
		}
	}
	ts := now
	if s := v.Get("timestamp"); s != "" {
		if ts, err = Timestamp(s); err != nil {
			return u, err
		}
	}
	speed, err := optional(v, "speed")
	if err != nil {
		return u, err
	}
	heading, err := optional(v, "bearing", "heading")
	if err != nil {
		return u, err
	}
	alt, hasAlt := 0.0, first(v, "altitude") != ""
	if hasAlt {
		if alt, err = number("altitude", v.Get("altitude")); err != nil {
			return u, err
		}
	}
	return build(u.ID, lat, lon, ts, unit.kmh(speed), heading, alt, hasAlt)
}

// build makes the update, judging ranges the way ingest does; the
// remaining rules (ID, clock) are gateway.Check's.
func build(id []byte, lat, lon float64, ts int64, kmh, heading, alt float64, hasAlt bool) (fleet.Update, error) {
	u := fleet.Update{ID: id}
	switch {
	case !(lat >= -90 && lat <= 90):
		return u, fmt.Errorf("%w: lat %v out of range [-90, 90]", ErrSyntax, lat)
	case !(lon >= -180 && lon <= 180):
		return u, fmt.Errorf("%w: lon %v out of range [-180, 180]", ErrSyntax, lon)
	case ts < 1 || ts > math.MaxUint32:
		return u, fmt.Errorf("%w: timestamp %d (Unix seconds) out of range [1, 4294967295]", ErrSyntax, ts)
	}
	// Android reports -1 for an unknown speed or bearing: unknown is 0.
	kmh, heading = max(kmh, 0), max(heading, 0)
	if !(kmh <= 1000) {
		return u, fmt.Errorf("%w: speed %.1f km/h out of range [0, 1000]", ErrSyntax, kmh)
	}
	if !(heading <= 360) {
		return u, fmt.Errorf("%w: bearing %v out of range [0, 360]", ErrSyntax, heading)
	}
	u.Position = fleet.MakePosition(lat, lon, ts, kmh, heading)
	if hasAlt {
		a, ok := fleet.Altitude.Fixed(alt)
		if !ok {
			return u, fmt.Errorf("%w: altitude %v out of range [-20000, 100000]", ErrSyntax, alt)
		}
		u.Attrs.Set(fleet.Altitude, a)
	}
	return u, nil
}

// Timestamp parses Unix seconds (a fraction is truncated), Unix
// milliseconds (a number from 1e11 to 1e14, as in ingest), or ISO 8601
// date and time: RFC 3339 with any fraction, or without a zone (UTC), with
// "T" or a space between date and time.
func Timestamp(s string) (int64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f >= 1e11 && f < 1e14 {
			f /= 1000
		}
		if !(f >= 1 && f <= math.MaxUint32) {
			return 0, fmt.Errorf("%w: timestamp %s out of range (Unix seconds or milliseconds)", ErrSyntax, clip(s))
		}
		return int64(f), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Unix(), nil
		}
	}
	return 0, fmt.Errorf("%w: timestamp %q: want Unix seconds, milliseconds or ISO 8601 (2025-11-24T16:00:00Z)", ErrSyntax, clip(s))
}

func first(v url.Values, keys ...string) string {
	for _, k := range keys {
		if s := v.Get(k); s != "" {
			return s
		}
	}
	return ""
}

func required(v url.Values, key string) (float64, error) {
	s := v.Get(key)
	if s == "" {
		return 0, fmt.Errorf("%w: missing %s", ErrSyntax, key)
	}
	return number(key, s)
}

func optional(v url.Values, keys ...string) (float64, error) {
	for _, k := range keys {
		if s := v.Get(k); s != "" {
			return number(k, s)
		}
	}
	return 0, nil
}

func number(name, s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w: %s %q is not a number", ErrSyntax, name, clip(s))
	}
	return f, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// jsonBody is the JSON variant (Traccar Client 8 and later, from the
// Transistor background-geolocation plugin): speed in m/s, timestamp ISO
// 8601.
type jsonBody struct {
	DeviceID *string `json:"device_id"`
	Location *struct {
		Timestamp json.RawMessage `json:"timestamp"`
		Coords    *struct {
			Latitude  *float64 `json:"latitude"`
			Longitude *float64 `json:"longitude"`
			Speed     *float64 `json:"speed"`
			Heading   *float64 `json:"heading"`
			Altitude  *float64 `json:"altitude"`
		} `json:"coords"`
	} `json:"location"`
}

// ParseJSON reads the JSON variant (doc.go).
func ParseJSON(body []byte, now int64) (fleet.Update, error) {
	var b jsonBody
	if err := json.Unmarshal(body, &b); err != nil {
		return fleet.Update{}, fmt.Errorf("%w: invalid JSON: %v", ErrSyntax, err)
	}
	if b.DeviceID == nil || *b.DeviceID == "" {
		return fleet.Update{}, fmt.Errorf("%w: missing device_id", ErrSyntax)
	}
	id := []byte(*b.DeviceID)
	if b.Location == nil || b.Location.Coords == nil {
		return fleet.Update{ID: id}, fmt.Errorf("%w: missing location.coords", ErrSyntax)
	}
	c := b.Location.Coords
	if c.Latitude == nil || c.Longitude == nil {
		return fleet.Update{ID: id}, fmt.Errorf("%w: missing location.coords.latitude or longitude", ErrSyntax)
	}
	ts := now
	if t := b.Location.Timestamp; len(t) > 0 && string(t) != "null" {
		s := string(t)
		if t[0] == '"' {
			if err := json.Unmarshal(t, &s); err != nil {
				return fleet.Update{ID: id}, fmt.Errorf("%w: location.timestamp: %v", ErrSyntax, err)
			}
		}
		var err error
		if ts, err = Timestamp(s); err != nil {
			return fleet.Update{ID: id}, err
		}
	}
	val := func(p *float64) float64 {
		if p == nil {
			return 0
		}
		return *p
	}
	return build(id, *c.Latitude, *c.Longitude, ts, MetresPerSecond.kmh(val(c.Speed)), val(c.Heading), val(c.Altitude), c.Altitude != nil)
}

package osmand

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
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

// key is a query or form parameter that Parse reads.
type key uint8

const (
	kID key = iota
	kDeviceID
	kLat
	kLon
	kLocation
	kTimestamp
	kSpeed
	kBearing
	kHeading
	kAltitude
	kAccuracy
	kHDOP
	kBatt
	kIgnition
	kMotion
	kOdometer
	numKeys
)

var keyName = [numKeys]string{kID: "id", kDeviceID: "deviceid", kLat: "lat", kLon: "lon", kLocation: "location",
	kTimestamp: "timestamp", kSpeed: "speed", kBearing: "bearing", kHeading: "heading", kAltitude: "altitude",
	kAccuracy: "accuracy", kHDOP: "hdop", kBatt: "batt", kIgnition: "ignition", kMotion: "motion", kOdometer: "odometer"}

// keyOf finds a parameter by its name (a switch on string(b) does not
// allocate).
func keyOf(b []byte) (key, bool) {
	switch string(b) {
	case "id":
		return kID, true
	case "deviceid":
		return kDeviceID, true
	case "lat":
		return kLat, true
	case "lon":
		return kLon, true
	case "location":
		return kLocation, true
	case "timestamp":
		return kTimestamp, true
	case "speed":
		return kSpeed, true
	case "bearing":
		return kBearing, true
	case "heading":
		return kHeading, true
	case "altitude":
		return kAltitude, true
	case "accuracy":
		return kAccuracy, true
	case "hdop":
		return kHDOP, true
	case "batt":
		return kBatt, true
	case "ignition":
		return kIgnition, true
	case "motion":
		return kMotion, true
	case "odometer":
		return kOdometer, true
	}
	return 0, false
}

// Params holds the parameters of one request that Parse reads: for each
// known key, the first non-empty value seen, still %-escaped, as a span
// of one buffer. It replaces url.Values on the request path: scanning
// costs no allocation once the buffers have grown, and unknown keys are
// skipped without being copied. The zero value is empty; Reset empties
// it and keeps its buffers.
type Params struct {
	raw []byte             // the scanned bytes: the form body, then the query
	at  [numKeys][2]uint32 // start and end of each key's value in raw
	has uint32             // bit k is set iff key k was seen
	tmp []byte             // unescaped values (Parse's IDs alias it)
}

// Reset empties p, keeping its buffers.
func (p *Params) Reset() { p.raw, p.has, p.tmp = p.raw[:0], 0, p.tmp[:0] }

// Add scans a query or form string (k=v&k=v...). A key already seen keeps
// its first value, so scan the form body before the query: the body
// wins.
func (p *Params) Add(q string) {
	start := len(p.raw)
	p.raw = append(p.raw, q...)
	p.scan(start)
}

// AddBytes is Add of a byte slice.
func (p *Params) AddBytes(q []byte) {
	start := len(p.raw)
	p.raw = append(p.raw, q...)
	p.scan(start)
}

// scan records the known keys of p.raw[start:].
func (p *Params) scan(start int) {
	b := p.raw
	for i := start; i < len(b); {
		end := i + bytes.IndexByte(b[i:], '&')
		if end < i {
			end = len(b)
		}
		pair := b[i:end]
		eq := bytes.IndexByte(pair, '=')
		if eq > 0 && eq < len(pair)-1 {
			name := pair[:eq]
			if bytes.IndexByte(name, '%') >= 0 || bytes.IndexByte(name, '+') >= 0 {
				// An escaped key is rare: unescape it into tmp, which
				// Parse empties before using it.
				var ok bool
				if name, ok = unescape(p.tmp[:0], name); !ok {
					name = nil
				}
			}
			if k, ok := keyOf(name); ok && p.has&(1<<k) == 0 {
				p.has |= 1 << k
				p.at[k] = [2]uint32{uint32(i + eq + 1), uint32(end)}
			}
		}
		i = end + 1
	}
}

// raw is k's value as sent (still escaped), or nil.
func (p *Params) rawValue(k key) []byte {
	if p.has&(1<<k) == 0 {
		return nil
	}
	return p.raw[p.at[k][0]:p.at[k][1]]
}

// value is k's unescaped value, or nil if k is absent; ok is false if its
// %-escapes are invalid. The value may alias p.tmp.
func (p *Params) value(k key) (v []byte, err error) {
	v = p.rawValue(k)
	if bytes.IndexByte(v, '%') < 0 && bytes.IndexByte(v, '+') < 0 {
		return v, nil
	}
	start := len(p.tmp)
	var ok bool
	if p.tmp, ok = unescape(p.tmp, v); !ok {
		return nil, fmt.Errorf("%w: %s %q: invalid URL escape", ErrSyntax, keyName[k], clip(string(v)))
	}
	return p.tmp[start:len(p.tmp):len(p.tmp)], nil
}

// unescape appends s with %XX and + decoded to dst, as a query value is
// (url.QueryUnescape); ok is false for a malformed escape.
func unescape(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
				return dst, false
			}
			dst = append(dst, byte(unhex(s[i+1])<<4|unhex(s[i+2])))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// ParseQuery is Parse of one query or form string, for tests and tools.
func ParseQuery(q string, unit SpeedUnit, now int64) (fleet.Update, error) {
	var p Params
	p.Add(q)
	return Parse(&p, unit, now)
}

// Parse reads one position from the parameters (doc.go lists them). now
// is the server's clock, the ts of a point without timestamp. The
// update's ID aliases p's buffers: it is valid until p's next Reset or
// Add.
func Parse(p *Params, unit SpeedUnit, now int64) (fleet.Update, error) {
	var u fleet.Update
	p.tmp = p.tmp[:0]
	id, err := p.value(kID)
	if err == nil && len(id) == 0 {
		id, err = p.value(kDeviceID)
	}
	switch {
	case err != nil:
		return u, err
	case len(id) == 0:
		return u, fmt.Errorf("%w: missing id (or deviceid)", ErrSyntax)
	}
	u.ID = id
	var lat, lon float64
	if loc := p.rawValue(kLocation); loc != nil && p.has&(1<<kLat) == 0 {
		if loc, err = p.value(kLocation); err != nil {
			return u, err
		}
		a, b, ok := bytes.Cut(loc, []byte{','})
		if !ok {
			return u, fmt.Errorf("%w: location %q: want lat,lon", ErrSyntax, clip(string(loc)))
		}
		if lat, err = number("location latitude", a); err != nil {
			return u, err
		}
		if lon, err = number("location longitude", b); err != nil {
			return u, err
		}
	} else {
		if lat, err = p.required(kLat); err != nil {
			return u, err
		}
		if lon, err = p.required(kLon); err != nil {
			return u, err
		}
	}
	ts := now
	if s, err := p.value(kTimestamp); err != nil {
		return u, err
	} else if s != nil {
		if ts, err = timestamp(s); err != nil {
			return u, err
		}
	}
	speed, _, err := p.optional(kSpeed)
	if err != nil {
		return u, err
	}
	heading, hasHeading, err := p.optional(kBearing)
	if err == nil && !hasHeading {
		heading, _, err = p.optional(kHeading)
	}
	if err != nil {
		return u, err
	}
	alt, hasAlt, err := p.optional(kAltitude)
	if err != nil {
		return u, err
	}
	if u, err = build(u.ID, lat, lon, ts, unit.kmh(speed), heading, alt, hasAlt); err != nil {
		return u, err
	}
	if p.has&(1<<kAccuracy|1<<kHDOP|1<<kBatt|1<<kIgnition|1<<kMotion|1<<kOdometer) != 0 {
		p.optionalAttr(&u.Attrs, fleet.Accuracy, kAccuracy)
		p.optionalAttr(&u.Attrs, fleet.HDOP, kHDOP)
		p.optionalAttr(&u.Attrs, fleet.BatteryLevel, kBatt)
		p.optionalAttr(&u.Attrs, fleet.Ignition, kIgnition)
		p.optionalAttr(&u.Attrs, fleet.Motion, kMotion)
		p.optionalAttr(&u.Attrs, fleet.Odometer, kOdometer)
	}
	return u, nil
}

// optionalAttr sets attribute a from parameter k if it is a number (or,
// for a 0/1 attribute, true or false) within a's range. Anything else is
// left out and the position kept: a device should not lose a point, nor
// resend it for ever, over a battery reading (Android sends -1 for an
// unknown accuracy).
func (p *Params) optionalAttr(attrs *fleet.Attrs, a fleet.Attr, k key) {
	s, err := p.value(k)
	if err != nil || len(s) == 0 {
		return
	}
	var f float64
	switch {
	case a.Max() == 1 && string(s) == "true":
		f = 1
	case a.Max() == 1 && string(s) == "false":
		f = 0
	default:
		if f, err = number(keyName[k], s); err != nil {
			return
		}
	}
	if v, ok := a.Fixed(f); ok {
		attrs.Set(a, v)
	}
}

func (p *Params) required(k key) (float64, error) {
	s, err := p.value(k)
	if err != nil {
		return 0, err
	}
	if len(s) == 0 {
		return 0, fmt.Errorf("%w: missing %s", ErrSyntax, keyName[k])
	}
	return number(keyName[k], s)
}

func (p *Params) optional(k key) (float64, bool, error) {
	s, err := p.value(k)
	if err != nil || len(s) == 0 {
		return 0, false, err
	}
	f, err := number(keyName[k], s)
	return f, err == nil, err
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
func Timestamp(s string) (int64, error) { return timestamp([]byte(s)) }

func timestamp(b []byte) (int64, error) {
	if f, err := strconv.ParseFloat(string(b), 64); err == nil {
		if f >= 1e11 && f < 1e14 {
			f /= 1000
		}
		if !(f >= 1 && f <= math.MaxUint32) {
			return 0, fmt.Errorf("%w: timestamp %s out of range (Unix seconds or milliseconds)", ErrSyntax, clip(string(b)))
		}
		return int64(f), nil
	}
	s := string(b)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Unix(), nil
		}
	}
	return 0, fmt.Errorf("%w: timestamp %q: want Unix seconds, milliseconds or ISO 8601 (2025-11-24T16:00:00Z)", ErrSyntax, clip(s))
}

func number(name string, s []byte) (float64, error) {
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(s)), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w: %s %q is not a number", ErrSyntax, name, clip(string(s)))
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
			Accuracy  *float64 `json:"accuracy"`
		} `json:"coords"`
		IsMoving *bool    `json:"is_moving"`
		Odometer *float64 `json:"odometer"`
		Battery  *struct {
			Level *float64 `json:"level"`
		} `json:"battery"`
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
	u, err := build(id, *c.Latitude, *c.Longitude, ts, MetresPerSecond.kmh(val(c.Speed)), val(c.Heading), val(c.Altitude), c.Altitude != nil)
	if err != nil {
		return u, err
	}
	// The other attributes, where present and in range (as for queries).
	l := b.Location
	set := func(a fleet.Attr, p *float64, scale float64) {
		if p == nil {
			return
		}
		if v, ok := a.Fixed(*p * scale); ok {
			u.Attrs.Set(a, v)
		}
	}
	set(fleet.Accuracy, c.Accuracy, 1)
	set(fleet.Odometer, l.Odometer, 1)
	if l.Battery != nil {
		set(fleet.BatteryLevel, l.Battery.Level, 100) // a fraction, 0-1
	}
	if l.IsMoving != nil {
		u.Attrs.Set(fleet.Motion, int32(b2i(*l.IsMoving)))
	}
	return u, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

package fleet

import (
	"math"

	"github.com/fleetd/fleetd/internal/geo"
)

// MaxIDLen is the longest truck ID, in bytes.
const MaxIDLen = 64

// ValidID reports whether id is 1-64 bytes of [A-Za-z0-9_.:-].
func ValidID(id []byte) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for _, c := range id {
		if !IDChar[c] {
			return false
		}
	}
	return true
}

// IDChar[c] reports whether c may appear in an ID.
var IDChar = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") {
		t[c] = true
	}
	return t
}()

// Position is a truck's state in its stored fixed-point form (units in
// the package doc).
type Position struct {
	Lat, Lon int32  // 1e-7 degree
	TS       uint32 // Unix seconds
	Speed    uint16 // 0.1 km/h
	Heading  uint16 // degrees, 0–359
}

// LatDeg returns the latitude in degrees.
func (p Position) LatDeg() float64 { return geo.FromFixed(p.Lat) }

// LonDeg returns the longitude in degrees.
func (p Position) LonDeg() float64 { return geo.FromFixed(p.Lon) }

// SpeedKmh returns the speed in km/h.
func (p Position) SpeedKmh() float64 { return float64(p.Speed) / 10 }

// MakePosition converts from degrees, km/h and Unix seconds, rounding to
// the stored precision. It does not validate: see Valid.
func MakePosition(lat, lon float64, ts int64, speedKmh, headingDeg float64) Position {
	h := math.Round(headingDeg)
	if h >= 360 {
		h -= 360
	}
	return Position{
		Lat:     geo.ToFixed(lat),
		Lon:     geo.ToFixed(lon),
		TS:      uint32(ts),
		Speed:   uint16(math.Round(speedKmh * 10)),
		Heading: uint16(h),
	}
}

// MaxSpeed is the largest Speed, 1000 km/h in 0.1 km/h.
const MaxSpeed = 10000

// Valid reports whether p is within the ranges of the package doc (TS
// aside: every uint32 but 0 is a time).
func (p *Position) Valid() bool {
	return p.Lat >= -geo.MaxLatFixed && p.Lat <= geo.MaxLatFixed &&
		p.Lon >= -geo.MaxLonFixed && p.Lon <= geo.MaxLonFixed &&
		p.Heading < 360 && p.Speed <= MaxSpeed
}

// Update is one report of one truck: where it was and what else its
// device said. ID may alias a caller's buffer; whoever keeps it copies it.
type Update struct {
	ID []byte
	Position
	Attrs Attrs
}

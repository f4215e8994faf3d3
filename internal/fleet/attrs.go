package fleet

import "math"

// Attr names an optional attribute of an update.
type Attr uint8

// The attributes. Each one's name, unit and range are in attrTable.
const (
	Altitude Attr = iota // metres above sea level, in 0.1 m

	// NumAttrs is how many attributes an Attrs holds.
	NumAttrs = iota
)

// attrInfo describes one attribute: its JSON name, how many stored units
// make one unit of its name (10 for 0.1 m), and its range in those units.
type attrInfo struct {
	name     string
	scale    float64
	min, max int32
}

var attrTable = [NumAttrs]attrInfo{
	Altitude: {name: "alt", scale: 10, min: -20_000 * 10, max: 100_000 * 10}, // -20 km … 100 km
}

// Name is the attribute's JSON field name.
func (a Attr) Name() string { return attrTable[a].name }

// Scale is how many stored units make one unit of the JSON value.
func (a Attr) Scale() float64 { return attrTable[a].scale }

// Min and Max bound the stored value.
func (a Attr) Min() int32 { return attrTable[a].min }
func (a Attr) Max() int32 { return attrTable[a].max }

// Fixed converts a JSON value to the stored form; ok is false if it is out
// of range (NaN included).
func (a Attr) Fixed(v float64) (int32, bool) {
	f := math.Round(v * attrTable[a].scale)
	if !(f >= float64(attrTable[a].min) && f <= float64(attrTable[a].max)) {
		return 0, false
	}
	return int32(f), true
}

// Float converts a stored value back to its JSON unit.
func (a Attr) Float(v int32) float64 { return float64(v) / attrTable[a].scale }

// AttrByName finds an attribute by its JSON name.
func AttrByName(name []byte) (Attr, bool) {
	for a := range Attr(NumAttrs) {
		if attrTable[a].name == string(name) {
			return a, true
		}
	}
	return 0, false
}

// Attrs holds the optional attributes of one update: a presence mask and
// one fixed-point value per attribute. The zero value has none.
type Attrs struct {
	Mask uint32 // bit a is set iff attribute a is present
	Vals [NumAttrs]int32
}

// Has reports whether a is present.
func (s *Attrs) Has(a Attr) bool { return s.Mask&(1<<a) != 0 }

// Get returns a's value and whether it is present.
func (s *Attrs) Get(a Attr) (int32, bool) { return s.Vals[a], s.Has(a) }

// Set sets a to v. v must be within a's range.
func (s *Attrs) Set(a Attr, v int32) {
	s.Mask |= 1 << a
	s.Vals[a] = v
}

// Valid reports whether only known attributes are present, each within
// its range.
func (s *Attrs) Valid() bool {
	if s.Mask>>NumAttrs != 0 {
		return false
	}
	for a := range Attr(NumAttrs) {
		if v, ok := s.Get(a); ok && (v < attrTable[a].min || v > attrTable[a].max) {
			return false
		}
	}
	return true
}

package fleet

import "math"

// Attr names an optional attribute of an update.
type Attr uint8

// The attributes. Each one's name, unit and range are in attrTable. An
// attribute's number is its bit in Attrs.Mask, which the log and the
// history files store: attributes are only ever appended, never
// renumbered or removed.
const (
	Altitude       Attr = iota // "alt": metres above sea level, in 0.1 m
	Ignition                   // "ignition": 1 on, 0 off
	Motion                     // "motion": 1 moving, 0 still (the device's own judgement: Teltonika's movement)
	Odometer                   // "odometer": the device's total distance, in whole metres
	ExtVoltage                 // "ext_voltage": external (vehicle) power in volts, in mV
	BatteryVoltage             // "battery_voltage": the device's own battery in volts, in mV
	BatteryLevel               // "battery_level": the device's battery charge in whole percent
	Accuracy                   // "accuracy": horizontal accuracy radius in metres, in 0.1 m
	HDOP                       // "hdop": horizontal dilution of precision, in 0.1
	Satellites                 // "satellites": satellites in use

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
	Altitude:       {name: "alt", scale: 10, min: -20_000 * 10, max: 100_000 * 10},  // -20 km … 100 km
	Ignition:       {name: "ignition", scale: 1, min: 0, max: 1},                    // a flag: 0 or 1
	Motion:         {name: "motion", scale: 1, min: 0, max: 1},                      // a flag: 0 or 1
	Odometer:       {name: "odometer", scale: 1, min: 0, max: math.MaxInt32},        // 0 … 2,147,483 km
	ExtVoltage:     {name: "ext_voltage", scale: 1000, min: 0, max: 100 * 1000},     // 0 … 100 V
	BatteryVoltage: {name: "battery_voltage", scale: 1000, min: 0, max: 100 * 1000}, // 0 … 100 V
	BatteryLevel:   {name: "battery_level", scale: 1, min: 0, max: 100},             // 0 … 100 %
	Accuracy:       {name: "accuracy", scale: 10, min: 0, max: 100_000 * 10},        // 0 … 100 km
	HDOP:           {name: "hdop", scale: 10, min: 0, max: 100 * 10},                // 0 … 100
	Satellites:     {name: "satellites", scale: 1, min: 0, max: 255},                // 0 … 255
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

// Attrs.Mask has a bit per attribute.
var _ [32 - NumAttrs]struct{}

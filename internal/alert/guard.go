package alert

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/rules"
)

// Comparison operators of a field guard.
const (
	opNone uint8 = iota
	opGT
	opGE
	opLT
	opLE
	opEQ
	opNE
)

// Fields a field guard can test, numbered as rules' field-operand
// instructions number them: the four float fields of the current state,
// the same of the previous one, then dt. fieldVals.set reads them exactly
// as the VM does.
const (
	fLat uint8 = iota
	fLon
	fSpeed
	fHeading
	fPrevLat
	fPrevLon
	fPrevSpeed
	fPrevHeading
	fDT
	numGuardFields
)

var guardFieldNames = [numGuardFields]string{"lat", "lon", "speed", "heading",
	"prev.lat", "prev.lon", "prev.speed", "prev.heading", "dt"}

// fieldGuard is a necessary condition "field op c" for a rule to be true.
type fieldGuard struct {
	field, op uint8 // op == opNone: no guard
	c         float64
}

// fieldVals are the values of the guard fields for one update.
type fieldVals [numGuardFields]float64

// set reads the guard fields of in as the rules VM's field operands do:
// prev.* are the current values and dt is 0 without a previous state.
func (v *fieldVals) set(in *rules.Input) {
	p := &in.State
	dt := 0.0
	if in.HasPrev {
		p = &in.Prev
		dt = float64(in.TS) - float64(in.Prev.TS)
	}
	*v = fieldVals{in.Lat, in.Lon, in.Speed, in.Heading, p.Lat, p.Lon, p.Speed, p.Heading, dt}
}

// holds reports whether the guard lets the rule through. NaN compares
// false, as in the VM.
func (g *fieldGuard) holds(v *fieldVals) bool {
	x := v[g.field]
	switch g.op {
	case opGT:
		return x > g.c
	case opGE:
		return x >= g.c
	case opLT:
		return x < g.c
	case opLE:
		return x <= g.c
	case opEQ:
		return x == g.c
	case opNE:
		return x != g.c
	}
	return true
}

// guards are necessary conditions for a rule to be true, each on one
// field: the rule can be true only if at least one of anyOf holds (no
// condition is known when anyOf is empty) and only if all of all hold.
type guards struct {
	anyOf []fieldGuard
	all   []fieldGuard
}

// String is "a || b || c; all: d && e", for tests and debugging.
func (g guards) String() string {
	str := func(gs []fieldGuard, sep string) string {
		var parts []string
		for _, f := range gs {
			parts = append(parts, fmt.Sprintf("%s %s %v", guardFieldNames[f.field], opNames[f.op], f.c))
		}
		return strings.Join(parts, sep)
	}
	s := str(g.anyOf, " || ")
	if len(g.all) > 0 {
		s += "; all: " + str(g.all, " && ")
	}
	return s
}

var opNames = [...]string{opNone: "?", opGT: ">", opGE: ">=", opLT: "<", opLE: "<=", opEQ: "==", opNE: "!="}

// holdAll reports whether every guard in all holds.
func (g *guards) holdAll(v *fieldVals) bool {
	for i := range g.all {
		if !g.all[i].holds(v) {
			return false
		}
	}
	return true
}

// findGuards reads necessary conditions for p to be true from p's
// disassembly.
//
// The rules compiler orders each && and || chain cheapest first, and a
// comparison of a field with a constant inside a chain compiles to one
// instruction: AND_<cmp>_FIELD_CONST jumps to "return false" when the
// comparison fails, OR_<cmp>_FIELD_CONST to "return true" when it holds
// (that is how the listing shows a jump to the final RETURN). Execution
// starts at offset 0 and jumps only forward, so the instructions before the
// first other one run in order on every evaluation. Hence, for a program
// that starts
//
//	OR_<cmp>_FIELD_CONST   o1 ... return true     (zero or more)
//	AND_<cmp>_FIELD_CONST  a1 ... return false    (zero or more)
//	[<cmp>_FIELD_CONST     a2; RETURN]
//
// the rule is true only if o1 ∨ … ∨ (a1 ∧ … ∧ a2): with no ORs every a is
// necessary (all) and one of them is indexed (anyOf), the first with a
// selective operator (!= never is: it is almost always true); with ORs,
// anyOf is the ORs and that one a, and all is empty. Without an a after
// the ORs, or with a != among them, nothing is known.
//
// Reading the listing (whose layout rules pins with golden files) keeps the
// rules package's bytecode private; anything unexpected ends the scan,
// which is always safe: fewer conditions are known and the rule is
// evaluated more often. TestFieldGuard pins the patterns and
// TestIndexNeverSkips checks soundness against evaluation.
func findGuards(p *rules.Program) guards {
	lines := strings.Split(p.Disasm(), "\n")
	var ors, ands []fieldGuard
	inOrs := true
scan:
	for i := 1; i < len(lines); i++ { // line 0 is "; N bytes, ..."
		f := strings.Fields(lines[i])
		if len(f) < 4 || f[0] == ">>" {
			break // not a plain instruction with operands, or a jump target
		}
		op, rest := f[1], f[2:]
		var cmp string
		switch {
		case strings.HasPrefix(op, "OR_") && strings.HasSuffix(op, "_FIELD_CONST"):
			if !inOrs || len(rest) < 4 || rest[2] != "return" || rest[3] != "true" {
				break scan
			}
			cmp = strings.TrimPrefix(op, "OR_")
		case strings.HasPrefix(op, "AND_") && strings.HasSuffix(op, "_FIELD_CONST"):
			if len(rest) < 4 || rest[2] != "return" || rest[3] != "false" {
				break scan
			}
			cmp, inOrs = strings.TrimPrefix(op, "AND_"), false
		case strings.HasSuffix(op, "_FIELD_CONST") && !strings.Contains(op[:len(op)-len("_FIELD_CONST")], "_"):
			// A lone comparison: the rule's value if the next
			// instruction is the RETURN.
			if i+1 >= len(lines) {
				break scan
			}
			if next := strings.Fields(lines[i+1]); len(next) != 2 || next[1] != "RETURN" {
				break scan
			}
			cmp, inOrs = op, false
		default:
			break scan
		}
		g, ok := parseGuard(strings.TrimSuffix(cmp, "_FIELD_CONST"), strings.TrimSuffix(rest[0], ","), strings.TrimSuffix(rest[1], ","))
		if !ok {
			break
		}
		if inOrs {
			ors = append(ors, g)
		} else {
			ands = append(ands, g)
		}
	}
	var first *fieldGuard
	for i := range ands {
		if ands[i].op != opNE {
			first = &ands[i]
			break
		}
	}
	if first == nil {
		return guards{}
	}
	if len(ors) == 0 {
		return guards{anyOf: []fieldGuard{*first}, all: ands}
	}
	for _, o := range ors {
		if o.op == opNE {
			return guards{}
		}
	}
	return guards{anyOf: append(ors, *first)}
}

// parseGuard decodes a comparison, a field name and a constant as the
// listing prints them. ok is false for anything unknown.
func parseGuard(cmp, field, num string) (fieldGuard, bool) {
	var g fieldGuard
	switch cmp {
	case "GT":
		g.op = opGT
	case "GE":
		g.op = opGE
	case "LT":
		g.op = opLT
	case "LE":
		g.op = opLE
	case "EQ":
		g.op = opEQ
	case "NE":
		g.op = opNE
	default:
		return fieldGuard{}, false
	}
	found := false
	for i, n := range guardFieldNames {
		if n == field {
			g.field, found = uint8(i), true
		}
	}
	if !found {
		return fieldGuard{}, false
	}
	c, err := strconv.ParseFloat(num, 64) // the listing prints 'g', -1: exact
	if err != nil || math.IsNaN(c) {
		return fieldGuard{}, false
	}
	g.c = c
	return g, true
}

// mPerDeg is metres per degree of latitude in fence's local projection.
const mPerDeg = geo.EarthRadiusM * math.Pi / 180

// reach is the area around a zone where a zone-guarded rule can be true:
// a latitude band and a longitude range [lonA, lonB] with lonA in
// [-180, 180) and lonB possibly past 180 (antimeridian), or all longitudes.
type reach struct {
	minLat, maxLat float64
	lonA, lonB     float64
	allLon         bool
}

// zoneReach returns the zone's bounding box grown by radiusM metres, so
// that every point inside the zone or with fence's DistanceM <= radiusM
// lies in it.
//
// fence measures distance in a local equirectangular projection with
// mPerDeg metres per degree of latitude and mPerDeg·cos(φref) per degree
// of longitude, φref lying between the point's latitude and the nearest
// latitude of the zone's box; the nearest boundary point lies in the box.
// So a point within r has a latitude gap to the box of at most r/mPerDeg
// and a longitude gap (the short way round) of at most r/(mPerDeg·cos φ)
// for the largest |φ| of the grown band. Both margins are widened by a
// millionth plus 1e-9° against rounding.
func zoneReach(minLat, minLon, maxLat, maxLon, radiusM float64) reach {
	const slack = 1 + 1e-6
	dLat := radiusM/mPerDeg*slack + 1e-9
	rc := reach{minLat: max(minLat-dLat, -90), maxLat: min(maxLat+dLat, 90)}
	maxAbs := max(math.Abs(rc.minLat), math.Abs(rc.maxLat))
	cos := math.Cos(maxAbs * math.Pi / 180)
	if maxLon < minLon {
		maxLon += 360 // crosses the antimeridian
	}
	if cos < 1e-6 {
		rc.allLon = true
		return rc
	}
	dLon := radiusM/(mPerDeg*cos)*slack + 1e-9
	a, b := minLon-dLon, maxLon+dLon
	if b-a >= 360 || math.IsNaN(a) || math.IsNaN(b) {
		rc.allLon = true
		return rc
	}
	for a < -180 {
		a, b = a+360, b+360
	}
	for a >= 180 {
		a, b = a-360, b-360
	}
	rc.lonA, rc.lonB = a, b
	return rc
}

// contains reports whether the point is in the reach.
func (rc *reach) contains(lat, lon float64) bool {
	if !(lat >= rc.minLat && lat <= rc.maxLat) {
		return false
	}
	if rc.allLon {
		return true
	}
	if lon < rc.lonA {
		lon += 360
	}
	return lon >= rc.lonA && lon <= rc.lonB
}

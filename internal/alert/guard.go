package alert

import (
	"math"

	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/rules"
)

// Finding the rules that can apply uses the rules' necessary conditions
// (rules.Program.Conditions): clauses of atoms "term op constant" that
// must all hold, one atom per clause at least, for the rule to be true.
// The snapshot indexes each rule by one clause, its key clause (chooseKey),
// and checks the others, its rest, before evaluating it.

// atomPass guesses how often an atom holds, from typical ranges of the
// fields; what the guess is for a term it does not know (0.5) or how
// wrong it is changes the speed of the index, never its answers.
func atomPass(a rules.Atom) float64 {
	switch a.Op {
	case rules.NE:
		return 1
	case rules.EQ:
		return 0.05
	}
	r, ok := typicalRange[a.Term.String()]
	if !ok {
		return 0.5
	}
	below := (a.C - r[0]) / (r[1] - r[0]) // share of the range below C
	below = min(max(below, 0), 1)
	p := below
	if a.Op == rules.GT || a.Op == rules.GE {
		p = 1 - below
	}
	return max(p, 0.01)
}

// typicalRange is where a field's values usually lie, for atomPass.
var typicalRange = map[string][2]float64{
	"speed": {0, 150}, "prev.speed": {0, 150},
	"heading": {0, 360}, "prev.heading": {0, 360},
	"lat": {-90, 90}, "prev.lat": {-90, 90},
	"lon": {-180, 180}, "prev.lon": {-180, 180},
	"dt": {0, 120}, "moved_m": {0, 3000}, "upper(moved_m)": {0, 3000}, "hour()": {0, 24},
}

// indexable reports whether the group walk can find the rules whose atom
// holds: a comparison other than != with a constant that is not NaN.
func indexable(a rules.Atom) bool {
	return a.Op != rules.NE && !math.IsNaN(a.C)
}

// chooseKey returns the clause to index a rule by: of the clauses whose
// atoms are all indexable, the one least likely to hold (the sum of its
// atoms' atomPass, plus a little for the cost of computing their terms),
// or -1 if none is indexable or none is likely to skip the rule.
func chooseKey(cnf [][]rules.Atom) int {
	best, bestScore := -1, 0.95
	for i, c := range cnf {
		if len(c) == 0 {
			continue
		}
		score := 0.0
		for _, a := range c {
			if !indexable(a) {
				score = math.Inf(1)
				break
			}
			score += atomPass(a) + 0.002*float64(a.Term.Cost())
		}
		if score < bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// never reports whether the conditions can never hold: an empty clause
// (the rule folded to false).
func never(cnf [][]rules.Atom) bool {
	for _, c := range cnf {
		if len(c) == 0 {
			return true
		}
	}
	return false
}

// cond is an atom as the snapshot stores it: the term by its index in
// snapshot.terms.
type cond struct {
	c    float64
	term uint32
	op   rules.Op
}

// holds tests the atom on the term's value, as rules.Atom.Holds does.
func (c *cond) holds(v float64) bool {
	switch c.op {
	case rules.GT:
		return v > c.c
	case rules.GE:
		return v >= c.c
	case rules.LT:
		return v < c.c
	case rules.LE:
		return v <= c.c
	case rules.EQ:
		return v == c.c
	case rules.NE:
		return v != c.c
	}
	return false
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

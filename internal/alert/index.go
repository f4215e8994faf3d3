package alert

import (
	"cmp"
	"math"
	"slices"

	"github.com/fleetd/fleetd/internal/fence"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/rules"
)

// grid is the zone-guard index's grid: fleet.Grid's mapping with 0.5°
// cells, rows from the south pole, columns from the antimeridian (a point
// at lon 180° is in column 0, with -180°).
var grid = func() fleet.Grid {
	g, err := fleet.NewGrid(0.5)
	if err != nil {
		panic("BUG: alert: " + err.Error())
	}
	return g
}()

func cellRow(lat float64) int { return grid.RowDeg(lat) }

func cellCol(lon float64) int { return grid.ColDeg(lon) }

// cellColEnd is the column of a reach's east edge lonB, not wrapped: lonB
// may pass 180° (its columns then continue past grid.Cols and wrap round
// to the west end), as cellCol(lonA) <= cellColEnd(lonB) when lonA <= lonB.
func cellColEnd(lonB float64) int {
	return int((int64(math.Round(lonB*geo.Scale)) + geo.MaxLonFixed) / grid.CellFixed)
}

// liveRule is a rule as the evaluator sees it: immutable, shared by
// snapshots until the rule is replaced or deleted.
type liveRule struct {
	name     string
	spec     RuleSpec // as given, Severity defaulted
	prog     *rules.Program
	forSec   uint32 // For rounded up to whole seconds
	slot     uint16
	gen      uint8
	severity uint8          // index into severities
	cnf      [][]rules.Atom // prog.Conditions()
	exact    bool           // the conditions are the rule: no Eval needed
	key      int            // index of the key clause in cnf (chooseKey), -1 for none
	zoned    bool           // has a zone guard: zoneID, radiusM
	zoneID   int            // the guard's zone
	radiusM  float64        // the guard's radius
}

// newLiveRule fills in what the index needs of a compiled rule.
func newLiveRule(name string, spec RuleSpec, prog *rules.Program, sev uint8) *liveRule {
	r := &liveRule{name: name, spec: spec, prog: prog, forSec: forSeconds(spec.For), severity: sev}
	r.cnf, r.exact = prog.Conditions()
	r.key = chooseKey(r.cnf)
	if zone, radius, ok := prog.ZoneGuard(); ok {
		r.zoned, r.zoneID, r.radiusM = true, zone, radius
	}
	return r
}

// ruleEval is what evalUpdate needs of one rule, flat in
// snapshot.evals so that the walk does not chase the liveRule.
type ruleEval struct {
	prog         *rules.Program
	rest0, rest1 uint32 // clauses[rest0:rest1] are checked before evaluating
	exact        bool   // clauses decide: true without Eval when they hold
	multi        bool   // listed in several groups: evaluate once per update
}

// clause is one clause of a rule's conditions: conds[start:end], at
// least one of which holds when the rule is true.
type clause struct{ start, end uint32 }

// snapshot is the immutable evaluation state: the rules, how to find the
// ones that can apply to an update, and the zones. Applied loads it once
// per batch; writers build a new one and swap it in.
//
// Indexing. Every rule that can be true is in exactly one of three places:
//
//	always   rules with neither a zone guard nor a key clause: their
//	         clauses checked, then evaluated, on every update
//	groups   rules with a key clause and no zone guard, listed under
//	         each atom of the key clause, grouped by (term, operator) and
//	         sorted by constant so that the rules whose atom holds are a
//	         prefix of the group, found by walking it until the first that
//	         fails
//	cells    rules with a zone guard, listed in every grid cell their
//	         reach touches; rows row0..row0+nRows-1, all grid.Cols columns:
//	         cellStart[i]..cellStart[i+1] index cellRules
//
// and a rule found there is evaluated only if its other clauses (evals[i]
// rest) hold, and not at all if its conditions are exact. A term's value
// is computed at most once per update (scratch.termVal), when a group or a
// clause first needs it. So an update costs one step per group plus the
// rules whose key atom holds, and one cell lookup plus a box test per
// zone rule near it.
type snapshot struct {
	rules  []*liveRule // sorted by name
	evals  []ruleEval  // parallel to rules
	reach  []reach     // parallel to rules: where a zoned rule can be true
	bySlot []*liveRule // slot → rule, nil for a free slot
	slots  []slotRule  // slot → rule index and generation, for pairs
	zones  *fence.Set

	// terms are the distinct terms of all conditions, the first
	// rules.NumFastFields the fast fields (nil if unused; see
	// scratch.termVal).
	terms   []*rules.Term
	clauses []clause // the rules' rest clauses, rule after rule
	conds   []cond   // the clauses' atoms

	always []int32 // indices into rules

	groups     []group
	groupConst []float64 // per group, its rules' constants in walking order
	groupRule  []int32   // parallel: indices into rules

	row0, nRows int
	cellStart   []uint32 // nRows*grid.Cols + 1
	cellRules   []int32  // indices into rules
}

// slotRule is the rule in a slot: its index in snapshot.rules (-1 for a
// free slot) and generation.
type slotRule struct {
	rule int32
	gen  uint8
}

// ruleOf returns the index of the rule a pair belongs to, or -1 if that
// rule is no longer in the snapshot (deleted or replaced).
func (sn *snapshot) ruleOf(p pair) int32 {
	if int(p.slot) >= len(sn.slots) {
		return -1
	}
	sr := sn.slots[p.slot]
	if sr.gen != p.gen {
		return -1
	}
	return sr.rule
}

// group is one (term, operator) run of groupConst/groupRule.
type group struct {
	first      float64 // groupConst[start]
	term       uint32
	op         rules.Op
	start, end uint32
}

var emptySnapshot = &snapshot{}

// buildSnapshot indexes rs (sorted by name) for evaluation against zones.
func buildSnapshot(rs []*liveRule, zones *fence.Set, maxSlot int) *snapshot {
	sn := &snapshot{rules: rs, evals: make([]ruleEval, len(rs)), reach: make([]reach, len(rs)),
		bySlot: make([]*liveRule, maxSlot), slots: make([]slotRule, maxSlot), zones: zones}
	for i := range sn.slots {
		sn.slots[i].rule = -1
	}
	// A fast field's term index is its index in rules.FastFields.
	sn.terms = make([]*rules.Term, rules.NumFastFields)
	termIdx := map[string]uint32{}
	term := func(t *rules.Term) uint32 {
		if f, ok := t.FastField(); ok {
			sn.terms[f] = t
			return uint32(f)
		}
		i, ok := termIdx[t.String()]
		if !ok {
			i = uint32(len(sn.terms))
			termIdx[t.String()] = i
			sn.terms = append(sn.terms, t)
		}
		return i
	}
	type gkey struct {
		term uint32
		op   rules.Op
	}
	type gent struct {
		rule int32
		c    float64
	}
	byGroup := map[gkey][]gent{}
	var zoned []int32
	for i, r := range rs {
		sn.bySlot[r.slot] = r
		sn.slots[r.slot] = slotRule{rule: int32(i), gen: r.gen}
		ev := &sn.evals[i]
		ev.prog, ev.exact = r.prog, r.exact
		key := r.key
		if r.zoned {
			key = -1 // the zone guard indexes it; check every clause
		}
		ev.rest0 = uint32(len(sn.clauses))
		for j, c := range r.cnf {
			if j == key {
				continue
			}
			cl := clause{start: uint32(len(sn.conds))}
			for _, a := range c {
				sn.conds = append(sn.conds, cond{c: a.C, term: term(a.Term), op: a.Op})
			}
			cl.end = uint32(len(sn.conds))
			sn.clauses = append(sn.clauses, cl)
		}
		ev.rest1 = uint32(len(sn.clauses))
		switch {
		case never(r.cnf):
			// Folded to false: never true, in no list.
		case r.zoned:
			// The reach follows the zone's current shape.
			if z := zones.Zone(r.zoneID); z != nil {
				minLat, minLon, maxLat, maxLon := z.Bounds()
				sn.reach[i] = zoneReach(minLat, minLon, maxLat, maxLon, r.radiusM)
				zoned = append(zoned, int32(i))
			}
			// Else the zone has no shape (it cannot be deleted while a
			// rule names it, so this does not happen): the rule can never
			// be true and is in no list.
		case key >= 0:
			ev.multi = len(r.cnf[key]) > 1
			for _, a := range r.cnf[key] {
				k := gkey{term(a.Term), a.Op}
				byGroup[k] = append(byGroup[k], gent{int32(i), a.C})
			}
		default:
			sn.always = append(sn.always, int32(i))
		}
	}
	keys := make([]gkey, 0, len(byGroup))
	for k := range byGroup {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b gkey) int { return cmp.Or(cmp.Compare(a.term, b.term), cmp.Compare(a.op, b.op)) })
	for _, k := range keys {
		ents := byGroup[k]
		// Walking order: the most permissive constant first, so the rules
		// whose atom holds are a prefix (for ==, ascending).
		slices.SortStableFunc(ents, func(a, b gent) int {
			if k.op == rules.LT || k.op == rules.LE {
				return cmp.Compare(b.c, a.c)
			}
			return cmp.Compare(a.c, b.c)
		})
		g := group{first: ents[0].c, term: k.term, op: k.op, start: uint32(len(sn.groupRule))}
		for _, e := range ents {
			sn.groupConst = append(sn.groupConst, e.c)
			sn.groupRule = append(sn.groupRule, e.rule)
		}
		g.end = uint32(len(sn.groupRule))
		sn.groups = append(sn.groups, g)
	}
	sn.buildCells(zoned)
	return sn
}

// buildCells lists each zone-guarded rule in the cells its reach touches.
func (sn *snapshot) buildCells(zoned []int32) {
	if len(zoned) == 0 {
		return
	}
	r0, r1 := grid.Rows, -1
	for _, i := range zoned {
		rc := &sn.reach[i]
		r0, r1 = min(r0, cellRow(rc.minLat)), max(r1, cellRow(rc.maxLat))
	}
	sn.row0, sn.nRows = r0, r1-r0+1
	n := sn.nRows * grid.Cols
	count := make([]uint32, n+1)
	each := func(rc *reach, f func(cell int)) {
		c0, c1 := 0, grid.Cols-1
		if !rc.allLon {
			// lonB may pass 180: its column is then >= grid.Cols and
			// wraps round to the west end.
			c0 = cellCol(rc.lonA)
			c1 = min(cellColEnd(rc.lonB), c0+grid.Cols-1)
		}
		for r := cellRow(rc.minLat); r <= cellRow(rc.maxLat); r++ {
			for c := c0; c <= c1; c++ {
				f((r-r0)*grid.Cols + c%grid.Cols)
			}
		}
	}
	for _, i := range zoned {
		each(&sn.reach[i], func(cell int) { count[cell]++ })
	}
	// Prefix sums: count[i] becomes the end of cell i-1's list.
	var sum uint32
	for i := range count {
		c := count[i]
		count[i] = sum
		sum += c
	}
	sn.cellRules = make([]int32, sum)
	fill := slices.Clone(count)
	for _, i := range zoned {
		each(&sn.reach[i], func(cell int) {
			sn.cellRules[fill[cell]] = i
			fill[cell]++
		})
	}
	sn.cellStart = count
}

// cellRulesAt returns the zone-guarded rules listed in the point's cell.
func (sn *snapshot) cellRulesAt(lat, lon float64) []int32 {
	if sn.cellStart == nil {
		return nil
	}
	r := cellRow(lat) - sn.row0
	if uint(r) >= uint(sn.nRows) {
		return nil
	}
	i := r*grid.Cols + cellCol(lon)
	return sn.cellRules[sn.cellStart[i]:sn.cellStart[i+1]]
}

package alert

import (
	"cmp"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"

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

// liveRule is a rule as the evaluator sees it: immutable once indexed,
// until the rule is replaced or deleted.
type liveRule struct {
	name     string
	spec     RuleSpec // as given, Severity defaulted
	prog     *rules.Program
	forSec   uint32 // For rounded up to whole seconds
	slot     uint32
	gen      uint8
	severity uint8          // index into severities
	cnf      [][]rules.Atom // prog.Conditions()
	exact    bool           // the conditions are the rule: no Eval needed
	key      int            // index of the key clause in cnf (chooseKey), -1 for none
	zoned    bool           // has a zone guard: zoneID, radiusM
	zoneID   int            // the guard's zone
	radiusM  float64        // the guard's radius
	zone     string         // insideZone(spec.When): Alert.Zone
}

func (r *liveRule) ref() ruleRef { return makeRef(r.slot, r.gen) }

// newLiveRule fills in what the index needs of a compiled rule.
func newLiveRule(name string, spec RuleSpec, prog *rules.Program, sev uint8) *liveRule {
	r := &liveRule{name: name, spec: spec, prog: prog, forSec: forSeconds(spec.For), severity: sev, zone: insideZone(spec.When)}
	r.cnf, r.exact = prog.Conditions()
	r.key = chooseKey(r.cnf)
	if zone, radius, ok := prog.ZoneGuard(); ok {
		r.zoned, r.zoneID, r.radiusM = true, zone, radius
	}
	return r
}

// ruleEval is what evalUpdate needs of one rule, flat in ruleIndex.evals
// so that the walk does not chase the liveRule.
type ruleEval struct {
	prog         *rules.Program
	rest0, rest1 uint32 // clauses[rest0:rest1] are checked before evaluating
	exact        bool   // clauses decide: true without Eval when they hold
	multi        bool   // listed in several groups: evaluate once per update
	listed       bool   // a zoned rule listed in the cells of reach
}

// clause is one clause of a rule's conditions: conds[start:end], at
// least one of which holds when the rule is true.
type clause struct{ start, end uint32 }

// ruleIndex is the evaluation state: the rules, how to find the ones that
// can apply to an update, and the zones. It is changed in place, one rule
// at a time, by writers holding evalMu exclusively (so while no batch
// reads it); Applied and Removed read it holding evalMu shared. A rule is
// named by its slot everywhere (the index of bySlot, evals, reach), which
// stays the same while the rule lives, so that adding or removing one
// touches only its own entries: O(its clauses + its groups' lengths + its
// cells), not O(rules).
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
//	         reach touches; rows row0..row0+nRows-1, all grid.Cols
//	         columns: cellHead[i] indexes cellLists (0 = none)
//
// and a rule found there is evaluated only if its other clauses (evals[i]
// rest) hold, and not at all if its conditions are exact. A term's value
// is computed at most once per update (scratch.termVal), when a group or a
// clause first needs it. So an update costs one step per group plus the
// rules whose key atom holds, and one cell lookup plus a box test per
// zone rule near it.
//
// Removing a rule leaves its clauses and conds (and terms) behind as
// garbage; once they are more than half of clauses, rebuild compacts
// everything, so the garbage costs O(1) amortised per change.
type ruleIndex struct {
	bySlot []*liveRule // slot → rule, nil for a free slot
	evals  []ruleEval  // by slot
	reach  []reach     // by slot: where a zoned rule can be true
	zones  *fence.Set
	n      int // rules indexed
	zoned  int // of which with a zone guard (Stats.ZoneRules)

	// terms are the distinct terms of all conditions, the first
	// rules.NumFastFields the fast fields (nil if unused; see
	// scratch.termVal).
	terms   []*rules.Term
	termIdx map[string]uint32
	clauses []clause // the rules' rest clauses, rule after rule
	conds   []cond   // the clauses' atoms
	dead    int      // clauses of removed rules

	always    []int32 // slots
	groups    []group
	heads     []groupHead // parallel to groups: what the walk reads of every group on every update
	groupIdx  map[gkey]int
	zoneRules map[int][]int32 // zone ID → slots of the rules it guards

	row0, nRows int
	cellHead    []uint32  // nRows*grid.Cols
	cellLists   [][]int32 // slots; [0] unused
}

// gkey names a group.
type gkey struct {
	term uint32
	op   rules.Op
}

// group is one (term, operator) list: consts in walking order (the most
// permissive first: descending for < and <=, else ascending) and the
// rules' slots beside them. first is consts[0], NaN when empty (then no
// comparison enters the group).
type group struct {
	first  float64
	term   uint32
	op     rules.Op
	consts []float64
	rules  []int32
}

// groupHead is a group's first constant, term and operator, kept apart
// from its lists so that the walk over every group, on every update,
// reads 16 bytes a group rather than the 72 of a group (measured on the
// shared 2-core box, interleaved runs: BenchmarkApplied/rules=1090 was
// 1.4-1.7x the time of the flat index before this split, 0.7-1.4x after).
type groupHead struct {
	first float64
	term  uint32
	op    rules.Op
}

// setFirst updates group gi's first constant after a change of its list.
func (x *ruleIndex) setFirst(gi int) {
	g := &x.groups[gi]
	g.first = math.NaN()
	if len(g.consts) > 0 {
		g.first = g.consts[0]
	}
	x.heads[gi] = groupHead{first: g.first, term: g.term, op: g.op}
}

// before reports whether constant a walks before b in a group of op.
func before(op rules.Op, a, b float64) bool {
	if op == rules.LT || op == rules.LE {
		return a > b
	}
	return a < b
}

func newRuleIndex(zones *fence.Set) *ruleIndex {
	return &ruleIndex{zones: zones, terms: make([]*rules.Term, rules.NumFastFields),
		termIdx: map[string]uint32{}, groupIdx: map[gkey]int{}, zoneRules: map[int][]int32{},
		cellLists: make([][]int32, 1)}
}

// ruleOf returns the slot of the rule a pair belongs to, or -1 if that
// rule is no longer indexed (deleted or replaced).
func (x *ruleIndex) ruleOf(p pair) int32 {
	slot := p.ref.slot()
	if slot >= uint32(len(x.bySlot)) {
		return -1
	}
	if r := x.bySlot[slot]; r == nil || r.gen != p.ref.gen() {
		return -1
	}
	return int32(slot)
}

// term returns t's index in terms, adding it if new.
func (x *ruleIndex) term(t *rules.Term) uint32 {
	if f, ok := t.FastField(); ok {
		x.terms[f] = t
		return uint32(f)
	}
	k := t.String()
	i, ok := x.termIdx[k]
	if !ok {
		i = uint32(len(x.terms))
		x.termIdx[k] = i
		x.terms = append(x.terms, t)
	}
	return i
}

// add indexes r in its slot. With sorted, each group entry goes to its
// place (O(group)); without, it is appended and the caller sorts the
// groups (sortGroups) before anyone reads the index.
func (x *ruleIndex) add(r *liveRule, sorted bool) {
	i := int32(r.slot)
	if n := int(r.slot) + 1; n > len(x.bySlot) {
		x.bySlot = append(x.bySlot, make([]*liveRule, n-len(x.bySlot))...)
		x.evals = append(x.evals, make([]ruleEval, n-len(x.evals))...)
		x.reach = append(x.reach, make([]reach, n-len(x.reach))...)
	}
	if x.bySlot[i] != nil {
		panic("BUG: alert: indexing a rule in a used slot")
	}
	x.bySlot[i] = r
	x.n++
	if r.zoned {
		x.zoned++
	}
	ev := &x.evals[i]
	*ev = ruleEval{prog: r.prog, exact: r.exact}
	key := r.key
	if r.zoned {
		key = -1 // the zone guard indexes it; check every clause
	}
	ev.rest0 = uint32(len(x.clauses))
	for j, c := range r.cnf {
		if j == key {
			continue
		}
		cl := clause{start: uint32(len(x.conds))}
		for _, a := range c {
			x.conds = append(x.conds, cond{c: a.C, term: x.term(a.Term), op: a.Op})
		}
		cl.end = uint32(len(x.conds))
		x.clauses = append(x.clauses, cl)
	}
	ev.rest1 = uint32(len(x.clauses))
	switch {
	case never(r.cnf):
		// Folded to false: never true, in no list.
	case r.zoned:
		x.zoneRules[r.zoneID] = append(x.zoneRules[r.zoneID], i)
		x.listCells(i)
	case key >= 0:
		ev.multi = len(r.cnf[key]) > 1
		for _, a := range r.cnf[key] {
			x.groupAdd(gkey{x.term(a.Term), a.Op}, a.C, i, sorted)
		}
	default:
		x.always = append(x.always, i)
	}
}

// remove unindexes r (which must be indexed). Its slot stays allocated to
// the caller.
func (x *ruleIndex) remove(r *liveRule) {
	i := int32(r.slot)
	if int(i) >= len(x.bySlot) || x.bySlot[i] != r {
		panic("BUG: alert: removing a rule that is not indexed")
	}
	ev := &x.evals[i]
	x.dead += int(ev.rest1 - ev.rest0)
	key := r.key
	if r.zoned {
		key = -1
	}
	switch {
	case never(r.cnf):
	case r.zoned:
		x.unlistCells(i)
		rest := slices.DeleteFunc(x.zoneRules[r.zoneID], func(v int32) bool { return v == i })
		if len(rest) == 0 {
			delete(x.zoneRules, r.zoneID)
		} else {
			x.zoneRules[r.zoneID] = rest
		}
	case key >= 0:
		for _, a := range r.cnf[key] {
			x.groupRemove(gkey{x.term(a.Term), a.Op}, a.C, i)
		}
	default:
		x.always = slices.Delete(x.always, slices.Index(x.always, i), slices.Index(x.always, i)+1)
	}
	x.bySlot[i] = nil
	*ev = ruleEval{}
	x.reach[i] = reach{}
	x.n--
	if r.zoned {
		x.zoned--
	}
	if x.dead > rebuildMinDead && 2*x.dead > len(x.clauses) {
		x.rebuild()
	}
}

// rebuildMinDead is how many dead clauses it takes, at least, for remove
// to compact the index (a variable for tests).
var rebuildMinDead = 1024

// rebuild compacts the index: every rule indexed again from scratch,
// O(rules).
func (x *ruleIndex) rebuild() {
	rs := x.bySlot
	*x = *newRuleIndex(x.zones)
	for _, r := range rs {
		if r != nil {
			x.add(r, false)
		}
	}
	x.sortGroups()
}

// replace removes olds and adds news by indexing every rule again:
// O(rules), for changes too large to make one by one.
func (x *ruleIndex) replace(olds, news []*liveRule) {
	for _, r := range olds {
		if int(r.slot) >= len(x.bySlot) || x.bySlot[r.slot] != r {
			panic("BUG: alert: replacing a rule that is not indexed")
		}
		x.bySlot[r.slot] = nil
	}
	for _, r := range news {
		if n := int(r.slot) + 1; n > len(x.bySlot) {
			x.bySlot = append(x.bySlot, make([]*liveRule, n-len(x.bySlot))...)
		}
		if x.bySlot[r.slot] != nil {
			panic("BUG: alert: indexing a rule in a used slot")
		}
		x.bySlot[r.slot] = r
	}
	x.rebuild()
}

// groupAdd lists slot i under constant c in group k.
func (x *ruleIndex) groupAdd(k gkey, c float64, i int32, sorted bool) {
	gi, ok := x.groupIdx[k]
	if !ok {
		gi = len(x.groups)
		x.groupIdx[k] = gi
		x.groups = append(x.groups, group{term: k.term, op: k.op})
		x.heads = append(x.heads, groupHead{})
	}
	g := &x.groups[gi]
	at := len(g.consts)
	if sorted {
		// After the constants that walk before c or equal it, so that
		// equal constants keep the order they were added in.
		at = sort.Search(len(g.consts), func(j int) bool { return before(k.op, c, g.consts[j]) })
	}
	g.consts = slices.Insert(g.consts, at, c)
	g.rules = slices.Insert(g.rules, at, i)
	x.setFirst(gi)
}

// groupRemove unlists slot i, listed under constant c, from group k.
func (x *ruleIndex) groupRemove(k gkey, c float64, i int32) {
	gi, ok := x.groupIdx[k]
	if !ok {
		panic("BUG: alert: removing a rule from a group that does not exist")
	}
	g := &x.groups[gi]
	// The entries equal to c start where the first of them would go.
	j := sort.Search(len(g.consts), func(j int) bool { return !before(k.op, g.consts[j], c) })
	for j < len(g.rules) && g.rules[j] != i {
		j++
	}
	if j == len(g.rules) {
		panic("BUG: alert: rule missing from its group")
	}
	g.consts = slices.Delete(g.consts, j, j+1)
	g.rules = slices.Delete(g.rules, j, j+1)
	x.setFirst(gi)
}

// sortGroups puts every group in walking order (after adds without
// sorted), keeping the order of equal constants.
func (x *ruleIndex) sortGroups() {
	type gent struct {
		c    float64
		rule int32
	}
	var ents []gent
	for gi := range x.groups {
		g := &x.groups[gi]
		ents = ents[:0]
		for j, c := range g.consts {
			ents = append(ents, gent{c, g.rules[j]})
		}
		op := g.op
		slices.SortStableFunc(ents, func(a, b gent) int {
			if op == rules.LT || op == rules.LE {
				return cmp.Compare(b.c, a.c)
			}
			return cmp.Compare(a.c, b.c)
		})
		for j, e := range ents {
			g.consts[j], g.rules[j] = e.c, e.rule
		}
		x.setFirst(gi)
	}
}

// rezone re-lists the rules guarded by zone id after its shape changed.
func (x *ruleIndex) rezone(id int) {
	for _, i := range x.zoneRules[id] {
		x.unlistCells(i)
		x.listCells(i)
	}
}

// listCells computes zoned rule i's reach from its zone's current shape
// and lists it in the cells the reach touches.
func (x *ruleIndex) listCells(i int32) {
	r := x.bySlot[i]
	z := x.zones.Zone(r.zoneID)
	if z == nil {
		// The zone has no shape (it cannot be deleted while a rule names
		// it, so this does not happen): the rule can never be true and is
		// in no list.
		return
	}
	minLat, minLon, maxLat, maxLon := z.Bounds()
	x.reach[i] = zoneReach(minLat, minLon, maxLat, maxLon, r.radiusM)
	x.evals[i].listed = true
	rc := &x.reach[i]
	x.growRows(cellRow(rc.minLat), cellRow(rc.maxLat))
	x.eachCell(rc, func(cell int) {
		h := x.cellHead[cell]
		if h == 0 {
			h = uint32(len(x.cellLists))
			x.cellLists = append(x.cellLists, nil)
			x.cellHead[cell] = h
		}
		x.cellLists[h] = append(x.cellLists[h], i)
	})
}

// unlistCells removes zoned rule i from the cells of its reach.
func (x *ruleIndex) unlistCells(i int32) {
	if !x.evals[i].listed {
		return
	}
	x.evals[i].listed = false
	x.eachCell(&x.reach[i], func(cell int) {
		h := x.cellHead[cell]
		l := x.cellLists[h]
		j := slices.Index(l, i)
		if h == 0 || j < 0 {
			panic("BUG: alert: zone rule missing from a cell of its reach")
		}
		x.cellLists[h] = slices.Delete(l, j, j+1)
	})
}

// growRows widens the cell window to hold rows r0..r1.
func (x *ruleIndex) growRows(r0, r1 int) {
	if x.nRows > 0 {
		if r0 >= x.row0 && r1 < x.row0+x.nRows {
			return
		}
		r0, r1 = min(r0, x.row0), max(r1, x.row0+x.nRows-1)
	}
	head := make([]uint32, (r1-r0+1)*grid.Cols)
	if x.nRows > 0 {
		copy(head[(x.row0-r0)*grid.Cols:], x.cellHead)
	}
	x.row0, x.nRows, x.cellHead = r0, r1-r0+1, head
}

// eachCell calls f with the window index of every cell rc touches; the
// window holds rc's rows.
func (x *ruleIndex) eachCell(rc *reach, f func(cell int)) {
	c0, c1 := 0, grid.Cols-1
	if !rc.allLon {
		c0 = cellCol(rc.lonA)
		c1 = min(cellColEnd(rc.lonB), c0+grid.Cols-1)
	}
	for r := cellRow(rc.minLat); r <= cellRow(rc.maxLat); r++ {
		for c := c0; c <= c1; c++ {
			f((r-x.row0)*grid.Cols + c%grid.Cols)
		}
	}
}

// cellRulesAt returns the zone-guarded rules listed in the point's cell.
func (x *ruleIndex) cellRulesAt(lat, lon float64) []int32 {
	r := cellRow(lat) - x.row0
	if uint(r) >= uint(x.nRows) {
		return nil
	}
	return x.cellLists[x.cellHead[r*grid.Cols+cellCol(lon)]]
}

// insideRule matches a rule whose whole condition is inside("zone").
var insideRule = regexp.MustCompile(`^\s*inside\s*\(\s*("(?:[^"\\]|\\.)*")\s*\)\s*$`)

// insideZone returns the zone of a rule whose whole condition is
// inside("zone") (its firing is the truck entering the zone, its resolve
// by an update the truck leaving it), else "".
func insideZone(when string) string {
	m := insideRule.FindStringSubmatch(when)
	if m == nil {
		return ""
	}
	z, err := strconv.Unquote(m[1])
	if err != nil {
		return ""
	}
	return z
}

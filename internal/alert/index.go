package alert

import (
	"cmp"
	"math"
	"slices"

	"github.com/fleetd/fleetd/internal/fence"
	"github.com/fleetd/fleetd/internal/rules"
)

// Grid of the zone-guard index: cellDeg-degree cells, gridCols around the
// world, rows from the south pole.
const (
	cellDeg  = 0.5
	gridCols = int(360 / cellDeg)
	gridRows = int(180 / cellDeg)
)

func cellRow(lat float64) int {
	r := int(math.Floor((lat + 90) / cellDeg))
	return min(max(r, 0), gridRows-1)
}

func cellCol(lon float64) int {
	c := int(math.Floor((lon + 180) / cellDeg))
	return min(max(c, 0), gridCols-1)
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
	severity uint8   // index into severities
	g        guards  // field conditions; see findGuards
	multi    bool    // len(g.anyOf) > 1: listed in several groups
	rest     guards  // g.all less g.anyOf[0], checked after the group walk
	zoned    bool    // has a zone guard: zoneID, radiusM
	zoneID   int     // the guard's zone
	radiusM  float64 // the guard's radius
}

// snapshot is the immutable evaluation state: the rules, how to find the
// ones that can apply to an update, and the zones. Applied loads it once
// per batch; writers build a new one and swap it in.
//
// Indexing. Every rule is in exactly one of three places:
//
//	always   rules with neither guard: evaluated on every update
//	groups   rules with a field guard and no zone guard, grouped by
//	         (field, operator) and sorted by constant so that the rules
//	         whose guard holds are a prefix of the group, found by walking
//	         it until the first that fails
//	cells    rules with a zone guard, listed in every grid cell their
//	         reach touches; rows row0..row0+nRows-1, all gridCols columns:
//	         cellStart[i]..cellStart[i+1] index cellRules
//
// so an update costs the always-rules, one step per group plus the rules
// whose guard holds, and one cell lookup plus a box test per zone rule
// near it.
type snapshot struct {
	rules  []*liveRule // sorted by name
	reach  []reach     // parallel to rules: where a zoned rule can be true
	bySlot []*liveRule // slot → rule, nil for a free slot
	zones  *fence.Set

	always []int32 // indices into rules

	groups     []group
	groupConst []float64 // per group, its rules' constants in walking order
	groupRule  []int32   // parallel: indices into rules

	row0, nRows int
	cellStart   []uint32 // nRows*gridCols + 1
	cellRules   []int32  // indices into rules
}

// group is one (field, operator) run of groupConst/groupRule.
type group struct {
	field, op  uint8
	start, end uint32
}

var emptySnapshot = &snapshot{}

// buildSnapshot indexes rs (sorted by name) for evaluation against zones.
func buildSnapshot(rs []*liveRule, zones *fence.Set, maxSlot int) *snapshot {
	sn := &snapshot{rules: rs, reach: make([]reach, len(rs)), bySlot: make([]*liveRule, maxSlot), zones: zones}
	type gkey struct{ field, op uint8 }
	byGroup := map[gkey][]int32{}
	var zoned []int32
	for i, r := range rs {
		sn.bySlot[r.slot] = r
		switch {
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
		case len(r.g.anyOf) > 0:
			for j, g := range r.g.anyOf {
				k := gkey{g.field, g.op}
				byGroup[k] = append(byGroup[k], int32(i)<<8|int32(j))
			}
		default:
			sn.always = append(sn.always, int32(i))
		}
	}
	keys := make([]gkey, 0, len(byGroup))
	for k := range byGroup {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b gkey) int { return cmp.Or(cmp.Compare(a.field, b.field), cmp.Compare(a.op, b.op)) })
	for _, k := range keys {
		// Entries are rule index<<8 | index in the rule's anyOf.
		ents := byGroup[k]
		c := func(e int32) float64 { return rs[e>>8].g.anyOf[e&0xff].c }
		// Walking order: the most permissive constant first, so the rules
		// whose guard holds are a prefix (for ==, ascending).
		slices.SortStableFunc(ents, func(a, b int32) int {
			if k.op == opLT || k.op == opLE {
				return cmp.Compare(c(b), c(a))
			}
			return cmp.Compare(c(a), c(b))
		})
		g := group{field: k.field, op: k.op, start: uint32(len(sn.groupRule))}
		for _, e := range ents {
			sn.groupConst = append(sn.groupConst, c(e))
			sn.groupRule = append(sn.groupRule, e>>8)
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
	r0, r1 := gridRows, -1
	for _, i := range zoned {
		rc := &sn.reach[i]
		r0, r1 = min(r0, cellRow(rc.minLat)), max(r1, cellRow(rc.maxLat))
	}
	sn.row0, sn.nRows = r0, r1-r0+1
	n := sn.nRows * gridCols
	count := make([]uint32, n+1)
	each := func(rc *reach, f func(cell int)) {
		c0, c1 := 0, gridCols-1
		if !rc.allLon {
			// lonB may pass 180: its column is then >= gridCols and
			// wraps round to the west end.
			c0 = cellCol(rc.lonA)
			c1 = min(int(math.Floor((rc.lonB+180)/cellDeg)), c0+gridCols-1)
		}
		for r := cellRow(rc.minLat); r <= cellRow(rc.maxLat); r++ {
			for c := c0; c <= c1; c++ {
				f((r-r0)*gridCols + c%gridCols)
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
	i := r*gridCols + cellCol(lon)
	return sn.cellRules[sn.cellStart[i]:sn.cellStart[i+1]]
}

package rules

// guardResult is a rule's zone guard; see ZoneGuard.
type guardResult struct {
	zone    int
	radiusM float64
	ok      bool
}

// ZoneGuard reports a necessary condition for the rule to be true: when
// ok, Eval can return true only if the truck is inside zone or within
// radiusM metres of it (ZoneTester.Inside || ZoneTester.DistanceM <=
// radiusM); radiusM is 0 for inside(). The engine uses it to skip the rule
// for trucks far from the zone.
//
// ok is true when the folded rule is inside("z"), near("z", constant), or
// a conjunction (&&, at any nesting of && only) with one of them among its
// operands. Of several candidates the smallest radius wins, the first in
// source order on a tie.
func (p *Program) ZoneGuard() (zone int, radiusM float64, ok bool) {
	return p.guard.zone, p.guard.radiusM, p.guard.ok
}

// findGuard computes the zone guard of a folded, checked tree.
func findGuard(e *expr) guardResult {
	switch {
	case e.kind == nBinary && e.op == tAndAnd:
		a, b := findGuard(e.args[0]), findGuard(e.args[1])
		if !a.ok || b.ok && b.radiusM < a.radiusM {
			return b
		}
		return a
	case e.kind == nCall && e.fn == bInside:
		return guardResult{zone: e.zone, ok: true}
	case e.kind == nCall && e.fn == bNear && e.args[1].kind == nNum:
		// fold rejected negative, infinite and NaN constant radii.
		return guardResult{zone: e.zone, radiusM: e.args[1].num, ok: true}
	}
	return guardResult{}
}

package rules

import "slices"

// reorder sorts the operands of each && and || chain cheapest first, by
// a static cost estimate, so that short-circuiting skips the expensive
// ones (zone tests, haversine) for most updates: near("yard", 500) &&
// speed < 5 runs as speed < 5 && near("yard", 500). This is sound
// because every operand is a pure, total bool expression: it has no
// effects and cannot fail, so a && b equals b && a on every input
// (NaN included; it only ever reaches a comparison, which yields a bool).
// The sort is stable, so equal-cost operands keep their source order.
func reorder(e *expr) *expr {
	for i, a := range e.args {
		e.args[i] = reorder(a)
	}
	if e.kind != nBinary || e.op != tAndAnd && e.op != tOrOr {
		return e
	}
	var operands []*expr
	var ops []*expr // the chain's nodes, for their operator spans
	var flatten func(x *expr)
	flatten = func(x *expr) {
		if x.kind == nBinary && x.op == e.op {
			flatten(x.args[0])
			ops = append(ops, x)
			flatten(x.args[1])
			return
		}
		operands = append(operands, x)
	}
	flatten(e)
	sorted := slices.SortedStableFunc(slices.Values(operands), func(a, b *expr) int { return cost(a) - cost(b) })
	if slices.Equal(sorted, operands) {
		return e
	}
	// Rebuild left-associated, keeping the operators' spans in source
	// order for the listing.
	x := sorted[0]
	for i, y := range sorted[1:] {
		op := ops[i]
		x = &expr{kind: nBinary, op: e.op, pos: e.pos, end: e.end, opPos: op.opPos, opEnd: op.opEnd, args: []*expr{x, y}, typ: tyBool}
	}
	return x
}

// cost estimates an expression's run time in rough units of one simple
// instruction.
func cost(e *expr) int {
	c := 0
	for _, a := range e.args {
		c += cost(a)
	}
	switch e.kind {
	case nField:
		switch {
		case e.field == fMovedM:
			c += 25 // haversine
		case !isFastField(e.field):
			c += 2
		default:
			c++
		}
	case nUnary, nBinary:
		c++
	case nCall:
		switch e.fn {
		case bInside:
			c += 20
		case bNear:
			c += 40
		case bDistance:
			c += 25
		case bHour:
			c += 2
		default:
			c++
		}
	}
	return c
}

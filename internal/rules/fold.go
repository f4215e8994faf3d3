package rules

import (
	"math"
	"strconv"
)

// fold simplifies a checked tree: operators and pure functions whose
// operands are constants become constants, and && / || with a constant
// operand collapse (true && x → x, x || true → true). Every function of
// the language is pure, so dropping an operand never drops an effect.
// Nothing else is rewritten: x*0 is not 0 (x may be NaN or ±Inf), and
// !(a < b) is not a >= b (NaN).
//
// fold also rejects a constant near() radius that is negative or not
// finite, which would make the rule's zone guard meaningless.
func fold(src string, e *expr) (*expr, error) {
	for i, a := range e.args {
		f, err := fold(src, a)
		if err != nil {
			return nil, err
		}
		e.args[i] = f
	}
	switch e.kind {
	case nUnary:
		x := e.args[0]
		switch {
		case x.isConst() && e.op == tMinus:
			return numNode(e.pos, e.end, -x.num), nil
		case x.isConst() && e.op == tNot:
			return boolNode(e.pos, e.end, x.num == 0), nil
		case x.kind == nUnary && x.op == e.op:
			// --x and !!x are x exactly, NaN included.
			return x.args[0], nil
		}
	case nBinary:
		return foldBinary(e), nil
	case nCall:
		return foldCall(src, e)
	}
	return e, nil
}

func foldBinary(e *expr) *expr {
	x, y := e.args[0], e.args[1]
	switch e.op {
	case tAndAnd, tOrOr:
		// absorb is the value that decides the result on its own: false
		// for &&, true for ||.
		absorb := e.op == tOrOr
		switch {
		case x.isConst() && (x.num != 0) == absorb:
			return boolNode(e.pos, e.end, absorb)
		case x.isConst():
			return y
		case y.isConst() && (y.num != 0) == absorb:
			return boolNode(e.pos, e.end, absorb)
		case y.isConst():
			return x
		}
		return e
	}
	if !x.isConst() || !y.isConst() {
		return e
	}
	switch e.op {
	case tEQ:
		return boolNode(e.pos, e.end, x.num == y.num)
	case tNE:
		return boolNode(e.pos, e.end, x.num != y.num)
	case tLT:
		return boolNode(e.pos, e.end, x.num < y.num)
	case tLE:
		return boolNode(e.pos, e.end, x.num <= y.num)
	case tGT:
		return boolNode(e.pos, e.end, x.num > y.num)
	case tGE:
		return boolNode(e.pos, e.end, x.num >= y.num)
	case tPlus:
		return numNode(e.pos, e.end, x.num+y.num)
	case tMinus:
		return numNode(e.pos, e.end, x.num-y.num)
	case tStar:
		return numNode(e.pos, e.end, x.num*y.num)
	case tSlash:
		return numNode(e.pos, e.end, x.num/y.num)
	case tPercent:
		return numNode(e.pos, e.end, math.Mod(x.num, y.num))
	}
	return e
}

func foldCall(src string, e *expr) (*expr, error) {
	switch e.fn {
	case bNear:
		if r := e.args[1]; r.isConst() && !(r.num >= 0 && !math.IsInf(r.num, 1)) {
			return nil, newError(src, r.pos, r.end, "near: radius must be a finite number >= 0, got %s", formatNum(r.num))
		}
	case bAbs:
		if x := e.args[0]; x.isConst() {
			return numNode(e.pos, e.end, math.Abs(x.num)), nil
		}
	case bMin, bMax:
		x, y := e.args[0], e.args[1]
		if !x.isConst() || !y.isConst() {
			break
		}
		if e.fn == bMin {
			return numNode(e.pos, e.end, min(x.num, y.num)), nil
		}
		return numNode(e.pos, e.end, max(x.num, y.num)), nil
	}
	return e, nil
}

// formatNum prints a number the shortest way that reads back exactly.
func formatNum(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}

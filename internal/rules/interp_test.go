package rules

import (
	"fmt"
	"math"
)

// evalAST is a tree-walking interpreter over the checked, unfolded AST,
// written independently of the compiler and VM (it looks names up by
// their spelling) for differential testing. It returns the value as the
// VM does: numbers as themselves, bools as 1 and 0.
func evalAST(e *expr, in *Input, z ZoneTester) float64 {
	switch e.kind {
	case nNum, nBool:
		return e.num
	case nField:
		return astField(e.str, in)
	case nUnary:
		x := evalAST(e.args[0], in, z)
		if e.op == tMinus {
			return -x
		}
		return bool01(x == 0)
	case nBinary:
		x := evalAST(e.args[0], in, z)
		switch e.op {
		case tAndAnd:
			if x == 0 {
				return 0
			}
			return bool01(evalAST(e.args[1], in, z) != 0)
		case tOrOr:
			if x != 0 {
				return 1
			}
			return bool01(evalAST(e.args[1], in, z) != 0)
		}
		y := evalAST(e.args[1], in, z)
		switch e.op {
		case tPlus:
			return x + y
		case tMinus:
			return x - y
		case tStar:
			return x * y
		case tSlash:
			return x / y
		case tPercent:
			return math.Mod(x, y)
		case tLT:
			return bool01(x < y)
		case tLE:
			return bool01(x <= y)
		case tGT:
			return bool01(x > y)
		case tGE:
			return bool01(x >= y)
		case tEQ:
			return bool01(x == y)
		case tNE:
			return bool01(x != y)
		}
	case nCall:
		arg := func(i int) float64 { return evalAST(e.args[i], in, z) }
		switch e.str {
		case "inside":
			return bool01(z.Inside(e.zone, in.Lat, in.Lon))
		case "near":
			r := arg(1)
			return bool01(z.Inside(e.zone, in.Lat, in.Lon) || z.DistanceM(e.zone, in.Lat, in.Lon) <= r)
		case "distance_m":
			return haversineM(in.Lat, in.Lon, arg(0), arg(1))
		case "abs":
			return math.Abs(arg(0))
		case "min", "max":
			// NaN if either is NaN: unlike math.Max, max(+Inf, NaN) is NaN.
			x, y := arg(0), arg(1)
			if x != x || y != y {
				return math.NaN()
			}
			if e.str == "min" {
				return math.Min(x, y)
			}
			return math.Max(x, y)
		case "hour":
			return float64(((in.TS%86400 + 86400) % 86400) / 3600)
		}
	}
	panic(fmt.Sprintf("evalAST: unexpected node %+v", e))
}

// astField implements the documented field semantics by name.
func astField(name string, in *Input) float64 {
	prev := in.Prev
	if !in.HasPrev {
		prev = in.State
	}
	switch name {
	case "speed":
		return in.Speed
	case "heading":
		return in.Heading
	case "lat":
		return in.Lat
	case "lon":
		return in.Lon
	case "ts":
		return float64(in.TS)
	case "prev.speed":
		return prev.Speed
	case "prev.heading":
		return prev.Heading
	case "prev.lat":
		return prev.Lat
	case "prev.lon":
		return prev.Lon
	case "prev.ts":
		return float64(prev.TS)
	case "dt":
		if !in.HasPrev {
			return 0
		}
		return float64(in.TS) - float64(in.Prev.TS)
	case "moved_m":
		if !in.HasPrev {
			return 0
		}
		return haversineM(in.Prev.Lat, in.Prev.Lon, in.Lat, in.Lon)
	}
	panic("astField: unknown field " + name)
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// sameNum is equality that treats all NaNs as equal.
func sameNum(a, b float64) bool {
	return a == b || a != a && b != b
}

package rules

import (
	"fmt"
	"math"
	"strings"
)

// fieldID names a value the VM can load from an Input.
type fieldID uint8

// The order is loadField's: 0–3 and 4–7 are the float64 fields of the
// current and previous State in struct order, then dt.
const (
	fLat fieldID = iota
	fLon
	fSpeed
	fHeading
	fPrevLat
	fPrevLon
	fPrevSpeed
	fPrevHeading
	fDT
	fTS
	fPrevTS
	fMovedM
	numFields
)

var fieldNames = [numFields]string{
	fSpeed:       "speed",
	fHeading:     "heading",
	fLat:         "lat",
	fLon:         "lon",
	fTS:          "ts",
	fPrevSpeed:   "prev.speed",
	fPrevHeading: "prev.heading",
	fPrevLat:     "prev.lat",
	fPrevLon:     "prev.lon",
	fPrevTS:      "prev.ts",
	fDT:          "dt",
	fMovedM:      "moved_m",
}

func lookupField(name string) (fieldID, bool) {
	for i, n := range fieldNames {
		if n == name {
			return fieldID(i), true
		}
	}
	return 0, false
}

// builtinID names a built-in function.
type builtinID uint8

const (
	bInside builtinID = iota
	bNear
	bDistance
	bAbs
	bMin
	bMax
	bHour
	numBuiltins
)

// A builtin's signature. A zone function takes a zone name string literal
// as its first argument.
type builtin struct {
	name   string
	params []typ
	result typ
	zone   bool
}

var builtins = [numBuiltins]builtin{
	bInside:   {"inside", []typ{tyString}, tyBool, true},
	bNear:     {"near", []typ{tyString, tyNumber}, tyBool, true},
	bDistance: {"distance_m", []typ{tyNumber, tyNumber}, tyNumber, false},
	bAbs:      {"abs", []typ{tyNumber}, tyNumber, false},
	bMin:      {"min", []typ{tyNumber, tyNumber}, tyNumber, false},
	bMax:      {"max", []typ{tyNumber, tyNumber}, tyNumber, false},
	bHour:     {"hour", nil, tyNumber, false},
}

func lookupBuiltin(name string) (builtinID, bool) {
	for i, b := range builtins {
		if b.name == name {
			return builtinID(i), true
		}
	}
	return 0, false
}

// checker resolves names and zones and computes every node's type.
type checker struct {
	src   string
	zones ZoneResolver
}

// check type-checks the tree rooted at e in place.
func (c *checker) check(e *expr) error {
	switch e.kind {
	case nNum:
		e.typ = tyNumber
	case nBool:
		e.typ = tyBool
	case nStr:
		e.typ = tyString
	case nField:
		return c.checkField(e)
	case nUnary:
		return c.checkUnary(e)
	case nBinary:
		return c.checkBinary(e)
	case nCall:
		return c.checkCall(e)
	default:
		panic(fmt.Sprintf("BUG: rules: check of node kind %d", e.kind))
	}
	return nil
}

func (c *checker) errorf(e *expr, format string, args ...any) error {
	return newError(c.src, e.pos, e.end, format, args...)
}

func (c *checker) checkField(e *expr) error {
	if f, ok := lookupField(e.str); ok {
		e.field, e.typ = f, tyNumber
		return nil
	}
	if _, ok := lookupBuiltin(e.str); ok {
		return c.errorf(e, "%s is a function; call it as %s(...)", e.str, e.str)
	}
	if e.str == "prev" {
		return c.errorf(e, "prev needs a field: prev.speed, prev.heading, prev.lat, prev.lon or prev.ts")
	}
	return c.errorf(e, "unknown field %q%s", e.str, suggest(e.str, fieldNames[:]))
}

func (c *checker) checkUnary(e *expr) error {
	x := e.args[0]
	if err := c.check(x); err != nil {
		return err
	}
	switch e.op {
	case tMinus:
		if x.typ != tyNumber {
			return c.errorf(x, "operator - needs a number, got %s", x.typ)
		}
		e.typ = tyNumber
	case tNot:
		if x.typ != tyBool {
			return c.errorf(x, "operator ! needs a bool, got %s", x.typ)
		}
		e.typ = tyBool
	default:
		panic(fmt.Sprintf("BUG: rules: unary operator %v", e.op))
	}
	return nil
}

func (c *checker) checkBinary(e *expr) error {
	x, y := e.args[0], e.args[1]
	if err := c.check(x); err != nil {
		return err
	}
	if err := c.check(y); err != nil {
		return err
	}
	operands := func(want typ, plural string) error {
		for _, a := range e.args {
			if a.typ != want {
				return c.errorf(a, "operator %s needs %s, got %s", e.op, plural, a.typ)
			}
		}
		return nil
	}
	switch e.op {
	case tPlus, tMinus, tStar, tSlash, tPercent:
		e.typ = tyNumber
		return operands(tyNumber, "numbers")
	case tLT, tLE, tGT, tGE:
		e.typ = tyBool
		return operands(tyNumber, "numbers")
	case tAndAnd, tOrOr:
		e.typ = tyBool
		return operands(tyBool, "bools")
	case tEQ, tNE:
		e.typ = tyBool
		switch {
		case x.typ != y.typ:
			return c.errorf(e, "cannot compare %s with %s", x.typ, y.typ)
		case x.typ == tyString:
			return c.errorf(e, "operator %s cannot compare strings; zone names are only allowed as arguments of inside and near", e.op)
		}
		return nil
	}
	panic(fmt.Sprintf("BUG: rules: binary operator %v", e.op))
}

func (c *checker) checkCall(e *expr) error {
	id, ok := lookupBuiltin(e.str)
	if !ok {
		if _, isField := lookupField(e.str); isField {
			return newError(c.src, e.opPos, e.opEnd, "%s is a field, not a function", e.str)
		}
		names := make([]string, len(builtins))
		for i, b := range builtins {
			names[i] = b.name
		}
		return newError(c.src, e.opPos, e.opEnd, "unknown function %q%s", e.str, suggest(e.str, names))
	}
	b := &builtins[id]
	e.fn, e.typ = id, b.result
	if len(e.args) != len(b.params) {
		return c.errorf(e, "%s expects %s, got %d", b.name, plural(len(b.params), "argument"), len(e.args))
	}
	for i, a := range e.args {
		if i == 0 && b.zone {
			if a.kind != nStr {
				return c.errorf(a, "%s: argument 1 must be a zone name in double quotes", b.name)
			}
			a.typ = tyString
			if err := c.resolveZone(e, a); err != nil {
				return err
			}
			continue
		}
		if err := c.check(a); err != nil {
			return err
		}
		if a.typ != b.params[i] {
			if a.typ == tyString {
				return c.errorf(a, "%s: argument %d must be a %s, got a string; zone names are only allowed as argument 1 of inside and near", b.name, i+1, b.params[i])
			}
			return c.errorf(a, "%s: argument %d must be a %s, got %s", b.name, i+1, b.params[i], a.typ)
		}
	}
	return nil
}

func (c *checker) resolveZone(call, name *expr) error {
	if c.zones != nil {
		if id, ok := c.zones.ZoneID(name.str); ok {
			call.zone = id
			return nil
		}
	}
	hint := ""
	if l, ok := c.zones.(ZoneLister); ok {
		hint = suggest(name.str, l.ZoneNames())
	}
	return c.errorf(name, "unknown zone %q%s", name.str, hint)
}

func plural(n int, noun string) string {
	switch n {
	case 0:
		return "no " + noun + "s"
	case 1:
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// suggest returns ` (did you mean "x"?)` for the candidate closest to name
// by edit distance, or "" when none is close enough: at most 2 edits and
// fewer edits than name has bytes. Ties go to the earlier candidate.
func suggest(name string, candidates []string) string {
	best, bestD := "", math.MaxInt
	for _, cand := range candidates {
		if d := editDistance(strings.ToLower(name), strings.ToLower(cand)); d < bestD {
			best, bestD = cand, d
		}
	}
	if best == "" || bestD > 2 || bestD >= len(name) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Suggestions for long names are noise; skip the O(n·m) work.
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

package rules

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Op is the comparison of an Atom.
type Op uint8

// Comparisons, with the VM's semantics: false when either side is NaN,
// except NE, which is then true.
const (
	LT Op = iota + 1
	LE
	GT
	GE
	EQ
	NE
)

var opNames = [...]string{LT: "<", LE: "<=", GT: ">", GE: ">=", EQ: "==", NE: "!="}

func (o Op) String() string {
	if o < LT || o > NE {
		return fmt.Sprintf("Op(%d)", o)
	}
	return opNames[o]
}

// Term is a numeric sub-expression of a rule that reads only the update:
// fields, constants, arithmetic, abs, min, max, hour and distance_m (no
// zone). Terms with the same String evaluate identically, so a caller may
// compute one value per update for all of them. A Term is immutable and
// safe for concurrent use.
type Term struct {
	key  string
	kind termKind
	fast bool     // kind == termField and fastField reads f
	f    byte     // termField: the field; termDiff, termAbsDiff: the left one
	g    byte     // termDiff, termAbsDiff: the right field
	prog *Program // termProg: the term compiled alone, a number program
	cost int
}

// termKind says how Term.Eval computes a term.
type termKind uint8

const (
	termProg       termKind = iota // run prog
	termField                      // loadField(f)
	termHour                       // hour()
	termMovedUpper                 // movedUpper, an upper bound of moved_m
	termDiff                       // f - g, both fast fields
	termAbsDiff                    // abs(f - g), both fast fields
)

// String is the term's canonical text: fully parenthesised below the top,
// constants printed exactly (speed, abs((heading - prev.heading)), hour()).
func (t *Term) String() string { return t.key }

// Cost is a rough estimate of Eval's cost in simple VM instructions
// (a field is 1, moved_m and distance_m about 25); the compiler orders
// && and || operands by the same estimate.
func (t *Term) Cost() int { return t.cost }

// Eval returns the term's value for the update, bit for bit the value the
// rule's own program computes for it. It does not allocate and never
// panics.
func (t *Term) Eval(in *Input) float64 {
	switch t.kind {
	case termField:
		return loadField(in, t.f)
	case termHour:
		return hourUTC(in.TS)
	case termMovedUpper:
		return movedUpper(in)
	case termDiff, termAbsDiff:
		// As the VM: SUB, then ABS.
		x, _ := fastField(in, t.f)
		y, _ := fastField(in, t.g)
		d := x - y
		if t.kind == termAbsDiff {
			d = math.Abs(d)
		}
		return d
	}
	if t.prog.maxStack > smallStack {
		return run[[maxStack]float64](t.prog, in, nil)
	}
	return run[[smallStack]float64](t.prog, in, nil)
}

// NumFastFields is the number of fields FastFields reads.
const NumFastFields = int(fDT) + 1

// FastFields stores the values of the fields most conditions test (lat,
// lon, speed, heading, the same of prev, then dt) in dst, as the VM reads
// them: so dst[i] is Term.Eval of the term whose FastField is i. One call
// per update is cheaper than one Eval per term.
func FastFields(in *Input, dst *[NumFastFields]float64) {
	for f := range dst {
		dst[f], _ = fastField(in, byte(f))
	}
}

// FastField reports whether the term is a field alone that FastFields
// reads, and its index there.
func (t *Term) FastField() (int, bool) { return int(t.f), t.fast }

// Atom is the condition "Term Op C".
type Atom struct {
	Term *Term
	Op   Op
	C    float64
}

// Holds reports whether the atom holds for the term's value v, exactly as
// the VM compares: NaN on either side is false, except for NE.
func (a Atom) Holds(v float64) bool {
	switch a.Op {
	case LT:
		return v < a.C
	case LE:
		return v <= a.C
	case GT:
		return v > a.C
	case GE:
		return v >= a.C
	case EQ:
		return v == a.C
	case NE:
		return v != a.C
	}
	return false
}

func (a Atom) String() string { return a.Term.key + " " + a.Op.String() + " " + formatNum(a.C) }

// Limits on the conditions kept per rule: distributing || over && can
// grow them exponentially. A clause over a limit is dropped (the rule is
// then known less precisely, never wrongly).
const (
	maxClauses     = 16
	maxClauseAtoms = 8
)

// Conditions returns necessary conditions for the rule in conjunctive
// normal form: Eval returns true for an Input only if every clause has an
// atom that holds for it. A rule that folded to false has one empty
// clause; a rule with nothing known, none. When exact is true the
// conditions are also sufficient: Eval is true exactly when every clause
// holds, so a caller that has checked them need not call Eval.
//
// They are derived from the folded tree (see conditions), so they hold
// whatever order the compiler gave the operands. The slices are the
// caller's; the Terms are shared.
func (p *Program) Conditions() (cnf [][]Atom, exact bool) {
	cnf = make([][]Atom, len(p.cnf))
	for i, c := range p.cnf {
		cnf[i] = slices.Clone(c)
	}
	return cnf, p.exact
}

// condSet is the result of conditions: clauses ANDed, atoms in a clause
// ORed; exact when they are equivalent to the expression.
type condSet struct {
	clauses [][]Atom
	exact   bool
}

// condBuilder derives conditions, sharing Terms by key within one rule.
type condBuilder struct {
	src   string
	terms map[string]*Term
}

// conditions computes the conditions of a folded, checked bool tree e:
//
//	N(t op c) = {{t op c}}                       exact (also c op t, mirrored)
//	N(a && b) = N(a) ∪ N(b)                      exact if both are
//	N(a || b) = {A ∪ B : A ∈ N(a), B ∈ N(b)}     exact if both are
//	N(true) = {}, N(false) = {{}}                exact
//	N(anything else) = {}                        not exact
//
// where t is a numeric term (see Term) that is not a constant and c a
// constant. Anything else includes ! (!(x < c) is not x >= c when x is
// NaN), comparisons of two terms, bool ==, and the zone functions (see
// ZoneGuard for those). Sound because a && b true needs both true and
// a || b true needs one of them; the limits (maxClauses, maxClauseAtoms)
// drop clauses and exactness, never add a condition.
func (b *condBuilder) conditions(e *expr) condSet {
	switch e.kind {
	case nBool:
		if e.num != 0 {
			return condSet{exact: true}
		}
		return condSet{clauses: [][]Atom{{}}, exact: true}
	case nBinary:
		switch e.op {
		case tAndAnd:
			x, y := b.conditions(e.args[0]), b.conditions(e.args[1])
			cs := condSet{clauses: append(x.clauses, y.clauses...), exact: x.exact && y.exact}
			if len(cs.clauses) > maxClauses {
				cs.clauses, cs.exact = cs.clauses[:maxClauses], false
			}
			return cs
		case tOrOr:
			return b.or(b.conditions(e.args[0]), b.conditions(e.args[1]))
		}
		if a, ok := b.atom(e); ok {
			cs := condSet{clauses: [][]Atom{{a}}, exact: true}
			if a.Term.kind == termField && a.Term.f == byte(fMovedM) && (a.Op == GT || a.Op == GE || a.Op == EQ) {
				// moved_m > c needs movedUpper > c, which is much cheaper
				// to compute: an implied clause, so still exact.
				op := GE
				if a.Op == GT {
					op = GT
				}
				cs.clauses = append(cs.clauses, []Atom{{Term: b.movedUpperTerm(), Op: op, C: a.C}})
			}
			return cs
		}
	}
	return condSet{}
}

// or distributes x || y into one clause per pair of clauses.
func (b *condBuilder) or(x, y condSet) condSet {
	if len(x.clauses) == 0 || len(y.clauses) == 0 {
		// One side is unconstrained: true if exact, unknown otherwise.
		return condSet{exact: x.exact && len(x.clauses) == 0 || y.exact && len(y.clauses) == 0}
	}
	cs := condSet{exact: x.exact && y.exact}
	for _, cx := range x.clauses {
		for _, cy := range y.clauses {
			c := slices.Clone(cx)
			for _, a := range cy {
				if !slices.ContainsFunc(c, func(o Atom) bool { return o.Term == a.Term && o.Op == a.Op && sameBits(o.C, a.C) }) {
					c = append(c, a)
				}
			}
			if len(c) > maxClauseAtoms || len(cs.clauses) == maxClauses {
				cs.exact = false
				continue
			}
			cs.clauses = append(cs.clauses, c)
		}
	}
	return cs
}

func sameBits(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) }

// atom returns e as "term op constant" if it is one.
func (b *condBuilder) atom(e *expr) (Atom, bool) {
	var op Op
	switch e.op {
	case tLT, tLE, tGT, tGE, tEQ, tNE:
	default:
		return Atom{}, false
	}
	x, y, k := e.args[0], e.args[1], e.op
	if x.kind == nNum {
		x, y, k = y, x, mirror(k)
	}
	if y.kind != nNum || x.isConst() || x.typ != tyNumber {
		return Atom{}, false
	}
	switch k {
	case tLT:
		op = LT
	case tLE:
		op = LE
	case tGT:
		op = GT
	case tGE:
		op = GE
	case tEQ:
		op = EQ
	case tNE:
		op = NE
	}
	t, ok := b.term(x)
	if !ok {
		return Atom{}, false
	}
	return Atom{Term: t, Op: op, C: y.num}, true
}

// term returns the Term for the numeric subtree x, compiling it once per
// distinct key.
func (b *condBuilder) term(x *expr) (*Term, bool) {
	var sb strings.Builder
	if !termKey(&sb, x, true) {
		return nil, false
	}
	key := sb.String()
	if t := b.terms[key]; t != nil {
		return t, true
	}
	t := &Term{key: key, cost: cost(x)}
	switch {
	case x.kind == nField:
		t.kind, t.f, t.fast = termField, byte(x.field), isFastField(x.field)
	case x.kind == nCall && x.fn == bHour:
		t.kind = termHour
	case isFieldDiff(x):
		t.kind, t.f, t.g = termDiff, byte(x.args[0].field), byte(x.args[1].field)
	case x.kind == nCall && x.fn == bAbs && isFieldDiff(x.args[0]):
		d := x.args[0]
		t.kind, t.f, t.g = termAbsDiff, byte(d.args[0].field), byte(d.args[1].field)
	default:
		g := &codegen{src: b.src, p: &Program{src: b.src}}
		g.emitExpr(x)
		g.emit(opReturn, -1, -1)
		g.depth--
		if g.err != nil || g.maxDepth > maxStack {
			return nil, false // too big to run alone: no condition, still sound
		}
		g.p.maxStack = g.maxDepth
		if err := g.p.verify(); err != nil {
			panic(fmt.Sprintf("BUG: rules: compiled bad code for term %s of %q: %v\n%s", key, b.src, err, g.p.Disasm()))
		}
		t.prog = g.p
	}
	b.addTerm(t)
	return t, true
}

func (b *condBuilder) addTerm(t *Term) {
	if b.terms == nil {
		b.terms = map[string]*Term{}
	}
	b.terms[t.key] = t
}

// isFieldDiff reports whether x is a fast field minus a fast field, such
// as heading - prev.heading: a term common enough to compute without the
// VM.
func isFieldDiff(x *expr) bool {
	return x.kind == nBinary && x.op == tMinus &&
		x.args[0].kind == nField && isFastField(x.args[0].field) &&
		x.args[1].kind == nField && isFastField(x.args[1].field)
}

// movedUpperTerm returns the rule's movedUpper term.
func (b *condBuilder) movedUpperTerm() *Term {
	const key = "upper(moved_m)"
	if t := b.terms[key]; t != nil {
		return t
	}
	t := &Term{key: key, kind: termMovedUpper, cost: 3}
	b.addTerm(t)
	return t
}

// movedUpper is an upper bound of moved_m (haversineM from the previous
// position to the current one) that costs a few multiplications instead
// of a sine, a cosine and a square root:
//
//	moved_m <= (R·|Δφ| + R·|Δλ|·cosUp(max(|φ1|, |φ2|)))·(1 + 1e-9) + 1 m
//
// The great circle is no longer than the path along the meridian to the
// latitude nearer a pole and then along that parallel, whose length is
// R·|Δλ|·cos φ for any Δλ; cosUp(x) = 1 - x²/2 + x⁴/24 >= cos x for every
// x (integrate sin x <= x twice, then x - x³/6 <= sin x twice). The
// relative 1e-9 and the absolute metre cover the rounding of both
// formulas, 0.25 m at worst for nearly antipodal points, where asin
// amplifies the rounding of its argument. Inputs that are not finite, or
// latitudes outside ±90°, give +Inf: no bound. Without a previous state
// moved_m is 0, and so is the bound.
func movedUpper(in *Input) float64 {
	if !in.HasPrev {
		return 0
	}
	const rad = math.Pi / 180
	lat1, lat2 := math.Abs(in.Prev.Lat), math.Abs(in.Lat)
	dLat := math.Abs(in.Lat-in.Prev.Lat) * rad
	dLon := math.Abs(in.Lon-in.Prev.Lon) * rad
	if !(lat1 <= 90 && lat2 <= 90 && dLon <= math.MaxFloat64) {
		return math.Inf(1)
	}
	x := max(lat1, lat2) * rad
	x2 := x * x
	cosUp := 1 - x2/2 + x2*x2/24
	return (dLat+dLon*cosUp)*earthRadiusM*(1+1e-9) + 1
}

// termKey writes the canonical text of a numeric subtree. It reports
// false for anything a Term cannot hold (a zone function, a bool).
func termKey(sb *strings.Builder, e *expr, top bool) bool {
	if e.typ != tyNumber {
		return false
	}
	switch e.kind {
	case nNum:
		sb.WriteString(formatNum(e.num))
	case nField:
		sb.WriteString(fieldNames[e.field])
	case nUnary:
		if e.op != tMinus {
			return false
		}
		sb.WriteString("-")
		return termKey(sb, e.args[0], false)
	case nBinary:
		if !top {
			sb.WriteByte('(')
		}
		if !termKey(sb, e.args[0], false) {
			return false
		}
		sb.WriteString(" " + e.op.String() + " ")
		if !termKey(sb, e.args[1], false) {
			return false
		}
		if !top {
			sb.WriteByte(')')
		}
	case nCall:
		switch e.fn {
		case bAbs, bMin, bMax, bHour, bDistance:
		default:
			return false
		}
		sb.WriteString(builtins[e.fn].name)
		sb.WriteByte('(')
		for i, a := range e.args {
			if i > 0 {
				sb.WriteString(", ")
			}
			if !termKey(sb, a, true) {
				return false
			}
		}
		sb.WriteByte(')')
	default:
		return false
	}
	return true
}

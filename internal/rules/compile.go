package rules

import (
	"fmt"
	"math"
)

// Limits a compiled rule must fit. Operands are one byte (constants,
// zones) or two (jump targets); exceeding a limit is a compile error.
const (
	maxConsts = 256
	maxZones  = 256
	maxCode   = math.MaxUint16
	maxStack  = 256 // stack slots; see stackArray
)

// Program is a compiled rule. It is immutable after Compile and safe for
// concurrent use by any number of goroutines.
type Program struct {
	// Hot: read by Eval. Pointer-free slices of scalars.
	code     []byte
	consts   []float64
	zoneIDs  []int
	maxStack int

	// Cold: introspection and disassembly.
	src       string
	zoneNames []string    // parallel to zoneIDs
	lines     []instrSpan // one per instruction, in code order
	guard     guardResult // see ZoneGuard
	cnf       [][]Atom    // see Conditions
	exact     bool        // see Conditions
}

// instrSpan ties an instruction to the source text it came from.
type instrSpan struct {
	off      int // code offset
	pos, end int // source span; pos == end == -1 for none
}

// Compile parses, checks, folds and compiles a rule. zones resolves zone
// names (it may be nil when the rule names none). The error, if any, is
// an *Error with the position of the offending text.
func Compile(src string, zones ZoneResolver) (*Program, error) {
	return compile(src, zones, tyBool)
}

// Source returns the rule's source text.
func (p *Program) Source() string { return p.src }

// Zones returns the IDs of the zones the rule names, each once, in the
// order the compiled code first uses them. The slice is the caller's.
func (p *Program) Zones() []int { return append([]int(nil), p.zoneIDs...) }

// parseAndCheck returns the checked, unfolded AST of src.
func parseAndCheck(src string, zones ZoneResolver) (*expr, error) {
	e, err := parse(src)
	if err != nil {
		return nil, err
	}
	c := &checker{src: src, zones: zones}
	if err := c.check(e); err != nil {
		return nil, err
	}
	return e, nil
}

// compile compiles src; want is the required result type, or tyInvalid
// to accept a number too (for tests that compare numeric results).
func compile(src string, zones ZoneResolver, want typ) (*Program, error) {
	e, err := parseAndCheck(src, zones)
	if err != nil {
		return nil, err
	}
	switch {
	case want == tyBool && e.typ != tyBool:
		return nil, newError(src, e.pos, e.end, "rule must be a bool expression, got %s", e.typ)
	case e.typ == tyString:
		return nil, newError(src, e.pos, e.end, "expression must be a number or a bool, got string")
	}
	e, err = fold(src, e)
	if err != nil {
		return nil, err
	}
	e = reorder(e)
	g := &codegen{src: src, p: &Program{src: src}}
	g.emitExpr(e)
	g.emit(opReturn, -1, -1)
	g.depth--
	if g.err != nil {
		return nil, g.err
	}
	p := g.p
	p.maxStack = g.maxDepth
	if p.maxStack > maxStack {
		return nil, newError(src, 0, len(src), "rule too complex: needs %d stack slots, max %d", p.maxStack, maxStack)
	}
	threadJumps(p.code)
	p.guard = findGuard(e)
	cb := &condBuilder{src: src}
	cs := cb.conditions(e)
	p.cnf, p.exact = cs.clauses, cs.exact
	if err := p.verify(); err != nil {
		panic(fmt.Sprintf("BUG: rules: compiled bad code for %q: %v\n%s", src, err, p.Disasm()))
	}
	return p, nil
}

// codegen emits bytecode for a folded tree, tracking the stack depth.
type codegen struct {
	src             string
	p               *Program
	depth, maxDepth int
	err             error
}

func (g *codegen) fail(format string, args ...any) {
	if g.err == nil {
		g.err = newError(g.src, 0, len(g.src), format, args...)
	}
}

// emit appends an instruction and its operand bytes and applies its stack
// effect. It returns the instruction's offset.
func (g *codegen) emit(op opcode, pos, end int, operands ...byte) int {
	off := len(g.p.code)
	if off+1+len(operands) > maxCode {
		g.fail("rule too complex: more than %d bytes of code", maxCode)
	}
	g.p.code = append(g.p.code, byte(op))
	g.p.code = append(g.p.code, operands...)
	g.p.lines = append(g.p.lines, instrSpan{off, pos, end})
	info := opInfos[op]
	if op.isJump() {
		g.maxDepth = max(g.maxDepth, g.depth+info.jumpDelta)
	}
	g.depth += info.push - info.pop
	g.maxDepth = max(g.maxDepth, g.depth)
	return off
}

func (g *codegen) constIndex(v float64) byte {
	for i, c := range g.p.consts {
		// Bitwise identity, so that -0 and 0 (and NaN payloads) stay apart.
		if math.Float64bits(c) == math.Float64bits(v) {
			return byte(i)
		}
	}
	if len(g.p.consts) == maxConsts {
		g.fail("rule too complex: more than %d distinct constants", maxConsts)
		return 0
	}
	g.p.consts = append(g.p.consts, v)
	return byte(len(g.p.consts) - 1)
}

func (g *codegen) zoneIndex(id int, name string) byte {
	for i, z := range g.p.zoneIDs {
		if z == id {
			return byte(i)
		}
	}
	if len(g.p.zoneIDs) == maxZones {
		g.fail("rule too complex: more than %d distinct zones", maxZones)
		return 0
	}
	g.p.zoneIDs = append(g.p.zoneIDs, id)
	g.p.zoneNames = append(g.p.zoneNames, name)
	return byte(len(g.p.zoneIDs) - 1)
}

func (g *codegen) emitExpr(e *expr) {
	switch e.kind {
	case nNum:
		g.emit(opLoadConst, e.pos, e.end, g.constIndex(e.num))
	case nBool:
		if e.num != 0 {
			g.emit(opLoadTrue, e.pos, e.end)
		} else {
			g.emit(opLoadFalse, e.pos, e.end)
		}
	case nField:
		g.emit(opLoadField, e.pos, e.end, byte(e.field))
	case nUnary:
		g.emitExpr(e.args[0])
		if e.op == tMinus {
			g.emit(opNeg, e.pos, e.end)
		} else {
			g.emit(opNot, e.pos, e.end)
		}
	case nBinary:
		g.emitBinary(e)
	case nCall:
		g.emitCall(e)
	default:
		panic(fmt.Sprintf("BUG: rules: codegen for node kind %d", e.kind))
	}
}

func (g *codegen) emitBinary(e *expr) {
	x, y := e.args[0], e.args[1]
	switch e.op {
	case tAndAnd, tOrOr:
		g.emitChain(e)
		return
	case tLT, tLE, tGT, tGE, tEQ, tNE:
		if f, k, cmp, ok := g.fieldConstCompare(e); ok {
			g.emit(cmpOpcode(cmp)-opLT+opLTFC, e.pos, e.end, byte(f), k)
			return
		}
		op := e.op
		if x.kind == nNum && y.kind != nNum {
			x, y, op = y, x, mirror(op)
		}
		if y.kind == nNum {
			k := g.constIndex(y.num)
			g.emitExpr(x)
			g.emit(cmpOpcode(op)-opLT+opLTC, e.pos, e.end, k)
			return
		}
		g.emitExpr(x)
		g.emitExpr(y)
		g.emit(cmpOpcode(op), e.pos, e.end)
		return
	}
	g.emitExpr(x)
	g.emitExpr(y)
	switch e.op {
	case tPlus:
		g.emit(opAdd, e.pos, e.end)
	case tMinus:
		g.emit(opSub, e.pos, e.end)
	case tStar:
		g.emit(opMul, e.pos, e.end)
	case tSlash:
		g.emit(opDiv, e.pos, e.end)
	case tPercent:
		g.emit(opMod, e.pos, e.end)
	default:
		panic(fmt.Sprintf("BUG: rules: codegen for binary operator %v", e.op))
	}
}

// emitChain emits a chain a && b && ... (or ||) flattened: each operand
// but the last is followed by a branch to the end that leaves the
// chain's value (false for &&, true for ||) when the operand decides it.
// A field compared with a constant fuses with its branch.
func (g *codegen) emitChain(e *expr) {
	var operands, ops []*expr
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
	fusedFC, fusedC, plain := opAndLTFC, opAndLTC, opJumpIfFalseOrPop
	if e.op == tOrOr {
		fusedFC, fusedC, plain = opOrLTFC, opOrLTC, opJumpIfTrueOrPop
	}
	jumps := make([]int, 0, len(ops))
	for i, x := range operands[:len(operands)-1] {
		if f, k, cmp, ok := g.fieldConstCompare(x); ok {
			jumps = append(jumps, g.emit(cmpOpcode(cmp)-opLT+fusedFC, x.pos, x.end, byte(f), k, 0, 0))
			continue
		}
		if lhs, k, cmp, ok := g.constCompare(x); ok {
			g.emitExpr(lhs)
			jumps = append(jumps, g.emit(cmpOpcode(cmp)-opLT+fusedC, x.pos, x.end, k, 0, 0))
			continue
		}
		g.emitExpr(x)
		jumps = append(jumps, g.emit(plain, ops[i].opPos, ops[i].opEnd, 0, 0))
	}
	g.emitExpr(operands[len(operands)-1])
	for _, j := range jumps {
		setJumpTarget(g.p.code, j, len(g.p.code))
	}
}

// constCompare reports whether e compares an expression with a constant
// (either way round), and returns the expression, the constant's index
// and the comparison with the expression on the left.
func (g *codegen) constCompare(e *expr) (*expr, byte, tokKind, bool) {
	if e.kind != nBinary || cmpOpcode(e.op) == opInvalid {
		return nil, 0, 0, false
	}
	x, y, op := e.args[0], e.args[1], e.op
	if x.kind == nNum {
		x, y, op = y, x, mirror(op)
	}
	if y.kind != nNum || x.kind == nNum {
		return nil, 0, 0, false
	}
	return x, g.constIndex(y.num), op, true
}

// fieldConstCompare reports whether e compares a fast field with a
// constant (either way round), and returns the field, the constant's
// index and the comparison with the field on the left.
func (g *codegen) fieldConstCompare(e *expr) (fieldID, byte, tokKind, bool) {
	if e.kind != nBinary || cmpOpcode(e.op) == opInvalid {
		return 0, 0, 0, false
	}
	x, y, op := e.args[0], e.args[1], e.op
	if x.kind == nNum {
		x, y, op = y, x, mirror(op)
	}
	if x.kind != nField || !isFastField(x.field) || y.kind != nNum {
		return 0, 0, 0, false
	}
	return x.field, g.constIndex(y.num), op, true
}

func (g *codegen) emitCall(e *expr) {
	switch e.fn {
	case bInside:
		g.emit(opInside, e.pos, e.end, g.zoneIndex(e.zone, e.args[0].str))
	case bNear:
		g.emitExpr(e.args[1])
		g.emit(opNear, e.pos, e.end, g.zoneIndex(e.zone, e.args[0].str))
	case bDistance:
		g.emitExpr(e.args[0])
		g.emitExpr(e.args[1])
		g.emit(opDistance, e.pos, e.end)
	case bAbs:
		g.emitExpr(e.args[0])
		g.emit(opAbs, e.pos, e.end)
	case bMin, bMax:
		g.emitExpr(e.args[0])
		g.emitExpr(e.args[1])
		if e.fn == bMin {
			g.emit(opMin, e.pos, e.end)
		} else {
			g.emit(opMax, e.pos, e.end)
		}
	case bHour:
		g.emit(opHour, e.pos, e.end)
	default:
		panic(fmt.Sprintf("BUG: rules: codegen for builtin %d", e.fn))
	}
}

// jumpTarget returns the target of the jump at off: its last two bytes.
func jumpTarget(code []byte, off int) int {
	i := off + opcode(code[off]).width() - 2
	return int(code[i]) | int(code[i+1])<<8
}

func setJumpTarget(code []byte, off, target int) {
	i := off + opcode(code[off]).width() - 2
	code[i], code[i+1] = byte(target), byte(target>>8)
}

// threadJumps shortens jump chains. A jump leaves a known bool on the
// stack (false for AND_* and JUMP_IF_FALSE_OR_POP, true for OR_* and
// JUMP_IF_TRUE_OR_POP); when it lands on a JUMP_IF_FALSE_OR_POP with
// false (or a JUMP_IF_TRUE_OR_POP with true), that jump is taken too, so
// the first one may go straight to its target. A jump that ends at the
// final RETURN gets target 0, which the VM executes as "return the
// value": a && b && c then returns at the first false operand.
func threadJumps(code []byte) {
	ret := len(code) - 1 // the single RETURN
	for off := 0; off < len(code); off += opcode(code[off]).width() {
		op := opcode(code[off])
		if !op.isJump() {
			continue
		}
		follow := opJumpIfFalseOrPop
		if op.jumpValue() {
			follow = opJumpIfTrueOrPop
		}
		t := jumpTarget(code, off)
		for t != 0 && t != ret && opcode(code[t]) == follow {
			t = jumpTarget(code, t)
		}
		if t == ret {
			t = 0
		}
		setJumpTarget(code, off, t)
	}
}

// verify checks the invariants Eval relies on: every opcode is valid and
// its operands in range, jumps go forward to instruction boundaries (so
// Eval terminates), the stack depth is the same on every path into an
// instruction, never negative, never above maxStack, and exactly 1 at the
// single RETURN that ends the code.
func (p *Program) verify() error {
	depthAt := make([]int, len(p.code)+1)
	isStart := make([]bool, len(p.code)+1)
	for off := 0; off < len(p.code); off += opcode(p.code[off]).width() {
		if op := opcode(p.code[off]); op == opInvalid || op >= numOpcodes {
			return fmt.Errorf("bad opcode %d at %d", op, off)
		}
		isStart[off] = true
	}
	for i := range depthAt {
		depthAt[i] = -1
	}
	depthAt[0] = 0
	merge := func(off, d int) error {
		switch {
		case off > len(p.code):
			return fmt.Errorf("jump to %d past the end", off)
		case depthAt[off] == -1:
			depthAt[off] = d
		case depthAt[off] != d:
			return fmt.Errorf("stack depth %d and %d meet at %d", depthAt[off], d, off)
		}
		return nil
	}
	off := 0
	for off < len(p.code) {
		op := opcode(p.code[off])
		if op == opInvalid || op >= numOpcodes {
			return fmt.Errorf("bad opcode %d at %d", op, off)
		}
		next := off + op.width()
		if next > len(p.code) {
			return fmt.Errorf("%v at %d truncated", op, off)
		}
		d := depthAt[off]
		if d == -1 {
			return fmt.Errorf("unreachable instruction at %d", off)
		}
		info := opInfos[op]
		if d < info.pop {
			return fmt.Errorf("%v at %d pops %d of %d values", op, off, info.pop, d)
		}
		switch info.arg {
		case argField:
			if p.code[off+1] >= byte(numFields) {
				return fmt.Errorf("bad field %d at %d", p.code[off+1], off)
			}
		case argConst:
			if int(p.code[off+1]) >= len(p.consts) {
				return fmt.Errorf("bad constant %d at %d", p.code[off+1], off)
			}
		case argConstJump:
			if int(p.code[off+1]) >= len(p.consts) {
				return fmt.Errorf("bad constant %d at %d", p.code[off+1], off)
			}
		case argFieldConst, argFieldConstJump:
			if !isFastField(fieldID(p.code[off+1])) || int(p.code[off+2]) >= len(p.consts) {
				return fmt.Errorf("bad operands at %d", off)
			}
		case argZone:
			if int(p.code[off+1]) >= len(p.zoneIDs) {
				return fmt.Errorf("bad zone %d at %d", p.code[off+1], off)
			}
		}
		if op.isJump() {
			t, jd := jumpTarget(p.code, off), d+info.jumpDelta
			switch {
			case t == 0 && jd != 1:
				return fmt.Errorf("jump-return at %d with depth %d", off, jd)
			case t == 0:
			case t <= off || t >= len(p.code) || !isStart[t]:
				return fmt.Errorf("jump at %d to %d is backward or not to an instruction", off, t)
			default:
				if err := merge(t, jd); err != nil {
					return err
				}
			}
			if jd > p.maxStack {
				return fmt.Errorf("stack depth %d above bound %d at %d", jd, p.maxStack, off)
			}
		}
		nd := d - info.pop + info.push
		if nd > p.maxStack {
			return fmt.Errorf("stack depth %d above bound %d at %d", nd, p.maxStack, off)
		}
		if op == opReturn {
			if d != 1 || next != len(p.code) {
				return fmt.Errorf("RETURN at %d with depth %d", off, d)
			}
			return nil
		}
		if err := merge(next, nd); err != nil {
			return err
		}
		off = next
	}
	return fmt.Errorf("code does not end with RETURN")
}

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
	maxStack  = 256 // see evalLarge
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
	zoneNames []string     // parallel to zoneIDs
	lines     []instrSpan  // one per instruction, in code order
	guard     guardResult  // see ZoneGuard
	result    typ          // tyBool for Compile; tests compile numbers too
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

// Zones returns the IDs of the zones the rule names, in first-use order.
// The caller may modify the returned slice.
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
	g := &codegen{src: src, p: &Program{src: src, result: e.typ}}
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
		op := opJumpIfFalseOrPop
		if e.op == tOrOr {
			op = opJumpIfTrueOrPop
		}
		g.emitExpr(x)
		j := g.emit(op, e.opPos, e.opEnd, 0, 0)
		g.emitExpr(y)
		// On the jump path the operand stays: one value either way.
		g.patch(j, len(g.p.code))
		return
	case tLT, tLE, tGT, tGE, tEQ, tNE:
		op := e.op
		if x.kind == nNum && y.kind != nNum {
			x, y, op = y, x, mirror(op)
		}
		if y.kind == nNum {
			k := g.constIndex(y.num)
			if x.kind == nField {
				g.emit(cmpOpcode(op)-opLT+opLTFC, e.pos, e.end, byte(x.field), k)
				return
			}
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

func (g *codegen) patch(jumpOff, target int) {
	g.p.code[jumpOff+1] = byte(target)
	g.p.code[jumpOff+2] = byte(target >> 8)
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

func jumpTarget(code []byte, off int) int {
	return int(code[off+1]) | int(code[off+2])<<8
}

// threadJumps retargets a conditional jump that lands on a jump of the
// same kind to that jump's target: the value that made the first jump
// makes the second one too. a && b && c then jumps straight to the end
// when a is false.
func threadJumps(code []byte) {
	for off := 0; off < len(code); off += opcode(code[off]).width() {
		op := opcode(code[off])
		if op != opJumpIfFalseOrPop && op != opJumpIfTrueOrPop {
			continue
		}
		t := jumpTarget(code, off)
		for opcode(code[t]) == op {
			t = jumpTarget(code, t)
		}
		code[off+1], code[off+2] = byte(t), byte(t>>8)
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
		case argFieldConst:
			if p.code[off+1] >= byte(numFields) || int(p.code[off+2]) >= len(p.consts) {
				return fmt.Errorf("bad operands at %d", off)
			}
		case argZone:
			if int(p.code[off+1]) >= len(p.zoneIDs) {
				return fmt.Errorf("bad zone %d at %d", p.code[off+1], off)
			}
		case argJump:
			t := jumpTarget(p.code, off)
			if t <= off || t >= len(p.code) || !isStart[t] {
				return fmt.Errorf("jump at %d to %d is backward or not to an instruction", off, t)
			}
			if err := merge(t, d); err != nil {
				return err
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

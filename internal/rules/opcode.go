package rules

// opcode is the first byte of an instruction. Operands follow it, little
// endian; see doc.go for the table.
type opcode uint8

const (
	opInvalid opcode = iota // never emitted: a zeroed code byte traps
	opLoadField
	opLoadConst
	opLoadTrue
	opLoadFalse
	opNeg
	opNot
	opAdd
	opSub
	opMul
	opDiv
	opMod
	opLT
	opLE
	opGT
	opGE
	opEQ
	opNE
	opLTC // TOS < const, replacing TOS
	opLEC
	opGTC
	opGEC
	opEQC
	opNEC
	opLTFC // field < const, pushed
	opLEFC
	opGTFC
	opGEFC
	opEQFC
	opNEFC
	opAndLTFC // field < const, or the && is false: push false and jump
	opAndLEFC
	opAndGTFC
	opAndGEFC
	opAndEQFC
	opAndNEFC
	opOrLTFC // field < const, and the || is true: push true and jump
	opOrLEFC
	opOrGTFC
	opOrGEFC
	opOrEQFC
	opOrNEFC
	opAndLTC // TOS < const, or the && is false: replace TOS with false and jump; else pop
	opAndLEC
	opAndGTC
	opAndGEC
	opAndEQC
	opAndNEC
	opOrLTC // TOS < const, and the || is true: replace TOS with true and jump; else pop
	opOrLEC
	opOrGTC
	opOrGEC
	opOrEQC
	opOrNEC
	opJumpIfFalseOrPop
	opJumpIfTrueOrPop
	opAbs
	opMin
	opMax
	opHour
	opDistance
	opInside
	opNear
	opReturn
	numOpcodes
)

// operand layouts
type operandKind uint8

const (
	argNone           operandKind = iota
	argField                      // u8 field
	argConst                      // u8 constant index
	argFieldConst                 // u8 field, u8 constant index
	argJump                       // u16 absolute target, 0 for "return"
	argZone                       // u8 zone index
	argFieldConstJump             // u8 field, u8 constant index, u16 target
	argConstJump                  // u8 constant index, u16 target
)

var operandWidth = [...]int{argNone: 0, argField: 1, argConst: 1, argFieldConst: 2, argJump: 2, argZone: 1, argFieldConstJump: 4, argConstJump: 3}

// opInfo describes an opcode. pop and push are its stack effect when it
// falls through to the next instruction; a jump's effect when it jumps is
// jumpDelta, and the value it leaves on top (false for AND_* and
// JUMP_IF_FALSE_OR_POP, true for OR_* and JUMP_IF_TRUE_OR_POP) is the
// result of the && or || it implements. A jump target of 0 (never a real
// target: jumps go forward) means "return that value".
type opInfo struct {
	name      string
	arg       operandKind
	pop, push int
	jumpDelta int
}

var opInfos = [numOpcodes]opInfo{
	opInvalid:          {"INVALID", argNone, 0, 0, 0},
	opLoadField:        {"LOAD_FIELD", argField, 0, 1, 0},
	opLoadConst:        {"LOAD_CONST", argConst, 0, 1, 0},
	opLoadTrue:         {"LOAD_TRUE", argNone, 0, 1, 0},
	opLoadFalse:        {"LOAD_FALSE", argNone, 0, 1, 0},
	opNeg:              {"NEG", argNone, 1, 1, 0},
	opNot:              {"NOT", argNone, 1, 1, 0},
	opAdd:              {"ADD", argNone, 2, 1, 0},
	opSub:              {"SUB", argNone, 2, 1, 0},
	opMul:              {"MUL", argNone, 2, 1, 0},
	opDiv:              {"DIV", argNone, 2, 1, 0},
	opMod:              {"MOD", argNone, 2, 1, 0},
	opLT:               {"LT", argNone, 2, 1, 0},
	opLE:               {"LE", argNone, 2, 1, 0},
	opGT:               {"GT", argNone, 2, 1, 0},
	opGE:               {"GE", argNone, 2, 1, 0},
	opEQ:               {"EQ", argNone, 2, 1, 0},
	opNE:               {"NE", argNone, 2, 1, 0},
	opLTC:              {"LT_CONST", argConst, 1, 1, 0},
	opLEC:              {"LE_CONST", argConst, 1, 1, 0},
	opGTC:              {"GT_CONST", argConst, 1, 1, 0},
	opGEC:              {"GE_CONST", argConst, 1, 1, 0},
	opEQC:              {"EQ_CONST", argConst, 1, 1, 0},
	opNEC:              {"NE_CONST", argConst, 1, 1, 0},
	opLTFC:             {"LT_FIELD_CONST", argFieldConst, 0, 1, 0},
	opLEFC:             {"LE_FIELD_CONST", argFieldConst, 0, 1, 0},
	opGTFC:             {"GT_FIELD_CONST", argFieldConst, 0, 1, 0},
	opGEFC:             {"GE_FIELD_CONST", argFieldConst, 0, 1, 0},
	opEQFC:             {"EQ_FIELD_CONST", argFieldConst, 0, 1, 0},
	opNEFC:             {"NE_FIELD_CONST", argFieldConst, 0, 1, 0},
	opAndLTFC:          {"AND_LT_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opAndLEFC:          {"AND_LE_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opAndGTFC:          {"AND_GT_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opAndGEFC:          {"AND_GE_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opAndEQFC:          {"AND_EQ_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opAndNEFC:          {"AND_NE_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opOrLTFC:           {"OR_LT_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opOrLEFC:           {"OR_LE_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opOrGTFC:           {"OR_GT_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opOrGEFC:           {"OR_GE_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opOrEQFC:           {"OR_EQ_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opOrNEFC:           {"OR_NE_FIELD_CONST", argFieldConstJump, 0, 0, 1},
	opAndLTC:           {"AND_LT_CONST", argConstJump, 1, 0, 0},
	opAndLEC:           {"AND_LE_CONST", argConstJump, 1, 0, 0},
	opAndGTC:           {"AND_GT_CONST", argConstJump, 1, 0, 0},
	opAndGEC:           {"AND_GE_CONST", argConstJump, 1, 0, 0},
	opAndEQC:           {"AND_EQ_CONST", argConstJump, 1, 0, 0},
	opAndNEC:           {"AND_NE_CONST", argConstJump, 1, 0, 0},
	opOrLTC:            {"OR_LT_CONST", argConstJump, 1, 0, 0},
	opOrLEC:            {"OR_LE_CONST", argConstJump, 1, 0, 0},
	opOrGTC:            {"OR_GT_CONST", argConstJump, 1, 0, 0},
	opOrGEC:            {"OR_GE_CONST", argConstJump, 1, 0, 0},
	opOrEQC:            {"OR_EQ_CONST", argConstJump, 1, 0, 0},
	opOrNEC:            {"OR_NE_CONST", argConstJump, 1, 0, 0},
	opJumpIfFalseOrPop: {"JUMP_IF_FALSE_OR_POP", argJump, 1, 0, 0},
	opJumpIfTrueOrPop:  {"JUMP_IF_TRUE_OR_POP", argJump, 1, 0, 0},
	opAbs:              {"ABS", argNone, 1, 1, 0},
	opMin:              {"MIN", argNone, 2, 1, 0},
	opMax:              {"MAX", argNone, 2, 1, 0},
	opHour:             {"HOUR", argNone, 0, 1, 0},
	opDistance:         {"DISTANCE_M", argNone, 2, 1, 0},
	opInside:           {"INSIDE", argZone, 0, 1, 0},
	opNear:             {"NEAR", argZone, 1, 1, 0},
	opReturn:           {"RETURN", argNone, 1, 0, 0},
}

func (op opcode) String() string {
	if op >= numOpcodes {
		return "INVALID"
	}
	return opInfos[op].name
}

// width is the instruction's size in bytes, opcode included.
func (op opcode) width() int { return 1 + operandWidth[opInfos[op].arg] }

// isJump reports whether op may jump; its target is the last two bytes.
func (op opcode) isJump() bool {
	a := opInfos[op].arg
	return a == argJump || a == argFieldConstJump || a == argConstJump
}

// jumpValue is the bool a jump leaves on the stack when it jumps.
func (op opcode) jumpValue() bool {
	switch {
	case op >= opOrLTFC && op <= opOrNEFC, op >= opOrLTC && op <= opOrNEC, op == opJumpIfTrueOrPop:
		return true
	}
	return false
}

// The three compare families share an order, so that a generic compare
// maps to its fused forms by offset.
func cmpOpcode(k tokKind) opcode {
	switch k {
	case tLT:
		return opLT
	case tLE:
		return opLE
	case tGT:
		return opGT
	case tGE:
		return opGE
	case tEQ:
		return opEQ
	case tNE:
		return opNE
	}
	return opInvalid
}

// mirror returns the comparison with its operands swapped: 90 < speed is
// speed > 90. Exact for NaN too, since both sides are false.
func mirror(k tokKind) tokKind {
	switch k {
	case tLT:
		return tGT
	case tLE:
		return tGE
	case tGT:
		return tLT
	case tGE:
		return tLE
	}
	return k
}

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
	argNone       operandKind = iota
	argField                  // u8 field
	argConst                  // u8 constant index
	argFieldConst             // u8 field, u8 constant index
	argJump                   // u16 absolute target
	argZone                   // u8 zone index
)

var operandWidth = [...]int{argNone: 0, argField: 1, argConst: 1, argFieldConst: 2, argJump: 2, argZone: 1}

type opInfo struct {
	name string
	arg  operandKind
	pop  int // values popped
	push int // values pushed (JUMP_IF_*_OR_POP: see stackEffect)
}

var opInfos = [numOpcodes]opInfo{
	opInvalid:          {"INVALID", argNone, 0, 0},
	opLoadField:        {"LOAD_FIELD", argField, 0, 1},
	opLoadConst:        {"LOAD_CONST", argConst, 0, 1},
	opLoadTrue:         {"LOAD_TRUE", argNone, 0, 1},
	opLoadFalse:        {"LOAD_FALSE", argNone, 0, 1},
	opNeg:              {"NEG", argNone, 1, 1},
	opNot:              {"NOT", argNone, 1, 1},
	opAdd:              {"ADD", argNone, 2, 1},
	opSub:              {"SUB", argNone, 2, 1},
	opMul:              {"MUL", argNone, 2, 1},
	opDiv:              {"DIV", argNone, 2, 1},
	opMod:              {"MOD", argNone, 2, 1},
	opLT:               {"LT", argNone, 2, 1},
	opLE:               {"LE", argNone, 2, 1},
	opGT:               {"GT", argNone, 2, 1},
	opGE:               {"GE", argNone, 2, 1},
	opEQ:               {"EQ", argNone, 2, 1},
	opNE:               {"NE", argNone, 2, 1},
	opLTC:              {"LT_CONST", argConst, 1, 1},
	opLEC:              {"LE_CONST", argConst, 1, 1},
	opGTC:              {"GT_CONST", argConst, 1, 1},
	opGEC:              {"GE_CONST", argConst, 1, 1},
	opEQC:              {"EQ_CONST", argConst, 1, 1},
	opNEC:              {"NE_CONST", argConst, 1, 1},
	opLTFC:             {"LT_FIELD_CONST", argFieldConst, 0, 1},
	opLEFC:             {"LE_FIELD_CONST", argFieldConst, 0, 1},
	opGTFC:             {"GT_FIELD_CONST", argFieldConst, 0, 1},
	opGEFC:             {"GE_FIELD_CONST", argFieldConst, 0, 1},
	opEQFC:             {"EQ_FIELD_CONST", argFieldConst, 0, 1},
	opNEFC:             {"NE_FIELD_CONST", argFieldConst, 0, 1},
	opJumpIfFalseOrPop: {"JUMP_IF_FALSE_OR_POP", argJump, 1, 0},
	opJumpIfTrueOrPop:  {"JUMP_IF_TRUE_OR_POP", argJump, 1, 0},
	opAbs:              {"ABS", argNone, 1, 1},
	opMin:              {"MIN", argNone, 2, 1},
	opMax:              {"MAX", argNone, 2, 1},
	opHour:             {"HOUR", argNone, 0, 1},
	opDistance:         {"DISTANCE_M", argNone, 2, 1},
	opInside:           {"INSIDE", argZone, 0, 1},
	opNear:             {"NEAR", argZone, 1, 1},
	opReturn:           {"RETURN", argNone, 1, 0},
}

func (op opcode) String() string {
	if op >= numOpcodes {
		return "INVALID"
	}
	return opInfos[op].name
}

// width is the instruction's size in bytes, opcode included.
func (op opcode) width() int { return 1 + operandWidth[opInfos[op].arg] }

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

package rules

// nodeKind is the kind of an AST node.
type nodeKind uint8

const (
	nNum    nodeKind = iota // number literal or folded constant: num
	nBool                   // true/false or folded constant: num is 1 or 0
	nStr                    // string literal: str
	nField                  // field reference: str is the name, field set by check
	nUnary                  // op args[0]
	nBinary                 // args[0] op args[1]
	nCall                   // str(args...): fn set by check, zone set for zone functions
)

// typ is the static type of an expression.
type typ uint8

const (
	tyInvalid typ = iota
	tyNumber
	tyBool
	tyString
)

var typNames = [...]string{tyInvalid: "invalid", tyNumber: "number", tyBool: "bool", tyString: "string"}

func (t typ) String() string { return typNames[t] }

// expr is an AST node. One struct for all kinds keeps the parser, the
// checker, the folder and the code generator to simple switches; rules
// are short and compiled once, so the wasted fields do not matter.
type expr struct {
	kind         nodeKind
	op           tokKind // nUnary, nBinary
	pos, end     int     // byte span of the whole expression in the source
	opPos, opEnd int     // byte span of the operator (nUnary, nBinary) or name (nCall)
	num          float64 // nNum value; nBool 1 or 0
	str          string  // nStr value; nField, nCall name
	args         []*expr // operands or call arguments

	// Set by check.
	typ   typ
	field fieldID   // nField
	fn    builtinID // nCall
	zone  int       // nCall of a zone function: the resolved zone ID
}

func (e *expr) isConst() bool { return e.kind == nNum || e.kind == nBool }

func numNode(pos, end int, v float64) *expr {
	return &expr{kind: nNum, pos: pos, end: end, num: v, typ: tyNumber}
}

func boolNode(pos, end int, v bool) *expr {
	return &expr{kind: nBool, pos: pos, end: end, num: b2f(v), typ: tyBool}
}

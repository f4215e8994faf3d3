package rules

import "fmt"

// maxNesting bounds the parser's recursion (parentheses, unary operators,
// call arguments), which in turn bounds the VM stack a rule can need.
const maxNesting = 64

type parser struct {
	src   string
	toks  []token
	i     int
	depth int
}

// parse turns src into an unchecked AST.
func parse(src string) (*expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	if len(toks) == 1 {
		return nil, newError(src, 0, len(src), "empty rule")
	}
	p := &parser{src: src, toks: toks}
	e, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "unexpected %s after expression", describe(src, t))
	}
	return e, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errAt(t token, format string, args ...any) error {
	return newError(p.src, t.pos, t.end, format, args...)
}

// describe names a token for an error message: its source text quoted,
// or "end of rule".
func describe(src string, t token) string {
	if t.kind == tEOF {
		return "end of rule"
	}
	return fmt.Sprintf("%q", src[t.pos:t.end])
}

// binary precedence, Go's: || < && < comparisons < + - < * / %.
func precedence(k tokKind) int {
	switch k {
	case tOrOr:
		return 1
	case tAndAnd:
		return 2
	case tEQ, tNE, tLT, tLE, tGT, tGE:
		return 3
	case tPlus, tMinus:
		return 4
	case tStar, tSlash, tPercent:
		return 5
	}
	return 0
}

func (p *parser) enter(t token) error {
	p.depth++
	if p.depth > maxNesting {
		return p.errAt(t, "expression nested too deeply (max %d levels)", maxNesting)
	}
	return nil
}

// An operand is an expression with its outer span, which includes any
// parentheses around it, so that an enclosing node's span covers them.
type operand struct {
	e        *expr
	pos, end int
}

func (p *parser) parseExpr() (*expr, error) {
	o, err := p.parseOperandExpr()
	return o.e, err
}

func (p *parser) parseOperandExpr() (operand, error) {
	if err := p.enter(p.peek()); err != nil {
		return operand{}, err
	}
	o, err := p.parseBinary(1)
	p.depth--
	return o, err
}

// parseBinary parses a left-associative chain of operators whose
// precedence is at least prec (precedence climbing).
func (p *parser) parseBinary(prec int) (operand, error) {
	x, err := p.parseUnary()
	if err != nil {
		return operand{}, err
	}
	for {
		t := p.peek()
		tp := precedence(t.kind)
		if tp < prec || tp == 0 {
			return x, nil
		}
		p.next()
		y, err := p.parseBinary(tp + 1)
		if err != nil {
			return operand{}, err
		}
		e := &expr{kind: nBinary, op: t.kind, pos: x.pos, end: y.end, opPos: t.pos, opEnd: t.end, args: []*expr{x.e, y.e}}
		x = operand{e, e.pos, e.end}
	}
}

func (p *parser) parseUnary() (operand, error) {
	t := p.peek()
	if t.kind != tMinus && t.kind != tNot {
		return p.parsePrimary()
	}
	p.next()
	if err := p.enter(t); err != nil {
		return operand{}, err
	}
	x, err := p.parseUnary()
	p.depth--
	if err != nil {
		return operand{}, err
	}
	e := &expr{kind: nUnary, op: t.kind, pos: t.pos, end: x.end, opPos: t.pos, opEnd: t.end, args: []*expr{x.e}}
	return operand{e, e.pos, e.end}, nil
}

func (p *parser) parsePrimary() (operand, error) {
	t := p.peek()
	if t.kind != tLParen {
		e, err := p.parsePrimaryExpr()
		if err != nil {
			return operand{}, err
		}
		return operand{e, e.pos, e.end}, nil
	}
	p.next()
	x, err := p.parseOperandExpr()
	if err != nil {
		return operand{}, err
	}
	c := p.next()
	if c.kind != tRParen {
		return operand{}, p.errAt(c, `expected ")", found %s`, describe(p.src, c))
	}
	return operand{x.e, t.pos, c.end}, nil
}

func (p *parser) parsePrimaryExpr() (*expr, error) {
	t := p.next()
	switch t.kind {
	case tNumber:
		return &expr{kind: nNum, pos: t.pos, end: t.end, num: t.num}, nil
	case tString:
		return &expr{kind: nStr, pos: t.pos, end: t.end, str: t.str}, nil
	case tIdent:
		switch t.str {
		case "true", "false":
			return &expr{kind: nBool, pos: t.pos, end: t.end, num: b2f(t.str == "true")}, nil
		}
		name, end := t.str, t.end
		if p.peek().kind == tDot {
			p.next()
			f := p.next()
			if f.kind != tIdent {
				return nil, p.errAt(f, "expected field name after %q, found %s", name+".", describe(p.src, f))
			}
			name, end = t.str+"."+f.str, f.end
		}
		if p.peek().kind != tLParen {
			return &expr{kind: nField, pos: t.pos, end: end, str: name}, nil
		}
		return p.parseCall(t, name, end)
	}
	return nil, p.errAt(t, "expected expression, found %s", describe(p.src, t))
}

func (p *parser) parseCall(nameTok token, name string, nameEnd int) (*expr, error) {
	lp := p.next() // (
	if err := p.enter(lp); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	call := &expr{kind: nCall, pos: nameTok.pos, opPos: nameTok.pos, opEnd: nameEnd, str: name}
	if p.peek().kind == tRParen {
		call.end = p.next().end
		return call, nil
	}
	for {
		a, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		call.args = append(call.args, a)
		switch t := p.next(); t.kind {
		case tComma:
			continue
		case tRParen:
			call.end = t.end
			return call, nil
		default:
			return nil, p.errAt(t, `expected "," or ")" in call to %s, found %s`, name, describe(p.src, t))
		}
	}
}

package rules

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// tokKind is the kind of a lexical token.
type tokKind uint8

const (
	tEOF tokKind = iota
	tNumber
	tString
	tIdent
	tLParen
	tRParen
	tComma
	tDot
	tPlus
	tMinus
	tStar
	tSlash
	tPercent
	tLT
	tLE
	tGT
	tGE
	tEQ
	tNE
	tAndAnd
	tOrOr
	tNot
)

var tokNames = [...]string{
	tEOF:     "end of rule",
	tNumber:  "number",
	tString:  "string",
	tIdent:   "identifier",
	tLParen:  "(",
	tRParen:  ")",
	tComma:   ",",
	tDot:     ".",
	tPlus:    "+",
	tMinus:   "-",
	tStar:    "*",
	tSlash:   "/",
	tPercent: "%",
	tLT:      "<",
	tLE:      "<=",
	tGT:      ">",
	tGE:      ">=",
	tEQ:      "==",
	tNE:      "!=",
	tAndAnd:  "&&",
	tOrOr:    "||",
	tNot:     "!",
}

func (k tokKind) String() string { return tokNames[k] }

// token is one lexeme: its kind, its byte span in the source and, for
// literals and identifiers, its value.
type token struct {
	kind     tokKind
	pos, end int
	num      float64 // tNumber
	str      string  // tString: the unquoted value; tIdent: the name
}

// maxSourceLen bounds a rule's size so that offsets fit the VM's 16-bit
// jump operands with room to spare.
const maxSourceLen = 4096

// lex splits src into tokens, ending with tEOF.
func lex(src string) ([]token, error) {
	if len(src) > maxSourceLen {
		return nil, newError(src, maxSourceLen, len(src), "rule too long (%d bytes, max %d)", len(src), maxSourceLen)
	}
	var toks []token
	i := 0
	for {
		for i < len(src) && isSpace(src[i]) {
			i++
		}
		if i == len(src) {
			return append(toks, token{kind: tEOF, pos: i, end: i}), nil
		}
		start := i
		c := src[i]
		switch {
		case isLetter(c):
			for i < len(src) && (isLetter(src[i]) || isDigit(src[i])) {
				i++
			}
			toks = append(toks, token{kind: tIdent, pos: start, end: i, str: src[start:i]})
			continue
		case isDigit(c) || c == '.' && i+1 < len(src) && isDigit(src[i+1]):
			t, err := lexNumber(src, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, t)
			i = t.end
			continue
		case c == '"':
			t, err := lexString(src, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, t)
			i = t.end
			continue
		}
		kind, n := tEOF, 1
		two := ""
		if i+1 < len(src) {
			two = src[i : i+2]
		}
		switch {
		case two == "<=":
			kind, n = tLE, 2
		case two == ">=":
			kind, n = tGE, 2
		case two == "==":
			kind, n = tEQ, 2
		case two == "!=":
			kind, n = tNE, 2
		case two == "&&":
			kind, n = tAndAnd, 2
		case two == "||":
			kind, n = tOrOr, 2
		case c == '(':
			kind = tLParen
		case c == ')':
			kind = tRParen
		case c == ',':
			kind = tComma
		case c == '.':
			kind = tDot
		case c == '+':
			kind = tPlus
		case c == '-':
			kind = tMinus
		case c == '*':
			kind = tStar
		case c == '/':
			kind = tSlash
		case c == '%':
			kind = tPercent
		case c == '<':
			kind = tLT
		case c == '>':
			kind = tGT
		case c == '!':
			kind = tNot
		default:
			return nil, badChar(src, i)
		}
		toks = append(toks, token{kind: kind, pos: start, end: start + n})
		i += n
	}
}

func badChar(src string, i int) error {
	c := src[i]
	switch c {
	case '&':
		return newError(src, i, i+1, `unexpected character '&' (did you mean "&&"?)`)
	case '|':
		return newError(src, i, i+1, `unexpected character '|' (did you mean "||"?)`)
	case '=':
		return newError(src, i, i+1, `unexpected character '=' (did you mean "=="?)`)
	case '\'':
		return newError(src, i, i+1, `unexpected character '\'' (strings use double quotes)`)
	}
	r, size := utf8.DecodeRuneInString(src[i:])
	switch {
	case r == utf8.RuneError && size == 1:
		return newError(src, i, i+1, "invalid UTF-8 byte 0x%02x", c)
	case c < utf8.RuneSelf && strconv.IsPrint(r):
		return newError(src, i, i+1, "unexpected character %q", r)
	default:
		return newError(src, i, i+size, "unexpected character %#U", r)
	}
}

func lexNumber(src string, start int) (token, error) {
	i := start
	for i < len(src) && isDigit(src[i]) {
		i++
	}
	if i < len(src) && src[i] == '.' {
		i++
		for i < len(src) && isDigit(src[i]) {
			i++
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		j := i + 1
		if j < len(src) && (src[j] == '+' || src[j] == '-') {
			j++
		}
		if j < len(src) && isDigit(src[j]) {
			for j < len(src) && isDigit(src[j]) {
				j++
			}
			i = j
		}
	}
	// A number running into letters ("90kmh", "1e") or a second dot
	// ("1.2.3") is one malformed token, not two.
	end := i
	for end < len(src) && (isLetter(src[end]) || isDigit(src[end]) || src[end] == '.') {
		end++
	}
	if end > i {
		return token{}, newError(src, start, end, "malformed number %q", src[start:end])
	}
	v, err := strconv.ParseFloat(src[start:i], 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return token{}, newError(src, start, i, "number %s out of range", src[start:i])
		}
		return token{}, newError(src, start, i, "malformed number %q", src[start:i])
	}
	return token{kind: tNumber, pos: start, end: i, num: v}, nil
}

func lexString(src string, start int) (token, error) {
	i := start + 1
	for i < len(src) {
		switch src[i] {
		case '"':
			s, err := strconv.Unquote(src[start : i+1])
			if err != nil {
				return token{}, newError(src, start, i+1, "invalid string literal: %v", unquoteReason(err))
			}
			return token{kind: tString, pos: start, end: i + 1, str: s}, nil
		case '\\':
			i += 2
		case '\n':
			return token{}, newError(src, start, i, "string literal not terminated before end of line")
		default:
			i++
		}
	}
	return token{}, newError(src, start, len(src), "string literal not terminated")
}

func unquoteReason(err error) string {
	if errors.Is(err, strconv.ErrSyntax) {
		return "bad escape sequence"
	}
	return fmt.Sprint(err)
}

func isSpace(c byte) bool  { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

package rules

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// sexpr prints a tree fully parenthesised, Lisp style.
func sexpr(e *expr) string {
	switch e.kind {
	case nNum:
		return formatNum(e.num)
	case nBool:
		return fmt.Sprint(e.num != 0)
	case nStr:
		return fmt.Sprintf("%q", e.str)
	case nField:
		return e.str
	case nUnary:
		return fmt.Sprintf("(%s %s)", e.op, sexpr(e.args[0]))
	case nBinary:
		return fmt.Sprintf("(%s %s %s)", e.op, sexpr(e.args[0]), sexpr(e.args[1]))
	case nCall:
		parts := []string{e.str}
		for _, a := range e.args {
			parts = append(parts, sexpr(a))
		}
		return "(" + strings.Join(parts, " ") + ")"
	}
	return "?"
}

func TestParse(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"speed", "speed"},
		{"prev.speed", "prev.speed"},
		{"prev . speed", "prev.speed"},
		{"90", "90"},
		{"true", "true"},
		{`"x"`, `"x"`},
		{"-speed", "(- speed)"},
		{"!!inside(\"a\")", `(! (! (inside "a")))`},
		{"- -1", "(- (- 1))"},
		{"1 + 2 * 3", "(+ 1 (* 2 3))"},
		{"(1 + 2) * 3", "(* (+ 1 2) 3)"},
		{"1 - 2 - 3", "(- (- 1 2) 3)"},
		{"8 / 4 / 2 % 3", "(% (/ (/ 8 4) 2) 3)"},
		{"-a * b", "(* (- a) b)"},
		{"a + b < c * d", "(< (+ a b) (* c d))"},
		{"a < b == c < d", "(< (== (< a b) c) d)"}, // one precedence level, as in Go
		{"a || b && c", "(|| a (&& b c))"},
		{"a && b || c && d", "(|| (&& a b) (&& c d))"},
		{"a && b && c", "(&& (&& a b) c)"},
		{"!a && b", "(&& (! a) b)"},
		{"speed > 90 && heading < 180 && dt < 60", "(&& (&& (> speed 90) (< heading 180)) (< dt 60))"},
		{"hour()", "(hour)"},
		{"abs(x)", "(abs x)"},
		{`near("yard", 10 * 100)`, `(near "yard" (* 10 100))`},
		{"min(a, max(b, c))", "(min a (max b c))"},
		{"f(1, 2, 3)", "(f 1 2 3)"},
		{"((((speed))))", "speed"},
		{"speed\n>\t90", "(> speed 90)"},
	}
	for _, tt := range tests {
		e, err := parse(tt.src)
		if err != nil {
			t.Errorf("parse(%q): %v", tt.src, err)
			continue
		}
		if got := sexpr(e); got != tt.want {
			t.Errorf("parse(%q) = %s, want %s", tt.src, got, tt.want)
		}
	}
}

// Spans cover parentheses around operands, so an enclosing node's source
// text is balanced.
func TestParseSpans(t *testing.T) {
	tests := []struct {
		src  string
		path []int // child indexes from the root
		want string
	}{
		{"(speed + 1) * 2 > 3", nil, "(speed + 1) * 2 > 3"},
		{"(speed + 1) * 2 > 3", []int{0}, "(speed + 1) * 2"},
		{"(speed + 1) * 2 > 3", []int{0, 0}, "speed + 1"},
		{"-(speed)", nil, "-(speed)"},
		{"-(speed)", []int{0}, "speed"},
		{`near( "yard" , 5 )`, nil, `near( "yard" , 5 )`},
		{`near( "yard" , 5 )`, []int{1}, "5"},
		{"prev.speed - speed", []int{0}, "prev.speed"},
	}
	for _, tt := range tests {
		e, err := parse(tt.src)
		if err != nil {
			t.Fatalf("parse(%q): %v", tt.src, err)
		}
		for _, i := range tt.path {
			e = e.args[i]
		}
		if got := tt.src[e.pos:e.end]; got != tt.want {
			t.Errorf("parse(%q) span at %v = %q, want %q", tt.src, tt.path, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"", "1:1: empty rule"},
		{"  \n ", "1:1: empty rule"},
		{"speed >", "1:8: expected expression, found end of rule"},
		{"speed > > 3", `1:9: expected expression, found ">"`},
		{"(speed > 3", `1:11: expected ")", found end of rule`},
		{"(speed > 3 4", `1:12: expected ")", found "4"`},
		{"speed > 3)", `1:10: unexpected ")" after expression`},
		{"speed 3", `1:7: unexpected "3" after expression`},
		{"prev.", `1:6: expected field name after "prev.", found end of rule`},
		{"prev.3", `1:5: unexpected ".3" after expression`},
		{"prev.(x)", `1:6: expected field name after "prev.", found "("`},
		{"min(1 2)", `1:7: expected "," or ")" in call to min, found "2"`},
		{"min(1,", `1:7: expected expression, found end of rule`},
		{"min(1,)", `1:7: expected expression, found ")"`},
		{"abs(", `1:5: expected expression, found end of rule`},
		{"*", `1:1: expected expression, found "*"`},
		{",", `1:1: expected expression, found ","`},
		{strings.Repeat("(", 70) + "1" + strings.Repeat(")", 70), "1:65: expression nested too deeply (max 64 levels)"},
		{strings.Repeat("-", 70) + "1", "1:64: expression nested too deeply (max 64 levels)"},
		{strings.Repeat("abs(", 40) + "1" + strings.Repeat(")", 40), "1:129: expression nested too deeply (max 64 levels)"},
	}
	for _, tt := range tests {
		_, err := parse(tt.src)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("parse(%q) error = %v, want *Error", tt.src, err)
			continue
		}
		if got := e.Error(); got != tt.want {
			t.Errorf("parse(%q) error\n got %s\nwant %s", tt.src, got, tt.want)
		}
	}
}

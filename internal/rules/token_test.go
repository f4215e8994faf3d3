package rules

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// tokString renders tokens as "kind" for operators and "kind(value)" for
// literals and identifiers, with their spans.
func tokString(toks []token) string {
	var parts []string
	for _, t := range toks {
		s := t.kind.String()
		switch t.kind {
		case tNumber:
			s = fmt.Sprintf("num(%s)", formatNum(t.num))
		case tString:
			s = fmt.Sprintf("str(%q)", t.str)
		case tIdent:
			s = fmt.Sprintf("id(%s)", t.str)
		case tEOF:
			s = "EOF"
		}
		parts = append(parts, fmt.Sprintf("%s@%d-%d", s, t.pos, t.end))
	}
	return strings.Join(parts, " ")
}

func TestLex(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"", "EOF@0-0"},
		{"   \t\n", "EOF@5-5"},
		{"speed", "id(speed)@0-5 EOF@5-5"},
		{"moved_m _x9", "id(moved_m)@0-7 id(_x9)@8-11 EOF@11-11"},
		{"prev.speed", "id(prev)@0-4 .@4-5 id(speed)@5-10 EOF@10-10"},
		{"90", "num(90)@0-2 EOF@2-2"},
		{"0.5 .25 1. 1e3 2.5E-2 7e+1", "num(0.5)@0-3 num(0.25)@4-7 num(1)@8-10 num(1000)@11-14 num(0.025)@15-21 num(70)@22-26 EOF@26-26"},
		{`"depot-7"`, `str("depot-7")@0-9 EOF@9-9`},
		{`"a\"b\\c" "zürich"`, `str("a\"b\\c")@0-9 str("zürich")@10-19 EOF@19-19`},
		{"+ - * / % ( ) ,", "+@0-1 -@2-3 *@4-5 /@6-7 %@8-9 (@10-11 )@12-13 ,@14-15 EOF@15-15"},
		{"< <= > >= == != && || !", "<@0-1 <=@2-4 >@5-6 >=@7-9 ==@10-12 !=@13-15 &&@16-18 ||@19-21 !@22-23 EOF@23-23"},
		{"a<=b", "id(a)@0-1 <=@1-3 id(b)@3-4 EOF@4-4"},
		{"!!x", "!@0-1 !@1-2 id(x)@2-3 EOF@3-3"},
		{"--1", "-@0-1 -@1-2 num(1)@2-3 EOF@3-3"},
		{"1-1", "num(1)@0-1 -@1-2 num(1)@2-3 EOF@3-3"},
		{"speed>90&&dt<3", "id(speed)@0-5 >@5-6 num(90)@6-8 &&@8-10 id(dt)@10-12 <@12-13 num(3)@13-14 EOF@14-14"},
		{"true false", "id(true)@0-4 id(false)@5-10 EOF@10-10"},
	}
	for _, tt := range tests {
		toks, err := lex(tt.src)
		if err != nil {
			t.Errorf("lex(%q): %v", tt.src, err)
			continue
		}
		if got := tokString(toks); got != tt.want {
			t.Errorf("lex(%q)\n got %s\nwant %s", tt.src, got, tt.want)
		}
	}
}

func TestLexNumberValues(t *testing.T) {
	tests := []struct {
		src  string
		want float64
	}{
		{"0", 0}, {"007", 7}, {"1.5", 1.5}, {"1e308", 1e308}, {"4.9e-324", 5e-324},
		{"12345678901234567890", 12345678901234567890}, {".5e1", 5},
	}
	for _, tt := range tests {
		toks, err := lex(tt.src)
		if err != nil || len(toks) != 2 || toks[0].kind != tNumber {
			t.Fatalf("lex(%q) = %v, %v", tt.src, tokString(toks), err)
		}
		if toks[0].num != tt.want {
			t.Errorf("lex(%q) = %v, want %v", tt.src, toks[0].num, tt.want)
		}
	}
}

func TestLexErrors(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"speed @ 3", `1:7: unexpected character '@'`},
		{"a & b", `1:3: unexpected character '&' (did you mean "&&"?)`},
		{"a | b", `1:3: unexpected character '|' (did you mean "||"?)`},
		{"a = b", `1:3: unexpected character '=' (did you mean "=="?)`},
		{"inside('x')", `1:8: unexpected character '\'' (strings use double quotes)`},
		{"90kmh", `1:1: malformed number "90kmh"`},
		{"1e", `1:1: malformed number "1e"`},
		{"1.2.3", `1:1: malformed number "1.2.3"`},
		{"1e999", `1:1: number 1e999 out of range`},
		{`inside("depot`, `1:8: string literal not terminated`},
		{"inside(\"a\nb\")", `1:8: string literal not terminated before end of line`},
		{`inside("\q")`, `1:8: invalid string literal: bad escape sequence`},
		{"speed > 1\n  ∂", `2:3: unexpected character U+2202 '∂'`},
		{"speed > 1 \u00a0", `1:11: unexpected character U+00A0`},
		{"speed\xff", `1:6: invalid UTF-8 byte 0xff`},
		{"x\x00", `1:2: unexpected character U+0000`},
		{strings.Repeat(" ", maxSourceLen) + "x", fmt.Sprintf("1:%d: rule too long (%d bytes, max %d)", maxSourceLen+1, maxSourceLen+1, maxSourceLen)},
	}
	for _, tt := range tests {
		_, err := lex(tt.src)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("lex(%q) error = %v, want *Error", tt.src, err)
			continue
		}
		if got := e.Error(); got != tt.want {
			t.Errorf("lex(%q) error\n got %s\nwant %s", tt.src, got, tt.want)
		}
	}
}

func TestErrorDetail(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"speed > sped", "1:9: unknown field \"sped\" (did you mean \"speed\"?)\n  speed > sped\n          ^^^^"},
		// The caret follows a tab with a tab, and the line is the one the
		// error is on.
		{"speed > 1 &&\n\tdt < 3 && moved > 2", "2:12: unknown field \"moved\" (did you mean \"moved_m\"?)\n  \tdt < 3 && moved > 2\n  \t          ^^^^^"},
		// A span running past the end of its line is cut there.
		{"inside(\"x\nspeed", "1:8: string literal not terminated before end of line\n  inside(\"x\n         ^^"},
		// An error at the end of the rule gets one caret past the text.
		{"speed >", "1:8: expected expression, found end of rule\n  speed >\n         ^"},
		// Multi-byte characters count one column each for the caret.
		{`inside("zürih")`, "1:8: unknown zone \"zürih\" (did you mean \"zürich\"?)\n  inside(\"zürih\")\n         ^^^^^^^"},
		{"\r\nspeed", "2:1: rule must be a bool expression, got number\n  speed\n  ^^^^^"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.src, testZones())
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Compile(%q) error = %v, want *Error", tt.src, err)
		}
		if got := e.Detail(); got != tt.want {
			t.Errorf("Compile(%q) Detail\n got %q\nwant %q", tt.src, got, tt.want)
		}
		if got := fmt.Sprintf("%+v", err); got != tt.want {
			t.Errorf("%%+v = %q, want Detail", got)
		}
		if got := fmt.Sprintf("%v|%s", err, err); got != e.Error()+"|"+e.Error() {
			t.Errorf("%%v|%%s = %q", got)
		}
		if got, want := fmt.Sprintf("%q", err), fmt.Sprintf("%q", e.Error()); got != want {
			t.Errorf("%%q = %s, want %s", got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "ab", 2}, {"sped", "speed", 1}, {"speed", "speed", 0},
		{"kitten", "sitting", 3}, {"heding", "heading", 1}, {"dt", "ts", 2},
		{strings.Repeat("a", 65), "a", math.MaxInt},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

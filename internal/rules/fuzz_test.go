package rules

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// FuzzCompile: no source makes Compile panic; every error is an *Error
// whose span lies within the source and whose line:col matches its
// offset; every program verifies, disassembles, and evaluates like the
// AST interpreter with a sound zone guard and sound conditions (exact
// ones equivalent).
//
//	go test ./internal/rules -run '^$' -fuzz FuzzCompile -fuzztime 20s
func FuzzCompile(f *testing.F) {
	for _, g := range goldenRules {
		f.Add(g.src)
	}
	for _, s := range []string{
		"", "(", ")", "speed >", "speed > sped", `inside("depot-8")`, `near("yard", -1)`,
		"prev.", "1e999", `"unterminated`, "a & b", "\xff", "abs(1, 2)", "!speed", "speed == true",
		"((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1",
		"min(max(1, 2), abs(-3)) % 0 != 1 / 0", "hour() >= 22 || hour() < 6", "speed\n>\n\t90",
	} {
		f.Add(s)
	}
	z := testZones()
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Compile(src, z)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Compile(%q) error %v is not an *Error", src, err)
			}
			if e.Offset < 0 || e.Offset > e.End || e.End > len(src) {
				t.Fatalf("Compile(%q): span [%d,%d) outside the source", src, e.Offset, e.End)
			}
			line := 1 + strings.Count(src[:e.Offset], "\n")
			col := e.Offset - strings.LastIndexByte(src[:e.Offset], '\n')
			if e.Line != line || e.Col != col {
				t.Fatalf("Compile(%q): %d:%d, want %d:%d for offset %d", src, e.Line, e.Col, line, col, e.Offset)
			}
			if !strings.HasPrefix(e.Detail(), e.Error()+"\n") {
				t.Fatalf("Detail does not start with Error: %q", e.Detail())
			}
			return
		}
		if err := p.verify(); err != nil {
			t.Fatalf("verify(%q): %v", src, err)
		}
		_ = p.Disasm()
		ast, err := parseAndCheck(src, z)
		if err != nil {
			t.Fatalf("Compile accepted %q but parseAndCheck: %v", src, err)
		}
		r := rand.New(rand.NewPCG(uint64(len(src)), 4))
		zone, radius, guarded := p.ZoneGuard()
		cnf, exact := p.Conditions()
		for i := 0; i < 8; i++ {
			in := randInput(r, z)
			got := p.Eval(&in, z)
			if want := evalAST(ast, &in, z) != 0; got != want {
				t.Fatalf("Eval(%q) = %v, AST %v on %+v\n%s", src, got, want, in, p.Disasm())
			}
			if got && guarded && !z.Inside(zone, in.Lat, in.Lon) && !(z.DistanceM(zone, in.Lat, in.Lon) <= radius) {
				t.Fatalf("%q true outside its guard (zone %d, %v m)", src, zone, radius)
			}
			holds := true
			for _, c := range cnf {
				one := false
				for _, a := range c {
					one = one || a.Holds(a.Term.Eval(&in))
				}
				holds = holds && one
			}
			if got && !holds || exact && got != holds {
				t.Fatalf("%q is %v, its conditions %q (exact %v) give %v on %+v", src, got, cnfString(cnf, exact), exact, holds, in)
			}
		}
	})
}

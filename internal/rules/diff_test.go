package rules

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestDifferential compiles random well-typed expressions and checks that
// the VM (after folding, fusing and jump threading) computes exactly what
// the AST interpreter computes on the unfolded tree, NaN for NaN.
func TestDifferential(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 2))
	z := testZones()
	g := &exprGen{r: r, zones: z.ZoneNames()}
	exprs, inputs := 1500, 40
	if testing.Short() {
		exprs = 300
	}
	var checked, bools int
	for i := 0; i < exprs; i++ {
		var src string
		want := tyInvalid
		if r.IntN(3) == 0 {
			src = g.num(r.IntN(7))
		} else {
			src = g.boolean(r.IntN(7))
			want = tyBool
		}
		p, err := compile(src, z, want)
		if err != nil {
			if strings.Contains(err.Error(), "radius") {
				continue // a generated non-constant radius folded to a bad constant
			}
			t.Fatalf("seed %d: compile(%q): %+v", seed, src, err)
		}
		ast, err := parseAndCheck(src, z)
		if err != nil {
			t.Fatalf("seed %d: parseAndCheck(%q): %v", seed, src, err)
		}
		for j := 0; j < inputs; j++ {
			in := randInput(r, z)
			got, wantV := p.evalNumber(&in, z), evalAST(ast, &in, z)
			if !sameNum(got, wantV) {
				t.Fatalf("seed %d: %s\ninput %+v\nVM %v, AST %v\n%s", seed, src, in, got, wantV, p.Disasm())
			}
			if want == tyBool {
				bools++
				if p.Eval(&in, z) != (wantV != 0) {
					t.Fatalf("seed %d: Eval(%s) = %v, AST %v", seed, src, !(wantV != 0), wantV)
				}
			}
			checked++
		}
	}
	t.Logf("%d evaluations compared, %d of them through Eval", checked, bools)
}

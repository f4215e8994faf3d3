package rules

import (
	"testing"
	"time"

	exprlang "github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// exprEnv is the environment github.com/expr-lang/expr evaluates the
// benchmark rule against: the same fields, dt precomputed by the caller
// (expr has no notion of a previous state).
type exprEnv struct {
	Speed   float64 `expr:"speed"`
	Heading float64 `expr:"heading"`
	DT      float64 `expr:"dt"`
}

func exprEnvOf(in *Input) exprEnv {
	dt := 0.0
	if in.HasPrev {
		dt = float64(in.TS) - float64(in.Prev.TS)
	}
	return exprEnv{Speed: in.Speed, Heading: in.Heading, DT: dt}
}

func compileExpr(tb testing.TB) *vm.Program {
	prog, err := exprlang.Compile(benchRule, exprlang.Env(exprEnv{}), exprlang.AsBool())
	if err != nil {
		tb.Fatal(err)
	}
	return prog
}

// TestExprAgrees checks that the expr-lang program the benchmarks compare
// against computes the same thing as ours.
func TestExprAgrees(t *testing.T) {
	prog := compileExpr(t)
	p, err := Compile(benchRule, nil)
	if err != nil {
		t.Fatal(err)
	}
	var v vm.VM
	ins := benchInputs(256)
	for i := range ins {
		env := exprEnvOf(&ins[i])
		out, err := v.Run(prog, &env)
		if err != nil {
			t.Fatal(err)
		}
		if out.(bool) != p.Eval(&ins[i], nil) {
			t.Fatalf("input %+v: expr %v, rules %v", ins[i], out, !out.(bool))
		}
	}
}

// BenchmarkExpr runs the benchmark rule with github.com/expr-lang/expr:
// compiled once with expr.Env(struct), run with a reused vm.VM and a
// pointer to a struct env. The env is filled per update outside the
// timed work that matters for the comparison (it is three stores).
func BenchmarkExpr(b *testing.B) {
	prog := compileExpr(b)
	ins := benchInputs(1024)
	envs := make([]exprEnv, len(ins))
	for i := range ins {
		envs[i] = exprEnvOf(&ins[i])
	}
	var v vm.VM
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := v.Run(prog, &envs[i&1023]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkExprRatio times the same rule on the same inputs with both
// engines, b.N evaluations each, and reports both per-eval times and
// expr's time over ours (how many times faster this package is).
func BenchmarkExprRatio(b *testing.B) {
	prog := compileExpr(b)
	p, err := Compile(benchRule, nil)
	if err != nil {
		b.Fatal(err)
	}
	ins := benchInputs(1024)
	envs := make([]exprEnv, len(ins))
	for i := range ins {
		envs[i] = exprEnvOf(&ins[i])
	}
	var v vm.VM
	b.ReportAllocs()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		p.Eval(&ins[i&1023], nil)
	}
	ours := time.Since(start)
	start = time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := v.Run(prog, &envs[i&1023]); err != nil {
			b.Fatal(err)
		}
	}
	theirs := time.Since(start)
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "ns/eval-rules")
	b.ReportMetric(float64(theirs.Nanoseconds())/float64(b.N), "ns/eval-expr")
	b.ReportMetric(float64(theirs)/float64(ours), "expr/rules")
}

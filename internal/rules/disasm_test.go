package rules

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenRules are the representative rules whose listings testdata/disasm
// pins. Rewrite with: go test ./internal/rules -run TestDisasmGolden -update
var goldenRules = []struct{ name, src string }{
	{"overspeed", "speed > 90"},
	{"overspeed_folded", "speed > 50 + 40"},
	{"three_compares", "speed > 90 && heading < 180 && dt < 60"},
	{"depot_exit", `speed > 90 && !inside("depot-7")`},
	{"harsh_braking", "prev.speed - speed > 30 && dt < 3"},
	{"near_yard_at_night", `near("yard", 250 * 2) && (hour() >= 22 || hour() < 6)`},
	{"or_of_ands", "speed > 120 && dt < 5 || speed > 100 && dt < 2 || moved_m > 5000"},
	{"constant_left", "90 < speed && 0 == heading"},
	{"turn_rate", "abs(heading - prev.heading) / max(dt, 1) > 30"},
	{"turn_and_move", "abs(heading - prev.heading) > 30 && moved_m > 10"},
	{"teleport", "moved_m / max(dt, 1) * 3.6 > 300"},
	{"distance_home", "distance_m(52.52, 13.405) > 50e3 && speed > 0"},
	{"bool_compare", `inside("port") != (speed < 5)`},
	{"negation_kept", "!(speed < 10) && !(dt >= 60)"},
	{"true_and", "true && speed > 1"},
	{"always_false", "speed > 1 && false"},
	{"modulo_ts", "ts % 60 == 0 && prev.ts % 60 != 0"},
	{"cheapest_first", `near("yard", 500) && speed < 5 && (moved_m > 1000 || dt > 60)`},
	{"multiline", "speed > 80\n\t&& (inside(\"zürich\") ||\n\t    inside(\"port\"))"},
}

func TestDisasmGolden(t *testing.T) {
	z := testZones()
	for _, g := range goldenRules {
		t.Run(g.name, func(t *testing.T) {
			p, err := Compile(g.src, z)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, line := range strings.Split(g.src, "\n") {
				b.WriteString("# " + line + "\n")
			}
			b.WriteString(p.Disasm())
			got := b.String()
			path := filepath.Join("testdata", "disasm", g.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Disasm of %q differs from %s (run with -update if intended)\n got:\n%s\nwant:\n%s", g.src, path, got, want)
			}
		})
	}
}

// One listing line per instruction after the header, jump targets
// marked, and jumps to the end shown as returns.
func TestDisasmShape(t *testing.T) {
	p, err := Compile("speed > 90 && heading < 180 && dt < 60 || inside(\"yard\")", testZones())
	if err != nil {
		t.Fatal(err)
	}
	d := p.Disasm()
	lines := strings.Split(strings.TrimSuffix(d, "\n"), "\n")
	if len(lines) != 1+len(p.lines) {
		t.Fatalf("%d lines for %d instructions:\n%s", len(lines), len(p.lines), d)
	}
	if !strings.HasPrefix(lines[0], "; ") || !strings.Contains(lines[len(lines)-1], "RETURN") {
		t.Errorf("want a header first and RETURN last:\n%s", d)
	}
	// The && chain's two fused compares jump to the ||, which returns
	// true at once.
	if strings.Count(d, ", to 13") != 2 || !strings.Contains(d, ">>   13  JUMP_IF_TRUE_OR_POP  return true") {
		t.Errorf("unexpected jumps:\n%s", d)
	}
}

func TestSourceText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"speed > 1", "speed > 1"},
		{"speed\n\t>   1", "speed > 1"},
		{strings.Repeat("a", 41), strings.Repeat("a", 37) + "..."},
		{strings.Repeat("a", 36) + "üüb", strings.Repeat("a", 36) + "..."}, // no cut inside ü
	}
	for _, tt := range tests {
		if got := sourceText(tt.in); got != tt.want {
			t.Errorf("sourceText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

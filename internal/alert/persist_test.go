package alert

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fence"
	"github.com/fleetd/fleetd/internal/rules"
	"github.com/fleetd/fleetd/internal/vfs"
)

func mustNew(t testing.TB, fs vfs.FS) *Evaluator {
	t.Helper()
	e, err := New(Options{FS: fs, Dir: "data/config", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRestartRestoresConfig(t *testing.T) {
	fs := vfs.NewMem()
	e := mustNew(t, fs)
	yard := `{"type":"Polygon","coordinates":[[[-75,40],[-74.9,40],[-74.9,40.1],[-75,40.1],[-75,40]],[[-74.96,40.04],[-74.94,40.04],[-74.94,40.06],[-74.96,40.04]]]}`
	multi := `{"type":"Feature","properties":{"x":1},"geometry":{"type":"MultiPolygon","coordinates":[[[[179,0],[180,0],[180,1],[179,0]]],[[[-180,0],[-179,0],[-180,1],[-180,0]]]]}}`
	if _, err := e.PutZone("yard-3", strings.NewReader(yard)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutZone("dateline", strings.NewReader(multi)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutZone("gone", strings.NewReader(rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteZone("gone"); err != nil {
		t.Fatal(err)
	}
	specs := map[string]RuleSpec{
		"in-yard":  {When: `inside("yard-3")`, Severity: "info"},
		"speeding": {When: "speed > 90\n  && dt < 60", For: 90 * time.Second, Severity: "critical"},
		"dl":       {When: `near("dateline", 500)`, For: 1500 * time.Millisecond, Severity: "warning"},
		"temp":     {When: "speed > 1"},
	}
	for name, s := range specs {
		if _, err := e.PutRule(name, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.DeleteRule("temp"); err != nil {
		t.Fatal(err)
	}
	delete(specs, "temp")

	// A power cut right now keeps everything: every change was synced.
	for _, fs2 := range []*vfs.MemFS{fs, fs.CrashClone(vfs.CrashOptions{})} {
		e2 := mustNew(t, fs2)
		if got := len(e2.Zones()); got != 2 {
			t.Fatalf("restored %d zones", got)
		}
		for _, name := range []string{"yard-3", "dateline"} {
			z1, _ := e.GetZone(name)
			z2, ok := e2.GetZone(name)
			if !ok || string(z1.AppendGeoJSON(nil)) != string(z2.AppendGeoJSON(nil)) {
				t.Fatalf("zone %s not restored", name)
			}
		}
		rs := e2.Rules()
		if len(rs) != len(specs) {
			t.Fatalf("restored %d rules", len(rs))
		}
		for _, r := range rs {
			if r.RuleSpec != specs[r.Name] {
				t.Fatalf("rule %s restored as %+v, want %+v", r.Name, r.RuleSpec, specs[r.Name])
			}
		}
		if st := e2.Stats(); st.ZoneRules != 2 {
			t.Fatalf("Stats = %+v", st)
		}
	}
}

func TestCorruptConfig(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"not json", "{", "data/config/config.json is corrupt"},
		{"unknown field", `{"version":1,"zones":[],"rules":[],"extra":1}`, "is corrupt"},
		{"trailing", `{"version":1,"zones":[],"rules":[]} x`, "is corrupt"},
		{"version", `{"version":2,"zones":[],"rules":[]}`, "unsupported version 2"},
		{"bad zone", `{"version":1,"zones":[{"name":"z","geometry":{"type":"Point","coordinates":[1,2]}}],"rules":[]}`, `zone "z": fence:`},
		{"bad zone name", `{"version":1,"zones":[{"name":"a b","geometry":{}}],"rules":[]}`, `zone name "a b"`},
		{"dup zone", `{"version":1,"zones":[{"name":"z","geometry":` + rect(0, 0, 1, 1) + `},{"name":"z","geometry":` + rect(0, 0, 1, 1) + `}],"rules":[]}`, `zone "z" appears twice`},
		{"bad rule", `{"version":1,"zones":[],"rules":[{"name":"r","when":"sped > 1","for":"0s","severity":"info"}]}`, `rule "r": 1:1: unknown field "sped"`},
		{"bad for", `{"version":1,"zones":[],"rules":[{"name":"r","when":"speed > 1","for":"x","severity":"info"}]}`, `rule "r": "for"`},
		{"bad severity", `{"version":1,"zones":[],"rules":[{"name":"r","when":"speed > 1","for":"0s","severity":"bad"}]}`, `severity "bad"`},
		{"dup rule", `{"version":1,"zones":[],"rules":[{"name":"r","when":"speed > 1"},{"name":"r","when":"speed > 1"}]}`, `rule "r" appears twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			if err := fs.MkdirAll("data/config", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := vfs.WriteFile(fs, "data/config/config.json", []byte(tc.data)); err != nil {
				t.Fatal(err)
			}
			_, err := New(Options{FS: fs, Dir: "data/config", Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "data/config/config.json") {
				t.Fatalf("New: %v; want an error naming the file and containing %q", err, tc.want)
			}
		})
	}
}

// TestSaveFailureChangesNothing: a failed save leaves the configuration
// as it was, in memory and on disk.
func TestSaveFailureChangesNothing(t *testing.T) {
	mem := vfs.NewMem()
	ffs := vfs.NewFaultFS(mem)
	e := mustNew(t, ffs)
	if _, err := e.PutRule("keep", RuleSpec{When: "speed > 1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutZone("z", strings.NewReader(rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	for _, op := range []vfs.Op{vfs.OpWrite, vfs.OpSync, vfs.OpRename, vfs.OpSyncDir} {
		ffs.FailAll(op, syscall.ENOSPC)
		checks := []struct {
			what string
			err  error
		}{
			{"put new rule", second(e.PutRule("new", RuleSpec{When: "speed > 2"}))},
			{"replace rule", second(e.PutRule("keep", RuleSpec{When: "speed > 3"}))},
			{"delete rule", e.DeleteRule("keep")},
			{"put zone", second(e.PutZone("z2", strings.NewReader(rect(0, 0, 1, 1))))},
			{"replace zone", second(e.PutZone("z", strings.NewReader(rect(5, 5, 6, 6))))},
			{"delete zone", e.DeleteZone("z")},
		}
		ffs.Reset()
		for _, c := range checks {
			if !errors.Is(c.err, ErrPersist) || !errors.Is(c.err, syscall.ENOSPC) {
				t.Errorf("%v failing: %s: %v", op, c.what, c.err)
			}
		}
		if r, ok := e.GetRule("keep"); !ok || r.When != "speed > 1" {
			t.Fatalf("%v: rule changed: %+v", op, r)
		}
		if _, ok := e.GetRule("new"); ok {
			t.Fatalf("%v: new rule stored", op)
		}
		if z, ok := e.GetZone("z"); !ok || z.Box().MinLat != 0 {
			t.Fatalf("%v: zone changed", op)
		}
		if _, ok := e.GetZone("z2"); ok {
			t.Fatalf("%v: new zone stored", op)
		}
		e2 := mustNew(t, mem)
		if len(e2.Rules()) != 1 || len(e2.Zones()) != 1 {
			t.Fatalf("%v: disk has %d rules, %d zones", op, len(e2.Rules()), len(e2.Zones()))
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestRuleValidation(t *testing.T) {
	e, err := New(Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutZone("z", strings.NewReader(rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec RuleSpec
		want string // "" for success
	}{
		{"ok", RuleSpec{When: "speed > 1"}, ""},
		{"a.b:c_d-E9", RuleSpec{When: `inside("z")`, Severity: "critical", For: time.Hour}, ""},
		{"", RuleSpec{When: "speed > 1"}, "rule name must be 1-64 bytes, got 0"},
		{strings.Repeat("x", 65), RuleSpec{When: "speed > 1"}, "got 65"},
		{"a b", RuleSpec{When: "speed > 1"}, `byte 1 (' ')`},
		{"a/b", RuleSpec{When: "speed > 1"}, "not one of"},
		{"r", RuleSpec{When: "speed > 1", Severity: "fatal"}, `severity "fatal" is not one of info, warning, critical`},
		{"r", RuleSpec{When: "speed > 1", For: -time.Second}, `"for" -1s is outside`},
		{"r", RuleSpec{When: "speed > 1", For: MaxFor + 1}, "is outside"},
		{"r", RuleSpec{When: "speed > sped"}, `1:9: unknown field "sped" (did you mean "speed"?)`},
		{"r", RuleSpec{When: `inside("nope")`}, `unknown zone "nope"`},
		{"r", RuleSpec{When: ""}, "1:1:"},
		{"r", RuleSpec{When: "speed + 1"}, "1:1:"},
	} {
		_, err := e.PutRule(tc.name, tc.spec)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("PutRule(%q, %+v): %v", tc.name, tc.spec, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid)):
			t.Errorf("PutRule(%q, %+v) = %v; want ErrInvalid containing %q", tc.name, tc.spec, err, tc.want)
		}
	}
	_, err = e.PutRule("r", RuleSpec{When: "speed > sped"})
	var rerr *rules.Error
	if !errors.As(err, &rerr) || rerr.Line != 1 || rerr.Col != 9 || !strings.Contains(rerr.Detail(), "^^^^") {
		t.Fatalf("compile error %v is not a *rules.Error at 1:9", err)
	}
	if n := len(e.Rules()); n != 2 {
		t.Fatalf("%d rules stored", n)
	}
}

func TestZoneValidation(t *testing.T) {
	e, err := New(Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		invalid    bool // else too large
		want       string
	}{
		{"a b", rect(0, 0, 1, 1), true, `zone name "a b"`},
		{"", rect(0, 0, 1, 1), true, "zone name must be 1-64 bytes"},
		{"z", `{"type":"Point","coordinates":[1,2]}`, true, "fence:"},
		{"z", `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1]]]}`, true, "fence:"},
		{"z", `not json`, true, "fence: invalid GeoJSON"},
		{"z", strings.Repeat("[", 100), false, "too large"},
		{"z", `{"type":"Polygon","coordinates":[[` + strings.Repeat("[0,0],", 8<<20/6) + `[0,0]]]}`, false, "too large"},
	} {
		_, err := e.PutZone(tc.name, strings.NewReader(tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrInvalid) != tc.invalid ||
			errors.Is(err, fence.ErrTooLarge) == tc.invalid {
			t.Errorf("PutZone(%q, %.40q) = %v; want invalid=%v containing %q", tc.name, tc.body, err, tc.invalid, tc.want)
		}
	}
	if len(e.Zones()) != 0 {
		t.Fatal("a zone was stored")
	}
}

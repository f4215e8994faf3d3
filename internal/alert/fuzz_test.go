package alert

import (
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/vfs"
)

// FuzzLoadConfig: New on any config.json either loads it or fails with an
// error naming the file; what loads saves and loads again the same.
func FuzzLoadConfig(f *testing.F) {
	f.Add(`{"version":1,"zones":[],"rules":[]}`)
	f.Add(`{"version":1,"zones":[{"name":"z","geometry":` + rect(0, 0, 1, 1) + `}],"rules":[{"name":"r","when":"inside(\"z\") && speed > 5","for":"30s","severity":"info"}]}`)
	f.Add(`{"version":1,"zones":[],"rules":[{"name":"r","when":"speed >","for":"x","severity":""}]}`)
	f.Add(`{"version":1,"zones":[{"name":"z","geometry":{"type":"MultiPolygon","coordinates":[]}}]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		fs := vfs.NewMem()
		if err := fs.MkdirAll("d", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := vfs.WriteFile(fs, "d/config.json", []byte(doc)); err != nil {
			t.Fatal(err)
		}
		e, err := New(Options{FS: fs, Dir: "d", Logger: quiet})
		if err != nil {
			if !strings.Contains(err.Error(), "d/config.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		// Save what loaded, then load it again.
		e.cfg.Lock()
		if err := e.saveLocked(); err != nil {
			t.Fatal(err)
		}
		e.cfg.Unlock()
		e2, err := New(Options{FS: fs, Dir: "d", Logger: quiet})
		if err != nil {
			t.Fatalf("reloading a saved configuration: %v", err)
		}
		r1, r2 := e.Rules(), e2.Rules()
		if len(r1) != len(r2) || len(e.Zones()) != len(e2.Zones()) {
			t.Fatalf("reload: %d/%d rules, %d/%d zones", len(r1), len(r2), len(e.Zones()), len(e2.Zones()))
		}
		for i := range r1 {
			if r1[i].Name != r2[i].Name || r1[i].RuleSpec != r2[i].RuleSpec {
				t.Fatalf("reload: %+v became %+v", r1[i].RuleSpec, r2[i].RuleSpec)
			}
		}
	})
}

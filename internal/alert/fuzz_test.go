package alert

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/vfs"
)

// FuzzLoadConfig: New on any config.json (an earlier version's file)
// either imports it or fails with an error naming the file; what it
// imported loads again from the change log the same.
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
		e2, err := New(Options{FS: fs, Dir: "d", Logger: quiet})
		if err != nil {
			t.Fatalf("reloading an imported configuration: %v", err)
		}
		sameConfig(t, e, e2)
	})
}

// sameConfig fails unless a and b hold the same zones and rules.
func sameConfig(t *testing.T, a, b *Evaluator) {
	t.Helper()
	r1, r2 := a.Rules(), b.Rules()
	if len(r1) != len(r2) || len(a.Zones()) != len(b.Zones()) {
		t.Fatalf("reload: %d/%d rules, %d/%d zones", len(r1), len(r2), len(a.Zones()), len(b.Zones()))
	}
	for i := range r1 {
		if r1[i].Name != r2[i].Name || r1[i].RuleSpec != r2[i].RuleSpec {
			t.Fatalf("reload: %+v became %+v", r1[i].RuleSpec, r2[i].RuleSpec)
		}
	}
	z1, z2 := a.Zones(), b.Zones()
	for i := range z1 {
		if z1[i].Name != z2[i].Name || !bytes.Equal(z1[i].Zone.AppendGeoJSON(nil), z2[i].Zone.AppendGeoJSON(nil)) {
			t.Fatalf("reload: zone %s differs", z1[i].Name)
		}
	}
}

// FuzzChangeLog: the change log reader on any bytes never panics; what it
// accepts is a prefix of the input that reframing its records
// reproduces, and New on such a log either loads it or fails with an
// error naming the file, and once loaded loads again the same.
func FuzzChangeLog(f *testing.F) {
	good := []byte(logMagic)
	good = appendRecord(good, []byte(`{"op":"zone","name":"z","geometry":`+rect(0, 0, 1, 1)+`}`))
	good = appendRecord(good, []byte(`{"op":"rules","rules":[{"name":"r","when":"inside(\"z\") && speed > 5","for":"30s","severity":"info"}]}`))
	good = appendRecord(good, []byte(`{"op":"-rule","name":"r"}`))
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte(logMagic))
	f.Add([]byte(logMagic[:5]))
	f.Add(appendRecord([]byte(logMagic), []byte(`{"op":"-zone","name":"nope"}`)))
	f.Add(appendRecord([]byte(logMagic), []byte(`{"op":"rules","rules":[{"name":"r","when":"speed >"}]}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		payloads, n, torn, err := logRecords(data)
		if n < 0 || n > len(data) {
			t.Fatalf("valid prefix %d of %d bytes", n, len(data))
		}
		if err == nil {
			re := []byte(logMagic)
			if n == 0 {
				re = nil
			}
			for _, p := range payloads {
				re = appendRecord(re, p)
			}
			if !bytes.Equal(re, data[:n]) {
				t.Fatalf("records do not reframe to the valid prefix")
			}
			if !torn && n != len(data) {
				t.Fatalf("not torn, but %d of %d bytes valid", n, len(data))
			}
		}
		fs := vfs.NewMem()
		if err := fs.MkdirAll("d", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := vfs.WriteFile(fs, "d/config.log", data); err != nil {
			t.Fatal(err)
		}
		e, err := New(Options{FS: fs, Dir: "d", Logger: quiet})
		if err != nil {
			if !strings.Contains(err.Error(), "d/config.log") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		// A change after the load appends where the valid log ends.
		if _, err := e.PutRule("fuzz-added", RuleSpec{When: "speed > 1"}); err != nil {
			t.Fatal(err)
		}
		e2, err := New(Options{FS: fs, Dir: "d", Logger: quiet})
		if err != nil {
			t.Fatalf("reloading: %v", err)
		}
		sameConfig(t, e, e2)
	})
}

package alert

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"

	"github.com/fleetd/fleetd/internal/rules"
	"github.com/fleetd/fleetd/internal/vfs"
)

// logFile is the change log of mustNew's Dir.
const logFile = "data/config/" + LogFile

// putSome makes n rule changes and two zone changes on e.
func putSome(t *testing.T, e *Evaluator, n int) {
	t.Helper()
	if _, err := e.PutZone("z", strings.NewReader(rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := e.PutRule(fmt.Sprintf("r%d", i), RuleSpec{When: fmt.Sprintf("speed > %d || inside(\"z\")", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.PutZone("z", strings.NewReader(rect(0, 0, 2, 2))); err != nil {
		t.Fatal(err)
	}
}

// TestChangeLogTornTail: a crash in the middle of an append (a random
// prefix of the unsynced bytes reaches the disk) loses at most that
// change, which was never acknowledged (it survives only if all of its
// record reached the disk); the log is cut back to its last whole record
// and later changes append after it.
func TestChangeLogTornTail(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 9))
	for round := range 30 {
		mem := vfs.NewMem()
		ffs := vfs.NewFaultFS(mem)
		e := mustNew(t, ffs)
		putSome(t, e, 5)
		// The next append is written, but the crash comes before its
		// fsync returns.
		var crashed *vfs.MemFS
		ffs.Inject(vfs.Rule{Ops: vfs.OpSync, PathContains: LogFile, Times: 1, Err: syscall.EIO,
			Hook: func(vfs.Op, string) { crashed = mem.CrashClone(vfs.CrashOptions{Rand: r}) }})
		if _, err := e.PutRule("torn", RuleSpec{When: "speed > 99"}); !errors.Is(err, ErrPersist) {
			t.Fatalf("round %d: PutRule with a failing fsync: %v", round, err)
		}
		e2 := mustNew(t, crashed)
		if r, ok := e2.GetRule("torn"); ok {
			// The whole record reached the disk before the crash: the
			// change was never acknowledged, but it is there, whole.
			if r.When != "speed > 99" {
				t.Fatalf("round %d: the torn rule survived as %+v", round, r)
			}
			if err := e2.DeleteRule("torn"); err != nil {
				t.Fatal(err)
			}
		}
		sameConfig(t, e, e2)
		if _, err := e2.PutRule("after", RuleSpec{When: "speed > 1"}); err != nil {
			t.Fatal(err)
		}
		e3 := mustNew(t, crashed.CrashClone(vfs.CrashOptions{}))
		sameConfig(t, e2, e3)
	}
}

// TestChangeLogBadChecksum: a record that fails its checksum in the
// middle of the log is corruption, refused with an error naming the file
// and the offset; the same damage in the last record is a torn append,
// cut off.
func TestChangeLogBadChecksum(t *testing.T) {
	mem := vfs.NewMem()
	e := mustNew(t, mem)
	putSome(t, e, 3)
	data, err := vfs.ReadFile(mem, logFile)
	if err != nil {
		t.Fatal(err)
	}
	payloads, _, _, err := logRecords(data)
	if err != nil || len(payloads) != 5 {
		t.Fatalf("%d records, %v", len(payloads), err)
	}
	// Flip a byte in the payload of the second record.
	second := len(logMagic) + recHeader + len(payloads[0]) + recHeader + 3
	bad := append([]byte(nil), data...)
	bad[second] ^= 0x40
	if err := vfs.WriteFile(mem, logFile, bad); err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{FS: mem, Dir: "data/config", Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), logFile) || !strings.Contains(err.Error(), "fails its checksum") ||
		!strings.Contains(err.Error(), fmt.Sprint("offset ", len(logMagic)+recHeader+len(payloads[0]))) {
		t.Fatalf("New on a log with a bad record inside: %v", err)
	}
	// The same in the last record: the zone's replacement is lost.
	bad = append([]byte(nil), data...)
	bad[len(bad)-2] ^= 0x40
	if err := vfs.WriteFile(mem, logFile, bad); err != nil {
		t.Fatal(err)
	}
	e2 := mustNew(t, mem)
	if z, ok := e2.GetZone("z"); !ok || z.Box().MaxLat != 1 {
		t.Fatalf("zone after a torn last record: %+v", z)
	}
	if len(e2.Rules()) != 3 {
		t.Fatalf("%d rules", len(e2.Rules()))
	}
	if n, _ := mem.Stat(logFile); n.Size() != int64(len(data)-recHeader-len(payloads[4])) {
		t.Fatalf("log is %d bytes after cutting its torn record", n.Size())
	}
	// A bad header is corruption too.
	if err := vfs.WriteFile(mem, logFile, []byte("FLEETCFG\x00\x00\x00\x09")); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{FS: mem, Dir: "data/config", Logger: quiet}); err == nil || !strings.Contains(err.Error(), "bad header") {
		t.Fatalf("New on a bad header: %v", err)
	}
}

// TestChangeLogAppendFailure: an append that fails (a short write, then
// ENOSPC; or a failed fsync) changes nothing in memory and, after the
// log is cut back or rewritten, nothing on disk either, even where the
// failed bytes reached the file.
func TestChangeLogAppendFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  vfs.Op
	}{{"write", vfs.OpWrite}, {"sync", vfs.OpSync}, {"write+truncate", vfs.OpWrite | vfs.OpTruncate}} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			ffs := vfs.NewFaultFS(mem)
			ffs.SetShortWrites(true)
			e := mustNew(t, ffs)
			putSome(t, e, 2)
			ffs.FailAll(tc.ops, syscall.ENOSPC)
			if _, err := e.PutRule("lost", RuleSpec{When: "speed > 5"}); !errors.Is(err, ErrPersist) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("PutRule: %v", err)
			}
			if _, _, err := e.PutRules([]NamedRule{{Name: "a", RuleSpec: RuleSpec{When: "speed > 6"}}, {Name: "r0", RuleSpec: RuleSpec{When: "speed > 7"}}}); !errors.Is(err, ErrPersist) {
				t.Fatalf("PutRules: %v", err)
			}
			ffs.Reset()
			if _, ok := e.GetRule("lost"); ok {
				t.Fatal("a refused rule is stored")
			}
			if r, _ := e.GetRule("r0"); r.When != `speed > 0 || inside("z")` {
				t.Fatalf("a refused bulk PUT replaced r0: %+v", r)
			}
			sameConfig(t, e, mustNew(t, mem))
			// The next change works, and persists.
			if _, err := e.PutRule("next", RuleSpec{When: "speed > 8"}); err != nil {
				t.Fatal(err)
			}
			sameConfig(t, e, mustNew(t, mem.CrashClone(vfs.CrashOptions{})))
		})
	}
}

// TestChangeLogCompaction: the log is rewritten once it outgrows twice
// its last rewritten size (plus compactSlack), so it stays within a
// constant factor of the configuration however many changes are made,
// and a restart finds the same configuration.
func TestChangeLogCompaction(t *testing.T) {
	mem := vfs.NewMem()
	e := mustNew(t, mem)
	big := strings.Repeat(" ", 2000)
	for i := range 3000 {
		// The same 10 rules replaced over and over.
		if _, err := e.PutRule(fmt.Sprintf("r%d", i%10), RuleSpec{When: fmt.Sprintf("speed > %d%s", i, big)}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := mem.Stat(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 2*compactSlack+100_000 {
		t.Fatalf("log is %d bytes for 10 rules", st.Size())
	}
	e2 := mustNew(t, mem.CrashClone(vfs.CrashOptions{}))
	sameConfig(t, e, e2)
	if r, _ := e2.GetRule("r9"); !strings.HasPrefix(r.When, "speed > 2999") {
		t.Fatalf("r9 restored as %q", r.When)
	}
}

// TestImportConfigJSON: an earlier version's config.json is imported
// into the change log and removed.
func TestImportConfigJSON(t *testing.T) {
	mem := vfs.NewMem()
	if err := mem.MkdirAll("data/config", 0o755); err != nil {
		t.Fatal(err)
	}
	doc := `{"version":1,"zones":[{"name":"z","geometry":` + rect(0, 0, 1, 1) + `}],"rules":[{"name":"r","when":"inside(\"z\")","for":"30s","severity":"info"}]}`
	if err := vfs.WriteFile(mem, "data/config/"+ConfigFile, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	e := mustNew(t, mem)
	if _, err := mem.Stat("data/config/" + ConfigFile); err == nil {
		t.Fatal("config.json is still there")
	}
	e2 := mustNew(t, mem.CrashClone(vfs.CrashOptions{}))
	sameConfig(t, e, e2)
	if r, ok := e2.GetRule("r"); !ok || r.Severity != "info" || r.For.Seconds() != 30 {
		t.Fatalf("imported rule %+v", r)
	}
}

// TestRuleLimit: MaxRules rules fit (so slots go past 16 bits), one more
// is refused with ErrLimit and changes nothing, in bulk or alone.
func TestRuleLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("defines 100,000 rules")
	}
	e, err := New(Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rs := make([]NamedRule, MaxRules+1)
	for i := range rs {
		rs[i] = NamedRule{Name: fmt.Sprintf("r%06d", i), RuleSpec: RuleSpec{When: fmt.Sprintf("speed > %d", i%500)}}
	}
	if _, _, err := e.PutRules(rs); !errors.Is(err, ErrLimit) || len(e.Rules()) != 0 {
		t.Fatalf("PutRules(MaxRules+1): %v, %d rules", err, len(e.Rules()))
	}
	if _, _, err := e.PutRules(rs[:MaxRules]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRule("one-more", RuleSpec{When: "speed > 1"}); !errors.Is(err, ErrLimit) {
		t.Fatalf("PutRule past MaxRules: %v", err)
	}
	// Replacing one at the limit is fine, and the index still finds rules
	// in slots past 65535.
	if _, err := e.PutRule("r099999", RuleSpec{When: "speed > 1000"}); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.Rules != MaxRules {
		t.Fatalf("stats %+v", st)
	}
	var in rules.Input
	in.Speed = 1001
	sc := &scratch{}
	e.evalUpdate(e.idx, &in, sc)
	found := false
	for _, i := range sc.trues {
		found = found || e.idx.bySlot[i].name == "r099999"
	}
	if !found || len(sc.trues) != MaxRules {
		t.Fatalf("speed 1001: %d rules true, r099999 among them: %v", len(sc.trues), found)
	}
}

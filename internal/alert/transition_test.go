package alert

import (
	"errors"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
)

func TestZoneEnterExit(t *testing.T) {
	g := newRig(t, engine.Options{})
	g.zone("yard-3", rect(40, -75, 40.1, -74.9))
	g.rule("in-yard", `inside("yard-3")`, 0)
	g.move("t1", 0, 39.9, -74.95, 10)
	g.want("outside")
	g.move("t1", 10, 40.05, -74.95, 10)
	g.want("enter", "firing in-yard t1")
	as := g.al.Firing()
	if len(as) != 1 || as[0].Rule != "in-yard" || as[0].ID != "t1" || as[0].Since != 1_764_000_010 || as[0].Severity != "warning" {
		t.Fatalf("Firing() = %+v", as)
	}
	g.move("t1", 20, 40.06, -74.95, 10)
	g.want("still inside")
	g.move("t1", 30, 40.2, -74.95, 10)
	g.want("exit", "resolved in-yard t1")
	if as := g.al.Firing(); len(as) != 0 {
		t.Fatalf("Firing() after exit = %+v", as)
	}
	// A truck whose first update is inside fires at once.
	g.move("t2", 0, 40.01, -74.99, 0)
	g.want("first update inside", "firing in-yard t2")
	if st := g.al.Stats(); st.FiringNow != 1 || st.Fired != 2 || st.Resolved != 1 || st.StateEntries != 1 || st.ZoneRules != 1 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestForDuration(t *testing.T) {
	g := newRig(t, engine.Options{})
	g.rule("speeding", "speed > 90", 30*time.Second)
	for _, step := range []struct {
		dt    int64
		speed float64
		want  []string
	}{
		{0, 100, nil},
		{10, 95, nil},
		{29, 120, nil},
		{30, 91, []string{"firing speeding t1"}},
		{40, 130, nil},
		{50, 80, []string{"resolved speeding t1"}},
		// True again, but false before 30 s pass: no alert.
		{60, 100, nil},
		{85, 100, nil},
		{89, 50, nil},
		{95, 100, nil},
		{120, 100, nil},
		{125, 100, []string{"firing speeding t1"}},
	} {
		g.move("t1", step.dt, 10, 10, step.speed)
		g.want("t+"+time.Duration(step.dt*int64(time.Second)).String(), step.want...)
	}
	as := g.al.Firing()
	if len(as) != 1 || as[0].Since != 1_764_000_095 || as[0].TS != 1_764_000_125 {
		t.Fatalf("Firing() = %+v", as)
	}
}

// TestForRoundsUp: "for" is compared in whole seconds, rounded up.
func TestForRoundsUp(t *testing.T) {
	g := newRig(t, engine.Options{})
	g.rule("slow", "speed < 5", 1500*time.Millisecond)
	g.move("t1", 0, 1, 1, 0)
	g.move("t1", 1, 1, 1, 0)
	g.want("1 s")
	g.move("t1", 2, 1, 1, 0)
	g.want("2 s", "firing slow t1")
}

func TestHarshBraking(t *testing.T) {
	g := newRig(t, engine.Options{})
	g.rule("harsh-braking", "prev.speed - speed > 30 && dt < 3", 0)
	g.move("t1", 0, 1, 1, 80)
	g.want("first update (no prev: prev.speed = speed)")
	g.move("t1", 2, 1, 1, 40)
	g.want("braked 40 km/h in 2 s", "firing harsh-braking t1")
	g.move("t1", 3, 1, 1, 40)
	g.want("steady", "resolved harsh-braking t1")
	g.move("t1", 10, 1, 1, 0)
	g.want("braked 40 km/h in 7 s")
	g.move("t1", 11, 1, 1, 50)
	g.move("t1", 12, 1, 1, 10)
	g.want("braked again", "firing harsh-braking t1")
}

func TestRemovedClearsState(t *testing.T) {
	g := newRig(t, engine.Options{TTL: time.Hour})
	g.rule("fast", "speed > 90", 0)
	g.rule("slow", "speed < 5", time.Minute) // true, not firing yet
	g.move("t1", 0, 1, 1, 100)
	g.move("t2", 0, 1, 1, 0)
	g.move("t3", 0, 1, 1, 120)
	g.want("fire", "firing fast t1", "firing fast t3")
	if st := g.al.Stats(); st.StateEntries != 3 || st.StateTrucks != 3 {
		t.Fatalf("Stats = %+v", st)
	}
	if ok, err := g.eng.Delete([]byte("t1")); !ok || err != nil {
		t.Fatal(ok, err)
	}
	g.want("delete", "resolved fast t1 (truck deleted)")
	g.now = g.now.Add(2 * time.Hour)
	if n := g.eng.Sweep(); n != 2 {
		t.Fatalf("swept %d", n)
	}
	g.want("expire", "resolved fast t3 (truck expired)")
	if st := g.al.Stats(); st.StateEntries != 0 || st.StateTrucks != 0 || st.FiringNow != 0 {
		t.Fatalf("Stats after removals = %+v", st)
	}
	if as := g.al.Firing(); len(as) != 0 {
		t.Fatalf("Firing() = %+v", as)
	}
	// A truck that comes back starts afresh.
	g.move("t3", 7300, 1, 1, 120)
	g.want("back", "firing fast t3")
}

func TestDeleteRuleFreesState(t *testing.T) {
	g := newRig(t, engine.Options{})
	g.rule("fast", "speed > 90", 0)
	g.rule("moving", "speed > 10", time.Hour)
	for i := range 3000 {
		g.move(truckName(i), 0, 1, 1, 100)
	}
	if st := g.al.Stats(); st.StateEntries != 6000 || st.FiringNow != 3000 {
		t.Fatalf("Stats = %+v", st)
	}
	before := g.al.Stats().StateBytes
	g.rec.take()
	if err := g.al.DeleteRule("fast"); err != nil {
		t.Fatal(err)
	}
	if got := g.rec.alerts(); len(got) != 3000 || got[0].Reason != "rule deleted" || got[0].State != StateResolved {
		t.Fatalf("DeleteRule emitted %d alerts, first %+v", len(got), got[0])
	}
	st := g.al.Stats()
	if st.StateEntries != 3000 || st.FiringNow != 0 || st.Rules != 1 {
		t.Fatalf("Stats after DeleteRule = %+v", st)
	}
	if err := g.al.Check(); err != nil {
		t.Fatal(err)
	}
	if err := g.al.DeleteRule("moving"); err != nil {
		t.Fatal(err)
	}
	g.want("deleting a rule that was not firing")
	st = g.al.Stats()
	if st.StateEntries != 0 || st.StateTrucks != 0 || st.StateBytes >= before {
		t.Fatalf("Stats after deleting every rule = %+v (state bytes before %d)", st, before)
	}
	if err := g.al.DeleteRule("moving"); err == nil {
		t.Fatal("deleted twice")
	}
}

func TestReplaceRule(t *testing.T) {
	g := newRig(t, engine.Options{})
	g.rule("r", "speed > 90", 0)
	g.move("t1", 0, 1, 1, 100)
	g.want("fire", "firing r t1")
	g.rule("r", "speed > 50", 0)
	g.want("replace", "resolved r t1 (rule replaced)")
	g.move("t1", 1, 1, 1, 60)
	g.want("new rule", "firing r t1")
	if r, ok := g.al.GetRule("r"); !ok || r.When != "speed > 50" || r.Severity != "warning" {
		t.Fatalf("GetRule = %+v, %v", r, ok)
	}
}

// TestZoneReplaceKeepsState: a new shape under the same name applies from
// the next update; the rule and its state stay.
func TestZoneReplaceKeepsState(t *testing.T) {
	g := newRig(t, engine.Options{})
	g.zone("z", rect(0, 0, 1, 1))
	g.rule("in", `inside("z")`, 0)
	g.move("t1", 0, 0.5, 0.5, 0)
	g.want("inside", "firing in t1")
	g.zone("z", rect(2, 2, 3, 3))
	g.want("replaced zone")
	g.move("t1", 1, 0.5, 0.5, 0)
	g.want("now outside", "resolved in t1")
	g.move("t1", 2, 2.5, 2.5, 0)
	g.want("inside the new shape", "firing in t1")
}

func TestDeleteZoneInUse(t *testing.T) {
	g := newRig(t, engine.Options{})
	g.zone("z", rect(0, 0, 1, 1))
	g.zone("other", rect(5, 5, 6, 6))
	g.rule("b", `near("z", 100) && speed < 5`, 0)
	g.rule("a", `speed > 100 && !inside("z")`, 0)
	err := g.al.DeleteZone("z")
	var inUse *ZoneInUseError
	if !errors.As(err, &inUse) || len(inUse.Rules) != 2 || inUse.Rules[0] != "a" || inUse.Rules[1] != "b" || !errors.Is(err, ErrInUse) {
		t.Fatalf("DeleteZone in use: %v", err)
	}
	if err := g.al.DeleteZone("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteZone unknown: %v", err)
	}
	if err := g.al.DeleteZone("other"); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.al.GetZone("other"); ok {
		t.Fatal("zone still there")
	}
	// A rule cannot name a deleted zone.
	if _, err := g.al.PutRule("c", RuleSpec{When: `inside("other")`}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("rule on a deleted zone: %v", err)
	}
	// The zone is free once no rule names it: "b" replaced by a rule
	// without it, "a" deleted.
	g.rule("b", `speed < 5`, 0)
	if err := g.al.DeleteZone("z"); !errors.Is(err, ErrInUse) {
		t.Fatalf("DeleteZone with a's use left: %v", err)
	}
	if err := g.al.DeleteRule("a"); err != nil {
		t.Fatal(err)
	}
	if err := g.al.DeleteZone("z"); err != nil {
		t.Fatalf("DeleteZone after its rules went: %v", err)
	}
}

func truckName(i int) string {
	const digits = "0123456789"
	b := []byte("truck-0000000")
	for j := len(b) - 1; i > 0; j-- {
		b[j] = digits[i%10]
		i /= 10
	}
	return string(b)
}

// TestSameTruckTwiceInBatch: two updates of one truck in one batch (the
// store leaves one, but Applied does not rely on it) are applied in
// order, although Applied reads the filter ahead for a chunk of updates:
// the second, false, resolves what the first fired.
func TestSameTruckTwiceInBatch(t *testing.T) {
	rec := &recorder{}
	e, err := New(Options{Logger: quiet, Emit: rec.emit})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRule("fast", RuleSpec{When: "speed > 50"}); err != nil {
		t.Fatal(err)
	}
	b := &fleet.Batch{}
	add := func(id string, ts int64, speed float64) {
		b.Updates = append(b.Updates, fleet.Update{ID: []byte(id), Position: fleet.MakePosition(1, 1, ts, speed, 0)})
		b.Changed = append(b.Changed, true)
		b.HadPrev = append(b.HadPrev, false)
		b.Prev = append(b.Prev, fleet.Position{})
	}
	add("t1", 1_764_000_000, 60)
	add("t2", 1_764_000_000, 10)
	add("t1", 1_764_000_001, 10)
	e.Applied(b)
	if got := rec.take(); len(got) != 2 || got[0] != "firing fast t1" || got[1] != "resolved fast t1" {
		t.Fatalf("emitted %q", got)
	}
	if err := e.Check(); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.StateEntries != 0 || st.FiringNow != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

package alert

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
)

// TestFiringPage: on random fleets, every page equals the full sorted list
// filtered by rule and truck and cut at the limit, and the total counts
// every match.
func TestFiringPage(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 11))
	g := newRig(t, engine.Options{})
	rulesN := []string{"fast", "faster", "slow", "crawl"}
	g.rule("fast", "speed > 50", 0)
	g.rule("faster", "speed > 80", 0)
	g.rule("slow", "speed < 30", 0)
	g.rule("crawl", "speed < 5", 0)
	var ups []fleet.Update
	for i := range 3000 {
		ups = append(ups, fleet.Update{ID: fmt.Appendf(nil, "t%04d", r.IntN(2500)),
			Position: fleet.MakePosition(40, -74, 1_764_000_000+int64(i), r.Float64()*120, 0)})
	}
	if _, err := g.eng.Apply(ups); err != nil {
		t.Fatal(err)
	}
	all := g.al.Firing()
	if len(all) < 1000 || !slices.IsSortedFunc(all, compareAlerts) {
		t.Fatalf("seed %d: %d firing, sorted %v", seed, len(all), slices.IsSortedFunc(all, compareAlerts))
	}
	for range 200 {
		q := FiringQuery{Limit: r.IntN(40)}
		if r.IntN(3) == 0 {
			q.Limit = r.IntN(len(all) + 10)
		}
		if r.IntN(2) == 0 {
			q.Rule = rulesN[r.IntN(len(rulesN))]
			if r.IntN(10) == 0 {
				q.Rule = "no-such-rule"
			}
		}
		if r.IntN(3) == 0 {
			q.ID = all[r.IntN(len(all))].ID
			if r.IntN(10) == 0 {
				q.ID = "nobody"
			}
		}
		var want []Alert
		for _, a := range all {
			if (q.Rule == "" || a.Rule == q.Rule) && (q.ID == "" || a.ID == q.ID) {
				want = append(want, a)
			}
		}
		total := len(want)
		if q.Limit > 0 && len(want) > q.Limit {
			want = want[:q.Limit]
		}
		page, n := g.al.FiringPage(q)
		if n != total || !slices.Equal(page, want) {
			t.Fatalf("seed %d: FiringPage(%+v) = %d alerts (first %v), total %d; want %d (first %v), total %d",
				seed, q, len(page), head(page), n, len(want), head(want), total)
		}
	}
}

func head(as []Alert) []Alert { return as[:min(len(as), 3)] }

// TestMaxPairs: rules true for the whole fleet track at most MaxPairs
// pairs (each stripe its share), count the rest as shed, and track new
// ones again once pairs end.
func TestMaxPairs(t *testing.T) {
	const maxPairs = 2 * numStripes
	g := newRigWith(t, engine.Options{}, Options{MaxPairs: maxPairs})
	g.rule("fast", "speed > 50", 0)
	g.rule("faster", "speed > 80", 0)
	apply := func(ts int64, speed float64) {
		var ups []fleet.Update
		for i := range 5000 {
			ups = append(ups, fleet.Update{ID: fmt.Appendf(nil, "t%04d", i),
				Position: fleet.MakePosition(40, -74, ts, speed, 0)})
		}
		if _, err := g.eng.Apply(ups); err != nil {
			t.Fatal(err)
		}
		if err := g.al.Check(); err != nil {
			t.Fatal(err)
		}
	}
	apply(1_764_000_000, 100)
	st := g.al.Stats()
	if st.StateEntries > maxPairs || st.StateEntries < maxPairs/2 || st.FiringNow != st.StateEntries {
		t.Fatalf("state over the limit or far under it: %+v", st)
	}
	if want := uint64(2*5000 - st.StateEntries); st.PairsShed != want {
		t.Fatalf("shed %d, want %d", st.PairsShed, want)
	}
	// Every pair ends (speed 0): all resolved, room again.
	apply(1_764_000_010, 0)
	if st := g.al.Stats(); st.StateEntries != 0 || st.FiringNow != 0 {
		t.Fatalf("after the rules went false: %+v", st)
	}
	apply(1_764_000_020, 100)
	if st2 := g.al.Stats(); st2.StateEntries != st.StateEntries || st2.Fired != 2*uint64(st.StateEntries) {
		t.Fatalf("after room freed: %+v (first pass %+v)", st2, st)
	}
}

package alert

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/rules"
)

// TestTransitionsMatchModel drives random fleets through Applied and
// Removed and compares every emitted transition with a model that
// evaluates every rule on every update and keeps its state in a map.
func TestTransitionsMatchModel(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 3))
	for round := range 4 {
		rec := &recorder{}
		e, err := New(Options{Logger: quiet, Emit: rec.emit})
		if err != nil {
			t.Fatal(err)
		}
		var zones []string
		for i := range 4 {
			lat, lon := float64(i), float64(i)
			name := fmt.Sprintf("z%d", i)
			if _, err := e.PutZone(name, strings.NewReader(rect(lat, lon, lat+1.5, lon+1.5))); err != nil {
				t.Fatal(err)
			}
			zones = append(zones, name)
		}
		type mrule struct {
			name   string
			prog   *rules.Program
			forSec uint32
		}
		var mrules []mrule
		for i := range 30 {
			name := fmt.Sprintf("r%02d", i)
			spec := RuleSpec{When: randomRule(r, zones), For: time.Duration(r.IntN(3)*r.IntN(20)) * time.Second}
			rl, err := e.PutRule(name, spec)
			if err != nil {
				t.Fatal(err)
			}
			mrules = append(mrules, mrule{name, rl.Program, forSeconds(spec.For)})
		}
		type mkey struct{ rule, id string }
		type mstate struct {
			since  uint32
			firing bool
		}
		model := map[mkey]mstate{}
		last := map[string]fleet.Position{}
		var want []string
		format := func(state, rule, id string, since, ts uint32, reason string) string {
			return fmt.Sprintf("%s %s %s since=%d ts=%d %s", state, rule, id, since, ts, reason)
		}
		ts := uint32(1_764_000_000)
		for range 40 {
			b := &fleet.Batch{}
			seen := map[string]bool{}
			for range 1 + r.IntN(300) {
				id := truckName(r.IntN(60))
				if seen[id] {
					continue // one update per truck per batch, as the store's latest-wins leaves it
				}
				seen[id] = true
				prev, had := last[id]
				lat, lon := r.Float64()*6, r.Float64()*6
				if had && r.IntN(2) == 0 {
					lat, lon = prev.LatDeg()+r.NormFloat64()*0.2, prev.LonDeg()+r.NormFloat64()*0.2
				}
				p := fleet.MakePosition(lat, lon, int64(ts)+int64(r.IntN(3)), r.Float64()*150, float64(r.IntN(360)))
				changed := r.IntN(20) > 0
				b.Updates = append(b.Updates, fleet.Update{ID: []byte(id), Position: p})
				b.Changed = append(b.Changed, changed)
				b.HadPrev = append(b.HadPrev, had)
				b.Prev = append(b.Prev, prev)
				if !changed {
					continue
				}
				last[id] = p
				var in rules.Input
				in.State.Set(&p)
				in.HasPrev = had
				if had {
					in.Prev.Set(&prev)
				}
				for _, mr := range mrules {
					k := mkey{mr.name, id}
					st, has := model[k]
					if !mr.prog.Eval(&in, e.idx.zones) {
						if has && st.firing {
							want = append(want, format("resolved", mr.name, id, st.since, p.TS, ""))
						}
						delete(model, k)
						continue
					}
					if !has {
						st = mstate{since: p.TS}
					}
					if !st.firing && p.TS-st.since >= mr.forSec {
						st.firing = true
						want = append(want, format("firing", mr.name, id, st.since, p.TS, ""))
					}
					model[k] = st
				}
			}
			e.Applied(b)
			ts += 5
			if r.IntN(3) == 0 {
				id := truckName(r.IntN(60))
				p := last[id]
				delete(last, id)
				e.Removed([]byte(id), p, fleet.Deleted)
				for _, mr := range mrules {
					k := mkey{mr.name, id}
					if st, ok := model[k]; ok && st.firing {
						want = append(want, format("resolved", mr.name, id, st.since, p.TS, "truck deleted"))
					}
					delete(model, k)
				}
			}
		}
		var got []string
		for _, a := range rec.alerts() {
			got = append(got, format(a.State, a.Rule, a.ID, a.Since, a.TS, a.Reason))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			for i := range max(len(got), len(want)) {
				g, w := "", ""
				if i < len(got) {
					g = got[i]
				}
				if i < len(want) {
					w = want[i]
				}
				if g != w {
					t.Fatalf("round %d: %d alerts, model %d; first difference at %d:\n got %s\nwant %s", round, len(got), len(want), i, g, w)
				}
			}
		}
		if st := e.Stats(); st.StateEntries != int64(len(model)) {
			t.Fatalf("round %d: %d state entries, model %d", round, st.StateEntries, len(model))
		}
		if err := e.Check(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d transitions, %d (rule, truck) pairs true at the end", round, len(want), len(model))
	}
}

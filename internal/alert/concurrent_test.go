package alert

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// TestConcurrent runs Applied from several goroutines on overlapping
// trucks (batches large enough to be split over workers, and small ones)
// while rules and zones change and trucks are removed; then checks the
// state tables and that every (rule, truck) emitted one more firing than
// resolved exactly when it is firing now. Run it with -race.
func TestConcurrent(t *testing.T) {
	seed := testSeed(t)
	rec := &recorder{}
	e, err := New(Options{Logger: quiet, Emit: rec.emit})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := e.PutZone(fmt.Sprintf("z%d", i), strings.NewReader(rect(float64(i), 0, float64(i)+1, 1))); err != nil {
			t.Fatal(err)
		}
	}
	srcs := []string{"speed > 50", `inside("z1")`, `near("z2", 5000) && speed < 80`, "prev.speed - speed > 20", "dt < 3", `speed > 30 && !inside("z0")`}
	for i, src := range srcs {
		if _, err := e.PutRule(fmt.Sprintf("r%d", i), RuleSpec{When: src, For: time.Duration([]int64{0, 1e9, 5e9}[i%3])}); err != nil {
			t.Fatal(err)
		}
	}
	const trucks, writers = 12000, 4 // enough for the stripes' tables to grow while others prefetch
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for round := range 8 {
				n := []int{50, 2*parallelMin + 10}[round%2]
				b := &fleet.Batch{}
				for range n {
					id := truckName(r.IntN(trucks))
					b.Updates = append(b.Updates, fleet.Update{ID: []byte(id),
						Position: fleet.MakePosition(r.Float64()*4, r.Float64()*1.5, int64(1_764_000_000+round*2+r.IntN(2)), r.Float64()*100, 0)})
					b.Changed = append(b.Changed, r.IntN(10) > 0)
					b.HadPrev = append(b.HadPrev, r.IntN(2) == 0)
					b.Prev = append(b.Prev, fleet.MakePosition(r.Float64()*4, 0.5, 1_764_000_000, r.Float64()*100, 0))
				}
				e.Applied(b)
				if round%4 == 3 {
					id := truckName(r.IntN(trucks))
					e.Removed([]byte(id), fleet.Position{}, fleet.Expired)
				}
			}
		})
	}
	wg.Go(func() {
		r := rand.New(rand.NewPCG(seed, 99))
		for i := range 30 {
			name := fmt.Sprintf("r%d", r.IntN(len(srcs)+2))
			switch i % 3 {
			case 0:
				_ = e.DeleteRule(name)
			case 1:
				if _, err := e.PutRule(name, RuleSpec{When: srcs[r.IntN(len(srcs))]}); err != nil {
					t.Error(err)
				}
			default:
				z := r.IntN(4)
				if _, err := e.PutZone(fmt.Sprintf("z%d", z), strings.NewReader(rect(float64(z), r.Float64(), float64(z)+1, 1.5))); err != nil {
					t.Error(err)
				}
			}
			_ = e.Firing()
			_ = e.Stats()
		}
	})
	wg.Wait()
	if err := e.Check(); err != nil {
		t.Fatal(err)
	}
	net := map[string]int{}
	for _, a := range rec.alerts() {
		k := a.Rule + " " + a.ID
		if a.State == StateFiring {
			net[k]++
		} else {
			net[k]--
		}
	}
	firing := e.Firing()
	for _, a := range firing {
		if net[a.Rule+" "+a.ID] != 1 {
			t.Fatalf("%s %s firing with net %d emitted", a.Rule, a.ID, net[a.Rule+" "+a.ID])
		}
		delete(net, a.Rule+" "+a.ID)
	}
	for k, n := range net {
		if n != 0 {
			t.Fatalf("%s: not firing, net %d emitted", k, n)
		}
	}
	st := e.Stats()
	if st.FiringNow != int64(len(firing)) || st.Fired-st.Resolved != uint64(len(firing)) {
		t.Fatalf("Stats %+v, %d firing", st, len(firing))
	}
	t.Logf("%d firing, %d fired, %d resolved, %d state entries", len(firing), st.Fired, st.Resolved, st.StateEntries)
}

package fence

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The rules package's ZoneResolver, ZoneLister and ZoneTester, restated so
// that this package's tests do not depend on it.
var _ interface {
	ZoneID(name string) (id int, ok bool)
	ZoneNames() []string
	Inside(zone int, lat, lon float64) bool
	DistanceM(zone int, lat, lon float64) float64
} = (*Set)(nil)

func mustRect(t testing.TB, lon0, lat0, lon1, lat1 float64) *Zone {
	t.Helper()
	z, err := NewPolygon([][][2]float64{rect(lon0, lat0, lon1, lat1)})
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func TestCheckName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"depot", true}, {"a", true}, {"Zone_1.north:gate-2", true}, {strings.Repeat("x", 64), true},
		{"", false}, {strings.Repeat("x", 65), false}, {"has space", false}, {"slash/", false},
		{"é", false}, {"quote\"", false}, {"nul\x00", false}, {"star*", false},
	} {
		err := CheckName(c.name)
		if (err == nil) != c.ok {
			t.Errorf("CheckName(%q) = %v", c.name, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "fence: zone name") {
			t.Errorf("CheckName(%q) = %v: no prefix", c.name, err)
		}
	}
}

func TestSet(t *testing.T) {
	var s Set // the zero value is ready
	if s.Inside(0, 0, 0) || !math.IsInf(s.DistanceM(0, 0, 0), 1) || s.Len() != 0 || len(s.Names()) != 0 || s.Version() != 0 {
		t.Fatal("empty set not empty")
	}
	a, b := mustRect(t, 0, 0, 1, 1), mustRect(t, 10, 10, 11, 11)
	ida, idb := s.Put("a", a), s.Put("b", b)
	if ida != 0 || idb != 1 || s.Version() != 2 {
		t.Fatalf("ids %d %d version %d", ida, idb, s.Version())
	}
	if id, ok := s.ZoneID("b"); !ok || id != idb {
		t.Errorf("ZoneID(b) = %d, %v", id, ok)
	}
	if z, ok := s.Get("a"); !ok || z != a || s.Zone(ida) != a {
		t.Error("Get(a)")
	}
	if !s.Inside(ida, 0.5, 0.5) || s.Inside(idb, 0.5, 0.5) || !s.Inside(idb, 10.5, 10.5) {
		t.Error("Inside")
	}
	if d := s.DistanceM(ida, 0.5, 1.5); math.Abs(d-0.5*mPerDeg*math.Cos(0.5*math.Pi/180)) > 1e-6 {
		t.Errorf("DistanceM = %v", d)
	}
	if !s.Near(ida, 0.5, 1.5, 60e3) || s.Near(ida, 0.5, 1.5, 50e3) {
		t.Error("Near")
	}
	for _, id := range []int{-1, 2, 1 << 40} {
		if s.Inside(id, 0.5, 0.5) || !math.IsInf(s.DistanceM(id, 0.5, 0.5), 1) || s.Near(id, 0.5, 0.5, 1e9) || s.Zone(id) != nil {
			t.Errorf("unknown id %d answers", id)
		}
	}

	// Replacing keeps the ID.
	a2 := mustRect(t, 0, 0, 2, 2)
	if id := s.Put("a", a2); id != ida || s.Version() != 3 || !s.Inside(ida, 1.5, 1.5) {
		t.Errorf("replace: id %d version %d", id, s.Version())
	}

	// Delete leaves a tombstone; putting the name back revives its ID.
	if !s.Delete("a") || s.Delete("a") || s.Delete("nope") || s.Version() != 4 {
		t.Errorf("Delete, version %d", s.Version())
	}
	if _, ok := s.ZoneID("a"); ok {
		t.Error("ZoneID of a deleted zone")
	}
	if _, ok := s.Get("a"); ok || s.Inside(ida, 1.5, 1.5) || !math.IsInf(s.DistanceM(ida, 5, 5), 1) {
		t.Error("a deleted zone answers")
	}
	if got := s.Names(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("Names = %q", got)
	}
	if id := s.Put("c", a); id != 2 {
		t.Errorf("a new name took id %d, not a fresh one", id)
	}
	if id := s.Put("a", a); id != ida {
		t.Errorf("revived a has id %d, want %d", id, ida)
	}

	// Purge releases a deleted name's ID for new names.
	if s.Purge("a") || s.Purge("nope") {
		t.Error("Purge of a live or unknown name")
	}
	s.Delete("b")
	v := s.Version()
	if !s.Purge("b") || s.Version() != v+1 || s.Purge("b") {
		t.Error("Purge(b)")
	}
	if id := s.Put("d", b); id != idb {
		t.Errorf("d took id %d, want the purged %d", id, idb)
	}
	if id := s.Put("b", b); id != 3 {
		t.Errorf("b after purge took id %d, want a fresh 3", id)
	}

	// Invalid puts change nothing.
	v = s.Version()
	for _, name := range []string{"", "bad name", strings.Repeat("n", 65)} {
		if id := s.Put(name, a); id != -1 {
			t.Errorf("Put(%q) = %d", name, id)
		}
	}
	if s.Put("ok", nil) != -1 || s.Version() != v {
		t.Error("invalid Put changed the set")
	}

	want := []string{"a", "b", "c", "d"}
	if got := s.Names(); !slices.Equal(got, want) || !slices.Equal(s.ZoneNames(), want) || s.Len() != 4 {
		t.Errorf("Names = %q", got)
	}
	s.Names()[0] = "mutated"
	var seen []string
	for name, z := range s.All() {
		if id, _ := s.ZoneID(name); s.Zone(id) != z {
			t.Errorf("All yields %s with the wrong zone", name)
		}
		seen = append(seen, name)
		if len(seen) == 3 {
			break
		}
	}
	if !slices.Equal(seen, want[:3]) {
		t.Errorf("All = %q", seen)
	}
}

// TestSetConcurrent runs writers and lock-free readers together (run it
// with -race): a name's ID never changes, readers never see a torn state.
func TestSetConcurrent(t *testing.T) {
	var s Set
	zones := []*Zone{mustRect(t, 0, 0, 1, 1), mustRect(t, 0, 0, 2, 2)}
	names := make([]string, 16)
	for i := range names {
		names[i] = fmt.Sprintf("zone-%02d", i)
	}
	var mu sync.Mutex
	ids := map[string]int{}
	record := func(name string, id int) {
		mu.Lock()
		defer mu.Unlock()
		if old, ok := ids[name]; ok && old != id {
			t.Errorf("%s changed id %d -> %d", name, old, id)
		}
		ids[name] = id
	}
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 2000 {
				name := names[(i*7+w)%len(names)]
				if i%3 == 0 {
					s.Delete(name)
				} else {
					record(name, s.Put(name, zones[i%2]))
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			last := uint64(0)
			for i := range 4000 {
				if v := s.Version(); v < last {
					t.Errorf("version went back %d -> %d", last, v)
				} else {
					last = v
				}
				name := names[i%len(names)]
				if id, ok := s.ZoneID(name); ok {
					record(name, id)
					_ = s.Inside(id, 0.5, 0.5)
					_ = s.DistanceM(id, 5, 5)
				}
				if i%100 == 0 {
					prev := ""
					for n, z := range s.All() {
						if z == nil || n <= prev {
							t.Errorf("All yielded %q after %q, zone %p", n, prev, z)
						}
						prev = n
					}
				}
			}
		})
	}
	wg.Wait()
}

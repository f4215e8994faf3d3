package store

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
)

// model is the brute-force reference: a plain map of the latest positions.
type model map[string]Position

func (m model) apply(batch []Update) {
	for _, u := range batch {
		if p, ok := m[string(u.ID)]; ok && u.TS < p.TS {
			continue
		}
		m[string(u.ID)] = u.Position
	}
}

type fleetGen struct {
	r *rand.Rand
}

func newGen(t testing.TB) *fleetGen {
	seed := rand.Uint64()
	if v := os.Getenv("FLEETD_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (replay with FLEETD_SEED=%d)", seed, seed)
	return &fleetGen{r: rand.New(rand.NewPCG(seed, 7))}
}

func (g *fleetGen) pos(lat, lon float64, ts uint32) Position {
	return MakePosition(lat, lon, int64(ts), g.r.Float64()*130, float64(g.r.IntN(360)))
}

// place returns a point drawn from a mix of the situations the index must
// get right: uniform US, a dense city block, the antimeridian, the poles
// and far outliers.
func (g *fleetGen) place() (float64, float64) {
	switch x := g.r.IntN(100); {
	case x < 60:
		return 25 + g.r.Float64()*24, -124 + g.r.Float64()*57
	case x < 70: // dense: one city block in Manhattan
		return 40.7580 + g.r.Float64()*0.001, -73.9855 + g.r.Float64()*0.001
	case x < 80: // both sides of the antimeridian
		lon := 179.9999
		if g.r.IntN(2) == 0 {
			lon = -179.9999
		}
		return g.r.Float64()*10 - 5, lon + (g.r.Float64()-0.5)*0.0001
	case x < 88: // near the poles
		lat := 89.5 + g.r.Float64()*0.5
		if g.r.IntN(2) == 0 {
			lat = -lat
		}
		return lat, g.r.Float64()*360 - 180
	case x < 90: // Sydney
		return -33.8688 + g.r.Float64()*0.01, 151.2093 + g.r.Float64()*0.01
	default:
		return g.r.Float64()*180 - 90, g.r.Float64()*360 - 180
	}
}

// size scales a test's work down in -short mode (CI runs the race
// detector with -short).
func size(n int) int {
	if testing.Short() {
		return max(n/5, 1)
	}
	return n
}

func id(i int) []byte { return fmt.Appendf(nil, "truck-%07d", i) }

func mustNew(t testing.TB, o Options) *Store {
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestApplyGetDeleteAgainstModel(t *testing.T) {
	g := newGen(t)
	for _, shards := range []int{1, 8} {
		s := mustNew(t, Options{Shards: shards})
		m := model{}
		heard := map[string]int{} // round a truck was last heard in
		ts := uint32(1_764_000_000)
		for round := 0; round < size(30); round++ {
			batch := make([]Update, 0, 3000)
			for i := 0; i < cap(batch); i++ {
				n := g.r.IntN(5000)
				key := id(n)
				if n%97 == 0 { // long IDs live outside the record
					key = fmt.Appendf(nil, "depot-%d:truck.with_a-long-identifier-%07d", n%7, n)
				}
				lat, lon := g.place()
				t := ts + uint32(g.r.IntN(100)) - 50 // some updates arrive late
				batch = append(batch, Update{ID: key, Position: g.pos(lat, lon, t)})
			}
			ts += 60
			s.SetEpoch(uint32(round))
			s.Apply(batch)
			m.apply(batch)
			for _, u := range batch { // late updates are heard too
				heard[string(u.ID)] = round
			}
			// Delete some, expire some.
			for i := 0; i < 100; i++ {
				key := id(g.r.IntN(5000))
				_, had := m[string(key)]
				if got := s.Delete(key); got != had {
					t.Fatalf("Delete(%s) = %v, model has it: %v", key, got, had)
				}
				delete(m, string(key))
			}
			if round%3 == 2 {
				// Expiry counts from when a truck was last heard, not from
				// its ts: a truck whose late updates keep coming stays.
				want := 0
				for k := range m {
					if round-heard[k] >= 2 {
						delete(m, k)
						want++
					}
				}
				if got := s.Expire(2, nil); got != want {
					t.Fatalf("Expire removed %d, want %d", got, want)
				}
			}
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
			if s.Len() != len(m) {
				t.Fatalf("Len %d, model %d", s.Len(), len(m))
			}
			for k, want := range m {
				got, ok := s.Get([]byte(k))
				if !ok || got != want {
					t.Fatalf("Get(%s) = %+v %v, want %+v", k, got, ok, want)
				}
			}
			n := 0
			s.Range(func(id []byte, p Position) bool {
				if m[string(id)] != p {
					t.Fatalf("Range gave %s %+v, model %+v", id, p, m[string(id)])
				}
				n++
				return true
			})
			if n != len(m) {
				t.Fatalf("Range saw %d trucks, want %d", n, len(m))
			}
		}
	}
}

func TestLatestWins(t *testing.T) {
	s := mustNew(t, Options{})
	a := MakePosition(40, -74, 1000, 50, 90)
	b := MakePosition(41, -75, 999, 60, 180)
	c := MakePosition(42, -76, 1000, 70, 270)
	r := s.Apply([]Update{{ID: []byte("x"), Position: a}, {ID: []byte("x"), Position: b}})
	if r.Inserted != 1 || r.Stale != 1 {
		t.Fatalf("result %+v", r)
	}
	if got, _ := s.Get([]byte("x")); got != a {
		t.Fatalf("older update overwrote: %+v", got)
	}
	s.Apply([]Update{{ID: []byte("x"), Position: c}})
	if got, _ := s.Get([]byte("x")); got != c {
		t.Fatalf("same-second update ignored: %+v", got)
	}
}

func TestInvalidAndCapacity(t *testing.T) {
	// One shard: which new truck is refused at the cap depends on the order
	// in which shards run, which is deliberately unspecified.
	s := mustNew(t, Options{MaxTrucks: 2, Shards: 1})
	p := MakePosition(1, 1, 1, 0, 0)
	bad := p
	bad.Lat = 91 * geo.Scale
	r := s.Apply([]Update{
		{ID: nil, Position: p},
		{ID: make([]byte, 65), Position: p},
		{ID: []byte("b"), Position: bad},
		{ID: []byte("a"), Position: p},
		{ID: []byte("c"), Position: p},
		{ID: []byte("d"), Position: p},
		{ID: []byte("a"), Position: p},
	})
	want := Result{Inserted: 2, Updated: 1, Refused: 1, Invalid: 3}
	if r != want {
		t.Fatalf("result %+v, want %+v", r, want)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

type ref struct {
	id string
	h  float64
	p  Position
}

func bruteNearest(m model, lat, lon float64, k int, radiusM float64) []ref {
	var all []ref
	for id, p := range m {
		h := geo.Hav(lat, lon, p.LatDeg(), p.LonDeg())
		if radiusM > 0 && geo.HavToM(h) > radiusM {
			continue
		}
		all = append(all, ref{id, h, p})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].h < all[j].h })
	if len(all) > k {
		all = all[:k]
	}
	return all
}

func checkNearest(t *testing.T, s *Store, m model, lat, lon float64, k int, radiusM float64) {
	t.Helper()
	got := s.Nearest(lat, lon, k, radiusM, nil)
	want := bruteNearest(m, lat, lon, k, radiusM)
	if len(got) != len(want) {
		t.Fatalf("Nearest(%v,%v,k=%d,r=%v): %d results, want %d", lat, lon, k, radiusM, len(got), len(want))
	}
	for i := range got {
		wd := geo.HavToM(want[i].h)
		if math.Abs(got[i].DistM-wd) > 1e-6*wd+1e-6 {
			t.Fatalf("Nearest(%v,%v,k=%d): #%d is %s at %.6f m, want %s %+v at %.6f m", lat, lon, k, i, got[i].ID(), got[i].DistM, want[i].id, want[i].p, wd)
		}
		p := m[string(got[i].ID())]
		if p != got[i].Position {
			t.Fatalf("Nearest returned %s with %+v, stored %+v", got[i].ID(), got[i].Position, p)
		}
		if d := geo.DistanceM(lat, lon, p.LatDeg(), p.LonDeg()); math.Abs(d-got[i].DistM) > 1e-6*d+1e-6 {
			t.Fatalf("Nearest reported %v m for %s, actual %v m", got[i].DistM, got[i].ID(), d)
		}
		if i > 0 && got[i].DistM < got[i-1].DistM {
			t.Fatalf("results not sorted at %d", i)
		}
	}
}

func buildFleet(t *testing.T, g *fleetGen, n int, place func() (float64, float64)) (*Store, model) {
	s := mustNew(t, Options{})
	m := model{}
	batch := make([]Update, n)
	for i := range batch {
		lat, lon := place()
		batch[i] = Update{ID: id(i), Position: g.pos(lat, lon, 1000)}
	}
	s.Apply(batch)
	m.apply(batch)
	return s, m
}

func TestNearestBruteForce(t *testing.T) {
	g := newGen(t)
	s, m := buildFleet(t, g, size(20000), g.place)
	for i := 0; i < size(400); i++ {
		lat, lon := g.place()
		if i%4 == 0 {
			lat, lon = g.r.Float64()*180-90, g.r.Float64()*360-180
		}
		k := []int{1, 10, 100, 1000}[g.r.IntN(4)]
		radius := 0.0
		if i%3 == 0 {
			radius = []float64{50, 5000, 500000}[g.r.IntN(3)]
		}
		checkNearest(t, s, m, lat, lon, k, radius)
	}
	// Move everything a little and check again: the index follows.
	batch := make([]Update, 0, len(m))
	for k, p := range m {
		lat, lon := p.LatDeg()+(g.r.Float64()-0.5)*0.2, geo.NormLon(p.LonDeg()+(g.r.Float64()-0.5)*0.2)
		lat = math.Max(-90, math.Min(90, lat))
		batch = append(batch, Update{ID: []byte(k), Position: g.pos(lat, lon, 2000)})
	}
	s.Apply(batch)
	m.apply(batch)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < size(200); i++ {
		lat, lon := g.place()
		checkNearest(t, s, m, lat, lon, 10, 0)
	}
}

func TestNearestFarOutlier(t *testing.T) {
	g := newGen(t)
	// A US fleet with one truck in Sydney: from anywhere in the western
	// and southern Pacific, Sydney must come out nearest when it is.
	s, m := buildFleet(t, g, size(5000), func() (float64, float64) { return 25 + g.r.Float64()*24, -124 + g.r.Float64()*57 })
	syd := Update{ID: []byte("sydney"), Position: g.pos(-33.8688, 151.2093, 1000)}
	s.Apply([]Update{syd})
	m.apply([]Update{syd})
	for i := 0; i < size(200); i++ {
		lat, lon := g.r.Float64()*100-60, geo.NormLon(140+g.r.Float64()*110)
		checkNearest(t, s, m, lat, lon, 1, 0)
		checkNearest(t, s, m, lat, lon, 3, 0)
	}
	got := s.Nearest(-20, 170, 1, 0, nil)
	if len(got) != 1 || string(got[0].ID()) != "sydney" {
		t.Fatalf("from the Coral Sea, nearest is %v, want sydney", got)
	}
}

func TestNearestSparseAndEmpty(t *testing.T) {
	s := mustNew(t, Options{})
	if got := s.Nearest(0, 0, 10, 0, nil); len(got) != 0 {
		t.Fatalf("empty store gave %d results", len(got))
	}
	p := MakePosition(-89.99, 179.99, 1, 0, 0)
	s.Apply([]Update{{ID: []byte("south"), Position: p}})
	got := s.Nearest(89.99, 0, 5, 0, nil) // the other end of the world
	if len(got) != 1 || string(got[0].ID()) != "south" {
		t.Fatalf("got %v", got)
	}
}

func bruteWithin(m model, contains func(p Position) bool) []string {
	var ids []string
	for id, p := range m {
		if contains(p) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func collect(s *Store, rg Region) []string {
	var ids []string
	for h := range s.Within(rg) {
		ids = append(ids, string(h.ID()))
	}
	slices.Sort(ids)
	return ids
}

func TestWithinBruteForce(t *testing.T) {
	g := newGen(t)
	s, m := buildFleet(t, g, size(20000), g.place)
	for i := 0; i < size(300); i++ {
		lat, lon := g.place()
		radius := []float64{10, 200, 5000, 100000, 3000000}[g.r.IntN(5)]
		got := collect(s, Circle(lat, lon, radius))
		want := bruteWithin(m, func(p Position) bool {
			return geo.Hav(lat, lon, p.LatDeg(), p.LonDeg()) <= geo.MToHav(radius)
		})
		if !slices.Equal(got, want) {
			t.Fatalf("Circle(%v,%v,%v): %d hits, want %d", lat, lon, radius, len(got), len(want))
		}
	}
	for i := 0; i < size(300); i++ {
		lat, lon := g.place()
		dlat, dlon := g.r.Float64()*g.r.Float64()*20, g.r.Float64()*g.r.Float64()*40
		b := geo.Box{MinLat: math.Max(-90, lat-dlat), MaxLat: math.Min(90, lat+dlat),
			MinLon: geo.NormLon(lon - dlon), MaxLon: geo.NormLon(lon + dlon)}
		if i%10 == 0 {
			b = geo.Box{MinLat: -90, MinLon: -180, MaxLat: 90, MaxLon: 180}
		}
		got := collect(s, BoxRegion(b))
		want := bruteWithin(m, func(p Position) bool { return b.Contains(p.LatDeg(), p.LonDeg()) })
		if !slices.Equal(got, want) {
			t.Fatalf("Box(%+v): %d hits, want %d", b, len(got), len(want))
		}
	}
}

func TestWithinStopsEarly(t *testing.T) {
	g := newGen(t)
	s, _ := buildFleet(t, g, 5000, g.place)
	n := 0
	for range s.Within(BoxRegion(geo.Box{MinLat: -90, MinLon: -180, MaxLat: 90, MaxLon: 180})) {
		if n++; n == 7 {
			break
		}
	}
	if n != 7 {
		t.Fatalf("took %d", n)
	}
}

// TestConcurrent runs writers, readers and expiry together; run with -race.
func TestConcurrent(t *testing.T) {
	g := newGen(t)
	s := mustNew(t, Options{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		seed := g.r.Uint64()
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, 1))
			batch := make([]Update, 2000)
			for round := 0; round < 20; round++ {
				for i := range batch {
					batch[i] = Update{ID: id(r.IntN(10000)), Position: MakePosition(25+r.Float64()*24, -124+r.Float64()*57, int64(1000+round), 50, 90)}
				}
				s.Apply(batch)
			}
		})
	}
	wg.Go(func() {
		for i := 0; i < 200; i++ {
			s.Nearest(37, -95, 10, 0, nil)
			n := 0
			for range s.Within(Circle(37, -95, 500000)) {
				n++
			}
			s.Get(id(i))
		}
	})
	wg.Go(func() {
		for i := 0; i < 20; i++ {
			s.SetEpoch(uint32(i))
			s.Expire(3, nil)
			s.Delete(id(i))
			s.Stats()
		}
	})
	wg.Wait()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestDensity(t *testing.T) {
	g := newGen(t)
	s, m := buildFleet(t, g, size(20000), g.place)
	for _, factor := range []int{1, 3, 10} {
		for _, b := range []geo.Box{
			{MinLat: -90, MinLon: -180, MaxLat: 90, MaxLon: 180},
			{MinLat: 25, MinLon: -124, MaxLat: 49, MaxLon: -67},
			{MinLat: -10, MinLon: 170, MaxLat: 10, MaxLon: -170},
		} {
			cells := s.Density(b, factor, nil)
			total := 0
			for _, c := range cells {
				// Every truck counted in a cell is in that cell.
				in := 0
				for _, p := range m {
					lat, lon := p.LatDeg(), p.LonDeg()
					if lat >= c.MinLat && lat < c.MinLat+c.SizeDeg && lon >= c.MinLon && lon < c.MinLon+c.SizeDeg ||
						lat == 90 && c.MinLat+c.SizeDeg >= 90 && lon >= c.MinLon && lon < c.MinLon+c.SizeDeg {
						in++
					}
				}
				if in < c.Count {
					t.Fatalf("factor %d: cell %+v counts %d, holds %d", factor, c, c.Count, in)
				}
				total += c.Count
			}
			// Every truck inside the box is counted somewhere.
			inside := len(bruteWithin(m, func(p Position) bool { return b.Contains(p.LatDeg(), p.LonDeg()) }))
			if total < inside {
				t.Fatalf("factor %d box %+v: counted %d, box holds %d", factor, b, total, inside)
			}
		}
	}
}

func TestDeleteIfAndSetMaxTrucks(t *testing.T) {
	s := mustNew(t, Options{})
	p := MakePosition(1, 1, 100, 0, 0)
	s.Apply([]Update{{ID: []byte("a"), Position: p}})
	if s.DeleteIf([]byte("a"), 99) {
		t.Fatal("deleted a truck newer than the condition")
	}
	if !s.DeleteIf([]byte("a"), 100) {
		t.Fatal("did not delete a truck at the condition's ts")
	}
	s.SetMaxTrucks(1)
	r := s.Apply([]Update{{ID: []byte("a"), Position: p}, {ID: []byte("b"), Position: p}})
	if r.Inserted != 1 || r.Refused != 1 {
		t.Fatalf("cap 1: %+v", r)
	}
	s.SetMaxTrucks(0)
	if r := s.Apply([]Update{{ID: []byte("c"), Position: p}}); r.Inserted != 1 {
		t.Fatalf("cap lifted: %+v", r)
	}
}

func TestApplyFuncReportsPrevious(t *testing.T) {
	s := mustNew(t, Options{})
	a := MakePosition(1, 1, 100, 10, 0)
	b := MakePosition(2, 2, 200, 20, 90)
	old := MakePosition(3, 3, 50, 30, 180)
	s.Apply([]Update{{ID: []byte("x"), Position: a}})
	batch := []Update{{ID: []byte("x"), Position: b}, {ID: []byte("y"), Position: a}, {ID: []byte("x"), Position: old}}
	var mu sync.Mutex
	seen := map[int]Position{}
	had := map[int]bool{}
	s.ApplyFunc(batch, func(i int, prev Position, ok bool) {
		mu.Lock()
		seen[i], had[i] = prev, ok
		mu.Unlock()
	})
	if len(seen) != 2 || seen[0] != a || !had[0] || had[1] {
		t.Fatalf("hook saw %v %v; the stale update must not be reported", seen, had)
	}
}

// TestExpireByLastHeard: expiry reads the last-heard stamp, not ts; stale
// updates refresh it; headings survive the packing; and an epoch counter
// that wraps past HeardEpochs makes trucks look younger, never older.
func TestExpireByLastHeard(t *testing.T) {
	s := mustNew(t, Options{Shards: 2})
	put := func(id string, ts uint32) Result {
		return s.Apply([]Update{{ID: []byte(id), Position: Position{Lat: 1, Lon: 1, TS: ts, Heading: 359}}})
	}
	put("ancient", 1) // 1970: a clock that was never set, or a very late point
	put("chatty", 2_000_000_000)
	for e := uint32(1); e <= 5; e++ {
		s.SetEpoch(e)
		if r := put("chatty", 1_000_000_000); r.Stale != 1 { // late: stale, but heard
			t.Fatalf("epoch %d: %+v", e, r)
		}
		if n := s.Expire(5, nil); n != map[bool]int{true: 1, false: 0}[e == 5] {
			t.Fatalf("epoch %d: Expire(5) removed %d", e, n)
		}
	}
	if _, ok := s.Get([]byte("ancient")); ok {
		t.Fatal("ancient truck not expired after 5 epochs")
	}
	if p, ok := s.Get([]byte("chatty")); !ok || p.TS != 2_000_000_000 || p.Heading != 359 {
		t.Fatalf("chatty: %+v %v", p, ok)
	}
	// 5+HeardEpochs+1 looks like 1 epoch after the last stamp (5).
	s.SetEpoch(5 + HeardEpochs + 1)
	if n := s.Expire(2, nil); n != 0 {
		t.Fatalf("wrapped epoch expired %d", n)
	}
	s.SetEpoch(5 + 2)
	if n := s.Expire(2, nil); n != 1 {
		t.Fatalf("Expire(2) two epochs on removed %d", n)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestAttrs: attributes are stored with the position they came with,
// cleared by a position without them, kept by a stale update's truck, and
// cost nothing for trucks that never send them.
func TestAttrs(t *testing.T) {
	s := mustNew(t, Options{Shards: 1})
	pos := func(ts uint32) Position { return Position{Lat: 1, Lon: 1, TS: ts} }
	var alt fleet.Attrs
	alt.Set(fleet.Altitude, 1234)
	s.Apply([]Update{{ID: []byte("plain"), Position: pos(10)}})
	if st := s.Stats(); st.Attrs != 0 {
		t.Fatalf("a fleet without attributes costs %d bytes of them", st.Attrs)
	}
	s.Apply([]Update{{ID: []byte("alt"), Position: pos(10), Attrs: alt}})
	var got fleet.Attrs
	if _, ok := s.GetAttrs([]byte("alt"), &got); !ok || got != alt {
		t.Fatalf("GetAttrs = %+v, want %+v", got, alt)
	}
	if _, ok := s.GetAttrs([]byte("plain"), &got); !ok || got != (fleet.Attrs{}) {
		t.Fatalf("plain truck has attributes %+v", got)
	}
	s.Apply([]Update{{ID: []byte("alt"), Position: pos(5)}}) // stale: keeps the stored position and its altitude
	if s.GetAttrs([]byte("alt"), &got); got != alt {
		t.Fatalf("stale update changed attributes: %+v", got)
	}
	s.Apply([]Update{{ID: []byte("alt"), Position: pos(20)}}) // newer, without altitude
	if s.GetAttrs([]byte("alt"), &got); got != (fleet.Attrs{}) {
		t.Fatalf("a position without altitude kept the old one: %+v", got)
	}
	s.Apply([]Update{{ID: []byte("alt"), Position: pos(30), Attrs: alt}})
	s.Delete([]byte("alt"))
	s.Apply([]Update{{ID: []byte("new"), Position: pos(30)}}) // reuses the freed slot
	if s.GetAttrs([]byte("new"), &got); got != (fleet.Attrs{}) {
		t.Fatalf("a reused slot kept the old truck's attributes: %+v", got)
	}
	var bad fleet.Attrs
	bad.Set(fleet.Altitude, fleet.Altitude.Max()+1)
	if r := s.Apply([]Update{{ID: []byte("bad"), Position: pos(1), Attrs: bad}}); r.Invalid != 1 {
		t.Fatalf("out-of-range altitude: %+v", r)
	}
}

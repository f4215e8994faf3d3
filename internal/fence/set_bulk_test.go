package fence

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestPutMany: PutMany leaves a Set as the same Puts one by one would
// (IDs, zones, names), on random names with repeats, over a Set that
// already has zones, deleted and purged names; and refuses bad input
// without changing anything.
func TestPutMany(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	zone := func(i int) *Zone {
		z, err := Parse(fmt.Appendf(nil, `{"type":"Polygon","coordinates":[[[0,0],[%d,0],[%d,1],[0,0]]]}`, i+1, i+1))
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	for round := range 20 {
		var a, b Set
		for i := range 30 {
			name := fmt.Sprintf("z%d", r.IntN(40))
			switch r.IntN(4) {
			case 0:
				a.Delete(name)
				b.Delete(name)
			case 1:
				a.Delete(name)
				b.Delete(name)
				a.Purge(name)
				b.Purge(name)
			default:
				z := zone(i)
				a.Put(name, z)
				b.Put(name, z)
			}
		}
		var names []string
		var zs []*Zone
		for i := range r.IntN(50) {
			names = append(names, fmt.Sprintf("z%d", r.IntN(80)))
			zs = append(zs, zone(100+i))
		}
		want := make([]int, len(names))
		for i := range names {
			want[i] = a.Put(names[i], zs[i])
		}
		got := b.PutMany(names, zs)
		if len(names) > 0 && len(got) != len(want) {
			t.Fatalf("round %d: PutMany returned %v", round, got)
		}
		for i := range want {
			// A repeated name's earlier Put may return an ID that its
			// later one keeps: compare the final bindings.
			if id, _ := b.ZoneID(names[i]); id != got[i] {
				t.Fatalf("round %d: %s: id %d, bound to %d", round, names[i], got[i], id)
			}
		}
		ma, mb := &a.mu, &b.mu
		if fmt.Sprint(ma.ids, ma.names, ma.free, a.Names()) != fmt.Sprint(mb.ids, mb.names, mb.free, b.Names()) {
			t.Fatalf("round %d: Puts %v %v %v; PutMany %v %v %v", round, ma.ids, ma.free, a.Names(), mb.ids, mb.free, b.Names())
		}
		for id := range ma.names {
			if a.Zone(id) != b.Zone(id) {
				t.Fatalf("round %d: zone %d differs", round, id)
			}
		}
		if err := a.check(); err != nil {
			t.Fatalf("round %d: Puts: %v", round, err)
		}
		if err := b.check(); err != nil {
			t.Fatalf("round %d: PutMany: %v", round, err)
		}
	}
	var s Set
	s.Put("keep", zone(0))
	v := s.Version()
	for _, bad := range []struct {
		names []string
		zs    []*Zone
	}{
		{[]string{"a", "b"}, []*Zone{zone(1)}},
		{[]string{"a", "b c"}, []*Zone{zone(1), zone(2)}},
		{[]string{"a", "b"}, []*Zone{zone(1), nil}},
	} {
		if ids := s.PutMany(bad.names, bad.zs); ids != nil || s.Version() != v || s.Len() != 1 {
			t.Fatalf("PutMany(%v) = %v, version %d → %d, %d zones", bad.names, ids, v, s.Version(), s.Len())
		}
	}
}

package fence

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// benchZones are the benchmarked shapes, from a fixed seed.
func benchZones(b *testing.B) []struct {
	name string
	z    *Zone
} {
	r := rand.New(rand.NewPCG(1, 2))
	mk := func(rings ...[][2]float64) *Zone {
		z, err := NewPolygon(rings)
		if err != nil {
			b.Fatal(err)
		}
		return z
	}
	return []struct {
		name string
		z    *Zone
	}{
		{"rect", mk(rect(-97.8, 30.2, -97.6, 30.4))},
		// a jagged star: radii 0.5–1 of 0.05° (~5 km), 1,000 vertices
		{"star1000", mk(star(r, 1000, -97.7, 30.3, 0.05, 0.5))},
		// a city-like outline, 1,000 vertices
		{"city1000", mk(blob(r, 1000, -97.7, 30.3, 0.05))},
		// a 1 km wide road corridor some 50 km long, 1,000 vertices
		{"corridor1000", mk(corridor(r, 1000, -97.7, 30.3, 0.001, 0.0045))},
		{"comb1000", mk(comb(r, 250, -97.7, 30.3, 0.0002))},
	}
}

// benchPoints are points uniform over the zone's box grown by 20% each
// way (so some 30% fall outside the box).
func benchPoints(z *Zone, grow float64) [][2]float64 {
	r := rand.New(rand.NewPCG(3, 4))
	w, h := z.maxX-z.minX, z.maxY-z.minY
	ps := make([][2]float64, 4096)
	for i := range ps {
		ps[i] = [2]float64{
			z.minX - grow*w + (1+2*grow)*w*r.Float64(),
			z.minY - grow*h + (1+2*grow)*h*r.Float64(),
		}
	}
	return ps
}

func BenchmarkContains(b *testing.B) {
	for _, bz := range benchZones(b) {
		b.Run(bz.name, func(b *testing.B) {
			z := bz.z
			ps := benchPoints(z, 0.2)
			in := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				p := ps[i&4095]
				if z.Contains(p[1], p[0]) {
					in++
				}
			}
			b.ReportMetric(float64(z.NumVertices()), "vertices")
			b.ReportMetric(float64(z.MemBytes()), "zone-bytes")
			if in == 0 && z.NumVertices() > 0 && b.N >= len(ps) { // a whole pass over the points, some inside

				b.Fatal("no point inside")
			}
		})
	}
}

func BenchmarkDistanceM(b *testing.B) {
	for _, bz := range benchZones(b) {
		for _, where := range []struct {
			name string
			grow float64
		}{{"around", 0.5}, {"far", 20}} {
			b.Run(bz.name+"/"+where.name, func(b *testing.B) {
				z := bz.z
				ps := benchPoints(z, where.grow)
				sum := 0.0
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					p := ps[i&4095]
					sum += z.DistanceM(p[1], p[0])
				}
				if math.IsNaN(sum) || sum == 0 {
					b.Fatal("bad distances")
				}
			})
		}
	}
}

// BenchmarkNear is near("zone", 500) for the same points: far-away zones
// are answered from the bounding box.
func BenchmarkNear(b *testing.B) {
	for _, bz := range benchZones(b) {
		for _, where := range []struct {
			name string
			grow float64
		}{{"around", 0.5}, {"far", 20}} {
			b.Run(bz.name+"/"+where.name, func(b *testing.B) {
				z := bz.z
				ps := benchPoints(z, where.grow)
				n := 0
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					p := ps[i&4095]
					if z.Near(p[1], p[0], 500) {
						n++
					}
				}
				_ = n
			})
		}
	}
}

// BenchmarkSetInside is the rules VM's call: an atomic snapshot load and
// a bounds check in front of Contains.
func BenchmarkSetInside(b *testing.B) {
	var s Set
	bz := benchZones(b)[1]
	id := s.Put("star", bz.z)
	ps := benchPoints(bz.z, 0.2)
	in := 0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p := ps[i&4095]
		if s.Inside(id, p[1], p[0]) {
			in++
		}
	}
	if in == 0 && b.N >= len(ps) { // a whole pass over the points, some inside
		b.Fatal("no point inside")
	}
}

func BenchmarkParse(b *testing.B) {
	z := benchZones(b)[1].z
	data := z.AppendGeoJSON(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetPut replaces one zone of a Set that holds 10,000 (what a
// zone PUT costs the Set): O(1), where the copy-on-write Set it replaced
// cloned every zone, name and ID on each write. The "new" case binds a
// new name each op (growing the Set).
func BenchmarkSetPut(b *testing.B) {
	z := mustRect(b, 0, 0, 1, 1)
	fill := func() *Set {
		s := new(Set)
		for i := range 10_000 {
			s.Put(fmt.Sprintf("zone-%05d", i), z)
		}
		return s
	}
	b.Run("replace", func(b *testing.B) {
		s := fill()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if s.Put(fmt.Sprintf("zone-%05d", i%10_000), z) < 0 {
				b.Fatal("Put refused")
			}
		}
	})
	b.Run("new", func(b *testing.B) {
		s := fill()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i%100_000 == 99_999 { // stay well within MaxIDs
				b.StopTimer()
				s = fill()
				b.StartTimer()
			}
			if s.Put(fmt.Sprintf("new-%07d", i), z) < 0 {
				b.Fatal("Put refused")
			}
		}
	})
}

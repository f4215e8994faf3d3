package geo

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSimplify checks Douglas–Peucker's promise against brute force: every
// dropped point is within the tolerance of the kept polyline (measured
// with the same projection), endpoints are kept, indexes increase, and a
// straight line collapses to its ends.
func TestSimplify(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for range 200 {
		n := r.IntN(300)
		lat, lon := make([]float64, n), make([]float64, n)
		la, lo := 40+r.Float64(), 179.9+r.Float64()*0.05 // across the antimeridian too
		for i := range n {
			la, lo = Destination(la, lo, r.Float64()*360, r.Float64()*300)
			lat[i], lon[i] = la, lo
		}
		at := func(i int) (float64, float64) { return lat[i], lon[i] }
		tol := r.Float64() * 200
		keep := Simplify(n, at, tol, nil)
		if n > 0 && (keep[0] != 0 || keep[len(keep)-1] != n-1) {
			t.Fatalf("endpoints not kept: %v", keep)
		}
		for k := 1; k < len(keep); k++ {
			a, b := keep[k-1], keep[k]
			if b <= a {
				t.Fatalf("indexes not increasing: %v", keep)
			}
			for i := a + 1; i < b; i++ {
				if d := segDist(lat[a], lon[a], lat[b], lon[b], lat[i], lon[i]); d > tol*1.0001+1e-6 {
					t.Fatalf("dropped point %d is %.2f m from the line, tolerance %.2f", i, d, tol)
				}
			}
		}
	}
	// A straight line (one bearing, evenly spaced) keeps only its ends.
	var lat, lon []float64
	la, lo := 10.0, 20.0
	for range 50 {
		lat, lon = append(lat, la), append(lon, lo)
		la, lo = Destination(la, lo, 90, 100)
	}
	if keep := Simplify(len(lat), func(i int) (float64, float64) { return lat[i], lon[i] }, 5, nil); len(keep) != 2 {
		t.Fatalf("straight line kept %v", keep)
	}
}

// segDist is the distance in metres from p to segment ab on the projection
// Simplify uses.
func segDist(aLat, aLon, bLat, bLon, lat, lon float64) float64 {
	kx := EarthRadiusM * math.Cos(aLat*math.Pi/180) * math.Pi / 180
	ky := EarthRadiusM * math.Pi / 180
	bx, by := lonDelta(bLon, aLon)*kx, (bLat-aLat)*ky
	x, y := lonDelta(lon, aLon)*kx, (lat-aLat)*ky
	f := func(t float64) float64 { return math.Hypot(x-t*bx, y-t*by) }
	lo, hi := 0.0, 1.0 // the distance is convex in t: ternary search
	for range 200 {
		m1, m2 := lo+(hi-lo)/3, hi-(hi-lo)/3
		if f(m1) < f(m2) {
			hi = m2
		} else {
			lo = m1
		}
	}
	return f((lo + hi) / 2)
}

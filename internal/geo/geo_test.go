package geo

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestDistanceM(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		want, tol              float64
	}{
		{"same point", 40.7128, -74.006, 40.7128, -74.006, 0, 1e-9},
		{"one degree of latitude", 0, 0, 1, 0, EarthRadiusM * math.Pi / 180, 1e-6},
		{"quarter meridian", 0, 0, 90, 0, EarthRadiusM * math.Pi / 2, 1e-6},
		{"antipodes", 0, 0, 0, 180, EarthRadiusM * math.Pi, 1e-6},
		{"across the antimeridian", 0, 179.9999, 0, -179.9999, EarthRadiusM * 0.0002 * math.Pi / 180, 1e-6},
		{"pole to pole via any lon", 90, 10, -90, -170, EarthRadiusM * math.Pi, 1e-6},
		// Reference figures from the haversine formula on R=6371008.8 m.
		{"New York to London", 40.7128, -74.006, 51.5074, -0.1278, 5570248, 100},
		{"Sydney to Honolulu", -33.8688, 151.2093, 21.3069, -157.8583, 8158000, 20000},
	}
	for _, tt := range tests {
		got := DistanceM(tt.lat1, tt.lon1, tt.lat2, tt.lon2)
		if math.Abs(got-tt.want) > tt.tol {
			t.Errorf("%s: DistanceM = %.3f, want %.3f ± %g", tt.name, got, tt.want, tt.tol)
		}
		back := DistanceM(tt.lat2, tt.lon2, tt.lat1, tt.lon1)
		if math.Abs(back-got) > 1e-6 {
			t.Errorf("%s: not symmetric: %v vs %v", tt.name, got, back)
		}
	}
}

func TestFixedRoundTrip(t *testing.T) {
	for _, v := range []float64{0, 1e-7, -1e-7, 40.7128, -74.006, 89.9999999, -90, 90, 180, -180, 179.99999995, 123.456789012} {
		got := FromFixed(ToFixed(v))
		if math.Abs(got-v) > 5.1e-8 {
			t.Errorf("round trip %v -> %v", v, got)
		}
	}
	if ToFixed(1e10) != math.MaxInt32 || ToFixed(-1e10) != math.MinInt32 {
		t.Error("ToFixed does not saturate")
	}
}

func TestMToHav(t *testing.T) {
	for _, m := range []float64{0.01, 1, 1000, 5000, 1e6, 1e7, 2e7} {
		if got := HavToM(MToHav(m)); math.Abs(got-m) > 1e-6*m+1e-6 {
			t.Errorf("HavToM(MToHav(%v)) = %v", m, got)
		}
	}
	if MToHav(-1) != 0 || MToHav(1e9) != 1 {
		t.Error("MToHav does not clamp")
	}
}

func TestDestinationBearing(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < 2000; i++ {
		lat, lon := r.Float64()*170-85, r.Float64()*360-180
		b, d := r.Float64()*360, r.Float64()*500000+1
		lat2, lon2 := Destination(lat, lon, b, d)
		if got := DistanceM(lat, lon, lat2, lon2); math.Abs(got-d) > 1e-6*d+1e-3 {
			t.Fatalf("Destination distance %v, want %v", got, d)
		}
		if got := Bearing(lat, lon, lat2, lon2); wrapDiff(got, b) > 1e-6 {
			t.Fatalf("Bearing %v, want %v", got, b)
		}
	}
}

// bruteBoxMinHav samples the box densely; it is an upper bound on the true
// minimum that converges to it.
func bruteBoxMinHav(lat, lon float64, b Box) float64 {
	const n = 200
	best := 1.0
	span := b.MaxLon - b.MinLon
	if span < 0 {
		span += 360
	}
	for i := 0; i <= n; i++ {
		q := b.MinLat + (b.MaxLat-b.MinLat)*float64(i)/n
		for j := 0; j <= n; j++ {
			l := NormLon(b.MinLon + span*float64(j)/n)
			if h := Hav(lat, lon, q, l); h < best {
				best = h
			}
		}
	}
	return best
}

func randBox(r *rand.Rand) Box {
	lat1, lat2 := r.Float64()*180-90, r.Float64()*180-90
	if lat1 > lat2 {
		lat1, lat2 = lat2, lat1
	}
	if r.IntN(4) == 0 { // small boxes are the common case
		lat2 = math.Min(90, lat1+r.Float64())
	}
	minLon := r.Float64()*360 - 180
	maxLon := NormLon(minLon + r.Float64()*r.Float64()*359)
	return Box{lat1, minLon, lat2, maxLon}
}

func TestBoxMinHavBruteForce(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	n := 300
	if testing.Short() {
		n = 40
	}
	for i := 0; i < n; i++ {
		b := randBox(r)
		lat, lon := r.Float64()*180-90, r.Float64()*360-180
		if i%3 == 0 { // near the poles
			lat = math.Copysign(89+r.Float64(), lat)
		}
		got := BoxMinHav(lat, lon, b)
		brute := bruteBoxMinHav(lat, lon, b)
		if got > brute*(1+1e-9)+1e-15 {
			t.Fatalf("box %+v point %v,%v: BoxMinHav %v above sampled minimum %v", b, lat, lon, got, brute)
		}
		// Sampling is coarse: the true minimum is close to the sampled one.
		span := b.MaxLon - b.MinLon
		if span < 0 {
			span += 360
		}
		step := math.Max(b.MaxLat-b.MinLat, span) / 200 * EarthRadiusM * rad
		if HavToM(brute)-HavToM(got) > step+1 {
			t.Fatalf("box %+v point %v,%v: BoxMinHav %v m far below sampled %v m", b, lat, lon, HavToM(got), HavToM(brute))
		}
	}
}

func TestMeridianMinAngle(t *testing.T) {
	if got := MeridianMinAngle(0, math.Pi/2); math.Abs(got-math.Pi/2) > 1e-12 {
		t.Errorf("equator, 90°: %v", got)
	}
	if got := MeridianMinAngle(80*rad, math.Pi); math.Abs(got-10*rad) > 1e-12 {
		t.Errorf("80N, 180°: %v, want the pole at 10°", got)
	}
	if got := MeridianMinAngle(0, 10*rad); math.Abs(got-10*rad) > 1e-12 {
		t.Errorf("equator, 10°: %v", got)
	}
}

// FuzzBoxMinHav checks that the box distance never exceeds the distance to
// any point inside the box, and is zero for points inside it.
func FuzzBoxMinHav(f *testing.F) {
	f.Add(40.0, -74.0, 39.0, -75.0, 41.0, -73.0, 0.5, 0.5)
	f.Add(0.0, 179.9999, -1.0, 179.0, 1.0, -179.0, 0.1, 0.9)
	f.Add(89.9, 0.0, 80.0, 170.0, 85.0, -170.0, 0.3, 0.3)
	f.Add(-89.0, 0.0, -90.0, -180.0, -88.0, 180.0, 0.0, 1.0)
	f.Fuzz(func(t *testing.T, lat, lon, lat1, lon1, lat2, lon2, u, v float64) {
		for _, x := range []float64{lat, lon, lat1, lon1, lat2, lon2, u, v} {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return
			}
		}
		clamp := func(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }
		lat, lat1, lat2 = clamp(lat, -90, 90), clamp(lat1, -90, 90), clamp(lat2, -90, 90)
		lon, lon1, lon2 = clamp(lon, -180, 180), clamp(lon1, -180, 180), clamp(lon2, -180, 180)
		u, v = math.Abs(math.Mod(u, 1)), math.Abs(math.Mod(v, 1))
		if lat1 > lat2 {
			lat1, lat2 = lat2, lat1
		}
		b := Box{lat1, lon1, lat2, lon2}
		span := lon2 - lon1
		if span < 0 {
			span += 360
		}
		q, l := lat1+(lat2-lat1)*u, NormLon(lon1+span*v)
		if !b.Contains(q, l) && math.Abs(l) < 180 {
			t.Fatalf("sample %v,%v not in box %+v", q, l, b)
		}
		h := BoxMinHav(lat, lon, b)
		if h < 0 || h > 1 || math.IsNaN(h) {
			t.Fatalf("BoxMinHav out of [0,1]: %v", h)
		}
		if d := Hav(lat, lon, q, l); h > d*(1+1e-9)+1e-15 {
			t.Fatalf("BoxMinHav %v > hav to inner point %v (box %+v, point %v,%v, inner %v,%v)", h, d, b, lat, lon, q, l)
		}
		if b.Contains(lat, lon) && h != 0 {
			t.Fatalf("point inside but BoxMinHav = %v", h)
		}
	})
}

func TestDestinationHeading(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for range 10000 {
		lat, lon := r.Float64()*170-85, r.Float64()*360-180
		brg, d := r.Float64()*360, r.Float64()*2e6
		lat2, lon2, head := DestinationHeading(lat, lon, brg, d)
		if !(lat2 >= -90 && lat2 <= 90 && lon2 >= -180 && lon2 < 180) {
			t.Fatalf("DestinationHeading(%v,%v,%v,%v) = %v,%v out of range", lat, lon, brg, d, lat2, lon2)
		}
		if got := DistanceM(lat, lon, lat2, lon2); math.Abs(got-d) > 1e-6*max(d, 1000) {
			t.Fatalf("distance to DestinationHeading(%v,%v,%v,%v) = %v", lat, lon, brg, d, got)
		}
		if d < 1000 {
			continue
		}
		if got := Bearing(lat, lon, lat2, lon2); wrapDiff(got, brg) > 1e-5 {
			t.Fatalf("bearing to DestinationHeading(%v,%v,%v,%v) = %v", lat, lon, brg, d, got)
		}
		// The arrival heading is the reverse of the bearing back.
		if back := Bearing(lat2, lon2, lat, lon); wrapDiff(head, NormDeg(back+180)) > 1e-5 {
			t.Fatalf("heading at DestinationHeading(%v,%v,%v,%v) = %v, reverse bearing %v", lat, lon, brg, d, head, back+180)
		}
	}
}

func TestNormDegLon(t *testing.T) {
	for _, tt := range []struct{ in, deg, lon float64 }{
		{0, 0, 0},
		{360, 0, 0},
		{-1e-15, 0, -1e-15},
		{-90, 270, -90},
		{540, 180, -180},
		{180, 180, -180},
		{-180, 180, -180},
		{725, 5, 5},
	} {
		if got := NormDeg(tt.in); got != tt.deg {
			t.Errorf("NormDeg(%v) = %v, want %v", tt.in, got, tt.deg)
		}
		if got := NormLon(tt.in); got != tt.lon {
			t.Errorf("NormLon(%v) = %v, want %v", tt.in, got, tt.lon)
		}
	}
}

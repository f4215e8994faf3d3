package sim

import (
	"math"
	"testing"
)

func TestHaversine(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		wantKm, tolKm          float64
	}{
		{"same point", 40.7128, -74.006, 40.7128, -74.006, 0, 1e-9},
		{"NYC-LA", 40.7128, -74.006, 34.0522, -118.2437, 3936, 5},
		{"London-Paris", 51.5074, -0.1278, 48.8566, 2.3522, 343.5, 1},
		{"1 degree of latitude", 0, 0, 1, 0, 111.195, 0.01},
		{"antimeridian", 0, 179.5, 0, -179.5, 111.195, 0.01},
		{"antipodes", 0, 0, 0, 180, math.Pi * earthRadiusKm, 1e-6},
	}
	for _, tt := range tests {
		got := haversineKm(tt.lat1, tt.lon1, tt.lat2, tt.lon2)
		if math.Abs(got-tt.wantKm) > tt.tolKm {
			t.Errorf("%s: haversineKm = %.4f, want %.4f ± %g", tt.name, got, tt.wantKm, tt.tolKm)
		}
	}
}

func TestBearing(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		want                   float64
	}{
		{"north", 10, 20, 11, 20, 0},
		{"south", 10, 20, 9, 20, 180},
		{"east on equator", 0, 0, 0, 1, 90},
		{"west on equator", 0, 0, 0, -1, 270},
		{"east across antimeridian", 0, 179.5, 0, -179.5, 90},
		{"NYC to LA", 40.7128, -74.006, 34.0522, -118.2437, 273.7},
		{"same point", 5, 5, 5, 5, 0},
	}
	for _, tt := range tests {
		got := bearingDeg(tt.lat1, tt.lon1, tt.lat2, tt.lon2)
		if angleDiff(got, tt.want) > 0.1 || got < 0 || got >= 360 {
			t.Errorf("%s: bearingDeg = %.3f, want %.3f", tt.name, got, tt.want)
		}
	}
}

func TestDestinationRoundTrip(t *testing.T) {
	r, _ := testRand(t)
	for range 10000 {
		lat := r.Float64()*170 - 85
		lon := r.Float64()*360 - 180
		brg := r.Float64() * 360
		d := r.Float64() * 2000
		lat2, lon2, head := destinationHeading(lat, lon, brg, d)
		if !(lat2 >= -90 && lat2 <= 90 && lon2 >= -180 && lon2 < 180) {
			t.Fatalf("destination(%v,%v,%v,%v) = %v,%v out of range", lat, lon, brg, d, lat2, lon2)
		}
		if got := haversineKm(lat, lon, lat2, lon2); math.Abs(got-d) > 1e-6*max(d, 1) {
			t.Fatalf("distance to destination(%v,%v,%v,%v) = %v", lat, lon, brg, d, got)
		}
		if d < 1 {
			continue
		}
		if got := bearingDeg(lat, lon, lat2, lon2); angleDiff(got, brg) > 1e-5 {
			t.Fatalf("bearing to destination(%v,%v,%v,%v) = %v", lat, lon, brg, d, got)
		}
		// The arrival heading is the reverse of the bearing back.
		back := bearingDeg(lat2, lon2, lat, lon)
		if angleDiff(head, back+180) > 1e-5 {
			t.Fatalf("heading at destination(%v,%v,%v,%v) = %v, reverse bearing %v", lat, lon, brg, d, head, back+180)
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
		if got := normDeg(tt.in); got != tt.deg {
			t.Errorf("normDeg(%v) = %v, want %v", tt.in, got, tt.deg)
		}
		if got := normLon(tt.in); got != tt.lon {
			t.Errorf("normLon(%v) = %v, want %v", tt.in, got, tt.lon)
		}
	}
}

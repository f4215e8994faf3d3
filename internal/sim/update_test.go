package sim

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/geo"
)

func TestIDWidth(t *testing.T) {
	for _, tt := range []struct{ n, want int }{
		{1, 7}, {10, 7}, {10000, 7}, {10000000, 7}, {10000001, 8},
		{99999999, 8}, {100000000, 8}, {100000001, 9}, {math.MaxUint32, 10},
	} {
		if got := IDWidth(tt.n); got != tt.want {
			t.Errorf("IDWidth(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestAppendID(t *testing.T) {
	for _, tt := range []struct {
		i     uint32
		width int
		want  string
	}{
		{0, 7, "truck-0000000"},
		{42, 7, "truck-0000042"},
		{9999999, 7, "truck-9999999"},
		{10000000, 8, "truck-10000000"},
		{42, 8, "truck-00000042"},
		{math.MaxUint32, 10, "truck-4294967295"},
		{123, 1, "truck-123"},
	} {
		if got := string(AppendID([]byte("x"), tt.i, tt.width)); got != "x"+tt.want {
			t.Errorf("AppendID(%d, %d) = %q, want %q", tt.i, tt.width, got, "x"+tt.want)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	for _, tt := range []struct {
		u    Update
		want string
	}{
		{Update{Truck: 42, Lat: 40.7128, Lon: -74.006, TS: 1764000000, Speed: 52.5, Heading: 90},
			`{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}`},
		{Update{Truck: 1, Lat: 0, Lon: -0.0, TS: 0, Speed: 0, Heading: 0},
			`{"id":"truck-0000001","lat":0,"lon":0,"ts":0,"speed":0.0,"heading":0}`},
		{Update{Truck: 7, Lat: -33.86881234567, Lon: 151.20929999999, TS: 1, Speed: 99.96, Heading: 359.6},
			`{"id":"truck-0000007","lat":-33.8688123,"lon":151.2093,"ts":1,"speed":100.0,"heading":0}`},
		{Update{Truck: 8, Lat: -0.00000004, Lon: -0.00000005, Speed: 0.04, Heading: 0.4},
			`{"id":"truck-0000008","lat":0,"lon":-0.0000001,"ts":0,"speed":0.0,"heading":0}`},
		{Update{Truck: 9, Lat: 90, Lon: -180, Speed: 110.25, Heading: 180.5},
			`{"id":"truck-0000009","lat":90,"lon":-180,"ts":0,"speed":110.3,"heading":181}`},
		{Update{Truck: 10, Lat: math.NaN(), Lon: math.Inf(1), Speed: math.Inf(-1), Heading: math.NaN()},
			`{"id":"truck-0000010","lat":0,"lon":0,"ts":0,"speed":0,"heading":0}`},
		{Update{Truck: 11, Lat: 1e12, Lon: -2.5e11, Speed: 1e15, Heading: -90.2},
			`{"id":"truck-0000011","lat":1000000000000.0000000,"lon":-250000000000.0000000,"ts":0,"speed":1000000000000000.0,"heading":270}`},
	} {
		got := string(tt.u.AppendJSON(nil, 7))
		if got != tt.want {
			t.Errorf("AppendJSON(%+v)\n got %s\nwant %s", tt.u, got, tt.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("AppendJSON(%+v) = %s: invalid JSON", tt.u, got)
		}
	}
}

// wireUpdate is the JSON line as a server decodes it.
type wireUpdate struct {
	ID      string  `json:"id"`
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	TS      int64   `json:"ts"`
	Speed   float64 `json:"speed"`
	Heading float64 `json:"heading"`
}

// TestAppendNDJSONFleet renders real fleet batches and decodes them back
// with encoding/json.
func TestAppendNDJSONFleet(t *testing.T) {
	f, err := NewFleet(FleetOptions{Trucks: 3000, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1764000000, 0)
	var us []Update
	var buf []byte
	for range 3 {
		now = now.Add(7 * time.Second)
		us = f.Next(us[:0], f.Len(), now)
		buf = AppendNDJSON(buf[:0], us, f.IDWidth())
		lines := bytes.Split(bytes.TrimSuffix(buf, []byte{'\n'}), []byte{'\n'})
		if len(lines) != len(us) {
			t.Fatalf("%d lines for %d updates", len(lines), len(us))
		}
		for i, line := range lines {
			var w wireUpdate
			if err := json.Unmarshal(line, &w); err != nil {
				t.Fatalf("line %d %s: %v", i, line, err)
			}
			checkWire(t, &w, &us[i], f.IDWidth())
		}
	}
}

func checkWire(t *testing.T, w *wireUpdate, u *Update, width int) {
	t.Helper()
	wantID := string(AppendID(nil, u.Truck, width))
	h := math.Round(geo.NormDeg(u.Heading))
	if h == 360 {
		h = 0
	}
	if w.ID != wantID || w.TS != u.TS || math.Abs(w.Lat-u.Lat) > 0.5e-7+1e-12 ||
		math.Abs(w.Lon-u.Lon) > 0.5e-7+1e-12 || math.Abs(w.Speed-u.Speed) > 0.05+1e-9 || w.Heading != h {
		t.Fatalf("decoded %+v from %+v", *w, *u)
	}
}

func TestAppendNDJSONAllocs(t *testing.T) {
	f, err := NewFleet(FleetOptions{Trucks: 1000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	us := f.Next(nil, 1000, time.Unix(1764000000, 0))
	buf := make([]byte, 0, 1000*lineBytesEstimate)
	allocs := testing.AllocsPerRun(10, func() { buf = AppendNDJSON(buf[:0], us, 7) })
	if allocs != 0 {
		t.Errorf("AppendNDJSON: %v allocs per batch, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(10, func() { us = f.Next(us[:0], 1000, time.Unix(1764000001, 0)) })
	if allocs != 0 {
		t.Errorf("Fleet.Next: %v allocs per batch, want 0", allocs)
	}
}

// FuzzAppendJSON: whatever the numbers, the line is valid JSON that decodes
// to the update, rounded.
func FuzzAppendJSON(f *testing.F) {
	f.Add(uint32(42), 40.7128, -74.006, int64(1764000000), 52.5, 90.0)
	f.Add(uint32(0), -90.0, 180.0, int64(-1), 0.05, 359.5)
	f.Add(uint32(math.MaxUint32), 1e300, -1e-300, int64(math.MinInt64), -0.04, -720.4)
	f.Fuzz(func(t *testing.T, truck uint32, lat, lon float64, ts int64, speed, heading float64) {
		u := Update{Truck: truck, Lat: lat, Lon: lon, TS: ts, Speed: speed, Heading: heading}
		line := u.AppendJSON(nil, 7)
		var w wireUpdate
		if err := json.Unmarshal(line, &w); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		fin := func(x float64) float64 {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return 0
			}
			return x
		}
		want := wireUpdate{ID: string(AppendID(nil, truck, 7)), TS: ts}
		if w.ID != want.ID || w.TS != ts {
			t.Fatalf("%s: id/ts decoded as %q %d", line, w.ID, w.TS)
		}
		for _, c := range []struct {
			name      string
			got, want float64
			tol       float64
		}{
			{"lat", w.Lat, fin(lat), 0.5e-7},
			{"lon", w.Lon, fin(lon), 0.5e-7},
			{"speed", w.Speed, fin(speed), 0.05},
		} {
			if d := math.Abs(c.got - c.want); d > c.tol*(1+1e-9)+math.Abs(c.want)*1e-15 {
				t.Fatalf("%s: %s %v decoded as %v", line, c.name, c.want, c.got)
			}
		}
		if !(w.Heading >= 0 && w.Heading < 360 && w.Heading == math.Trunc(w.Heading)) {
			t.Fatalf("%s: heading %v", line, w.Heading)
		}
		if h := fin(heading); !math.IsNaN(heading) && !math.IsInf(heading, 0) && angleDiff(w.Heading, h) > 0.5+1e-9*math.Abs(h) {
			t.Fatalf("%s: heading %v decoded as %v", line, heading, w.Heading)
		}
	})
}

func BenchmarkAppendNDJSON(b *testing.B) {
	const batch = 10000
	f, err := NewFleet(FleetOptions{Trucks: batch, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	us := f.Next(nil, batch, time.Unix(1764000000, 0))
	us = f.Next(us[:0], batch, time.Unix(1764000001, 0))
	buf := make([]byte, 0, batch*lineBytesEstimate)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendNDJSON(buf[:0], us, f.IDWidth())
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "updates/s")
	b.ReportMetric(float64(len(buf))/batch, "bytes/update")
}

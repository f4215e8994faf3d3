package sim

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestHistIndex(t *testing.T) {
	// Buckets tile the values: every bucket's low value maps to it, and
	// low values increase.
	for i := range histBuckets {
		if got := histIndex(histLow(i)); got != i {
			t.Fatalf("histIndex(histLow(%d) = %d) = %d", i, histLow(i), got)
		}
		if i > 0 && histLow(i) <= histLow(i-1) {
			t.Fatalf("histLow(%d) = %d <= histLow(%d) = %d", i, histLow(i), i-1, histLow(i-1))
		}
	}
	for _, tt := range []struct {
		us   uint64
		want int
	}{
		{0, 0}, {15, 15}, {16, 16}, {31, 31}, {32, 32}, {33, 32}, {34, 33},
		{1 << 35, histBuckets - 16}, {1<<36 - 1, histBuckets - 1}, {1 << 36, histBuckets - 1}, {math.MaxUint64, histBuckets - 1},
	} {
		if got := histIndex(tt.us); got != tt.want {
			t.Errorf("histIndex(%d) = %d, want %d", tt.us, got, tt.want)
		}
	}
}

// TestHistQuantile compares quantiles with the exact ones on random data.
func TestHistQuantile(t *testing.T) {
	r, _ := testRand(t)
	var h histogram
	if h.quantile(0.5) != 0 || h.maxValue() != 0 {
		t.Fatal("empty histogram not zero")
	}
	vals := make([]time.Duration, 0, 20000)
	for range cap(vals) {
		// Log-uniform from 1 µs to ~10 s.
		d := time.Duration(math.Exp(r.Float64()*math.Log(1e7))) * time.Microsecond
		vals = append(vals, d)
		h.record(d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.quantile(q)
		if rel := math.Abs(float64(got-exact)) / float64(exact); rel > 1.0/16 && got-exact > time.Microsecond {
			t.Errorf("quantile(%v) = %v, exact %v (%.1f%% off)", q, got, exact, 100*rel)
		}
	}
	if h.maxValue() != vals[len(vals)-1].Truncate(time.Microsecond) {
		t.Errorf("max %v, want %v", h.maxValue(), vals[len(vals)-1])
	}
	var m histogram
	m.merge(&h)
	m.merge(&h)
	if m.n != 2*h.n || m.quantile(0.5) != h.quantile(0.5) {
		t.Errorf("merge: n %d median %v, want %d %v", m.n, m.quantile(0.5), 2*h.n, h.quantile(0.5))
	}
	m.reset()
	if m.n != 0 || m.quantile(0.99) != 0 {
		t.Error("reset did not empty the histogram")
	}
	var neg histogram
	neg.record(-time.Second)
	if neg.quantile(1) != 0 {
		t.Error("negative duration not recorded as 0")
	}
}

func TestPacer(t *testing.T) {
	start := time.Now()
	p := newPacer(1000, start, 50*time.Millisecond) // 1 ms per line
	for i := range 5 {
		at, ok := p.reserve(100, start.Add(time.Second))
		if want := start.Add(time.Duration(i) * 100 * time.Millisecond); !ok || !at.Equal(want) {
			t.Fatalf("reserve %d = %v, %v; want %v", i, at.Sub(start), ok, want.Sub(start))
		}
	}
	// 500 lines booked up to start+500ms; five more batches fit before
	// the deadline, a sixth would end after it.
	for range 5 {
		if _, ok := p.reserve(100, start.Add(time.Second)); !ok {
			t.Fatal("batch within the deadline refused")
		}
	}
	if _, ok := p.reserve(100, start.Add(time.Second)); ok {
		t.Fatal("batch ending after the deadline accepted")
	}
	// A pacer that fell behind real time catches up by at most burst.
	late := newPacer(1000, start.Add(-time.Hour), 50*time.Millisecond)
	at, _ := late.reserve(1, time.Time{})
	if lag := time.Since(at); lag < 50*time.Millisecond || lag > time.Second {
		t.Errorf("late pacer starts %v in the past, want ~50ms", lag)
	}
}

func TestParseRate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"", 0, true},
		{"0", 0, true},
		{"50000", 50000, true},
		{"50000/s", 50000, true},
		{" 50000 / s ", 50000, true},
		{"2.5e5/s", 250000, true},
		{"50k/s", 50000, true},
		{"1M", 1e6, true},
		{"600/min", 10, true},
		{"600/m", 10, true},
		{"7200/h", 2, true},
		{"-1", 0, false},
		{"fast", 0, false},
		{"10/d", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"1_000", 0, false},
		{"0x10", 0, false},
		{"1e400", 0, false},
		{"/s", 0, false},
	} {
		got, err := ParseRate(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"50000", "50000/s", "1M/min", "2.5e5/h", "-0", "k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseRate(s)
		if err == nil && (v < 0 || math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("ParseRate(%q) = %v", s, v)
		}
		if err != nil && v != 0 {
			t.Fatalf("ParseRate(%q) = %v with error %v", s, v, err)
		}
	})
}

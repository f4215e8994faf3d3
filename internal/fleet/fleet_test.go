package fleet

import (
	"math"
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{"truck-0000042", true}, {"AZaz09_.:-", true}, {strings.Repeat("x", 64), true},
		{"", false}, {strings.Repeat("x", 65), false}, {"tr uck", false}, {"é", false}, {"a/b", false}, {"a\x00", false},
	} {
		if got := ValidID([]byte(tt.id)); got != tt.ok {
			t.Errorf("ValidID(%q) = %v", tt.id, got)
		}
	}
}

func TestAttrFixed(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want int32
		ok   bool
	}{
		{0, 0, true}, {123.45, 1235, true}, {-0.04, 0, true}, {-20000, -200000, true}, {100000, 1000000, true},
		{100000.1, 0, false}, {-20000.1, 0, false}, {math.NaN(), 0, false}, {math.Inf(1), 0, false},
	} {
		got, ok := Altitude.Fixed(tt.v)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("Altitude.Fixed(%v) = %d, %v; want %d, %v", tt.v, got, ok, tt.want, tt.ok)
		}
		if ok && Altitude.Float(got) != math.Round(tt.v*10)/10 {
			t.Errorf("Float(Fixed(%v)) = %v", tt.v, Altitude.Float(got))
		}
	}
	if a, ok := AttrByName([]byte("alt")); !ok || a != Altitude || a.Name() != "alt" {
		t.Fatal("AttrByName(alt)")
	}
	if _, ok := AttrByName([]byte("altitude")); ok {
		t.Fatal("AttrByName(altitude)")
	}
}

func TestAttrsValid(t *testing.T) {
	var a Attrs
	if !a.Valid() || a.Has(Altitude) {
		t.Fatal("zero Attrs")
	}
	a.Set(Altitude, Altitude.Max())
	if v, ok := a.Get(Altitude); !ok || v != Altitude.Max() || !a.Valid() {
		t.Fatal("Set/Get")
	}
	a.Vals[Altitude] = math.MinInt32
	if a.Valid() {
		t.Fatal("out-of-range value is valid")
	}
	if b := (Attrs{Mask: 1 << NumAttrs}); b.Valid() {
		t.Fatal("unknown attribute is valid")
	}
}

package geo

import (
	"strings"
	"testing"
)

func TestParseBox(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Box
		err  string
	}{
		{in: "-74.1,40.6,-73.9,40.9", want: Box{MinLon: -74.1, MinLat: 40.6, MaxLon: -73.9, MaxLat: 40.9}},
		{in: " 170 , -10, -170 ,10 ", want: Box{MinLon: 170, MinLat: -10, MaxLon: -170, MaxLat: 10}}, // across the antimeridian
		{in: "-180,-90,180,90", want: Box{MinLon: -180, MinLat: -90, MaxLon: 180, MaxLat: 90}},
		{in: "1,2,3", err: `bbox "1,2,3" must be four numbers: minLon,minLat,maxLon,maxLat`},
		{in: "1,2,3,4,5", err: `must be four numbers`},
		{in: "", err: `must be four numbers`},
		{in: "1,2,3,x", err: `bbox maxLat "x" is not a number`},
		{in: "1,,3,4", err: `bbox minLat "" is not a number`},
		{in: "1,NaN,3,4", err: `bbox minLat "NaN" is not a finite number`},
		{in: "1,2,Inf,4", err: `bbox maxLon "Inf" is not a finite number`},
		{in: "1e999,2,3,4", err: `bbox minLon 1e999 out of range [-180, 180]`},
		{in: "-181,2,3,4", err: `bbox minLon -181 out of range [-180, 180]`},
		{in: "1,2,3,95", err: `bbox maxLat 95 out of range [-90, 90]`},
		{in: "1,50,3,40", err: `bbox minLat 50 is greater than maxLat 40`},
		{in: strings.Repeat("9", 100) + ",1,2,3", err: `out of range [-180, 180]`},
	} {
		got, err := ParseBox(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseBox(%q) = %v, %v; want error %q", c.in, got, err, c.err)
			}
			if err != nil && len(err.Error()) > 200 {
				t.Errorf("ParseBox(%q): error of %d bytes", c.in, len(err.Error()))
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseBox(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func FuzzParseBox(f *testing.F) {
	for _, s := range []string{"1,2,3,4", "170,-10,-170,10", "1,NaN,3,4", "1e999,2,3,4", ",,,", "a,b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBox(s)
		if err != nil {
			// Quoted input is clipped to 64 bytes, each at most 10 bytes
			// once escaped (\U0010ffff).
			if !strings.HasPrefix(err.Error(), "bbox ") || len(err.Error()) > 64*10+100 {
				t.Fatalf("ParseBox(%q): error %q", s, err)
			}
			return
		}
		if !(b.MinLat >= -90 && b.MaxLat <= 90 && b.MinLat <= b.MaxLat && b.MinLon >= -180 && b.MinLon <= 180 && b.MaxLon >= -180 && b.MaxLon <= 180) {
			t.Fatalf("ParseBox(%q) = %+v: outside the world", s, b)
		}
	})
}

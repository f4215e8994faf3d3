package feed

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/geo"
)

func TestParseFilter(t *testing.T) {
	manyIDs := func(n int) string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("t%d", i)
		}
		return strings.Join(ids, ",")
	}
	tests := []struct {
		query   string
		wantErr string // substring of the client message; "" = valid
		check   func(t *testing.T, f filter)
	}{
		{"", "", func(t *testing.T, f filter) {
			if f.m.hasBox || f.m.hasIDs || f.m.types != typeAll || f.m.hzMs != 0 {
				t.Errorf("defaults: %+v", f.m)
			}
		}},
		{"bbox=-74.1,40.6,-73.9,40.9", "", func(t *testing.T, f filter) {
			if !f.m.hasBox || f.m.cross || f.m.minLon != -741000000 || f.m.maxLat != 409000000 {
				t.Errorf("bbox: %+v", f.m)
			}
		}},
		{"bbox=170,-10,-170,10", "", func(t *testing.T, f filter) {
			if !f.m.cross {
				t.Errorf("antimeridian box not crossing: %+v", f.m)
			}
		}},
		{"bbox=%20-180%20,-90,180,90", "", nil},
		{"bbox=1,2,3", "must be four numbers", nil},
		{"bbox=1,2,3,4,5", "must be four numbers", nil},
		{"bbox=a,2,3,4", "bbox minLon \"a\" is not a number", nil},
		{"bbox=1,NaN,3,4", "bbox minLat \"NaN\" is not a finite number", nil},
		{"bbox=1,2,Inf,4", "bbox maxLon \"Inf\" is not a finite number", nil},
		{"bbox=181,2,3,4", "out of range [-180, 180]", nil},
		{"bbox=1,2,3,90.5", "bbox maxLat 90.5 out of range [-90, 90]", nil},
		{"bbox=1,5,3,4", "minLat 5 is greater than maxLat 4", nil},
		{"bbox=1,2,3,4&bbox=1,2,3,4", `"bbox" given 2 times`, nil},
		{"ids=a,b,a,c", "", func(t *testing.T, f filter) {
			if !f.m.hasIDs || strings.Join(f.ids, ",") != "a,b,c" {
				t.Errorf("ids: %v", f.ids)
			}
		}},
		{"ids=" + manyIDs(MaxIDs), "", nil},
		{"ids=" + manyIDs(MaxIDs+1), "too many ids: 1001 (at most 1000)", nil},
		{"ids=", "bad ids: empty list", nil},
		{"ids=a,,b", `bad ids: "" is not a truck ID`, nil},
		{"ids=a%20b", `bad ids: "a b" is not a truck ID`, nil},
		{"ids=" + strings.Repeat("x", 65), "is not a truck ID", nil},
		{"types=position,lag", "", func(t *testing.T, f filter) {
			if f.m.types != typePosition|typeLag {
				t.Errorf("types %b", f.m.types)
			}
		}},
		{"types=alert", "", func(t *testing.T, f filter) {
			if f.m.types != typeAlert {
				t.Errorf("types %b", f.m.types)
			}
		}},
		{"types=position,bogus", `unknown type "bogus" in types`, nil},
		{"types=", `unknown type "" in types`, nil},
		{"max_hz=1", "", func(t *testing.T, f filter) {
			if f.m.hzMs != 1000 {
				t.Errorf("hzMs %d", f.m.hzMs)
			}
		}},
		{"max_hz=3", "", func(t *testing.T, f filter) {
			if f.m.hzMs != 334 {
				t.Errorf("hzMs %d, want 334 (rounded up)", f.m.hzMs)
			}
		}},
		{"max_hz=0.5", "", func(t *testing.T, f filter) {
			if f.m.hzMs != 2000 {
				t.Errorf("hzMs %d", f.m.hzMs)
			}
		}},
		{"max_hz=1000", "", nil},
		{"max_hz=1e-300", "", func(t *testing.T, f filter) {
			if f.m.hzMs != math.MaxUint32/2 {
				t.Errorf("hzMs %d", f.m.hzMs)
			}
		}},
		{"max_hz=0", "bad max_hz \"0\"", nil},
		{"max_hz=-1", "bad max_hz", nil},
		{"max_hz=1001", "bad max_hz", nil},
		{"max_hz=NaN", "bad max_hz", nil},
		{"max_hz=fast", "bad max_hz", nil},
		{"other=1&bbox=0,0,1,1", "", nil},
		{"bbox=%zz", "malformed query string", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			f, err := parseFilter(tt.query)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, f)
				}
				return
			}
			var pe *paramError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a paramError containing %q", err, tt.wantErr)
			}
			if !strings.Contains(pe.Msg, tt.wantErr) {
				t.Errorf("message %q, want it to contain %q", pe.Msg, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "feed: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestInBoxMatchesGeo checks the fixed-point box test against geo.Box on
// random boxes (antimeridian ones included) and points on, just inside and
// just outside their edges.
func TestInBoxMatchesGeo(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	randDeg := func(lim float64) float64 {
		switch rng.IntN(4) {
		case 0: // on the 1e-7 grid
			return float64(rng.Int64N(int64(2*lim*1e7)+1)-int64(lim*1e7)) / 1e7
		case 1: // a few decimals
			return math.Round((rng.Float64()*2-1)*lim*100) / 100
		default:
			return (rng.Float64()*2 - 1) * lim
		}
	}
	inCells := make([]bool, gridCells)
	for range 2000 {
		clear(inCells)
		b := geo.Box{MinLon: randDeg(180), MaxLon: randDeg(180), MinLat: randDeg(90), MaxLat: randDeg(90)}
		if b.MinLat > b.MaxLat {
			b.MinLat, b.MaxLat = b.MaxLat, b.MinLat
		}
		q := fmt.Sprintf("bbox=%v,%v,%v,%v", b.MinLon, b.MinLat, b.MaxLon, b.MaxLat)
		f, err := parseFilter(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if f.box != b {
			t.Fatalf("%s parsed as %+v", q, f.box)
		}
		f.m.boxCells(func(c int) { inCells[c] = true })
		edgesLat := []float64{b.MinLat, b.MaxLat, randDeg(90)}
		edgesLon := []float64{b.MinLon, b.MaxLon, randDeg(180), 180, -180}
		for _, la := range edgesLat {
			for _, lo := range edgesLon {
				for dla := int32(-1); dla <= 1; dla++ {
					for dlo := int32(-1); dlo <= 1; dlo++ {
						lat := min(max(geo.ToFixed(la)+dla, -900000000), 900000000)
						lon := min(max(geo.ToFixed(lo)+dlo, -1800000000), 1800000000)
						want := b.Contains(geo.FromFixed(lat), geo.FromFixed(lon))
						if got := f.m.inBox(lat, lon); got != want {
							t.Fatalf("%s: inBox(%d, %d) = %v, geo says %v", q, lat, lon, got, want)
						}
						// The grid must list the point's cell whenever the
						// point is inside.
						if want && !inCells[cellOf(lat, lon)] {
							t.Fatalf("%s: cell of (%d, %d) not among the box's cells", q, lat, lon)
						}
					}
				}
			}
		}
	}
}

// FuzzParseFilter checks that any query either fails with a paramError or
// yields a filter within the documented limits.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"", "bbox=-74.1,40.6,-73.9,40.9", "bbox=170,-10,-170,10&types=position,lag",
		"ids=a,b,c&max_hz=2.5", "types=alert", "max_hz=1e-9", "bbox=1,2,3", "%", "ids=a&ids=b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		fl, err := parseFilter(q)
		if err != nil {
			var pe *paramError
			if !errors.As(err, &pe) || pe.Msg == "" {
				t.Fatalf("error %v is not a paramError with a message", err)
			}
			return
		}
		if len(fl.ids) > MaxIDs || fl.m.hasIDs != (fl.ids != nil) {
			t.Fatalf("ids %d, hasIDs %v", len(fl.ids), fl.m.hasIDs)
		}
		if fl.m.types&^typeAll != 0 {
			t.Fatalf("types %b", fl.m.types)
		}
		if fl.m.hasBox {
			b := fl.box
			if b.MinLat > b.MaxLat || math.Abs(b.MinLon) > 180 || math.Abs(b.MaxLon) > 180 || math.Abs(b.MinLat) > 90 || math.Abs(b.MaxLat) > 90 {
				t.Fatalf("box out of range %+v", b)
			}
			if n := fl.m.boxCells(nil); n < 0 || n > gridCells {
				t.Fatalf("box covers %d cells", n)
			}
		}
		if _, err := url.ParseQuery(q); err != nil {
			t.Fatalf("query %q accepted though it does not parse: %v", q, err)
		}
	})
}

// TestBoxCellsAntimeridian: boxes that end on, start on or cross the
// antimeridian list the cell of every point inside them (lon 180° is in
// column 0), and no cell twice.
func TestBoxCellsAntimeridian(t *testing.T) {
	for _, q := range []string{
		"bbox=170,0,180,1", "bbox=-180,0,180,1", "bbox=180,0,180,1", "bbox=-180,0,-179,1",
		"bbox=180,0,-179,1", "bbox=-179.5,0,-179.8,0.5", "bbox=179.5,0,-179.5,0.5", "bbox=179,-1,179.5,1",
	} {
		f, err := parseFilter(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		seen := map[int]bool{}
		f.m.boxCells(func(c int) {
			if seen[c] {
				t.Errorf("%s: cell %d listed twice", q, c)
			}
			seen[c] = true
		})
		for lat := f.m.minLat; lat <= f.m.maxLat; lat += 2_500_000 {
			for _, lon := range []int32{-1_800_000_000, -1_799_999_999, -1_795_000_000, -1_790_000_000, 1_790_000_000, 1_795_000_000, 1_799_999_999, 1_800_000_000} {
				if f.m.inBox(lat, lon) && !seen[cellOf(lat, lon)] {
					t.Errorf("%s: cell of (%d, %d) not among the box's cells", q, lat, lon)
				}
			}
		}
	}
}

package fence

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

const (
	square     = `[[0,0],[1,0],[1,1],[0,1],[0,0]]`
	squareHole = `[[0.2,0.2],[0.4,0.2],[0.4,0.4],[0.2,0.2]]`
)

func TestParseValid(t *testing.T) {
	for _, c := range []struct {
		name, doc  string
		multi      bool
		vertices   int
		rings      int
		in, out    [2]float64 // {lon, lat} inside and outside
		roundTrips string     // AppendGeoJSON's output
	}{
		{"polygon", `{"type":"Polygon","coordinates":[` + square + `]}`, false, 4, 1,
			[2]float64{0.5, 0.5}, [2]float64{1.5, 0.5}, `{"type":"Polygon","coordinates":[` + square + `]}`},
		{"hole", `{"type":"Polygon","coordinates":[` + square + `,` + squareHole + `]}`, false, 7, 2,
			[2]float64{0.8, 0.8}, [2]float64{0.35, 0.25}, `{"type":"Polygon","coordinates":[` + square + `,` + squareHole + `]}`},
		{"multipolygon", `{"type":"MultiPolygon","coordinates":[[` + square + `],[[[2,2],[3,2],[3,3],[2,2]]]]}`, true, 7, 2,
			[2]float64{2.9, 2.1}, [2]float64{2.1, 2.9}, `{"type":"MultiPolygon","coordinates":[[` + square + `],[[[2,2],[3,2],[3,3],[2,2]]]]}`},
		{"feature", `{"type":"Feature","properties":{"name":"depot","tags":[{"a":[1]}]},"geometry":{"type":"Polygon","coordinates":[` + square + `]}}`, false, 4, 1,
			[2]float64{0.5, 0.5}, [2]float64{-0.5, 0.5}, `{"type":"Polygon","coordinates":[` + square + `]}`},
		{"feature-multi", `{"type":"Feature","geometry":{"type":"MultiPolygon","coordinates":[[` + square + `]]},"properties":null}`, true, 4, 1,
			[2]float64{0.5, 0.5}, [2]float64{0.5, 1.5}, `{"type":"MultiPolygon","coordinates":[[` + square + `]]}`},
		{"altitude", ` { "type" : "Polygon", "coordinates" : [ [[0,0,10],[1,0,10],[1,1,10],[0,1,10],[0,0,10]] ] } `, false, 4, 1,
			[2]float64{0.5, 0.5}, [2]float64{0.5, -0.5}, `{"type":"Polygon","coordinates":[` + square + `]}`},
		{"rounded-to-1e-12", `{"type":"Polygon","coordinates":[[[-97.123456789012345,30.1],[-97.1,30.1],[-97.1,30.2],[-97.123456789012345,30.1]]]}`, false, 3, 1,
			[2]float64{-97.101, 30.19}, [2]float64{-97.12, 30.19}, `{"type":"Polygon","coordinates":[[[-97.123456789012,30.1],[-97.1,30.1],[-97.1,30.2],[-97.123456789012,30.1]]]}`},
		{"antimeridian-split", `{"type":"MultiPolygon","coordinates":[[[[179,0],[180,0],[180,1],[179,0]]],[[[-180,0],[-179,0],[-180,1],[-180,0]]]]}`, true, 6, 2,
			[2]float64{-179.9, 0.05}, [2]float64{179.1, 0.9}, `{"type":"MultiPolygon","coordinates":[[[[179,0],[180,0],[180,1],[179,0]]],[[[-180,0],[-179,0],[-180,1],[-180,0]]]]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			z, err := Parse([]byte(c.doc))
			if err != nil {
				t.Fatal(err)
			}
			if z.multi != c.multi || z.NumVertices() != c.vertices || z.NumRings() != c.rings {
				t.Errorf("multi %v, %d vertices, %d rings; want %v, %d, %d", z.multi, z.NumVertices(), z.NumRings(), c.multi, c.vertices, c.rings)
			}
			if !z.Contains(c.in[1], c.in[0]) {
				t.Errorf("Contains(%v) = false", c.in)
			}
			if z.Contains(c.out[1], c.out[0]) {
				t.Errorf("Contains(%v) = true", c.out)
			}
			out := z.AppendGeoJSON([]byte("prefix:"))
			if got := strings.TrimPrefix(string(out), "prefix:"); got != c.roundTrips {
				t.Errorf("AppendGeoJSON =\n%s\nwant\n%s", got, c.roundTrips)
			}
			z2, err := Parse(out[len("prefix:"):])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(z, z2) {
				t.Error("round trip gives a different zone")
			}
			z3, err := ReadZone(iotest.OneByteReader(strings.NewReader(c.doc)))
			if err != nil || !reflect.DeepEqual(z, z3) {
				t.Errorf("ReadZone: %v", err)
			}
		})
	}
}

// positionsJSON is a closed ring of n positions as JSON.
func positionsJSON(n int) string {
	var b strings.Builder
	b.WriteString(`[[0,0]`)
	for i := 1; i < n-1; i++ {
		a := 2 * math.Pi * float64(i) / float64(n-1)
		fmt.Fprintf(&b, `,[%.6f,%.6f]`, 1-math.Cos(a), math.Sin(a))
	}
	b.WriteString(`,[0,0]]`)
	return b.String()
}

// TestParseErrors checks every validation error: its message and, for the
// limits, that it wraps ErrTooLarge.
func TestParseErrors(t *testing.T) {
	poly := func(rings string) string { return `{"type":"Polygon","coordinates":[` + rings + `]}` }
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	for _, c := range []struct {
		name, doc, want string
		tooLarge        bool
	}{
		{"not json", `polygon please`, "fence: invalid GeoJSON", false},
		{"trailing", poly(square) + ` x`, "fence: invalid GeoJSON", false},
		{"array", `[1,2]`, "fence: invalid GeoJSON", false},
		{"no type", `{}`, `fence: missing "type"`, false},
		{"point", `{"type":"Point","coordinates":[1,2]}`, `fence: unsupported type "Point"`, false},
		{"lowercase type", `{"type":"polygon","coordinates":[` + square + `]}`, `fence: unsupported type "polygon"`, false},
		{"collection", `{"type":"FeatureCollection","features":[]}`, `fence: unsupported type "FeatureCollection"`, false},
		{"feature without geometry", `{"type":"Feature","properties":{}}`, "fence: Feature has no geometry", false},
		{"feature null geometry", `{"type":"Feature","geometry":null}`, "fence: Feature has no geometry", false},
		{"feature point", `{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]}}`, `fence: unsupported type "Point"`, false},
		{"feature in feature", `{"type":"Feature","geometry":{"type":"Feature","geometry":` + poly(square) + `}}`, "not a Feature", false},
		{"feature bad geometry", `{"type":"Feature","geometry":[1]}`, "fence: invalid Feature geometry", false},
		{"no coordinates", `{"type":"Polygon"}`, `fence: Polygon has no "coordinates"`, false},
		{"null coordinates", `{"type":"MultiPolygon","coordinates":null}`, `fence: MultiPolygon has no "coordinates"`, false},
		{"no rings", poly(``), "fence: polygon has no rings", false},
		{"no polygons", `{"type":"MultiPolygon","coordinates":[]}`, "fence: MultiPolygon has no polygons", false},
		{"empty polygon", `{"type":"MultiPolygon","coordinates":[[` + square + `],[]]}`, "fence: polygon 1 has no rings", false},
		{"3 positions", poly(`[[0,0],[1,0],[0,0]]`), "fence: ring 0: 3 positions, a linear ring needs at least 4", false},
		{"hole of 2", poly(square + `,[[0.1,0.1],[0.1,0.1]]`), "fence: ring 1: 2 positions", false},
		{"not closed", poly(`[[0,0],[1,0],[1,1],[0,1]]`), "fence: ring 0 is not closed: first position [0, 0] != last [0, 1]", false},
		{"multi not closed", `{"type":"MultiPolygon","coordinates":[[` + square + `],[[[0,0],[1,0],[1,1],[0,0.5]]]]}`, "fence: polygon 1 ring 0 is not closed", false},
		{"1 number", poly(`[[0,0],[1],[1,1],[0,0]]`), "fence: ring 0 position 1: want [longitude, latitude] or [longitude, latitude, altitude], got 1 numbers", false},
		{"4 numbers", poly(`[[0,0],[1,0,0,0],[1,1],[0,0]]`), "got 4 numbers", false},
		{"string", poly(`[[0,0],["1",0],[1,1],[0,0]]`), "fence: Polygon coordinates: json: cannot unmarshal string", false},
		{"huge number", poly(`[[0,0],[1e400,0],[1,1],[0,0]]`), "fence: Polygon coordinates: json: cannot unmarshal number 1e400", false},
		{"flat coordinates", poly(`[0,0]`), "fence: Polygon coordinates", false},
		{"lon", poly(`[[0,0],[180.5,0],[1,1],[0,0]]`), "fence: ring 0 position 1: longitude 180.5 out of range [-180, 180]", false},
		{"lat", poly(square + `,[[0.1,0.1],[0.2,-90.01],[0.2,0.2],[0.1,0.1]]`), "fence: ring 1 position 1: latitude -90.01 out of range [-90, 90]", false},
		{"lat swapped", poly(`[[10,50],[10,100],[11,100],[10,50]]`), "latitude 100 out of range", false},
		{"antimeridian", poly(`[[170,0],[-170,0],[-170,1],[170,1],[170,0]]`),
			"fence: polygon spans 340° of longitude, more than 180°: a polygon crossing the antimeridian must be split at ±180° into a MultiPolygon (RFC 7946 §3.1.9)", false},
		{"wide multi", `{"type":"MultiPolygon","coordinates":[[[[-120,0],[-119,0],[-119,1],[-120,0]]],[[[0,0],[1,0],[1,1],[0,0]]],[[[120,0],[121,0],[121,1],[120,0]]]]}`,
			"fence: zone spans 241° of longitude even when wrapped at the antimeridian", false},
		{"too deep", deep, "fence: zone too large: JSON nested deeper than 32 levels", true},
		{"too deep in properties", `{"type":"Feature","properties":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `,"geometry":` + poly(square) + `}`,
			"nested deeper", true},
		{"too big", poly(square) + strings.Repeat(" ", MaxBodyBytes), "fence: zone too large: body exceeds 8388608 bytes", true},
		{"too many vertices", poly(positionsJSON(MaxVertices + 1)), "fence: zone too large: 100001 positions, the limit is 100000", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			z, err := Parse([]byte(c.doc))
			if err == nil {
				t.Fatalf("accepted, %d vertices", z.NumVertices())
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "fence: ") {
				t.Errorf("error %q\nwant it to contain %q", err, c.want)
			}
			if errors.Is(err, ErrTooLarge) != c.tooLarge {
				t.Errorf("errors.Is(err, ErrTooLarge) = %v", !c.tooLarge)
			}
		})
	}
	// The largest zone allowed parses.
	if _, err := Parse([]byte(poly(positionsJSON(MaxVertices)))); err != nil {
		t.Errorf("%d positions: %v", MaxVertices, err)
	}
	// A string full of brackets is not nesting.
	if _, err := Parse([]byte(`{"type":"Feature","properties":{"s":"` + strings.Repeat(`[{\"`, 50) + `"},"geometry":` + poly(square) + `}`)); err != nil {
		t.Errorf("brackets in a string: %v", err)
	}
	// ReadZone stops reading after the limit.
	if _, err := ReadZone(bytes.NewReader(make([]byte, 2*MaxBodyBytes))); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadZone of a huge body: %v", err)
	}
	if _, err := ReadZone(iotest.ErrReader(errors.New("boom"))); err == nil || !strings.Contains(err.Error(), "fence: reading zone: boom") {
		t.Errorf("ReadZone of a failing reader: %v", err)
	}
}

// TestNewPolygonErrors covers what JSON cannot carry.
func TestNewPolygonErrors(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		name  string
		rings [][][2]float64
		want  string
	}{
		{"nan lon", [][][2]float64{ring([2]float64{0, 0}, [2]float64{nan, 0}, [2]float64{1, 1})}, "longitude NaN out of range"},
		{"nan lat", [][][2]float64{ring([2]float64{0, 0}, [2]float64{1, nan}, [2]float64{1, 1})}, "latitude NaN out of range"},
		{"inf", [][][2]float64{ring([2]float64{0, 0}, [2]float64{math.Inf(1), 0}, [2]float64{1, 1})}, "longitude +Inf out of range"},
		{"no rings", nil, "fence: polygon has no rings"},
	} {
		if _, err := NewPolygon(c.rings); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := NewMultiPolygon(nil); err == nil || !strings.Contains(err.Error(), "no polygons") {
		t.Errorf("NewMultiPolygon(nil): %v", err)
	}
}

// TestNewPolygonCopies checks that the input is not retained.
func TestNewPolygonCopies(t *testing.T) {
	rg := rect(0, 0, 1, 1)
	z, err := NewPolygon([][][2]float64{rg})
	if err != nil {
		t.Fatal(err)
	}
	rg[2] = [2]float64{50, 50}
	if _, _, maxLat, _ := z.Bounds(); maxLat != 1 || !z.Contains(0.5, 0.5) {
		t.Error("zone changed with its input")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"type":"Polygon","coordinates":[` + square + `]}`,
		`{"type":"Polygon","coordinates":[` + square + `,` + squareHole + `]}`,
		`{"type":"MultiPolygon","coordinates":[[` + square + `],[[[2,2],[3,2],[3,3],[2,2]]]]}`,
		`{"type":"Feature","properties":{"a":"b"},"geometry":{"type":"Polygon","coordinates":[[[0,0,1],[1,0,1],[1,1,1],[0,0,1]]]}}`,
		`{"type":"MultiPolygon","coordinates":[[[[179,0],[180,0],[180,1],[179,0]]],[[[-180,0],[-179,0],[-180,1],[-180,0]]]]}`,
		`{"type":"Polygon","coordinates":[[[0,0],[2,0],[0,2],[2,2],[0,0]]]}`,
		`{"type":"Polygon","coordinates":[[[1e-300,0],[1,0],[1,5e-324],[1e-300,0]]]}`,
		`{"type":"Polygon","coordinates":[[[0,0],[0,0],[0,0],[0,0]]]}`,
		`{"type":"Polygon","coordinates":[[[-180,-90],[180,-90],[180,90],[-180,-90]]]}`,
		`{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}`,
		`{"type":"Feature","geometry":null}`,
		`[[[[[[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		z, err := Parse(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fence: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		out := z.AppendGeoJSON(nil)
		z2, err := Parse(out)
		if err != nil {
			t.Fatalf("AppendGeoJSON output %s does not parse: %v", out, err)
		}
		if !reflect.DeepEqual(z, z2) {
			t.Fatalf("round trip through %s gives a different zone", out)
		}
		// The index agrees with the brute force at the vertices, their
		// latitudes and the box's middle.
		if z.NumVertices() > 2000 {
			return
		}
		for i, v := range z.pts {
			w := z.pts[(i*7+3)%len(z.pts)]
			for _, p := range [][2]float64{{v.X, v.Y}, {w.X, v.Y}, {(v.X + w.X) / 2, v.Y}, {z.midX, (z.minY + z.maxY) / 2}} {
				if got, want := z.containsXY(p[0], p[1]), bruteContains(z, p[0], p[1]); got != want {
					t.Fatalf("containsXY(%v, %v) = %v, brute force %v", p[0], p[1], got, want)
				}
			}
			if d := z.DistanceM(v.Y, v.X); d < 0 || math.IsNaN(d) {
				t.Fatalf("DistanceM at a vertex = %v", d)
			}
		}
	})
}

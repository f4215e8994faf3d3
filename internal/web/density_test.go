package web

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/store"
)

// fleetPoint is one test truck's stored position.
type fleetPoint struct{ lat, lon float64 }

// newFleet fills a store with n trucks: most clustered around a few
// centres (cities), the rest spread uniformly over [minLat,maxLat]×[minLon,
// maxLon] — or anywhere when world is set. It returns the positions as the
// store holds them (rounded to 1e-7 degree).
func newFleet(tb testing.TB, seed uint64, n int, world bool) (*store.Store, []fleetPoint) {
	tb.Helper()
	st, err := store.New(store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	type centre struct{ lat, lon, sd float64 }
	var centres []centre
	for range 40 {
		centres = append(centres, centre{25 + rng.Float64()*24, -123 + rng.Float64()*53, 0.2 + rng.Float64()*1.5})
	}
	pts := make([]fleetPoint, 0, n)
	batch := make([]store.Update, 0, 8192)
	ids := make([]byte, 0, 8192*16)
	flush := func() {
		if res := st.Apply(batch); res.Invalid+res.Refused > 0 {
			tb.Fatalf("store rejected test updates: %+v", res)
		}
		batch, ids = batch[:0], ids[:0]
	}
	for i := range n {
		var lat, lon float64
		switch {
		case world && i%5 == 0:
			lat, lon = -89.9+rng.Float64()*179.8, -179.99+rng.Float64()*359.98
		case i%3 == 0:
			lat, lon = 25+rng.Float64()*24, -124+rng.Float64()*57
		default:
			c := centres[rng.IntN(len(centres))]
			lat = max(-89.9, min(89.9, c.lat+rng.NormFloat64()*c.sd))
			lon = max(-179.99, min(179.99, c.lon+rng.NormFloat64()*c.sd))
		}
		p := store.MakePosition(lat, lon, 1_764_000_000, 50, 90)
		pts = append(pts, fleetPoint{p.LatDeg(), p.LonDeg()})
		start := len(ids)
		ids = append(ids, "t-"...)
		ids = strconv.AppendInt(ids, int64(i), 36)
		batch = append(batch, store.Update{ID: ids[start:len(ids):len(ids)], Position: p})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	if st.Len() != n {
		tb.Fatalf("store holds %d trucks, want %d", st.Len(), n)
	}
	return st, pts
}

// bruteDensity counts the trucks per coarse cell (side d, anchored at
// -90/-180) for the cells that overlap the box's interior — the contract
// of the handler — by visiting every truck.
func bruteDensity(pts []fleetPoint, box geo.Box, cellDeg float64, factor int) map[[2]int]int {
	cellFixed := int64(math.Round(cellDeg * geo.Scale))
	d := cellDeg * float64(factor)
	rows := int(180 * geo.Scale / cellFixed)
	cols := 2 * rows
	overlapsLon := func(a float64) bool {
		if box.MinLon <= box.MaxLon {
			return a < box.MaxLon && a+d > box.MinLon || box.MinLon == box.MaxLon && a <= box.MinLon && a+d > box.MinLon
		}
		return a+d > box.MinLon || a < box.MaxLon
	}
	out := map[[2]int]int{}
	for _, p := range pts {
		row := int((int64(geo.ToFixed(p.lat)) + geo.MaxLatFixed) / cellFixed)
		row = min(max(row, 0), rows-1)
		col := int((int64(geo.ToFixed(p.lon)) + geo.MaxLonFixed) / cellFixed)
		if col >= cols {
			col -= cols
		}
		cr, cc := row/factor, col/factor
		a := float64(cr*factor)*cellDeg - 90
		b := float64(cc*factor)*cellDeg - 180
		latOK := a < box.MaxLat && a+d > box.MinLat || box.MinLat == box.MaxLat && a <= box.MinLat && a+d > box.MinLat
		if latOK && overlapsLon(b) {
			out[[2]int{cr, cc}]++
		}
	}
	return out
}

type densityJSON struct {
	CellDeg float64      `json:"cell_deg"`
	Factor  int          `json:"factor"`
	Total   int          `json:"total"`
	Cells   [][3]float64 `json:"cells"`
}

func getDensity(tb testing.TB, h http.Handler, query string, accept string) *httptest.ResponseRecorder {
	tb.Helper()
	r := httptest.NewRequest("GET", "/v1/density?"+query, nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// decodeBinary parses the binary form as the page does.
func decodeBinary(tb testing.TB, b []byte) densityJSON {
	tb.Helper()
	if len(b) < densityHeader || string(b[:4]) != densityMagic {
		tb.Fatalf("binary density: bad header % x", b[:min(len(b), 24)])
	}
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if len(b) != densityHeader+n*densityCell {
		tb.Fatalf("binary density: %d cells in %d bytes", n, len(b))
	}
	out := densityJSON{
		CellDeg: math.Float64frombits(binary.LittleEndian.Uint64(b[8:])),
		Total:   int(binary.LittleEndian.Uint64(b[16:])),
	}
	for i := range n {
		o := densityHeader + i*densityCell
		out.Cells = append(out.Cells, [3]float64{
			float64(math.Float32frombits(binary.LittleEndian.Uint32(b[o:]))),
			float64(math.Float32frombits(binary.LittleEndian.Uint32(b[o+4:]))),
			float64(binary.LittleEndian.Uint32(b[o+8:])),
		})
	}
	return out
}

func TestDensityMatchesBruteForce(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := testingSeed(); s != 0 {
		seed = s
	}
	t.Logf("seed %d (replay with FLEETD_TEST_SEED=%d)", seed, seed)
	st, pts := newFleet(t, seed, 30000, true)
	h := DensityHandler(st)
	rng := rand.New(rand.NewPCG(seed, 1))
	boxes := []geo.Box{
		{MinLat: -90, MinLon: -180, MaxLat: 90, MaxLon: 180},       // the world
		{MinLat: 24, MinLon: -125, MaxLat: 50, MaxLon: -66},        // continental US
		{MinLat: -30, MinLon: 170, MaxLat: 30, MaxLon: -170},       // across the antimeridian
		{MinLat: 40, MinLon: -75, MaxLat: 41, MaxLon: -74},         // edges on index cells
		{MinLat: 40.2, MinLon: -74.3, MaxLat: 40.2, MaxLon: -74.3}, // a point
	}
	for range 40 {
		minLat := -90 + rng.Float64()*170
		b := geo.Box{MinLat: minLat, MaxLat: min(90, minLat+rng.Float64()*60), MinLon: -180 + rng.Float64()*360}
		b.MaxLon = math.Mod(b.MinLon+180+rng.Float64()*200, 360) - 180 // sometimes across the antimeridian
		boxes = append(boxes, b)
	}
	for i, b := range boxes {
		zoom := rng.Float64() * 12
		q := fmt.Sprintf("bbox=%v,%v,%v,%v&zoom=%v", b.MinLon, b.MinLat, b.MaxLon, b.MaxLat, zoom)
		w := getDensity(t, h, q, "")
		if w.Code != 200 {
			t.Fatalf("box %d %s: %d %s", i, q, w.Code, w.Body)
		}
		var got densityJSON
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("box %d: %v in %s", i, err, w.Body)
		}
		if len(got.Cells) > MaxDensityCells {
			t.Errorf("box %d: %d cells > %d", i, len(got.Cells), MaxDensityCells)
		}
		want := bruteDensity(pts, b, st.CellDeg(), got.Factor)
		d := st.CellDeg() * float64(got.Factor)
		if math.Abs(got.CellDeg-d) > 1e-9 {
			t.Fatalf("box %d: cell_deg %v, want %v", i, got.CellDeg, d)
		}
		sum := 0
		for _, c := range got.Cells {
			key := [2]int{int(math.Round((c[0] + 90) / d)), int(math.Round((c[1] + 180) / d))}
			if n := int(c[2]); n != want[key] {
				t.Errorf("box %d %s: cell %v,%v has %d trucks, brute force %d", i, q, c[0], c[1], n, want[key])
			}
			delete(want, key)
			sum += int(c[2])
		}
		for k, n := range want {
			t.Errorf("box %d %s: cell %v missing (%d trucks)", i, q, k, n)
		}
		if sum != got.Total {
			t.Errorf("box %d: total %d, cells sum to %d", i, got.Total, sum)
		}
		// The binary form says the same.
		bw := getDensity(t, h, q+"&format=bin", "")
		if ct := bw.Header().Get("Content-Type"); ct != DensityContentType {
			t.Fatalf("binary content type %q", ct)
		}
		bin := decodeBinary(t, bw.Body.Bytes())
		bin.Factor = got.Factor
		if fmt.Sprint(bin) != fmt.Sprint(got) {
			t.Fatalf("box %d: binary %v\n differs from JSON %v", i, bin, got)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

func TestDensityOrderedAndStable(t *testing.T) {
	st, _ := newFleet(t, 7, 5000, false)
	h := DensityHandler(st)
	q := "bbox=-130,20,-60,55&zoom=4"
	a := getDensity(t, h, q, "").Body.String()
	if b := getDensity(t, h, q, "").Body.String(); a != b {
		t.Fatal("two answers for the same fleet differ")
	}
	var got densityJSON
	if err := json.Unmarshal([]byte(a), &got); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(got.Cells); i++ {
		p, c := got.Cells[i-1], got.Cells[i]
		if p[0] > c[0] || p[0] == c[0] && p[1] >= c[1] {
			t.Fatalf("cells %d and %d out of order: %v %v", i-1, i, p, c)
		}
	}
	if !strings.Contains(a, `"cells":[[`) || strings.Contains(a, "e-") {
		t.Fatalf("unexpected JSON form: %.200s", a)
	}
}

func TestDensityAccept(t *testing.T) {
	st, _ := newFleet(t, 3, 100, false)
	h := DensityHandler(st)
	for _, tc := range []struct{ query, accept, want string }{
		{"bbox=-180,-90,180,90", "", "application/json"},
		{"bbox=-180,-90,180,90", DensityContentType, DensityContentType},
		{"bbox=-180,-90,180,90&format=json", DensityContentType, "application/json"},
		{"bbox=-180,-90,180,90&format=bin", "application/json", DensityContentType},
	} {
		w := getDensity(t, h, tc.query, tc.accept)
		if w.Code != 200 || w.Header().Get("Content-Type") != tc.want {
			t.Errorf("%s Accept %q: %d %q, want %q", tc.query, tc.accept, w.Code, w.Header().Get("Content-Type"), tc.want)
		}
		if w.Header().Get("Cache-Control") != "no-store" || !strings.HasPrefix(w.Header().Get("Server-Timing"), "density;dur=") {
			t.Errorf("headers %v", w.Header())
		}
		if cl, _ := strconv.Atoi(w.Header().Get("Content-Length")); cl != w.Body.Len() {
			t.Errorf("Content-Length %d, body %d", cl, w.Body.Len())
		}
	}
}

func TestDensityEmptyStore(t *testing.T) {
	st, err := store.New(store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := DensityHandler(st)
	w := getDensity(t, h, "bbox=-10,-10,10,10&zoom=3", "")
	if w.Code != 200 || w.Body.String() != `{"cell_deg":1,"factor":2,"total":0,"cells":[]}`+"\n" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	bin := getDensity(t, h, "bbox=-10,-10,10,10&zoom=3&format=bin", "").Body.Bytes()
	if len(bin) != densityHeader || decodeBinary(t, bin).CellDeg != 1 {
		t.Fatalf("binary % x", bin)
	}
}

func TestDensityErrors(t *testing.T) {
	st, _ := newFleet(t, 1, 10, false)
	h := DensityHandler(st)
	for _, tc := range []struct{ query, want string }{
		{"", "bbox is required"},
		{"zoom=3", "bbox is required"},
		{"bbox=1,2,3", "must be four numbers"},
		{"bbox=1,2,3,4,5", "must be four numbers"},
		{"bbox=a,2,3,4", "minLon \"a\" is not a number"},
		{"bbox=NaN,2,3,4", "minLon \"NaN\" is not a finite number"},
		{"bbox=1,2,Inf,4", "maxLon \"Inf\" is not a finite number"},
		{"bbox=-181,2,3,4", "minLon -181 out of range"},
		{"bbox=1,-91,3,4", "minLat -91 out of range"},
		{"bbox=1,2,3,95", "maxLat 95 out of range"},
		{"bbox=1,50,3,40", "minLat 50 is greater than maxLat 40"},
		{"bbox=1,2,3,4&zoom=x", "zoom \"x\" must be a number"},
		{"bbox=1,2,3,4&zoom=-1", "must be a number from 0"},
		{"bbox=1,2,3,4&zoom=99", "must be a number from 0"},
		{"bbox=1,2,3,4&format=xml", "format \"xml\" must be json or bin"},
		{"bbox=1,2,3,4&limit=5", "unknown parameter \"limit\""},
		{"bbox=1,2,3,4&bbox=1,2,3,4", "given twice"},
		{"bbox=1%2", "malformed query"},
		{"bbox=%zz", "malformed query"},
	} {
		w := getDensity(t, h, tc.query, "")
		var e struct{ Error string }
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != 400 || !strings.HasPrefix(e.Error, "density: ") || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%q: %d %s, want 400 with %q", tc.query, w.Code, w.Body, tc.want)
		}
		if w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%q: content type %q", tc.query, w.Header().Get("Content-Type"))
		}
	}
	// Escaped commas and spaces are fine.
	if w := getDensity(t, h, "bbox=-10%2C-10%2C+10%2C10", ""); w.Code != 200 {
		t.Errorf("escaped bbox: %d %s", w.Code, w.Body)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/density?bbox=1,2,3,4", nil))
	if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %v", w.Code, w.Header())
	}
}

func TestDensityFactor(t *testing.T) {
	world := geo.Box{MinLat: -90, MinLon: -180, MaxLat: 90, MaxLon: 180}
	us := geo.Box{MinLat: 24, MinLon: -125, MaxLat: 50, MaxLon: -66}
	city := geo.Box{MinLat: 40.5, MinLon: -74.3, MaxLat: 40.9, MaxLon: -73.7}
	for _, tc := range []struct {
		name    string
		box     geo.Box
		zoom    float64
		hasZoom bool
		want    int
	}{
		{"world, no zoom: the cell limit decides", world, 0, false, 9},
		{"world at zoom 0: 8 px cells", world, 0, true, 12}, // 8 px × 360/512 deg = 5.6°
		{"US at zoom 3.3", us, 3.3, true, 2},
		{"US at zoom 1", us, 1, true, 6},
		{"US, no zoom", us, 0, false, 2},
		{"city at zoom 11", city, 11, true, 1},
		{"across the antimeridian", geo.Box{MinLat: -60, MinLon: 100, MaxLat: 60, MaxLon: -100}, 0, false, 5},
	} {
		got := densityFactor(tc.box, 0.5, tc.zoom, tc.hasZoom)
		if got != tc.want {
			t.Errorf("%s: factor %d, want %d", tc.name, got, tc.want)
		}
		if n := gridCells(min(lonSpan(tc.box), 360), tc.box.MaxLat-tc.box.MinLat, 0.5*float64(got)); n > MaxDensityCells {
			t.Errorf("%s: %v cells", tc.name, n)
		}
		if got > 1 && !tc.hasZoom {
			// The factor is the smallest within the limit.
			if n := gridCells(min(lonSpan(tc.box), 360), tc.box.MaxLat-tc.box.MinLat, 0.5*float64(got-1)); n <= MaxDensityCells {
				t.Errorf("%s: factor %d is not the smallest (%d gives %v cells)", tc.name, got, got-1, n)
			}
		}
	}
}

func TestSnapBox(t *testing.T) {
	for _, tc := range []struct{ in, want geo.Box }{
		{geo.Box{MinLat: 40.2, MinLon: -74.3, MaxLat: 40.7, MaxLon: -73.9}, geo.Box{MinLat: 39, MinLon: -75, MaxLat: 42, MaxLon: -72}},
		{geo.Box{MinLat: 39, MinLon: -75, MaxLat: 42, MaxLon: -72}, geo.Box{MinLat: 39, MinLon: -75, MaxLat: 42, MaxLon: -72}},
		{geo.Box{MinLat: -90, MinLon: -180, MaxLat: 90, MaxLon: 180}, geo.Box{MinLat: -90, MinLon: -180, MaxLat: 90, MaxLon: 180}},
		{geo.Box{MinLat: 88, MinLon: 178, MaxLat: 89.5, MaxLon: 179.5}, geo.Box{MinLat: 87, MinLon: 177, MaxLat: 90, MaxLon: 180}},
		{geo.Box{MinLat: 0, MinLon: 170, MaxLat: 1, MaxLon: -170}, geo.Box{MinLat: 0, MinLon: 168, MaxLat: 3, MaxLon: -168}},
		{geo.Box{MinLat: 0, MinLon: -178.5, MaxLat: 1, MaxLon: -179}, geo.Box{MinLat: 0, MinLon: -180, MaxLat: 3, MaxLon: 180}},
	} {
		if got := snapBox(tc.in, 3); got != tc.want {
			t.Errorf("snapBox(%+v, 3) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestAppendDensityJSONRounding(t *testing.T) {
	cells := []store.DensityCell{{MinLat: 0.1*3 - 90, MinLon: 0.1*7 - 180, SizeDeg: 0.3, Count: 2}}
	got := string(appendDensityJSON(nil, 0.1*3, 3, cells))
	want := `{"cell_deg":0.3,"factor":3,"total":2,"cells":[[-89.7,-179.3,2]]}` + "\n"
	if got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

func FuzzDensityQuery(f *testing.F) {
	for _, s := range []string{
		"bbox=-125,24,-66,50&zoom=3.3", "bbox=170,-10,-170,10&format=bin", "bbox=-180,-90,180,90",
		"bbox=1%2C2%2C3%2C4", "bbox=0,0,0,0&zoom=30", "zoom=1e308&bbox=1,2,3,4", "bbox=1e-320,0,1,1",
		"bbox=%", "&&&", "bbox=-0,-0,0,0&format=json",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseDensityQuery(raw, "")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "density: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		b := q.box
		if !(b.MinLat >= -90 && b.MaxLat <= 90 && b.MinLat <= b.MaxLat && b.MinLon >= -180 && b.MaxLon <= 180) {
			t.Fatalf("accepted bad box %+v", b)
		}
		for _, cell := range []float64{0.5, 0.1, 5} {
			fac := densityFactor(b, cell, q.zoom, q.hasZoom)
			d := cell * float64(fac)
			if n := gridCells(min(lonSpan(b), 360), b.MaxLat-b.MinLat, d); n > MaxDensityCells && fac < int(360/cell) {
				t.Fatalf("factor %d for %+v gives %v cells", fac, b, n)
			}
			s := snapBox(b, d)
			if s.MinLat > b.MinLat+1e-7 || s.MaxLat < b.MaxLat-1e-7 {
				t.Fatalf("snapped %+v does not cover %+v", s, b)
			}
		}
	})
}

func testingSeed() uint64 {
	s, _ := strconv.ParseUint(strings.TrimSpace(os.Getenv("FLEETD_TEST_SEED")), 10, 64)
	return s
}

// TestConcurrent serves density and dashboard files from several
// goroutines while the fleet moves, for the race detector: pooled scratch
// and the lazily built gzip forms must not be shared between requests.
func TestConcurrent(t *testing.T) {
	st, pts := newFleet(t, 11, 5000, false)
	dens := DensityHandler(st)
	dash := Handler(Options{})
	refs := assetRefs(t, dash)
	stop := make(chan struct{})
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		rng := rand.New(rand.NewPCG(11, 12))
		batch := make([]store.Update, 0, 256)
		for ts := uint32(1_764_000_001); ; ts++ {
			select {
			case <-stop:
				return
			default:
			}
			batch = batch[:0]
			for range cap(batch) {
				i := rng.IntN(len(pts))
				p := store.MakePosition(25+rng.Float64()*24, -124+rng.Float64()*57, int64(ts), 10, 0)
				batch = append(batch, store.Update{ID: []byte("t-" + strconv.FormatInt(int64(i), 36)), Position: p})
			}
			st.Apply(batch)
		}
	}()
	done := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := range 50 {
				q := "bbox=-130,20,-60,55&zoom=" + strconv.Itoa(2+(g+i)%6)
				if i%2 == 0 {
					q += "&format=bin"
				}
				w := getDensity(t, dens, q, "")
				if w.Code != 200 {
					done <- fmt.Errorf("density %s: %d", q, w.Code)
					return
				}
				r := httptest.NewRequest("GET", refs[i%len(refs)], nil)
				r.Header.Set("Accept-Encoding", "gzip")
				fw := httptest.NewRecorder()
				dash.ServeHTTP(fw, r)
				if fw.Code != 200 {
					done <- fmt.Errorf("%s: %d", refs[i%len(refs)], fw.Code)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	<-moved
	if st.Len() != len(pts) {
		t.Fatalf("fleet has %d trucks, want %d", st.Len(), len(pts))
	}
}

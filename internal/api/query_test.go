package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/store"
)

// hitResp is one result object, decoded strictly.
type hitResp struct {
	ID      string   `json:"id"`
	Lat     float64  `json:"lat"`
	Lon     float64  `json:"lon"`
	DistM   *float64 `json:"distance_m"`
	TS      uint32   `json:"ts"`
	Speed   float64  `json:"speed"`
	Heading int      `json:"heading"`
}

type nearbyResp struct {
	Results []hitResp `json:"results"`
}

type withinResp struct {
	Results []hitResp `json:"results"`
	Count   int       `json:"count"`
}

// truck is a stored truck as the brute force sees it.
type truck struct {
	id  string
	pos store.Position
}

// randomFleet stores n trucks: half uniform over the globe, half in
// clusters (one on the antimeridian, one near the north pole, one
// continental), and returns them. It posts through the handler so the whole
// ingest path is exercised.
func randomFleet(t testing.TB, f *fixture, rng *rand.Rand, n int) []truck {
	t.Helper()
	centres := [][2]float64{{0, 179.9}, {89.5, 10}, {40, -100}, {-33.9, 151.2}}
	var b bytes.Buffer
	for i := range n {
		var lat, lon float64
		if i%2 == 0 {
			lat, lon = rng.Float64()*180-90, rng.Float64()*360-180
		} else {
			c := centres[rng.IntN(len(centres))]
			lat = math.Max(-90, math.Min(90, c[0]+rng.NormFloat64()*0.5))
			lon = geo.NormLon(c[1] + rng.NormFloat64()*0.5)
		}
		fmt.Fprintf(&b, `{"id":"t%05d","lat":%.7f,"lon":%.7f,"ts":%d,"speed":%.1f,"heading":%d}`+"\n",
			i, lat, lon, 1764000000+i, rng.Float64()*120, rng.IntN(360))
	}
	var r postResp
	decodeStrict(t, wantJSON(t, f.post(b.String(), ""), http.StatusOK), &r)
	if r.Accepted != n {
		t.Fatalf("fleet: %+v", r)
	}
	var fleet []truck
	f.eng.Store().Range(func(id []byte, p store.Position) bool {
		fleet = append(fleet, truck{string(id), p})
		return true
	})
	return fleet
}

// num formats a query parameter without an exponent (no '+' to escape).
func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func distM(tr truck, lat, lon float64) float64 {
	return geo.DistanceM(lat, lon, tr.pos.LatDeg(), tr.pos.LonDeg())
}

// checkHit checks that a result matches the stored truck field by field.
func checkHit(t *testing.T, h hitResp, byID map[string]truck) {
	t.Helper()
	tr, ok := byID[h.ID]
	if !ok {
		t.Fatalf("result %q is not a stored truck", h.ID)
	}
	p := tr.pos
	if h.Lat != p.LatDeg() || h.Lon != p.LonDeg() || h.TS != p.TS || h.Speed != p.SpeedKmh() || h.Heading != int(p.Heading) {
		t.Fatalf("result %+v does not match stored %+v", h, p)
	}
}

func TestNearbyMatchesBruteForce(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	f := newFixture(t, Options{}, store.Options{})
	fleet := randomFleet(t, f, rng, 4000)
	byID := map[string]truck{}
	for _, tr := range fleet {
		byID[tr.id] = tr
	}
	for q := range 150 {
		lat, lon := rng.Float64()*180-90, rng.Float64()*360-180
		if q%3 == 0 { // near a cluster
			lat, lon = 40+rng.NormFloat64(), -100+rng.NormFloat64()
		}
		k := 1 + rng.IntN(50)
		target := fmt.Sprintf("/v1/nearby?lat=%s&lon=%s&k=%d", num(lat), num(lon), k)
		radius := 0.0
		if q%2 == 0 {
			radius = math.Exp(rng.Float64() * 15) // 1 m to 3,000 km
			target += "&radius_m=" + num(radius)
		}
		var r nearbyResp
		body := wantJSON(t, f.get(target), http.StatusOK)
		decodeStrict(t, body, &r)

		d := make([]float64, 0, len(fleet))
		for _, tr := range fleet {
			if dm := distM(tr, lat, lon); radius == 0 || dm <= radius*(1-1e-9) {
				d = append(d, dm)
			}
		}
		slices.Sort(d)
		want := min(k, len(d))
		if len(r.Results) < want || len(r.Results) > k {
			t.Fatalf("%s: %d results, want %d", target, len(r.Results), want)
		}
		seen := map[string]bool{}
		for i, h := range r.Results {
			checkHit(t, h, byID)
			if seen[h.ID] {
				t.Fatalf("%s: %s twice", target, h.ID)
			}
			seen[h.ID] = true
			if h.DistM == nil {
				t.Fatalf("%s: no distance_m", target)
			}
			bd := distM(byID[h.ID], lat, lon)
			if math.Abs(*h.DistM-bd) > 0.002+bd*1e-9 {
				t.Fatalf("%s: %s distance %v, brute force %v", target, h.ID, *h.DistM, bd)
			}
			if i > 0 && *h.DistM < *r.Results[i-1].DistM {
				t.Fatalf("%s: results not nearest first", target)
			}
			// The i-th result is as near as the i-th brute-force distance.
			if i < len(d) && math.Abs(bd-d[i]) > 0.002+bd*1e-9 {
				t.Fatalf("%s: result %d at %v m, brute force %v m", target, i, bd, d[i])
			}
			if radius > 0 && bd > radius*(1+1e-9) {
				t.Fatalf("%s: %s at %v m outside radius", target, h.ID, bd)
			}
		}
	}
}

func TestNearbyShape(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	f.post(`{"id":"a","lat":0,"lon":0.001,"ts":5,"speed":12.3,"heading":7}`, "")
	got := string(wantJSON(t, f.get("/v1/nearby?lat=0&lon=0"), http.StatusOK))
	want := `{"results":[{"id":"a","lat":0,"lon":0.001,"distance_m":111.195,"ts":5,"speed":12.3,"heading":7}]}`
	if got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	got = string(wantJSON(t, f.get("/v1/nearby?lat=0&lon=0&radius_m=100"), http.StatusOK))
	if got != `{"results":[]}` {
		t.Fatalf("outside the radius: %s", got)
	}
}

func TestQueryBadParams(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	cases := []struct{ target, frag string }{
		{"/v1/nearby", `missing query parameter "lat"`},
		{"/v1/nearby?lat=1", `missing query parameter "lon"`},
		{"/v1/nearby?lat=&lon=1", `lat "" is not a number`},
		{"/v1/nearby?lat=abc&lon=1", `lat "abc" is not a number`},
		{"/v1/nearby?lat=NaN&lon=1", `lat "NaN" is not a finite number`},
		{"/v1/nearby?lat=1&lon=-Inf", `lon "-Inf" is not a finite number`},
		{"/v1/nearby?lat=1e999&lon=1", `lat 1e999 out of range [-90, 90]`},
		{"/v1/nearby?lat=91&lon=1", `lat 91 out of range [-90, 90]`},
		{"/v1/nearby?lat=1&lon=180.5", `lon 180.5 out of range [-180, 180]`},
		{"/v1/nearby?lat=1&lon=1&k=0", `k 0 out of range [1, 10000]`},
		{"/v1/nearby?lat=1&lon=1&k=10001", `k 10001 out of range [1, 10000]`},
		{"/v1/nearby?lat=1&lon=1&k=99999999999999999999", `out of range [1, 10000]`},
		{"/v1/nearby?lat=1&lon=1&k=2.5", `k "2.5" is not a whole number`},
		{"/v1/nearby?lat=1&lon=1&radius_m=0", `radius_m 0 must be a positive`},
		{"/v1/nearby?lat=1&lon=1&radius_m=-3", `radius_m -3 must be a positive`},
		{"/v1/nearby?lat=1&lon=1&radius_m=1e400", `radius_m 1e400 must be a positive, finite`},
		{"/v1/nearby?lat=%zz", `malformed query string`},
		{"/v1/within", `missing query parameter "lat"`},
		{"/v1/within?lat=1&lon=1", `missing query parameter "radius_m"`},
		{"/v1/within?bbox=1,2,3", `must be four numbers`},
		{"/v1/within?bbox=1,2,3,x", `bbox maxLat "x" is not a number`},
		{"/v1/within?bbox=1,NaN,3,4", `bbox minLat "NaN" is not a finite number`},
		{"/v1/within?bbox=-181,2,3,4", `bbox minLon -181 out of range [-180, 180]`},
		{"/v1/within?bbox=1,2,3,95", `bbox maxLat 95 out of range [-90, 90]`},
		{"/v1/within?bbox=1,50,3,40", `bbox minLat 50 is greater than maxLat 40`},
		{"/v1/within?bbox=1,2,3,4&lat=1", `not both`},
		{"/v1/within?bbox=1,2,3,4&limit=0", `limit 0 out of range`},
		{"/v1/within?bbox=1,2,3,4&limit=x", `limit "x" is not a whole number`},
	}
	for _, tc := range cases {
		wantError(t, f.get(tc.target), http.StatusBadRequest, tc.frag)
	}
}

func TestWithinMatchesBruteForce(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	f := newFixture(t, Options{}, store.Options{})
	fleet := randomFleet(t, f, rng, 4000)
	byID := map[string]truck{}
	for _, tr := range fleet {
		byID[tr.id] = tr
	}
	for q := range 120 {
		var target string
		var contains func(tr truck) (in, edge bool)
		circle := q%2 == 0
		if circle {
			lat, lon := rng.Float64()*180-90, rng.Float64()*360-180
			if q%4 == 0 {
				lat, lon = 0, 179.9
			}
			radius := math.Exp(rng.Float64() * 15)
			target = fmt.Sprintf("/v1/within?lat=%s&lon=%s&radius_m=%s", num(lat), num(lon), num(radius))
			contains = func(tr truck) (bool, bool) {
				d := distM(tr, lat, lon)
				return d <= radius, math.Abs(d-radius) <= radius*1e-9
			}
		} else {
			b := geo.Box{MinLat: rng.Float64()*180 - 90, MinLon: rng.Float64()*360 - 180}
			b.MaxLat = math.Min(90, b.MinLat+rng.Float64()*30)
			b.MaxLon = geo.NormLon(b.MinLon + rng.Float64()*60) // may cross the antimeridian
			if q%4 == 1 {
				b = geo.Box{MinLat: -1, MaxLat: 1, MinLon: 179, MaxLon: -179}
			}
			target = fmt.Sprintf("/v1/within?bbox=%s,%s,%s,%s", num(b.MinLon), num(b.MinLat), num(b.MaxLon), num(b.MaxLat))
			contains = func(tr truck) (bool, bool) { return b.Contains(tr.pos.LatDeg(), tr.pos.LonDeg()), false }
		}
		var r withinResp
		decodeStrict(t, wantJSON(t, f.get(target), http.StatusOK), &r)
		if r.Count != len(r.Results) {
			t.Fatalf("%s: count %d, %d results", target, r.Count, len(r.Results))
		}
		got := map[string]bool{}
		for _, h := range r.Results {
			checkHit(t, h, byID)
			if got[h.ID] {
				t.Fatalf("%s: %s twice", target, h.ID)
			}
			got[h.ID] = true
			if (h.DistM != nil) != circle {
				t.Fatalf("%s: distance_m present=%v", target, h.DistM != nil)
			}
		}
		for _, tr := range fleet {
			in, edge := contains(tr)
			if in != got[tr.id] && !edge {
				t.Fatalf("%s: %s (%v, %v) in=%v, returned=%v", target, tr.id, tr.pos.LatDeg(), tr.pos.LonDeg(), in, got[tr.id])
			}
		}
	}
}

func TestWithinLimitAndNDJSON(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	fleet := randomFleet(t, f, rand.New(rand.NewPCG(1, 2)), 500)
	world := "/v1/within?bbox=-180,-90,180,90"
	var r withinResp
	decodeStrict(t, wantJSON(t, f.get(world), http.StatusOK), &r)
	if r.Count != len(fleet) {
		t.Fatalf("world: %d of %d", r.Count, len(fleet))
	}
	decodeStrict(t, wantJSON(t, f.get(world+"&limit=7"), http.StatusOK), &r)
	if r.Count != 7 || len(r.Results) != 7 {
		t.Fatalf("limit 7: %d", r.Count)
	}
	for _, accept := range []string{"application/x-ndjson", "application/json;q=0.5, application/x-ndjson"} {
		w := f.do(req{method: "GET", target: world + "&limit=300", header: map[string]string{"Accept": accept}})
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%d %q", w.Code, w.Header().Get("Content-Type"))
		}
		lines := strings.Split(strings.TrimSuffix(w.Body.String(), "\n"), "\n")
		if len(lines) != 300 {
			t.Fatalf("%d lines", len(lines))
		}
		for _, l := range lines {
			var h hitResp
			decodeStrict(t, []byte(l), &h)
		}
	}
	// Nothing matches: an empty result, still valid in both forms.
	empty := "/v1/within?bbox=0,0,0.0000001,0.0000001"
	if got := f.get(empty).Body.String(); got != `{"results":[],"count":0}` {
		t.Fatalf("empty: %s", got)
	}
	w := f.do(req{method: "GET", target: empty, header: map[string]string{"Accept": "application/x-ndjson"}})
	if w.Body.Len() != 0 {
		t.Fatalf("empty NDJSON: %q", w.Body.String())
	}
}

func TestWantsNDJSON(t *testing.T) {
	for _, tc := range []struct {
		accept string
		want   bool
	}{
		{"", false},
		{"application/json", false},
		{"*/*", false},
		{"application/x-ndjson", true},
		{"Application/X-NDJSON", true},
		{"text/html, application/x-ndjson;q=0.9", true},
		{"application/x-ndjson;q=0", false},
		{"application/x-ndjson; q=0.0", false},
		{"application/x-ndjson;q=0.1", true},
	} {
		if got := wantsNDJSON(tc.accept); got != tc.want {
			t.Errorf("wantsNDJSON(%q) = %v", tc.accept, got)
		}
	}
}

// bulkFleet stores n trucks directly through the engine (fast setup).
func bulkFleet(t testing.TB, f *fixture, n int) {
	t.Helper()
	ups := make([]store.Update, 0, 10000)
	var ids bytes.Buffer
	for i := 0; i < n; i += 10000 {
		ups, ids = ups[:0], bytes.Buffer{}
		ids.Grow(16 * 10000)
		for j := i; j < min(n, i+10000); j++ {
			start := ids.Len()
			fmt.Fprintf(&ids, "truck-%07d", j)
			ups = append(ups, store.Update{ID: ids.Bytes()[start:ids.Len()],
				Position: store.MakePosition(float64(j%1700)/10-85, float64(j%3500)/10-175, 1764000000, 50, 90)})
		}
		if _, err := f.eng.Apply(ups); err != nil {
			t.Fatal(err)
		}
	}
}

// chanWriter is a ResponseWriter that hands every write to the test and
// blocks until the test takes it.
type chanWriter struct {
	h  http.Header
	ch chan []byte
}

func (c *chanWriter) Header() http.Header { return c.h }
func (c *chanWriter) WriteHeader(int)     {}
func (c *chanWriter) Write(p []byte) (int, error) {
	c.ch <- bytes.Clone(p)
	return len(p), nil
}

// TestWithinStreams: the first bytes reach the client while the handler
// is still producing rows (it is blocked on that very write), in a chunk
// no bigger than the stream buffer, and a full scan of many trucks
// allocates a small constant amount, not the size of the answer.
func TestWithinStreams(t *testing.T) {
	const n = 60000
	f := newFixture(t, Options{}, store.Options{})
	bulkFleet(t, f, n)
	for _, accept := range []string{"application/x-ndjson", "application/json"} {
		cw := &chanWriter{h: http.Header{}, ch: make(chan []byte)}
		r := httptest.NewRequest("GET", "/v1/within?bbox=-180,-90,180,90", nil)
		r.Header.Set("Accept", accept)
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.s.ServeHTTP(cw, r)
		}()
		first := <-cw.ch
		select {
		case <-done:
			t.Fatal("handler finished before its first write was taken")
		default:
		}
		if len(first) > streamBufSize {
			t.Fatalf("first write %d bytes: the answer was collected before writing", len(first))
		}
		all, writes := bytes.Clone(first), 1
	drain:
		for {
			select {
			case p := <-cw.ch:
				all = append(all, p...)
				writes++
				if len(p) > streamBufSize {
					t.Fatalf("a write of %d bytes", len(p))
				}
			case <-done:
				break drain
			}
		}
		if rows := bytes.Count(all, []byte(`"id"`)); rows != n || writes < len(all)/streamBufSize {
			t.Fatalf("%s: %d rows in %d bytes over %d writes", accept, rows, len(all), writes)
		}
		if accept == "application/json" {
			var r withinResp
			decodeStrict(t, all, &r)
			if r.Count != n {
				t.Fatalf("count %d", r.Count)
			}
		}
	}

	// Memory: allocations during a full scan stay far below the answer's size.
	discard := &countingWriter{h: http.Header{}}
	r := httptest.NewRequest("GET", "/v1/within?bbox=-180,-90,180,90", nil)
	r.Header.Set("Accept", "application/x-ndjson")
	f.s.ServeHTTP(discard, r) // warm the pools
	discard.n = 0
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f.s.ServeHTTP(discard, r)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	if discard.n < 4<<20 || alloc > 512<<10 {
		t.Fatalf("streamed %d bytes, allocated %d bytes", discard.n, alloc)
	}
	t.Logf("streamed %d bytes of NDJSON allocating %d bytes", discard.n, alloc)
}

type countingWriter struct {
	h http.Header
	n int
}

func (c *countingWriter) Header() http.Header { return c.h }
func (c *countingWriter) WriteHeader(int)     {}
func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	return len(p), nil
}

// TestWithinOverHTTP streams over a real connection and checks that a
// client leaving early stops the handler.
func TestWithinOverHTTP(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	bulkFleet(t, f, 50000)
	srv := httptest.NewServer(f.s)
	defer srv.Close()
	rq, _ := http.NewRequest("GET", srv.URL+"/v1/within?bbox=-180,-90,180,90", nil)
	rq.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	lines := 0
	for sc.Scan() {
		var h hitResp
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
			t.Fatalf("line %d: %v", lines+1, err)
		}
		lines++
	}
	_ = resp.Body.Close()
	if lines != 50000 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d lines, %q", lines, resp.Header.Get("Content-Type"))
	}
	// Leave after the first line; the server must not hang (srv.Close
	// waits for its handlers).
	resp, err = http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = bufio.NewReader(resp.Body).ReadString('\n')
	_ = resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
}

// FuzzRawQuery: for every query string plainQuery accepts, rawQuery reads
// the same first values as url.ParseQuery (which must not fail on it).
func FuzzRawQuery(f *testing.F) {
	for _, s := range []string{"lat=1&lon=2&k=3", "lat=1&lat=2", "&&lat=&lon", "a=b=c&lat==1", "k&k=2", "=1&lat=x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if !plainQuery(raw) {
			return
		}
		q, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatalf("ParseQuery(%q) failed on a plain query: %v", raw, err)
		}
		names := []string{"lat", "lon", "k", "radius_m", "bbox", "limit", ""}
		for k := range q {
			names = append(names, k)
		}
		for _, name := range names {
			want, wantOK := valuesSource(q).first(name)
			got, ok := rawQuery(raw).first(name)
			if got != want || ok != wantOK {
				t.Fatalf("%q: first(%q) = %q, %v; ParseQuery: %q, %v", raw, name, got, ok, want, wantOK)
			}
		}
	})
}

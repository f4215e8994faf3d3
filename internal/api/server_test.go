package api

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/wire"

	"github.com/fleetd/fleetd/internal/store"
)

func TestHealthz(t *testing.T) {
	f := newFixture(t, Options{Token: "tok"}, store.Options{})
	if got := string(wantJSON(t, f.get("/healthz"), http.StatusOK)); got != `{"status":"ok"}` {
		t.Fatal(got)
	}
	_ = f.eng.Close()
	if got := string(wantJSON(t, f.get("/healthz"), http.StatusServiceUnavailable)); got != `{"status":"starting"}` {
		t.Fatal(got)
	}
}

func TestTruckGetDelete(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	f.post(`{"id":"a:b_c.d-1","lat":-33.8688,"lon":151.2093,"ts":1764000000,"speed":0.1,"heading":359.6}`, "")
	got := string(wantJSON(t, f.get("/v1/trucks/a:b_c.d-1"), http.StatusOK))
	// heading 359.6 rounds to 360, which wraps to 0.
	if want := `{"id":"a:b_c.d-1","lat":-33.8688,"lon":151.2093,"ts":1764000000,"speed":0.1,"heading":0}`; got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	wantError(t, f.get("/v1/trucks/nobody"), http.StatusNotFound, `truck "nobody" not found`)
	wantError(t, f.get("/v1/trucks/bad%20id"), http.StatusBadRequest, `invalid truck id "bad id"`)
	wantError(t, f.get("/v1/trucks/a%2Fb"), http.StatusBadRequest, `invalid truck id "a/b"`)
	wantError(t, f.get("/v1/trucks/"+strings.Repeat("x", 65)), http.StatusBadRequest, "invalid truck id")

	w := f.do(req{method: "DELETE", target: "/v1/trucks/a:b_c.d-1"})
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("delete: %d %q", w.Code, w.Body.String())
	}
	wantError(t, f.do(req{method: "DELETE", target: "/v1/trucks/a:b_c.d-1"}), http.StatusNotFound, "not found")
	wantError(t, f.do(req{method: "DELETE", target: "/v1/trucks/%C3%A9"}), http.StatusBadRequest, "invalid truck id")
	wantError(t, f.get("/v1/trucks/a:b_c.d-1"), http.StatusNotFound, "not found")

	_ = f.eng.Close()
	wantError(t, f.do(req{method: "DELETE", target: "/v1/trucks/x"}), http.StatusServiceUnavailable, "shutting down")
}

func TestRouting(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	wantError(t, f.get("/nope"), http.StatusNotFound, "no route for GET /nope")
	wantError(t, f.get("/v1/trucks/"), http.StatusNotFound, "no route")
	wantError(t, f.get("/v1/trucks/a/b"), http.StatusNotFound, "no route")
	for _, tc := range []struct{ method, target, allow string }{
		{"GET", "/v1/positions", "POST"},
		{"PUT", "/v1/positions", "POST"},
		{"POST", "/v1/nearby", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
		{"PATCH", "/v1/trucks/x", "DELETE, GET, HEAD"},
		{"DELETE", "/v1/stats", "GET, HEAD"},
		{"POST", "/debug/pprof/heap", "GET, HEAD"},
		{"PUT", "/debug/pprof/symbol", "GET, HEAD, POST"},
	} {
		w := f.do(req{method: tc.method, target: tc.target})
		wantError(t, w, http.StatusMethodNotAllowed, "not allowed")
		if got := w.Header().Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.target, got, tc.allow)
		}
	}
	if w := f.get("/debug/pprof/"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "goroutine") {
		t.Fatalf("pprof index: %d", w.Code)
	}
	if w := f.get("/debug/pprof/goroutine?debug=1"); w.Code != http.StatusOK {
		t.Fatalf("pprof goroutine: %d", w.Code)
	}
	if w := f.get("/debug/pprof/cmdline"); w.Code != http.StatusOK {
		t.Fatalf("pprof cmdline: %d", w.Code)
	}
}

func TestAuth(t *testing.T) {
	const token = "s3cr3t-token"
	f := newFixture(t, Options{Token: token}, store.Options{})
	f.post(`{"id":"a","lat":1,"lon":1}`, "") // refused, no token
	if f.eng.Store().Len() != 0 {
		t.Fatal("applied without a token")
	}
	protected := []req{
		{method: "POST", target: "/v1/positions", body: `{"id":"a","lat":1,"lon":1}`},
		{method: "GET", target: "/v1/trucks/a"},
		{method: "DELETE", target: "/v1/trucks/a"},
		{method: "GET", target: "/v1/nearby?lat=1&lon=1"},
		{method: "GET", target: "/v1/within?bbox=0,0,1,1"},
		{method: "GET", target: "/v1/stats"},
		{method: "GET", target: "/debug/pprof/"},
		{method: "GET", target: "/no/such/route"},
		{method: "PUT", target: "/v1/positions"},
	}
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Basic " + token, "Bearer " + token + "x", "Bearer " + token[:5], token} {
		for _, r := range protected {
			r.header = map[string]string{"Authorization": auth}
			w := f.do(r)
			wantError(t, w, http.StatusUnauthorized, "bearer token")
			if got := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Fatalf("WWW-Authenticate %q", got)
			}
		}
	}
	for _, auth := range []string{"Bearer " + token, "bearer " + token, "BEARER  " + token + " "} {
		w := f.do(req{method: "POST", target: "/v1/positions", body: `{"id":"a","lat":1,"lon":1}`,
			header: map[string]string{"Authorization": auth, "Content-Type": "application/x-ndjson"}})
		wantJSON(t, w, http.StatusOK)
	}
	// Public routes.
	wantJSON(t, f.get("/healthz"), http.StatusOK)
	if w := f.get("/metrics"); w.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", w.Code)
	}
	// A wrong method on a public path is answered without a token.
	wantError(t, f.do(req{method: "POST", target: "/healthz"}), http.StatusMethodNotAllowed, "not allowed")

	if _, err := New(Options{Engine: f.eng, Token: " padded "}); err == nil {
		t.Fatal("a token with whitespace was accepted")
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("nil engine accepted")
	}
	f := newFixture(t, Options{}, store.Options{})
	if _, err := New(Options{Engine: f.eng, MaxBody: -1}); err == nil {
		t.Fatal("negative MaxBody accepted")
	}
}

// TestPanicRecovered: a panicking handler answers 500 with a JSON error,
// is logged with its stack, and the server goes on; after headers are out
// the connection is aborted instead.
func TestPanicRecovered(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	h := f.s.wrap("test", true, func(http.ResponseWriter, *http.Request) { panic("boom") })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
	wantError(t, w, http.StatusInternalServerError, "internal error")
	if l := f.log.String(); !strings.Contains(l, "handler panic") || !strings.Contains(l, "boom") || !strings.Contains(l, "goroutine") {
		t.Fatalf("log: %s", l)
	}

	h = f.s.wrap("test", true, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("partial"))
		panic(errors.New("late"))
	})
	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Fatalf("recovered %v, want http.ErrAbortHandler", p)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
}

func TestAccessLog(t *testing.T) {
	var buf syncBuffer
	f := newFixture(t, Options{AccessLog: true, Logger: slog.New(slog.NewTextHandler(&buf, nil))}, store.Options{})
	f.get("/v1/trucks/zz")
	if l := buf.String(); !strings.Contains(l, "msg=request") || !strings.Contains(l, "status=404") || !strings.Contains(l, "path=/v1/trucks/zz") {
		t.Fatalf("access log: %s", l)
	}
	f2 := newFixture(t, Options{}, store.Options{})
	f2.get("/v1/trucks/zz")
	if l := f2.log.String(); l != "" {
		t.Fatalf("access log off, but logged: %s", l)
	}
}

func TestStats(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{Shards: 4})
	bulkFleet(t, f, 5000)
	body := wantJSON(t, f.get("/v1/stats"), http.StatusOK)
	var s statsResponse
	decodeStrict(t, body, &s)
	ks := strings.Join(keys(t, body), ",")
	for _, k := range []string{"trucks", "updates_total", "updates_per_sec", "memory", "heap_objects", "gc_pause_p99_ms", "goroutines", "rss_bytes", "uptime_s", "index_cells", "shards"} {
		if !strings.Contains(","+ks+",", ","+k+",") {
			t.Errorf("stats lacks %q: %s", k, ks)
		}
	}
	if s.Trucks != 5000 || s.UpdatesTotal != 5000 || s.Shards != 4 || s.IndexCells == 0 || s.Goroutines == 0 || s.HeapObjects == 0 {
		t.Fatalf("%+v", s)
	}
	m := s.Memory
	if m.Records != 5000*32 || m.Store != m.Records+m.IDs+m.Index+m.FreeLists+m.Spare || m.BytesPerTruck <= 32 || m.GoHeap == 0 {
		t.Fatalf("memory %+v", m)
	}
	if m.RSS <= 0 || s.RSSBytes != m.RSS {
		t.Fatalf("rss %d / %d", m.RSS, s.RSSBytes)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	bulkFleet(t, f, 1234)
	f.post("{\"id\":\"x\",\"lat\":1,\"lon\":1}\n{}\n", "")
	f.get("/v1/trucks/x")
	f.get("/v1/nearby?lat=1&lon=1")
	w := f.get("/metrics")
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %q", w.Code, w.Header().Get("Content-Type"))
	}
	text := w.Body.String()
	for _, want := range []string{
		"fleetd_trucks 1235\n",
		"fleetd_updates_total 1235\n",
		`fleetd_memory_bytes{component="records"} 39520` + "\n",
		`fleetd_memory_bytes{component="index"}`,
		`fleetd_ingest_lines_total{result="accepted"} 1` + "\n",
		`fleetd_ingest_lines_total{result="rejected"} 1` + "\n",
		`fleetd_http_requests_total{code="200",route="positions"} 1` + "\n",
		`fleetd_http_requests_total{code="200",route="truck_get"} 1` + "\n",
		`fleetd_http_request_duration_seconds_bucket{route="nearby",le="+Inf"} 1` + "\n",
		"fleetd_index_cells ",
		"go_goroutines ",
		"go_gc_duration_seconds",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestAppendNumbers(t *testing.T) {
	for _, tc := range []struct {
		v    int32
		want string
	}{{0, "0"}, {407128000, "40.7128"}, {-740060000, "-74.006"}, {1, "0.0000001"}, {-1799999999, "-179.9999999"}, {900000000, "90"}, {123456789, "12.3456789"}} {
		if got := string(wire.AppendCoord(nil, tc.v)); got != tc.want {
			t.Errorf("wire.AppendCoord(%d) = %s, want %s", tc.v, got, tc.want)
		}
	}
	for _, tc := range []struct {
		v    uint16
		want string
	}{{0, "0"}, {1, "0.1"}, {525, "52.5"}, {10000, "1000"}, {65535, "6553.5"}} {
		if got := string(wire.AppendSpeed(nil, tc.v)); got != tc.want {
			t.Errorf("wire.AppendSpeed(%d) = %s, want %s", tc.v, got, tc.want)
		}
	}
	for _, tc := range []struct {
		v    float64
		want string
	}{{0, "0"}, {111.19492664455873, "111.195"}, {1e7 + 0.0004, "10000000"}, {0.0005, "0.001"}} {
		if got := string(wire.AppendMetres(nil, tc.v)); got != tc.want {
			t.Errorf("wire.AppendMetres(%v) = %s, want %s", tc.v, got, tc.want)
		}
	}
	// Every fixed-point value prints as its own decimal: it parses back exactly.
	for _, v := range []int32{1, 7, 10, 99999999, 123456789, 899999999, -5, -1234567} {
		text := string(wire.AppendCoord(nil, v))
		back, err := strconv.ParseFloat(text, 64)
		if err != nil || int32(math.Round(back*1e7)) != v || len(text) > len("-179.9999999") {
			t.Errorf("wire.AppendCoord(%d) = %s does not round-trip", v, text)
		}
	}
}

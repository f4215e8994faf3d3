package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/feed"
	"github.com/fleetd/fleetd/internal/vfs"
)

// discardWriter is a ResponseWriter that keeps only the status, reused
// across requests: the benchmarks time the server's wiring, not a
// recorder's allocations.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

// BenchmarkServeWiring serves API requests through the whole handler
// (Host/Origin guard, routing, the API's wrap) in process: /healthz is
// the wiring's own cost, /v1/stats/gateways an extra route's (the
// Options.Routes path), /index.html the dashboard's.
func BenchmarkServeWiring(b *testing.B) {
	s, err := Open(Options{
		Engine: engine.Options{DataDir: "/data", FS: vfs.NewMem()},
		Feed:   feed.Options{},
		Logger: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { s.CloseStreams(); _ = s.Close() }()
	for _, path := range []string{"/healthz", "/v1/stats/gateways", "/index.html"} {
		b.Run(path, func(b *testing.B) {
			req := httptest.NewRequest("GET", "http://127.0.0.1:8080"+path, nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.code, w.n = 0, 0
				s.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("%s: %d", path, w.code)
				}
			}
		})
	}
}

// TestRouteSameAsMux: route's shortcut for the API's paths answers every
// request as the dashboard mux in front of the API does (status,
// Location, Allow, Content-Type and body), unclean and odd paths too.
func TestRouteSameAsMux(t *testing.T) {
	s, err := Open(Options{
		Engine: engine.Options{DataDir: "/data", FS: vfs.NewMem()},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.CloseStreams(); _ = s.Close() }()
	guard, err := auth.NewGuard(auth.GuardOptions{}) // what Open built from Options.Guard
	if err != nil {
		t.Fatal(err)
	}
	// Not /v1/stats nor /metrics: their bodies change from one request to
	// the next (uptime, request counters).
	for _, tc := range []struct{ method, target string }{
		{"GET", "/healthz"}, {"HEAD", "/healthz"}, {"POST", "/healthz"}, {"GET", "/healthz/"},
		{"GET", "/v1/nearby?lat=1&lon=2"}, {"GET", "/v1/nearby"}, {"GET", "/v1//nearby?lat=1&lon=2"},
		{"GET", "/v1/./nearby"}, {"GET", "/v1/../assets/x"}, {"GET", "/v1/../index.html"},
		{"GET", "/v1/trucks/t1"}, {"GET", "/v1/trucks/a%2Fb"}, {"DELETE", "/v1/trucks/t1"},
		{"GET", "/v1/trucks/"}, {"GET", "/v1/"}, {"GET", "/v1/nope"}, {"POST", "/v1/stats"},
		{"GET", "/v1/sinks/x"}, {"PUT", "/v1/nearby"}, {"GET", "/v1/stats/gateways"},
		{"GET", "/"}, {"GET", "/index.html"}, {"POST", "/metrics"}, {"GET", "/nope"},
	} {
		serve := func(h http.Handler) *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tc.method, "http://127.0.0.1:8080"+tc.target, nil))
			return w
		}
		got, want := serve(s), serve(guard.Handler(s.mux))
		for _, h := range []string{"Location", "Allow", "Content-Type"} {
			if got.Header().Get(h) != want.Header().Get(h) {
				t.Errorf("%s %s: %s %q, through the mux %q", tc.method, tc.target, h, got.Header().Get(h), want.Header().Get(h))
			}
		}
		if got.Code != want.Code || got.Body.String() != want.Body.String() {
			t.Errorf("%s %s: %d %q, through the mux %d %q", tc.method, tc.target, got.Code, got.Body, want.Code, want.Body)
		}
	}
}

package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/fleetd/fleetd/internal/store"
)

// benchFleet is a 1,000,000-truck store (mostly the continental US, a
// fifth anywhere in the world), built once for all density benchmarks.
var benchFleet struct {
	once sync.Once
	st   *store.Store
}

func benchStore(b *testing.B) *store.Store {
	benchFleet.once.Do(func() { benchFleet.st, _ = newFleet(b, 42, 1_000_000, true) })
	if benchFleet.st == nil {
		b.Fatal("building the benchmark fleet failed")
	}
	return benchFleet.st
}

// BenchmarkDensity measures GET /v1/density through the handler (parsing,
// store.Density, sorting, encoding) on the 1M-truck fleet. The dashboard's
// budget for a whole-US view is 20 ms of server time.
func BenchmarkDensity(b *testing.B) {
	st := benchStore(b)
	h := DensityHandler(st)
	for _, bc := range []struct{ name, query string }{
		{"US_zoom3.3_bin", "bbox=-125,24,-66,50&zoom=3.3&format=bin"},
		{"US_zoom3.3_json", "bbox=-125,24,-66,50&zoom=3.3"},
		{"US_zoom5_bin", "bbox=-125,24,-66,50&zoom=5&format=bin"},
		{"world_zoom1_bin", "bbox=-180,-90,180,90&zoom=1&format=bin"},
		{"city_zoom11_bin", "bbox=-74.3,40.5,-73.7,40.9&zoom=11&format=bin"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/v1/density?"+bc.query, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
			bytes := w.Body.Len()
			cells := (bytes - densityHeader) / densityCell
			if !strings.Contains(bc.query, "format=bin") {
				cells = strings.Count(w.Body.String(), "[") - 1
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w.Body.Reset()
				h.ServeHTTP(w, r)
			}
			b.ReportMetric(float64(cells), "cells/answer")
			b.ReportMetric(float64(bytes), "bytes/answer")
			b.ReportMetric(float64(st.Len()), "trucks")
		})
	}
}

package api

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/sim"
)

// The history benchmarks share one server on a real loopback socket over
// a real data directory: the simulator's fleet (US places, its stops
// included), histTrucks trucks reporting every 30 s over the last day,
// applied through the engine lap by lap as devices would send them.
const (
	histTrucks = 2000
	histHours  = 24
	histEvery  = 30
)

var (
	histOnce sync.Once
	histSrv  *httptest.Server
	histEng  *engine.Engine
	histEnd  int64 // ts of the last lap
	histErr  error
)

func historyServer(b *testing.B) *httptest.Server {
	histOnce.Do(func() {
		dir, err := tempDir()
		if err != nil {
			histErr = err
			return
		}
		eng, err := engine.Open(engine.Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			History: &history.Options{}})
		if err != nil {
			histErr = err
			return
		}
		f, err := sim.NewFleet(sim.FleetOptions{Trucks: histTrucks, Seed: 3, Region: sim.RegionUS})
		if err != nil {
			histErr = err
			return
		}
		start := time.Now().Add(-histHours * time.Hour).Truncate(time.Hour)
		var ups []sim.Update
		batch := make([]fleet.Update, 0, histTrucks)
		for lap := range histHours * 3600 / histEvery {
			at := start.Add(time.Duration(lap*histEvery) * time.Second)
			ups = f.Next(ups[:0], histTrucks, at)
			batch = batch[:0]
			for _, u := range ups {
				batch = append(batch, fleet.Update{ID: sim.AppendID(nil, u.Truck, f.IDWidth()), Position: fleet.MakePosition(u.Lat, u.Lon, u.TS, u.Speed, u.Heading)})
			}
			if _, err := eng.Apply(batch); err != nil {
				histErr = err
				return
			}
			histEnd = at.Unix()
		}
		if histErr = eng.FlushHistory(); histErr != nil {
			return
		}
		s, err := New(Options{Engine: eng, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			histErr = err
			return
		}
		histEng, histSrv = eng, httptest.NewServer(s)
	})
	if histErr != nil {
		b.Fatal(histErr)
	}
	return histSrv
}

// histID is the i-th truck of a benchmark's sequence of random trucks.
func histID(i int) []byte {
	return sim.AppendID(nil, uint32((i*7919)%histTrucks), sim.IDWidth(histTrucks))
}

// histDir is the history server's data directory, removed by
// closeHistoryServer.
var histDir string

func tempDir() (string, error) {
	d, err := os.MkdirTemp("", "fleetd-api-history-")
	histDir = d
	return d, err
}

// closeHistoryServer stops the shared history server (TestMain).
func closeHistoryServer() {
	if histSrv != nil {
		histSrv.Close()
		_ = histEng.Close()
	}
	if histDir != "" {
		_ = os.RemoveAll(histDir)
	}
}

// latencies runs GET target(i) b.N times from one client and reports the
// median and 99th percentile round trip.
func latencies(b *testing.B, target func(i int) string) {
	srv := historyServer(b)
	cl := srv.Client()
	ds := make([]time.Duration, 0, b.N)
	var bytes int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		res, err := cl.Get(srv.URL + target(i))
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("%s: %d", target(i), res.StatusCode)
		}
		ds = append(ds, time.Since(t0))
		bytes += n
	}
	b.StopTimer()
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(bytes)/float64(b.N), "bytes/answer")
}

// BenchmarkTrail24h: one truck's last 24 hours (2,880 points) as JSON over
// HTTP, a random truck each time.
func BenchmarkTrail24h(b *testing.B) {
	latencies(b, func(i int) string {
		return fmt.Sprintf("/v1/trucks/%s/history?from=%d&to=%d", histID(i), histEnd-86400+histEvery, histEnd)
	})
}

// BenchmarkTrips24h: one truck's trips and stops of the last 24 hours.
func BenchmarkTrips24h(b *testing.B) {
	latencies(b, func(i int) string {
		return fmt.Sprintf("/v1/trucks/%s/trips?from=%d&to=%d", histID(i), histEnd-86400+histEvery, histEnd)
	})
}

// BenchmarkExport streams the whole day of the fleet (5.76M points) as
// NDJSON and as Parquet over HTTP and reports points per second.
func BenchmarkExport(b *testing.B) {
	for _, format := range []string{"ndjson", "parquet"} {
		b.Run(format, func(b *testing.B) {
			srv := historyServer(b)
			points := float64(histTrucks * histHours * 3600 / histEvery)
			b.ResetTimer()
			var bytes int64
			for range b.N {
				res, err := srv.Client().Get(srv.URL + fmt.Sprintf("/v1/history/export?from=%d&to=%d&format=%s", histEnd-86400, histEnd, format))
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || res.Trailer.Get(incompleteTrailer) != "false" {
					b.Fatalf("export: %d, trailer %q", res.StatusCode, res.Trailer.Get(incompleteTrailer))
				}
				bytes += n
			}
			b.ReportMetric(points*float64(b.N)/b.Elapsed().Seconds(), "points/s")
			b.ReportMetric(float64(bytes)/float64(b.N)/points, "bytes/point")
		})
	}
}

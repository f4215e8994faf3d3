package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkServeIngestSustained holds a paced rate against the real
// binary with its default flags (history on, --fsync always) for a long
// while, as issue 13 asks ("sustains 1M updates/s for 10 minutes with
// history's backlog bounded"): FLEETD_SUSTAIN is the duration (default
// 20s; 10m for the run), FLEETD_SUSTAIN_RATE the updates/s
// (default 1000000), or "max": as fast as the server takes them, for the
// whole duration (lag_max_s then means nothing). Run with -benchtime 1x:
// one op is the whole run.
//
// The rate at "max" is what history costs ingest over a long run:
// BenchmarkServeIngest's rounds of a few seconds end before the merges
// their flushes call for begin (a filling hour's first merge waits for
// 256 flushes, about 13M points at a million trucks), so their ratio
// against BenchmarkServeIngestNoHistory counts the flushes alone.
// Compare FLEETD_SUSTAIN_RATE=max against the same with
// FLEETD_BENCH_FLAGS=--history=false.
//
// The load is the benchmark fleet's first FLEETD_SUSTAIN_LAPS laps
// (default 4, ~110 MB of NDJSON a lap) rendered once, then sent round and
// round with every "ts" rewritten to the second the lap is due, so that
// each lap is a fresh point for every truck, one second after the last
// (the trucks jump back every few laps: positions repeat, times never do).
// Lap k is stamped an hour ago plus k seconds, so that rates over 1M/s
// stay behind the server's clock for the first hour.
// One truck reports once a second at 1M updates/s, i.e. the fleet is
// 30 times the 1M trucks at a point every 30 s.
//
// Every second it samples /v1/stats and reports the peaks of history's
// backlog (points buffered, runs waiting to be merged) and of the server's
// RSS, ingest-side waits for history's writer, and how far the client
// fell behind its schedule: a sustained rate keeps lag_max_s near 0; the
// CPU the server and this load generator took, an update and in cores
// (cores_busy near the machine's count: the machine is the limit); and
// the RSS 5 s after the last batch, per truck of the 1M (FLEETD_SUSTAIN=240s
// at 1M/s is 240 points a truck, as two hours at a point every 30 s).
func BenchmarkServeIngestSustained(b *testing.B) {
	dur := envDuration(b, "FLEETD_SUSTAIN", 20*time.Second)
	rate, paced := 0, os.Getenv("FLEETD_SUSTAIN_RATE") != "max"
	if paced {
		rate = envInt(b, "FLEETD_SUSTAIN_RATE", 1_000_000)
	}
	laps := envInt(b, "FLEETD_SUSTAIN_LAPS", 4)
	dir, err := os.MkdirTemp("", "fleetd-sustain-")
	if err != nil {
		b.Fatal(err)
	}
	s, err := launchBenchServer(dir, 15*time.Second, benchFlags()...) // the defaults, as users run it, unless FLEETD_BENCH_FLAGS
	if err != nil {
		b.Fatal(err)
	}
	defer s.stop()
	empty, err := sustainStats(s)
	if err != nil {
		b.Fatal(err)
	}

	perLap := benchFleet / benchBatch
	bodies := s.render(laps * perLap)
	tsAt := make([][]int32, len(bodies)) // offsets of each body's ts digits
	for i, body := range bodies {
		tsAt[i] = tsOffsets(b, body)
	}

	tr := &http.Transport{MaxIdleConnsPerHost: benchConns, MaxConnsPerHost: benchConns, DisableCompression: true, WriteBufferSize: 64 << 10}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	url := "http://" + s.addr + "/v1/positions"
	var interval time.Duration
	total := int64(math.MaxInt64)
	if paced {
		interval = time.Duration(float64(time.Second) * benchBatch / float64(rate))
		total = int64(dur / interval)
	}

	var peak sustainPeaks
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() { peak.sample(s, stopSampling) })

	cpu0, client0 := s.cpuTime(b), processCPU(b)
	b.ResetTimer()
	start := time.Now()
	t0 := start.Unix() - 3600 // lap k is at t0+k: an hour of headroom before rates over 1M/s outrun the clock
	var next atomic.Int64
	var failed atomic.Value
	var lagMax atomic.Int64
	lat := make([][]time.Duration, benchConns)
	var wg sync.WaitGroup
	for c := range benchConns {
		wg.Go(func() {
			buf := make([]byte, 0, len(bodies[0])+1024)
			var resp bytes.Buffer
			for {
				k := next.Add(1) - 1
				if k >= total || !paced && time.Since(start) >= dur {
					return
				}
				due := start.Add(time.Duration(k) * interval)
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				} else if -wait > time.Duration(lagMax.Load()) {
					lagMax.Store(int64(-wait)) // racy max: a sample is enough
				}
				i := int(k % int64(len(bodies)))
				buf = append(buf[:0], bodies[i]...)
				lap := k / int64(perLap)
				ts := strconv.AppendInt(nil, t0+lap, 10)
				for _, off := range tsAt[i] {
					copy(buf[off:off+10], ts)
				}
				sent := time.Now()
				if err := postBatch(cl, url, buf, &resp); err != nil {
					failed.Store(fmt.Sprintf("batch %d: %v", k, err))
					return
				}
				lat[c] = append(lat[c], time.Since(sent))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if !paced {
		total = next.Load() - benchConns // the batches sent: each connection took one more and stopped
	}
	close(stopSampling)
	sampling.Wait()
	if msg := failed.Load(); msg != nil {
		b.Fatalf("%s\nthe server's last log lines:\n%s", msg, s.log.String())
	}
	time.Sleep(5 * time.Second) // history's last flush and merge, the scavenger
	end, err := sustainStats(s)
	if err != nil {
		b.Fatal(err)
	}
	if path := os.Getenv("FLEETD_BENCH_HEAPPROFILE"); path != "" {
		if err := s.fetch("/debug/pprof/heap", path); err != nil {
			b.Errorf("heap profile: %v", err)
		}
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	n := float64(total) * benchBatch
	b.ReportMetric(n/elapsed.Seconds(), "updates/s")
	server, client := s.cpuTime(b)-cpu0, processCPU(b)-client0
	b.ReportMetric(float64(server)/n, "server_cpu_ns/update")
	// The load generator shares the machine: what both took of it says
	// whether a shortfall is the server's or the machine's.
	b.ReportMetric(float64(client)/n, "client_cpu_ns/update")
	b.ReportMetric(float64(server+client)/float64(elapsed), "cores_busy")
	b.ReportMetric(time.Duration(lagMax.Load()).Seconds(), "lag_max_s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(peak.buffered.Load()), "history_backlog_peak_points")
	b.ReportMetric(float64(peak.bufferBytes.Load())/(1<<20), "history_buffer_peak_MiB")
	b.ReportMetric(float64(peak.runs.Load()), "history_runs_peak")
	b.ReportMetric(float64(end.History.Waits-empty.History.Waits), "history_backpressure_waits")
	b.ReportMetric(end.History.WaitSeconds-empty.History.WaitSeconds, "history_backpressure_wait_s")
	b.ReportMetric(float64(peak.rss.Load()-empty.RSS)/(1<<20), "server_rss_peak_over_empty_MiB")
	b.ReportMetric(float64(end.RSS-empty.RSS)/benchFleet, "server_rss_end_over_empty_B/truck")
	b.ReportMetric(float64(end.History.DiskBytes)/float64(max(end.History.Stored, 1)), "history_disk_B/point")
	if end.History.Dropped != empty.History.Dropped {
		b.Errorf("history dropped %d points", end.History.Dropped-empty.History.Dropped)
	}
}

// processCPU is this process's CPU time so far (user and system).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("client cpu time: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sustainStat is the part of /v1/stats the sustained run watches.
type sustainStat struct {
	RSS     int64 `json:"rss_bytes"`
	History struct {
		Buffered    int64   `json:"buffered"`
		BufferBytes int64   `json:"buffer_bytes"`
		Runs        int64   `json:"runs"`
		Waits       int64   `json:"backpressure_waits_total"`
		WaitSeconds float64 `json:"backpressure_wait_seconds_total"`
		DiskBytes   int64   `json:"disk_bytes"`
		Stored      int64   `json:"stored_points"`
		Dropped     uint64  `json:"dropped_total"`
	} `json:"history"`
}

func sustainStats(s *benchServer) (sustainStat, error) {
	var st sustainStat
	res, err := http.Get("http://" + s.addr + "/v1/stats")
	if err != nil {
		return st, err
	}
	defer res.Body.Close()
	return st, json.NewDecoder(res.Body).Decode(&st)
}

// sustainPeaks are the highest values the samples saw.
type sustainPeaks struct {
	buffered, bufferBytes, runs, rss atomic.Int64
}

func (p *sustainPeaks) sample(s *benchServer, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		st, err := sustainStats(s)
		if err != nil {
			continue
		}
		for _, v := range []struct {
			a *atomic.Int64
			x int64
		}{{&p.buffered, st.History.Buffered}, {&p.bufferBytes, st.History.BufferBytes}, {&p.runs, st.History.Runs}, {&p.rss, st.RSS}} {
			if v.x > v.a.Load() {
				v.a.Store(v.x)
			}
		}
	}
}

// tsOffsets finds the offset of the 10 digits after every `"ts":` in an
// NDJSON body, failing if a ts is not 10 digits (the rewrite keeps the
// body's length).
func tsOffsets(b *testing.B, body []byte) []int32 {
	var offs []int32
	key := []byte(`"ts":`)
	for at := 0; ; {
		i := bytes.Index(body[at:], key)
		if i < 0 {
			return offs
		}
		off := at + i + len(key)
		if off+10 >= len(body) || body[off+10] != ',' && body[off+10] != '}' {
			b.Fatalf("ts at %d is not 10 digits: %q", off, body[off:min(off+12, len(body))])
		}
		offs = append(offs, int32(off))
		at = off + 10
	}
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

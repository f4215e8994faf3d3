package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/sim"
)

const (
	benchFleet = 1_000_000
	benchBatch = 10_000
	benchConns = 4
)

// The benchmark fleet is the project's simulator (sim.Fleet, US places)
// on a virtual clock: each lap over the fleet is benchLapSeconds later, so
// every truck reports every 30 simulated seconds, having driven what its
// speed says along its road. Alert rules see what they would see in
// production: speeds of 0-100 km/h, stops at depots, headings along the
// route. The clock starts two hours before the benchmark, so that history
// (on by default) keeps every point, and stays behind the server's clock
// for 240 laps.
const benchLapSeconds = 30

var benchEpoch = time.Now().Add(-2 * time.Hour).Unix()

// render returns the bodies of the server's next n batches.
func (s *benchServer) render(n int) [][]byte {
	if s.fleet == nil {
		f, err := sim.NewFleet(sim.FleetOptions{Trucks: benchFleet, Seed: 1, Region: sim.RegionUS})
		if err != nil {
			panic(err)
		}
		s.fleet = f
	}
	bodies := make([][]byte, n)
	ups := make([]sim.Update, 0, benchBatch)
	for i := range bodies {
		lap := s.rendered * benchBatch / benchFleet
		s.rendered++
		ups = s.fleet.Next(ups[:0], benchBatch, time.Unix(benchEpoch+int64(lap)*benchLapSeconds, 0))
		bodies[i] = sim.AppendNDJSON(make([]byte, 0, benchBatch*112), ups, s.fleet.IDWidth())
	}
	return bodies
}

// benchServer is one fleetd process kept over the benchmark's rounds, so
// the fleet it holds grows across them.
type benchServer struct {
	cmd      *exec.Cmd
	addr     string
	dir      string
	batches  atomic.Int64
	emptyRSS int64      // the server's RSS before any update
	fleet    *sim.Fleet // the trucks' state, kept over rounds
	rendered int        // batches rendered so far
	log      logTail    // the end of the server's stderr, for failures
}

// logTail keeps the last 16 KiB written to it: what a bench server said
// last, shown when a benchmark fails.
type logTail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *logTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 16<<10; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *logTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

var (
	benchOnce sync.Once
	benchSrv  *benchServer
	benchErr  error
)

func startBenchServer(args ...string) (*benchServer, error) {
	dir, err := os.MkdirTemp("", "fleetd-bench-")
	if err != nil {
		return nil, err
	}
	s, err := launchBenchServer(dir, 15*time.Second, append(append([]string{"--ttl", "0"}, args...), benchFlags()...)...)
	if err != nil {
		return nil, err
	}
	st, err := s.stats()
	if err != nil {
		s.stop()
		return nil, err
	}
	s.emptyRSS = st.RSS
	return s, nil
}

// benchFlags are the server flags in FLEETD_BENCH_FLAGS (split at
// spaces), which the benchmarks' servers take after their own: to measure
// a setting, e.g. FLEETD_BENCH_FLAGS="--shards 4".
func benchFlags() []string { return strings.Fields(os.Getenv("FLEETD_BENCH_FLAGS")) }

// launchBenchServer starts `fleetd serve` on dir/data with args and waits
// (up to timeout) until it says it is ready.
func launchBenchServer(dir string, timeout time.Duration, args ...string) (*benchServer, error) {
	s := &benchServer{dir: dir}
	s.cmd = exec.Command(bin, append([]string{"serve", "--http", "127.0.0.1:0", "--data", filepath.Join(dir, "data")}, args...)...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 4096)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		tmp := make([]byte, 1024)
		n, err := stderr.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if m := listening.FindSubmatch(buf); m != nil && bytes.Contains(buf, []byte("msg=ready")) {
			s.addr = string(m[1])
			go func() { _, _ = io.Copy(&s.log, stderr) }()
			return s, nil
		}
		if err != nil {
			break
		}
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	return nil, fmt.Errorf("fleetd did not start: %s", buf)
}

func (s *benchServer) stop() {
	_ = s.cmd.Process.Signal(sigterm)
	_ = s.cmd.Wait()
	_ = os.RemoveAll(s.dir)
}

// BenchmarkServeIngest drives the real fleetd binary: 4 connections post
// 10,000-line NDJSON batches of a 1,000,000-truck simulated fleet (see
// render; the bodies are rendered before the timer starts, so the client
// costs the 2 shared cores little more than sending them) from this
// process. One op is one batch. The server's own RSS (from /v1/stats) is reported
// once the fleet has been sent twice: run with -benchtime=200x.
//
// Its rounds last seconds: against BenchmarkServeIngestNoHistory they say
// what history costs a burst (its Add and its flushes), not a long run,
// whose merges (a filling hour's first waits for 256 flushes) begin
// later: BenchmarkServeIngestSustained with FLEETD_SUSTAIN_RATE=max
// measures that.
func BenchmarkServeIngest(b *testing.B) {
	benchOnce.Do(func() { benchSrv, benchErr = startBenchServer() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	ingestBench(b, benchSrv)
}

// BenchmarkServeIngestNoHistory is BenchmarkServeIngest against a server
// that keeps no history (--history=false): compare the two updates/s
// figures for what history costs on the whole ingest path.
func BenchmarkServeIngestNoHistory(b *testing.B) {
	benchNoHistOnce.Do(func() { benchNoHistSrv, benchNoHistErr = startBenchServer("--history=false") })
	if benchNoHistErr != nil {
		b.Fatal(benchNoHistErr)
	}
	ingestBench(b, benchNoHistSrv)
}

var (
	benchNoHistOnce sync.Once
	benchNoHistSrv  *benchServer
	benchNoHistErr  error
)

// BenchmarkServeIngestRules is BenchmarkServeIngest against a server with
// 100 alert rules, 10 of them on zones around US cities: compare the two
// updates/s figures for what rules cost on the whole ingest path.
func BenchmarkServeIngestRules(b *testing.B) {
	benchRulesOnce.Do(func() {
		benchRulesSrv, benchRulesErr = startBenchServer()
		if benchRulesErr == nil {
			benchRulesErr = putBenchRules(benchRulesSrv)
		}
	})
	if benchRulesErr != nil {
		b.Fatal(benchRulesErr)
	}
	ingestBench(b, benchRulesSrv)
}

var (
	benchRulesOnce sync.Once
	benchRulesSrv  *benchServer
	benchRulesErr  error
)

// putBenchRules defines 10 zones (10–30 km boxes around US cities) and 100
// rules: 90 of the shapes dispatchers write, with varied constants, and 10
// on the zones.
func putBenchRules(s *benchServer) error {
	put := func(path, body string) error {
		req, _ := http.NewRequest("PUT", "http://"+s.addr+path, strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			msg, _ := io.ReadAll(res.Body)
			return fmt.Errorf("PUT %s: %d %s", path, res.StatusCode, msg)
		}
		return nil
	}
	cities := [][2]float64{{40.71, -74.01}, {34.05, -118.24}, {41.88, -87.63}, {29.76, -95.37}, {33.45, -112.07},
		{39.95, -75.17}, {29.42, -98.49}, {32.72, -117.16}, {32.78, -96.80}, {37.34, -121.89}}
	for i, c := range cities {
		d := 0.1 + 0.02*float64(i)
		zone := fmt.Sprintf(`{"type":"Polygon","coordinates":[[[%[2]v,%[1]v],[%[4]v,%[1]v],[%[4]v,%[3]v],[%[2]v,%[3]v],[%[2]v,%[1]v]]]}`,
			c[0]-d, c[1]-d, c[0]+d, c[1]+d)
		if err := put(fmt.Sprintf("/v1/zones/city-%d", i), zone); err != nil {
			return err
		}
		when := []string{`inside(\"city-%d\")`, `inside(\"city-%d\") && speed > 50`, `near(\"city-%d\", 1000) && speed < 5`, `speed > 80 && near(\"city-%d\", 1000)`}[i%4]
		if err := put(fmt.Sprintf("/v1/rules/zone-%d", i), fmt.Sprintf(`{"when":"`+when+`"}`, i)); err != nil {
			return err
		}
	}
	shapes := []string{
		"speed > %[1]d", "speed > %[1]d && heading < %[2]d && dt < 60", "prev.speed - speed > %[3]d && dt < 3",
		"speed - prev.speed > %[3]d && dt < 3", "speed < 2 && prev.speed >= %[3]d", "abs(heading - prev.heading) > %[4]d && speed > 30",
		"(hour() >= 22 || hour() < 5) && speed > %[3]d", "moved_m > %[5]d && dt < 30", "dt > %[5]d",
		"speed > %[1]d || dt > %[5]d && speed > 0", "lat > 47.%[3]d && lat < 48.9 && lon > -122.%[3]d",
	}
	for i := range 90 {
		when := fmt.Sprintf(shapes[i%len(shapes)], 100+i%40, (i*37)%360, 15+i%20, 60+i%60, 600+i*10)
		if err := put(fmt.Sprintf("/v1/rules/mixed-%02d", i), `{"when":"`+when+`"}`); err != nil {
			return err
		}
	}
	return nil
}

// ingestBench posts the 1M-truck fleet to s from benchConns connections.
func ingestBench(b *testing.B, s *benchServer) {
	tr := &http.Transport{MaxIdleConnsPerHost: benchConns, MaxConnsPerHost: benchConns, DisableCompression: true, WriteBufferSize: 64 << 10}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	url := "http://" + s.addr + "/v1/positions"

	bodies := s.render(b.N)
	if path := os.Getenv("FLEETD_BENCH_CPUPROFILE"); path != "" {
		stop := s.profile(b, path)
		defer stop()
	}
	st0, err := s.stats() // for this run's share of history's waits
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := s.cpuTime(b)
	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range benchConns {
		wg.Go(func() {
			var resp bytes.Buffer
			for {
				k := next.Add(1) - 1
				if k >= int64(b.N) {
					break
				}
				s.batches.Add(1)
				if err := postBatch(cl, url, bodies[k], &resp); err != nil {
					failed.Store(err.Error())
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if msg := failed.Load(); msg != nil {
		b.Fatalf("%s\nthe server's last log lines:\n%s", msg, s.log.String())
	}
	b.ReportMetric(float64(b.N)*benchBatch/b.Elapsed().Seconds(), "updates/s")
	b.ReportMetric(float64(s.cpuTime(b)-cpu0)/(float64(b.N)*benchBatch), "server_cpu_ns/update")
	if s.batches.Load()*benchBatch < 2*benchFleet {
		return
	}
	st, err := s.stats()
	if err != nil || st.Trucks != benchFleet {
		b.Fatalf("stats: %+v, %v", st, err)
	}
	if path := os.Getenv("FLEETD_BENCH_HEAPPROFILE"); path != "" {
		if err := s.fetch("/debug/pprof/heap", path); err != nil {
			b.Errorf("heap profile: %v", err)
		}
	}
	b.ReportMetric(float64(st.RSS-s.emptyRSS)/benchFleet, "server_rss_over_empty_B/truck")
	b.ReportMetric(st.Memory.GoHeap/benchFleet, "server_heap_B/truck")
	b.ReportMetric(st.Memory.BytesPerTruck, "store_B/truck")
	if h := st.History; h != nil {
		// This run's waits, and the share of its time that ingest stood
		// waiting for history's writer (summed over the connections).
		w0, ws0 := 0.0, 0.0
		if st0.History != nil {
			w0, ws0 = float64(st0.History.Waits), st0.History.WaitSeconds
		}
		b.ReportMetric(float64(h.Waits)-w0, "history_backpressure_waits")
		b.ReportMetric((h.WaitSeconds-ws0)/(benchConns*b.Elapsed().Seconds()), "history_wait_share")
		b.ReportMetric(float64(h.Buffered), "history_backlog_points")
		b.ReportMetric(h.PerPoint, "history_disk_B/point")
		b.ReportMetric(float64(h.Runs), "history_runs") // run files: how far the merges have gone
	}
}

// postBatch posts one benchmark batch (benchBatch lines) and checks that
// the server accepted all of it; resp is scratch for the answer.
func postBatch(cl *http.Client, url string, body []byte, resp *bytes.Buffer) error {
	res, err := cl.Post(url, "application/x-ndjson", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp.Reset()
	_, _ = io.Copy(resp, res.Body)
	_ = res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(resp.String(), fmt.Sprintf(`{"accepted":%d,"rejected":0,`, benchBatch)) {
		return fmt.Errorf("%d %s", res.StatusCode, resp.String())
	}
	return nil
}

// cpuTime is the server process's CPU time so far (user and system, from
// /proc): on a shared machine, CPU per update is steadier than updates/s.
func (s *benchServer) cpuTime(b *testing.B) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("server cpu time: %v", err)
	}
	// Fields after the command name (which may hold spaces) start at state.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	var utime, stime int64
	if _, err := fmt.Sscan(f[11], &utime); err != nil {
		b.Fatalf("server cpu time: %v", err)
	}
	if _, err := fmt.Sscan(f[12], &stime); err != nil {
		b.Fatalf("server cpu time: %v", err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// profile records the server's CPU profile (its /debug/pprof/profile)
// for the first FLEETD_BENCH_CPUSECONDS seconds (default 3) of the run
// and returns a function that waits for it and writes it to path, so that
// `FLEETD_BENCH_CPUPROFILE=cpu.out go test -bench ...` shows where the
// server's time goes. Give the run at least that long.
func (s *benchServer) profile(b *testing.B, path string) func() {
	return fetchProfile(b, s.addr, path)
}

// fetch saves the body of GET path on the server to file.
func (s *benchServer) fetch(path, file string) error { return fetchTo("http://"+s.addr+path, file) }

// fetchTo saves the body of GET url to file.
func fetchTo(url, file string) error {
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err == nil && res.StatusCode != 200 {
		err = fmt.Errorf("%s: %d %s", url, res.StatusCode, data)
	}
	if err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o644)
}

type serverStats struct {
	Trucks     int    `json:"trucks"`
	RSS        int64  `json:"rss_bytes"`
	AlertPairs int64  `json:"alert_pairs"`
	AlertShed  uint64 `json:"alert_pairs_shed_total"`
	Memory     struct {
		BytesPerTruck float64 `json:"bytes_per_truck"`
		GoHeap        float64 `json:"go_heap"`
	} `json:"memory"`
	History *struct {
		Buffered    int     `json:"buffered"`
		Waits       int64   `json:"backpressure_waits_total"`
		WaitSeconds float64 `json:"backpressure_wait_seconds_total"`
		PerPoint    float64 `json:"disk_bytes_per_point"`
		StoredPts   uint64  `json:"stored_points"`
		Runs        int     `json:"runs"`
	} `json:"history"`
}

func (s *benchServer) stats() (serverStats, error) {
	var st serverStats
	res, err := http.Get("http://" + s.addr + "/v1/stats")
	if err != nil {
		return st, err
	}
	defer res.Body.Close()
	err = json.NewDecoder(res.Body).Decode(&st)
	return st, err
}

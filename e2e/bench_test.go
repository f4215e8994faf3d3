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

// renderBatch appends NDJSON for trucks [first, first+n) on lap pass: a
// fixed home per truck over the continental US, moved a little each lap.
func renderBatch(dst []byte, first, n, pass int) []byte {
	for i := first; i < first+n; i++ {
		h := uint64(i)*0x9E3779B97F4A7C15 + 1
		h ^= h >> 29
		u := sim.Update{
			Truck:   uint32(i),
			Lat:     24.5 + float64(h%24_900_000)/1e6 + float64(pass%64)*0.003,
			Lon:     -124.8 + float64(h>>32%57_900_000)/1e6 + float64(pass%64)*0.003,
			TS:      1764000000 + int64(pass),
			Speed:   float64(h>>20%1300) / 10,
			Heading: float64(h >> 40 % 360),
		}
		dst = u.AppendJSON(dst, 7)
		dst = append(dst, '\n')
	}
	return dst
}

// benchServer is one fleetd process kept over the benchmark's rounds, so
// the fleet it holds grows across them.
type benchServer struct {
	cmd      *exec.Cmd
	addr     string
	dir      string
	batches  atomic.Int64
	emptyRSS int64 // the server's RSS before any update
}

var (
	benchOnce sync.Once
	benchSrv  *benchServer
	benchErr  error
)

func startBenchServer() (*benchServer, error) {
	dir, err := os.MkdirTemp("", "fleetd-bench-")
	if err != nil {
		return nil, err
	}
	s := &benchServer{dir: dir}
	s.cmd = exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--ttl", "0")
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 4096)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		tmp := make([]byte, 1024)
		n, err := stderr.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if m := listening.FindSubmatch(buf); m != nil && bytes.Contains(buf, []byte("msg=ready")) {
			s.addr = string(m[1])
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			st, err := s.stats()
			if err != nil {
				s.stop()
				return nil, err
			}
			s.emptyRSS = st.RSS
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
// 10,000-line NDJSON batches of a 1,000,000-truck fleet from this process.
// One op is one batch. The server's own RSS (from /v1/stats) is reported
// once the fleet has been sent twice: run with -benchtime=200x.
func BenchmarkServeIngest(b *testing.B) {
	benchOnce.Do(func() { benchSrv, benchErr = startBenchServer() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	s := benchSrv
	tr := &http.Transport{MaxIdleConnsPerHost: benchConns, MaxConnsPerHost: benchConns, DisableCompression: true, WriteBufferSize: 64 << 10}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	url := "http://" + s.addr + "/v1/positions"

	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range benchConns {
		wg.Go(func() {
			body := make([]byte, 0, benchBatch*110)
			var resp bytes.Buffer
			for next.Add(1) <= int64(b.N) {
				k := s.batches.Add(1) - 1
				body = renderBatch(body[:0], int(k*benchBatch)%benchFleet, benchBatch, int(k*benchBatch/benchFleet))
				res, err := cl.Post(url, "application/x-ndjson", bytes.NewReader(body))
				if err != nil {
					failed.Store(err.Error())
					return
				}
				resp.Reset()
				_, _ = io.Copy(&resp, res.Body)
				_ = res.Body.Close()
				if res.StatusCode != 200 || !strings.HasPrefix(resp.String(), `{"accepted":10000,"rejected":0,`) {
					failed.Store(fmt.Sprintf("%d %s", res.StatusCode, resp.String()))
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if msg := failed.Load(); msg != nil {
		b.Fatal(msg)
	}
	b.ReportMetric(float64(b.N)*benchBatch/b.Elapsed().Seconds(), "updates/s")
	if s.batches.Load()*benchBatch < 2*benchFleet {
		return
	}
	st, err := s.stats()
	if err != nil || st.Trucks != benchFleet {
		b.Fatalf("stats: %+v, %v", st, err)
	}
	b.ReportMetric(float64(st.RSS-s.emptyRSS)/benchFleet, "server_rss_over_empty_B/truck")
	b.ReportMetric(st.Memory.GoHeap/benchFleet, "server_heap_B/truck")
	b.ReportMetric(st.Memory.BytesPerTruck, "store_B/truck")
}

type serverStats struct {
	Trucks int   `json:"trucks"`
	RSS    int64 `json:"rss_bytes"`
	Memory struct {
		BytesPerTruck float64 `json:"bytes_per_truck"`
		GoHeap        float64 `json:"go_heap"`
	} `json:"memory"`
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

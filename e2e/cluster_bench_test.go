package e2e

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/sim"
)

// The cluster benchmarks run three NATS servers and three fleetd nodes
// (R3) on this machine, and a single fleetd beside them for comparison,
// all sharing its cores with the load generator:
//
//	go test -run '^$' -bench 'BenchmarkCluster' -benchtime 300x -count 5 ./e2e/
//
// FLEETD_BENCH_CLUSTER_ARGS adds flags to every node's command line.

const (
	clusterBenchTrucks = 200_000
	clusterBenchBatch  = 10_000
	clusterBenchConns  = 6
)

// benchNode is a fleetd process of a benchmark.
type benchNode struct {
	cmd  *exec.Cmd
	addr string
	args []string
	done chan struct{}
	mu   sync.Mutex
	log  strings.Builder
}

var benchListening = regexp.MustCompile(`msg=listening addr=(\S+)`)

func startBenchNode(tb testing.TB, args ...string) *benchNode {
	tb.Helper()
	n := &benchNode{args: args, done: make(chan struct{})}
	n.cmd = exec.Command(bin, append([]string{"serve", "--http", "127.0.0.1:0"}, args...)...)
	pr, err := n.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	addr, ready := make(chan string, 1), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		r := false
		for sc.Scan() {
			n.mu.Lock()
			n.log.WriteString(sc.Text() + "\n")
			n.mu.Unlock()
			if m := benchListening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
			if !r && strings.Contains(sc.Text(), "msg=ready") {
				r = true
				close(ready)
			}
		}
		_ = n.cmd.Wait()
		close(n.done)
	}()
	select {
	case n.addr = <-addr:
	case <-time.After(30 * time.Second):
		tb.Fatal("fleetd did not listen")
	}
	select {
	case <-ready:
	case <-n.done:
		tb.Fatalf("fleetd exited: %s", n.log.String())
	case <-time.After(60 * time.Second):
		tb.Fatal("fleetd not ready")
	}
	tb.Cleanup(func() { n.stop() })
	return n
}

func (n *benchNode) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// clusterStats is the part of /v1/stats the benchmarks read.
type clusterStats struct {
	UpdatesTotal int64 `json:"updates_total"`
	Cluster      struct {
		LagP50     float64 `json:"apply_lag_p50_ms"`
		LagP99     float64 `json:"apply_lag_p99_ms"`
		PubBytes   int64   `json:"published_bytes"`
		PubUpdates int64   `json:"published_updates"`
		StreamByte uint64  `json:"stream_bytes"`
		Applied    int64   `json:"applied_updates"`
	} `json:"cluster"`
}

func getStats(tb testing.TB, addr, token string) clusterStats {
	tb.Helper()
	url := "http://" + addr + "/v1/stats"
	if token != "" {
		url += "?after=" + token
	}
	var st clusterStats
	for deadline := time.Now().Add(120 * time.Second); ; {
		res, err := http.Get(url)
		if err != nil {
			tb.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == 200 {
			if err := json.Unmarshal(b, &st); err != nil {
				tb.Fatal(err)
			}
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("stats: %d %s", res.StatusCode, b)
		}
	}
}

var (
	renderedMu sync.Mutex
	rendered   = map[int][][]byte{} // by updates a body
)

// renderBodies returns n NDJSON bodies of clusterBenchBatch updates of
// the simulator's fleet (the same ones for every benchmark of the run).
func renderBodies(n int) [][]byte { return renderBodiesOf(n, clusterBenchBatch) }

// renderBodiesOf is renderBodies with batch updates a body.
func renderBodiesOf(n, batch int) [][]byte {
	renderedMu.Lock()
	defer renderedMu.Unlock()
	if len(rendered[batch]) < n {
		rendered[batch] = renderFleet(n, batch)
	}
	return rendered[batch][:n]
}

func renderFleet(n, batch int) [][]byte {
	f, err := sim.NewFleet(sim.FleetOptions{Trucks: clusterBenchTrucks, Seed: 1, Region: sim.RegionUS})
	if err != nil {
		panic(err)
	}
	epoch := time.Now().Add(-time.Hour).Unix()
	out := make([][]byte, n)
	ups := make([]sim.Update, 0, batch)
	for i := range out {
		lap := i * batch / clusterBenchTrucks
		ups = f.Next(ups[:0], batch, time.Unix(epoch+int64(lap)*10, 0))
		out[i] = sim.AppendNDJSON(nil, ups, f.IDWidth())
	}
	return out
}

// ingest posts bodies over clusterBenchConns connections spread over
// addrs and returns the merged token of the answers.
func ingest(tb testing.TB, addrs []string, bodies [][]byte) string {
	var next atomic.Int64
	var mu sync.Mutex
	tokens := map[int]uint64{}
	var wg sync.WaitGroup
	for c := range clusterBenchConns {
		wg.Go(func() {
			addr := addrs[c%len(addrs)]
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					return
				}
				code, body, tok, err := post(addr, string(bodies[i]))
				if err != nil || code != 200 {
					tb.Errorf("post: %d %s %v", code, body, err)
					return
				}
				mu.Lock()
				tokenMax(tokens, tok)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return tokenString(tokens)
}

// BenchmarkClusterIngest: acknowledged updates/s into three nodes on a
// 3-server R3 stream, the apply lag p99 and the bytes on the bus per
// update; and the same bodies into a single node (history on, defaults).
// FLEETD_BENCH_CPUPROFILE=FILE saves node 0's CPU profile during R3.
func BenchmarkClusterIngest(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		bodies := renderBodies(b.N)
		n := startBenchNode(b, "--data", filepath.Join(b.TempDir(), "d"))
		b.ResetTimer()
		start := time.Now()
		ingest(b, []string{n.addr}, bodies[:len(bodies)])
		el := time.Since(start)
		b.ReportMetric(float64(len(bodies)*clusterBenchBatch)/el.Seconds(), "updates/s")
	})
	b.Run("R3", func(b *testing.B) {
		bodies := renderBodies(b.N)
		ns := startNATS(b)
		var nodes []*benchNode
		var addrs []string
		for i := range 3 {
			nodes = append(nodes, startBenchNode(b, benchNodeArgs(b, ns, i)...))
			addrs = append(addrs, nodes[i].addr)
		}
		var stopProfile func()
		if path := os.Getenv("FLEETD_BENCH_CPUPROFILE"); path != "" {
			stopProfile = fetchProfile(b, nodes[0].addr, path) // node 0's
		}
		cpu0, ncpu0 := nodesCPU(nodes), natsCPU(ns)
		b.ResetTimer()
		start := time.Now()
		tok := ingest(b, addrs, bodies[:len(bodies)])
		el := time.Since(start)
		b.StopTimer()
		if stopProfile != nil {
			stopProfile()
		}
		updates := float64(len(bodies) * clusterBenchBatch)
		b.ReportMetric(updates/el.Seconds(), "updates/s")
		var lag float64
		var pubBytes, pubUpdates int64
		var stream uint64
		for _, n := range nodes {
			st := getStats(b, n.addr, tok)
			lag = max(lag, st.Cluster.LagP99)
			pubBytes += st.Cluster.PubBytes
			pubUpdates += st.Cluster.PubUpdates
			stream = st.Cluster.StreamByte
		}
		b.ReportMetric(time.Since(start).Seconds()-el.Seconds(), "s-to-apply-after")
		// CPU per acknowledged update, until every node has applied it:
		// on 2 cores, 2e9 ns/s over their sum (and the client's) bounds
		// the rate.
		b.ReportMetric(float64(nodesCPU(nodes)-cpu0)/updates, "nodes_cpu_ns/update")
		b.ReportMetric(float64(natsCPU(ns)-ncpu0)/updates, "nats_cpu_ns/update")
		b.ReportMetric(lag, "lag-p99-ms")
		if pubUpdates > 0 {
			b.ReportMetric(float64(pubBytes)/float64(pubUpdates), "payload-B/update")
			b.ReportMetric(float64(stream)/float64(pubUpdates), "stream-B/update")
		}
	})
}

// BenchmarkClusterCatchUp: a node stopped while the others ingest b.N
// bodies, restarted: updates/s it applies from the stream until it has
// caught up (from its start to the writers' token), and its CPU per
// update over that time. FLEETD_BENCH_CPUPROFILE=FILE saves its CPU
// profile (the first FLEETD_BENCH_CPUSECONDS, default 3, after ready).
func BenchmarkClusterCatchUp(b *testing.B) {
	bodies := renderBodies(b.N)
	ns := startNATS(b)
	var nodes []*benchNode
	for i := range 3 {
		nodes = append(nodes, startBenchNode(b, benchNodeArgs(b, ns, i)...))
	}
	ingest(b, []string{nodes[0].addr}, bodies[:1]) // the stream exists, node 2 has saved positions
	time.Sleep(1500 * time.Millisecond)
	nodes[2].stop()
	tok := ingest(b, []string{nodes[0].addr, nodes[1].addr}, bodies)
	b.ResetTimer()
	start := time.Now()
	n := startBenchNode(b, nodes[2].args...)
	var stopProfile func()
	if path := os.Getenv("FLEETD_BENCH_CPUPROFILE"); path != "" {
		stopProfile = fetchProfile(b, n.addr, path)
	}
	st := getStats(b, n.addr, tok)
	el := time.Since(start)
	cpu := procCPU(n.cmd.Process.Pid)
	b.StopTimer()
	b.ReportMetric(float64(st.Cluster.Applied)/el.Seconds(), "updates/s")
	b.ReportMetric(float64(st.Cluster.Applied), "updates")
	// The node's CPU from its start to caught up, over what it applied.
	b.ReportMetric(float64(cpu)/float64(st.Cluster.Applied), "server_cpu_ns/update")
	if stopProfile != nil {
		stopProfile()
	}
}

// benchNodeArgs is the command line of cluster node i of a benchmark:
// its data directory, the NATS servers (its own first) and
// FLEETD_BENCH_CLUSTER_ARGS (e.g. "--history=false").
func benchNodeArgs(b *testing.B, ns []*natsProc, i int) []string {
	args := []string{"--data", filepath.Join(b.TempDir(), fmt.Sprint(i)), "--nats", natsURLs(ns, i)}
	return append(args, strings.Fields(os.Getenv("FLEETD_BENCH_CLUSTER_ARGS"))...)
}

// nodesCPU is the CPU time the nodes' processes have used.
func nodesCPU(nodes []*benchNode) time.Duration {
	var t time.Duration
	for _, n := range nodes {
		t += procCPU(n.cmd.Process.Pid)
	}
	return t
}

// natsCPU is the CPU time the NATS servers' processes have used.
func natsCPU(ns []*natsProc) time.Duration {
	var t time.Duration
	for _, n := range ns {
		if n.running {
			t += procCPU(n.cmd.Process.Pid)
		}
	}
	return t
}

// fetchProfile records the CPU profile of the server at addr for
// FLEETD_BENCH_CPUSECONDS seconds (default 3) and returns a function that
// waits for it and writes it to path.
func fetchProfile(b *testing.B, addr, path string) func() {
	secs := cmp.Or(os.Getenv("FLEETD_BENCH_CPUSECONDS"), "3")
	done := make(chan error, 1)
	go func() {
		res, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=" + secs)
		if err != nil {
			done <- err
			return
		}
		defer res.Body.Close()
		data, err := io.ReadAll(res.Body)
		if err == nil && res.StatusCode != 200 {
			err = fmt.Errorf("%d %s", res.StatusCode, data)
		}
		if err == nil {
			err = os.WriteFile(path, data, 0o644)
		}
		done <- err
	}()
	return func() {
		if err := <-done; err != nil {
			b.Errorf("cpu profile: %v", err)
		}
	}
}

// BenchmarkClusterApplyLag: the apply lag on every node at a paced
// acknowledged ingest rate, FLEETD_BENCH_CLUSTER_RATE updates/s (default
// 100,000) in bodies of 1,000 updates posted on schedule to the three
// nodes in turn (3 NATS servers, R3). Reports the rate reached, the
// worst node's apply lag p50 and p99 (its last 4,096 messages, from
// JetStream taking a message in to that node having applied it) and the
// writers' acknowledgement latency p50 and p99.
//
//	go test -run '^$' -bench BenchmarkClusterApplyLag -benchtime 2000x -count 5 ./e2e/
func BenchmarkClusterApplyLag(b *testing.B) {
	const batch, conns = 1000, 16
	rate := 100_000.0
	if v := os.Getenv("FLEETD_BENCH_CLUSTER_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			b.Fatalf("FLEETD_BENCH_CLUSTER_RATE=%q: want updates/s", v)
		}
		rate = r
	}
	bodies := renderBodiesOf(b.N, batch)
	ns := startNATS(b)
	var addrs []string
	for i := range 3 {
		addrs = append(addrs, startBenchNode(b, benchNodeArgs(b, ns, i)...).addr)
	}
	every := time.Duration(float64(time.Second) * batch / rate)
	var (
		next   atomic.Int64
		mu     sync.Mutex
		tokens = map[int]uint64{}
		acks   = make([]time.Duration, len(bodies))
	)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					return
				}
				time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
				t0 := time.Now()
				code, body, tok, err := post(addrs[i%len(addrs)], string(bodies[i]))
				if err != nil || code != 200 {
					b.Errorf("post: %d %s %v", code, body, err)
					return
				}
				acks[i] = time.Since(t0)
				mu.Lock()
				tokenMax(tokens, tok)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if b.Failed() {
		return
	}
	tok := tokenString(tokens)
	var p50, p99 float64
	for _, a := range addrs {
		st := getStats(b, a, tok)
		p50, p99 = max(p50, st.Cluster.LagP50), max(p99, st.Cluster.LagP99)
	}
	slices.Sort(acks)
	b.ReportMetric(float64(len(bodies)*batch)/el.Seconds(), "updates/s")
	b.ReportMetric(p50, "lag-p50-ms")
	b.ReportMetric(p99, "lag-p99-ms")
	b.ReportMetric(float64(acks[len(acks)/2].Microseconds())/1000, "ack-p50-ms")
	b.ReportMetric(float64(acks[min(len(acks)-1, len(acks)*99/100)].Microseconds())/1000, "ack-p99-ms")
}

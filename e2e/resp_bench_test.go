package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The RESP benchmarks run one fleetd with --resp, holding a fleet of
// respBenchFleet trucks uniform over the continental US, and a bare
// net/http server (testdata/floor) beside it. They report the server
// process's own CPU per operation (utime+stime from /proc/PID/stat), so
// the client's cost on the shared cores is not counted, and the client's
// latency percentiles.
const (
	respBenchFleet   = 1_000_000
	respBenchClients = 4
	respBenchPoints  = 2000
)

type respBench struct {
	cmd       *exec.Cmd
	http, rsp string // addresses
	dir       string
	floor     *exec.Cmd
	floorAddr string
	points    [respBenchPoints][2]float64
	emptyRSS  int64 // the server's RSS before any update
	pass      int   // the fleet's positions are this pass's (fleetPass)

	peerOnce sync.Once // Redis, started by the first benchmark that needs it
	peer     *redisPeer
	peerErr  error
}

var (
	respBenchOnce sync.Once
	respBenchSrv  *respBench
	respBenchErr  error
)

var floorListening = regexp.MustCompile(`listening (\S+)`)

// waitStderr reads a process's stderr until re matches, then drains it.
func waitStderr(r io.Reader, re *regexp.Regexp, also string) ([]string, error) {
	br := bufio.NewReader(r)
	var seen []string
	var m []string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		line, err := br.ReadString('\n')
		seen = append(seen, line)
		if mm := re.FindStringSubmatch(line); mm != nil {
			m = append(m, mm[1])
		}
		if len(m) > 0 && (also == "" || strings.Contains(strings.Join(seen, ""), also)) {
			go func() { _, _ = io.Copy(io.Discard, br) }()
			return m, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%v: %s", err, strings.Join(seen, ""))
		}
	}
	return nil, fmt.Errorf("timed out: %s", strings.Join(seen, ""))
}

// startRESPBench starts the server (with more flags), the floor server
// and loads the fleet (one pass).
func startRESPBench(flags ...string) (*respBench, error) {
	dir, err := os.MkdirTemp("", "fleetd-respbench-")
	if err != nil {
		return nil, err
	}
	s := &respBench{dir: dir}
	s.cmd = exec.Command(bin, append([]string{"serve", "--http", "127.0.0.1:0", "--resp", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--ttl", "0"},
		append(flags, benchFlags()...)...)...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	addrs, err := waitStderr(stderr, regexp.MustCompile(`addr=(\S+)`), "resp listening")
	if err != nil || len(addrs) < 2 {
		s.stop()
		return nil, fmt.Errorf("fleetd did not start: %v %v", addrs, err)
	}
	s.http, s.rsp = addrs[0], addrs[1]
	if s.emptyRSS, err = s.rss(); err != nil {
		s.stop()
		return nil, err
	}
	floorBin := filepath.Join(dir, "floor")
	build := exec.Command("go", "build", "-o", floorBin, "./testdata/floor")
	if out, err := build.CombinedOutput(); err != nil {
		s.stop()
		return nil, fmt.Errorf("building the floor server: %v\n%s", err, out)
	}
	s.floor = exec.Command(floorBin)
	fe, _ := s.floor.StderrPipe()
	if err := s.floor.Start(); err != nil {
		s.stop()
		return nil, err
	}
	fa, err := waitStderr(fe, floorListening, "")
	if err != nil {
		s.stop()
		return nil, err
	}
	s.floorAddr = fa[0]
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range s.points {
		s.points[i] = [2]float64{25 + rng.Float64()*24, -124 + rng.Float64()*57}
	}
	// Load the fleet with pipelined SETs (what BenchmarkRESPIngest times).
	if _, err := s.ingest(respBenchFleet, 1); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *respBench) stop() {
	if s.peer != nil {
		s.peer.stop()
	}
	for _, c := range []*exec.Cmd{s.cmd, s.floor} {
		if c != nil && c.Process != nil {
			_ = c.Process.Signal(sigterm)
			_ = c.Wait()
		}
	}
	_ = os.RemoveAll(s.dir)
}

func getRESPBench(b *testing.B) *respBench {
	respBenchOnce.Do(func() { respBenchSrv, respBenchErr = startRESPBench() })
	if respBenchErr != nil {
		b.Fatal(respBenchErr)
	}
	return respBenchSrv
}

// procCPU is a process's user+system CPU time (Linux /proc).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): state is 3,
	// utime 14, stime 15 (1-based over the whole line).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// ingest pipelines n SETs (truck IDs 0..n-1, positions moved by pass)
// over respBenchClients connections and waits for every +OK.
// respBenchTS0 is the ingest passes' first ts: an hour ago, so that
// history keeps the points (a fixed ts of 2025 was past its 7-day
// retention: history dropped them, and the RSS "with history" held
// almost no stored points).
var respBenchTS0 = time.Now().Unix() - 3600

func (s *respBench) ingest(n, pass int) (time.Duration, error) {
	per := n / respBenchClients
	var wg sync.WaitGroup
	errs := make(chan error, 2*respBenchClients)
	bodies := make([][]byte, respBenchClients)
	for c := range respBenchClients {
		ts := strconv.FormatInt(respBenchTS0+int64(pass), 10)
		var b []byte
		fleetPass(c, per, pass, func(id, lat, lon string) {
			b = fmt.Appendf(b, "*7\r\n$3\r\nSET\r\n$5\r\nfleet\r\n$%d\r\n%s\r\n$5\r\nPOINT\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n",
				len(id), id, len(lat), lat, len(lon), lon, len(ts), ts)
		})
		bodies[c] = b
	}
	s.pass = pass
	start := time.Now()
	for c := range respBenchClients {
		nc, err := net.Dial("tcp", s.rsp)
		if err != nil {
			return 0, err
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := nc.Write(bodies[c]); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			defer nc.Close()
			br := bufio.NewReaderSize(nc, 64<<10)
			for range per {
				line, err := br.ReadSlice('\n')
				if err != nil || string(line) != "+OK\r\n" {
					errs <- fmt.Errorf("SET reply %q: %v", line, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// fleetPass calls fn for client c's share (per trucks) of pass's
// positions: IDs c·per … (c+1)·per-1, uniform over the continental US,
// the same numbers on every call, for fleetd and for the peer servers.
func fleetPass(c, per, pass int, fn func(id, lat, lon string)) {
	rng := rand.New(rand.NewPCG(uint64(c), uint64(pass)))
	for i := c * per; i < (c+1)*per; i++ {
		lat := strconv.FormatFloat(25+rng.Float64()*24, 'f', 6, 64)
		lon := strconv.FormatFloat(-124+rng.Float64()*57, 'f', 6, 64)
		fn(fmt.Sprintf("truck-%07d", i), lat, lon)
	}
}

// rss is the server's resident set from /v1/stats.
func (s *respBench) rss() (int64, error) {
	res, err := http.Get("http://" + s.http + "/v1/stats")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var st struct {
		RSS int64 `json:"rss_bytes"`
	}
	err = json.NewDecoder(res.Body).Decode(&st)
	return st.RSS, err
}

// BenchmarkRESPIngest: pipelined SETs over 4 connections, one op a full
// pass over the 1M-truck fleet, under each fsync policy (always is the
// default). Each reports the server's RSS over its empty RSS per truck
// after the load and the timed passes: run with -benchtime=2x or more
// (the load plus two passes is the README's "after three passes"), so
// that memory an fsync policy retains shows (issue 17: interval=1s held
// 125 B/truck, always 62). history=false is the default policy without
// the history store, the RESP path's own ceiling.
func BenchmarkRESPIngest(b *testing.B) {
	for _, flags := range [][]string{nil, {"--fsync=interval=1s"}, {"--fsync=never"}, {"--history=false"},
		{"--fsync=interval=1s", "--history=false"}} {
		name := "fsync=always"
		if flags != nil {
			name = strings.ReplaceAll(strings.Join(flags, ","), "--", "")
		}
		b.Run(name, func(b *testing.B) {
			s := getRESPBench(b)
			if flags != nil {
				var err error
				if s, err = startRESPBench(flags...); err != nil {
					b.Fatal(err)
				}
				defer s.stop()
			}
			respIngest(b, s)
		})
	}
}

func respIngest(b *testing.B, s *respBench) {
	b.ReportAllocs()
	var total time.Duration
	cpu0 := procCPU(s.cmd.Process.Pid)
	pass := 2
	if f := os.Getenv("FLEETD_BENCH_PROFILE"); f != "" {
		defer s.profile(b, f)()
	}
	for b.Loop() {
		d, err := s.ingest(respBenchFleet, pass)
		if err != nil {
			b.Fatal(err)
		}
		total += d
		pass++
	}
	cpu := procCPU(s.cmd.Process.Pid) - cpu0
	ups := float64(b.N) * respBenchFleet
	b.ReportMetric(ups/total.Seconds(), "updates/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/ups, "server-ns/update")
	time.Sleep(1500 * time.Millisecond) // one more interval: the last fsync of interval mode
	rss, err := s.rss()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rss-s.emptyRSS)/respBenchFleet, "server_rss_over_empty_B/truck")
	if f := os.Getenv("FLEETD_BENCH_HEAPPROFILE"); f != "" { // where that RSS is
		if err := fetchTo("http://"+s.http+"/debug/pprof/heap", f); err != nil {
			b.Errorf("heap profile: %v", err)
		}
	}
}

// profile takes a CPU profile of the server into file until the returned
// func is called (FLEETD_BENCH_PROFILE=file).
func (s *respBench) profile(b *testing.B, file string) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := http.Get("http://" + s.http + "/debug/pprof/profile?seconds=" + cmp.Or(os.Getenv("FLEETD_BENCH_PROFILE_S"), "8"))
		if err != nil {
			b.Log(err)
			return
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		_ = os.WriteFile(file, body, 0o644)
	}()
	return func() { <-done }
}

// queryClient runs one kind of request against a server.
type queryClient interface {
	query(lat, lon float64) error
	close()
}

type httpClient struct {
	c   *http.Client
	url string // with %v placeholders for lat and lon, or fixed
	buf []byte
}

func (h *httpClient) query(lat, lon float64) error {
	u := h.url
	if strings.Contains(u, "%v") {
		u = fmt.Sprintf(u, lat, lon)
	}
	res, err := h.c.Get(u)
	if err != nil {
		return err
	}
	h.buf, err = readAllInto(h.buf[:0], res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("%s: %d %s", u, res.StatusCode, h.buf)
	}
	return err
}

func (h *httpClient) close() {}

func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// rawHTTPClient sends GETs on one keep-alive HTTP/1.1 connection, the
// request written and the response read by hand, as respClient does
// RESP: what it times is the server's round trip, not net/http's client,
// whose own CPU and garbage (4 KiB, 54 allocations a request) share the
// box's two cores with the server and show in the client's p99.
type rawHTTPClient struct {
	nc   net.Conn
	br   *bufio.Reader
	host string
	url  string // path and query, with %v placeholders for lat and lon, or fixed
	wbuf []byte
	body []byte
}

func newRawHTTPClient(b *testing.B, addr, url string) func() queryClient {
	return func() queryClient {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		return &rawHTTPClient{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), host: addr, url: url}
	}
}

func (h *rawHTTPClient) query(lat, lon float64) error {
	u := h.url
	if strings.Contains(u, "%v") {
		u = fmt.Sprintf(u, lat, lon)
	}
	w := append(h.wbuf[:0], "GET "...)
	w = append(w, u...)
	w = append(w, " HTTP/1.1\r\nHost: "...)
	w = append(w, h.host...)
	w = append(w, "\r\n\r\n"...)
	h.wbuf = w
	if _, err := h.nc.Write(w); err != nil {
		return err
	}
	var err error
	h.body, err = readHTTPResponse(h.br, h.body[:0])
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	return nil
}

func (h *rawHTTPClient) close() { _ = h.nc.Close() }

// readHTTPResponse reads one HTTP/1.1 response, its body (by
// Content-Length or chunked) appended to body; a status other than 200,
// or a server closing the connection, is an error.
func readHTTPResponse(br *bufio.Reader, body []byte) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return body, err
	}
	ok := bytes.HasPrefix(line, []byte("HTTP/1.1 200 "))
	status := string(bytes.TrimSpace(line))
	length, chunked := -1, false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return body, err
		}
		if len(line) <= 2 {
			break // the blank line
		}
		k, v, _ := bytes.Cut(line, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil {
				return body, err
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")) && bytes.EqualFold(v, []byte("close")):
			return body, fmt.Errorf("server closes the connection: %s", status)
		}
	}
	switch {
	case chunked:
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return body, err
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
			if err != nil {
				return body, fmt.Errorf("chunk size %q: %w", line, err)
			}
			if body, err = readN(br, body, int(n)+2); err != nil { // the chunk and its CRLF
				return body, err
			}
			body = body[:len(body)-2]
			if n == 0 {
				break
			}
		}
	case length >= 0:
		if body, err = readN(br, body, length); err != nil {
			return body, err
		}
	default:
		return body, fmt.Errorf("no Content-Length: %s", status)
	}
	if !ok {
		return body, fmt.Errorf("%s %s", status, body)
	}
	return body, nil
}

func readN(br *bufio.Reader, b []byte, n int) ([]byte, error) {
	b = slices.Grow(b, n)
	_, err := io.ReadFull(br, b[len(b):len(b)+n])
	return b[:len(b)+n], err
}

type respClient struct {
	nc   net.Conn
	br   *bufio.Reader
	cmd  string // with %v placeholders, inline form
	wbuf []byte
}

func (r *respClient) query(lat, lon float64) error {
	r.wbuf = r.wbuf[:0]
	cmd := r.cmd
	if strings.Contains(cmd, "%") {
		cmd = fmt.Sprintf(cmd, lat, lon)
	}
	f := strings.Fields(cmd)
	r.wbuf = fmt.Appendf(r.wbuf, "*%d\r\n", len(f))
	for _, a := range f {
		r.wbuf = fmt.Appendf(r.wbuf, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := r.nc.Write(r.wbuf); err != nil {
		return err
	}
	return skipReply(r.br)
}

func (r *respClient) close() { _ = r.nc.Close() }

// respPipeClient sends its queries depth at a time, as a pipelining
// client does, and reads the depth replies: one write and about one read
// a batch, so that the server's CPU a query is the protocol and the
// search with the syscalls shared out. Its first query (runQueries'
// warm-up) goes alone; queries still queued at close are sent then,
// after the CPU was read, so use a -benchtime that each client's share
// divides by depth (20000x: 5,000 a client at 4 clients, 20,000 at 1).
type respPipeClient struct {
	respClient
	depth, queued int
	warm          bool
}

func newRESPPipeClient(tb testing.TB, addr, cmd string, depth int) func() queryClient {
	mk := newRESPClient(tb, addr, cmd)
	return func() queryClient { return &respPipeClient{respClient: *mk().(*respClient), depth: depth} }
}

func (r *respPipeClient) query(lat, lon float64) error {
	if !r.warm {
		r.warm = true
		return r.respClient.query(lat, lon)
	}
	if r.queued == 0 {
		r.wbuf = r.wbuf[:0]
	}
	f := strings.Fields(fmt.Sprintf(r.cmd, lat, lon))
	r.wbuf = fmt.Appendf(r.wbuf, "*%d\r\n", len(f))
	for _, a := range f {
		r.wbuf = fmt.Appendf(r.wbuf, "$%d\r\n%s\r\n", len(a), a)
	}
	if r.queued++; r.queued < r.depth {
		return nil
	}
	return r.flush()
}

func (r *respPipeClient) flush() error {
	n := r.queued
	r.queued = 0
	if _, err := r.nc.Write(r.wbuf); err != nil {
		return err
	}
	for range n {
		if err := skipReply(r.br); err != nil {
			return err
		}
	}
	return nil
}

func (r *respPipeClient) close() {
	if r.queued > 0 {
		_ = r.flush()
	}
	r.respClient.close()
}

// skipReply reads one RESP reply; an error reply is an error.
func skipReply(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	switch line[0] {
	case '-':
		return fmt.Errorf("%s", line)
	case '$':
		n, _ := strconv.Atoi(string(line[1 : len(line)-2]))
		if n >= 0 {
			_, err = br.Discard(n + 2)
		}
		return err
	case '*':
		n, _ := strconv.Atoi(string(line[1 : len(line)-2]))
		for range n {
			if err := skipReply(br); err != nil {
				return err
			}
		}
	}
	return nil
}

// settle waits, for up to a minute, until process pid has used under
// 2 % of a core over two quarter-seconds running.
func settle(b *testing.B, pid int) {
	const window, busy = 250 * time.Millisecond, 5 * time.Millisecond
	quiet := 0
	for deadline := time.Now().Add(time.Minute); quiet < 2; {
		if time.Now().After(deadline) {
			b.Logf("process %d still busy after a minute: its background work counts as the queries'", pid)
			return
		}
		c0 := procCPU(pid)
		time.Sleep(window)
		if procCPU(pid)-c0 < busy {
			quiet++
		} else {
			quiet = 0
		}
	}
}

// runQueries runs b.N requests over clients connections, each cycling
// through the query points, and reports the server's CPU per request
// and the latency percentiles.
func runQueries(b *testing.B, s *respBench, pid int, clients int, mk func() queryClient) {
	cs := make([]queryClient, clients)
	for i := range cs {
		cs[i] = mk()
		defer cs[i].close()
		if err := cs[i].query(40, -100); err != nil { // warm the connection
			b.Fatal(err)
		}
	}
	lat := make([][]time.Duration, clients)
	if f := os.Getenv("FLEETD_BENCH_PROFILE"); f != "" && pid == s.cmd.Process.Pid {
		defer s.profile(b, f+"-"+strings.NewReplacer("/", "_", "=", "").Replace(b.Name()))()
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := procCPU(pid)
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range cs {
		wg.Go(func() {
			n := b.N / clients
			if i < b.N%clients {
				n++
			}
			ls := make([]time.Duration, 0, n)
			for j := range n {
				p := s.points[(i*7919+j)%respBenchPoints]
				st := time.Now()
				if err := cs[i].query(p[0], p[1]); err != nil {
					errs <- err
					return
				}
				ls = append(ls, time.Since(st))
			}
			lat[i] = ls
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	cpu := procCPU(pid) - cpu0
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "server-µs/op")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "queries/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

func newHTTPClient(conns int, url string) func() queryClient {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	return func() queryClient { return &httpClient{c: c, url: url} }
}

func newRESPClient(tb testing.TB, addr, cmd string) func() queryClient {
	return func() queryClient {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		return &respClient{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), cmd: cmd}
	}
}

// BenchmarkQueryCPU: kNN (k=10) and within 5 km over HTTP and RESP, the
// round-trip floors (/healthz, PING) and a bare net/http handler
// (floor/net-http: what Go's net/http itself costs a request, the floor
// issue 17's HTTP target adds to), each at 4 clients and at 1. The http
// and floor cases use net/http's client; httpraw and floorraw send the
// same requests with rawHTTPClient, as lean as the RESP cases' client, so
// that their latencies compare servers, not client libraries (the server
// CPU figures do not depend on the client). The redis cases ask the
// same of Redis GEO beside it (peer_bench_test.go), with the same client
// and points, and report its CPU. -count repeats each case in place: for
// rounds that alternate the servers, run the binary several times. Each
// server is idle before a case starts (settle), so that background work
// left by the load (a snapshot, history's flushes) is not counted as the
// queries'. Use -benchtime=20000x.
func BenchmarkQueryCPU(b *testing.B) {
	s := getRESPBench(b)
	fleetd, floor, peer := s.cmd.Process.Pid, 0, 0
	redis := func(cmd string) func() queryClient {
		return func() queryClient { return newRESPClient(b, s.peer.addr, cmd)() }
	}
	for _, clients := range []int{respBenchClients, 1} {
		for _, bc := range []struct {
			name string
			pid  *int
			mk   func() queryClient
		}{
			{"floor/net-http", &floor, newHTTPClient(clients, "http://"+s.floorAddr+"/")},
			{"http/healthz", &fleetd, newHTTPClient(clients, "http://"+s.http+"/healthz")},
			{"resp/ping", &fleetd, newRESPClient(b, s.rsp, "PING")},
			{"http/knn10", &fleetd, newHTTPClient(clients, "http://"+s.http+"/v1/nearby?lat=%v&lon=%v&k=10")},
			{"resp/knn10", &fleetd, newRESPClient(b, s.rsp, "NEARBY fleet LIMIT 10 POINT %v %v")},
			{"http/within5km", &fleetd, newHTTPClient(clients, "http://"+s.http+"/v1/within?lat=%v&lon=%v&radius_m=5000")},
			{"resp/within5km", &fleetd, newRESPClient(b, s.rsp, "WITHIN fleet CIRCLE %v %v 5000")},
			// Pipelined 10 deep: the server's own CPU a query, with a
			// write and a read shared by ten (their latencies mean
			// nothing: nine of ten calls only queue).
			{"resppipe/knn10", &fleetd, newRESPPipeClient(b, s.rsp, "NEARBY fleet LIMIT 10 POINT %v %v", 10)},
			{"resppipe/within5km", &fleetd, newRESPPipeClient(b, s.rsp, "WITHIN fleet CIRCLE %v %v 5000", 10)},
			{"redis/ping", &peer, redis("PING")},
			// Redis has no kNN without a radius: 25 km holds ~150 trucks.
			{"redis/knn10", &peer, redis("GEOSEARCH fleet FROMLONLAT %[2]v %[1]v BYRADIUS 25 km ASC COUNT 10 WITHCOORD WITHDIST")},
			{"redis/within5km", &peer, redis("GEOSEARCH fleet FROMLONLAT %[2]v %[1]v BYRADIUS 5000 m WITHCOORD")},
			{"floorraw/net-http", &floor, newRawHTTPClient(b, s.floorAddr, "/")},
			{"httpraw/healthz", &fleetd, newRawHTTPClient(b, s.http, "/healthz")},
			{"httpraw/knn10", &fleetd, newRawHTTPClient(b, s.http, "/v1/nearby?lat=%v&lon=%v&k=10")},
			{"httpraw/within5km", &fleetd, newRawHTTPClient(b, s.http, "/v1/within?lat=%v&lon=%v&radius_m=5000")},
		} {
			floor = s.floor.Process.Pid
			b.Run(fmt.Sprintf("%s/clients=%d", bc.name, clients), func(b *testing.B) {
				if bc.pid == &peer {
					peer = s.redis(b).cmd.Process.Pid
				}
				settle(b, *bc.pid)
				runQueries(b, s, *bc.pid, clients, bc.mk)
			})
		}
	}
}

// TestRESPPipeClient checks the pipelining benchmark client against a
// server that counts the commands it is sent and answers each: the
// warm-up goes alone, then every depth queries are sent and answered
// together (nothing is counted that was not sent), and close sends the
// rest.
func TestRESPPipeClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var got sync.WaitGroup
	var mu sync.Mutex
	var cmds []string
	got.Go(func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
			var args []string
			for range n {
				_, _ = br.ReadString('\n') // $len
				a, _ := br.ReadString('\n')
				args = append(args, strings.TrimSpace(a))
			}
			mu.Lock()
			cmds = append(cmds, strings.Join(args, " "))
			mu.Unlock()
			if _, err := nc.Write([]byte("+OK\r\n")); err != nil {
				return
			}
		}
	})
	seen := func() int { mu.Lock(); defer mu.Unlock(); return len(cmds) }
	c := newRESPPipeClient(t, ln.Addr().String(), "NEARBY fleet POINT %v %v", 10)()
	if err := c.query(1, 2); err != nil || seen() != 1 {
		t.Fatalf("warm-up: %v, %d commands seen", err, seen())
	}
	for i := range 25 {
		if err := c.query(float64(i), 0.5); err != nil {
			t.Fatal(err)
		}
		// A pipeline's answers are read before the call that sent it
		// returns, so the server has counted it by then.
		if want := 1 + (i+1)/10*10; seen() != want {
			t.Fatalf("after %d queries the server saw %d commands, want %d", i+1, seen(), want)
		}
	}
	c.close()
	got.Wait()
	if len(cmds) != 26 || cmds[0] != "NEARBY fleet POINT 1 2" || cmds[25] != "NEARBY fleet POINT 24 0.5" {
		t.Fatalf("commands: %d, first %q, last %q", len(cmds), cmds[0], cmds[len(cmds)-1])
	}
}

// TestRawHTTPClient checks the benchmarks' hand-written HTTP client
// against net/http's server: bodies by Content-Length and chunked, in
// sequence on one connection, and a non-200 answer as an error.
func TestRawHTTPClient(t *testing.T) {
	big := strings.Repeat("0123456789", 1000) // past net/http's 2 KiB buffer: chunked
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			_, _ = io.WriteString(w, r.URL.RawQuery)
		case "/big":
			_, _ = io.WriteString(w, big)
		default:
			http.Error(w, "no", http.StatusNotFound)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawHTTPClient{nc: nc, br: bufio.NewReader(nc), host: addr}
	defer c.close()
	for i := range 3 {
		c.url = "/small?lat=%v&lon=%v"
		if err := c.query(float64(i), 2); err != nil || string(c.body) != fmt.Sprintf("lat=%v&lon=2", i) {
			t.Fatalf("small: %q %v", c.body, err)
		}
		c.url = "/big"
		if err := c.query(0, 0); err != nil || string(c.body) != big {
			t.Fatalf("big: %d bytes, %v", len(c.body), err)
		}
	}
	c.url = "/missing"
	if err := c.query(0, 0); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing: %v", err)
	}
}

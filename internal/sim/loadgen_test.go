package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a minimal fleetd: /healthz and /v1/positions, decoding the
// NDJSON with encoding/json and tallying what it saw.
type fakeServer struct {
	t      *testing.T
	token  string
	width  int
	reject func(id string) bool // lines to reject
	status func(req int) int    // status for the req-th request (from 1); 200 = normal
	delay  time.Duration
	// block, when set, makes every request wait until its context ends.
	block bool
	// countOnly, when set, counts lines without decoding them (for timing
	// tests, which must not depend on the speed of the fake under -race).
	countOnly bool

	mu struct {
		sync.Mutex
		requests, lines, accepted, rejected int
		byStatus                            map[int]int
		arrivals                            []arrival
		ids                                 map[string]bool
		badLines                            []string
	}
}

type arrival struct {
	at    time.Time
	lines int
}

func newFakeServer(t *testing.T) *fakeServer {
	s := &fakeServer{t: t, width: 7}
	s.mu.byStatus = map[int]int{}
	s.mu.ids = map[string]bool{}
	return s
}

func (s *fakeServer) start() *httptest.Server {
	ts := httptest.NewServer(s)
	s.t.Cleanup(ts.Close)
	return ts
}

func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"missing or bad token"}`)
		return
	}
	switch r.URL.Path {
	case "/healthz":
		_, _ = io.WriteString(w, "ok\n")
		return
	case "/v1/positions":
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-ndjson" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"want POST application/x-ndjson"}`)
		return
	}
	if s.block {
		// Read the body first: only then does the server watch the
		// connection and cancel the request when the client goes.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		return
	}
	s.mu.Lock()
	s.mu.requests++
	req := s.mu.requests
	s.mu.Unlock()
	status := http.StatusOK
	if s.status != nil {
		status = s.status(req)
	}
	lines, accepted, rejected := 0, 0, 0
	var errs []string
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		lines++
		if s.countOnly {
			accepted++
			continue
		}
		var u wireUpdate
		if err := json.Unmarshal(sc.Bytes(), &u); err != nil || !validWireID(u.ID, s.width) ||
			u.Lat < -90 || u.Lat > 90 || u.Lon < -180 || u.Lon >= 180 || u.Heading < 0 || u.Heading >= 360 || u.Speed < 0 {
			s.mu.Lock()
			s.mu.badLines = append(s.mu.badLines, sc.Text())
			s.mu.Unlock()
			rejected++
			continue
		}
		s.mu.Lock()
		s.mu.ids[u.ID] = true
		s.mu.Unlock()
		if s.reject != nil && s.reject(u.ID) {
			rejected++
			errs = append(errs, fmt.Sprintf(`{"line":%d,"error":"rejected by test"}`, lines))
			continue
		}
		accepted++
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			s.t.Errorf("reading body: %v", err)
		}
		// Otherwise the client went away mid-body (a cancelled Run
		// does that): nothing of this request counts, as in fleetd.
		return
	}
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.mu.Lock()
	s.mu.byStatus[status]++
	s.mu.arrivals = append(s.mu.arrivals, arrival{time.Now(), lines})
	s.mu.lines += lines
	if status == http.StatusOK {
		s.mu.accepted += accepted
		s.mu.rejected += rejected
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if status != http.StatusOK {
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":"test status %d"}`, status)
		return
	}
	fmt.Fprintf(w, `{"accepted":%d,"rejected":%d,"errors":[%s],"took_ms":1}`, accepted, rejected, strings.Join(errs, ","))
}

func validWireID(id string, width int) bool {
	if !strings.HasPrefix(id, IDPrefix) || len(id) < len(IDPrefix)+width {
		return false
	}
	for _, c := range id[len(IDPrefix):] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// TestRunCounts: the Summary agrees with what the server saw, through
// rejections and 503s, and every truck reports.
func TestRunCounts(t *testing.T) {
	s := newFakeServer(t)
	s.reject = func(id string) bool { return strings.HasSuffix(id, "7") }
	// The first requests already see every kind of answer.
	s.status = func(req int) int {
		switch {
		case req == 2 || req%5 == 0:
			return http.StatusServiceUnavailable
		case req == 3 || req%7 == 0:
			return http.StatusInsufficientStorage
		}
		return http.StatusOK
	}
	ts := s.start()
	sum, err := Run(context.Background(), Config{
		Target:   ts.URL + "/",
		Trucks:   600,
		Duration: 700 * time.Millisecond,
		Batch:    500, // 200: the trucks of a worker
		Conns:    3,
		Seed:     5,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("summary %+v", sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.badLines) > 0 {
		t.Errorf("%d bad lines, first %q", len(s.mu.badLines), s.mu.badLines[0])
	}
	over := s.mu.byStatus[503] + s.mu.byStatus[507]
	if sum.Requests != int64(s.mu.requests) || sum.Sent != int64(s.mu.lines) ||
		sum.Accepted != int64(s.mu.accepted) || sum.Rejected != int64(s.mu.rejected) ||
		sum.Overloaded != int64(over) || sum.HTTPErrors != 0 || sum.TransportErrors != 0 {
		t.Errorf("summary %+v, server saw %d requests, %d lines, %d accepted, %d rejected, statuses %v",
			sum, s.mu.requests, s.mu.lines, s.mu.accepted, s.mu.rejected, s.mu.byStatus)
	}
	if sum.Accepted == 0 || sum.Rejected == 0 || s.mu.byStatus[503] == 0 || s.mu.byStatus[507] == 0 {
		t.Errorf("test did not exercise acceptance, rejection and 503: %+v", sum)
	}
	if len(s.mu.ids) != 600 {
		t.Errorf("%d distinct trucks reported, want 600", len(s.mu.ids))
	}
	if sum.Trucks != 600 || sum.DurationS < 0.7 || sum.DurationS > 5 || sum.P50Ms <= 0 || sum.P99Ms < sum.P50Ms || sum.MaxMs < sum.P99Ms {
		t.Errorf("summary fields: %+v", sum)
	}
	if want := float64(sum.Accepted) / sum.DurationS; sum.UpdatesPerSec != want {
		t.Errorf("updates_per_sec %v, want %v", sum.UpdatesPerSec, want)
	}
	if !strings.Contains(sum.LastError, "HTTP 50") {
		t.Errorf("last error %q", sum.LastError)
	}
	// The JSON form uses the documented snake_case names.
	js, _ := json.Marshal(sum)
	for _, k := range []string{"duration_s", "trucks", "sent", "accepted", "rejected", "http_errors", "updates_per_sec", "p50_ms", "p99_ms", "max_ms"} {
		if !strings.Contains(string(js), `"`+k+`":`) {
			t.Errorf("summary JSON %s lacks %q", js, k)
		}
	}
}

// TestRunRate: a paced run sends Rate × Duration lines, spread evenly.
func TestRunRate(t *testing.T) {
	s := newFakeServer(t)
	s.countOnly = true
	ts := s.start()
	const rate, dur = 5000, 1500 * time.Millisecond
	var progress []Progress
	sum, err := Run(context.Background(), Config{
		Target: ts.URL, Trucks: 10000, Rate: rate, Duration: dur, Conns: 4, Seed: 1,
	}, func(p Progress) { progress = append(progress, p) })
	if err != nil {
		t.Fatal(err)
	}
	want := rate * dur.Seconds()
	got := float64(sum.Sent)
	t.Logf("sent %v in %.3fs (want %v): %.0f/s; %d requests", got, sum.DurationS, want, got/sum.DurationS, sum.Requests)
	if got < 0.97*want || got > want {
		t.Errorf("sent %v lines, want %v (-3%%)", got, want)
	}
	if sum.DurationS < dur.Seconds() || sum.DurationS > dur.Seconds()+0.5 {
		t.Errorf("paced run lasted %.3fs, want %v", sum.DurationS, dur)
	}
	if r := got / sum.DurationS; r < 0.85*rate || r > 1.0*rate {
		t.Errorf("achieved %.0f lines/s, want %d ± 15%%", r, rate)
	}
	// Even spread: the first half of the run carried about half the lines.
	s.mu.Lock()
	first := s.mu.arrivals[0].at
	half := 0
	for _, a := range s.mu.arrivals {
		if a.at.Sub(first) < dur/2 {
			half += a.lines
		}
	}
	s.mu.Unlock()
	if h := float64(half) / want; h < 0.35 || h > 0.65 {
		t.Errorf("%.0f%% of the lines arrived in the first half", 100*h)
	}
	if sum.Requests < int64(want/(rate/minPostsPerSec)) {
		t.Errorf("%d requests: batches not limited to rate/%d", sum.Requests, minPostsPerSec)
	}
	if len(progress) == 0 {
		t.Fatal("no progress callback in 1.5 s")
	}
	p := progress[0]
	if p.Elapsed < 900*time.Millisecond || p.Elapsed > 1500*time.Millisecond || p.SentPerSec < 0.5*rate || p.SentPerSec > 1.5*rate ||
		p.AcceptedPerSec <= 0 || p.P50 <= 0 || p.P99 < p.P50 || p.Sent <= 0 {
		t.Errorf("progress %+v", p)
	}
}

// TestRunCancel: cancelling ctx stops a run promptly, even with requests
// in flight that the server never answers.
func TestRunCancel(t *testing.T) {
	for _, block := range []bool{false, true} {
		s := newFakeServer(t)
		s.block = block
		ts := s.start()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		start := time.Now()
		sum, err := Run(ctx, Config{Target: ts.URL, Trucks: 1000, Batch: 100, Seed: 1}, nil)
		took := time.Since(start)
		cancel()
		if err != nil {
			t.Errorf("block=%v: err %v", block, err)
		}
		if took > 1300*time.Millisecond {
			t.Errorf("block=%v: Run returned %v after start, cancelled at 300ms", block, took)
		}
		if !block && sum.Accepted == 0 {
			t.Errorf("block=%v: nothing accepted: %+v", block, sum)
		}
		if block && (sum.Accepted != 0 || sum.TransportErrors != 0) {
			t.Errorf("block=%v: %+v", block, sum)
		}
	}
}

func TestRunNotReady(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	for _, target := range []string{down.URL, closed} {
		start := time.Now()
		_, err := Run(context.Background(), Config{Target: target, Trucks: 10, ReadyTimeout: 400 * time.Millisecond}, nil)
		if err == nil || !strings.Contains(err.Error(), "not ready") {
			t.Errorf("%s: err %v, want not ready", target, err)
		}
		if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
			t.Errorf("%s: gave up after %v, want ~400ms", target, d)
		}
	}
	// Cancelled while waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Run(ctx, Config{Target: down.URL, Trucks: 10}, nil); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("cancelled wait: err %v", err)
	}
}

// TestRunToken: the token is sent; a wrong one stops the run with the
// server's 401 message instead of retrying forever.
func TestRunToken(t *testing.T) {
	s := newFakeServer(t)
	s.token = "s3cret"
	ts := s.start()
	sum, err := Run(context.Background(), Config{Target: ts.URL, Trucks: 100, Duration: 200 * time.Millisecond, Token: "s3cret"}, nil)
	if err != nil || sum.Accepted == 0 {
		t.Fatalf("with token: %+v, %v", sum, err)
	}

	// /healthz open, /v1/positions guarded.
	guarded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"bad token"}`)
	}))
	defer guarded.Close()
	start := time.Now()
	sum, err = Run(context.Background(), Config{Target: guarded.URL, Trucks: 100, Token: "wrong"}, nil)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "bad token") {
		t.Errorf("wrong token: err %v", err)
	}
	if sum.HTTPErrors == 0 || time.Since(start) > 2*time.Second {
		t.Errorf("wrong token: %+v after %v", sum, time.Since(start))
	}
}

// TestRunEarlyAnswer: a server that answers before reading the body (as a
// shedding server may) is counted as overloaded, and the run goes on. (The
// kernel usually takes the whole body at once here, so see also
// TestBodyGateLateReader.)
func TestRunEarlyAnswer(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		const msg = `{"error":"shedding"}`
		w.Header().Set("Content-Length", fmt.Sprint(len(msg)))
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, msg)
		w.(http.Flusher).Flush() // the whole answer is out...
		time.Sleep(30 * time.Millisecond)
		_, _ = io.Copy(io.Discard, r.Body) // ...before the body is read
	}))
	defer ts.Close()
	sum, err := Run(context.Background(), Config{Target: ts.URL, Trucks: 20000, Batch: 10000, Duration: 300 * time.Millisecond, Conns: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("summary %+v", sum)
	if sum.Overloaded != sum.Requests || sum.Requests < 2 || sum.Accepted != 0 {
		t.Errorf("summary %+v", sum)
	}
}

// TestRunServerError: 5xx other than 503/507 are counted, not fatal.
func TestRunServerError(t *testing.T) {
	s := newFakeServer(t)
	s.status = func(req int) int {
		if req%2 == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	ts := s.start()
	sum, err := Run(context.Background(), Config{Target: ts.URL, Trucks: 100, Duration: 400 * time.Millisecond}, nil)
	if err != nil || sum.HTTPErrors == 0 || sum.Accepted == 0 || !strings.Contains(sum.LastError, "500") {
		t.Errorf("%+v, %v", sum, err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Target: "", Trucks: 1},
		{Target: "ftp://x", Trucks: 1},
		{Target: "http://", Trucks: 1},
		{Target: "http://x", Trucks: 0},
		{Target: "http://x", Trucks: 1, Rate: -1},
		{Target: "http://x", Trucks: 1, Duration: -1},
		{Target: "http://x", Trucks: 1, Batch: -1},
		{Target: "http://x", Trucks: 1, Conns: -2},
		{Target: "http://x", Trucks: 1, Token: "a\nb"},
		{Target: "http://x", Trucks: 1, Region: numRegions},
	} {
		if _, err := Run(context.Background(), c, nil); err == nil || !strings.HasPrefix(err.Error(), "sim: ") {
			t.Errorf("Run(%+v): err %v", c, err)
		}
	}
}

// lateTransport answers every request at once and reads its body only
// later, from another goroutine, as http.Transport may when a server
// answers early. It checks that the body it reads is intact NDJSON.
type lateTransport struct {
	delay time.Duration
	wg    sync.WaitGroup
	mu    sync.Mutex
	bad   int
	lines int
}

func (lt *lateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	want := req.ContentLength
	lt.wg.Add(1)
	go func() {
		defer lt.wg.Done()
		defer req.Body.Close()
		time.Sleep(lt.delay)
		body, err := io.ReadAll(req.Body)
		bad, lines := 0, 0
		if err != nil || int64(len(body)) != want {
			bad++
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(body), "\n"), "\n") {
			lines++
			var w wireUpdate
			if json.Unmarshal([]byte(line), &w) != nil || !validWireID(w.ID, 7) {
				bad++
			}
		}
		lt.mu.Lock()
		lt.bad += bad
		lt.lines += lines
		lt.mu.Unlock()
	}()
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(`{"accepted":1,"rejected":0}`)),
		Request:    req,
	}, nil
}

// TestBodyGateLateReader: a worker must not render the next batch into a
// buffer the transport is still reading (run with -race; without the gate
// the race detector and the NDJSON check both fail).
func TestBodyGateLateReader(t *testing.T) {
	lt := &lateTransport{delay: 20 * time.Millisecond}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	g := &generator{
		cfg:    Config{RequestTimeout: 5 * time.Second},
		client: &http.Client{Transport: lt},
		url:    "http://fake.invalid/v1/positions",
		cancel: cancel,
	}
	f, err := NewFleet(FleetOptions{Trucks: 1000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	g.lastAnswer.Store(time.Now().UnixNano())
	g.deadline = time.Now().Add(200 * time.Millisecond)
	g.work(ctx, f, 500)
	lt.wg.Wait()
	sum := g.summary(time.Second)
	if lt.bad != 0 || int64(lt.lines) != sum.Sent || sum.Requests < 2 {
		t.Errorf("%d corrupt lines or short bodies of %d read, %d sent in %d requests", lt.bad, lt.lines, sum.Sent, sum.Requests)
	}
	// Each request waited for the late reader.
	if sum.Requests > 12 {
		t.Errorf("%d requests in 200ms with a 20ms late reader: the worker did not wait", sum.Requests)
	}
}

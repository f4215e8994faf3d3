package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures Run. Zero values of the optional fields take the
// defaults named in their comments.
type Config struct {
	Target   string        // base URL of the server, e.g. http://127.0.0.1:8080
	Trucks   int           // fleet size, >= 1
	Rate     float64       // updates per second; 0 = as fast as possible
	Duration time.Duration // how long to send; 0 = until ctx is cancelled
	Batch    int           // lines per POST, at most; default 10,000
	Conns    int           // concurrent keep-alive connections; default 4
	Token    string        // bearer token; empty = no Authorization header
	Seed     int64         // fleet seed
	Region   Region        // places the trucks drive between
	// History, when > 0, first posts the fleet's past, unpaced: every
	// truck every HistoryEvery from History before the start up to it, on
	// a virtual clock, as fast as the server takes it (a server's history
	// loaded in minutes). The past is always posted whole; the live run
	// (Rate) follows until Duration, which counts from the start.
	History time.Duration

	ReadyTimeout   time.Duration // how long to wait for GET /healthz; default 30 s
	RequestTimeout time.Duration // per-request limit; default 30 s
}

// Defaults for Config's optional fields, and pacing.
const (
	DefaultBatch          = 10000
	DefaultConns          = 4
	DefaultReadyTimeout   = 30 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	// HistoryEvery is how often each truck reports in the posted past.
	HistoryEvery = 30 * time.Second

	// maxPaceLag: how far a paced run may fall behind its schedule and
	// still catch up (see pacer).
	maxPaceLag = 500 * time.Millisecond
	// minPostsPerSec: a paced run sends at least this many requests per
	// second (smaller batches at low rates) so the rate is smooth.
	minPostsPerSec = 20
	// overloadBackoff is the pause after a 429/503/507 answer, and
	// errorBackoff the pause after another failure.
	overloadBackoff = 25 * time.Millisecond
	errorBackoff    = 100 * time.Millisecond
	// unreachableAfter: Run gives up when no request has been answered
	// for this long and the last one failed in transport.
	unreachableAfter = 10 * time.Second
	// maxResponseBytes bounds how much of a response is decoded.
	maxResponseBytes = 16 << 20
	// lineBytesEstimate sizes the request buffers (a line is ~100 bytes).
	lineBytesEstimate = 112
)

// Progress is a snapshot passed to Run's progress callback about once a
// second. Totals are since the start; rates and latencies cover the last
// interval only.
type Progress struct {
	Elapsed         time.Duration
	Sent            int64 // lines sent
	Accepted        int64 // lines the server accepted
	Rejected        int64 // lines the server rejected
	HTTPErrors      int64 // requests answered with an error status (not 429/503/507)
	Overloaded      int64 // requests answered 429, 503 or 507
	TransportErrors int64 // requests that got no answer
	SentPerSec      float64
	AcceptedPerSec  float64
	P50, P99        time.Duration // request latency
}

// Summary describes a whole run; its JSON form is what `fleetd sim --json`
// prints.
type Summary struct {
	DurationS       float64 `json:"duration_s"` // from the first request to the last answer
	Trucks          int     `json:"trucks"`
	Requests        int64   `json:"requests"`
	Sent            int64   `json:"sent"`
	Accepted        int64   `json:"accepted"`
	Rejected        int64   `json:"rejected"`
	HTTPErrors      int64   `json:"http_errors"`
	Overloaded      int64   `json:"overloaded"`
	TransportErrors int64   `json:"transport_errors"`
	UpdatesPerSec   float64 `json:"updates_per_sec"` // accepted per second
	SentPerSec      float64 `json:"sent_per_sec"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	LastError       string  `json:"last_error,omitempty"`
}

// Run simulates cfg.Trucks trucks and POSTs their updates as NDJSON to
// cfg.Target + "/v1/positions" until cfg.Duration has elapsed or ctx is
// cancelled. It first waits up to cfg.ReadyTimeout for GET /healthz to
// answer 200. progress, if not nil, is called about once a second from
// Run's goroutine.
//
// Run returns the Summary and a nil error when the run ends by its
// Duration or by ctx; it returns an error (with the Summary so far) when the
// configuration is invalid, the target never became ready, the target
// stopped answering for unreachableAfter, or it answered a client error
// (4xx other than 408 and 429: retrying cannot help). Every goroutine Run
// starts has exited when it returns.
func Run(ctx context.Context, cfg Config, progress func(Progress)) (Summary, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Summary{Trucks: cfg.Trucks}, err
	}
	workers := min(cfg.Conns, cfg.Trucks)
	fleets, err := buildFleets(cfg, workers)
	if err != nil {
		return Summary{Trucks: cfg.Trucks}, err
	}

	transport := &http.Transport{
		Proxy:                 nil, // a load generator talks to its target directly
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          cfg.Conns,
		MaxIdleConnsPerHost:   cfg.Conns,
		MaxConnsPerHost:       cfg.Conns,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: cfg.RequestTimeout,
		WriteBufferSize:       64 << 10,
		ReadBufferSize:        16 << 10,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport,
		// Never follow redirects: a load generator should see them.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	g := &generator{
		cfg:    cfg,
		client: client,
		url:    cfg.Target + "/v1/positions",
	}
	if cfg.Token != "" {
		g.auth = "Bearer " + cfg.Token
	}
	if err := g.waitReady(ctx); err != nil {
		return Summary{Trucks: cfg.Trucks}, err
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g.cancel = cancel
	start := time.Now()
	g.started = start
	g.lastAnswer.Store(start.UnixNano())
	if cfg.Duration > 0 {
		g.deadline = start.Add(cfg.Duration)
	}
	batch := cfg.Batch
	if cfg.Rate > 0 {
		batch = min(batch, max(1, int(cfg.Rate/minPostsPerSec)))
		// Catch up on at most maxPaceLag of lost time (a descheduled
		// worker, a slow answer), or one batch per connection if more.
		lag := max(maxPaceLag, time.Duration(float64(batch*cfg.Conns)/cfg.Rate*float64(time.Second)))
		g.pacer = newPacer(cfg.Rate, start, lag)
	}

	var wg sync.WaitGroup
	for _, f := range fleets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.work(runCtx, f, min(batch, f.Len()))
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var prev Progress
	lastTick := start
wait:
	for {
		select {
		case <-done:
			break wait
		case now := <-ticker.C:
			if progress != nil {
				p := g.snapshot(now.Sub(start), now.Sub(lastTick), prev)
				lastTick, prev = now, p
				progress(p)
			}
		}
	}
	if g.pacer != nil && !g.deadline.IsZero() && g.fatalErr() == nil {
		// The last batch paid for the time up to the deadline: a paced
		// run lasts its Duration, so that sent/duration is the rate.
		SleepUntil(ctx, g.deadline)
	}
	return g.summary(time.Since(start)), g.fatalErr()
}

func (c Config) withDefaults() (Config, error) {
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	c.Target = strings.TrimRight(c.Target, "/")
	u, err := url.Parse(c.Target)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return c, fmt.Errorf("sim: target %q: want a URL such as http://127.0.0.1:8080", c.Target)
	case c.Trucks < 1 || int64(c.Trucks) > math.MaxUint32:
		return c, fmt.Errorf("sim: trucks %d: want 1..%d", c.Trucks, uint32(math.MaxUint32))
	case !(c.Rate >= 0) || math.IsInf(c.Rate, 0):
		return c, fmt.Errorf("sim: rate %v: want a finite number >= 0", c.Rate)
	case c.Duration < 0:
		return c, fmt.Errorf("sim: duration %v: want >= 0", c.Duration)
	case c.Batch < 1 || c.Conns < 1:
		return c, fmt.Errorf("sim: batch %d, conns %d: want >= 1", c.Batch, c.Conns)
	case c.ReadyTimeout < 0 || c.RequestTimeout < 0:
		return c, fmt.Errorf("sim: ready timeout %v, request timeout %v: want >= 0", c.ReadyTimeout, c.RequestTimeout)
	case strings.ContainsAny(c.Token, "\r\n"):
		return c, errors.New("sim: token contains a line break")
	case c.Region >= numRegions:
		return c, fmt.Errorf("sim: unknown region %d", c.Region)
	}
	return c, nil
}

// buildFleets splits the trucks into one Fleet per worker, built in
// parallel (a million trucks take a moment to place).
func buildFleets(cfg Config, workers int) ([]*Fleet, error) {
	fleets := make([]*Fleet, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo := cfg.Trucks * w / workers
		hi := cfg.Trucks * (w + 1) / workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			fleets[w], errs[w] = NewFleet(FleetOptions{
				Trucks: cfg.Trucks, First: lo, Count: hi - lo, Seed: cfg.Seed, Region: cfg.Region,
			})
		}()
	}
	wg.Wait()
	return fleets, errors.Join(errs...)
}

// generator is the state Run's workers share.
type generator struct {
	cfg      Config
	client   *http.Client
	url      string
	auth     string
	deadline time.Time // zero: none
	started  time.Time // the run's start: the posted past ends there
	pacer    *pacer    // nil: unpaced
	cancel   context.CancelCauseFunc

	lastAnswer atomic.Int64 // unix ns of the last HTTP answer of any status

	mu struct {
		sync.Mutex
		fatal                                error // the first fatal error; set once
		requests, sent, accepted, rejected   int64
		httpErrors, overloaded, transportErr int64
		total, interval                      histogram
		lastError                            string
	}
}

// postResponse is the part of a /v1/positions answer the generator reads.
type postResponse struct {
	Accepted int64  `json:"accepted"`
	Rejected int64  `json:"rejected"`
	Error    string `json:"error"`
}

// work is one worker: it owns a Fleet, a batch buffer and a request buffer,
// and keeps one request in flight at a time.
func (g *generator) work(ctx context.Context, f *Fleet, batch int) {
	updates := make([]Update, 0, batch)
	body := make([]byte, 0, batch*lineBytesEstimate)
	var respBuf bytes.Buffer
	gate := newBodyGate()
	send := func(at time.Time, n int) bool {
		updates = f.Next(updates[:0], n, at)
		body = AppendNDJSON(body[:0], updates, f.IDWidth())
		pause := g.post(ctx, gate, body, len(updates), &respBuf)
		if !gate.wait(ctx, g.cfg.RequestTimeout) {
			if ctx.Err() != nil {
				return false
			}
			// The transport still holds a reader over body; leave
			// the buffer to it.
			body = make([]byte, 0, cap(body))
		}
		return pause == 0 || SleepUntil(ctx, time.Now().Add(pause))
	}
	if g.cfg.History > 0 {
		// Lap by lap over this worker's trucks: a lap's updates share
		// its time, and the fleet's round-robin cursor walks the lap.
		start := g.started
		for at := start.Add(-g.cfg.History); at.Before(start); at = at.Add(HistoryEvery) {
			for left := f.Len(); left > 0; left -= batch {
				if ctx.Err() != nil || !send(at, min(batch, left)) {
					return
				}
			}
		}
	}
	for ctx.Err() == nil {
		if g.pacer != nil {
			at, ok := g.pacer.reserve(batch, g.deadline)
			if !ok || !SleepUntil(ctx, at) {
				return
			}
		} else if !g.deadline.IsZero() && !time.Now().Before(g.deadline) {
			return
		}
		if !send(time.Now(), batch) {
			return
		}
	}
}

// post sends one batch and records the outcome. It returns how long the
// worker should pause before the next request.
func (g *generator) post(ctx context.Context, gate *bodyGate, body []byte, lines int, respBuf *bytes.Buffer) time.Duration {
	rctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, g.url, nil)
	if err != nil {
		panic("BUG: sim: request for a validated URL: " + err.Error())
	}
	req.Body = gate.open(body)
	req.GetBody = func() (io.ReadCloser, error) { return gate.open(body), nil }
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Accept", "application/json")
	if g.auth != "" {
		req.Header.Set("Authorization", g.auth)
	}

	t0 := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		if ctx.Err() != nil { // stopped: the outcome is unknown
			g.count(lines, 0, nil, 0, "")
			return 0
		}
		msg := err.Error()
		g.count(lines, 0, nil, 0, msg)
		if since := time.Since(time.Unix(0, g.lastAnswer.Load())); since > unreachableAfter {
			g.fail(fmt.Errorf("sim: target unreachable for %v: %w", since.Round(time.Second), err))
		}
		return errorBackoff
	}
	respBuf.Reset()
	_, rerr := respBuf.ReadFrom(io.LimitReader(resp.Body, maxResponseBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes)) // for keep-alive
	_ = resp.Body.Close()
	lat := time.Since(t0)
	g.lastAnswer.Store(time.Now().UnixNano())

	var pr postResponse
	jerr := json.Unmarshal(respBuf.Bytes(), &pr)
	status := resp.StatusCode
	switch {
	case status/100 == 2 && rerr == nil && jerr == nil:
		g.count(lines, status, &pr, lat, "")
		return 0
	case status/100 == 2:
		err := rerr
		if err == nil {
			err = jerr
		}
		g.count(lines, http.StatusBadGateway, nil, lat, fmt.Sprintf("HTTP %d with an unreadable body: %v", status, err))
		return errorBackoff
	}
	msg := pr.Error
	if jerr != nil || msg == "" {
		msg = strings.TrimSpace(string(respBuf.Bytes()[:min(respBuf.Len(), 200)]))
	}
	msg = fmt.Sprintf("HTTP %d %s: %s", status, http.StatusText(status), msg)
	g.count(lines, status, nil, lat, msg)
	switch {
	case isOverload(status):
		return overloadBackoff
	case status/100 == 4 && status != http.StatusRequestTimeout:
		g.fail(fmt.Errorf("sim: POST %s: %s", g.url, msg))
	}
	return errorBackoff
}

func isOverload(status int) bool {
	return status == http.StatusServiceUnavailable || status == http.StatusInsufficientStorage || status == http.StatusTooManyRequests
}

// count records one request. status 0 means no answer (transport error or
// stopped run: errMsg tells them apart).
func (g *generator) count(lines, status int, pr *postResponse, lat time.Duration, errMsg string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mu.requests++
	g.mu.sent += int64(lines)
	if status != 0 {
		g.mu.total.record(lat)
		g.mu.interval.record(lat)
	}
	switch {
	case pr != nil:
		g.mu.accepted += pr.Accepted
		g.mu.rejected += pr.Rejected
	case status == 0 && errMsg != "":
		g.mu.transportErr++
	case isOverload(status):
		g.mu.overloaded++
	case status != 0:
		g.mu.httpErrors++
	}
	if errMsg != "" {
		g.mu.lastError = errMsg
	}
}

// fail records the first fatal error and stops the run.
func (g *generator) fail(err error) {
	g.mu.Lock()
	first := g.mu.fatal == nil
	if first {
		g.mu.fatal = err
	}
	g.mu.Unlock()
	if first {
		g.cancel(err)
	}
}

// fatalErr returns the first fatal error, if any.
func (g *generator) fatalErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.fatal
}

// snapshot returns the progress since the start and over the last interval
// (dt long, prev the previous snapshot), and resets the interval histogram.
func (g *generator) snapshot(elapsed, dt time.Duration, prev Progress) Progress {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := Progress{
		Elapsed:         elapsed,
		Sent:            g.mu.sent,
		Accepted:        g.mu.accepted,
		Rejected:        g.mu.rejected,
		HTTPErrors:      g.mu.httpErrors,
		Overloaded:      g.mu.overloaded,
		TransportErrors: g.mu.transportErr,
		P50:             g.mu.interval.quantile(0.50),
		P99:             g.mu.interval.quantile(0.99),
	}
	if s := dt.Seconds(); s > 0 {
		p.SentPerSec = float64(p.Sent-prev.Sent) / s
		p.AcceptedPerSec = float64(p.Accepted-prev.Accepted) / s
	}
	g.mu.interval.reset()
	return p
}

func (g *generator) summary(elapsed time.Duration) Summary {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	s := Summary{
		DurationS:       elapsed.Seconds(),
		Trucks:          g.cfg.Trucks,
		Requests:        g.mu.requests,
		Sent:            g.mu.sent,
		Accepted:        g.mu.accepted,
		Rejected:        g.mu.rejected,
		HTTPErrors:      g.mu.httpErrors,
		Overloaded:      g.mu.overloaded,
		TransportErrors: g.mu.transportErr,
		P50Ms:           ms(g.mu.total.quantile(0.50)),
		P99Ms:           ms(g.mu.total.quantile(0.99)),
		MaxMs:           ms(g.mu.total.maxValue()),
		LastError:       g.mu.lastError,
	}
	if sec := elapsed.Seconds(); sec > 0 {
		s.UpdatesPerSec = float64(s.Accepted) / sec
		s.SentPerSec = float64(s.Sent) / sec
	}
	return s
}

// waitReady polls GET /healthz until it answers 200, ctx ends or
// cfg.ReadyTimeout passes.
func (g *generator) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(g.cfg.ReadyTimeout)
	healthURL := g.cfg.Target + "/healthz"
	for {
		err := g.checkHealth(ctx, healthURL)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("sim: waiting for %s: %w", healthURL, context.Cause(ctx))
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("sim: target not ready after %v: %w", g.cfg.ReadyTimeout, err)
		}
		next := time.Now().Add(200 * time.Millisecond)
		if next.After(deadline) {
			next = deadline
		}
		if !SleepUntil(ctx, next) {
			return fmt.Errorf("sim: waiting for %s: %w", healthURL, context.Cause(ctx))
		}
	}
}

// checkHealth does one GET /healthz. Its errors are wrapped by waitReady.
func (g *generator) checkHealth(ctx context.Context, healthURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL, nil)
	if err != nil {
		return err
	}
	if g.auth != "" {
		req.Header.Set("Authorization", g.auth)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return err // *url.Error: names the method and URL
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", healthURL, resp.Status)
	}
	return nil
}

// SleepUntil waits until t; it returns false at once if ctx ends first
// (true at once for a t already past while ctx is live). Load generators
// pace themselves with it.
func SleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

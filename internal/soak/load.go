package soak

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/sim"
)

// load posts updates to the server: Conns workers, each with one POST in
// flight on its own keep-alive connection, share a pacer, so that the
// offered rate is Rate as long as some connection is free. A slow answer
// holds back only the worker waiting for it (open loop), unlike one
// sequential poster, whose rate is bounded by the server's latency.
type load struct {
	o      Options
	cl     *http.Client
	url    string
	start  time.Time
	batch  int // lines per POST
	width  int // digits of truck IDs
	pace   *pacer
	probes *probes

	offered atomic.Int64 // lines in posts started
	acked   atomic.Int64 // lines in posts answered 200
	failed  atomic.Int64 // posts that failed or were not answered 200
	latency histogram    // POST round trips
	probeRT histogram    // probe POST round trips
}

// pacer is a token bucket at batch granularity: a batch of n lines costs
// n/rate seconds of a virtual clock and may start when the clock reaches
// it. The clock never lags real time by more than burst, so after a stall
// of every connection the load catches up by at most burst's worth.
type pacer struct {
	perLine float64 // seconds
	burst   time.Duration
	mu      struct {
		sync.Mutex
		next time.Time
	}
}

func newPacer(rate float64, start time.Time, burst time.Duration) *pacer {
	p := &pacer{perLine: 1 / rate, burst: burst}
	p.mu.next = start
	return p
}

// reserve books n lines and returns when they may be sent.
func (p *pacer) reserve(n int) time.Time {
	cost := time.Duration(float64(n) * p.perLine * float64(time.Second))
	floor := time.Now().Add(-p.burst)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.next.Before(floor) {
		p.mu.next = floor
	}
	at := p.mu.next
	p.mu.next = at.Add(cost)
	return at
}

func newLoad(o Options, cl *http.Client, start time.Time, pr *probes) *load {
	// At least 10 posts a second, so that the rate is smooth at low rates.
	batch := max(2, min(o.Batch, int(o.Rate/10)))
	burst := max(time.Second, time.Duration(float64(batch*o.Conns)/o.Rate*float64(time.Second)))
	return &load{o: o, cl: cl, url: o.Target + "/v1/positions", start: start, batch: batch,
		width: sim.IDWidth(o.Trucks * 100), pace: newPacer(o.Rate, start, burst), probes: pr}
}

// run posts until ctx ends, and probes (see probes) on the side.
func (l *load) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range l.o.Conns {
		wg.Go(func() { l.work(ctx, uint64(i)) })
	}
	wg.Go(func() { l.probe(ctx) })
	wg.Wait()
}

// work is one connection's worker. Trucks are drawn from a sliding window
// of truck numbers that advances by Churn×Trucks per minute, so trucks
// that fall out of it stop reporting and expire on the server while new
// ones appear.
func (l *load) work(ctx context.Context, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 2))
	ups := make([]sim.Update, 0, l.batch)
	var body []byte
	for ctx.Err() == nil {
		at := l.pace.reserve(l.batch)
		base := int(at.Sub(l.start).Minutes() * l.o.Churn * float64(l.o.Trucks))
		ts := at.Unix()
		ups = ups[:0]
		for range l.batch {
			n := base + r.IntN(l.o.Trucks)
			lat, lon := truckPlace(uint64(n), r)
			ups = append(ups, sim.Update{Truck: uint32(n), Lat: lat, Lon: lon, TS: ts,
				Speed: r.Float64() * 100, Heading: float64(r.IntN(360))})
		}
		body = sim.AppendNDJSON(body[:0], ups, l.width)
		if !sim.SleepUntil(ctx, at) {
			return
		}
		l.offered.Add(int64(l.batch))
		sent := time.Now()
		ok, reusable := l.post(ctx, body)
		if ctx.Err() != nil {
			return // cut off by the end of the run: neither acked nor failed
		}
		l.latency.add(time.Since(sent))
		if ok {
			l.acked.Add(int64(l.batch))
		} else {
			l.failed.Add(1)
		}
		if !reusable {
			body = nil // the transport may still read it
		}
	}
}

// probe posts probes, each alone in its POST as a device would send its
// position, probesPerSec of them a second, on a connection of its own.
func (l *load) probe(ctx context.Context) {
	r := rand.New(rand.NewPCG(uint64(l.o.Conns), 3))
	var body []byte
	next := time.Now()
	for {
		next = next.Add(time.Second / probesPerSec)
		if !sim.SleepUntil(ctx, next) {
			return
		}
		k := l.probes.next()
		now := time.Now()
		lat, lon := truckPlace(r.Uint64(), r)
		body = appendProbe(body[:0], k, lat, lon, now.Unix())
		l.probes.sent(k, now.Unix(), now)
		_, reusable := l.post(ctx, body)
		if ctx.Err() != nil {
			return
		}
		if now.Sub(l.start) >= l.o.WarmUp {
			l.probeRT.add(time.Since(now))
		}
		if !reusable {
			body = nil
		}
		if d := time.Since(next); d > time.Second {
			next = time.Now() // fell far behind: do not burst
		}
	}
}

// truckPlace returns where truck n reports from: a fixed place in the
// contiguous US derived from n, plus up to 0.01° of jitter.
func truckPlace(n uint64, r *rand.Rand) (lat, lon float64) {
	h := n*0x9E3779B97F4A7C15 + 1
	return 25 + float64(h%24_000)/1000 + r.Float64()*0.01, -124 + float64(h>>32%57_000)/1000 + r.Float64()*0.01
}

// appendProbe appends the NDJSON line of probe k.
func appendProbe(dst []byte, k int, lat, lon float64, ts int64) []byte {
	dst = append(dst, `{"id":"`...)
	dst = appendProbeID(dst, k)
	dst = append(dst, `","lat":`...)
	dst = strconv.AppendFloat(dst, lat, 'f', 5, 64)
	dst = append(dst, `,"lon":`...)
	dst = strconv.AppendFloat(dst, lon, 'f', 5, 64)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, `,"speed":0,"heading":0}`+"\n"...)
}

// post sends one body and reports whether it was answered 200, and
// whether body may be reused (the transport has closed its reader).
func (l *load) post(ctx context.Context, body []byte) (ok, reusable bool) {
	rd := &gatedReader{done: make(chan struct{})}
	rd.Reset(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, rd)
	if err != nil {
		return false, false
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	if l.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+l.o.Token)
	}
	res, err := l.cl.Do(req)
	if err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		ok = res.StatusCode == http.StatusOK
	}
	select {
	case <-rd.done:
		return ok, true
	case <-time.After(time.Second):
		return ok, false
	}
}

// gatedReader is a request body that tells when the transport is done
// with it: it closes the body once it has no more use for it, which may be
// after Client.Do returns.
type gatedReader struct {
	bytes.Reader
	done chan struct{}
	once sync.Once
}

func (g *gatedReader) Close() error {
	g.once.Do(func() { close(g.done) })
	return nil
}

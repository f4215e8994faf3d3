package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/fleetd/fleetd/internal/sim"
)

// Options configures a soak run.
type Options struct {
	Target      string        // base URL of the server, e.g. http://127.0.0.1:8080
	Duration    time.Duration // total run time
	Trucks      int           // trucks reporting at any moment
	Churn       float64       // fraction of the fleet replaced by new trucks per minute
	Rate        float64       // updates per second (default Trucks/2)
	Subscribers int           // concurrent live-feed subscribers
	Stalled     float64       // fraction of subscribers that stop reading or vanish
	SampleEvery time.Duration // default 5s
	WarmUp      time.Duration // default max(Duration/5, 15s)
	Token       string
	// Sample reads the server process's figures. The soak command runs the
	// server in-process and passes SelfSample.
	Sample func() Sample
}

// Sample is one row of the table.
type Sample struct {
	Elapsed     time.Duration
	RSS         int64
	HeapInuse   int64
	HeapObjects int64
	Goroutines  int
	FDs         int
	Trucks      int   // from the server's /v1/stats
	Subscribers int   // client-side connected subscribers
	Updates     int64 // acknowledged so far
}

// Report is the outcome.
type Report struct {
	Samples         []Sample
	Baseline        Sample // before subscribers
	Final           Sample // after every subscriber left
	RSSWarm, RSSEnd int64
	RSSGrowth       float64
	Pass            bool
	Reasons         []string
}

// Limits of the verdict.
const (
	MaxRSSGrowth = 0.05
	slackGR      = 8 // goroutines: idle HTTP connections and timers
	slackFD      = 8
)

// SelfSample samples the calling process.
func SelfSample() Sample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Sample{RSS: rss(), HeapInuse: int64(ms.HeapInuse), HeapObjects: int64(ms.HeapObjects),
		Goroutines: runtime.NumGoroutine(), FDs: openFDs()}
}

func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	fmt.Sscan(string(b), &size, &res)
	return res * int64(os.Getpagesize())
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

// Run soaks the server until Duration has passed or ctx ends, calling
// progress (if not nil) with each sample.
func Run(ctx context.Context, o Options, progress func(Sample)) (Report, error) {
	if o.Trucks <= 0 || o.Duration <= 0 || o.Sample == nil || o.Target == "" {
		return Report{}, fmt.Errorf("soak: Target, Duration, Trucks and Sample are required")
	}
	if o.Rate <= 0 {
		o.Rate = float64(o.Trucks) / 2
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 5 * time.Second
	}
	if o.WarmUp <= 0 {
		o.WarmUp = max(o.Duration/5, 15*time.Second)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	start := time.Now()
	tr := &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var rep Report
	var updates atomic.Int64
	var live atomic.Int64 // connected subscribers

	rep.Baseline = o.Sample()
	var wg sync.WaitGroup
	wg.Go(func() { drive(ctx, o, cl, &updates) })
	subCtx, stopSubs := context.WithCancel(ctx)
	for i := 0; i < o.Subscribers; i++ {
		stalled := float64(i) < o.Stalled*float64(o.Subscribers)
		seed := uint64(i)
		wg.Go(func() { subscribe(subCtx, o, seed, stalled, &live) })
	}
	tick := time.NewTicker(o.SampleEvery)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			s := o.Sample()
			s.Elapsed = time.Since(start).Round(time.Second)
			s.Subscribers = int(live.Load())
			s.Updates = updates.Load()
			s.Trucks = trucks(cl, o)
			rep.Samples = append(rep.Samples, s)
			if progress != nil {
				progress(s)
			}
		}
	}
	stopSubs()
	wg.Wait()
	tr.CloseIdleConnections()
	// Give the server a moment to notice every closed connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep.Final = o.Sample()
		if (rep.Final.Goroutines <= rep.Baseline.Goroutines+slackGR && rep.Final.FDs <= rep.Baseline.FDs+slackFD) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep.Final.Elapsed = time.Since(start).Round(time.Second)
	rep.verdict(o)
	return rep, nil
}

func (rep *Report) verdict(o Options) {
	rep.Pass = true
	fail := func(format string, a ...any) {
		rep.Pass = false
		rep.Reasons = append(rep.Reasons, fmt.Sprintf(format, a...))
	}
	var warm, end []int64
	for _, s := range rep.Samples {
		if s.Elapsed >= o.WarmUp && s.Elapsed < o.WarmUp+o.Duration/5+o.SampleEvery {
			warm = append(warm, s.RSS)
		}
	}
	n := len(rep.Samples)
	for _, s := range rep.Samples[n-max(n/5, 1):] {
		end = append(end, s.RSS)
	}
	if len(warm) == 0 || n < 3 {
		fail("too few samples after the warm-up (%d in all): run longer or sample more often", n)
	} else {
		rep.RSSWarm, rep.RSSEnd = median(warm), median(end)
		rep.RSSGrowth = float64(rep.RSSEnd-rep.RSSWarm) / float64(rep.RSSWarm)
		if rep.RSSGrowth > MaxRSSGrowth {
			fail("RSS grew %.1f%% after the warm-up (%.1f → %.1f MB), limit %.0f%%", rep.RSSGrowth*100,
				float64(rep.RSSWarm)/1e6, float64(rep.RSSEnd)/1e6, MaxRSSGrowth*100)
		}
	}
	if g, b := rep.Final.Goroutines, rep.Baseline.Goroutines; g > b+slackGR {
		fail("goroutines did not return to baseline after subscribers left: %d, baseline %d", g, b)
	}
	if f, b := rep.Final.FDs, rep.Baseline.FDs; f > b+slackFD {
		fail("open file descriptors did not return to baseline: %d, baseline %d", f, b)
	}
}

func median(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// drive posts updates for a sliding window of truck numbers: the window
// advances by Churn×Trucks per minute, so trucks that fall out of it stop
// reporting and expire on the server while new ones appear.
func drive(ctx context.Context, o Options, cl *http.Client, acked *atomic.Int64) {
	const batch = 1000
	start := time.Now()
	r := rand.New(rand.NewPCG(1, 2))
	width := sim.IDWidth(o.Trucks * 100)
	var body []byte
	ups := make([]sim.Update, 0, batch)
	perBatch := time.Duration(float64(time.Second) * batch / o.Rate)
	next := time.Now()
	for ctx.Err() == nil {
		el := time.Since(start)
		base := int(el.Minutes() * o.Churn * float64(o.Trucks))
		now := time.Now()
		ups = ups[:0]
		for i := 0; i < batch; i++ {
			n := base + r.IntN(o.Trucks)
			h := uint64(n)*0x9E3779B97F4A7C15 + 1
			ups = append(ups, sim.Update{Truck: uint32(n),
				Lat: 25 + float64(h%24_000)/1000 + r.Float64()*0.01,
				Lon: -124 + float64(h>>32%57_000)/1000 + r.Float64()*0.01,
				TS:  now.Unix(), Speed: r.Float64() * 100, Heading: float64(r.IntN(360))})
		}
		body = sim.AppendNDJSON(body[:0], ups, width)
		req, err := http.NewRequestWithContext(ctx, "POST", o.Target+"/v1/positions", bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		if o.Token != "" {
			req.Header.Set("Authorization", "Bearer "+o.Token)
		}
		if res, err := cl.Do(req); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				acked.Add(batch)
			}
		}
		next = next.Add(perBatch)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		} else if d < -time.Second {
			next = time.Now()
		}
	}
}

// subscribe keeps one subscriber slot busy: it connects with a random
// bbox covering about 1% of the US fleet, reads for a random lifetime and
// reconnects. A stalled subscriber stops reading after its first bytes and
// holds the connection until the server drops it, or vanishes by
// resetting the TCP connection.
func subscribe(ctx context.Context, o Options, seed uint64, stalled bool, live *atomic.Int64) {
	r := rand.New(rand.NewPCG(seed, 9))
	for ctx.Err() == nil {
		lat, lon := 25+r.Float64()*22, -124+r.Float64()*54
		url := fmt.Sprintf("%s/v1/stream?bbox=%.3f,%.3f,%.3f,%.3f", o.Target, lon, lat, lon+5.7, lat+2.4)
		life := time.Duration(5+r.IntN(20)) * time.Second
		sctx, cancel := context.WithTimeout(ctx, life)
		var conn net.Conn
		tr := &http.Transport{DialContext: func(c context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			cn, err := d.DialContext(c, network, addr)
			conn = cn
			return cn, err
		}}
		req, _ := http.NewRequestWithContext(sctx, "GET", url, nil)
		if o.Token != "" {
			req.Header.Set("Authorization", "Bearer "+o.Token)
		}
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil || res.StatusCode != 200 {
			if res != nil {
				res.Body.Close()
			}
			cancel()
			tr.CloseIdleConnections()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		live.Add(1)
		br := bufio.NewReader(res.Body)
		if stalled {
			br.ReadString('\n') // the first bytes, then nothing
			if r.IntN(2) == 0 {
				<-sctx.Done() // stop reading, hold on
			} else if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // vanish: reset, no orderly close
				tc.Close()
			}
		} else {
			for sctx.Err() == nil {
				if _, err := br.ReadSlice('\n'); err != nil && err != bufio.ErrBufferFull {
					break
				}
			}
		}
		live.Add(-1)
		res.Body.Close()
		cancel()
		tr.CloseIdleConnections()
	}
}

func trucks(cl *http.Client, o Options) int {
	req, _ := http.NewRequest("GET", o.Target+"/v1/stats", nil)
	if o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	res, err := cl.Do(req)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	var st struct {
		Trucks int `json:"trucks"`
	}
	if json.NewDecoder(res.Body).Decode(&st) != nil {
		return -1
	}
	return st.Trucks
}

// Print writes the samples as a table and the verdict.
func (rep *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "elapsed\ttrucks\tupdates\tsubscribers\tRSS MB\theap MB\theap objects\tgoroutines\tfds\t")
	row := func(s Sample) {
		fmt.Fprintf(tw, "%v\t%d\t%d\t%d\t%.1f\t%.1f\t%d\t%d\t%d\t\n", s.Elapsed, s.Trucks, s.Updates, s.Subscribers,
			float64(s.RSS)/1e6, float64(s.HeapInuse)/1e6, s.HeapObjects, s.Goroutines, s.FDs)
	}
	for _, s := range rep.Samples {
		row(s)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nbaseline: %d goroutines, %d fds; after subscribers left: %d goroutines, %d fds\n",
		rep.Baseline.Goroutines, rep.Baseline.FDs, rep.Final.Goroutines, rep.Final.FDs)
	fmt.Fprintf(w, "RSS after warm-up %.1f MB, at the end %.1f MB: %+.1f%% (limit +%.0f%%)\n",
		float64(rep.RSSWarm)/1e6, float64(rep.RSSEnd)/1e6, rep.RSSGrowth*100, MaxRSSGrowth*100)
	if rep.Pass {
		fmt.Fprintln(w, "verdict: PASS — memory flat, goroutines and file descriptors back to baseline")
		return
	}
	fmt.Fprintln(w, "verdict: FAIL")
	for _, r := range rep.Reasons {
		fmt.Fprintln(w, "  -", r)
	}
}

// PrintCSV writes the samples as CSV.
func (rep *Report) PrintCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"elapsed_s", "trucks", "updates", "subscribers", "rss_bytes", "heap_inuse_bytes", "heap_objects", "goroutines", "fds"})
	for _, s := range rep.Samples {
		cw.Write([]string{strconv.Itoa(int(s.Elapsed.Seconds())), strconv.Itoa(s.Trucks), strconv.FormatInt(s.Updates, 10),
			strconv.Itoa(s.Subscribers), strconv.FormatInt(s.RSS, 10), strconv.FormatInt(s.HeapInuse, 10),
			strconv.FormatInt(s.HeapObjects, 10), strconv.Itoa(s.Goroutines), strconv.Itoa(s.FDs)})
	}
	cw.Flush()
	return cw.Error()
}

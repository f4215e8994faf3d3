package soak

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Options configures a soak run.
type Options struct {
	Target      string        // base URL of the server, e.g. http://127.0.0.1:8080
	Duration    time.Duration // total run time
	Trucks      int           // trucks reporting at any moment
	Churn       float64       // fraction of the fleet replaced by new trucks per minute
	Rate        float64       // updates per second offered (default Trucks/2)
	Conns       int           // concurrent posting connections, one POST in flight on each (default 4)
	Batch       int           // updates per POST (default 10,000; at most Rate/10, for at least 10 posts a second)
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
	Offered     int64 // in posts started so far
	// Delivered and Dropped are the feed's events so far, from the
	// server's /metrics (-1 when unavailable).
	Delivered, Dropped int64

	at time.Duration // Elapsed, unrounded
}

// Report is the outcome.
type Report struct {
	Samples         []Sample
	Baseline        Sample // before subscribers
	Final           Sample // after every subscriber left
	RSSWarm, RSSEnd int64
	RSSGrowth       float64
	Ingest          Ingest
	Delay           Delay
	Pass            bool
	Reasons         []string
}

// Ingest is the load the server took, as rates between the first sample
// after the warm-up and the last one.
type Ingest struct {
	Target  float64 // updates/s asked for (Options.Rate)
	Offered float64 // updates/s in posts started
	Acked   float64 // updates/s in posts answered 200
	// Delivered and Dropped are the feed's events/s (-1 when the server's
	// /metrics does not say).
	Delivered, Dropped float64
	FailedPosts        int64         // over the whole run: errors and answers other than 200
	PostP50, PostP99   time.Duration // POST round trips, over the whole run
}

// Delay is the delivery delay of probe positions to subscribers that keep
// reading, after the warm-up: from just before the POST carrying the
// probe starts to the subscriber's read that returns its event (see
// probes). Quantiles have 1 ms resolution.
type Delay struct {
	Probes        int64 // probe events received
	P50, P99, Max time.Duration
	Unmatched     int64 // probe events from an earlier use of their ID
	// PostP50 and PostP99 are the probes' own POST round trips, the part
	// of the delay before the feed (decoding, WAL, apply), roughly.
	PostP50, PostP99 time.Duration
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
	if o.Conns <= 0 {
		o.Conns = 4
	}
	if o.Batch <= 0 {
		o.Batch = 10_000
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
	tr := &http.Transport{MaxIdleConnsPerHost: o.Conns + 4, IdleConnTimeout: 5 * time.Second,
		WriteBufferSize: 64 << 10}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var rep Report
	var live atomic.Int64 // connected subscribers
	pr := &probes{start: start, warmUp: o.WarmUp}
	ld := newLoad(o, cl, start, pr)

	rep.Baseline = o.Sample()
	var wg sync.WaitGroup
	wg.Go(func() { ld.run(ctx) })
	subCtx, stopSubs := context.WithCancel(ctx)
	for i := 0; i < o.Subscribers; i++ {
		stalled := float64(i) < o.Stalled*float64(o.Subscribers)
		seed := uint64(i)
		wg.Go(func() { subscribe(subCtx, o, seed, stalled, &live, pr) })
	}
	tick := time.NewTicker(o.SampleEvery)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			s := o.Sample()
			s.at = time.Since(start)
			s.Elapsed = s.at.Round(time.Second)
			s.Subscribers = int(live.Load())
			s.Updates, s.Offered = ld.acked.Load(), ld.offered.Load()
			s.Trucks = trucks(cl, o)
			s.Delivered, s.Dropped = feedCounts(cl, o)
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
	rep.Ingest = ingestRates(rep.Samples, o)
	rep.Ingest.FailedPosts = ld.failed.Load()
	_, rep.Ingest.PostP50, rep.Ingest.PostP99, _ = ld.latency.summary()
	rep.Delay.Probes, rep.Delay.P50, rep.Delay.P99, rep.Delay.Max = pr.delay.summary()
	rep.Delay.Unmatched = pr.unmatched.Load()
	_, rep.Delay.PostP50, rep.Delay.PostP99, _ = ld.probeRT.summary()
	rep.verdict(o)
	return rep, nil
}

// ingestRates computes the rates between the first sample at or after the
// warm-up and the last sample.
func ingestRates(ss []Sample, o Options) Ingest {
	in := Ingest{Target: o.Rate, Delivered: -1, Dropped: -1}
	i := slices.IndexFunc(ss, func(s Sample) bool { return s.at >= o.WarmUp })
	if i < 0 || i == len(ss)-1 {
		return in
	}
	a, b := ss[i], ss[len(ss)-1]
	dt := (b.at - a.at).Seconds()
	in.Offered = float64(b.Offered-a.Offered) / dt
	in.Acked = float64(b.Updates-a.Updates) / dt
	if a.Delivered >= 0 && b.Delivered >= 0 {
		in.Delivered = float64(b.Delivered-a.Delivered) / dt
		in.Dropped = float64(b.Dropped-a.Dropped) / dt
	}
	return in
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
	if n > 0 {
		for _, s := range rep.Samples[n-max(n/5, 1):] {
			end = append(end, s.RSS)
		}
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

// feedCounts reads the feed's delivered and dropped event counters from
// the server's /metrics (-1, -1 when it does not serve them).
func feedCounts(cl *http.Client, o Options) (delivered, dropped int64) {
	delivered, dropped = -1, -1
	res, err := cl.Get(o.Target + "/metrics")
	if err != nil {
		return
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "fleetd_feed_delivered_total":
			dst = &delivered
		case "fleetd_feed_dropped_total":
			dst = &dropped
		default:
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			*dst = int64(v)
		}
	}
	return
}

// Print writes the samples as a table, the load and delay figures, and
// the verdict. updates/s is the acknowledged rate over the interval before
// each sample.
func (rep *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "elapsed\ttrucks\tupdates\tupdates/s\tsubscribers\tRSS MB\theap MB\theap objects\tgoroutines\tfds\t")
	var prev Sample
	for _, s := range rep.Samples {
		rate := float64(s.Updates-prev.Updates) / (s.at - prev.at).Seconds()
		fmt.Fprintf(tw, "%v\t%d\t%d\t%s\t%d\t%.1f\t%.1f\t%d\t%d\t%d\t\n", s.Elapsed, s.Trucks, s.Updates, thousands(rate),
			s.Subscribers, float64(s.RSS)/1e6, float64(s.HeapInuse)/1e6, s.HeapObjects, s.Goroutines, s.FDs)
		prev = s
	}
	tw.Flush()
	in, d := rep.Ingest, rep.Delay
	fmt.Fprintf(w, "\n%s\n", rep.ingestLine())
	fmt.Fprintf(w, "posts: %d failed; round trip p50 %v, p99 %v\n", in.FailedPosts, in.PostP50, in.PostP99)
	if in.Delivered >= 0 {
		fmt.Fprintf(w, "feed after the warm-up: %s events/s delivered, %s/s dropped\n", thousands(in.Delivered), thousands(in.Dropped))
	}
	if d.Probes > 0 {
		fmt.Fprintf(w, "delivery delay after the warm-up (POST start to a reading subscriber), %d probe events: p50 %v, p99 %v, max %v",
			d.Probes, d.P50.Round(100*time.Microsecond), d.P99.Round(100*time.Microsecond), d.Max.Round(100*time.Microsecond))
	} else {
		fmt.Fprint(w, "delivery delay: no probe event reached a reading subscriber after the warm-up")
	}
	if d.Unmatched > 0 {
		fmt.Fprintf(w, " (%d more older than a probe cycle)", d.Unmatched)
	}
	if d.Probes > 0 {
		fmt.Fprintf(w, "; the probes' POST round trip p50 %v, p99 %v", d.PostP50, d.PostP99)
	}
	fmt.Fprintf(w, "\nbaseline: %d goroutines, %d fds; after subscribers left: %d goroutines, %d fds\n",
		rep.Baseline.Goroutines, rep.Baseline.FDs, rep.Final.Goroutines, rep.Final.FDs)
	fmt.Fprintf(w, "RSS after warm-up %.1f MB, at the end %.1f MB: %+.1f%% (limit +%.0f%%)\n",
		float64(rep.RSSWarm)/1e6, float64(rep.RSSEnd)/1e6, rep.RSSGrowth*100, MaxRSSGrowth*100)
	if rep.Pass {
		fmt.Fprintf(w, "verdict: PASS — memory flat, goroutines and file descriptors back to baseline; %s\n", rep.ingestLine())
		return
	}
	fmt.Fprintf(w, "verdict: FAIL; %s\n", rep.ingestLine())
	for _, r := range rep.Reasons {
		fmt.Fprintln(w, "  -", r)
	}
}

// ingestLine says what load the server took after the warm-up.
func (rep *Report) ingestLine() string {
	in := rep.Ingest
	return fmt.Sprintf("ingest: %s updates/s acknowledged (offered %s, target %s)",
		thousands(in.Acked), thousands(in.Offered), thousands(in.Target))
}

// thousands formats x rounded to an integer with thousands separators.
func thousands(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	b := strconv.AppendInt(nil, int64(math.Round(x)), 10)
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	var out []byte
	for i, c := range b {
		if i > 0 && (len(b)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// PrintCSV writes the samples as CSV.
func (rep *Report) PrintCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"elapsed_s", "trucks", "updates", "offered", "subscribers", "rss_bytes", "heap_inuse_bytes", "heap_objects",
		"goroutines", "fds", "feed_delivered", "feed_dropped"})
	for _, s := range rep.Samples {
		cw.Write([]string{strconv.Itoa(int(s.Elapsed.Seconds())), strconv.Itoa(s.Trucks), strconv.FormatInt(s.Updates, 10),
			strconv.FormatInt(s.Offered, 10), strconv.Itoa(s.Subscribers), strconv.FormatInt(s.RSS, 10),
			strconv.FormatInt(s.HeapInuse, 10), strconv.FormatInt(s.HeapObjects, 10), strconv.Itoa(s.Goroutines),
			strconv.Itoa(s.FDs), strconv.FormatInt(s.Delivered, 10), strconv.FormatInt(s.Dropped, 10)})
	}
	cw.Flush()
	return cw.Error()
}

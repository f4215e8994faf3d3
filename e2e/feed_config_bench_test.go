package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// wideSubscribers is how many unfiltered live-feed subscribers
// BenchmarkServeIngestWide connects.
const wideSubscribers = 100

// wideBench is one fleetd with wideSubscribers unfiltered subscribers.
type wideBench struct {
	once sync.Once
	srv  *benchServer
	err  error
	read atomic.Int64 // bytes the subscribers have read
	rss  int64        // server RSS growth from connecting them
}

var wideReading, wideIdle wideBench

// start starts the server and connects the subscribers, which read as
// fast as they can or, if !reading, never.
func (w *wideBench) start(reading bool) {
	w.srv, w.err = startBenchServer()
	if w.err != nil {
		return
	}
	before, err := w.srv.stats()
	if err != nil {
		w.err = err
		return
	}
	for range wideSubscribers {
		res, err := http.Get("http://" + w.srv.addr + "/v1/stream?max_hz=1")
		if err != nil || res.StatusCode != 200 {
			w.err = fmt.Errorf("subscribe: %v %v", err, res)
			return
		}
		if !reading {
			continue // the response stays open, unread, until the process ends
		}
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := res.Body.Read(buf)
				w.read.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	after, err := w.srv.stats()
	w.err = err
	w.rss = after.RSS - before.RSS
}

func (w *wideBench) run(b *testing.B, reading bool) {
	w.once.Do(func() { w.start(reading) })
	if w.err != nil {
		b.Fatal(w.err)
	}
	read0, t0 := w.read.Load(), time.Now()
	ingestBench(b, w.srv)
	b.ReportMetric(float64(w.rss)/wideSubscribers/(1<<20), "server_rss_MiB/subscriber")
	if reading {
		b.ReportMetric(float64(w.read.Load()-read0)/time.Since(t0).Seconds()/1e6/wideSubscribers, "read_MB/s/subscriber")
	}
}

// BenchmarkServeIngestWide is BenchmarkServeIngest with 100 unfiltered
// SSE subscribers (/v1/stream?max_hz=1, the whole fleet) connected and
// reading as fast as they can in this process: compare its updates/s with
// BenchmarkServeIngest's (run both with -benchtime=200x). It also reports
// the server's RSS growth per subscriber right after they connect, and
// the MB/s each reads.
func BenchmarkServeIngestWide(b *testing.B) { wideReading.run(b, true) }

// BenchmarkServeIngestWideIdle is BenchmarkServeIngestWide with
// subscribers that never read (dashboards in background tabs).
func BenchmarkServeIngestWideIdle(b *testing.B) { wideIdle.run(b, false) }

// putJSON sends a PUT and fails unless it answers 200.
func putJSON(b *testing.B, cl *http.Client, url, body string) {
	req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
	res, err := cl.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	msg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		b.Fatalf("PUT %s: %d %s", url, res.StatusCode, msg)
	}
}

// benchRuleBody is the i-th rule of the configuration benchmarks, as
// JSON without its name; a fifth of them on one of zones zones.
func benchRuleBody(i, zones int) string {
	switch {
	case zones > 0 && i%5 == 0:
		return fmt.Sprintf(`"when":"inside(\"zone-%05d\") && speed > %d","for":"30s"`, i%zones, 5+i%50)
	case i%3 == 0:
		return fmt.Sprintf(`"when":"speed > %d && dt < %d","severity":"critical"`, 60+i%100, 30+i%90)
	}
	return fmt.Sprintf(`"when":"(hour() >= %d || hour() < 4) && speed > %d","severity":"info"`, 18+i%6, 10+i%40)
}

// startConfigServer starts a fleetd on dir with its defaults.
func startConfigServer(b *testing.B, dir string) (*benchServer, time.Duration) {
	t0 := time.Now()
	s, err := startBenchServerIn(dir)
	if err != nil {
		b.Fatal(err)
	}
	return s, time.Since(t0)
}

// BenchmarkServeRulePUTs defines 10,000 rules one PUT /v1/rules/{name} at
// a time, sequentially, through the real binary (each fsynced before its
// 200): one op is the whole 10,000.
func BenchmarkServeRulePUTs(b *testing.B) {
	cl := &http.Client{}
	for range b.N {
		s, _ := startConfigServer(b, b.TempDir())
		start := time.Now()
		for i := range 10_000 {
			putJSON(b, cl, fmt.Sprintf("http://%s/v1/rules/rule-%06d", s.addr, i), "{"+benchRuleBody(i, 0)+"}")
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/10k-rules")
		s.stopKeep()
	}
}

// BenchmarkServeRulesBulk defines 100,000 rules in one PUT /v1/rules
// through the real binary: one op is the whole 100,000.
func BenchmarkServeRulesBulk(b *testing.B) {
	cl := &http.Client{}
	var body bytes.Buffer
	body.WriteString(`{"rules":[`)
	for i := range 100_000 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"name":"rule-%06d",%s}`, i, benchRuleBody(i, 0))
	}
	body.WriteString("]}")
	for range b.N {
		s, _ := startConfigServer(b, b.TempDir())
		start := time.Now()
		putJSON(b, cl, "http://"+s.addr+"/v1/rules", body.String())
		b.ReportMetric(time.Since(start).Seconds(), "s/100k-rules")
		s.stopKeep()
	}
}

// BenchmarkServeRestartConfig restarts the real binary on a data
// directory holding 10,000 zones and 100,000 rules (defined as a client
// would: zones one PUT at a time, rules in one bulk PUT): one op is one
// restart, from exec until it logs msg=ready and answers.
func BenchmarkServeRestartConfig(b *testing.B) {
	dir := b.TempDir()
	cl := &http.Client{}
	s, _ := startConfigServer(b, dir)
	for i := range 10_000 {
		lat, lon := 25+float64(i%200)*0.12, -125+float64(i/200)*1.1
		putJSON(b, cl, fmt.Sprintf("http://%s/v1/zones/zone-%05d", s.addr, i),
			fmt.Sprintf(`{"type":"Polygon","coordinates":[[[%[2]v,%[1]v],[%[4]v,%[1]v],[%[4]v,%[3]v],[%[2]v,%[1]v]]]}`, lat, lon, lat+0.05, lon+0.05))
	}
	var body bytes.Buffer
	body.WriteString(`{"rules":[`)
	for i := range 100_000 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"name":"rule-%06d",%s}`, i, benchRuleBody(i, 10_000))
	}
	body.WriteString("]}")
	putJSON(b, cl, "http://"+s.addr+"/v1/rules", body.String())
	s.stopKeep()
	b.ResetTimer()
	for range b.N {
		s, took := startConfigServer(b, dir)
		b.ReportMetric(took.Seconds(), "s/restart")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.addr+"/v1/rules/rule-099999", nil)
		res, err := cl.Do(req)
		cancel()
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("rule after restart: %v %v", err, res)
		}
		res.Body.Close()
		s.stopKeep()
	}
}

// startBenchServerIn starts `fleetd serve` with its defaults on
// dir/data (kept by stopKeep, so that the next start recovers it) and
// waits until it is ready.
func startBenchServerIn(dir string) (*benchServer, error) {
	return launchBenchServer(dir, 60*time.Second)
}

// stopKeep stops the server and keeps its data directory.
func (s *benchServer) stopKeep() {
	_ = s.cmd.Process.Signal(sigterm)
	_ = s.cmd.Wait()
}

// rules10k and rules10kGlobal are the fleetds of
// BenchmarkServeIngestRules10k and BenchmarkServeIngestRules10kGlobal.
var rules10k, rules10kGlobal wideBench

// BenchmarkServeIngestRules10k is BenchmarkServeIngest against a server
// with 10,000 rules as a geofencing deployment has them (geoRuleBody:
// 99% about one of 1,000 zones over North America, 1% fleet-wide speeding
// and braking rules), the zones defined one PUT at a time and the rules in
// one bulk PUT: compare its updates/s and server CPU per update with
// BenchmarkServeIngest's (the target is at least 70%).
func BenchmarkServeIngestRules10k(b *testing.B) {
	rules10k.runRules(b, geoRuleBody)
}

// BenchmarkServeIngestRules10kGlobal is BenchmarkServeIngestRules10k
// with benchRuleBody's mix: four fifths of the rules are fleet-wide
// thresholds on speed, hour and dt, so that a truck at highway speed
// has thousands of rules whose indexed clause holds (a stress of the
// rule index, and of --alert-max-pairs: about a thousand are true for
// each such truck).
func BenchmarkServeIngestRules10kGlobal(b *testing.B) {
	rules10kGlobal.runRules(b, benchRuleBody)
}

func (w *wideBench) runRules(b *testing.B, body func(i, zones int) string) {
	w.once.Do(func() {
		w.srv, w.err = startBenchServer()
		if w.err == nil {
			w.err = putConfig(w.srv.addr, 1_000, 10_000, body)
		}
	})
	if w.err != nil {
		b.Fatal(w.err)
	}
	ingestBench(b, w.srv)
	st, err := w.srv.stats()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.AlertPairs), "alert_pairs")
	b.ReportMetric(float64(st.AlertShed), "alert_pairs_shed")
}

// geoRuleBody is rule i of a geofencing deployment's rule set over
// zones zones: in each hundred, 99 name a zone (speeding inside it,
// dwelling near it, night movement inside it) and one is a fleet-wide
// speeding or harsh-braking rule.
func geoRuleBody(i, zones int) string {
	z := i % zones
	switch {
	case i%100 == 0: // tiers of 1 km/h from 100: a truck at 104 km/h breaks 4
		return fmt.Sprintf(`"when":"speed > %d && dt < 120","severity":"critical"`, 100+i/100)
	case i%100 == 50:
		return fmt.Sprintf(`"when":"prev.speed - speed > %d && dt < 5","severity":"critical"`, 25+i/100)
	case i%3 == 0:
		return fmt.Sprintf(`"when":"inside(\"zone-%05d\") && speed > %d","for":"30s"`, z, 20+i%40)
	case i%3 == 1:
		return fmt.Sprintf(`"when":"near(\"zone-%05d\", %d) && speed < 5","for":"10m","severity":"info"`, z, 200+i%800)
	}
	return fmt.Sprintf(`"when":"inside(\"zone-%05d\") && (hour() >= %d || hour() < 5)"`, z, 20+i%4)
}

// putConfig defines zones zones (0.05° squares over North America) one
// PUT at a time and rules rules (body's) in one bulk PUT.
func putConfig(addr string, zones, rules int, ruleBody func(i, zones int) string) error {
	put := func(url, body string) error {
		req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("PUT %s: %d %s", url, res.StatusCode, msg)
		}
		return nil
	}
	for i := range zones {
		lat, lon := 25+float64(i%200)*0.12, -125+float64(i/200)*1.1
		if err := put(fmt.Sprintf("http://%s/v1/zones/zone-%05d", addr, i),
			fmt.Sprintf(`{"type":"Polygon","coordinates":[[[%[2]v,%[1]v],[%[4]v,%[1]v],[%[4]v,%[3]v],[%[2]v,%[1]v]]]}`, lat, lon, lat+0.05, lon+0.05)); err != nil {
			return err
		}
	}
	var body bytes.Buffer
	body.WriteString(`{"rules":[`)
	for i := range rules {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"name":"rule-%06d",%s}`, i, ruleBody(i, zones))
	}
	body.WriteString("]}")
	return put("http://"+addr+"/v1/rules", body.String())
}

package sink

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/outbox"
	"github.com/fleetd/fleetd/internal/vfs"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// paho's and net/http's idle goroutines wind down asynchronously.
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{`{"type":"webhook","url":"http://127.0.0.1:9/x","secret":"s","timeout":"2s"}`, ""},
		{`{"type":"nats","url":"nats://127.0.0.1:4222","subject":"fleet.alerts"}`, ""},
		{`{"type":"mqtt","url":"tcp://127.0.0.1:1883","topic":"fleet/alerts","filter":{"kinds":["alert.fired"],"severities":["critical"]}}`, ""},
		{`{"type":"webhook","url":"ftp://x/"}`, "scheme must be http"},
		{`{"type":"webhook"}`, "not an absolute URL"},
		{`{"url":"http://x/"}`, `"type" is required`},
		{`{"type":"smtp","url":"http://x/"}`, `type "smtp"`},
		{`{"type":"nats","url":"nats://x:1"}`, "subject"},
		{`{"type":"nats","url":"nats://x:1","subject":"a.*"}`, "no wildcards"},
		{`{"type":"mqtt","url":"tcp://x:1","topic":"a/#"}`, "without wildcards"},
		{`{"type":"webhook","url":"http://x/","timeout":5}`, "duration"},
		{`{"type":"webhook","url":"http://x/","timeout":"-1s"}`, "negative"},
		{`{"type":"webhook","url":"http://x/","bogus":1}`, "unknown field"},
		{`{"type":"webhook","url":"http://x/","filter":{"kinds":["zone.exited"]}}`, "filter kind"},
		{`{"type":"webhook","url":"http://x/","filter":{"kinds":["zone.entered","zone.left"]}}`, ""},
		{`{"type":"webhook","url":"http://x/","filter":{"severities":["huge"]}}`, "filter severity"},
		{`{"type":"webhook","url":"http://x/","max_outbox_bytes":10}`, "at least 1 MiB"},
		{`{"type":"webhook","url":"http://x/"} {}`, "more than one"},
		{`[]`, "invalid"},
	} {
		c, err := ParseConfig([]byte(tc.in))
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.in, err)
			} else if c.Timeout == 0 || c.MaxAge == 0 || c.MaxOutboxBytes == 0 {
				t.Errorf("%s: defaults not filled: %+v", tc.in, c)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want one containing %q", tc.in, err, tc.err)
		}
	}
	for _, n := range []string{"", ".x", "a/b", strings.Repeat("a", 65), "a b"} {
		if CheckName(n) == nil {
			t.Errorf("name %q accepted", n)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"type":"webhook","url":"http://127.0.0.1:9/x","secret":"s","timeout":"2s"}`))
	f.Add([]byte(`{"type":"nats","url":"nats://127.0.0.1:4222","subject":"fleet.alerts","filter":{"rules":["a"]}}`))
	f.Add([]byte(`{"type":"mqtt","url":"tcp://h:1","topic":"t","max_age":"1h"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		// A valid configuration survives its own JSON.
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseConfig(out); err != nil {
			t.Fatalf("round trip of %s: %v", out, err)
		}
	})
}

func TestEventJSON(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	str := func() string {
		const chars = "ab\"\\\n\t<>&\x01é\u2028\xff"
		var b []byte
		for range r.IntN(12) {
			b = append(b, chars[r.IntN(len(chars))])
		}
		return string(b)
	}
	for range 2000 {
		e := Event{Kind: kinds[r.IntN(len(kinds))], Truck: str(), Rule: str(), Zone: str(), Severity: str(), TS: r.Uint32(), Since: r.Uint32() % 3,
			Lat: float64(r.Int32N(1800000000)-900000000) / 1e7, Lon: float64(r.Int32N(1800000000)-900000000) / 1e7, Reason: str()}
		e.ID = e.stableID()
		got := e.appendJSON(nil)
		want, _ := json.Marshal(e)
		if string(got) != string(want) {
			t.Fatalf("appendJSON\n%s\nencoding/json\n%s", got, want)
		}
		id, kind := eventHeader(got)
		if id != e.ID || kind != e.Kind {
			t.Fatalf("eventHeader: %q %q", id, kind)
		}
		back, err := parseEvent(got)
		if err != nil || back.ID != e.ID {
			t.Fatalf("parseEvent: %v", err)
		}
	}
	a := alert.Alert{Rule: "r", ID: "t1", State: alert.StateFiring, Severity: "warning", Since: 5, TS: 10, Lat: 407128000, Lon: -740060000}
	e1, e2 := eventFromAlert(a), eventFromAlert(a)
	if e1.ID != e2.ID || len(e1.ID) != 32 {
		t.Fatalf("IDs %q %q", e1.ID, e2.ID)
	}
	a.State = alert.StateResolved
	if eventFromAlert(a).ID == e1.ID {
		t.Fatal("a resolve has the ID of the fire")
	}
}

func TestFilter(t *testing.T) {
	for _, tc := range []struct {
		f                    Filter
		kind, rule, severity string
		want                 bool
	}{
		{Filter{}, KindFired, "r", "info", true},
		{Filter{}, KindExpired, "", "", true},
		{Filter{Rules: []string{"r"}}, KindFired, "r", "info", true},
		{Filter{Rules: []string{"r"}}, KindFired, "s", "info", false},
		{Filter{Rules: []string{"r"}}, KindExpired, "", "", false},
		{Filter{Rules: []string{"r"}, Kinds: []string{KindExpired, KindFired}}, KindExpired, "", "", true},
		{Filter{Severities: []string{"critical"}}, KindResolved, "r", "warning", false},
		{Filter{Severities: []string{"critical"}}, KindResolved, "r", "critical", true},
		{Filter{Kinds: []string{KindResolved}}, KindFired, "r", "critical", false},
	} {
		if got := tc.f.match(tc.kind, tc.rule, tc.severity); got != tc.want {
			t.Errorf("%+v %s %s %s: %v", tc.f, tc.kind, tc.rule, tc.severity, got)
		}
	}
}

// receiver is a webhook endpoint that records what it accepted and can
// fail on demand.
type receiver struct {
	t      testing.TB
	secret string
	mu     sync.Mutex
	got    []Event
	ids    map[string]int
	fail   atomic.Int32 // 0 ok, 1: 500, 2: hang until the request ends
	badSig atomic.Int64
	srv    *httptest.Server
}

func newReceiver(t testing.TB, secret string) *receiver {
	rc := &receiver{t: t, secret: secret, ids: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	switch rc.fail.Load() {
	case 1:
		http.Error(w, "down", http.StatusInternalServerError)
		return
	case 2:
		// Read the body first: the server notices the client giving up
		// only once it has.
		_, _ = io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return
	}
	body, _ := io.ReadAll(r.Body)
	if rc.secret != "" && !hmac.Equal([]byte(r.Header.Get(HeaderSignature)), []byte(Sign([]byte(rc.secret), body))) {
		rc.badSig.Add(1)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var e Event
	if err := json.Unmarshal(body, &e); err != nil || e.ID != r.Header.Get(HeaderEventID) || e.Kind != r.Header.Get(HeaderEventKind) {
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, e)
	rc.ids[e.ID]++
	rc.mu.Unlock()
}

func (rc *receiver) distinct() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.ids)
}

// waitFor polls cond for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fire emits n alerts for trucks truck-0..truck-(trucks-1), each truck's
// with increasing ts.
func fire(d *Dispatcher, n, trucks int, ts0 uint32) {
	for i := range n {
		d.Emit(alert.Alert{Rule: "speeding", ID: fmt.Sprintf("truck-%d", i%trucks), State: alert.StateFiring,
			Severity: "warning", Since: ts0, TS: ts0 + uint32(i), Lat: 1, Lon: 2})
	}
}

// checkOrder checks that each truck's events arrived in ts order, where
// first arrivals count (duplicates of delivered events may come later).
func checkOrder(t testing.TB, got []Event) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]uint32{}
	for _, e := range got {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		if p, ok := last[e.Truck]; ok && e.TS < p {
			t.Fatalf("truck %s: ts %d after %d", e.Truck, e.TS, p)
		}
		last[e.Truck] = e.TS
	}
}

func webhookCfg(url, secret string) Config {
	return Config{Type: TypeWebhook, URL: url, Secret: secret, Timeout: Duration(time.Second)}
}

func TestWebhookOrderHMACAndRestart(t *testing.T) {
	fs := vfs.NewMem()
	rc := newReceiver(t, "k3y")
	d, err := New(Options{FS: fs, Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if created, err := d.Put("hook", webhookCfg(rc.srv.URL, "k3y")); err != nil || !created {
		t.Fatalf("Put: %v %v", created, err)
	}
	fire(d, 500, 7, 1000)
	waitFor(t, 10*time.Second, "500 events", func() bool { return rc.distinct() == 500 })
	checkOrder(t, rc.got)
	if rc.badSig.Load() != 0 {
		t.Fatal("bad signatures")
	}
	st := d.Stats()["hook"]
	if st.Delivered < 500 || st.Health != "ok" || st.LatencyP99Ms <= 0 {
		t.Fatalf("stats %+v", st)
	}
	// Receiver failing: events wait in the outbox, then all arrive.
	rc.fail.Store(1)
	fire(d, 200, 7, 5000)
	waitFor(t, 5*time.Second, "failures", func() bool { return d.Stats()["hook"].Failed > 0 })
	if h := d.Stats()["hook"].Health; h != "failing" {
		t.Fatalf("health %q while failing", h)
	}
	// Restart the dispatcher while events are pending: they survive.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = New(Options{FS: fs, Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if v := d.List(); len(v) != 1 || v[0].Name != "hook" || v[0].Secret != "" || !v[0].SecretSet {
		t.Fatalf("list after restart %+v", v)
	}
	if d.Stats()["hook"].Depth == 0 {
		t.Fatal("pending events lost by the restart")
	}
	rc.fail.Store(0)
	waitFor(t, 15*time.Second, "700 events", func() bool { return rc.distinct() == 700 })
	rc.mu.Lock()
	checkOrder(t, rc.got)
	rc.mu.Unlock()
	waitFor(t, 5*time.Second, "empty outbox", func() bool { return d.Stats()["hook"].Depth == 0 })
}

func TestWebhookHangingAndMaxAge(t *testing.T) {
	rc := newReceiver(t, "")
	rc.fail.Store(2) // hangs
	d, err := New(Options{FS: vfs.NewMem(), Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c := webhookCfg(rc.srv.URL, "")
	c.Timeout, c.MaxAge = Duration(100*time.Millisecond), Duration(400*time.Millisecond)
	if _, err := d.Put("hook", c); err != nil {
		t.Fatal(err)
	}
	fire(d, 20, 2, 1)
	waitFor(t, 10*time.Second, "20 dropped", func() bool { return d.Stats()["hook"].Dropped == 20 })
	v, _ := d.Get("hook")
	if len(v.DeadLetters) != 20 || v.DeadLetters[0].Attempts == 0 || !strings.Contains(v.DeadLetters[0].Error, "webhook: ") {
		t.Fatalf("%d dead letters, the first: %+v", len(v.DeadLetters), v.DeadLetters[0])
	}
	var e Event
	if err := json.Unmarshal(v.DeadLetters[0].Event, &e); err != nil || e.Rule != "speeding" {
		t.Fatalf("dead letter event %s: %v", v.DeadLetters[0].Event, err)
	}
	// Back to normal: new events flow.
	rc.fail.Store(0)
	fire(d, 5, 2, 100)
	waitFor(t, 5*time.Second, "5 delivered", func() bool { return rc.distinct() == 5 })
}

func TestReplaceAndDelete(t *testing.T) {
	fs := vfs.NewMem()
	a, b := newReceiver(t, ""), newReceiver(t, "")
	d, err := New(Options{FS: fs, Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a.fail.Store(1)
	if _, err := d.Put("x", webhookCfg(a.srv.URL, "")); err != nil {
		t.Fatal(err)
	}
	fire(d, 10, 3, 1)
	waitFor(t, 5*time.Second, "a failure", func() bool { return d.Stats()["x"].Failed > 0 })
	// Replaced: the pending events go to the new destination.
	if created, err := d.Put("x", webhookCfg(b.srv.URL, "")); err != nil || created {
		t.Fatalf("replace: %v %v", created, err)
	}
	waitFor(t, 5*time.Second, "10 at b", func() bool { return b.distinct() == 10 })
	if err := d.Delete("x"); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete("x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if names, _ := fs.List("sinks"); len(names) != 1 || names[0] != configName {
		t.Fatalf("left after delete: %v", names)
	}
	fire(d, 3, 1, 100) // no sink: nothing happens
	if _, err := d.Put("bad/name", webhookCfg(b.srv.URL, "")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestExpiredEvents(t *testing.T) {
	rc := newReceiver(t, "")
	d, err := New(Options{FS: vfs.NewMem(), Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c := webhookCfg(rc.srv.URL, "")
	c.Filter.Kinds = []string{KindExpired}
	if _, err := d.Put("x", c); err != nil {
		t.Fatal(err)
	}
	d.Removed([]byte("t1"), fleet.Position{Lat: 10, Lon: 20, TS: 99}, fleet.Expired)
	d.Removed([]byte("t2"), fleet.Position{}, fleet.Deleted) // not an event
	fire(d, 3, 1, 5)                                         // filtered out
	waitFor(t, 5*time.Second, "the expiry", func() bool { return rc.distinct() == 1 })
	time.Sleep(50 * time.Millisecond)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) != 1 || rc.got[0].Kind != KindExpired || rc.got[0].Truck != "t1" || rc.got[0].TS != 99 {
		t.Fatalf("got %+v", rc.got)
	}
}

func TestHTTP(t *testing.T) {
	rc := newReceiver(t, "")
	d, err := New(Options{FS: vfs.NewMem(), Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sinks", d.ServeList)
	mux.HandleFunc("GET /v1/sinks/{name}", d.ServeGet)
	mux.HandleFunc("PUT /v1/sinks/{name}", d.ServePut)
	mux.HandleFunc("DELETE /v1/sinks/{name}", d.ServeDelete)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequestWithContext(context.Background(), method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cfg := fmt.Sprintf(`{"type":"webhook","url":%q,"secret":"shh"}`, rc.srv.URL)
	for _, tc := range []struct {
		method, path, body string
		code               int
		frag               string
	}{
		{"PUT", "/v1/sinks/a", cfg, 201, `"secret_set":true`},
		{"PUT", "/v1/sinks/a", cfg, 200, `"name":"a"`},
		{"PUT", "/v1/sinks/b", `{"type":"webhook"}`, 400, `"error"`},
		{"PUT", "/v1/sinks/.b", cfg, 400, "name"},
		{"PUT", "/v1/sinks/b", strings.Repeat(" ", 70<<10), 400, "larger"},
		{"GET", "/v1/sinks", "", 200, `"sinks":[{"name":"a"`},
		{"GET", "/v1/sinks/a", "", 200, `"stats":`},
		{"GET", "/v1/sinks/zz", "", 404, "no sink"},
		{"DELETE", "/v1/sinks/a", "", 200, `"deleted":"a"`},
		{"DELETE", "/v1/sinks/a", "", 404, "no sink"},
	} {
		code, body := do(tc.method, tc.path, tc.body)
		if code != tc.code || !strings.Contains(body, tc.frag) || strings.Contains(body, "shh") {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, code, body)
		}
	}
}

// TestStuckLaneHoldsOnlyItsTrucks: a receiver that refuses every event of
// one truck (400, for good) holds back only the trucks of that truck's
// lane, however many events wait behind it: 20,000 events (five times
// the events a sink holds in memory) and every other lane's all arrive,
// in order; the stuck lane's wait on disk. Once the receiver takes them,
// they arrive too, in order.
// refusingReceiver is a webhook receiver that answers 400 to the events
// refuse picks and keeps the others, in arrival order, in *got (under mu).
func refusingReceiver(t *testing.T, refuse func(Event) bool) (*httptest.Server, *sync.Mutex, *[]Event) {
	var mu sync.Mutex
	var got []Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e Event
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &e)
		if refuse(e) {
			http.Error(w, "no such truck here", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return srv, &mu, &got
}

func TestStuckLaneHoldsOnlyItsTrucks(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	srv, mu, got := refusingReceiver(t, func(e Event) bool { return e.Truck == "truck-0" && refuse.Load() })
	d, err := New(Options{FS: vfs.NewMem(), Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Put("x", webhookCfg(srv.URL, "")); err != nil {
		t.Fatal(err)
	}
	const trucks, n = 40, 20000
	fire(d, n, trucks, 1)
	stuck := truckKey("truck-0") % lanes
	want := 0
	for k := range trucks {
		if truckKey(fmt.Sprintf("truck-%d", k))%lanes != stuck {
			want += n / trucks
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(*got)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("the other lanes' %d events", want), func() bool { return count() >= want })
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	for _, e := range *got {
		if truckKey(e.Truck)%lanes == stuck {
			t.Fatalf("an event of the stuck lane (%s) passed its refused head", e.Truck)
		}
	}
	checkOrder(t, *got)
	mu.Unlock()
	st := d.Stats()["x"]
	if st.Health != "failing" || st.Depth != int64(n-want) {
		t.Fatalf("stats while one lane is stuck: %+v (want depth %d)", st, n-want)
	}
	refuse.Store(false)
	waitFor(t, 60*time.Second, "every event", func() bool { return count() >= n })
	mu.Lock()
	checkOrder(t, *got)
	mu.Unlock()
	waitFor(t, 5*time.Second, "an empty outbox and ok health", func() bool {
		st := d.Stats()["x"]
		return st.Depth == 0 && st.Health == "ok"
	})
}

// TestOlderLayouts: a sink's events written by an older fleetd are
// delivered. The single outbox of one lane (DIR/<name>/outbox, its
// cursor file of one cursor, part of it done) is read in place: what
// lies beyond its cursor is delivered, what lies below is not. The lane
// outboxes (DIR/<name>/lanes/0 … 7) are moved into the sink's outbox:
// every event delivered, in order per truck, with its emission time,
// the lanes' directories gone.
func TestOlderLayouts(t *testing.T) {
	fs := vfs.NewMem()
	ev := func(i, trucks int) Event {
		e := Event{Kind: KindFired, Truck: fmt.Sprintf("truck-%d", i%trucks), Rule: "r", TS: uint32(1000 + i)}
		e.ID = e.stableID()
		return e
	}
	// The single outbox: 1000 events, the first 400 done and
	// checkpointed (the old cursor format: one lane).
	const single, done = 1000, 400
	old, err := outbox.Open(outbox.Options{FS: fs, Dir: "sinks/x/outbox", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for i := range single {
		e := ev(i, 13)
		if _, ok := old.Append(truckKey(e.Truck), e.appendJSON(nil)); !ok {
			t.Fatal("shed")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range done {
		r, err := old.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		old.Done(r.Seq)
	}
	old.CloseReader()
	if err := old.Close(); err != nil { // checkpoints the cursor
		t.Fatal(err)
	}
	if b, _ := vfs.ReadFile(fs, "sinks/x/outbox/cursor"); len(b) != 20 || string(b[:8]) != "FLOBXCUR" {
		t.Fatalf("not the one-cursor format: %q", b)
	}
	// The lane outboxes: 2000 more events of the same trucks, later,
	// each in its truck's lane, with emission times an hour old.
	const laned = 2000
	emitted := time.Now().Add(-time.Hour).UnixNano()
	var lanesOB [lanes]*outbox.Outbox
	for i := range lanesOB {
		if lanesOB[i], err = outbox.Open(outbox.Options{FS: fs, Dir: fmt.Sprintf("sinks/x/lanes/%d", i), Logger: quiet}); err != nil {
			t.Fatal(err)
		}
	}
	for i := single; i < single+laned; i++ {
		e := ev(i, 13)
		k := truckKey(e.Truck)
		if _, ok := lanesOB[k%lanes].AppendAt(k, emitted, e.appendJSON(nil)); !ok {
			t.Fatal("shed")
		}
	}
	for _, ob := range lanesOB {
		if err := ob.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rc := newReceiver(t, "")
	d, err := New(Options{FS: fs, Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Put("x", webhookCfg(rc.srv.URL, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat("sinks/x/lanes"); err == nil {
		t.Fatal("the lanes' outboxes are still there")
	}
	want := single - done + laned
	waitFor(t, 20*time.Second, fmt.Sprintf("%d events", want), func() bool { return rc.distinct() >= want })
	time.Sleep(50 * time.Millisecond)
	if got := rc.distinct(); got != want {
		t.Fatalf("%d distinct events, want %d", got, want)
	}
	// 2000 of the 2600 are an hour old: the latency (emitted →
	// acknowledged) shows the migrated events kept their time.
	if st := d.Stats()["x"]; st.LatencyP50Ms < 30*60e3 {
		t.Fatalf("migrated events lost their emission time: latency p50 %.0f ms", st.LatencyP50Ms)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	checkOrder(t, rc.got)
	for _, e := range rc.got {
		if e.TS < 1000+done {
			t.Fatalf("event %d, below the old cursor, delivered again", e.TS-1000)
		}
	}
}

// TestZoneKinds: a rule whose whole condition is inside("zone") fires as
// zone.entered and resolves by an update as zone.left, with the zone in
// the event; resolved for another reason it is alert.resolved; other
// rules keep alert.fired/alert.resolved; the kinds filter tells them
// apart.
func TestZoneKinds(t *testing.T) {
	for _, tc := range []struct {
		a    alert.Alert
		kind string
	}{
		{alert.Alert{Rule: "yard", Zone: "yard-3", State: alert.StateFiring}, KindEntered},
		{alert.Alert{Rule: "yard", Zone: "yard-3", State: alert.StateResolved}, KindLeft},
		{alert.Alert{Rule: "yard", Zone: "yard-3", State: alert.StateResolved, Reason: "truck expired"}, KindResolved},
		{alert.Alert{Rule: "yard", Zone: "yard-3", State: alert.StateResolved, Reason: "rule deleted"}, KindResolved},
		{alert.Alert{Rule: "fast", State: alert.StateFiring}, KindFired},
		{alert.Alert{Rule: "fast", State: alert.StateResolved}, KindResolved},
	} {
		e := eventFromAlert(tc.a)
		if e.Kind != tc.kind || e.Zone != tc.a.Zone {
			t.Errorf("%+v: kind %q zone %q, want %q", tc.a, e.Kind, e.Zone, tc.kind)
		}
	}
	f := Filter{Kinds: []string{KindEntered, KindLeft}}
	if !f.match(KindEntered, "yard", "warning") || !f.match(KindLeft, "yard", "warning") || f.match(KindFired, "fast", "warning") || f.match(KindResolved, "yard", "warning") {
		t.Fatal("kinds filter")
	}
}

// TestStuckLaneDoesNotFillTheOutbox: one truck refused for good, the
// others delivered, far more events than max_outbox_bytes holds passing
// through: the stuck lane's refused heads go to the dead letters once
// they alone keep the shared outbox over half full, so nothing is shed
// and every other truck's events arrive in order (waiting for max_age
// would fill the outbox and shed every lane's events).
func TestStuckLaneDoesNotFillTheOutbox(t *testing.T) {
	srv, mu, got := refusingReceiver(t, func(e Event) bool { return e.Truck == "truck-0" })
	d, err := New(Options{FS: vfs.NewMem(), Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cfg := webhookCfg(srv.URL, "")
	cfg.MaxOutboxBytes = 1 << 20
	if _, err := d.Put("x", cfg); err != nil {
		t.Fatal(err)
	}
	const trucks, chunk, chunks = 40, 500, 16 // 8,000 events of ~230 B through a 1 MiB outbox
	stuck := truckKey("truck-0") % lanes
	perChunk := 0
	for k := range trucks {
		if truckKey(fmt.Sprintf("truck-%d", k))%lanes != stuck {
			perChunk += chunk / trucks
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(*got)
	}
	for c := range chunks {
		for i := range chunk {
			n := c*chunk + i
			d.Emit(alert.Alert{Rule: "speeding", ID: fmt.Sprintf("truck-%d", n%trucks), State: alert.StateFiring,
				Severity: "warning", Since: 1, TS: 1 + uint32(n), Lat: 1, Lon: 2})
		}
		deadline := time.Now().Add(30 * time.Second)
		for count() < (c+1)*perChunk {
			if time.Now().After(deadline) {
				t.Fatalf("chunk %d: %d of the other lanes' %d events arrived: %+v", c, count(), (c+1)*perChunk, d.Stats()["x"])
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // ~230 KB/s into a 1 MiB outbox
	}
	st := d.Stats()["x"]
	if st.Shed != 0 {
		t.Fatalf("%d events shed: %+v", st.Shed, st)
	}
	if st.Dropped == 0 {
		t.Fatalf("no refused event given up, yet %d bytes passed a 1 MiB outbox: %+v", chunks*chunk*200, st)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range *got {
		if e.Truck == "truck-0" {
			t.Fatalf("a refused event arrived")
		}
	}
	checkOrder(t, *got)
}

package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/fleetd/fleetd/internal/mqtt/mqtttest"
)

// sinkEvent is what a sink delivers (internal/sink/doc.go, Events).
type sinkEvent struct {
	ID, Kind, Truck, Rule, Zone, Severity, Reason string
	TS, Since                                     uint32
	Lat, Lon                                      float64
}

// hookReceiver is a webhook endpoint that verifies the HMAC, records
// events and misbehaves on demand.
type hookReceiver struct {
	t      *testing.T
	secret string
	mode   atomic.Int32 // see the hook* constants
	delay  atomic.Int64 // ns slept before answering
	badSig atomic.Int64
	mu     sync.Mutex
	evs    []sinkEvent
	srv    *httptest.Server
}

const (
	hookOK      = iota
	hook500     // answers 500
	hookHang    // never answers (until the client gives up)
	hookTrickle // reads the body one byte a second
)

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{t: t, secret: secret}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	switch h.mode.Load() {
	case hook500:
		http.Error(w, "receiver down", http.StatusInternalServerError)
		return
	case hookHang:
		_, _ = io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	case hookTrickle:
		var b [1]byte
		for {
			if _, err := r.Body.Read(b[:]); err != nil {
				break
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	m := hmac.New(sha256.New, []byte(h.secret))
	m.Write(body)
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); !hmac.Equal([]byte(r.Header.Get("X-Fleetd-Signature")), []byte(want)) {
		h.badSig.Add(1)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var e sinkEvent
	if err := json.Unmarshal(body, &e); err != nil || e.ID == "" || e.ID != r.Header.Get("X-Fleetd-Event-Id") {
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	if d := h.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	h.mu.Lock()
	h.evs = append(h.evs, e)
	h.mu.Unlock()
}

func (h *hookReceiver) events() []sinkEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sinkEvent(nil), h.evs...)
}

// checkSinkEvents checks events as received: each transition (truck, ts,
// kind) has one ID however often it came, the first arrivals of each
// truck are in ts order, and it returns how many distinct events came.
func checkSinkEvents(t *testing.T, evs []sinkEvent) int {
	t.Helper()
	idOf := map[string]string{}
	seen := map[string]bool{}
	last := map[string]uint32{}
	for _, e := range evs {
		k := fmt.Sprintf("%s/%d/%s", e.Truck, e.TS, e.Kind)
		if id, ok := idOf[k]; ok && id != e.ID {
			t.Fatalf("transition %s delivered with IDs %s and %s", k, id, e.ID)
		}
		idOf[k] = e.ID
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		if p, ok := last[e.Truck]; ok && e.TS < p {
			t.Fatalf("truck %s: event at ts %d after one at %d", e.Truck, e.TS, p)
		}
		last[e.Truck] = e.TS
	}
	return len(seen)
}

// sinkLoad posts rounds × trucks updates alternating above and below the
// rule "fast" (speed > 50), so every update after the first is a
// transition: rounds × trucks events (fired, resolved, fired, …).
func sinkLoad(t *testing.T, p *proc, trucks, rounds int, ts0 int64) {
	t.Helper()
	sinkLoadRounds(t, p, trucks, 0, rounds, ts0)
}

// sinkLoadRounds posts rounds from to to-1 of sinkLoad's load.
func sinkLoadRounds(t *testing.T, p *proc, trucks, from, to int, ts0 int64) {
	t.Helper()
	for j := from; j < to; j++ {
		var b strings.Builder
		speed := 80
		if j%2 == 1 {
			speed = 10
		}
		for k := range trucks {
			fmt.Fprintf(&b, `{"id":"truck-%05d","lat":40.%04d,"lon":-74.%04d,"ts":%d,"speed":%d}`+"\n", k, k, j, ts0+int64(j), speed)
		}
		var res struct{ Accepted int }
		if err := json.Unmarshal(p.do("POST", "/v1/positions", b.String(), "Content-Type", "application/x-ndjson").want(t, 200), &res); err != nil {
			t.Fatal(err)
		}
		if res.Accepted != trucks {
			t.Fatalf("accepted %d of %d", res.Accepted, trucks)
		}
	}
}

type sinkView struct {
	Name    string
	Type    string
	URL     string
	Running bool
	Stats   struct {
		Delivered, Retried, Failed, Dropped, Shed int64
		Depth                                     int64   `json:"outbox_depth"`
		OldestAgeS                                float64 `json:"oldest_age_s"`
		Health                                    string
		LatencyP99Ms                              float64 `json:"latency_p99_ms"`
	}
	DeadLetters []json.RawMessage `json:"dead_letters"`
}

func getSink(t *testing.T, p *proc, name string) sinkView {
	t.Helper()
	var v sinkView
	if err := json.Unmarshal(p.do("GET", "/v1/sinks/"+name, "").want(t, 200), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func putRuleFast(t *testing.T, p *proc) {
	t.Helper()
	p.do("PUT", "/v1/rules/fast", `{"when": "speed > 50"}`).want(t, 200)
}

// TestSinkWebhookDownThenUp: a receiver that is down (500s) while events
// accumulate, then up: every event arrives, in order per truck, signed.
// Default flags.
func TestSinkWebhookDownThenUp(t *testing.T) {
	h := newHookReceiver(t, "s3cret")
	h.mode.Store(hook500)
	p := start(t)
	putRuleFast(t, p)
	p.do("PUT", "/v1/sinks/ops", fmt.Sprintf(`{"type":"webhook","url":%q,"secret":"s3cret","timeout":"2s"}`, h.srv.URL)).want(t, 201)
	p.do("PUT", "/v1/sinks/ops", `{"type":"webhook"}`).wantErr(t, 400, "url")
	sinkLoad(t, p, 200, 10, 1_764_000_000)
	waitUntil(t, 10*time.Second, "2000 pending", func() bool { return getSink(t, p, "ops").Stats.Depth == 2000 })
	if v := getSink(t, p, "ops"); v.Stats.Health != "failing" || v.Stats.Failed == 0 {
		t.Fatalf("a down receiver: %+v", v.Stats)
	}
	// Down a while: the backoff grows to its 30 s cap. The full
	// minute in the full pass (it adds ~57 s of wall time, asleep), 3 s
	// under -short; FLEETD_E2E_SINK_DOWN overrides both.
	down := 60 * time.Second
	if testing.Short() {
		down = 3 * time.Second
	}
	if d, err := time.ParseDuration(os.Getenv("FLEETD_E2E_SINK_DOWN")); err == nil {
		down = d
	}
	time.Sleep(down)
	h.mode.Store(hookOK)
	up := time.Now()
	waitUntil(t, 60*time.Second, "2000 delivered", func() bool { return checkSinkEvents(t, h.events()) == 2000 })
	t.Logf("down %s; every event delivered %s after the receiver came back", down, time.Since(up).Round(time.Millisecond))
	if h.badSig.Load() != 0 {
		t.Fatalf("%d bad signatures", h.badSig.Load())
	}
	waitUntil(t, 5*time.Second, "an empty outbox", func() bool { return getSink(t, p, "ops").Stats.Depth == 0 })
	// /v1/stats and /metrics count it.
	var st struct {
		Sinks map[string]struct {
			Delivered int64
		}
	}
	_ = json.Unmarshal(p.do("GET", "/v1/stats", "").want(t, 200), &st)
	if st.Sinks["ops"].Delivered < 2000 {
		t.Fatalf("/v1/stats sinks: %+v", st.Sinks)
	}
	m := p.do("GET", "/metrics", "")
	if !strings.Contains(string(m.body), `fleetd_sink_delivered_total{sink="ops",type="webhook"}`) {
		t.Fatal("no fleetd_sink_delivered_total on /metrics")
	}
	var list struct{ Sinks []sinkView }
	_ = json.Unmarshal(p.do("GET", "/v1/sinks", "").want(t, 200), &list)
	if len(list.Sinks) != 1 || list.Sinks[0].Name != "ops" || strings.Contains(string(p.do("GET", "/v1/sinks", "").body), "s3cret") {
		t.Fatalf("list %+v", list)
	}
	p.do("DELETE", "/v1/sinks/ops", "").want(t, 200)
	p.do("GET", "/v1/sinks/ops", "").wantErr(t, 404, "no sink")
}

// TestSinkKill9 kills fleetd with 10,000 events pending (the receiver
// slow, then down), restarts it on the same data directory, and checks
// that every event is delivered with one ID per transition.
func TestSinkKill9(t *testing.T) {
	h := newHookReceiver(t, "k")
	h.delay.Store(int64(2 * time.Millisecond))
	data := filepath.Join(t.TempDir(), "data")
	p := startData(t, data)
	putRuleFast(t, p)
	p.do("PUT", "/v1/sinks/ops", fmt.Sprintf(`{"type":"webhook","url":%q,"secret":"k"}`, h.srv.URL)).want(t, 201)
	sinkLoadRounds(t, p, 1000, 0, 9, 1_764_000_000)
	// Some delivered, most pending; then the receiver goes down too,
	// and the last round's 1,000 events are acknowledged and killed at
	// once: an acknowledged update's events are on disk when it is
	// answered (no grace for the outbox's writer).
	waitUntil(t, 10*time.Second, "deliveries under way", func() bool { return len(h.events()) > 100 })
	h.mode.Store(hook500)
	sinkLoadRounds(t, p, 1000, 9, 10, 1_764_000_000)
	before := len(h.events())
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()
	t.Logf("%d events delivered before kill -9", before)
	h.mode.Store(hookOK)
	h.delay.Store(0)
	p = startData(t, data)
	if v := getSink(t, p, "ops"); !v.Running || v.Type != "webhook" {
		t.Fatalf("sink after restart: %+v", v)
	}
	waitUntil(t, 90*time.Second, "10,000 distinct events", func() bool { return checkSinkEvents(t, h.events()) == 10000 })
	if h.badSig.Load() != 0 {
		t.Fatalf("%d bad signatures", h.badSig.Load())
	}
	if code := p.stop(sigterm); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestSinkReceiverFaults: 500s, a receiver that hangs, one that reads a
// byte a second: each attempt times out or fails, is retried, and once
// the receiver behaves everything arrives; an event older than max_age
// goes to the dead-letter list. Tuned flags (no history, short TTL off).
func TestSinkReceiverFaults(t *testing.T) {
	h := newHookReceiver(t, "x")
	p := start(t, "--history=false", "--ttl", "0")
	putRuleFast(t, p)
	p.do("PUT", "/v1/sinks/ops", fmt.Sprintf(`{"type":"webhook","url":%q,"secret":"x","timeout":"500ms"}`, h.srv.URL)).want(t, 201)
	for _, mode := range []int32{hook500, hookHang, hookTrickle} {
		h.mode.Store(mode)
		before := getSink(t, p, "ops").Stats.Failed
		sinkLoad(t, p, 20, 2, 1_764_000_000+int64(mode)*10)
		waitUntil(t, 10*time.Second, fmt.Sprintf("failures in mode %d", mode), func() bool { return getSink(t, p, "ops").Stats.Failed > before+1 })
		if v := getSink(t, p, "ops"); v.Stats.Depth == 0 {
			t.Fatalf("mode %d: nothing pending: %+v", mode, v.Stats)
		}
	}
	h.mode.Store(hookOK)
	waitUntil(t, 60*time.Second, "everything", func() bool { return checkSinkEvents(t, h.events()) == 3*40 })
	// max_age: a down receiver and a 1s max age drop events to the
	// dead-letter list.
	h.mode.Store(hook500)
	p.do("PUT", "/v1/sinks/ops", fmt.Sprintf(`{"type":"webhook","url":%q,"secret":"x","timeout":"500ms","max_age":"1s"}`, h.srv.URL)).want(t, 200)
	sinkLoad(t, p, 5, 2, 1_764_000_100)
	waitUntil(t, 15*time.Second, "10 dropped", func() bool { return getSink(t, p, "ops").Stats.Dropped == 10 })
	if v := getSink(t, p, "ops"); len(v.DeadLetters) != 10 || v.Stats.Depth != 0 {
		t.Fatalf("dead letters %d, depth %d", len(v.DeadLetters), v.Stats.Depth)
	}
}

// TestSinkNATS delivers to an embedded NATS server.
func TestSinkNATS(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	var evs []sinkEvent
	sub, err := nc.Subscribe("fleet.alerts", func(m *nats.Msg) {
		var e sinkEvent
		if json.Unmarshal(m.Data, &e) == nil && e.ID == m.Header.Get("Nats-Msg-Id") {
			mu.Lock()
			evs = append(evs, e)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = nc.Flush()
	p := start(t)
	putRuleFast(t, p)
	p.do("PUT", "/v1/sinks/bus", fmt.Sprintf(`{"type":"nats","url":%q,"subject":"fleet.alerts","filter":{"kinds":["alert.fired"]}}`, ns.ClientURL())).want(t, 201)
	sinkLoad(t, p, 100, 4, 1_764_000_000)
	// Only the fires (rounds 0 and 2) pass the filter.
	waitUntil(t, 20*time.Second, "200 fires on NATS", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return checkSinkEvents(t, evs) == 200
	})
	mu.Lock()
	defer mu.Unlock()
	for _, e := range evs {
		if e.Kind != "alert.fired" {
			t.Fatalf("filtered kind delivered: %+v", e)
		}
	}
}

// TestSinkMQTT delivers to Mosquitto (installed by mqtttest when
// missing), QoS 1.
func TestSinkMQTT(t *testing.T) {
	b := mqtttest.Start(t)
	var mu sync.Mutex
	var evs []sinkEvent
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("e2e-sink-sub").SetAutoReconnect(false))
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer c.Disconnect(100)
	tk := c.Subscribe("fleet/alerts", 1, func(_ paho.Client, m paho.Message) {
		var e sinkEvent
		if json.Unmarshal(m.Payload(), &e) == nil {
			mu.Lock()
			evs = append(evs, e)
			mu.Unlock()
		}
	})
	if !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe: %v", tk.Error())
	}
	p := start(t)
	putRuleFast(t, p)
	p.do("PUT", "/v1/sinks/broker", fmt.Sprintf(`{"type":"mqtt","url":%q,"topic":"fleet/alerts"}`, b.URL())).want(t, 201)
	sinkLoad(t, p, 100, 4, 1_764_000_000)
	waitUntil(t, 20*time.Second, "400 events over MQTT", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return checkSinkEvents(t, evs) == 400
	})
}

// TestSinkZoneKinds: a rule inside("yard") reaches the sink as
// zone.entered and zone.left (with the zone), a kinds filter of those
// two passes nothing else (the speeding rule's alerts). Default flags.
func TestSinkZoneKinds(t *testing.T) {
	h := newHookReceiver(t, "z")
	p := start(t)
	p.do("PUT", "/v1/zones/yard", `{"type":"Polygon","coordinates":[[[-74.01,40.70],[-73.99,40.70],[-73.99,40.72],[-74.01,40.72],[-74.01,40.70]]]}`).want(t, 200)
	p.do("PUT", "/v1/rules/in-yard", `{"when":"inside(\"yard\")"}`).want(t, 200)
	putRuleFast(t, p)
	p.do("PUT", "/v1/sinks/gate", fmt.Sprintf(`{"type":"webhook","url":%q,"secret":"z","filter":{"kinds":["zone.entered","zone.left"]}}`, h.srv.URL)).want(t, 201)
	for i, pos := range []string{`"lat":40.60,"lon":-74.00,"speed":80`, `"lat":40.71,"lon":-74.00,"speed":10`, `"lat":40.80,"lon":-74.00,"speed":90`} {
		body := fmt.Sprintf(`{"id":"t1","ts":%d,%s}`+"\n", 1_764_000_000+i, pos)
		p.do("POST", "/v1/positions", body, "Content-Type", "application/x-ndjson").want(t, 200)
	}
	waitUntil(t, 10*time.Second, "zone.entered and zone.left", func() bool { return len(h.events()) >= 2 })
	time.Sleep(200 * time.Millisecond) // nothing else may follow
	evs := h.events()
	if len(evs) != 2 || evs[0].Kind != "zone.entered" || evs[1].Kind != "zone.left" ||
		evs[0].Zone != "yard" || evs[1].Zone != "yard" || evs[0].Rule != "in-yard" || evs[0].TS != 1_764_000_001 || evs[1].TS != 1_764_000_002 {
		t.Fatalf("events %+v", evs)
	}
}

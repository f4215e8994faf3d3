package mqtt

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/mqtt/mqtttest"
	"github.com/fleetd/fleetd/internal/store"
)

func TestOwnTracks(t *testing.T) {
	for topic, want := range map[string]string{"owntracks/jane/phone": "jane:phone", "owntracks/a/b/c": "", "owntracks/a": "",
		"fleet/x": "", "owntracks//p": ""} {
		if id, ok := OwnTracksID(topic); id != want || ok != (want != "") {
			t.Errorf("OwnTracksID(%q) = %q, %v", topic, id, ok)
		}
	}
	u, err := DecodeOwnTracks("jane:phone", []byte(`{"_type":"location","tid":"jp","lat":40.7128,"lon":-74.006,"tst":1764000000,
		"vel":54,"cog":271,"alt":12,"acc":5,"batt":81,"conn":"m","t":"u"}`), 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := fleet.MakePosition(40.7128, -74.006, 1764000000, 54, 271); u.Position != want || string(u.ID) != "jane:phone" {
		t.Fatalf("%+v, want %+v", u, want)
	}
	var want fleet.Attrs
	want.Set(fleet.Altitude, 120)
	want.Set(fleet.Accuracy, 50)
	want.Set(fleet.BatteryLevel, 81)
	if u.Attrs != want {
		t.Fatalf("attributes %+v, want %+v", u.Attrs, want)
	}
	// acc and batt out of range (OwnTracks' -1 is unknown) are left out.
	if u, err := DecodeOwnTracks("x", []byte(`{"_type":"location","lat":1,"lon":2,"acc":-1,"batt":101}`), 9); err != nil || u.Attrs != (fleet.Attrs{}) {
		t.Fatalf("acc -1, batt 101: %+v %v", u.Attrs, err)
	}
	if u, err := DecodeOwnTracks("x", []byte(`{"_type":"location","lat":1,"lon":2,"vel":-1,"cog":-1}`), 99); err != nil || u.TS != 99 || u.Speed != 0 {
		t.Fatalf("defaults: %+v %v", u, err)
	}
	for _, tt := range []struct{ body, frag string }{
		{`{"_type":"transition","lat":1,"lon":2}`, "not an OwnTracks location"},
		{`{"_type":"location","lat":1}`, "without lat or lon"},
		{`{"_type":"location","lat":91,"lon":2}`, "lat 91 out of range"},
		{`{"_type":"location","lat":1,"lon":2,"tst":-5}`, "tst -5 out of range"},
		{`{"_type":"location","lat":1,"lon":2,"vel":2000}`, "vel 2000"},
		{`{"_type":"location","lat":1,"lon":2,"alt":1e9}`, "alt"},
		{`{"_type":"location",`, "invalid JSON"},
	} {
		if _, err := DecodeOwnTracks("x", []byte(tt.body), 1); err == nil || !strings.Contains(err.Error(), tt.frag) || !errors.Is(err, ErrPayload) {
			t.Errorf("%s: %v, want %q", tt.body, err, tt.frag)
		}
	}
}

func FuzzOwnTracks(f *testing.F) {
	f.Add([]byte(`{"_type":"location","lat":40.7128,"lon":-74.006,"tst":1764000000,"vel":54,"cog":271,"alt":12}`))
	f.Add([]byte(`{"_type":"location","lat":1,"lon":2,"acc":5,"batt":81}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := DecodeOwnTracks("x", b, 1764000000)
		if err != nil {
			if !errors.Is(err, ErrPayload) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if !u.Position.Valid() || u.TS == 0 || !u.Attrs.Valid() {
			t.Fatalf("invalid update %+v", u)
		}
	})
}

type fakeEngine struct {
	mu      sync.Mutex
	applied []fleet.Update
	calls   int
	gate    chan struct{}
}

func (e *fakeEngine) Apply(b []fleet.Update) (store.Result, error) {
	e.mu.Lock()
	e.calls++
	gate := e.gate
	e.mu.Unlock()
	if gate != nil {
		<-gate
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, u := range b {
		u.ID = append([]byte(nil), u.ID...)
		e.applied = append(e.applied, u)
	}
	return store.Result{Updated: len(b)}, nil
}

func (e *fakeEngine) ids() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := map[string]int{}
	for _, u := range e.applied {
		m[string(u.ID)]++
	}
	return m
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connect(t *testing.T, b *mqtttest.Broker, eng gateway.Engine, id string, topics ...string) *Client {
	t.Helper()
	com := gateway.NewCommitter(eng, 0, 0)
	c, err := Connect(Options{URL: b.URL(), Topics: topics, ClientID: id, Logger: slog.New(slog.DiscardHandler)}, com)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); com.Close() })
	waitFor(t, "subscription", func() bool { return c.Stats.Connections.Load() == 1 })
	time.Sleep(100 * time.Millisecond) // the SUBACK
	return c
}

// publisher publishes at QoS 1 and retries until the broker has it.
type publisher struct {
	t *testing.T
	c paho.Client
}

func newPublisher(t *testing.T, b *mqtttest.Broker, id string) *publisher {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(time.Second)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &publisher{t, c}
}

func (p *publisher) publish(topic, payload string) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tok := p.c.Publish(topic, 1, false, payload)
		if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("publish %s: %v", topic, tok.Error())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestClientAgainstMosquitto(t *testing.T) {
	b := mqtttest.Start(t)
	eng := &fakeEngine{}
	c := connect(t, b, eng, "fleetd-test-1", "owntracks/#", "fleet/+/positions")
	p := newPublisher(t, b, "pub-1")
	p.publish("owntracks/jane/phone", `{"_type":"location","lat":40.7,"lon":-74,"tst":1764000000,"vel":10}`)
	p.publish("owntracks/jane/phone", `{"_type":"transition","event":"enter"}`)
	p.publish("owntracks/bob/car", `{"_type":"location","lat":91,"lon":0}`)
	p.publish("fleet/depot-1/positions", `{"id":"truck-1","lat":1,"lon":2,"ts":1764000000}`+"\n"+`{"id":"truck-2","lat":3,"lon":4}`+"\n"+`{"id":"bad id","lat":3,"lon":4}`)
	waitFor(t, "3 points", func() bool { return len(eng.ids()) == 3 })
	ids := eng.ids()
	if ids["jane:phone"] != 1 || ids["truck-1"] != 1 || ids["truck-2"] != 1 {
		t.Fatalf("applied %v", ids)
	}
	waitFor(t, "4 acks", func() bool { return c.Stats.Acks.Load() == 4 })
	st := c.Stats.Snapshot()
	if st.Frames != 4 || st.Points != 3 || st.BadFrames != 1 || st.Rejected != 1 || st.Connections != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAckOnlyAfterDurable: a message whose points are not durable when
// the session ends is delivered again to the next session of the same
// client ID.
func TestAckOnlyAfterDurable(t *testing.T) {
	b := mqtttest.Start(t)
	stuck := &fakeEngine{gate: make(chan struct{})}
	c1 := connect(t, b, stuck, "fleetd-test-2", "owntracks/#")
	p := newPublisher(t, b, "pub-2")
	p.publish("owntracks/jane/phone", `{"_type":"location","lat":40.7,"lon":-74,"tst":1764000000}`)
	waitFor(t, "the stuck Apply", func() bool { stuck.mu.Lock(); defer stuck.mu.Unlock(); return stuck.calls == 1 })
	c1.c.Disconnect(0) // fleetd goes away before the points are durable
	eng := &fakeEngine{}
	connect(t, b, eng, "fleetd-test-2", "owntracks/#")
	waitFor(t, "the redelivery", func() bool { return eng.ids()["jane:phone"] == 1 })
	close(stuck.gate)
}

// TestBrokerRestart: messages published before, during and after a
// broker restart all arrive.
func TestBrokerRestart(t *testing.T) {
	b := mqtttest.Start(t)
	eng := &fakeEngine{}
	c := connect(t, b, eng, "fleetd-test-3", "fleet/#")
	p := newPublisher(t, b, "pub-3")
	const n = 300
	for i := range n {
		if i == n/2 {
			b.Restart()
		}
		p.publish("fleet/x", fmt.Sprintf(`{"id":"t-%d","lat":1,"lon":2,"ts":%d}`, i, 1764000000+i))
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(eng.ids()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := len(eng.ids()); got != n {
		t.Fatalf("%d of %d trucks arrived; stats %+v\nbroker:\n%s", got, n, c.Stats.Snapshot(), b.Logs())
	}
	if c.Stats.ConnectionsTotal.Load() < 2 {
		t.Fatalf("connections %d: the restart was not seen", c.Stats.ConnectionsTotal.Load())
	}
}

func TestParseURL(t *testing.T) {
	for s, want := range map[string]string{"tcp://b:1883": "tcp://b:1883", "mqtt://u:p@b:1883": "tcp://u:p@b:1883", "wss://b/mqtt": "wss://b/mqtt"} {
		if u, err := ParseURL(s); err != nil || u.String() != want {
			t.Errorf("ParseURL(%q) = %v, %v", s, u, err)
		}
	}
	for _, s := range []string{"ftp://b", "b:1883", "", "tcp://"} {
		if _, err := ParseURL(s); err == nil || !strings.HasPrefix(err.Error(), "mqtt: ") {
			t.Errorf("ParseURL(%q): %v", s, err)
		}
	}
}

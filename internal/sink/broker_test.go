package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetd/fleetd/internal/mqtt/mqtttest"
	"github.com/fleetd/fleetd/internal/vfs"
)

// startNATS runs an embedded NATS server with JetStream on a free
// loopback port.
func startNATS(t testing.TB) *natsserver.Server {
	t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// collected gathers events by id, checking per-truck order of first
// arrivals.
type collected struct {
	mu   sync.Mutex
	evs  []Event
	ids  map[string]bool
	hdrs int
}

func (c *collected) add(t testing.TB, b []byte, hdrID string) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Errorf("bad event %q: %v", b, err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[string]bool{}
	}
	if hdrID == e.ID {
		c.hdrs++
	}
	c.evs = append(c.evs, e)
	c.ids[e.ID] = true
}

func (c *collected) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

func TestNATSCore(t *testing.T) {
	srv := startNATS(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var got collected
	sub, err := nc.Subscribe("fleet.alerts", func(m *nats.Msg) { got.add(t, m.Data, m.Header.Get("Nats-Msg-Id")) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	d, err := New(Options{FS: vfs.NewMem(), Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Put("n", Config{Type: TypeNATS, URL: srv.ClientURL(), Subject: "fleet.alerts"}); err != nil {
		t.Fatal(err)
	}
	fire(d, 2000, 13, 1)
	waitFor(t, 10*time.Second, "2000 events on NATS", func() bool { return got.n() == 2000 })
	got.mu.Lock()
	checkOrder(t, got.evs)
	if got.hdrs < 2000 {
		t.Fatalf("%d events carried their id in Nats-Msg-Id", got.hdrs)
	}
	got.mu.Unlock()
}

func TestNATSJetStreamAndServerDown(t *testing.T) {
	srv := startNATS(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ALERTS", Subjects: []string{"alerts.>"}, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{FS: vfs.NewMem(), Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Put("js", Config{Type: TypeNATS, URL: srv.ClientURL(), Subject: "alerts.fleet", Timeout: Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	fire(d, 1000, 5, 1)
	waitFor(t, 10*time.Second, "1000 delivered", func() bool { return d.Stats()["js"].Delivered >= 1000 })
	info, _ := st.Info(ctx)
	if info.State.Msgs != 1000 {
		t.Fatalf("stream holds %d messages, want 1000 (Nats-Msg-Id dedups redeliveries)", info.State.Msgs)
	}
	// Read back in stream order: per-truck order holds.
	cons, _ := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	var got collected
	for got.n() < 1000 {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got.add(t, m.Data(), m.Headers().Get("Nats-Msg-Id"))
	}
	checkOrder(t, got.evs)
}

func TestMQTT(t *testing.T) {
	b := mqtttest.Start(t)
	var got collected
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID("test-sub").SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer c.Disconnect(100)
	if tk := c.Subscribe("fleet/alerts", 1, func(_ paho.Client, m paho.Message) { got.add(t, m.Payload(), "") }); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe: %v", tk.Error())
	}
	d, err := New(Options{FS: vfs.NewMem(), Dir: "sinks", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Put("m", Config{Type: TypeMQTT, URL: b.URL(), Topic: "fleet/alerts", Timeout: Duration(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	fire(d, 500, 9, 1)
	waitFor(t, 15*time.Second, "500 events over MQTT", func() bool { return got.n() == 500 })
	// Broker down: events wait; back up: they arrive.
	b.Stop()
	fire(d, 50, 9, 1000)
	waitFor(t, 10*time.Second, "failures", func() bool { return d.Stats()["m"].Failed > 0 })
	b.Restart()
	// The subscriber had a clean session and no auto-reconnect; make a
	// new one.
	c.Disconnect(0)
	var after collected
	c2 := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID(fmt.Sprintf("test-sub-%d", time.Now().UnixNano())).SetAutoReconnect(false))
	waitFor(t, 10*time.Second, "resubscribed", func() bool {
		tk := c2.Connect()
		return tk.WaitTimeout(time.Second) && tk.Error() == nil
	})
	defer c2.Disconnect(100)
	c2.Subscribe("fleet/alerts", 1, func(_ paho.Client, m paho.Message) { after.add(t, m.Payload(), "") }).Wait()
	waitFor(t, 30*time.Second, "the 50 after the broker's restart", func() bool {
		return d.Stats()["m"].Delivered >= 550 && d.Stats()["m"].Depth == 0
	})
	got.mu.Lock()
	checkOrder(t, got.evs)
	got.mu.Unlock()
}

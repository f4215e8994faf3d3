package tracker

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/mqtt"
	"github.com/fleetd/fleetd/internal/mqtt/mqtttest"
	"github.com/fleetd/fleetd/internal/osmand"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/teltonika"
)

type fakeEngine struct {
	mu    sync.Mutex
	ids   map[string]int
	attrs uint32 // the union of the updates' attribute masks
}

func (e *fakeEngine) Apply(b []fleet.Update) (store.Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, u := range b {
		if !u.Position.Valid() {
			return store.Result{Invalid: 1}, nil
		}
		e.ids[string(u.ID)]++
		e.attrs |= u.Attrs.Mask
	}
	return store.Result{Updated: len(b)}, nil
}

func (e *fakeEngine) trucks() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.ids)
}

// TestRun: each protocol's trackers reach a gateway and are acknowledged;
// every truck reports at the requested pace.
func TestRun(t *testing.T) {
	discard := slog.New(slog.DiscardHandler)
	for _, proto := range []string{Teltonika, OsmAnd, MQTT} {
		t.Run(proto, func(t *testing.T) {
			eng := &fakeEngine{ids: map[string]int{}}
			com := gateway.NewCommitter(eng, 0, 0)
			defer com.Close()
			var target, prefix string
			switch proto {
			case Teltonika:
				s, err := teltonika.Listen(teltonika.Options{Addr: "127.0.0.1:0", Logger: discard}, com)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				target, prefix = s.Addr().String(), "35"
			case OsmAnd:
				s, err := osmand.Listen(osmand.Options{Addr: "127.0.0.1:0", Logger: discard}, com)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				target, prefix = "http://"+s.Addr().String(), "truck-"
			case MQTT:
				b := mqtttest.Start(t)
				c, err := mqtt.Connect(mqtt.Options{URL: b.URL(), Topics: []string{DefaultTopic}, ClientID: "tracker-test", Logger: discard}, com)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				for c.Stats.Connections.Load() != 1 {
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(200 * time.Millisecond)
				target, prefix = b.URL(), "truck-"
			}
			const trucks = 40
			sum, err := Run(context.Background(), Config{Protocol: proto, Target: target, Trucks: trucks, Rate: 200,
				Duration: 1500 * time.Millisecond, Workers: 8, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Errors != 0 || sum.Acked < 200 || sum.Acked > 400 || sum.P99Ms <= 0 {
				t.Fatalf("summary %+v", sum)
			}
			deadline := time.Now().Add(5 * time.Second)
			for eng.trucks() < trucks && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if eng.trucks() != trucks {
				t.Fatalf("%d trucks reported, want %d", eng.trucks(), trucks)
			}
			for id := range eng.ids {
				if !strings.HasPrefix(id, prefix) {
					t.Fatalf("truck ID %q", id)
				}
			}
			var want fleet.Attrs // the attributes each protocol's trackers send
			switch proto {
			case Teltonika:
				for _, a := range []fleet.Attr{fleet.Altitude, fleet.Satellites, fleet.Ignition, fleet.Motion, fleet.ExtVoltage} {
					want.Set(a, 0)
				}
			case OsmAnd:
				want.Set(fleet.Accuracy, 0)
				want.Set(fleet.BatteryLevel, 0)
			case MQTT:
				want.Set(fleet.Ignition, 0)
			}
			eng.mu.Lock()
			got := eng.attrs
			eng.mu.Unlock()
			if got != want.Mask {
				t.Fatalf("attribute mask %b, want %b", got, want.Mask)
			}
		})
	}
	if _, err := Run(context.Background(), Config{Protocol: "smoke-signals", Trucks: 1, Rate: 1}); err == nil {
		t.Fatal("unknown protocol accepted")
	}
}

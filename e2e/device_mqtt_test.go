package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetd/fleetd/internal/mqtt/mqtttest"
)

// mqttPublish publishes at QoS 1 from its own persistent session and
// retries each message until the broker acknowledges it.
func mqttPublisher(t *testing.T, b *mqtttest.Broker, id string) func(topic, payload string) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(time.Second)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return func(topic, payload string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			tok := c.Publish(topic, 1, false, payload)
			if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("publishing to %s: %v", topic, tok.Error())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// waitTruck waits until a truck has ts at least ts.
func waitTruck(t *testing.T, p *proc, id string, ts int64) truckJSON {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		tr, code := getTruck(t, p, id)
		if code == 200 && tr.TS >= ts {
			return tr
		}
		if time.Now().After(deadline) {
			t.Fatalf("truck %s: %d %+v, want ts %d\n%s", id, code, tr, ts, p.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMQTTThroughMosquitto: fleetd (default flags otherwise) subscribed
// to a real Mosquitto takes OwnTracks and NDJSON messages; a broker
// restart and a kill -9 of fleetd mid-stream lose nothing the broker
// accepted: every truck ends at its last published position.
func TestMQTTThroughMosquitto(t *testing.T) {
	b := mqtttest.Start(t)
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--mqtt", b.URL(), "--mqtt-topic", "owntracks/#", "--mqtt-topic", "fleet/#", "--mqtt-client-id", "fleetd-e2e"}
	p := startData(t, data, args...)
	p.waitLog("mqtt subscribed")
	publish := mqttPublisher(t, b, "e2e-publisher")
	now := time.Now().Unix()

	publish("owntracks/jane/phone", fmt.Sprintf(`{"_type":"location","lat":40.7128,"lon":-74.006,"tst":%d,"vel":36,"cog":90,"alt":10}`, now-100))
	publish("fleet/depot/positions", fmt.Sprintf(`{"id":"truck-1","lat":1.5,"lon":2.5,"ts":%d}`+"\n"+`{"id":"truck-2","lat":3,"lon":4,"ts":%d}`, now-100, now-99))
	if tr := waitTruck(t, p, "jane:phone", now-100); tr.Lat != 40.7128 || tr.Speed != 36 || tr.Heading != 90 || tr.Alt == nil || *tr.Alt != 10 {
		t.Fatalf("jane:phone %+v", tr)
	}
	waitTruck(t, p, "truck-2", now-99)

	// A stream of 40 trucks × 10 points, with a broker restart and then a
	// kill -9 of fleetd in the middle.
	const trucks, points = 40, 10
	for i := range points {
		switch i {
		case 3:
			b.Restart()
		case 6:
			if err := p.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			p.wait()
		case 8:
			p = startData(t, data, args...)
		}
		for k := range trucks {
			publish(fmt.Sprintf("fleet/truck-%03d", k), fmt.Sprintf(`{"id":"s-%03d","lat":%d,"lon":%d,"ts":%d}`, k, i, k, now-50+int64(i)))
		}
	}
	for k := range trucks {
		if tr := waitTruck(t, p, fmt.Sprintf("s-%03d", k), now-50+points-1); tr.Lat != points-1 || tr.Lon != float64(k) {
			t.Fatalf("s-%03d: %+v", k, tr)
		}
	}
	st := gatewayStats(t, p, "mqtt")
	if st["connections"] != 1 || st["acks"] < 1 {
		t.Fatalf("mqtt stats %v", st)
	}
}

package mqtt

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/mqtt/mqtttest"
)

// BenchmarkThroughMosquitto: points/s from a QoS 1 publisher through a
// real Mosquitto into fleetd's client and an in-memory engine, as NDJSON
// messages of 100 lines. b.N is messages.
func BenchmarkThroughMosquitto(b *testing.B) {
	br := mqtttest.Start(b)
	eng, err := engine.Open(engine.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	com := gateway.NewCommitter(eng, 0, 0)
	defer com.Close()
	c, err := Connect(Options{URL: br.URL(), Topics: []string{"bench/#"}, ClientID: "fleetd-bench", Logger: slog.New(slog.DiscardHandler)}, com)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for c.Stats.Connections.Load() != 1 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(br.URL()).SetClientID("bench-pub").SetMaxResumePubInFlight(1000))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer pub.Disconnect(100)
	const lines = 100
	ts := time.Now().Unix() - 3600
	msgs := make([]string, 64)
	for m := range msgs {
		var sb strings.Builder
		for l := range lines {
			fmt.Fprintf(&sb, `{"id":"t-%d-%d","lat":40.%d,"lon":-74.%d,"ts":%d}`+"\n", m, l, l, m, ts)
		}
		msgs[m] = sb.String()
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	toks := make([]paho.Token, 0, 256)
	for i := range b.N {
		toks = append(toks, pub.Publish("bench/x", 1, false, msgs[i%len(msgs)]))
		if len(toks) == cap(toks) {
			for _, t := range toks {
				t.Wait()
			}
			toks = toks[:0]
		}
	}
	for _, t := range toks {
		t.Wait()
	}
	for c.Stats.Acks.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.ReportMetric(float64(b.N*lines)/el.Seconds(), "points/s")
	b.ReportMetric(float64(b.N)/el.Seconds(), "messages/s")
}

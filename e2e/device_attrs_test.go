package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/mqtt/mqtttest"
	"github.com/fleetd/fleetd/internal/teltonika"
)

// checkAttrs checks that GET /v1/trucks/{id} answers exactly want (the
// attributes in fleet's table order) and that the truck's history point
// at ts carries the same fields.
func checkAttrs(t *testing.T, p *proc, id string, ts int64, want string) {
	t.Helper()
	if got := string(p.do("GET", "/v1/trucks/"+id, "").want(t, 200)); got != want {
		t.Errorf("%s:\n got %s\nwant %s", id, got, want)
	}
	checkHistoryPoint(t, p, id, ts, want)
}

// checkHistoryPoint checks that the truck's one history point at ts has
// the fields of want (a GET /v1/trucks/{id} answer) but the id.
func checkHistoryPoint(t *testing.T, p *proc, id string, ts int64, want string) {
	t.Helper()
	var point map[string]any
	if err := json.Unmarshal([]byte(want), &point); err != nil {
		t.Fatal(err)
	}
	delete(point, "id")
	var hist struct {
		Points []map[string]any `json:"points"`
	}
	body := p.do("GET", fmt.Sprintf("/v1/trucks/%s/history?from=%d&to=%d", id, ts, ts), "").want(t, 200)
	if err := json.Unmarshal(body, &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist.Points) != 1 || fmt.Sprint(hist.Points[0]) != fmt.Sprint(point) {
		t.Errorf("%s history at %d:\n got %s\nwant one point %v", id, ts, body, point)
	}
}

// TestDeviceAttributes: the attributes a Teltonika tracker (IO elements,
// satellites) and an OsmAnd phone (accuracy, hdop, batt, ignition) send
// are stored: GET /v1/trucks/{id} and the history return them, also after
// a kill -9 (from the log). Default flags otherwise (fsync always,
// history on), and tuned ones.
func TestDeviceAttributes(t *testing.T) {
	for _, tt := range []struct {
		name  string
		flags []string
	}{
		{"defaults", nil},
		{"tuned", []string{"--fsync", "never", "--osmand-speed", "kmh", "--teltonika-idle-timeout", "1m"}},
	} {
		t.Run(tt.name, func(t *testing.T) { testDeviceAttributes(t, tt.flags) })
	}
}

func testDeviceAttributes(t *testing.T, flags []string) {
	data := filepath.Join(t.TempDir(), "data")
	args := append([]string{"--teltonika", "127.0.0.1:0", "--osmand", "127.0.0.1:0"}, flags...)
	p := startData(t, data, args...)
	now := time.Now().Unix()

	d := dialTeltonika(t, gatewayAddr(t, p, "teltonika"), "356307042441099")
	rec := tkRecord(40.7128, -74.006, now-30, 88, 90, 12)
	rec.Satellites = 11
	rec.IO = teltonika.IO{Mask: teltonika.HasIgnition | teltonika.HasMovement | teltonika.HasOdometer | teltonika.HasExtVoltage |
		teltonika.HasBatteryVoltage | teltonika.HasBatteryLevel | teltonika.HasHDOP,
		Ignition: true, Movement: false, Odometer: 123456789, ExtVoltage: 24150, BatteryVoltage: 4012, BatteryLevel: 97, HDOP: 9}
	bare := tkRecord(40.8, -74.1, now-20, 10, 0, -3) // no IO elements: the newest position clears them
	bare.IO, bare.Satellites = teltonika.IO{}, 4
	for _, codec := range []byte{teltonika.Codec8, teltonika.Codec8Extended, teltonika.Codec16} {
		d.send(codec, []teltonika.Record{rec})
	}
	tkWant := fmt.Sprintf(`{"id":"356307042441099","lat":40.7128,"lon":-74.006,"ts":%d,"speed":88,"heading":90,`+
		`"alt":12,"ignition":1,"motion":0,"odometer":123456789,"ext_voltage":24.15,"battery_voltage":4.012,"battery_level":97,"hdop":0.9,"satellites":11}`, now-30)
	checkAttrs(t, p, "356307042441099", now-30, tkWant)

	osm := "http://" + gatewayAddr(t, p, "osmand")
	res, err := http.Get(fmt.Sprintf("%s/?id=phone-7&lat=51.5&lon=-0.12&timestamp=%d&speed=0&altitude=35.5&accuracy=4.2&hdop=1.3&batt=64&ignition=false&motion=true", osm, now-40))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("osmand: %d %s", res.StatusCode, b)
	}
	osmWant := fmt.Sprintf(`{"id":"phone-7","lat":51.5,"lon":-0.12,"ts":%d,"speed":0,"heading":0,`+
		`"alt":35.5,"ignition":0,"motion":1,"battery_level":64,"accuracy":4.2,"hdop":1.3}`, now-40)
	checkAttrs(t, p, "phone-7", now-40, osmWant)

	p.cmd.Process.Kill() // recovery replays the log
	p.wait()
	p = startData(t, data, args...)
	checkAttrs(t, p, "356307042441099", now-30, tkWant)
	checkAttrs(t, p, "phone-7", now-40, osmWant)

	d = dialTeltonika(t, gatewayAddr(t, p, "teltonika"), "356307042441099")
	d.send(teltonika.Codec8, []teltonika.Record{bare})
	checkAttrs(t, p, "356307042441099", now-20, fmt.Sprintf(`{"id":"356307042441099","lat":40.8,"lon":-74.1,"ts":%d,"speed":10,"heading":0,"alt":-3,"satellites":4}`, now-20))
	checkHistoryPoint(t, p, "356307042441099", now-30, tkWant) // the older point keeps its own
	if code := p.stop(sigterm); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestMQTTAttributes: OwnTracks' acc and batt, through a real Mosquitto,
// are stored as accuracy and battery_level; fleetd's NDJSON over MQTT
// carries any attribute by its name.
func TestMQTTAttributes(t *testing.T) {
	b := mqtttest.Start(t)
	p := start(t, "--mqtt", b.URL(), "--mqtt-topic", "owntracks/#", "--mqtt-topic", "fleet/#", "--mqtt-client-id", "fleetd-attrs")
	p.waitLog("mqtt subscribed")
	publish := mqttPublisher(t, b, "e2e-attrs-publisher")
	now := time.Now().Unix()
	publish("owntracks/ann/phone", fmt.Sprintf(`{"_type":"location","lat":48.85,"lon":2.35,"tst":%d,"vel":18,"cog":180,"alt":40,"acc":12,"batt":55,"conn":"w"}`, now-50))
	publish("fleet/yard", fmt.Sprintf(`{"id":"van-3","lat":1,"lon":2,"ts":%d,"ignition":1,"odometer":5000,"ext_voltage":12.6,"satellites":8}`, now-60))
	waitTruck(t, p, "ann:phone", now-50)
	waitTruck(t, p, "van-3", now-60)
	checkAttrs(t, p, "ann:phone", now-50, fmt.Sprintf(`{"id":"ann:phone","lat":48.85,"lon":2.35,"ts":%d,"speed":18,"heading":180,"alt":40,"battery_level":55,"accuracy":12}`, now-50))
	checkAttrs(t, p, "van-3", now-60, fmt.Sprintf(`{"id":"van-3","lat":1,"lon":2,"ts":%d,"speed":0,"heading":0,"ignition":1,"odometer":5000,"ext_voltage":12.6,"satellites":8}`, now-60))
}

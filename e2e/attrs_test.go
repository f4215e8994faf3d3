package e2e

import (
	"path/filepath"
	"testing"
)

// TestAltitudeEndToEnd: an optional attribute a device sent (altitude) is
// decoded, made durable, recovered both from the log (kill -9) and from a
// snapshot (clean restart), and returned by GET /v1/trucks/{id}; a truck
// that never sent one has none, and a newer position without it clears it.
func TestAltitudeEndToEnd(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := startData(t, data)
	body := `{"id":"hill","lat":46.5,"lon":7.9,"ts":1764000000,"alt":3454.2}
{"id":"flat","lat":52.5,"lon":13.4,"ts":1764000000}
{"id":"was-high","lat":45.8,"lon":6.8,"ts":1764000000,"alt":4808}
{"id":"was-high","lat":45.9,"lon":6.9,"ts":1764000060}
`
	var a postAnswer
	decode(t, p.do("POST", "/v1/positions", body, "Content-Type", "application/x-ndjson").want(t, 200), &a)
	if a.Accepted != 4 || len(a.Unknown) != 0 {
		t.Fatalf("answer %+v", a)
	}
	want := map[string]string{
		"hill":     `{"id":"hill","lat":46.5,"lon":7.9,"ts":1764000000,"speed":0,"heading":0,"alt":3454.2}`,
		"flat":     `{"id":"flat","lat":52.5,"lon":13.4,"ts":1764000000,"speed":0,"heading":0}`,
		"was-high": `{"id":"was-high","lat":45.9,"lon":6.9,"ts":1764000060,"speed":0,"heading":0}`,
	}
	check := func(when string) {
		t.Helper()
		for id, w := range want {
			if got := string(p.do("GET", "/v1/trucks/"+id, "").want(t, 200)); got != w {
				t.Errorf("%s: %s\n got %s\nwant %s", when, id, got, w)
			}
		}
	}
	check("as posted")
	p.cmd.Process.Kill() // no snapshot: recovery replays the log
	p.wait()
	p = startData(t, data)
	check("after kill -9")
	if code := p.stop(sigterm); code != 0 { // a final snapshot
		t.Fatalf("exit %d", code)
	}
	p = startData(t, data)
	check("after a clean restart (snapshot)")
}

package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type postAnswer struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	Stale    int `json:"stale"`
	Errors   []struct {
		Line  int    `json:"line"`
		Error string `json:"error"`
	} `json:"errors"`
	Unknown []string `json:"unknown_fields"`
}

// TestContract walks the v1 contract over real HTTP with a bearer token.
func TestContract(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("  e2e-token\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "--token-file", tokenFile, "--shards", "4")

	// Public routes need no token.
	if got := string(p.do("GET", "/healthz", "", "Authorization", "").want(t, 200)); got != `{"status":"ok"}` {
		t.Fatal(got)
	}
	if r := p.do("GET", "/metrics", "", "Authorization", ""); r.code != 200 || !strings.Contains(string(r.body), "fleetd_trucks 0") {
		t.Fatalf("/metrics: %d", r.code)
	}
	// Everything else does.
	for _, auth := range []string{"", "Bearer wrong", "Bearer e2e-token2", "e2e-token"} {
		r := p.do("POST", "/v1/positions", `{"id":"a","lat":1,"lon":1}`, "Authorization", auth)
		r.wantErr(t, 401, "bearer token")
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
		}
		p.do("GET", "/v1/stats", "", "Authorization", auth).wantErr(t, 401, "bearer token")
	}
	p.token = "e2e-token"

	body := strings.Join([]string{
		`{"id": "truck-0000042", "lat": 40.7128, "lon": -74.006, "ts": 1764000000, "speed": 52.5, "heading": 90}`,
		`{"id":"truck-0000043","lat":40.7130,"lon":-74.0062,"ts":"2025-11-24T16:00:01Z","driver":"ann"}`,
		`{"id":"bad","lat":91,"lon":0}`,
		`{"id":"nan","lat":NaN,"lon":0}`,
		`{"id":"huge","lat":1e99999,"lon":0}`,
		`{"id":"deep","lat":1,"lon":1,"x":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`,
		"{\"id\":\"utf\xff\",\"lat\":1,\"lon\":1}",
		"\x00\xfe garbage",
		``,
		`{"id":"truck-0000044","lat":-33.8688,"lon":151.2093}`,
		`{"id":"trunc","lat":1,"lo`,
	}, "\n")
	var a postAnswer
	decode(t, p.do("POST", "/v1/positions", body, "Content-Type", "application/x-ndjson").want(t, 200), &a)
	if a.Accepted != 3 || a.Rejected != 7 || len(a.Errors) != 7 || len(a.Unknown) == 0 || a.Unknown[0] != "driver" {
		t.Fatalf("%+v", a)
	}
	for i, line := range []int{3, 4, 5, 6, 7, 8, 11} {
		if a.Errors[i].Line != line {
			t.Fatalf("error %d on line %d, want %d: %+v", i, a.Errors[i].Line, line, a.Errors)
		}
	}
	if a.Errors[0].Error != "lat 91 out of range [-90, 90]" {
		t.Fatalf("%q", a.Errors[0].Error)
	}
	// No Content-Type is what a stranger's web page can send: 415. A JSON
	// array with application/json.
	p.do("POST", "/v1/positions", `{"id":"truck-0000045","lat":1,"lon":2,"ts":1764000000}`).wantErr(t, 415, "needs a Content-Type")
	decode(t, p.do("POST", "/v1/positions", `{"id":"truck-0000045","lat":1,"lon":2,"ts":1764000000}`, "Content-Type", "application/x-ndjson").want(t, 200), &a)
	if a.Accepted != 1 {
		t.Fatalf("%+v", a)
	}
	decode(t, p.do("POST", "/v1/positions", `[{"id":"truck-0000046","lat":1,"lon":2.5,"ts":1764000000},{"id":"x"}]`, "Content-Type", "application/json").want(t, 200), &a)
	if a.Accepted != 1 || a.Rejected != 1 || a.Errors[0].Line != 2 {
		t.Fatalf("%+v", a)
	}
	p.do("POST", "/v1/positions", `x`, "Content-Type", "text/csv").wantErr(t, 415, "not supported")

	// Reads.
	got := string(p.do("GET", "/v1/trucks/truck-0000042", "").want(t, 200))
	if want := `{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}`; got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	p.do("GET", "/v1/trucks/nobody", "").wantErr(t, 404, `truck "nobody" not found`)
	p.do("GET", "/v1/trucks/no%20body", "").wantErr(t, 400, "invalid truck id")

	var near struct {
		Results []struct {
			ID      string  `json:"id"`
			Lat     float64 `json:"lat"`
			Lon     float64 `json:"lon"`
			DistM   float64 `json:"distance_m"`
			TS      int64   `json:"ts"`
			Speed   float64 `json:"speed"`
			Heading int     `json:"heading"`
		} `json:"results"`
	}
	decode(t, p.do("GET", "/v1/nearby?lat=40.7128&lon=-74.006&k=2", "").want(t, 200), &near)
	if len(near.Results) != 2 || near.Results[0].ID != "truck-0000042" || near.Results[0].DistM != 0 ||
		near.Results[1].ID != "truck-0000043" || !(near.Results[1].DistM > 20 && near.Results[1].DistM < 30) {
		t.Fatalf("%+v", near)
	}
	decode(t, p.do("GET", "/v1/nearby?lat=0&lon=0&k=10000", "").want(t, 200), &near)
	if len(near.Results) != 5 {
		t.Fatalf("k=10000 over 5 trucks: %d", len(near.Results))
	}
	p.do("GET", "/v1/nearby?lat=NaN&lon=0", "").wantErr(t, 400, "not a finite number")
	p.do("GET", "/v1/nearby?lat=0", "").wantErr(t, 400, `missing query parameter "lon"`)
	p.do("GET", "/v1/nearby?lat=0&lon=0&k=10001", "").wantErr(t, 400, "k 10001 out of range")

	var within struct {
		Results []map[string]any `json:"results"`
		Count   int              `json:"count"`
	}
	decode(t, p.do("GET", "/v1/within?bbox=-75,40,-74,41", "").want(t, 200), &within)
	if within.Count != 2 || len(within.Results) != 2 {
		t.Fatalf("%+v", within)
	}
	decode(t, p.do("GET", "/v1/within?bbox=150,-34,-170,-33", "").want(t, 200), &within) // across the antimeridian
	if within.Count != 1 || within.Results[0]["id"] != "truck-0000044" {
		t.Fatalf("%+v", within)
	}
	decode(t, p.do("GET", "/v1/within?lat=40.7128&lon=-74.006&radius_m=100", "").want(t, 200), &within)
	if within.Count != 2 || within.Results[0]["distance_m"] == nil {
		t.Fatalf("%+v", within)
	}
	r := p.do("GET", "/v1/within?bbox=-180,-90,180,90", "", "Accept", "application/x-ndjson")
	if r.code != 200 || r.header.Get("Content-Type") != "application/x-ndjson" || strings.Count(string(r.body), "\n") != 5 {
		t.Fatalf("ndjson: %d %q %q", r.code, r.header.Get("Content-Type"), r.body)
	}
	p.do("GET", "/v1/within?bbox=1,2,3", "").wantErr(t, 400, "four numbers")

	var stats map[string]any
	decode(t, p.do("GET", "/v1/stats", "").want(t, 200), &stats)
	for _, k := range []string{"trucks", "updates_total", "updates_per_sec", "memory", "heap_objects", "gc_pause_p99_ms", "goroutines", "rss_bytes"} {
		if _, ok := stats[k]; !ok {
			t.Fatalf("stats lacks %q: %v", k, stats)
		}
	}
	if stats["trucks"] != 5.0 || stats["memory"].(map[string]any)["bytes_per_truck"] == nil {
		t.Fatalf("%v", stats)
	}

	// Delete, routing errors, pprof.
	if r := p.do("DELETE", "/v1/trucks/truck-0000046", ""); r.code != 204 || len(r.body) != 0 {
		t.Fatalf("delete: %d %q", r.code, r.body)
	}
	p.do("DELETE", "/v1/trucks/truck-0000046", "").wantErr(t, 404, "not found")
	p.do("GET", "/v2/nothing", "").wantErr(t, 404, "no route")
	r = p.do("PUT", "/v1/positions", "")
	r.wantErr(t, 405, "not allowed")
	if r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	if r := p.do("GET", "/debug/pprof/", ""); r.code != 200 {
		t.Fatalf("pprof: %d", r.code)
	}
	if r := p.do("GET", "/metrics", ""); !strings.Contains(string(r.body), "fleetd_trucks 4\n") ||
		!strings.Contains(string(r.body), `fleetd_http_requests_total{code="401",route="positions"}`) {
		t.Fatalf("metrics:\n%s", r.body)
	}

	if code := p.stop(sigterm); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.logText())
	}
}

func TestMaxBody(t *testing.T) {
	p := start(t, "--max-body", "1KiB")
	line := `{"id":"truck-0000001","lat":1,"lon":1}` + "\n"
	p.do("POST", "/v1/positions", strings.Repeat(line, 60), "Content-Type", "application/x-ndjson").wantErr(t, 413, "1 KiB limit")
	var a postAnswer
	decode(t, p.do("POST", "/v1/positions", strings.Repeat(line, 20), "Content-Type", "application/x-ndjson").want(t, 200), &a)
	if a.Accepted != 20 {
		t.Fatalf("%+v", a)
	}
	if got := string(p.do("GET", "/v1/stats", "").want(t, 200)); !strings.HasPrefix(got, `{"trucks":1,`) {
		t.Fatalf("after a 413: %s", got)
	}
}

// TestShutdownDrains: SIGTERM while a request is half sent; the request
// completes, new connections are refused, the process exits 0.
func TestShutdownDrains(t *testing.T) {
	p := start(t)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"id":"slow-1","lat":1,"lon":1}` + "\n" + `{"id":"slow-2","lat":2,"lon":2}` + "\n"
	fmt.Fprintf(conn, "POST /v1/positions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:20])
	time.Sleep(200 * time.Millisecond) // the server is now reading the body

	if err := p.cmd.Process.Signal(sigterm); err != nil {
		t.Fatal(err)
	}
	p.waitLog("shutting down")
	time.Sleep(100 * time.Millisecond)
	select {
	case <-p.exited:
		t.Fatalf("exited with a request in flight\n%s", p.logText())
	default:
	}
	if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		c.Close()
		t.Fatal("a new connection was accepted after SIGTERM")
	}
	if _, err := io.WriteString(conn, body[20:]); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(string(b), `{"accepted":2,"rejected":0`) {
		t.Fatalf("in-flight request: %d %s", res.StatusCode, b)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.logText())
	}
	for _, want := range []string{"shutdown: http server drained", "shutdown: engine closed"} {
		if !strings.Contains(p.logText(), want) {
			t.Fatalf("log lacks %q:\n%s", want, p.logText())
		}
	}
}

// TestDemo: --demo N fills the fleet through the server's own listener;
// a bare --demo followed by another flag means 10,000 trucks.
func TestDemo(t *testing.T) {
	p := start(t, "--demo", "1500", "--demo-rate", "20000")
	deadline := time.Now().Add(15 * time.Second)
	for {
		var stats struct {
			Trucks int `json:"trucks"`
		}
		r := p.do("GET", "/v1/stats", "")
		if err := json.Unmarshal(r.body, &stats); err != nil {
			t.Fatal(err)
		}
		if stats.Trucks == 1500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo fleet at %d of 1500 trucks\n%s", stats.Trucks, p.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := p.stop(os.Interrupt); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.logText())
	}
	if l := p.logText(); !strings.Contains(l, `msg="demo started" trucks=1500 rate_per_sec=20000`) || !strings.Contains(l, `msg="demo stopped"`) {
		t.Fatalf("log:\n%s", l)
	}

	p = start(t, "--demo", "--access-log")
	p.waitLog(`msg="demo started" trucks=10000 rate_per_sec=5000`)
	p.waitLog(`msg=request method=POST path=/v1/positions status=200`)
	if code := p.stop(sigterm); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.logText())
	}
}

// TestBadCommandLines: usage errors exit 2, startup failures exit 1, both
// with a message; --help exits 0.
func TestBadCommandLines(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		frag string
	}{
		{[]string{"--help"}, 0, "Usage: fleetd serve"},
		{[]string{"--max-body", "lots"}, 2, `invalid size "lots"`},
		{[]string{"--max-body", "0"}, 2, "out of range"},
		{[]string{"--demo", "-5"}, 2, "flag provided but not defined: -5"},
		{[]string{"--shards", "1000"}, 2, "--shards 1000"},
		{[]string{"stray"}, 2, `unexpected argument "stray"`},
		{[]string{"--nope"}, 2, "flag provided but not defined"},
		{[]string{"--token-file", empty}, 1, "holds no token"},
		{[]string{"--token-file", empty + ".missing"}, 1, "reading --token-file"},
		{[]string{"--http", "256.1.1.1:80"}, 1, "--http"},
		{[]string{"--demo", "5", "--demo-rate", "fast"}, 1, "--demo-rate"},
	} {
		cmd := exec.Command(bin, append([]string{"serve", "--data", filepath.Join(t.TempDir(), "d")}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), tc.frag) {
			t.Errorf("serve %q: exit %d, want %d; output lacks %q?\n%s", tc.args, code, tc.code, tc.frag, out)
		}
	}
}

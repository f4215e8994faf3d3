package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClusterConfig: zones, rules and sinks written on one node are in
// the cluster's key-value bucket and on every node, a node started later
// gets them, deletions propagate, a restart keeps them, and every node's
// rules fire on the stream's positions. With the default flags and with
// a tuned stream.
func TestClusterConfig(t *testing.T) {
	ns := startNATS(t)
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"default", nil},
		{"tuned", []string{"--nats-stream", "cfgtuned", "--nats-partitions", "3", "--fsync", "interval=50ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) { testClusterConfig(t, ns, tc.flags) })
	}
}

func testClusterConfig(t *testing.T, ns []*natsProc, flags []string) {
	dirs := make([]string, 4)
	for i := range dirs {
		dirs[i] = filepath.Join(t.TempDir(), strconv.Itoa(i))
	}
	startNode := func(i int) *proc {
		return startData(t, dirs[i], append([]string{"--nats", natsURLs(ns, i%3)}, flags...)...)
	}
	nodes := []*proc{startNode(0), startNode(1), startNode(2)}
	a, b, c := nodes[0], nodes[1], nodes[2]

	// A write answers with its bucket revision; a read with it on another
	// node sees the write.
	rev := func(r resp) string {
		t.Helper()
		v := r.header.Get("Fleetd-Config-Revision")
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("no revision in the answer: %q (%d %s)", v, r.code, r.body)
		}
		return v
	}
	zone := `{"type":"Polygon","coordinates":[[[2.0,48.0],[3.0,48.0],[3.0,49.0],[2.0,49.0],[2.0,48.0]]]}`
	r := a.do("PUT", "/v1/zones/depot:paris", zone)
	r.want(t, 200)
	zrev := rev(r)
	r = a.do("PUT", "/v1/rules/in-depot", `{"when":"inside(\"depot:paris\")","severity":"critical"}`)
	r.want(t, 200)
	rrev := rev(r)
	for _, p := range []*proc{b, c} {
		wantCode(t, p.do("GET", "/v1/zones/depot:paris", "", "Fleetd-Config-Revision", zrev), 200)
		body := p.do("GET", "/v1/rules/in-depot", "", "Fleetd-Config-Revision", rrev).want(t, 200)
		if !strings.Contains(string(body), `"severity":"critical"`) {
			t.Fatalf("rule on another node: %s", body)
		}
	}
	// A revision no node has reached: a bounded wait, then 503.
	c.do("GET", "/v1/rules/in-depot", "", "Fleetd-Config-Revision", "99999999").wantErr(t, 503, "not applied")
	c.do("GET", "/v1/rules/in-depot", "", "Fleetd-Config-Revision", "x").wantErr(t, 400, "revision")

	// Bad input is refused by the node as a single node would, and never
	// reaches the bucket.
	a.do("PUT", "/v1/zones/bad", `{"type":"Polygon"}`).wantErr(t, 400, "")
	a.do("PUT", "/v1/rules/broken", `{"when":"inside(\"nowhere\")"}`).wantErr(t, 400, "")
	b.do("DELETE", "/v1/zones/depot:paris", "").want(t, 409) // the rule names it

	// Bulk rules and a sink, written on other nodes.
	r = c.do("PUT", "/v1/rules", `{"rules":[{"name":"fast","when":"speed > 100"},{"name":"slow","when":"speed < 1","for":"1m"},{"name":"in-depot-2","when":"inside(\"depot:paris\") && speed > 5"}]}`)
	r.want(t, 200)
	brev := rev(r)
	r = b.do("PUT", "/v1/sinks/ops", `{"type":"webhook","url":"http://127.0.0.1:9/hook","secret":"s3cret","timeout":"2s"}`)
	r.want(t, 201)
	srev := rev(r)
	want := []string{"fast", "in-depot", "in-depot-2", "slow"}
	for _, p := range nodes {
		if got := ruleNames(t, p.do("GET", "/v1/rules", "", "Fleetd-Config-Revision", brev).want(t, 200)); !slices.Equal(got, want) {
			t.Fatalf("rules on %s: %v, want %v", p.addr, got, want)
		}
		body := p.do("GET", "/v1/sinks/ops", "", "Fleetd-Config-Revision", srev).want(t, 200)
		if !strings.Contains(string(body), `"secret_set":true`) {
			t.Fatalf("sink on %s: %s", p.addr, body)
		}
	}

	// Alerts fire on every node's view of a position posted to one.
	code, body, tok, err := post(b.addr, `{"id":"truck-in","lat":48.5,"lon":2.5,"speed":10,"ts":`+strconv.FormatInt(time.Now().Unix()-5, 10)+`}`)
	if err != nil || code != 200 {
		t.Fatalf("post: %d %s %v", code, body, err)
	}
	for _, p := range nodes {
		p.do("GET", "/v1/trucks/truck-in", "", "Fleetd-Token", tok).want(t, 200)
		waitAlerts(t, p, "truck-in", []string{"in-depot", "in-depot-2"})
	}

	// A node started later gets the whole configuration.
	d := startNode(3)
	nodes = append(nodes, d)
	d.waitLog("configuration loaded")
	if got := ruleNames(t, d.do("GET", "/v1/rules", "").want(t, 200)); !slices.Equal(got, want) {
		t.Fatalf("rules on the late node: %v, want %v", got, want)
	}
	wantCode(t, d.do("GET", "/v1/zones/depot:paris", ""), 200)
	d.do("GET", "/v1/sinks/ops", "").want(t, 200)
	d.do("GET", "/v1/trucks/truck-in", "", "Fleetd-Token", tok).want(t, 200)
	waitAlerts(t, d, "truck-in", []string{"in-depot", "in-depot-2"})

	// Deletes propagate; then the zone can go.
	b.do("DELETE", "/v1/rules/in-depot", "").want(t, 204)
	r = c.do("DELETE", "/v1/rules/in-depot-2", "")
	r.want(t, 204)
	r = d.do("DELETE", "/v1/zones/depot:paris", "", "Fleetd-Config-Revision", rev(r))
	r.want(t, 204)
	drev := rev(r)
	r = a.do("DELETE", "/v1/sinks/ops", "")
	r.want(t, 200)
	xrev := rev(r)
	a.do("DELETE", "/v1/sinks/ops", "").want(t, 404)
	want = []string{"fast", "slow"}
	for _, p := range nodes {
		p.do("GET", "/v1/zones/depot:paris", "", "Fleetd-Config-Revision", drev).want(t, 404)
		p.do("GET", "/v1/sinks/ops", "", "Fleetd-Config-Revision", xrev).want(t, 404)
		if got := ruleNames(t, p.do("GET", "/v1/rules", "").want(t, 200)); !slices.Equal(got, want) {
			t.Fatalf("rules on %s after the deletes: %v, want %v", p.addr, got, want)
		}
	}

	// A node down while the configuration changes catches up when it
	// restarts, and keeps what did not change.
	if code := d.stop(sigterm); code != 0 {
		t.Fatalf("node exited %d", code)
	}
	r = a.do("PUT", "/v1/rules/fast", `{"when":"speed > 120"}`)
	r.want(t, 200)
	a.do("DELETE", "/v1/rules/slow", "").want(t, 204)
	d = startNode(3)
	d.waitLog("configuration loaded")
	if got := d.logText(); !strings.Contains(got, "applied=1") || !strings.Contains(got, "removed=1") {
		t.Fatalf("the restarted node should apply one change and remove one rule:\n%s", got)
	}
	body = d.do("GET", "/v1/rules", "").want(t, 200)
	if got := ruleNames(t, body); !slices.Equal(got, []string{"fast"}) || !strings.Contains(string(body), "speed \\u003e 120") && !strings.Contains(string(body), "speed > 120") {
		t.Fatalf("rules on the restarted node: %s", body)
	}

	// A bulk PUT of more rules than the publisher's window.
	var sb strings.Builder
	sb.WriteString(`{"rules":[`)
	const bulk = 3000
	for i := range bulk {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"name":"bulk-%04d","when":"speed > %d"}`, i, i%200)
	}
	sb.WriteString("]}")
	start := time.Now()
	r = b.do("PUT", "/v1/rules", sb.String())
	r.want(t, 200)
	t.Logf("bulk PUT of %d rules acknowledged by the bucket in %v", bulk, time.Since(start).Round(time.Millisecond))
	if got := ruleNames(t, d.do("GET", "/v1/rules", "", "Fleetd-Config-Revision", rev(r)).want(t, 200)); len(got) != bulk+1 {
		t.Fatalf("%d rules on another node after the bulk PUT, want %d", len(got), bulk+1)
	}
}

func wantCode(t *testing.T, r resp, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d: %s", r.code, code, r.body)
	}
}

func ruleNames(t *testing.T, body []byte) []string {
	t.Helper()
	var v struct {
		Rules []struct {
			Name string `json:"name"`
		} `json:"rules"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("rules: %v: %s", err, body)
	}
	var names []string
	for _, r := range v.Rules {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return names
}

// waitAlerts waits until the node fires exactly rules for truck id.
func waitAlerts(t *testing.T, p *proc, id string, rules []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got []string
	var body []byte
	for time.Now().Before(deadline) {
		body = p.do("GET", "/v1/alerts?id="+id, "").want(t, 200)
		var v struct {
			Alerts []struct {
				Rule string `json:"rule"`
			} `json:"alerts"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, a := range v.Alerts {
			got = append(got, a.Rule)
		}
		slices.Sort(got)
		if slices.Equal(got, rules) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("alerts on %s for %s: %v, want %v (%s)", p.addr, id, got, rules, body)
}

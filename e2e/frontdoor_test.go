package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestFrontdoor runs the server with its default flags (the front door
// on) and with --frontdoor=false, loads both with the same fleet, and
// asks both the same queries, good and bad, each on a new connection (a
// connection whose first request the front door does not take, the POST
// here, stays with net/http): statuses, the headers a client reads and
// the answers must be the same (within's in any order, as the contract
// says). The default server's /v1/stats must show the front door
// answered the queries it takes, and the other must have no front door.
func TestFrontdoor(t *testing.T) {
	fast := start(t)
	plain := start(t, "--frontdoor=false")
	var fleet strings.Builder
	for i := range 300 {
		fmt.Fprintf(&fleet, `{"id":"t%03d","lat":%.5f,"lon":%.5f,"speed":%d,"heading":%d,"alt":%d}`+"\n",
			i, 40+float64(i%17)*0.01, -74+float64(i%23)*0.01, i%90, i%360, i)
	}
	for _, p := range []*proc{fast, plain} {
		p.do("POST", "/v1/positions", fleet.String(), "Content-Type", "application/x-ndjson").want(t, 200)
	}
	const exact, sorted, count = 0, 1, 2 // how answers compare
	queries := []struct {
		method, path, accept string
		fast                 bool // the front door takes it
		cmp                  int
	}{
		{"GET", "/healthz", "", true, exact},
		{"HEAD", "/healthz", "", true, exact},
		{"GET", "/v1/nearby?lat=40.05&lon=-73.9&k=10", "", true, exact},
		{"GET", "/v1/nearby?lat=40.05&lon=-73.9&k=5&radius_m=3000", "", true, exact},
		{"GET", "/v1/nearby?lat=40.05&lon=-73.9&k=0", "", true, exact},
		{"GET", "/v1/nearby?lat=north&lon=-73.9", "", true, exact},
		{"GET", "/v1/within?lat=40.05&lon=-73.9&radius_m=8000", "", true, sorted},
		{"GET", "/v1/within?bbox=-74.1,39.9,-73.7,40.3", "", true, sorted},
		{"GET", "/v1/within?bbox=-74.1,39.9,-73.7,40.3", "application/x-ndjson", true, sorted},
		{"GET", "/v1/within?bbox=-74.1,39.9,-73.7,40.3&limit=7", "", true, count},
		{"GET", "/v1/within?bbox=1,2,3", "", true, exact},
		{"GET", "/v1/trucks/t042", "", true, exact},
		{"HEAD", "/v1/trucks/t042", "", true, exact},
		{"GET", "/v1/trucks/nope", "", true, exact},
		{"GET", "/v1/trucks/bad%20id", "", false, exact},
		{"GET", "/v1/trucks/" + strings.Repeat("x", 300), "", true, exact},
		{"GET", "/v1/stats", "", false, count},
	}
	want := 0
	for _, q := range queries {
		var got [2]resp
		for i, p := range []*proc{fast, plain} {
			client.CloseIdleConnections()
			got[i] = p.do(q.method, q.path, "", "Accept", q.accept)
		}
		a, b := got[0], got[1]
		if q.fast {
			want++
		}
		if a.code != b.code || !sameAnswer(a.body, b.body, q.cmp) {
			t.Errorf("%s %s: front door %d %.300q, net/http %d %.300q", q.method, q.path, a.code, a.body, b.code, b.body)
		}
		for _, h := range []string{"Content-Type", "X-Content-Type-Options", "Content-Length", "Www-Authenticate"} {
			if av, bv := a.header.Values(h), b.header.Values(h); !slices.Equal(av, bv) && !(h == "Content-Length" && (len(av) == 0 || len(bv) == 0 || q.cmp == count)) {
				t.Errorf("%s %s: %s %q from the front door, %q from net/http", q.method, q.path, h, av, bv)
			}
		}
	}
	client.CloseIdleConnections()
	var st struct {
		Frontdoor *struct {
			Served int64 `json:"requests_served"`
		} `json:"frontdoor"`
	}
	if err := json.Unmarshal(fast.do("GET", "/v1/stats", "").want(t, 200), &st); err != nil || st.Frontdoor == nil || st.Frontdoor.Served != int64(want) {
		t.Fatalf("default server: frontdoor %+v (%v), want %d requests served", st.Frontdoor, err, want)
	}
	if m := string(fast.do("GET", "/metrics", "").body); !strings.Contains(m, fmt.Sprintf("fleetd_frontdoor_requests_total %d\n", want)) {
		t.Fatalf("/metrics has no fleetd_frontdoor_requests_total %d", want)
	}
	st.Frontdoor = nil
	if err := json.Unmarshal(plain.do("GET", "/v1/stats", "").want(t, 200), &st); err != nil || st.Frontdoor != nil {
		t.Fatalf("--frontdoor=false: frontdoor %+v (%v), want none", st.Frontdoor, err)
	}
	if m := plain.do("GET", "/metrics", ""); m.code != 200 || strings.Contains(string(m.body), "fleetd_frontdoor_") {
		t.Fatal("--frontdoor=false: /metrics has front door counters")
	}
}

// sameAnswer compares two answers: byte for byte (exact), as the same set
// of results or lines (sorted), or by their count alone (count; for
// /v1/stats, that they are both JSON).
func sameAnswer(a, b []byte, how int) bool {
	switch how {
	case 1:
		return slices.Equal(results(a), results(b))
	case 2:
		var x, y struct {
			Count *int `json:"count"`
		}
		return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && (x.Count == nil) == (y.Count == nil) && (x.Count == nil || *x.Count == *y.Count)
	}
	return string(a) == string(b)
}

// results are a within answer's results (JSON) or lines (NDJSON), sorted.
func results(b []byte) []string {
	var out []string
	var x struct {
		Results []json.RawMessage `json:"results"`
		Count   int               `json:"count"`
	}
	if json.Unmarshal(b, &x) == nil && x.Results != nil {
		for _, r := range x.Results {
			out = append(out, string(r))
		}
		out = append(out, fmt.Sprint("count ", x.Count))
	} else {
		out = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	slices.Sort(out)
	return out
}

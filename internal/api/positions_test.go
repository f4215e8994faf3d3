package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/ingest"
	"github.com/fleetd/fleetd/internal/store"
)

func TestPositionsExactAnswer(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	body := `{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}` + "\n" +
		`{"id":"b","lat":1,"lon":2,"colour":"red"}` + "\n" +
		`{"id":"c","lat":91,"lon":2}` + "\n"
	w := f.post(body, "application/x-ndjson")
	got := string(wantJSON(t, w, http.StatusOK))
	want := `{"accepted":2,"rejected":1,"stale":0,"errors":[{"line":3,"error":"lat 91 out of range [-90, 90]"}],"unknown_fields":["colour"]}`
	if got != want {
		t.Fatalf("answer\n got %s\nwant %s", got, want)
	}
	w = f.get("/v1/trucks/truck-0000042")
	got = string(wantJSON(t, w, http.StatusOK))
	want = `{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}`
	if got != want {
		t.Fatalf("truck\n got %s\nwant %s", got, want)
	}
	// An all-valid body still lists both arrays, empty.
	w = f.post(`{"id":"d","lat":0,"lon":0}`, "")
	if got := string(wantJSON(t, w, http.StatusOK)); got != `{"accepted":1,"rejected":0,"stale":0,"errors":[],"unknown_fields":[]}` {
		t.Fatalf("answer %s", got)
	}
}

// TestPositionsBadInput: every bad input the contract names is a rejected
// line with its number and reason, never a 5xx, and never disturbs the
// valid lines around it.
func TestPositionsBadInput(t *testing.T) {
	good := `{"id":"ok-%d","lat":10,"lon":20}`
	cases := []struct {
		name string
		line string // between two good lines (line 2 of 3)
		frag string // in the error message
	}{
		{"malformed bytes", "\x00\x01\xff{", "invalid JSON"},
		{"garbage", `{"id":"x",,}`, "invalid JSON"},
		{"NaN", `{"id":"x","lat":NaN,"lon":1}`, "invalid JSON"},
		{"Infinity", `{"id":"x","lat":1,"lon":-Infinity}`, "invalid JSON"},
		{"huge exponent", `{"id":"x","lat":1e999999999,"lon":1}`, "out of range"},
		{"tiny exponent is fine", `{"id":"x","lat":1e-999999999,"lon":1}`, ""},
		{"deep nesting", `{"id":"x","lat":1,"lon":1,"z":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`, "nesting"},
		{"invalid UTF-8", "{\"id\":\"x\xc3\x28\",\"lat\":1,\"lon\":1}", "UTF-8"},
		{"bad id", `{"id":"tr uck","lat":1,"lon":1}`, "invalid id"},
		{"long id", `{"id":"` + strings.Repeat("a", 65) + `","lat":1,"lon":1}`, "invalid id"},
		{"missing lon", `{"id":"x","lat":1}`, `missing required field "lon"`},
		{"string lat", `{"id":"x","lat":"1","lon":1}`, "lat must be a number"},
		{"speed range", `{"id":"x","lat":1,"lon":1,"speed":1001}`, "speed"},
		{"heading 360", `{"id":"x","lat":1,"lon":1,"heading":360}`, "heading"},
		{"old ts", `{"id":"x","lat":1,"lon":1,"ts":"1960-01-01T00:00:00Z"}`, "ts"},
		{"not an object", `[1,2,3]`, "expected a JSON object"},
		{"trailing data", `{"id":"x","lat":1,"lon":1} {}`, "unexpected data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{}, store.Options{})
			body := fmt.Sprintf(good, 1) + "\n" + tc.line + "\n" + fmt.Sprintf(good, 3) + "\n"
			w := f.post(body, "application/x-ndjson")
			var r postResp
			decodeStrict(t, wantJSON(t, w, http.StatusOK), &r)
			if tc.frag == "" {
				if r.Accepted != 3 || r.Rejected != 0 {
					t.Fatalf("%+v, want 3 accepted", r)
				}
				return
			}
			if r.Accepted != 2 || r.Rejected != 1 || len(r.Errors) != 1 || r.Errors[0].Line != 2 {
				t.Fatalf("%+v, want line 2 rejected and 2 accepted", r)
			}
			if !strings.Contains(r.Errors[0].Error, tc.frag) {
				t.Fatalf("error %q, want %q in it", r.Errors[0].Error, tc.frag)
			}
			for _, id := range []string{"ok-1", "ok-3"} {
				if _, ok := f.eng.Store().Get([]byte(id)); !ok {
					t.Fatalf("%s not stored", id)
				}
			}
		})
	}
}

func TestPositionsTruncatedLastLine(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	w := f.post("{\"id\":\"a\",\"lat\":1,\"lon\":1}\r\n\n{\"id\":\"b\",\"lat\":1,\"lo", "")
	var r postResp
	decodeStrict(t, wantJSON(t, w, http.StatusOK), &r)
	if r.Accepted != 1 || r.Rejected != 1 || r.Errors[0].Line != 3 {
		t.Fatalf("%+v: want line 3 (blank line 2 counted in numbering) rejected", r)
	}
}

func TestPositionsArray(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	w := f.post(`[{"id":"a","lat":1,"lon":2,"ts":"2025-11-24T16:00:00Z"}, {"id":"b","lat":100,"lon":2}, 7]`, "application/json; charset=utf-8")
	var r postResp
	decodeStrict(t, wantJSON(t, w, http.StatusOK), &r)
	if r.Accepted != 1 || r.Rejected != 2 || r.Errors[0].Line != 2 || r.Errors[1].Line != 3 {
		t.Fatalf("%+v", r)
	}
	p, ok := f.eng.Store().Get([]byte("a"))
	if !ok || p.TS != 1764000000 {
		t.Fatalf("a = %+v %v, want ts 1764000000", p, ok)
	}
	// A truncated array: elements before the fault stand.
	w = f.post(`[{"id":"c","lat":1,"lon":2},{"id":"d"`, "application/json")
	decodeStrict(t, wantJSON(t, w, http.StatusOK), &r)
	if r.Accepted != 1 || r.Rejected != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestPositionsErrorListCapped(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	var b strings.Builder
	for range 250 {
		b.WriteString("{}\n")
	}
	w := f.post(b.String(), "")
	var r postResp
	decodeStrict(t, wantJSON(t, w, http.StatusOK), &r)
	if r.Rejected != 250 || len(r.Errors) != ingest.MaxErrors || r.Errors[99].Line != 100 {
		t.Fatalf("rejected %d, %d errors listed", r.Rejected, len(r.Errors))
	}
}

func TestPositionsUnsupportedMedia(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	for _, tc := range []struct{ ct, enc, frag string }{
		{"text/plain", "", `"text/plain" is not accepted`},
		{"application/xml", "", "not supported"},
		{"a b/c", "", "malformed"},
		{"application/x-ndjson", "gzip", "Content-Encoding"},
		{"", "", "needs a Content-Type"}, // what a cross-site page sends
	} {
		w := f.do(req{method: "POST", target: "/v1/positions", body: `{"id":"a","lat":1,"lon":1}`,
			header: map[string]string{"Content-Type": tc.ct, "Content-Encoding": tc.enc}})
		wantError(t, w, http.StatusUnsupportedMediaType, tc.frag)
	}
	if n := f.eng.Store().Len(); n != 0 {
		t.Fatalf("%d trucks stored after 415s", n)
	}
}

func TestPositionsTooLarge(t *testing.T) {
	const limit = 1024
	f := newFixture(t, Options{MaxBody: limit}, store.Options{})
	line := `{"id":"truck-0000001","lat":1,"lon":1}` + "\n" // 39 bytes
	big := strings.Repeat(line, 2*limit/len(line))
	for _, chunked := range []bool{false, true} {
		w := f.do(req{method: "POST", target: "/v1/positions", body: big, chunked: chunked, header: ndjsonHeader})
		wantError(t, w, http.StatusRequestEntityTooLarge, "1 KiB limit")
		if n := f.eng.Store().Len(); n != 0 {
			t.Fatalf("chunked=%v: %d trucks applied from a 413 body", chunked, n)
		}
	}
	// Exactly at the limit is fine.
	exact := strings.Repeat(line, limit/len(line))
	exact += strings.Repeat(" ", limit-len(exact))
	for _, chunked := range []bool{false, true} {
		w := f.do(req{method: "POST", target: "/v1/positions", body: exact, chunked: chunked, header: ndjsonHeader})
		var r postResp
		decodeStrict(t, wantJSON(t, w, http.StatusOK), &r)
		if r.Accepted != limit/len(line) {
			t.Fatalf("%+v", r)
		}
	}
}

func TestPositionsEngineClosed(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	_ = f.eng.Close()
	wantError(t, f.post(`{"id":"a","lat":1,"lon":1}`, ""), http.StatusServiceUnavailable, "nothing in this request was applied")
	if !strings.Contains(f.log.String(), "status=503") {
		t.Fatalf("5xx not logged: %s", f.log.String())
	}
	// A body with no valid line applies nothing, so it still answers 200.
	if w := f.post(`{}`, ""); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
}

func TestPositionsTruckLimit(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{MaxTrucks: 3})
	var b strings.Builder
	for i := range 5 {
		fmt.Fprintf(&b, `{"id":"t%d","lat":1,"lon":1,"ts":100}`+"\n", i)
	}
	b.WriteString("{}\n")
	w := f.post(b.String(), "")
	var r postResp
	decodeStrict(t, wantJSON(t, w, http.StatusInsufficientStorage), &r)
	if r.Refused != 2 || r.Accepted != 3 || r.Rejected != 1 || !strings.Contains(r.Error, "2 new trucks refused") {
		t.Fatalf("%+v", r)
	}
	// Known trucks keep updating (which three got in is up to the store).
	var known []byte
	f.eng.Store().Range(func(id []byte, _ store.Position) bool {
		known = append(known[:0], id...)
		return false
	})
	w = f.post(`{"id":"`+string(known)+`","lat":2,"lon":2,"ts":200}`, "")
	decodeStrict(t, wantJSON(t, w, http.StatusOK), &r)
	if p, _ := f.eng.Store().Get(known); p.TS != 200 {
		t.Fatalf("%s not updated: %+v", known, p)
	}
	w = f.post(`{"id":"t9","lat":2,"lon":2,"ts":200}`, "")
	decodeStrict(t, wantJSON(t, w, http.StatusInsufficientStorage), &r)
	if r.Error != "fleet is at its truck limit: 1 new truck refused; updates of known trucks were applied" || r.Accepted != 0 || r.Refused != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestPositionsEmptyBody(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	if got := string(wantJSON(t, f.post("", ""), http.StatusOK)); got != `{"accepted":0,"rejected":0,"stale":0,"errors":[],"unknown_fields":[]}` {
		t.Fatal(got)
	}
	var r postResp
	decodeStrict(t, wantJSON(t, f.post("", "application/json"), http.StatusOK), &r)
	if r.Rejected != 1 {
		t.Fatalf("empty array body: %+v", r)
	}
}

// TestPositionsLatestWins: stale updates are accepted but do not move a
// truck; the engine's counts reach /v1/stats.
func TestPositionsLatestWins(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	f.post(`{"id":"a","lat":1,"lon":1,"ts":200}`, "")
	var r postResp
	decodeStrict(t, wantJSON(t, f.post(`{"id":"a","lat":5,"lon":5,"ts":100}`, ""), http.StatusOK), &r)
	if r.Accepted != 1 || r.Stale != 1 {
		t.Fatalf("%+v", r)
	}
	if p, _ := f.eng.Store().Get([]byte("a")); p.TS != 200 || p.Lat != 1e7 {
		t.Fatalf("stale update applied: %+v", p)
	}
	var st map[string]any
	if err := json.Unmarshal(wantJSON(t, f.get("/v1/stats"), http.StatusOK), &st); err != nil || st["stale_total"] != 1.0 {
		t.Fatalf("stats stale_total = %v (%v)", st["stale_total"], err)
	}
}

// TestPositionsDeviceClocks: a ts ahead of the server clock by more than the
// skew is a rejected line saying so, milliseconds are converted, and both
// are counted in /v1/stats and /metrics.
func TestPositionsDeviceClocks(t *testing.T) {
	f := newFixture(t, Options{MaxClockSkew: time.Minute}, store.Options{})
	now := time.Now().Unix()
	body := fmt.Sprintf(`{"id":"future","lat":1,"lon":1,"ts":%d}
{"id":"ms","lat":1,"lon":1,"ts":%d}
{"id":"late","lat":1,"lon":1,"ts":%d}
`, now+3600, (now-10)*1000+999, now-30*86400)
	var r postResp
	decodeStrict(t, wantJSON(t, f.post(body, ""), http.StatusOK), &r)
	if r.Accepted != 2 || r.Rejected != 1 || len(r.Errors) != 1 || r.Errors[0].Line != 1 ||
		!strings.Contains(r.Errors[0].Error, "ahead of the server clock (max 1m0s)") {
		t.Fatalf("%+v", r)
	}
	if _, ok := f.eng.Store().Get([]byte("future")); ok {
		t.Fatal("future update stored")
	}
	if p, ok := f.eng.Store().Get([]byte("ms")); !ok || int64(p.TS) != now-10 {
		t.Fatalf("milliseconds: %+v %v", p, ok)
	}
	if p, ok := f.eng.Store().Get([]byte("late")); !ok || int64(p.TS) != now-30*86400 {
		t.Fatalf("30 days late: %+v %v", p, ok)
	}
	var st map[string]any
	if err := json.Unmarshal(wantJSON(t, f.get("/v1/stats"), http.StatusOK), &st); err != nil ||
		st["rejected_future_total"] != 1.0 || st["ts_milliseconds_total"] != 1.0 {
		t.Fatalf("stats %v (%v)", st, err)
	}
	metrics := f.get("/metrics").Body.String()
	for _, want := range []string{`fleetd_ingest_ts_total{kind="future"} 1`, `fleetd_ingest_ts_total{kind="milliseconds"} 1`, "fleetd_updates_stale_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{64 << 20, "64 MiB"}, {1 << 30, "1 GiB"}, {1024, "1 KiB"}, {1000, "1000 bytes"}, {1536, "1536 bytes"}} {
		if got := formatSize(tc.n); got != tc.want {
			t.Errorf("formatSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

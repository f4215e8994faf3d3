package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fence"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/vfs"
)

// newAlertFixture is a Server whose engine has an alert engine (saving to
// a MemFS) as its observer.
func newAlertFixture(t testing.TB) (*fixture, *alert.Evaluator) {
	t.Helper()
	logBuf := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logBuf, nil))
	al, err := alert.New(alert.Options{FS: vfs.NewMem(), Dir: "cfg", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Open(engine.Options{Observers: []engine.Observer{al}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	s, err := New(Options{Engine: eng, Logger: log, Alerts: al})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, s: s, eng: eng, log: logBuf}, al
}

const yard = `{"type":"Polygon","coordinates":[[[-75,40],[-74.9,40],[-74.9,40.1],[-75,40.1],[-75,40]]]}`

func TestZoneEndpoints(t *testing.T) {
	f, _ := newAlertFixture(t)
	put := func(name, body string) *httptest.ResponseRecorder {
		return f.do(req{method: "PUT", target: "/v1/zones/" + name, body: body})
	}
	if got := string(wantJSON(t, put("yard-3", yard), http.StatusOK)); got != `{"name":"yard-3","vertices":4,"bbox":[-75,40,-74.9,40.1]}` {
		t.Fatalf("PUT zone: %s", got)
	}
	holes := `{"type":"Feature","properties":{"a":1},"geometry":{"type":"MultiPolygon","coordinates":[[[[0,0],[2,0],[2,2],[0,2],[0,0]],[[0.5,0.5],[1,0.5],[1,1],[0.5,0.5]]],[[[5,5],[6,5],[6,6],[5,5]]]]}}`
	if got := string(wantJSON(t, put("holes", holes), http.StatusOK)); got != `{"name":"holes","vertices":10,"bbox":[0,0,6,6]}` {
		t.Fatalf("PUT multipolygon: %s", got)
	}
	w := f.get("/v1/zones/holes")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/geo+json" {
		t.Fatalf("GET zone: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if z, err := fence.Parse(w.Body.Bytes()); err != nil || z.NumVertices() != 10 || z.NumPolygons() != 2 || z.NumRings() != 3 {
		t.Fatalf("GET zone body %s: %v", w.Body, err)
	}
	if got := string(wantJSON(t, f.get("/v1/zones"), http.StatusOK)); got != `{"zones":[{"name":"holes","vertices":10,"bbox":[0,0,6,6]},{"name":"yard-3","vertices":4,"bbox":[-75,40,-74.9,40.1]}]}` {
		t.Fatalf("GET zones: %s", got)
	}
	// Replacing keeps the name.
	wantJSON(t, put("yard-3", rect(1, 1, 2, 2)), http.StatusOK)

	wantJSON(t, f.do(req{method: "PUT", target: "/v1/rules/in-yard", body: `{"when":"inside(\"yard-3\")"}`}), http.StatusOK)
	wantJSON(t, f.do(req{method: "PUT", target: "/v1/rules/near-yard", body: `{"when":"near(\"yard-3\", 100) && speed < 5"}`}), http.StatusOK)
	w = f.do(req{method: "DELETE", target: "/v1/zones/yard-3"})
	var inUse struct {
		Error string   `json:"error"`
		Rules []string `json:"rules"`
	}
	decodeStrict(t, wantJSON(t, w, http.StatusConflict), &inUse)
	if !strings.Contains(inUse.Error, `zone "yard-3" is used by rules ["in-yard" "near-yard"]`) ||
		len(inUse.Rules) != 2 || inUse.Rules[0] != "in-yard" || inUse.Rules[1] != "near-yard" {
		t.Fatalf("409: %+v", inUse)
	}
	if w := f.do(req{method: "DELETE", target: "/v1/zones/holes"}); w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("DELETE zone: %d %s", w.Code, w.Body)
	}

	for _, tc := range []struct {
		method, target, body string
		code                 int
		frag                 string
	}{
		{"PUT", "/v1/zones/bad%20name", yard, 400, `zone name "bad name"`},
		{"PUT", "/v1/zones/" + strings.Repeat("x", 65), yard, 400, "zone name must be 1-64 bytes"},
		{"PUT", "/v1/zones/z", `{"type":"Point","coordinates":[1,2]}`, 400, "fence:"},
		{"PUT", "/v1/zones/z", `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}`, 400, "fence:"},
		{"PUT", "/v1/zones/z", `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,95],[0,0]]]}`, 400, "fence:"},
		{"PUT", "/v1/zones/z", `not json`, 400, "invalid GeoJSON"},
		{"PUT", "/v1/zones/z", "", 400, "fence:"},
		{"PUT", "/v1/zones/z", strings.Repeat("[", 40), 413, "too large"},
		{"PUT", "/v1/zones/z", `{"type":"Polygon","coordinates":[[` + strings.Repeat("[0,0],", fence.MaxBodyBytes/6+1) + `[0,0]]]}`, 413, "too large"},
		{"GET", "/v1/zones/nope", "", 404, `zone "nope" not found`},
		{"DELETE", "/v1/zones/nope", "", 404, "not found"},
		{"DELETE", "/v1/zones/holes", "", 404, "not found"},
		{"POST", "/v1/zones/z", yard, 405, "not allowed"},
		{"POST", "/v1/zones", yard, 405, "not allowed"},
	} {
		wantError(t, f.do(req{method: tc.method, target: tc.target, body: tc.body}), tc.code, tc.frag)
	}
	if _, ok := f.s.alerts.GetZone("z"); ok {
		t.Fatal("a bad zone was stored")
	}
}

func TestRuleEndpoints(t *testing.T) {
	f, _ := newAlertFixture(t)
	wantJSON(t, f.do(req{method: "PUT", target: "/v1/zones/yard-3", body: yard}), http.StatusOK)
	for _, tc := range []struct{ name, body, want string }{
		{"speeding", `{"when":"speed > 90","for":"30s","severity":"critical"}`, `{"name":"speeding","when":"speed > 90","for":"30s","severity":"critical"}`},
		{"in-yard", `{"when":"inside(\"yard-3\")"}`, `{"name":"in-yard","when":"inside(\"yard-3\")","for":"0s","severity":"warning"}`},
		{"braking", `{"when":"prev.speed - speed > 30 && dt < 3","for":"1m30s","severity":"info"}`, `{"name":"braking","when":"prev.speed - speed > 30 \u0026\u0026 dt < 3","for":"1m30s","severity":"info"}`},
		{"speeding", `{"when":"speed > 100","for":""}`, `{"name":"speeding","when":"speed > 100","for":"0s","severity":"warning"}`},
	} {
		got := wantJSON(t, f.do(req{method: "PUT", target: "/v1/rules/" + tc.name, body: tc.body}), http.StatusOK)
		if !jsonEqual(t, got, tc.want) {
			t.Fatalf("PUT %s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if got := string(wantJSON(t, f.get("/v1/rules/in-yard"), http.StatusOK)); got != `{"name":"in-yard","when":"inside(\"yard-3\")","for":"0s","severity":"warning"}` {
		t.Fatalf("GET rule: %s", got)
	}
	var withDisasm struct {
		Name, When, For, Severity, Disasm string
	}
	decodeStrict(t, wantJSON(t, f.get("/v1/rules/in-yard?disasm=1"), http.StatusOK), &withDisasm)
	if !strings.Contains(withDisasm.Disasm, `INSIDE               "yard-3" (id 0)`) || !strings.HasPrefix(withDisasm.Disasm, "; ") {
		t.Fatalf("disasm: %q", withDisasm.Disasm)
	}
	if keys := keys(t, wantJSON(t, f.get("/v1/rules/in-yard?disasm=0"), http.StatusOK)); len(keys) != 4 {
		t.Fatalf("disasm=0 keys %v", keys)
	}
	var list struct {
		Rules []struct{ Name, When, For, Severity string } `json:"rules"`
	}
	decodeStrict(t, wantJSON(t, f.get("/v1/rules"), http.StatusOK), &list)
	if len(list.Rules) != 3 || list.Rules[0].Name != "braking" || list.Rules[2].Name != "speeding" || list.Rules[2].When != "speed > 100" {
		t.Fatalf("GET rules: %+v", list)
	}
	if w := f.do(req{method: "DELETE", target: "/v1/rules/braking"}); w.Code != http.StatusNoContent {
		t.Fatalf("DELETE rule: %d", w.Code)
	}

	for _, tc := range []struct {
		method, target, body string
		code                 int
		frag                 string
	}{
		{"PUT", "/v1/rules/bad%20name", `{"when":"speed > 1"}`, 400, `rule name "bad name"`},
		{"PUT", "/v1/rules/" + strings.Repeat("r", 65), `{"when":"speed > 1"}`, 400, "1-64 bytes"},
		{"PUT", "/v1/rules/r", `{"when":"speed > 1","severity":"fatal"}`, 400, `severity "fatal" is not one of info, warning, critical`},
		{"PUT", "/v1/rules/r", `{"when":"speed > 1","for":"soon"}`, 400, `"for": time: invalid duration "soon"`},
		{"PUT", "/v1/rules/r", `{"when":"speed > 1","for":"-5s"}`, 400, `"for" -5s is outside`},
		{"PUT", "/v1/rules/r", `{"when":"speed > 1","for":30}`, 400, "cannot unmarshal number"},
		{"PUT", "/v1/rules/r", `{"when":"speed > 1","fro":"30s"}`, 400, `unknown field "fro"`},
		{"PUT", "/v1/rules/r", `{"when":"speed > 1"} {}`, 400, "invalid rule body"},
		{"PUT", "/v1/rules/r", `[1]`, 400, "cannot unmarshal array"},
		{"PUT", "/v1/rules/r", ``, 400, "invalid rule body"},
		{"PUT", "/v1/rules/r", `{"when":"` + strings.Repeat(" ", maxRuleBody) + `"}`, 413, "rule body exceeds"},
		{"GET", "/v1/rules/nope", "", 404, `rule "nope" not found`},
		{"GET", "/v1/rules/in-yard?disasm=maybe", "", 400, `disasm "maybe" is not a boolean`},
		{"GET", "/v1/rules/in-yard?disasm=%zz", "", 400, "malformed query string"},
		{"DELETE", "/v1/rules/braking", "", 404, "not found"},
		{"POST", "/v1/rules/r", "", 405, "not allowed"},
		{"DELETE", "/v1/rules", "", 405, "not allowed"},
		{"POST", "/v1/alerts", "", 405, "not allowed"},
	} {
		wantError(t, f.do(req{method: tc.method, target: tc.target, body: tc.body}), tc.code, tc.frag)
	}
}

func TestRuleCompileError(t *testing.T) {
	f, _ := newAlertFixture(t)
	for _, tc := range []struct {
		when      string
		line, col int
		error     string
		detail    string
	}{
		{"speed > sped", 1, 9, `1:9: unknown field "sped" (did you mean "speed"?)`, "1:9: unknown field \"sped\" (did you mean \"speed\"?)\n  speed > sped\n          ^^^^"},
		{"speed > 1 &&\n  insid(\"z\")", 2, 3, `2:3: unknown function "insid" (did you mean "inside"?)`, ""},
		{`inside("nowhere")`, 1, 8, `1:8: unknown zone "nowhere"`, ""},
		{"speed + 1", 1, 1, "1:1:", ""},
		{"", 1, 1, "1:1:", ""},
	} {
		body, _ := json.Marshal(map[string]string{"when": tc.when})
		w := f.do(req{method: "PUT", target: "/v1/rules/r", body: string(body)})
		var e struct {
			Error     string `json:"error"`
			Detail    string `json:"detail"`
			Line, Col int
		}
		decodeStrict(t, wantJSON(t, w, http.StatusBadRequest), &e)
		if !strings.HasPrefix(e.Error, tc.error) || e.Line != tc.line || e.Col != tc.col ||
			!strings.HasPrefix(e.Detail, e.Error+"\n") || !strings.Contains(e.Detail, "^") || tc.detail != "" && e.Detail != tc.detail {
			t.Errorf("%q: got %+v", tc.when, e)
		}
	}
	wantError(t, f.get("/v1/rules/r"), http.StatusNotFound, "not found")
}

func TestAlertsEndpoint(t *testing.T) {
	f, _ := newAlertFixture(t)
	wantJSON(t, f.do(req{method: "PUT", target: "/v1/zones/yard-3", body: yard}), http.StatusOK)
	wantJSON(t, f.do(req{method: "PUT", target: "/v1/rules/in-yard", body: `{"when":"inside(\"yard-3\")","severity":"info"}`}), http.StatusOK)
	wantJSON(t, f.do(req{method: "PUT", target: "/v1/rules/fast", body: `{"when":"speed > 90"}`}), http.StatusOK)
	if got := string(wantJSON(t, f.get("/v1/alerts"), http.StatusOK)); got != `{"count":0,"alerts":[]}` {
		t.Fatalf("no alerts: %s", got)
	}
	f.post(`{"id":"t2","lat":40.05,"lon":-74.95,"ts":1764000000,"speed":100}
{"id":"t1","lat":40.05,"lon":-74.95,"ts":1764000005,"speed":10}
{"id":"t3","lat":10,"lon":10,"ts":1764000000,"speed":10}`, "")
	fastT2 := `{"rule":"fast","id":"t2","state":"firing","severity":"warning","since":1764000000,"ts":1764000000,"lat":40.05,"lon":-74.95}`
	yardT1 := `{"rule":"in-yard","id":"t1","state":"firing","severity":"info","since":1764000005,"ts":1764000005,"lat":40.05,"lon":-74.95}`
	yardT2 := `{"rule":"in-yard","id":"t2","state":"firing","severity":"info","since":1764000000,"ts":1764000000,"lat":40.05,"lon":-74.95}`
	for _, tc := range []struct{ query, want string }{
		{"", `{"count":3,"alerts":[` + fastT2 + `,` + yardT1 + `,` + yardT2 + `]}`},
		{"?limit=2", `{"count":3,"alerts":[` + fastT2 + `,` + yardT1 + `]}`},
		{"?rule=in-yard", `{"count":2,"alerts":[` + yardT1 + `,` + yardT2 + `]}`},
		{"?rule=in-yard&limit=1", `{"count":2,"alerts":[` + yardT1 + `]}`},
		{"?id=t2", `{"count":2,"alerts":[` + fastT2 + `,` + yardT2 + `]}`},
		{"?id=t2&rule=fast", `{"count":1,"alerts":[` + fastT2 + `]}`},
		{"?id=t3", `{"count":0,"alerts":[]}`},
		{"?rule=nope", `{"count":0,"alerts":[]}`},
	} {
		if got := string(wantJSON(t, f.get("/v1/alerts"+tc.query), http.StatusOK)); got != tc.want {
			t.Fatalf("%s\n got %s\nwant %s", tc.query, got, tc.want)
		}
	}
	for _, tc := range []struct{ query, frag string }{
		{"?limit=0", "limit 0 out of range [1, 10000]"},
		{"?limit=10001", "out of range"},
		{"?limit=x", `limit "x" is not a whole number`},
		{"?rule=", "rule is empty"},
		{"?id=a%20b", `id "a b" is not a truck ID`},
		{"?limit=%zz", "malformed query"},
	} {
		wantError(t, f.get("/v1/alerts"+tc.query), http.StatusBadRequest, tc.frag)
	}
	// Leaving the yard resolves; deleting the truck resolves the rest.
	f.post(`{"id":"t1","lat":41,"lon":-74.95,"ts":1764000010,"speed":10}`, "")
	if w := f.do(req{method: "DELETE", target: "/v1/trucks/t2"}); w.Code != http.StatusNoContent {
		t.Fatal(w.Code)
	}
	if got := string(wantJSON(t, f.get("/v1/alerts"), http.StatusOK)); got != `{"count":0,"alerts":[]}` {
		t.Fatalf("after exit and delete: %s", got)
	}
}

func TestAlertsNotEnabled(t *testing.T) {
	f := newFixture(t, Options{}, store.Options{})
	for _, rt := range f.s.alertRoutes() {
		target := strings.ReplaceAll(rt.path, "{name}", "x")
		wantError(t, f.do(req{method: rt.method, target: target, body: "{}"}), http.StatusNotFound, "alert rules are not enabled")
	}
}

func TestAlertsNeedToken(t *testing.T) {
	f := newFixture(t, Options{Token: "tok"}, store.Options{})
	wantError(t, f.get("/v1/rules"), http.StatusUnauthorized, "bearer token")
	wantError(t, f.do(req{method: "PUT", target: "/v1/zones/z", body: yard}), http.StatusUnauthorized, "bearer token")
}

func rect(minLat, minLon, maxLat, maxLon float64) string {
	b, _ := json.Marshal(map[string]any{"type": "Polygon", "coordinates": [][][2]float64{{
		{minLon, minLat}, {maxLon, minLat}, {maxLon, maxLat}, {minLon, maxLat}, {minLon, minLat}}}})
	return string(b)
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(t testing.TB, a []byte, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatal(err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func TestAlertsSaveFailure(t *testing.T) {
	ffs := vfs.NewFaultFS(vfs.NewMem())
	al, err := alert.New(alert.Options{FS: ffs, Dir: "cfg", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Options{Alerts: al}, store.Options{})
	ffs.FailAll(vfs.OpSync, syscall.EIO)
	wantError(t, f.do(req{method: "PUT", target: "/v1/rules/r", body: `{"when":"speed > 1"}`}), http.StatusServiceUnavailable, "could not save the configuration")
	wantError(t, f.do(req{method: "PUT", target: "/v1/zones/z", body: yard}), http.StatusServiceUnavailable, "nothing was changed")
	ffs.Reset()
	wantError(t, f.get("/v1/rules/r"), http.StatusNotFound, "not found")
	wantError(t, f.get("/v1/zones/z"), http.StatusNotFound, "not found")
	if !strings.Contains(f.log.String(), "status=503") {
		t.Fatalf("503 not logged: %s", f.log)
	}
}

// FuzzPutRule: any body gets a 200 or a 4xx JSON answer, and a stored rule
// reads back as it was put.
func FuzzPutRule(f *testing.F) {
	fx, _ := newAlertFixture(f)
	wantJSON(f, fx.do(req{method: "PUT", target: "/v1/zones/yard-3", body: yard}), http.StatusOK)
	for _, s := range []string{
		`{"when":"speed > 90","for":"30s","severity":"critical"}`,
		`{"when":"inside(\"yard-3\") && speed > 5"}`,
		`{"when":"near(\"yard-3\", 1e9) || dt > 5","for":"1h"}`,
		`{"when":"speed > sped"}`, `{"when":"(((("}`, `{"for":"-1s"}`, `null`, `{"when":"\u0000"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fx.t = t
		w := fx.do(req{method: "PUT", target: "/v1/rules/r", body: body})
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("invalid JSON answer %q", w.Body)
		}
		if w.Code != http.StatusOK {
			return
		}
		var put, got map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &put)
		_ = json.Unmarshal(wantJSON(t, fx.get("/v1/rules/r"), http.StatusOK), &got)
		if put["when"] != got["when"] || put["for"] != got["for"] || put["severity"] != got["severity"] {
			t.Fatalf("put %v, read back %v", put, got)
		}
	})
}

// TestPutRulesBulk: PUT /v1/rules stores many rules at once, or, if one
// is bad, none of them (the error names it).
func TestPutRulesBulk(t *testing.T) {
	f, al := newAlertFixture(t)
	put := func(body string) *httptest.ResponseRecorder {
		return f.do(req{method: "PUT", target: "/v1/rules", body: body})
	}
	wantJSON(t, f.do(req{method: "PUT", target: "/v1/rules/keep", body: `{"when":"speed > 1"}`}), http.StatusOK)
	got := string(wantJSON(t, put(`{"rules":[{"name":"a","when":"speed > 90","for":"30s","severity":"critical"},{"name":"keep","when":"speed > 2"}]}`), http.StatusOK))
	if got != `{"rules":2,"replaced":1}` {
		t.Fatalf("bulk PUT: %s", got)
	}
	if r, ok := al.GetRule("a"); !ok || r.Severity != "critical" || r.For.Seconds() != 30 {
		t.Fatalf("rule a: %+v", r)
	}
	if r, _ := al.GetRule("keep"); r.When != "speed > 2" {
		t.Fatalf("rule keep: %+v", r)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"rules":[{"name":"b","when":"speed > 1"},{"name":"c","when":"sped > 1"}]}`, `unknown field \"sped\"`},
		{`{"rules":[{"name":"b","when":"speed > 1"},{"name":"b","when":"speed > 2"}]}`, `rule \"b\" appears twice`},
		{`{"rules":[{"name":"b","when":"speed > 1","for":"x"}]}`, `rule \"b\": \"for\"`},
		{`{"rules":[{"name":"b b","when":"speed > 1"}]}`, `rule name \"b b\"`},
		{`{"rules":[{"name":"b","when":"speed > 1","extra":1}]}`, `unknown field \"extra\"`},
		{`{"rule":[]}`, `unknown field \"rule\"`},
		{`{}`, `no \"rules\" array`},
		{`[`, `alert: rules:`},
	} {
		w := put(tc.body)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("PUT %s: %d %s, want 400 with %s", tc.body, w.Code, w.Body, tc.want)
		}
	}
	if _, ok := al.GetRule("b"); ok || len(al.Rules()) != 2 {
		t.Fatalf("a refused bulk PUT stored rules: %d", len(al.Rules()))
	}
}

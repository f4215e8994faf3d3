package osmand

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/store"
)

type fakeEngine struct {
	mu      sync.Mutex
	applied []fleet.Update
	fail    error
}

func (e *fakeEngine) Apply(b []fleet.Update) (store.Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail != nil {
		return store.Result{}, e.fail
	}
	for _, u := range b {
		u.ID = append([]byte(nil), u.ID...)
		e.applied = append(e.applied, u)
	}
	return store.Result{Updated: len(b)}, nil
}

func TestServer(t *testing.T) {
	eng := &fakeEngine{}
	com := gateway.NewCommitter(eng, 0, 0)
	defer com.Close()
	s, err := Listen(Options{Addr: "127.0.0.1:0", Speed: KmPerHour, MaxAhead: 5 * time.Minute, Logger: slog.New(slog.DiscardHandler)}, com)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr().String()
	ts := time.Now().Unix() - 10
	do := func(method, path, ct, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	tss := func(d int64) string { return time.Unix(ts+d, 0).UTC().Format(time.RFC3339) }
	for _, tt := range []struct {
		method, path, ct, body string
		code                   int
		frag                   string
	}{
		{"GET", "/?id=a&lat=1&lon=2&speed=50&timestamp=" + tss(0), "", "", 200, `{"ok":true}`},
		{"POST", "/?id=b&lat=1&lon=2", "", "", 200, "ok"},
		{"POST", "/", "application/x-www-form-urlencoded", "id=c&lat=3&lon=4&bearing=10", 200, "ok"},
		{"POST", "/", "application/json", `{"device_id":"d","location":{"coords":{"latitude":5,"longitude":6,"speed":1}}}`, 200, "ok"},
		{"GET", "/?id=e&lat=1&lon=2&timestamp=" + tss(3600), "", "", 400, "ahead of the server clock"},
		{"GET", "/?id=tr%20uck&lat=1&lon=2", "", "", 400, "invalid id"},
		{"GET", "/?lat=1&lon=2", "", "", 400, "missing id"},
		{"POST", "/", "application/json", `{"device_id":`, 400, "invalid JSON"},
		{"POST", "/", "application/x-www-form-urlencoded", "id=c&lat=%zz", 400, "invalid URL escape"},
		{"POST", "/", "application/json", strings.Repeat(" ", DefaultMaxBody+1), 413, "larger"},
		{"DELETE", "/", "", "", 405, "GET or POST"},
	} {
		code, body := do(tt.method, tt.path, tt.ct, tt.body)
		if code != tt.code || !strings.Contains(body, tt.frag) {
			t.Errorf("%s %s %s: %d %s, want %d %q", tt.method, tt.path, tt.body, code, body, tt.code, tt.frag)
		}
	}
	if len(eng.applied) != 4 || string(eng.applied[0].ID) != "a" || eng.applied[0].Speed != 500 || eng.applied[2].Heading != 10 || eng.applied[3].Speed != 36 {
		t.Fatalf("applied %+v", eng.applied)
	}
	st := s.Stats.Snapshot()
	if st.Points != 4 || st.Acks != 4 || st.BadFrames != 6 {
		t.Fatalf("stats %+v", st)
	}
	eng.fail = errors.New("disk full")
	if code, body := do("GET", "/?id=a&lat=1&lon=2", "", ""); code != 503 || !strings.Contains(body, "disk full") {
		t.Fatalf("engine failure: %d %s", code, body)
	}
}

// TestServerParams: a form body's parameters win over the query's, a JSON
// Content-Type may carry parameters, and the attributes reach the engine;
// many requests on one keep-alive connection reuse the pooled scratch
// without mixing their IDs.
func TestServerParams(t *testing.T) {
	eng := &fakeEngine{}
	com := gateway.NewCommitter(eng, 0, 0)
	defer com.Close()
	s, err := Listen(Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, com)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr().String()
	post := func(path, ct, body string) int {
		t.Helper()
		res, err := http.Post(base+path, ct, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if c := post("/?id=query&lat=9&lon=9&batt=50", "application/x-www-form-urlencoded", "id=body&lat=1&lon=2&ignition=true"); c != 200 {
		t.Fatalf("form: %d", c)
	}
	if c := post("/", "Application/JSON; charset=utf-8", `{"device_id":"j","location":{"coords":{"latitude":3,"longitude":4,"accuracy":7}}}`); c != 200 {
		t.Fatalf("json: %d", c)
	}
	for i := range 50 {
		res, err := http.Get(fmt.Sprintf("%s/?id=k%d&lat=1&lon=%d", base, i, i))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if len(eng.applied) != 52 {
		t.Fatalf("%d applied", len(eng.applied))
	}
	u := eng.applied[0]
	if ign, _ := u.Attrs.Get(fleet.Ignition); string(u.ID) != "body" || u.LatDeg() != 1 || ign != 1 {
		t.Fatalf("form: %+v", u)
	}
	if bl, ok := u.Attrs.Get(fleet.BatteryLevel); !ok || bl != 50 { // only in the query: still read
		t.Fatalf("form: battery %d %v", bl, ok)
	}
	if acc, _ := eng.applied[1].Attrs.Get(fleet.Accuracy); string(eng.applied[1].ID) != "j" || acc != 70 {
		t.Fatalf("json: %+v", eng.applied[1])
	}
	for i, u := range eng.applied[2:] {
		if string(u.ID) != fmt.Sprintf("k%d", i) || u.LonDeg() != float64(i) {
			t.Fatalf("request %d: %s %v", i, u.ID, u.LonDeg())
		}
	}
}

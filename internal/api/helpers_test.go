package api

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/ingest"
	"github.com/fleetd/fleetd/internal/store"
)

var seedFlag = flag.Int64("seed", 0, "seed of the randomized tests (0: from the clock); each test logs the seed it used")

// testSeed returns the seed for a randomized test and logs it for replay
// with -seed.
func testSeed(t testing.TB) int64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	return seed
}

func TestMain(m *testing.M) {
	code := m.Run()
	closeLoopback()      // the benchmarks' shared server
	closeHistoryServer() // and the history benchmarks' one
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fixture is a Server over a fresh engine, with its log captured.
type fixture struct {
	t   testing.TB
	s   *Server
	eng *engine.Engine
	log *syncBuffer
}

func newFixture(t testing.TB, o Options, so store.Options) *fixture {
	t.Helper()
	eng, err := engine.Open(engine.Options{Store: so})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	logBuf := &syncBuffer{}
	o.Engine = eng
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(logBuf, nil))
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, s: s, eng: eng, log: logBuf}
}

// req is a request to send through the handler.
type req struct {
	method, target string
	body           string
	header         map[string]string
	chunked        bool // send the body without a Content-Length
}

func (f *fixture) do(r req) *httptest.ResponseRecorder {
	f.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
		if r.chunked {
			body = io.MultiReader(body) // hides the length from NewRequest
		}
	}
	hr := httptest.NewRequest(r.method, r.target, body)
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.s.ServeHTTP(w, hr)
	return w
}

func (f *fixture) get(target string) *httptest.ResponseRecorder {
	return f.do(req{method: "GET", target: target})
}

// ndjsonHeader is the header of a POST /v1/positions with an NDJSON body.
var ndjsonHeader = map[string]string{"Content-Type": "application/x-ndjson"}

// post sends a POST /v1/positions; contentType "" sends application/x-ndjson.
func (f *fixture) post(body, contentType string) *httptest.ResponseRecorder {
	if contentType == "" {
		contentType = "application/x-ndjson"
	}
	h := map[string]string{"Content-Type": contentType}
	return f.do(req{method: "POST", target: "/v1/positions", body: body, header: h})
}

// postResp is a POST /v1/positions answer, decoded strictly.
type postResp struct {
	Accepted int                `json:"accepted"`
	Rejected int                `json:"rejected"`
	Stale    int                `json:"stale"`
	Errors   []ingest.LineError `json:"errors"`
	Unknown  []string           `json:"unknown_fields"`
	Error    string             `json:"error"`
	Refused  int                `json:"refused"`
}

// decodeStrict decodes a JSON body, refusing unknown fields and trailing data.
func decodeStrict(t testing.TB, body []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %q: %v", truncate(body), err)
	}
	if dec.More() {
		t.Fatalf("trailing data after JSON in %q", truncate(body))
	}
}

// keys returns the sorted keys of a JSON object.
func keys(t testing.TB, body []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not a JSON object: %q: %v", truncate(body), err)
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// wantJSON checks the status and Content-Type and returns the body.
func wantJSON(t testing.TB, w *httptest.ResponseRecorder, code int) []byte {
	t.Helper()
	if w.Code != code {
		t.Fatalf("status %d, want %d; body %s", w.Code, code, truncate(w.Body.Bytes()))
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	if !json.Valid(w.Body.Bytes()) {
		t.Fatalf("invalid JSON: %q", truncate(w.Body.Bytes()))
	}
	return w.Body.Bytes()
}

// wantError checks an error answer and that its message contains frag.
func wantError(t testing.TB, w *httptest.ResponseRecorder, code int, frag string) {
	t.Helper()
	body := wantJSON(t, w, code)
	var e struct {
		Error string `json:"error"`
	}
	decodeStrict(t, body, &e)
	if e.Error == "" || !strings.Contains(e.Error, frag) {
		t.Fatalf("error %q, want it to contain %q", e.Error, frag)
	}
}

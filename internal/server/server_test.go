package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/feed"
	"github.com/fleetd/fleetd/internal/vfs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t *testing.T, fs vfs.FS) (*Server, *httptest.Server) {
	t.Helper()
	s, err := Open(Options{
		Engine: engine.Options{DataDir: "/data", FS: fs},
		Feed:   feed.Options{Stall: 2 * time.Second},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	return s, ts
}

func stop(t *testing.T, s *Server, ts *httptest.Server) {
	t.Helper()
	s.CloseStreams()
	ts.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestEndToEnd drives the assembled server over HTTP: a geofence and a
// rule, a live-feed subscriber, positions that enter and leave the yard,
// and a restart that must keep the zone, the rule and the trucks.
func TestEndToEnd(t *testing.T) {
	fs := vfs.NewMem()
	s, ts := open(t, fs)

	yard := `{"type":"Polygon","coordinates":[[[-74.01,40.70],[-73.99,40.70],[-73.99,40.72],[-74.01,40.72],[-74.01,40.70]]]}`
	if code, body := do(t, "PUT", ts.URL+"/v1/zones/yard-3", yard); code != 200 {
		t.Fatalf("PUT zone: %d %s", code, body)
	}
	if code, body := do(t, "PUT", ts.URL+"/v1/rules/in-yard", `{"when":"inside(\"yard-3\")"}`); code != 200 {
		t.Fatalf("PUT rule: %d %s", code, body)
	}
	if code, body := do(t, "PUT", ts.URL+"/v1/rules/bad", `{"when":"sped > 90"}`); code != 400 || !strings.Contains(body, "did you mean") {
		t.Fatalf("PUT bad rule: %d %s", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A bbox (around the yard) makes a narrow subscriber, which gets every
	// update in order; a wide one would get conflated frames (feed's doc).
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/stream?types=position,alert&bbox=-75,40,-73,41", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, res)
	}
	defer res.Body.Close()
	events := make(chan map[string]any, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) == nil {
				events <- ev
			}
		}
	}()
	// Wait until the subscription is registered before publishing.
	for i := 0; s.Feed.Stats().Subscribers == 0; i++ {
		if i > 500 {
			t.Fatal("subscriber never registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	post := func(body string) {
		if code, b := do(t, "POST", ts.URL+"/v1/positions", body); code != 200 {
			t.Fatalf("POST: %d %s", code, b)
		}
	}
	post(`{"id":"truck-1","lat":40.71,"lon":-74.0,"ts":1764000000,"speed":10}`) // inside
	want := []string{"position", "alert:firing"}
	post(`{"id":"truck-1","lat":40.80,"lon":-74.0,"ts":1764000010,"speed":50}`) // out
	want = append(want, "position", "alert:resolved")
	var got []string
	for len(got) < len(want) {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended after %v", got)
			}
			k := ev["type"].(string)
			if k == "alert" {
				k += ":" + ev["state"].(string)
				if ev["rule"] != "in-yard" || ev["id"] != "truck-1" {
					t.Fatalf("alert %v", ev)
				}
			}
			got = append(got, k)
		case <-ctx.Done():
			t.Fatalf("events so far %v, want %v", got, want)
		}
	}
	// Per truck, the alert follows the position that caused it.
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", got, want)
	}
	if code, body := do(t, "GET", ts.URL+"/v1/alerts", ""); code != 200 || strings.Contains(body, "truck-1") {
		t.Fatalf("alerts after leaving the yard: %d %s", code, body)
	}
	if code, body := do(t, "GET", ts.URL+"/v1/stats", ""); code != 200 || !strings.Contains(body, `"subscribers":1`) {
		t.Fatalf("stats: %d %s", code, body)
	}
	if code, body := do(t, "GET", ts.URL+"/v1/density?bbox=-180,-90,180,90&zoom=1", ""); code != 200 || !strings.Contains(body, "cells") {
		t.Fatalf("density: %d %s", code, body)
	}
	if code, body := do(t, "GET", ts.URL+"/", ""); code != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("dashboard: %d %.200s", code, body)
	}
	cancel()
	stop(t, s, ts)

	// Restart on the same data: zone, rule and truck are back.
	s, ts = open(t, fs)
	defer stop(t, s, ts)
	if code, body := do(t, "GET", ts.URL+"/v1/rules/in-yard?disasm=1", ""); code != 200 || !strings.Contains(body, "disasm") {
		t.Fatalf("rule after restart: %d %s", code, body)
	}
	if code, _ := do(t, "GET", ts.URL+"/v1/zones/yard-3", ""); code != 200 {
		t.Fatalf("zone after restart: %d", code)
	}
	if code, body := do(t, "GET", ts.URL+"/v1/trucks/truck-1", ""); code != 200 || !strings.Contains(body, `"lat":40.8`) {
		t.Fatalf("truck after restart: %d %s", code, body)
	}
}

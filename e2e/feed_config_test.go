package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestFeedConfigEndToEnd drives issue 19's contract through the real
// binary, with the default flags and with tuned ones: rules defined one by
// one and in bulk (all or none) survive a restart from the change log; a
// WebSocket client that sends a data message frees its subscriber slot at
// once; an unfiltered subscriber gets each truck's newest position,
// conflated, while a bbox subscriber gets every update.
func TestFeedConfigEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"tuned", []string{"--max-subscribers", "3", "--stream-stall", "5s", "--fsync", "always", "--stream-wide-rate", "1KB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			p := startData(t, data, tc.args...)
			p.do("PUT", "/v1/zones/yard", `{"type":"Polygon","coordinates":[[[-74.1,40.6],[-73.8,40.6],[-73.8,40.9],[-74.1,40.6]]]}`).want(t, 200)
			var b strings.Builder
			b.WriteString(`{"rules":[`)
			for i := range 1000 {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"name":"bulk-%04d","when":"speed > %d || inside(\"yard\") && speed > 1","for":"%ds"}`, i, 50+i%80, i%60)
			}
			b.WriteString(`]}`)
			if got := string(p.do("PUT", "/v1/rules", b.String()).want(t, 200)); got != `{"rules":1000,"replaced":0}` {
				t.Fatalf("bulk PUT: %s", got)
			}
			// A bad rule in a bulk body: nothing changes.
			p.do("PUT", "/v1/rules", `{"rules":[{"name":"ok","when":"speed > 1"},{"name":"bad","when":"sped > 1"}]}`).wantErr(t, 400, `rule "bad"`)
			for i := range 50 {
				p.do("PUT", fmt.Sprintf("/v1/rules/one-%02d", i), `{"when":"speed > 90","severity":"critical"}`).want(t, 200)
			}
			p.do("DELETE", "/v1/rules/bulk-0007", "").want(t, 204)
			p.stop(sigterm)
			if _, err := os.Stat(filepath.Join(data, "config", "config.log")); err != nil {
				t.Fatalf("no change log: %v", err)
			}
			p = startData(t, data, tc.args...)
			var list struct {
				Rules []struct{ Name string } `json:"rules"`
			}
			if err := json.Unmarshal(p.do("GET", "/v1/rules", "").want(t, 200), &list); err != nil {
				t.Fatal(err)
			}
			if len(list.Rules) != 1049 || list.Rules[0].Name != "bulk-0000" {
				t.Fatalf("after restart: %d rules", len(list.Rules))
			}
			p.do("GET", "/v1/rules/ok", "").wantErr(t, 404, "not found")
			p.do("GET", "/v1/rules/bulk-0007", "").wantErr(t, 404, "not found")

			// The WebSocket slot.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws://"+p.addr+"/v1/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for subscribers(t, p) != 0 {
				if time.Since(start) > 2*time.Second {
					t.Fatal("the WebSocket slot is still held 2 s after its connection was closed")
				}
				time.Sleep(20 * time.Millisecond)
			}
			c.CloseNow()

			// Conflation.
			wide := streamEvents(t, ctx, p, "/v1/stream?types=position")
			narrow := streamEvents(t, ctx, p, "/v1/stream?types=position&bbox=-75,40,-73,41")
			for subscribers(t, p) != 2 {
				time.Sleep(10 * time.Millisecond)
			}
			for k := range 20 {
				p.do("POST", "/v1/positions", fmt.Sprintf(`{"id":"truck-1","lat":40.7,"lon":-74,"ts":%d,"speed":30}`, 1_764_000_000+k),
					"Content-Type", "application/x-ndjson").want(t, 200)
			}
			var got []int64
			for len(got) == 0 || got[len(got)-1] != 1_764_000_019 {
				select {
				case ev := <-wide:
					got = append(got, ev)
				case <-time.After(5 * time.Second):
					t.Fatalf("wide subscriber: positions %v, never the newest", got)
				}
			}
			if len(got) > 5 {
				t.Fatalf("wide subscriber got %d positions of one truck posted 20 times at once: %v", len(got), got)
			}
			for k := range 20 {
				select {
				case ts := <-narrow:
					if ts != int64(1_764_000_000+k) {
						t.Fatalf("narrow subscriber: position %d has ts %d", k, ts)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("narrow subscriber: %d of 20 positions", k)
				}
			}
		})
	}
}

// subscribers reads /v1/stats' subscriber count.
func subscribers(t *testing.T, p *proc) int {
	var st struct {
		Subscribers int `json:"subscribers"`
	}
	if err := json.Unmarshal(p.do("GET", "/v1/stats", "").want(t, 200), &st); err != nil {
		t.Fatal(err)
	}
	return st.Subscribers
}

// streamEvents subscribes over SSE and sends each position's ts.
func streamEvents(t *testing.T, ctx context.Context, p *proc, path string) <-chan int64 {
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url(path), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET %s: %v %v", path, err, res)
	}
	t.Cleanup(func() { res.Body.Close() })
	out := make(chan int64, 64)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev struct {
				Type string `json:"type"`
				TS   int64  `json:"ts"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Type == "position" {
				out <- ev.TS
			}
		}
	}()
	return out
}

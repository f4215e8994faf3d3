package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLargeBatch posts one body of more than twice engine.ApplyChunk
// (16,384) lines to a server with its default flags — each truck's newer
// point first and its late, older one after, plus exact resends — so
// that the engine applies it in pieces. Every line is accepted, and after
// kill -9 and a restart every truck holds its newer point and its history
// both points, once each (the resends dropped as duplicates).
func TestLargeBatch(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := startData(t, data)
	const trucks = 20_000
	now := time.Now().Unix()
	id := func(i int) string { return fmt.Sprintf("big-%05d", i) }
	var b strings.Builder
	line := func(i int, ts int64) {
		fmt.Fprintf(&b, `{"id":%q,"lat":%.5f,"lon":%.5f,"ts":%d,"speed":40}`+"\n", id(i), 40+float64(i%1000)/1000, -100+float64(i%777)/777, ts)
	}
	for i := range trucks {
		line(i, now-600)
	}
	for i := range trucks {
		line(i, now-1200) // late: older than the stored point
	}
	const resent = 1000
	for i := range resent {
		line(i, now-600) // resent as it was
	}
	var a postAnswer
	decode(t, p.do("POST", "/v1/positions", b.String(), "Content-Type", "application/x-ndjson").want(t, 200), &a)
	if total := 2*trucks + resent; a.Accepted != total || a.Rejected != 0 || a.Stale != trucks {
		// a resend of the stored point is not older than it: not stale
		t.Fatalf("answer %+v, want %d accepted, %d stale (the late points)", a, total, trucks)
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p = startData(t, data)
	for _, i := range []int{0, 1, trucks / 2, trucks - 1} {
		var got struct {
			TS int64 `json:"ts"`
		}
		if r := p.do("GET", "/v1/trucks/"+id(i), ""); r.code != 200 || json.Unmarshal(r.body, &got) != nil || got.TS != now-600 {
			t.Fatalf("%s after kill -9: %d %s, want ts %d", id(i), r.code, r.body, now-600)
		}
		var h struct {
			Points []struct {
				TS int64 `json:"ts"`
			} `json:"points"`
		}
		r := p.do("GET", fmt.Sprintf("/v1/trucks/%s/history?from=%d&to=%d", id(i), now-3600, now), "")
		if r.code != 200 || json.Unmarshal(r.body, &h) != nil || len(h.Points) != 2 || h.Points[0].TS != now-1200 || h.Points[1].TS != now-600 {
			t.Fatalf("%s's history after kill -9: %d %s, want its two points", id(i), r.code, r.body)
		}
	}
}

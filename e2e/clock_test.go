package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Device data as real trackers send it: on time, hours and days late
// (buffered in a dead zone), with a clock reset to 1980, in milliseconds,
// with no clock at all (0), and with clocks running ahead. Each line's
// verdict is what the contract promises under the server's DEFAULT flags
// (24h TTL, 5m clock skew).
type deviceLine struct {
	id, ts string // ts as JSON
	reject string // "" if accepted; else a fragment of the reason
	want   int64  // the ts stored for id once all lines are in (0: none)
}

func deviceLines(now int64) []deviceLine {
	return []deviceLine{
		{id: "on-time", ts: fmt.Sprint(now - 5), want: now - 5},
		{id: "hours-late", ts: fmt.Sprint(now - 3*3600), want: now - 3*3600},
		{id: "days-late", ts: fmt.Sprint(now - 9*86400), want: now - 9*86400},
		{id: "rfc3339-late", ts: `"` + time.Unix(now-2*86400, 0).UTC().Format(time.RFC3339) + `"`, want: now - 2*86400},
		{id: "clock-1980", ts: "315532800", want: 315532800},
		{id: "millis", ts: fmt.Sprint((now-60)*1000 + 123), want: now - 60},
		{id: "slightly-ahead", ts: fmt.Sprint(now + 60), want: now + 60},
		{id: "hour-ahead", ts: fmt.Sprint(now + 3600), reject: "ahead of the server clock (max 5m0s)"},
		{id: "year-ahead", ts: fmt.Sprint(now + 400*86400), reject: "is 400 days ahead of the server clock"},
		{id: "zero", ts: "0", reject: "device clock that is not set"},
		{id: "micros", ts: fmt.Sprint(now * 1_000_000), reject: "want Unix seconds, or milliseconds"},
	}
}

func postDevices(t *testing.T, p *proc, lines []deviceLine) postAnswer {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, `{"id":%q,"lat":52.52,"lon":13.40,"ts":%s}`+"\n", l.id, l.ts)
	}
	var a postAnswer
	decode(t, p.do("POST", "/v1/positions", b.String(), "Content-Type", "application/x-ndjson").want(t, 200), &a)
	return a
}

// checkTrucks checks that every line's truck holds the ts it should, or is
// absent if its line was rejected.
func checkTrucks(t *testing.T, p *proc, lines []deviceLine) {
	t.Helper()
	for _, l := range lines {
		r := p.do("GET", "/v1/trucks/"+l.id, "")
		if l.want == 0 {
			if r.code != 404 {
				t.Errorf("%s: status %d, want 404 (rejected): %s", l.id, r.code, r.body)
			}
			continue
		}
		var got struct {
			TS int64 `json:"ts"`
		}
		if r.code != 200 || json.Unmarshal(r.body, &got) != nil || got.TS != l.want {
			t.Errorf("%s: status %d %s, want ts %d", l.id, r.code, r.body, l.want)
		}
	}
}

func stats(t *testing.T, p *proc) map[string]any {
	t.Helper()
	var st map[string]any
	if err := json.Unmarshal(p.do("GET", "/v1/stats", "").want(t, 200), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestDeviceClocksDefaults runs the server with its default flags only and
// checks every line's verdict and every truck's state, also after a late
// update, a restart and the sweeps that run in the meantime.
func TestDeviceClocksDefaults(t *testing.T) {
	data := t.TempDir()
	p := startData(t, data)
	now := time.Now().Unix()
	lines := deviceLines(now)
	a := postDevices(t, p, lines)
	wantRejected := 0
	for i, l := range lines {
		if l.reject == "" {
			continue
		}
		found := false
		for _, e := range a.Errors {
			found = found || e.Line == i+1 && strings.Contains(e.Error, l.reject)
		}
		if !found {
			t.Errorf("line %d (%s): no rejection containing %q in %+v", i+1, l.id, l.reject, a.Errors)
		}
		wantRejected++
	}
	if a.Accepted != len(lines)-wantRejected || a.Rejected != wantRejected || a.Stale != 0 {
		t.Fatalf("answer %+v", a)
	}
	// A point from yesterday for a truck that is further on: kept (stale),
	// not moving it.
	a = postDevices(t, p, []deviceLine{{id: "on-time", ts: fmt.Sprint(now - 86400)}})
	if a.Accepted != 1 || a.Stale != 1 {
		t.Fatalf("late update answer %+v", a)
	}
	checkTrucks(t, p, lines)
	st := stats(t, p)
	if st["stale_total"] != 1.0 || st["rejected_future_total"] != 2.0 || st["ts_milliseconds_total"] != 1.0 || st["ttl_s"] != 86400.0 {
		t.Fatalf("stats: stale %v future %v millis %v ttl %v", st["stale_total"], st["rejected_future_total"], st["ts_milliseconds_total"], st["ttl_s"])
	}
	p.waitLog("rejected updates with a ts ahead of the server clock")

	// A restart recovers every truck, the days-old ones included, and the
	// recovered ones are not expired for being old.
	if code := p.stop(sigterm); code != 0 {
		t.Fatalf("exit %d", code)
	}
	p = startData(t, data)
	time.Sleep(1500 * time.Millisecond) // a sweep tick or more
	checkTrucks(t, p, lines)
}

// TestExpiryCountsFromLastHeard: with a short TTL, trucks posting days-old
// points live as long as they keep posting, and go once silent for the TTL.
func TestExpiryCountsFromLastHeard(t *testing.T) {
	const ttl = 3 * time.Second
	p := startData(t, t.TempDir(), "--ttl", ttl.String())
	now := time.Now().Unix()
	lines := deviceLines(now)
	postDevices(t, p, lines)
	silentAt := time.Now()

	// "days-late" keeps reporting old points (each older than the last:
	// all stale) through two TTLs; the others fall silent.
	for i := 1; time.Since(silentAt) < 2*ttl; i++ {
		a := postDevices(t, p, []deviceLine{{id: "days-late", ts: fmt.Sprint(now - 9*86400 - int64(i))}})
		if a.Stale != 1 {
			t.Fatalf("answer %+v", a)
		}
		if time.Since(silentAt) < ttl-200*time.Millisecond { // nobody expires before the TTL
			checkTrucks(t, p, lines)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, l := range lines {
		code := p.do("GET", "/v1/trucks/"+l.id, "").code
		if want := map[bool]int{true: 200, false: 404}[l.id == "days-late"]; code != want {
			t.Errorf("%s after %v silent: status %d, want %d", l.id, time.Since(silentAt).Round(time.Millisecond), code, want)
		}
	}
	st := stats(t, p)
	if want := float64(len(lines) - 4 - 1); st["expired_total"] != want || st["expiry_sweeps"].(float64) < 10 {
		t.Fatalf("expired_total %v (want %v), sweeps %v", st["expired_total"], want, st["expiry_sweeps"])
	}
	p.waitLog("expired trucks not heard from for the TTL")
}

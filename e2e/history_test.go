package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// histPoint is a point as posted, in the store's units.
type histPoint struct {
	id       string
	ts       int64
	lat, lon int64 // 1e-7°
}

// TestHistoryCrashKeepsAcknowledged runs the server with its default
// flags (history on) while devices post realistic data — on time, hours
// late, resent, out of order — kills it with SIGKILL at random moments,
// restarts it on the same data directory and checks through the export
// that every acknowledged point is in history exactly once.
func TestHistoryCrashKeepsAcknowledged(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	data := filepath.Join(t.TempDir(), "data")
	now := time.Now().Unix()
	var (
		mu    sync.Mutex
		acked = map[histPoint]bool{}
		seq   atomic.Int64
	)
	rounds := 3
	if testing.Short() {
		rounds = 2
	}
	for round := 0; round <= rounds; round++ {
		p := startData(t, data, "--snapshot-every", "64KiB")
		checkHistory(t, p, acked, now-48*3600, 300*(round+1))
		if round == rounds {
			if code := p.stop(sigterm); code != 0 {
				t.Fatalf("clean stop exited %d", code)
			}
			// and once more after a clean shutdown (history's buffer was
			// written, the log truncated)
			p = startData(t, data)
			checkHistory(t, p, acked, now-48*3600, 300*(round+1))
			return
		}
		var wg sync.WaitGroup
		var stopped atomic.Bool
		for w := range 3 {
			wseed := r.Uint64()
			wg.Go(func() {
				rr := rand.New(rand.NewPCG(wseed, uint64(w)))
				for !stopped.Load() {
					var body bytes.Buffer
					var batch []histPoint
					for range 100 {
						n := seq.Add(1)
						pt := histPoint{id: fmt.Sprintf("dev-%03d", rr.IntN(300)), ts: now - 3600 + n%3000,
							lat: int64(25e7 + rr.Float64()*24e7), lon: int64(-124e7 + rr.Float64()*57e7)}
						switch rr.IntN(10) {
						case 0: // buffered in a dead zone: hours late
							pt.ts -= int64(rr.IntN(20 * 3600))
						case 1: // a resend of one just sent
							if len(batch) > 0 {
								pt = batch[rr.IntN(len(batch))]
							}
						}
						batch = append(batch, pt)
						fmt.Fprintf(&body, `{"id":%q,"lat":%.7f,"lon":%.7f,"ts":%d}`+"\n", pt.id, float64(pt.lat)/1e7, float64(pt.lon)/1e7, pt.ts)
					}
					res, err := http.Post(p.url("/v1/positions"), "application/x-ndjson", &body)
					if err != nil {
						return // killed
					}
					var out struct{ Accepted int }
					err = json.NewDecoder(res.Body).Decode(&out)
					res.Body.Close()
					if err != nil || res.StatusCode != 200 {
						return
					}
					if out.Accepted != len(batch) {
						t.Errorf("accepted %d of %d", out.Accepted, len(batch))
						return
					}
					mu.Lock()
					for _, pt := range batch {
						acked[pt] = true
					}
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(300+r.IntN(1200)) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		stopped.Store(true)
		wg.Wait()
		p.wait()
		mu.Lock()
		t.Logf("round %d: killed with %d distinct points acknowledged", round, len(acked))
		mu.Unlock()
	}
}

// checkHistory exports history since from and checks that every
// acknowledged point is there once, and nothing else is.
func checkHistory(t *testing.T, p *proc, acked map[histPoint]bool, from int64, maxExtra int) {
	t.Helper()
	res, err := http.Get(p.url(fmt.Sprintf("/v1/history/export?from=%d", from)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("export: %d", res.StatusCode)
	}
	got := map[histPoint]int{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		var x struct {
			ID       string
			TS       int64
			Lat, Lon float64
		}
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			t.Fatalf("export line %q: %v", sc.Bytes(), err)
		}
		got[histPoint{x.ID, x.TS, int64(math.Round(x.Lat * 1e7)), int64(math.Round(x.Lon * 1e7))}]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if tr := res.Trailer.Get("Fleetd-Incomplete"); tr != "false" {
		t.Fatalf("export trailer Fleetd-Incomplete %q", tr)
	}
	for pt := range acked {
		if got[pt] == 0 {
			t.Fatalf("acknowledged point %+v is not in history (%d points there, %d acknowledged)", pt, len(got), len(acked))
		}
	}
	for pt, n := range got {
		if n > 1 {
			t.Fatalf("point %+v is in history %d times", pt, n)
		}
	}
	// Points that were in flight when the server was killed may be there
	// without an acknowledgement; nothing else may.
	if extra := len(got) - len(acked); extra < 0 || extra > maxExtra {
		t.Fatalf("history holds %d points, %d were acknowledged", len(got), len(acked))
	}
}

// TestHistoryCorruptFileRepair damages a history file of a stopped
// server: the restarted server still serves, says which answers are
// incomplete and counts the file; `fleetd repair` quarantines it and the
// answers are complete again.
func TestHistoryCorruptFileRepair(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := startData(t, data)
	now := time.Now().Unix()
	var body bytes.Buffer
	for i := range 50 {
		for k := range 6 {
			fmt.Fprintf(&body, `{"id":"t%d","lat":%.5f,"lon":7,"ts":%d}`+"\n", i, 45+float64(k)/100, now-int64(k)*1800)
		}
	}
	p.do("POST", "/v1/positions", body.String(), "Content-Type", "application/x-ndjson").want(t, 200)
	if code := p.stop(sigterm); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	runs, _ := filepath.Glob(filepath.Join(data, "history", "*", "*.fhr"))
	if len(runs) == 0 {
		t.Fatal("no history files after a clean stop")
	}
	b, err := os.ReadFile(runs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[40] ^= 0xff // inside the first block
	if err := os.WriteFile(runs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	export := func(p *proc) (points int, incomplete string) {
		res, err := http.Get(p.url(fmt.Sprintf("/v1/history/export?from=%d", now-86400)))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			points++
		}
		return points, res.Trailer.Get("Fleetd-Incomplete")
	}
	p = startData(t, data)
	if n, inc := export(p); inc != "true" || n >= 300 {
		t.Fatalf("export over a damaged file: %d points, incomplete %q", n, inc)
	}
	var st struct {
		History struct {
			Corrupt int `json:"corrupt_runs"`
		}
	}
	if err := json.Unmarshal(p.do("GET", "/v1/stats", "").want(t, 200), &st); err != nil {
		t.Fatal(err)
	}
	if st.History.Corrupt == 0 {
		t.Fatal("/v1/stats does not count the damaged file")
	}
	if !strings.Contains(p.logText(), "history: a run failed a read") {
		t.Fatalf("no log line about the damaged file:\n%s", p.logText())
	}
	p.stop(sigterm)
	out, err := exec.Command(bin, "repair", "--data", data).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "moved to") {
		t.Fatalf("repair: %v\n%s", err, out)
	}
	p = startData(t, data)
	if n, inc := export(p); inc != "false" || n == 0 {
		t.Fatalf("export after repair: %d points, incomplete %q", n, inc)
	}
	p.stop(sigterm)
}

// TestSimHistory loads a fleet's past with `fleetd sim --history` into a
// server with default flags: every truck's points every 30 s over the
// window are in history, in the trail and in the export.
func TestSimHistory(t *testing.T) {
	p := start(t)
	before := time.Now().Unix()
	out, err := exec.Command(bin, "sim", "--target", "http://"+p.addr, "--trucks", "50", "--history", "30m", "--duration", "1ms", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("sim: %v\n%s", err, out)
	}
	after := time.Now().Unix()
	var tr struct {
		Points []struct{ TS int64 }
		Count  int
	}
	if err := json.Unmarshal(p.do("GET", fmt.Sprintf("/v1/trucks/truck-0000007/history?from=%d", before-3600), "").want(t, 200), &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Count < 60 || tr.Count > 62 {
		t.Fatalf("truck-0000007 has %d points, want 60 (every 30 s over 30 min) and at most a live one or two", tr.Count)
	}
	for i := 1; i < 60; i++ {
		if d := tr.Points[i].TS - tr.Points[i-1].TS; d != 30 {
			t.Fatalf("points %d and %d are %d s apart", i-1, i, d)
		}
	}
	if first := tr.Points[0].TS; first < before-1800 || first > after-1800 {
		t.Fatalf("the past starts at %d, want 30 min before the sim started (between %d and %d)", first, before-1800, after-1800)
	}
}

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
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

// ackedPos is the newest acknowledged update of a truck.
type ackedPos struct {
	lat, lon float64
	ts       int64
}

// TestCrashRecovery ingests from several clients while killing the server
// with SIGKILL at random moments, restarts it on the same data directory
// and checks that every acknowledged update survived: each truck is
// present with the last acknowledged position, or a newer one that was in
// flight when the kill came.
func TestCrashRecovery(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	data := filepath.Join(t.TempDir(), "data")
	var (
		mu    sync.Mutex
		acked = map[string]ackedPos{}
		clock atomic.Int64 // every update gets a fresh, larger ts
	)
	clock.Store(1_764_000_000)
	const trucks = 2000
	rounds := 4
	if testing.Short() {
		rounds = 3
	}
	for round := 0; round <= rounds; round++ {
		// Tiny snapshots make kills land during snapshots and log
		// truncation too.
		p := startData(t, data, "--snapshot-every", "48KiB", "--ttl", "0")
		checkAcked(t, p, acked)
		if round == rounds {
			if code := p.stop(sigterm); code != 0 {
				t.Fatalf("clean stop exited %d", code)
			}
			return
		}
		var wg sync.WaitGroup
		var stopped atomic.Bool
		for w := 0; w < 3; w++ {
			wseed := r.Uint64()
			wg.Go(func() {
				rr := rand.New(rand.NewPCG(wseed, 2))
				for !stopped.Load() {
					var body bytes.Buffer
					batch := map[string]ackedPos{}
					for i := 0; i < 200; i++ {
						id := fmt.Sprintf("truck-%07d", rr.IntN(trucks))
						u := ackedPos{lat: 25 + rr.Float64()*24, lon: -124 + rr.Float64()*57, ts: clock.Add(1)}
						batch[id] = u // a later line for the same truck has a larger ts
						fmt.Fprintf(&body, `{"id":%q,"lat":%.7f,"lon":%.7f,"ts":%d}`+"\n", id, u.lat, u.lon, u.ts)
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
					if out.Accepted != 200 {
						t.Errorf("accepted %d of 200", out.Accepted)
						return
					}
					mu.Lock()
					for id, u := range batch {
						if u.ts > acked[id].ts {
							acked[id] = u
						}
					}
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(150+r.IntN(600)) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		stopped.Store(true)
		wg.Wait()
		p.wait()
		mu.Lock()
		t.Logf("round %d: killed with %d trucks acknowledged", round, len(acked))
		mu.Unlock()
	}
}

func checkAcked(t *testing.T, p *proc, acked map[string]ackedPos) {
	t.Helper()
	res := p.do("GET", "/v1/within?bbox=-180,-90,180,90", "")
	if res.code != 200 {
		t.Fatalf("within: %d %s", res.code, res.body)
	}
	var out struct {
		Results []struct {
			ID       string
			Lat, Lon float64
			TS       int64
		}
	}
	if err := json.Unmarshal(res.body, &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]ackedPos{}
	for _, x := range out.Results {
		got[x.ID] = ackedPos{x.Lat, x.Lon, x.TS}
	}
	for id, want := range acked {
		g, ok := got[id]
		switch {
		case !ok:
			t.Fatalf("acknowledged truck %s lost after the crash", id)
		case g.ts < want.ts:
			t.Fatalf("truck %s went back to ts %d, acknowledged %d", id, g.ts, want.ts)
		case g.ts == want.ts && (abs(g.lat-want.lat) > 1e-6 || abs(g.lon-want.lon) > 1e-6):
			t.Fatalf("truck %s at ts %d is at %v,%v, acknowledged %v,%v", id, g.ts, g.lat, g.lon, want.lat, want.lon)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestCorruptLogRefusesThenRepairs flips a byte in the first of several
// WAL records: start-up must refuse with an error naming the file, and
// `fleetd repair` must cut the log so the server starts again.
func TestCorruptLogRefusesThenRepairs(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := startData(t, data, "--ttl", "0")
	for i := 0; i < 3; i++ {
		res := p.do("POST", "/v1/positions", fmt.Sprintf(`{"id":"t%d","lat":1,"lon":2,"ts":%d}`, i, 1_764_000_000+i), "Content-Type", "application/x-ndjson")
		if res.code != 200 {
			t.Fatalf("post: %d %s", res.code, res.body)
		}
	}
	p.cmd.Process.Kill() // no final snapshot: the log is all there is
	p.wait()
	segs, _ := filepath.Glob(filepath.Join(data, "wal", "wal-*.log"))
	if len(segs) != 1 {
		t.Fatalf("segments: %v", segs)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[12] ^= 0xFF // inside the first record
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--data", data).CombinedOutput()
	if err == nil || !strings.Contains(string(out), filepath.Base(segs[0])) || !strings.Contains(string(out), "offset") {
		t.Fatalf("start-up on a corrupt log: err %v, output:\n%s", err, out)
	}
	out, err = exec.Command(bin, "repair", "--data", data).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cut") {
		t.Fatalf("repair: %v\n%s", err, out)
	}
	p = startData(t, data, "--ttl", "0")
	if res := p.do("GET", "/v1/stats", ""); res.code != 200 {
		t.Fatalf("stats after repair: %d", res.code)
	}
	p.stop(sigterm)
}

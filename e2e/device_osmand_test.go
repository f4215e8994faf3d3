package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOsmAndDefaults: the OsmAnd protocol through the real binary (default
// flags): GET query, POST form, the JSON variant, ISO 8601 and millisecond
// timestamps, the knots default, and 400s with a reason.
func TestOsmAndDefaults(t *testing.T) {
	p := start(t, "--osmand", "127.0.0.1:0")
	base := "http://" + gatewayAddr(t, p, "osmand")
	now := time.Now().Unix()
	send := func(method, path, ct, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	iso := time.Unix(now-60, 0).UTC().Format("2006-01-02T15:04:05.000Z")
	for _, tt := range []struct {
		method, path, ct, body string
		code                   int
		frag                   string
	}{
		{"GET", fmt.Sprintf("/?id=phone-1&lat=40.7128&lon=-74.006&timestamp=%d&speed=10&bearing=45&altitude=12.5&batt=80&accuracy=4", now-30), "", "", 200, `{"ok":true}`},
		{"POST", "/", "application/x-www-form-urlencoded", url.Values{"deviceid": {"phone-2"}, "location": {"51.5,-0.12"},
			"timestamp": {iso}}.Encode(), 200, "ok"},
		{"POST", "/", "application/json", fmt.Sprintf(`{"device_id":"phone-3","location":{"timestamp":%d,"coords":{"latitude":35.68,"longitude":139.76,"speed":20,"heading":270}}}`, (now-10)*1000), 200, "ok"},
		{"GET", "/?id=phone-4&lat=95&lon=0", "", "", 400, "lat 95 out of range"},
		{"GET", fmt.Sprintf("/?id=phone-4&lat=1&lon=0&timestamp=%d", now+86400), "", "", 400, "ahead of the server clock"},
		{"POST", "/", "application/json", `{"device_id":"phone-4"`, 400, "invalid JSON"},
	} {
		if code, body := send(tt.method, tt.path, tt.ct, tt.body); code != tt.code || !strings.Contains(body, tt.frag) {
			t.Errorf("%s %s %s: %d %s; want %d %q", tt.method, tt.path, tt.body, code, body, tt.code, tt.frag)
		}
	}
	tr, code := getTruck(t, p, "phone-1")
	if code != 200 || tr.Lat != 40.7128 || tr.Lon != -74.006 || tr.TS != now-30 || tr.Speed != 18.5 || tr.Heading != 45 || tr.Alt == nil || *tr.Alt != 12.5 {
		t.Fatalf("phone-1: %d %+v", code, tr)
	}
	if tr, code := getTruck(t, p, "phone-2"); code != 200 || tr.Lat != 51.5 || tr.Lon != -0.12 || tr.TS != now-60 {
		t.Fatalf("phone-2: %d %+v", code, tr)
	}
	if tr, code := getTruck(t, p, "phone-3"); code != 200 || tr.TS != now-10 || tr.Speed != 72 || tr.Heading != 270 {
		t.Fatalf("phone-3: %d %+v", code, tr)
	}
	if _, code := getTruck(t, p, "phone-4"); code != 404 {
		t.Fatalf("phone-4: %d", code)
	}
	st := gatewayStats(t, p, "osmand")
	if st["points"] != 3 || st["acks"] != 3 || st["bad_frames"] != 3 {
		t.Fatalf("osmand stats %v", st)
	}
}

// TestOsmAndSpeedUnit: --osmand-speed kmh takes the speed as km/h.
func TestOsmAndSpeedUnit(t *testing.T) {
	p := start(t, "--osmand", "127.0.0.1:0", "--osmand-speed", "kmh", "--fsync", "never")
	base := "http://" + gatewayAddr(t, p, "osmand")
	res, err := client.Get(base + "/?id=car&lat=1&lon=2&speed=55.5")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if tr, code := getTruck(t, p, "car"); res.StatusCode != 200 || code != 200 || tr.Speed != 55.5 {
		t.Fatalf("%d %d %+v", res.StatusCode, code, tr)
	}
}

// TestOsmAndKill9: phones reporting over OsmAnd while fleetd is killed
// with SIGKILL; after a restart every answered (200) position is there.
func TestOsmAndKill9(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 5))
	data := filepath.Join(t.TempDir(), "data")
	var (
		mu    sync.Mutex
		acked = map[string]ackedPos{}
		clock atomic.Int64
	)
	clock.Store(time.Now().Unix() - 30*86400)
	for round := 0; round < 2; round++ {
		p := startData(t, data, "--osmand", "127.0.0.1:0")
		checkAcked(t, p, acked)
		base := "http://" + gatewayAddr(t, p, "osmand")
		var wg sync.WaitGroup
		for ph := range 8 {
			pseed := r.Uint64()
			wg.Go(func() {
				rr := rand.New(rand.NewPCG(pseed, 6))
				c := &http.Client{Timeout: 10 * time.Second}
				id := fmt.Sprintf("phone-%d", ph)
				for {
					u := ackedPos{lat: 25 + rr.Float64()*24, lon: -124 + rr.Float64()*57, ts: clock.Add(1)}
					res, err := c.Get(fmt.Sprintf("%s/?id=%s&lat=%.7f&lon=%.7f&timestamp=%d", base, id, u.lat, u.lon, u.ts))
					if err != nil {
						return // killed
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						return
					}
					mu.Lock()
					acked[id] = u
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(300+r.IntN(500)) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		p.wait()
	}
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	checkAcked(t, startData(t, data, "--osmand", "127.0.0.1:0"), acked)
}

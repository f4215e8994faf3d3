package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var respListening = regexp.MustCompile(`msg="resp listening" addr=(\S+)`)

// respAddr returns the RESP address the server logged.
func (p *proc) respAddr() string {
	p.t.Helper()
	p.waitLog(`msg="resp listening"`)
	m := respListening.FindStringSubmatch(p.logText())
	if m == nil {
		p.t.Fatalf("no RESP address in the log:\n%s", p.logText())
	}
	return m[1]
}

// redisCLI finds Debian's redis-cli, installing redis-tools when missing;
// the test skips only if that is impossible.
func redisCLI(t *testing.T) string {
	t.Helper()
	p, err := debianBinary("redis-cli", "redis-tools")
	if err != nil {
		t.Skip(err)
	}
	return p
}

// cli runs redis-cli against addr with args and returns its output
// (redis-cli's raw form: one value a line).
func cli(t *testing.T, bin, addr string, stdin string, args ...string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(bin, append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// httpHit is one result of /v1/nearby or /v1/within.
type httpHit struct {
	ID       string  `json:"id"`
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	DistM    float64 `json:"distance_m"`
	TS       int64   `json:"ts"`
	Speed    float64 `json:"speed"`
	Heading  int     `json:"heading"`
	Altitude float64 `json:"alt"`
}

// TestRESPMatchesHTTP runs the server with its default flags and --resp,
// loads one fleet half over HTTP and half with go-redis pipelined SETs
// (and some with redis-cli --pipe), and asks both front doors the same
// questions: the answers must agree, truck for truck.
func TestRESPMatchesHTTP(t *testing.T) {
	cliBin := redisCLI(t)
	data := filepath.Join(t.TempDir(), "data")
	p := startData(t, data, "--resp", "127.0.0.1:0")
	addr := p.respAddr()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr}) // defaults: tries HELLO 3, falls back to RESP2
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("go-redis PING: %v", err)
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 17))
	const n = 3000
	const ts0 = 1_764_000_000
	var nd bytes.Buffer
	pipe := rdb.Pipeline()
	var cliCmds strings.Builder
	for i := range n {
		id := fmt.Sprintf("truck-%07d", i)
		lat, lon := 40.4+rng.Float64()*0.6, -74.3+rng.Float64()*0.7 // greater New York
		speed, heading := float64(rng.IntN(1000))/10, rng.IntN(360)
		ts := ts0 + rng.IntN(1000)
		switch i % 3 {
		case 0:
			fmt.Fprintf(&nd, `{"id":%q,"lat":%.7f,"lon":%.7f,"ts":%d,"speed":%v,"heading":%d}`+"\n", id, lat, lon, ts, speed, heading)
		case 1:
			pipe.Do(ctx, "SET", "fleet", id, "FIELD", "speed", speed, "FIELD", "heading", heading, "POINT",
				strconv.FormatFloat(lat, 'f', 7, 64), strconv.FormatFloat(lon, 'f', 7, 64), ts)
		default:
			fmt.Fprintf(&cliCmds, "SET fleet %s FIELD speed %v FIELD heading %d POINT %.7f %.7f %d\r\n", id, speed, heading, lat, lon, ts)
		}
	}
	var a postAnswer
	decode(t, p.do("POST", "/v1/positions", nd.String(), "Content-Type", ndjson).want(t, 200), &a)
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		t.Fatalf("pipelined SETs: %v", err)
	}
	for _, c := range cmds {
		if s, err := c.(*redis.Cmd).Text(); err != nil || s != "OK" {
			t.Fatalf("%v: %q %v", c.Args(), s, err)
		}
	}
	// redis-cli --pipe: inline commands in, a summary of the replies out.
	out := cli(t, cliBin, addr, cliCmds.String(), "--pipe")
	if !strings.Contains(out, "errors: 0, replies: 1000") {
		t.Fatalf("redis-cli --pipe: %s", out)
	}
	var st struct {
		Trucks int `json:"trucks"`
	}
	if err := json.Unmarshal(p.do("GET", "/v1/stats", "").want(t, 200), &st); err != nil || st.Trucks != n {
		t.Fatalf("/v1/stats trucks %d (%v), want %d", st.Trucks, err, n)
	}
	stats, err := rdb.Do(ctx, "STATS", "fleet").Slice()
	if err != nil || fmt.Sprint(stats[0].([]any)[2:4]) != fmt.Sprintf("[num_objects %d]", n) {
		t.Fatalf("STATS fleet: %v %v", stats, err)
	}

	for q := range 30 {
		lat, lon := 40.4+rng.Float64()*0.6, -74.3+rng.Float64()*0.7
		k := 1 + rng.IntN(50)
		// kNN: same trucks, same order, same coordinates and distances.
		var hres struct{ Results []httpHit }
		decode(t, p.do("GET", fmt.Sprintf("/v1/nearby?lat=%v&lon=%v&k=%d", lat, lon, k), "").want(t, 200), &hres)
		v, err := rdb.Do(ctx, "NEARBY", "fleet", "LIMIT", k, "DISTANCE", "POINTS", "POINT", lat, lon).Slice()
		if err != nil {
			t.Fatal(err)
		}
		items := v[1].([]any)
		if len(items) != len(hres.Results) || len(items) != k {
			t.Fatalf("query %d: NEARBY %d items, HTTP %d, k %d", q, len(items), len(hres.Results), k)
		}
		for i, it := range items {
			it := it.([]any)
			pt := it[1].([]any)
			h := hres.Results[i]
			got := fmt.Sprint(it[0], " ", pt[0], " ", pt[1], " ", it[2])
			want := fmt.Sprint(h.ID, " ", h.Lat, " ", h.Lon, " ", h.DistM)
			if got != want {
				t.Fatalf("query %d, hit %d: RESP %s, HTTP %s", q, i, got, want)
			}
		}
		// Within a circle and a box: the same sets.
		r := 500 + rng.Float64()*5000
		var wres struct {
			Results []httpHit
			Count   int
		}
		decode(t, p.do("GET", fmt.Sprintf("/v1/within?lat=%v&lon=%v&radius_m=%v", lat, lon, r), "").want(t, 200), &wres)
		ids, err := rdb.Do(ctx, "WITHIN", "fleet", "LIMIT", 100000, "IDS", "CIRCLE", lat, lon, r).Slice()
		if err != nil {
			t.Fatal(err)
		}
		compareIDs(t, fmt.Sprintf("query %d WITHIN CIRCLE", q), ids[1].([]any), wres.Results)
		box := [4]float64{lat - 0.05, lon - 0.07, lat + 0.05, lon + 0.07}
		decode(t, p.do("GET", fmt.Sprintf("/v1/within?bbox=%v,%v,%v,%v", box[1], box[0], box[3], box[2]), "").want(t, 200), &wres)
		ids, err = rdb.Do(ctx, "WITHIN", "fleet", "LIMIT", 100000, "IDS", "BOUNDS", box[0], box[1], box[2], box[3]).Slice()
		if err != nil {
			t.Fatal(err)
		}
		compareIDs(t, fmt.Sprintf("query %d WITHIN BOUNDS", q), ids[1].([]any), wres.Results)
		// One truck by ID, with its fields.
		id := fmt.Sprintf("truck-%07d", rng.IntN(n))
		var h httpHit
		decode(t, p.do("GET", "/v1/trucks/"+id, "").want(t, 200), &h)
		g, err := rdb.Do(ctx, "GET", "fleet", id, "WITHFIELDS", "POINT").Slice()
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprint(g)
		want := fmt.Sprintf("[[%v %v] [ts %d speed %v heading %d]]", h.Lat, h.Lon, h.TS, h.Speed, h.Heading)
		if got != want {
			t.Fatalf("GET %s: RESP %s, HTTP %s", id, got, want)
		}
	}

	// redis-cli answers as go-redis does.
	cliOut := cli(t, cliBin, addr, "", "NEARBY", "fleet", "LIMIT", "3", "IDS", "POINT", "40.7", "-74")
	v, err := rdb.Do(ctx, "NEARBY", "fleet", "LIMIT", "3", "IDS", "POINT", "40.7", "-74").Slice()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(v[0])
	for _, id := range v[1].([]any) {
		want += "\n" + id.(string)
	}
	if strings.TrimSpace(cliOut) != want {
		t.Fatalf("redis-cli NEARBY:\n%s\ngo-redis:\n%s", cliOut, want)
	}
	jsonOut := cli(t, cliBin, addr, "OUTPUT json\nGET fleet truck-0000001 POINT\n")
	if !strings.Contains(jsonOut, `{"ok":true,"point":{"lat":`) {
		t.Fatalf("redis-cli JSON output: %s", jsonOut)
	}

	// Bad input: an error reply, the connection goes on.
	if err := rdb.Do(ctx, "NEARBY", "fleet", "POINT", "91", "0").Err(); err == nil || !strings.Contains(err.Error(), "lat 91 out of range") {
		t.Fatalf("NEARBY lat 91: %v", err)
	}
	if err := rdb.Do(ctx, "SET", "trucks", "a", "POINT", "1", "2").Err(); err == nil || !strings.Contains(err.Error(), "one collection") {
		t.Fatalf("SET other key: %v", err)
	}
	// Writes through RESP are HTTP's writes: DEL, then HTTP says 404.
	if nDel, err := rdb.Do(ctx, "DEL", "fleet", "truck-0000001").Int(); err != nil || nDel != 1 {
		t.Fatalf("DEL: %v %v", nDel, err)
	}
	p.do("GET", "/v1/trucks/truck-0000001", "").wantErr(t, 404, "not found")

	// Acknowledged means durable: the fleet survives a restart.
	rdb.Close()
	if code := p.stop(sigterm); code != 0 {
		t.Fatalf("exit %d", code)
	}
	p = startData(t, data, "--resp", "127.0.0.1:0")
	rdb2 := redis.NewClient(&redis.Options{Addr: p.respAddr()})
	defer rdb2.Close()
	for _, id := range []string{"truck-0000004", "truck-0000005", "truck-0002999"} {
		if err := rdb2.Do(ctx, "GET", "fleet", id, "POINT").Err(); err != nil {
			t.Fatalf("after restart, GET %s: %v", id, err)
		}
	}
	if _, err := rdb2.Do(ctx, "GET", "fleet", "truck-0000001").Result(); err != redis.Nil {
		t.Fatalf("deleted truck after restart: %v", err)
	}
}

func compareIDs(t *testing.T, what string, resp []any, http []httpHit) {
	t.Helper()
	got := make([]string, len(resp))
	for i, v := range resp {
		got[i] = v.(string)
	}
	want := make([]string, len(http))
	for i, h := range http {
		want[i] = h.ID
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: RESP %d ids, HTTP %d", what, len(got), len(want))
	}
}

// TestRESPOffByDefault: without --resp nothing listens for RESP.
func TestRESPOffByDefault(t *testing.T) {
	p := start(t)
	if strings.Contains(p.logText(), "resp listening") {
		t.Fatalf("RESP on by default:\n%s", p.logText())
	}
}

// TestRESPAuth runs with --token-file: AUTH with the same tokens and
// scopes as HTTP, from go-redis and redis-cli.
func TestRESPAuth(t *testing.T) {
	cliBin := redisCLI(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, tokens, "dev-7f3a ingest gateways\nwall-91c2 read wall\n")
	p := start(t, "--token-file", tokens, "--resp", "127.0.0.1:0", "--resp-collection", "trucks")
	addr := p.respAddr()
	ctx := context.Background()

	anon := redis.NewClient(&redis.Options{Addr: addr})
	defer anon.Close()
	if err := anon.Do(ctx, "GET", "trucks", "a").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("GET without AUTH: %v", err)
	}
	bad := redis.NewClient(&redis.Options{Addr: addr, Password: "nope"})
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong token: %v", err)
	}
	dev := redis.NewClient(&redis.Options{Addr: addr, Password: "dev-7f3a"})
	defer dev.Close()
	if err := dev.Do(ctx, "SET", "trucks", "t1", "POINT", "1", "2", "1764000000").Err(); err != nil {
		t.Fatalf("SET with ingest: %v", err)
	}
	if err := dev.Do(ctx, "SET", "fleet", "t1", "POINT", "1", "2").Err(); err == nil || !strings.Contains(err.Error(), `"trucks"`) {
		t.Fatalf("SET to the default key with --resp-collection trucks: %v", err)
	}
	if err := dev.Do(ctx, "GET", "trucks", "t1").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("GET with ingest only: %v", err)
	}
	out := cli(t, cliBin, addr, "", "-a", "wall-91c2", "--no-auth-warning", "GET", "trucks", "t1", "POINT")
	if out != "1\n2\n" {
		t.Fatalf("redis-cli -a: %q", out)
	}
	out = cli(t, cliBin, addr, "", "-a", "wall-91c2", "--no-auth-warning", "DEL", "trucks", "t1")
	if !strings.Contains(out, "NOPERM") || !strings.Contains(out, "DEL needs admin") {
		t.Fatalf("redis-cli DEL with read: %q", out)
	}
	// SIGHUP with the token gone: its access ends.
	wall := redis.NewClient(&redis.Options{Addr: addr, Password: "wall-91c2", PoolSize: 1})
	defer wall.Close()
	if err := wall.Do(ctx, "GET", "trucks", "t1").Err(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tokens, "dev-7f3a ingest gateways\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog("token file reloaded")
	if err := wall.Do(ctx, "GET", "trucks", "t1").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("GET after the token was removed: %v", err)
	}
	_ = os.Remove(tokens)
}

package resp

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/vfs"
)

// seed stores three trucks: two in Manhattan and Brooklyn, one in LA.
func seed(t *testing.T, c *client) {
	t.Helper()
	for _, cmd := range []string{
		"SET fleet t1 FIELD speed 52.5 FIELD heading 90 POINT 40.7128 -74.006 1764000000",
		"SET fleet t2 POINT 40.7306 -73.9352 1764000000",
		"set fleet t3 field alt 89.5 point 34.05 -118.24",
	} {
		if got := show(c.do(cmd)); got != "OK" {
			t.Fatalf("%s: %s", cmd, got)
		}
	}
}

func TestCommands(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.dial()
	seed(t, c)
	for _, tc := range []struct{ cmd, want string }{
		{"PING", "PONG"},
		{"ping hello", `"hello"`},
		{"ECHO hi", `"hi"`},
		{"GET fleet t1", `"{\"type\":\"Point\",\"coordinates\":[-74.006,40.7128]}"`},
		{"GET fleet t1 POINT", `["40.7128" "-74.006"]`},
		{"GET fleet t1 WITHFIELDS POINT", `[["40.7128" "-74.006"] ["ts" "1764000000" "speed" "52.5" "heading" "90"]]`},
		{"GET fleet t3 WITHFIELDS", `["{\"type\":\"Point\",\"coordinates\":[-118.24,34.05]}" ["ts" "1764000000" "speed" "0" "heading" "0" "alt" "89.5"]]`},
		{"GET fleet nobody", "nil"},
		{"GET fleet bad/id", "nil"},
		{"NEARBY fleet LIMIT 2 POINT 40.75 -73.98", `[2 [["t2" "{\"type\":\"Point\",\"coordinates\":[-73.9352,40.7306]}"] ["t1" "{\"type\":\"Point\",\"coordinates\":[-74.006,40.7128]}"]]]`},
		{"NEARBY fleet LIMIT 2 CURSOR 2 IDS POINT 40.75 -73.98", `[0 ["t3"]]`},
		{"NEARBY fleet DISTANCE IDS POINT 40.75 -73.98 10000", `[0 ["t2" "t1"]]`},
		{"NEARBY fleet LIMIT 1 DISTANCE POINTS POINT 40.7128 -74.006", `[1 [["t1" ["40.7128" "-74.006"] "0"]]]`},
		{"NEARBY fleet COUNT POINT 40.75 -73.98 10000", "2"},
		{"NEARBY fleet COUNT POINT 40.75 -73.98", "3"},
		{"WITHIN fleet IDS BOUNDS 40 -75 41 -73", `[0 [? ?]]`}, // in store order
		{"WITHIN fleet COUNT BOUNDS 30 -180 50 180", "3"},
		{"WITHIN fleet COUNT BOUNDS 30 170 50 -100", "1"}, // across the antimeridian: LA only
		{"WITHIN fleet IDS CIRCLE 34 -118 50000", `[0 ["t3"]]`},
		{"WITHIN fleet LIMIT 1 IDS BOUNDS 40 -75 41 -73", `[1 [?]]`},
		{"SCAN fleet COUNT", "3"},
		{"SCAN fleet LIMIT 2 IDS", `[2 [? ?]]`},
		{"SCAN fleet CURSOR 2 LIMIT 2 IDS", `[0 [?]]`},
		{"STATS fleet", `[["in_memory_size" ? "num_objects" 3 "num_points" 3 "num_strings" 0]]`},
		{"DEL fleet t2", "1"},
		{"DEL fleet t2", "0"},
		{"GET fleet t2", "nil"},
		{"OUTPUT", `"resp"`},
		// Bad arguments: an error each, the connection stays.
		{"SET fleet", "(err ERR wrong number of arguments for 'set' command)"},
		{"SET trucks t1 POINT 1 2", `(err ERR key not found: this server has one collection, "fleet" (not "trucks"))`},
		{"SET fleet t1 POINT 91 2", "(err ERR lat 91 out of range [-90, 90])"},
		{"SET fleet t1 POINT 1 NaN", `(err ERR lon "NaN" is not a finite number)`},
		{"SET fleet t1 POINT 1 1e999", "(err ERR lon 1e999 out of range [-180, 180])"},
		{"SET fleet t1 POINT 1 2 3 4", "(err ERR SET POINT takes lat lon [ts] and ends the command)"},
		{"SET fleet t1 POINT 1 2 12.5", `(err ERR ts "12.5" is not a whole number of Unix seconds (fleetd reads POINT's third value as the ts, not as z))`},
		{"SET fleet t1 POINT 1 2 1764999999", "(err ERR ts 2025-12-06T05:46:39Z is 277h46m39s ahead of the server clock (max 5m0s))"},
		{"SET fleet t1 EX 10 POINT 1 2", "(err ERR SET option EX is not supported by fleetd: use SET key id [FIELD name value]... POINT lat lon [ts])"},
		{"SET fleet t1 OBJECT {}", "(err ERR SET option OBJECT is not supported by fleetd: use SET key id [FIELD name value]... POINT lat lon [ts])"},
		{"SET fleet t1 FIELD color 3 POINT 1 2", `(err ERR FIELD "color" is not one fleetd keeps: speed, heading, ` + attrNames() + `)`},
		{"SET fleet t1 FIELD speed 2000 POINT 1 2", "(err ERR FIELD speed 2000 out of range [0, 1000] km/h)"},
		{"SET fleet t1 FIELD speed", "(err ERR SET FIELD needs a name and a value)"},
		{"SET fleet t1", "(err ERR SET needs POINT lat lon [ts]: fleetd stores points only)"},
		{"SET fleet bad/id POINT 1 2", `(err ERR invalid id "bad/id": must be 1-64 bytes of [A-Za-z0-9_.:-])`},
		{"GET fleet", "(err ERR wrong number of arguments for 'get' command)"},
		{"GET fleet t1 HASH", "(err ERR GET HASH is not supported by fleetd: use OBJECT or POINT)"},
		{"NEARBY fleet POINT 1", "(err ERR NEARBY POINT takes lat lon [meters] and ends the command)"},
		{"NEARBY fleet POINT 1 2 -5", "(err ERR meters -5 must be a positive, finite number)"},
		{"NEARBY fleet LIMIT 0 POINT 1 2", `(err ERR LIMIT "0": want a whole number from 1 to 10000)`},
		{"NEARBY fleet LIMIT x POINT 1 2", `(err ERR LIMIT "x": want a whole number from 1 to 10000)`},
		{"NEARBY fleet CURSOR 9999 LIMIT 2 POINT 1 2", "(err ERR NEARBY CURSOR+LIMIT 10001 is more than 10000)"},
		{"NEARBY fleet MATCH t* POINT 1 2", "(err ERR NEARBY option MATCH is not supported by fleetd (see the RESP section of the README))"},
		{"NEARBY fleet BOUNDS POINT 1 2", "(err ERR NEARBY output BOUNDS is not supported by fleetd: use OBJECTS, POINTS, IDS or COUNT)"},
		{"NEARBY fleet", "(err ERR NEARBY needs an area: POINT lat lon [meters])"},
		{"NEARBY fleet OBJECT {}", "(err ERR NEARBY area OBJECT is not supported by fleetd: use POINT lat lon [meters])"},
		{"WITHIN fleet BOUNDS 41 -75 40 -73", "(err ERR BOUNDS minlat 41 is greater than maxlat 40)"},
		{"WITHIN fleet BOUNDS 40 -75 41", "(err ERR WITHIN BOUNDS takes minlat minlon maxlat maxlon and ends the command)"},
		{"WITHIN fleet DISTANCE BOUNDS 40 -75 41 -73", "(err ERR WITHIN BOUNDS has no point to measure a DISTANCE from: use CIRCLE)"},
		{"WITHIN fleet TILE 1 2 3", "(err ERR WITHIN area TILE is not supported by fleetd: use BOUNDS minlat minlon maxlat maxlon, or CIRCLE lat lon meters)"},
		{"WITHIN fleet CIRCLE 1 2 0", "(err ERR meters 0 must be a positive, finite number)"},
		{"SCAN fleet POINT 1 2", `(err ERR SCAN: unexpected "POINT": use SCAN key [CURSOR n] [LIMIT n] [OBJECTS|POINTS|IDS|COUNT])`},
		{"STATS other", `(err ERR key not found: this server has one collection, "fleet" (not "other"))`},
		{"DEL fleet", "(err ERR wrong number of arguments for 'del' command)"},
		{"AUTH x", "(err ERR AUTH called, but this server runs without tokens (no --token-file))"},
		{"OUTPUT xml", `(err ERR invalid OUTPUT "xml": want json or resp)`},
		{"HELLO 3", "(err ERR unknown command 'HELLO')"},
		{"PING", "PONG"},
	} {
		got := show(c.do(tc.cmd))
		if !match(got, tc.want) {
			t.Errorf("%s\n got %s\nwant %s", tc.cmd, got, tc.want)
		}
	}
}

// match compares a reply with a pattern in which ? stands for any one
// value.
func match(got, want string) bool {
	if !strings.Contains(want, "?") {
		return got == want
	}
	g, w := strings.Fields(strings.NewReplacer("[", " [ ", "]", " ] ").Replace(got)),
		strings.Fields(strings.NewReplacer("[", " [ ", "]", " ] ").Replace(want))
	if len(g) != len(w) {
		return false
	}
	for i := range w {
		if w[i] != "?" && w[i] != g[i] {
			return false
		}
	}
	return true
}

// TestJSONOutput checks Tile38's JSON shapes.
func TestJSONOutput(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.dial()
	seed(t, c)
	if got := show(c.do("OUTPUT json")); !strings.HasPrefix(got, `"{\"ok\":true,\"elapsed\":`) {
		t.Fatalf("OUTPUT json: %s", got)
	}
	for _, tc := range []struct{ cmd, want string }{
		{"SET fleet t4 POINT 1 2", `{"ok":true}`},
		{"GET fleet t1", `{"ok":true,"object":{"type":"Point","coordinates":[-74.006,40.7128]}}`},
		{"GET fleet t1 WITHFIELDS POINT", `{"ok":true,"point":{"lat":40.7128,"lon":-74.006},"fields":{"ts":1764000000,"speed":52.5,"heading":90}}`},
		{"GET fleet nobody", `{"ok":false,"err":"id not found"}`},
		{"NEARBY fleet LIMIT 1 DISTANCE POINT 40.7128 -74.006", `{"ok":true,"objects":[{"id":"t1","object":{"type":"Point","coordinates":[-74.006,40.7128]},"distance":0}],"count":1,"cursor":1}`},
		{"NEARBY fleet LIMIT 1 POINTS POINT 40.7128 -74.006", `{"ok":true,"points":[{"id":"t1","point":{"lat":40.7128,"lon":-74.006}}],"count":1,"cursor":1}`},
		{"WITHIN fleet IDS CIRCLE 34 -118 50000", `{"ok":true,"ids":["t3"],"count":1,"cursor":0}`},
		{"WITHIN fleet COUNT CIRCLE 34 -118 50000", `{"ok":true,"count":1,"cursor":0}`},
		{"STATS fleet", `{"ok":true,"stats":[{"in_memory_size":?,"num_objects":4,"num_points":4,"num_strings":0}]}`},
		{"DEL fleet t4", `{"ok":true}`},
		{"DEL fleet t4", `{"ok":false,"err":"id not found"}`},
		{"PING", `{"ok":true,"ping":"pong"}`},
		{"SET fleet t1 POINT 91 2", `{"ok":false,"err":"lat 91 out of range [-90, 90]"}`},
		{"OUTPUT", `{"ok":true,"output":"json"}`},
	} {
		raw, ok := c.do(tc.cmd).([]byte)
		if !ok || !json.Valid(raw) {
			t.Errorf("%s: not a JSON bulk string: %q", tc.cmd, raw)
			continue
		}
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		if e, _ := m["elapsed"].(string); e == "" {
			t.Errorf("%s: no elapsed: %s", tc.cmd, raw)
		}
		got := elapsedField.ReplaceAllString(string(raw), "")
		want := strings.ReplaceAll(tc.want, "?", `[0-9]+`)
		if !regexpMatch(want, got) {
			t.Errorf("%s\n got %s\nwant %s", tc.cmd, got, tc.want)
		}
	}
	for _, cmd := range []string{"SERVER", "INFO"} {
		raw, _ := c.do(cmd).([]byte)
		var m struct {
			OK    bool           `json:"ok"`
			Stats map[string]any `json:"stats"`
			Info  map[string]any `json:"info"`
		}
		if err := json.Unmarshal(raw, &m); err != nil || !m.OK {
			t.Fatalf("%s: %s", cmd, raw)
		}
		if cmd == "SERVER" && m.Stats["trucks"] != 3.0 || cmd == "INFO" && m.Info["trucks"] != 3.0 {
			t.Errorf("%s: %s", cmd, raw)
		}
	}
	if got := show(c.do("OUTPUT resp")); got != "OK" {
		t.Fatalf("OUTPUT resp: %s", got)
	}
	if got := show(c.do("SERVER")); !strings.Contains(got, `"trucks" "3"`) || !strings.Contains(got, `"resp.commands"`) {
		t.Errorf("SERVER: %s", got)
	}
	info, _ := c.do("INFO").([]byte)
	if !strings.HasPrefix(string(info), "# fleetd\r\n") || !strings.Contains(string(info), "\r\ntrucks:3\r\n") {
		t.Errorf("INFO: %q", info)
	}
}

// TestPipelinedSetsBatch sends many SETs in one write: they must be
// applied in few engine batches, answered in order, and seen by a GET
// later in the same pipeline.
func TestPipelinedSetsBatch(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.dial()
	const n = 2000
	var b []byte
	for i := range n {
		b = append(b, encode("SET", "fleet", fmt.Sprintf("p%d", i), "POINT", "10", fmt.Sprint(float64(i)/100), "1764000000")...)
		if i == n/2 {
			b = append(b, encode("SET", "fleet", "bad", "POINT", "99", "0")...) // an error in the middle
		}
	}
	b = append(b, encode("GET", "fleet", fmt.Sprintf("p%d", n-1), "POINT")...)
	c.send(b)
	for i := range n + 1 {
		got := show(c.read())
		want := "OK"
		if i == n/2+1 {
			want = "(err ERR lat 99 out of range [-90, 90])"
		}
		if got != want {
			t.Fatalf("reply %d: %s, want %s", i, got, want)
		}
	}
	if got := show(c.read()); got != `["10" "19.99"]` {
		t.Fatalf("GET after the SETs: %s", got)
	}
	st := f.s.Stats()
	if st.Sets != n || f.eng.Store().Len() != n {
		t.Fatalf("sets %d, trucks %d", st.Sets, f.eng.Store().Len())
	}
	// n SETs of ~60 bytes are ~120 KiB: a few reads of up to 64 KiB, and
	// the error splits one batch.
	if st.Batches > 40 {
		t.Fatalf("%d SETs took %d engine batches", n, st.Batches)
	}
	t.Logf("%d pipelined SETs in %d engine batches", n, st.Batches)
}

// TestDurableOrError: a SET is answered OK only once durable; when the
// log's fsync fails it is answered an error and not applied.
func TestDurableOrError(t *testing.T) {
	ffs := vfs.NewFaultFS(vfs.NewMem())
	f := newFixture(t, fixtureOpts{fs: ffs})
	c := f.dial()
	if got := show(c.do("SET fleet d1 POINT 1 2")); got != "OK" {
		t.Fatal(got)
	}
	ffs.FailAll(vfs.OpSync|vfs.OpWrite, syscall.EIO)
	got := show(c.do("SET fleet d2 POINT 1 2"))
	if !strings.HasPrefix(got, "(err ERR could not apply durably; not applied:") {
		t.Fatalf("SET with a failing disk: %s", got)
	}
	if _, ok := f.eng.Store().Get([]byte("d2")); ok {
		t.Fatal("d2 applied although its SET failed")
	}
	ffs.Reset()
	if got := show(c.do("PING")); got != "PONG" {
		t.Fatal(got)
	}
}

func TestAuth(t *testing.T) {
	toks, err := auth.Parse([]byte("ing-1 ingest dev\nread-1 read wall\nadm-1 admin ops\nall-1\n"))
	if err != nil {
		t.Fatal(err)
	}
	keys := auth.NewKeyring(toks)
	f := newFixture(t, fixtureOpts{keys: keys})
	c := f.dial()
	for _, tc := range []struct{ cmd, want string }{
		{"PING", "PONG"},
		{"GET fleet a", "(err NOAUTH Authentication required: send AUTH <token> first)"},
		{"SET fleet a POINT 1 2", "(err NOAUTH Authentication required: send AUTH <token> first)"},
		{"AUTH nope", "(err WRONGPASS invalid token)"},
		{"AUTH ing-1", "OK"},
		{"SET fleet a POINT 1 2", "OK"},
		{"GET fleet a", `(err NOPERM token "dev" has scopes ingest; GET needs read)`},
		{"AUTH default read-1", "OK"}, // AUTH user token
		{"GET fleet a POINT", `["1" "2"]`},
		{"SET fleet a POINT 1 2", `(err NOPERM token "wall" has scopes read; SET needs ingest)`},
		{"DEL fleet a", `(err NOPERM token "wall" has scopes read; DEL needs admin)`},
		{"AUTH adm-1", "OK"},
		{"DEL fleet a", "1"},
		{"AUTH all-1", "OK"},
		{"SERVER", "?"},
	} {
		got := show(c.do(tc.cmd))
		if tc.want != "?" && got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.cmd, got, tc.want)
		}
	}
	// Removing the token ends its access on the next command.
	keys.Set(toks[:3])
	if got := show(c.do("GET fleet a")); got != "(err NOAUTH Authentication required: send AUTH <token> first)" {
		t.Errorf("after the token was removed: %s", got)
	}
	// Too many failed AUTHs close the connection.
	c2 := f.dial()
	for i := range maxAuthFails {
		if got := show(c2.do("AUTH wrong")); got != "(err WRONGPASS invalid token)" {
			t.Fatalf("AUTH %d: %s", i, got)
		}
	}
	if _, err := readReply(c2.br); err == nil {
		t.Fatal("connection still open after failed AUTHs")
	}
}

// TestProtocolErrors: framing errors are answered, then the connection
// is closed; inline commands work.
func TestProtocolErrors(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for _, tc := range []struct{ send, want string }{
		{"*1\r\n+PING\r\n", "(err ERR Protocol error: expected '$', got '+')"},
		{"*x\r\n", "(err ERR Protocol error: invalid multibulk length)"},
		{"*1\r\n$99999999\r\n", "(err ERR Protocol error: invalid bulk length)"},
		{"*2\r\n$4\r\nPINGxx", "(err ERR Protocol error: bulk string not followed by CRLF)"},
	} {
		c := f.dial()
		c.send([]byte(tc.send))
		if got := show(c.read()); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.send, got, tc.want)
		}
		if _, err := readReply(c.br); err == nil {
			t.Errorf("%q: connection still open", tc.send)
		}
	}
	c := f.dial()
	c.send([]byte("PING\r\n  set fleet i1   point 1 2\nGET fleet i1 POINT\r\n\r\n"))
	for _, want := range []string{"PONG", "OK", `["1" "2"]`} {
		if got := show(c.read()); got != want {
			t.Fatalf("inline: %s, want %s", got, want)
		}
	}
	// A command longer than the limit.
	c = f.dial()
	c.send([]byte(fmt.Sprintf("*%d\r\n", MaxArgs)))
	big := encode(strings.Repeat("x", MaxBulk))[len("*1\r\n"):]
	go func() {
		for range MaxArgs {
			if _, err := c.nc.Write(big); err != nil {
				return
			}
		}
	}()
	if got := show(c.read()); got != "(err ERR Protocol error: command longer than the limit)" {
		t.Fatalf("long command: %s", got)
	}
}

// TestQuit: QUIT answers OK and closes.
func TestQuit(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.dial()
	c.send(append(encode("QUIT"), encode("PING")...))
	if got := show(c.read()); got != "OK" {
		t.Fatal(got)
	}
	if _, err := readReply(c.br); err == nil {
		t.Fatal("connection open after QUIT")
	}
}

// TestMaxConns: past MaxConns a connection is refused with an error.
func TestMaxConns(t *testing.T) {
	f := newFixture(t, fixtureOpts{maxConns: 2})
	a, b := f.dial(), f.dial()
	for _, c := range []*client{a, b} {
		if got := show(c.do("PING")); got != "PONG" {
			t.Fatal(got)
		}
	}
	c := f.dial()
	if got := show(c.read()); got != "(err ERR max number of clients reached)" {
		t.Fatal(got)
	}
	if f.s.Stats().Refused != 1 {
		t.Fatalf("%+v", f.s.Stats())
	}
}

// TestRandomAgainstBruteForce compares NEARBY and WITHIN CIRCLE with a
// brute-force search over a random fleet.
func TestRandomAgainstBruteForce(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	f := newFixture(t, fixtureOpts{})
	c := f.dial()
	type truck struct {
		id       string
		lat, lon float64
	}
	var fleet []truck
	var b []byte
	for i := range 3000 {
		tr := truck{fmt.Sprintf("r%d", i), 40 + rng.Float64(), -75 + rng.Float64()}
		// Round as the store does, so brute force sees the stored point.
		tr.lat, tr.lon = geo.FromFixed(geo.ToFixed(tr.lat)), geo.FromFixed(geo.ToFixed(tr.lon))
		fleet = append(fleet, tr)
		b = append(b, encode("SET", "fleet", tr.id, "POINT", fmt.Sprint(tr.lat), fmt.Sprint(tr.lon), "1764000000")...)
	}
	c.send(b)
	for range fleet {
		if got := show(c.read()); got != "OK" {
			t.Fatal(got)
		}
	}
	for range 50 {
		lat, lon := 40+rng.Float64(), -75+rng.Float64()
		r := 1000 + rng.Float64()*20000
		var want []string
		for _, tr := range fleet {
			if geo.DistanceM(lat, lon, tr.lat, tr.lon) <= r {
				want = append(want, tr.id)
			}
		}
		reply := c.do(fmt.Sprintf("WITHIN fleet LIMIT 100000 IDS CIRCLE %v %v %v", lat, lon, r)).([]any)
		var got []string
		for _, v := range reply[1].([]any) {
			got = append(got, string(v.([]byte)))
		}
		if !sameSet(got, want) {
			t.Fatalf("WITHIN CIRCLE %v %v %v: %d ids, brute force %d", lat, lon, r, len(got), len(want))
		}
		k := 1 + rng.IntN(20)
		reply = c.do(fmt.Sprintf("NEARBY fleet LIMIT %d DISTANCE IDS POINT %v %v", k, lat, lon)).([]any)
		ids := reply[1].([]any)
		if len(ids) != k {
			t.Fatalf("NEARBY %d: %d ids", k, len(ids))
		}
		// The k-th nearest by brute force bounds every answer.
		dists := make([]float64, 0, len(fleet))
		for _, tr := range fleet {
			dists = append(dists, geo.DistanceM(lat, lon, tr.lat, tr.lon))
		}
		kth := kthSmallest(dists, k)
		for _, v := range ids {
			id := string(v.([]byte))
			var tr truck
			for _, x := range fleet {
				if x.id == id {
					tr = x
				}
			}
			if d := geo.DistanceM(lat, lon, tr.lat, tr.lon); d > kth*(1+1e-9)+1e-6 {
				t.Fatalf("NEARBY %d from %v,%v returned %s at %v m; the %d-th nearest is at %v m", k, lat, lon, id, d, k, kth)
			}
		}
	}
}

// elapsedField is the "elapsed" member of a JSON reply, removed before
// comparisons.
var elapsedField = regexp.MustCompile(`,"elapsed":"[^"]*"`)

// regexpMatch matches got against want, a literal except for [0-9]+.
func regexpMatch(want, got string) bool {
	parts := strings.Split(want, "[0-9]+")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile("^" + strings.Join(parts, "[0-9]+") + "$").MatchString(got)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		if m[s]--; m[s] < 0 {
			return false
		}
	}
	return true
}

func kthSmallest(v []float64, k int) float64 {
	s := append([]float64(nil), v...)
	for i := range k {
		m := i
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[m] {
				m = j
			}
		}
		s[i], s[m] = s[m], s[i]
	}
	return s[k-1]
}

// TestNearbyCursorEnds pages NEARBY through small fleets, with and
// without a radius (which take different routes to the next cursor):
// the pages, LIMIT at, below and above the fleet's size, concatenate to
// the unpaged answer, and the cursor is 0 exactly on the last page.
func TestNearbyCursorEnds(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.dial()
	for n := 1; n <= 7; n++ {
		id := fmt.Sprintf("c%d", n)
		if got := show(c.do(fmt.Sprintf("SET fleet %s POINT %v -73.9 1764000000", id, 40+float64(n)*0.01))); got != "OK" {
			t.Fatal(got)
		}
		for _, radius := range []string{"", " 100000"} {
			all := c.do("NEARBY fleet LIMIT 100 IDS POINT 40 -73.9" + radius).([]any)
			if cur := all[0].(int64); cur != 0 || len(all[1].([]any)) != n {
				t.Fatalf("%d trucks, radius %q: cursor %d, %d ids", n, radius, cur, len(all[1].([]any)))
			}
			for limit := 1; limit <= n+1; limit++ {
				var ids []any
				cursor := int64(0)
				for page := 0; ; page++ {
					r := c.do(fmt.Sprintf("NEARBY fleet CURSOR %d LIMIT %d IDS POINT 40 -73.9%s", cursor, limit, radius)).([]any)
					ids = append(ids, r[1].([]any)...)
					next := r[0].(int64)
					wantNext := cursor + int64(limit)
					if wantNext >= int64(n) {
						wantNext = 0
					}
					if next != wantNext {
						t.Fatalf("%d trucks, radius %q, CURSOR %d LIMIT %d: cursor %d, want %d", n, radius, cursor, limit, next, wantNext)
					}
					if next == 0 {
						break
					}
					cursor = next
				}
				if show(ids) != show(all[1]) {
					t.Fatalf("%d trucks, radius %q, LIMIT %d: pages %s, unpaged %s", n, radius, limit, show(ids), show(all[1]))
				}
			}
		}
	}
}

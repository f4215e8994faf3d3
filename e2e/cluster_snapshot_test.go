package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClusterSnapshotRejoin: nodes publish snapshots to the object
// store; a node wiped of its data directory (started with the default
// flags) restores the newest one, reads only the stream's tail, and
// answers the same as the others.
func TestClusterSnapshotRejoin(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rr := rand.New(rand.NewPCG(uint64(seed), 7))
	ns := startNATS(t)
	dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b"), filepath.Join(t.TempDir(), "c")}
	tuned := []string{"--nats-snapshot-every", "300ms"}
	a := startData(t, dirs[0], append([]string{"--nats", natsURLs(ns, 0)}, tuned...)...)
	b := startData(t, dirs[1], append([]string{"--nats", natsURLs(ns, 1)}, tuned...)...)
	c := startData(t, dirs[2], "--nats", natsURLs(ns, 2))
	// A rule, so that the restored node's alerts can be compared too.
	a.do("PUT", "/v1/rules/fast", `{"when":"speed > 90"}`).want(t, 200)

	tokens := map[int]uint64{}
	write := clusterWriter(t, rr, tokens, 5000, 500)
	write(a, 40)
	if code := c.stop(syscall.SIGKILL); code == 0 {
		t.Log("node c exited 0 on SIGKILL")
	}
	write(b, 10)
	fleetOf(t, a, tokenString(tokens))
	// The snapshots cover the writes so far, then a tail the wiped node
	// has to read from the stream.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(a.logText()+b.logText(), "snapshot published") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	write(a, 5)

	if err := os.RemoveAll(dirs[2]); err != nil {
		t.Fatal(err)
	}
	c = startData(t, dirs[2], "--nats", natsURLs(ns, 2))
	c.waitLog("restored from the object-store snapshot")
	write(c, 3)
	tok := tokenString(tokens)
	fa, fb, fc := fleetOf(t, a, tok), fleetOf(t, b, tok), fleetOf(t, c, tok)
	if len(fa) < 4000 || !mapsEqual(fa, fb) || !mapsEqual(fa, fc) {
		t.Fatalf("fleets differ: a %d, b %d, c %d trucks", len(fa), len(fb), len(fc))
	}
	var st struct {
		Cluster struct {
			Restored bool  `json:"restored_from_snapshot"`
			Applied  int64 `json:"applied_messages"`
			// The messages ever published (the stream's last sequence:
			// stream_messages shrinks as snapshots purge the stream).
			Stream uint64 `json:"stream_last_seq"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(c.do("GET", "/v1/stats", "").want(t, 200), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Cluster.Restored || st.Cluster.Applied <= 0 || uint64(st.Cluster.Applied) >= st.Cluster.Stream/2 {
		t.Fatalf("the wiped node should have read only the stream's tail: %+v", st.Cluster)
	}
	t.Logf("the wiped node applied %d of the %d messages published, after its snapshot", st.Cluster.Applied, st.Cluster.Stream)
	// The same alerts on every node.
	alerts := func(p *proc) string {
		var v struct {
			Count int `json:"count"`
		}
		if err := json.Unmarshal(p.do("GET", "/v1/alerts?rule=fast&limit=1", "").want(t, 200), &v); err != nil {
			t.Fatal(err)
		}
		return strconv.Itoa(v.Count)
	}
	if na, nc := alerts(a), alerts(c); na != nc || na == "0" {
		t.Fatalf("alerts: a %s, c %s", na, nc)
	}
}

// clusterWriter returns write(p, bodies): bodies batches of perBody
// random updates of trucks truck-00000 … (trucks-1), posted to p, each
// batch one second of ts later (from 50 minutes ago), the write tokens
// merged into tokens.
func clusterWriter(t *testing.T, rr *rand.Rand, tokens map[int]uint64, trucks, perBody int) func(p *proc, bodies int) {
	base := time.Now().Unix() - 3000
	return func(p *proc, bodies int) {
		t.Helper()
		for round := range bodies {
			var sb strings.Builder
			for range perBody {
				fmt.Fprintf(&sb, `{"id":"truck-%05d","lat":%.7f,"lon":%.7f,"ts":%d,"speed":%.1f,"heading":%d}`+"\n",
					rr.IntN(trucks), 40+rr.Float64()*10, -80+rr.Float64()*10, base+int64(round), rr.Float64()*100, rr.IntN(360))
			}
			code, body, tok, err := post(p.addr, sb.String())
			if err != nil || code != 200 {
				t.Fatalf("post: %d %s %v", code, body, err)
			}
			tokenMax(tokens, tok)
		}
		base += int64(bodies)
	}
}

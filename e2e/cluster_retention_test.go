package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// retentionStats is the part of /v1/stats' cluster object this test reads.
type retentionStats struct {
	Cluster struct {
		FirstSeq   uint64 `json:"stream_first_seq"`
		LastSeq    uint64 `json:"stream_last_seq"`
		Messages   uint64 `json:"stream_messages"`
		Purges     int64  `json:"stream_purges"`
		PurgedTo   string `json:"stream_purged_below"`
		Behind     bool   `json:"behind_retention_at_start"`
		Gaps       []int  `json:"gap_partitions"`
		Restored   bool   `json:"restored_from_snapshot"`
		Applied    string `json:"applied"`
		Published  int64  `json:"snapshots_published"`
		SnapErrors int64  `json:"snapshot_errors"`
	} `json:"cluster"`
}

func retStats(t *testing.T, p *proc) retentionStats {
	t.Helper()
	var st retentionStats
	if err := json.Unmarshal(p.do("GET", "/v1/stats", "").want(t, 200), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestClusterRetention: with a short --nats-snapshot-every, the nodes
// publish snapshots and purge the stream below the one before the
// newest, so the stream's first sequence advances. A node killed before
// the purge restarts with saved positions below what the stream holds:
// it restores from the object store rather than resume across the gap
// (dropping trucks deleted meanwhile), and ends with every truck
// identical to the others; a node wiped of its
// data directory joins the same way. No live node reports a gap.
func TestClusterRetention(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rr := rand.New(rand.NewPCG(uint64(seed), 11))
	ns := startNATS(t)
	dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b"), filepath.Join(t.TempDir(), "c")}
	tuned := []string{"--nats-snapshot-every", "1s", "--nats-retain", "0"}
	a := startData(t, dirs[0], append([]string{"--nats", natsURLs(ns, 0)}, tuned...)...)
	b := startData(t, dirs[1], append([]string{"--nats", natsURLs(ns, 1)}, tuned...)...)
	c := startData(t, dirs[2], append([]string{"--nats", natsURLs(ns, 2)}, tuned...)...)

	tokens := map[int]uint64{}
	write := clusterWriter(t, rr, tokens, 3000, 400)
	write(a, 20)
	// Trucks that c holds and that are deleted while it is down: its
	// restore over its old state must drop them.
	var sb strings.Builder
	for i := range 30 {
		fmt.Fprintf(&sb, `{"id":"gone-%02d","lat":45,"lon":-75,"ts":%d}`+"\n", i, time.Now().Unix()-2000)
	}
	if code, body, tok, err := post(a.addr, sb.String()); err != nil || code != 200 {
		t.Fatalf("post: %d %s %v", code, body, err)
	} else {
		tokenMax(tokens, tok)
	}
	// c has applied everything, saved its positions (each second), then dies.
	fleetOf(t, c, tokenString(tokens))
	time.Sleep(1500 * time.Millisecond)
	cAt := map[int]uint64{}
	tokenMax(cAt, retStats(t, c).Cluster.Applied)
	c.stop(syscall.SIGKILL)

	for i := range 30 {
		a.do("DELETE", fmt.Sprintf("/v1/trucks/gone-%02d", i), "").want(t, 204)
	}
	// Ingest until a purge passed c's positions on some partition.
	purgedPast := func() (bool, retentionStats) {
		for _, p := range []*proc{a, b} {
			st := retStats(t, p)
			floors := map[int]uint64{}
			tokenMax(floors, st.Cluster.PurgedTo)
			for part, f := range floors {
				if f > cAt[part] {
					return true, st
				}
			}
		}
		return false, retentionStats{}
	}
	deadline := time.Now().Add(30 * time.Second)
	var st retentionStats
	for {
		write(a, 2)
		write(b, 2)
		var ok bool
		if ok, st = purgedPast(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no purge passed c's positions %v in 30 s:\na: %+v\nb: %+v\n%s", cAt, retStats(t, a).Cluster, retStats(t, b).Cluster, a.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Cluster.FirstSeq <= 1 || st.Cluster.Messages >= st.Cluster.LastSeq {
		t.Fatalf("the stream's first sequence did not advance: %+v", st.Cluster)
	}
	t.Logf("c stopped at %v; the stream holds %d of %d messages, first seq %d, purged below %s",
		cAt, st.Cluster.Messages, st.Cluster.LastSeq, st.Cluster.FirstSeq, st.Cluster.PurgedTo)
	write(b, 3)

	c = startData(t, dirs[2], append([]string{"--nats", natsURLs(ns, 2)}, tuned...)...)
	c.waitLog("restoring from that snapshot instead of resuming")
	c.waitLog("restored from the object-store snapshot")
	if s := retStats(t, c).Cluster; !s.Behind || !s.Restored {
		t.Fatalf("c: %+v", s)
	}
	write(c, 3)

	// b wiped of its data directory joins from the object store.
	b.stop(syscall.SIGKILL)
	if err := os.RemoveAll(dirs[1]); err != nil {
		t.Fatal(err)
	}
	write(a, 2)
	b = startData(t, dirs[1], append([]string{"--nats", natsURLs(ns, 1)}, tuned...)...)
	b.waitLog("restored from the object-store snapshot")
	write(b, 2)

	tok := tokenString(tokens)
	fa, fb, fc := fleetOf(t, a, tok), fleetOf(t, b, tok), fleetOf(t, c, tok)
	for id := range fc {
		if strings.HasPrefix(id, "gone-") {
			t.Fatalf("c still holds %s, deleted while it was down", id)
		}
	}
	if len(fa) < 2500 || !mapsEqual(fa, fb) || !mapsEqual(fa, fc) {
		t.Fatalf("fleets differ: a %d, b %d, c %d trucks", len(fa), len(fb), len(fc))
	}
	for name, p := range map[string]*proc{"a": a, "b": b, "c": c} {
		if s := retStats(t, p).Cluster; len(s.Gaps) != 0 || s.SnapErrors != 0 {
			t.Fatalf("%s: gaps %v, snapshot errors %d", name, s.Gaps, s.SnapErrors)
		}
	}
	fin := retStats(t, a).Cluster
	t.Logf("end: %d trucks on each node; the stream holds %d of %d messages (first seq %d)", len(fa), fin.Messages, fin.LastSeq, fin.FirstSeq)
}

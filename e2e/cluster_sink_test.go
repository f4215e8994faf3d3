package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// clusterSinkView is GET /v1/sinks/{name}'s cluster part.
type clusterSinkView struct {
	Stats struct {
		Delivered int64
		Cluster   *struct {
			Delivering bool
			Published  int64
		}
	}
}

// delivering is the index of the one node that delivers for the sink,
// or -1 while there is not exactly one (dead nodes skipped).
func delivering(t *testing.T, nodes []*proc, dead map[int]bool, name string) int {
	t.Helper()
	who := -1
	for i, p := range nodes {
		if dead[i] {
			continue
		}
		var v clusterSinkView
		if err := json.Unmarshal(p.do("GET", "/v1/sinks/"+name, "").want(t, 200), &v); err != nil {
			t.Fatal(err)
		}
		if v.Stats.Cluster == nil {
			t.Fatalf("node %d: a sink in cluster mode without cluster stats", i)
		}
		if v.Stats.Cluster.Delivering {
			if who >= 0 {
				return -1
			}
			who = i
		}
	}
	return who
}

// TestClusterSink: three NATS servers, three fleetd nodes, one webhook
// sink and a rule every update toggles. Every node evaluates the rule
// and publishes the events into the cluster's events stream
// (deduplicated by their IDs); one node delivers: the receiver gets each
// event exactly once. Then the delivering node is killed -9 during
// ingest: another node takes the delivery over and every event still
// arrives with the same IDs, in order per truck (duplicates only of what
// was delivered around the kill).
func TestClusterSink(t *testing.T) {
	h := newHookReceiver(t, "c")
	ns := startNATS(t)
	nodes := make([]*proc, 3)
	for i := range nodes {
		nodes[i] = startData(t, filepath.Join(t.TempDir(), strconv.Itoa(i)), "--nats", natsURLs(ns, i))
	}
	r := nodes[0].do("PUT", "/v1/rules/fast", `{"when": "speed > 50"}`)
	r.want(t, 200)
	ruleRev := r.header.Get("Fleetd-Config-Revision")
	r = nodes[1].do("PUT", "/v1/sinks/ops", fmt.Sprintf(`{"type":"webhook","url":%q,"secret":"c","timeout":"2s"}`, h.srv.URL))
	r.want(t, 201)
	sinkRev := r.header.Get("Fleetd-Config-Revision")
	for _, p := range nodes {
		p.do("GET", "/v1/rules/fast", "", "Fleetd-Config-Revision", ruleRev).want(t, 200)
		p.do("GET", "/v1/sinks/ops", "", "Fleetd-Config-Revision", sinkRev).want(t, 200)
	}
	dead := map[int]bool{}
	var holder int
	waitUntil(t, 15*time.Second, "one node delivering", func() bool { holder = delivering(t, nodes, dead, "ops"); return holder >= 0 })

	// Steady state: each event once.
	const trucks, steady, rounds = 300, 10, 30
	const ts0 = 1_764_000_000
	start := time.Now()
	for j := range steady {
		sinkLoadRounds(t, nodes[j%3], trucks, j, j+1, ts0)
	}
	waitUntil(t, 30*time.Second, "the steady rounds' events", func() bool { return checkSinkEvents(t, h.events()) == trucks*steady })
	took := time.Since(start)
	time.Sleep(2 * time.Second) // a late copy would come by now
	evs := h.events()
	if n := checkSinkEvents(t, evs); n != len(evs) || n != trucks*steady {
		t.Fatalf("steady state: %d events received, %d distinct, want %d each once", len(evs), n, trucks*steady)
	}
	t.Logf("steady state: %d events, each once, delivered by node %d in %v (%.0f events/s from the first post)",
		len(evs), holder, took.Round(time.Millisecond), float64(len(evs))/took.Seconds())

	// kill -9 the delivering node during ingest; the writer posts to the
	// others.
	var live []*proc
	for i, p := range nodes {
		if i != holder {
			live = append(live, p)
		}
	}
	var wg sync.WaitGroup
	killed := make(chan struct{})
	wg.Go(func() {
		for j := steady; j < rounds; j++ {
			if j == steady+5 {
				<-killed
			}
			sinkLoadRounds(t, live[j%2], trucks, j, j+1, ts0)
		}
	})
	waitUntil(t, 30*time.Second, "deliveries of the next rounds", func() bool { return len(h.events()) > trucks*(steady+2) })
	before := len(h.events())
	if err := nodes[holder].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-nodes[holder].exited
	killedAt := time.Now()
	dead[holder] = true
	close(killed)
	wg.Wait()
	if t.Failed() {
		return
	}
	waitUntil(t, 40*time.Second, "every event after the kill", func() bool { return checkSinkEvents(t, h.events()) == trucks*rounds })
	evs = h.events()
	next := delivering(t, nodes, dead, "ops")
	if next < 0 || next == holder {
		t.Fatalf("after the kill of node %d: delivering %d", holder, next)
	}
	t.Logf("node %d killed after %d deliveries; node %d took over; all %d events arrived %v after the kill, %d duplicates",
		holder, before, next, trucks*rounds, time.Since(killedAt).Round(time.Millisecond), len(evs)-trucks*rounds)
	// Duplicates only of what was delivered around the kill: nothing
	// that arrived before the kill's last second of deliveries, nothing
	// in steady state again.
	seen := map[string]int{}
	for i, e := range evs {
		if j, ok := seen[e.ID]; ok && j < trucks*steady {
			t.Fatalf("event %s (delivery %d) delivered again as delivery %d", e.ID, j, i)
		} else if !ok {
			seen[e.ID] = i
		}
	}
	if h.badSig.Load() != 0 {
		t.Fatalf("%d bad signatures", h.badSig.Load())
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/store"
)

// testNode opens a node with an in-memory engine on urls.
func testNode(t *testing.T, urls []string, name, dir string, eng *engine.Engine) *Node {
	t.Helper()
	if eng == nil {
		var err error
		if eng, err = engine.Open(engine.Options{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
	}
	n, err := Open(Options{URLs: urls, Engine: eng, Name: name, Dir: dir, Partitions: 4, SaveEvery: 20 * time.Millisecond, PublishTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func randBatch(r *rand.Rand, n, trucks int, ts uint32) []store.Update {
	b := make([]store.Update, n)
	for i := range b {
		b[i] = store.Update{ID: fmt.Appendf(nil, "truck-%05d", r.IntN(trucks)),
			Position: fleet.Position{Lat: r.Int32N(1000000000) - 500000000, Lon: r.Int32N(1000000000) - 500000000, TS: ts + uint32(r.IntN(100)),
				Speed: uint16(r.IntN(1000)), Heading: uint16(r.IntN(360))}}
	}
	return b
}

// sameFleet fails unless every node's store holds exactly want.
func sameFleet(t *testing.T, want map[string]store.Position, nodes ...*Node) {
	t.Helper()
	for i, n := range nodes {
		st := n.opts.Engine.Store()
		if st.Len() != len(want) {
			t.Fatalf("node %d holds %d trucks, want %d", i, st.Len(), len(want))
		}
		for id, p := range want {
			got, ok := st.Get([]byte(id))
			if !ok || got != p {
				t.Fatalf("node %d: %s is %+v (%v), want %+v", i, id, got, ok, p)
			}
		}
	}
}

// TestNodesConverge publishes from every node of three, on a 3-server
// JetStream cluster (R3), and checks that each write's token is reached on
// every node and that all nodes end with the fleet of applying every
// acknowledged update once, in order.
func TestNodesConverge(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	urls, _ := natsCluster(t, 3)
	nodes := []*Node{
		testNode(t, urls[0:1], "a", t.TempDir(), nil),
		testNode(t, urls[1:2], "b", t.TempDir(), nil),
		testNode(t, urls[2:3], "c", t.TempDir(), nil),
	}
	ref, err := engine.Open(engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	r := rand.New(rand.NewPCG(uint64(seed), 3))
	base := uint32(time.Now().Unix()) - 3600
	var mu sync.Mutex
	var acked [][]store.Update
	var wg sync.WaitGroup
	for w := range 3 {
		s := r.Uint64()
		wg.Go(func() {
			rr := rand.New(rand.NewPCG(s, 1))
			for i := range 20 {
				b := randBatch(rr, 1+rr.IntN(300), 500, base+uint32(i))
				n := nodes[(w+i)%3]
				tok, err := n.Publish(context.Background(), b)
				if err != nil {
					t.Error(err)
					return
				}
				// Read your writes on another node.
				other := nodes[(w+i+1)%3]
				if err := other.Await(context.Background(), tok.String()); err != nil {
					t.Error(err)
					return
				}
				for _, u := range b {
					if p, ok := other.opts.Engine.Store().Get(u.ID); !ok || p.TS < u.TS {
						t.Errorf("after awaiting %s, node %s has %s at %+v (%v), older than the written ts %d", tok, other.opts.Name, u.ID, p, ok, u.TS)
						return
					}
				}
				mu.Lock()
				acked = append(acked, b)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// One more write from each node: its token covers everything before.
	var last Token
	for _, n := range nodes {
		id := []byte("truck-deleted-" + n.opts.Name)
		b := []store.Update{{ID: id, Position: fleet.Position{Lat: 1, Lon: 1, TS: base}}}
		if _, err := n.Publish(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		tok, err := n.Delete(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tok {
			last = last.add(m.Partition, m.Seq)
		}
	}
	want := map[string]store.Position{}
	// The reference applies updates in any order between batches: latest
	// wins by ts, so only same-ts ties could differ; the random positions
	// make them unlikely but possible, so compare against the first node
	// for ties and the reference for the rest.
	for _, b := range acked {
		if _, err := ref.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	ref.Store().RangeUpdates(func(u *store.Update) bool {
		want[string(u.ID)] = u.Position
		return true
	})
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for !n.Reached(last) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}
	for id, p := range want {
		got, _ := nodes[0].opts.Engine.Store().Get([]byte(id))
		if got.TS == p.TS && got != p {
			want[id] = got // a same-ts tie, resolved by stream order
		}
	}
	sameFleet(t, want, nodes...)
	st := nodes[0].Stats()
	if st.Behind != 0 || st.AppliedDeletes != 3 || st.PublishedBytes == 0 || st.StreamReplicas != 3 {
		t.Fatalf("stats: %+v", st)
	}
	t.Logf("bytes per update on the bus (payload): %.1f; stream bytes per message %.0f", st.BytesPerUpdate, st.StreamBytesPerMsg)
}

// testEngine opens an in-memory engine, closed when the test ends (after
// the nodes the test opened on it: cleanups run last-in first-out).
func testEngine(t *testing.T) *engine.Engine {
	t.Helper()
	eng, err := engine.Open(engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng
}

// TestNodeRestartCatchesUp closes a node, writes more through another,
// and reopens it on the same engine and positions file: it resumes
// after its saved positions (no re-application from the start) and
// catches up.
func TestNodeRestartCatchesUp(t *testing.T) {
	urls, _ := natsCluster(t, 3)
	a := testNode(t, urls, "a", t.TempDir(), nil)
	eng := testEngine(t)
	dir := t.TempDir()
	b := testNode(t, urls, "b", dir, eng)
	r := rand.New(rand.NewPCG(1, 1))
	base := uint32(time.Now().Unix()) - 100
	tok, err := a.Publish(context.Background(), randBatch(r, 1000, 300, base))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Await(context.Background(), tok.String()); err != nil {
		t.Fatal(err)
	}
	b.Close()
	appliedBefore := b.app.updates.Load()
	tok2, err := a.Publish(context.Background(), randBatch(r, 1000, 300, base+50))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Await(context.Background(), tok2.String()); !errors.Is(err, ErrNotReached) {
		t.Fatalf("a closed node awaited %s: %v", tok2, err)
	}
	b2 := testNode(t, urls, "b", dir, eng)
	if err := b2.Await(context.Background(), tok2.String()); err != nil {
		t.Fatal(err)
	}
	if got := b2.app.updates.Load(); got != 1000 {
		t.Fatalf("the restarted node applied %d updates, want the 1000 it missed (it had applied %d)", got, appliedBefore)
	}
	if err := a.Await(context.Background(), tok2.String()); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.Position{}
	a.opts.Engine.Store().RangeUpdates(func(u *store.Update) bool {
		want[string(u.ID)] = u.Position
		return true
	})
	sameFleet(t, want, b2)
	if err := b2.CheckToken("99:1"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("token of partition 99 of 4: %v", err)
	}
}

// TestNodeLogLostTail: a node whose local write-ahead log lost its tail
// after the positions file was saved (what a power cut does under
// --fsync interval or never; here the last segment is cut short) must
// not resume after those positions, which count updates the engine no
// longer holds: it reads the whole stream again and converges.
func TestNodeLogLostTail(t *testing.T) {
	urls, _ := natsCluster(t, 3)
	a := testNode(t, urls, "a", t.TempDir(), nil)
	data, dir := t.TempDir(), t.TempDir()
	eng, err := engine.Open(engine.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	b := testNode(t, urls, "b", dir, eng)
	r := rand.New(rand.NewPCG(2, 2))
	base := uint32(time.Now().Unix()) - 100
	var tok Token
	for i := range 5 {
		if tok, err = a.Publish(context.Background(), randBatch(r, 200, 300, base+uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Await(context.Background(), tok.String()); err != nil {
		t.Fatal(err)
	}
	b.Close() // saves the positions
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(data, "wal", "wal-*.log"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no log segment in %s: %v", data, err)
	}
	last := segs[len(segs)-1]
	fi, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, fi.Size()-10); err != nil {
		t.Fatal(err)
	}
	eng2, err := engine.Open(engine.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	b2 := testNode(t, urls, "b", dir, eng2)
	if !b2.Stats().PositionsAheadOfLog {
		t.Fatalf("the node resumed after positions its log no longer covers (log next LSN %d)", eng2.Stats().WAL.NextLSN)
	}
	if err := b2.Await(context.Background(), tok.String()); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.Position{}
	a.opts.Engine.Store().RangeUpdates(func(u *store.Update) bool {
		want[string(u.ID)] = u.Position
		return true
	})
	sameFleet(t, want, b2)

	// A clean restart (nothing lost) resumes after the positions.
	b2.Close()
	if err := eng2.Close(); err != nil {
		t.Fatal(err)
	}
	eng3, err := engine.Open(engine.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer eng3.Close()
	b3 := testNode(t, urls, "b", dir, eng3)
	if b3.Stats().PositionsAheadOfLog || !b3.Reached(tok) {
		t.Fatalf("a clean restart did not resume after its positions: %+v", b3.Stats())
	}
}

// TestNodeLargeMessage applies messages of more updates than one
// engine.Apply takes (applyMaxUpdates): a partition's message is applied
// in several calls, in order, and the node ends with the fleet of
// applying the batch once.
func TestNodeLargeMessage(t *testing.T) {
	urls, _ := natsCluster(t, 1)
	eng := testEngine(t)
	n, err := Open(Options{URLs: urls, Engine: eng, Replicas: 1, Partitions: 2, PublishTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	r := rand.New(rand.NewPCG(3, 3))
	// ~15,000 updates a partition, of 12,000 trucks: repeats of a truck
	// fall on both sides of a split.
	batch := randBatch(r, 30000, 24000, uint32(time.Now().Unix())-100)
	tok, err := n.Publish(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Await(context.Background(), tok.String()); err != nil {
		t.Fatal(err)
	}
	if got := n.app.messages.Load(); got != int64(len(tok)) {
		t.Fatalf("%d messages applied, want one a partition (%d): the test needs messages larger than applyMaxUpdates", got, len(tok))
	}
	ref, err := engine.Open(engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	if _, err := ref.Apply(batch); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.Position{}
	ref.Store().RangeUpdates(func(u *store.Update) bool {
		want[string(u.ID)] = u.Position
		return true
	})
	for id, p := range want {
		if got, _ := eng.Store().Get([]byte(id)); got.TS == p.TS && got != p {
			want[id] = got // a same-ts tie: the reference applies in batch order too, but sorted by partition here
		}
	}
	sameFleet(t, want, n)
}

// TestNodePollsWithoutConsumer: a node that cannot create consumers (its
// NATS user may not, as while NATS elects a meta leader) still applies
// every partition, reading it message by message through the stream's
// get API, and reaches another node's writes.
func TestNodePollsWithoutConsumer(t *testing.T) {
	port := freePorts(t, 1)[0]
	all := &natsserver.Permissions{}
	noConsumers := &natsserver.Permissions{Publish: &natsserver.SubjectPermission{
		Allow: []string{">"}, Deny: []string{"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>"}}}
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*natsserver.User{{Username: "a", Password: "a", Permissions: all}, {Username: "b", Password: "b", Permissions: noConsumers}}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	open := func(user string) *Node {
		eng, err := engine.Open(engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
		n, err := Open(Options{URLs: []string{fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", user, user, port)}, Engine: eng, Name: user,
			Replicas: 1, Partitions: 4, PublishTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	a, b := open("a"), open("b")
	r := rand.New(rand.NewPCG(4, 4))
	base := uint32(time.Now().Unix()) - 100
	var tok Token
	for i := range 10 {
		if tok, err = a.Publish(context.Background(), randBatch(r, 300, 500, base+uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !b.Reached(tok) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	st := b.Stats()
	if !b.Reached(tok) || st.PolledMessages == 0 {
		t.Fatalf("the node without consumers did not reach %s (applied %s, %d messages polled)", tok, st.Applied, st.PolledMessages)
	}
	if err := a.Await(context.Background(), tok.String()); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.Position{}
	a.opts.Engine.Store().RangeUpdates(func(u *store.Update) bool {
		want[string(u.ID)] = u.Position
		return true
	})
	sameFleet(t, want, b)
	t.Logf("%d messages polled, %d consumer errors", st.PolledMessages, st.ConsumerErrors)
}

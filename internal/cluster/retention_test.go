package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/store"
)

// retNode opens a node that publishes snapshots only when the test
// calls PublishSnapshot (no ticker, no half-period skip).
func retNode(t *testing.T, urls []string, name, dir string, eng *engine.Engine) (*Node, error) {
	t.Helper()
	if eng == nil {
		var err error
		if eng, err = engine.Open(engine.Options{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
	}
	n, err := Open(Options{URLs: urls, Engine: eng, Name: name, Dir: dir, Partitions: 4, SaveEvery: 20 * time.Millisecond,
		PublishTimeout: 30 * time.Second, SnapshotEvery: -1, Retain: -1})
	if err == nil {
		t.Cleanup(func() { n.Close() })
	}
	return n, err
}

func mustRetNode(t *testing.T, urls []string, name, dir string, eng *engine.Engine) *Node {
	t.Helper()
	n, err := retNode(t, urls, name, dir, eng)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fleetMap(n *Node) map[string]store.Position {
	want := map[string]store.Position{}
	n.opts.Engine.Store().RangeUpdates(func(u *store.Update) bool {
		want[string(u.ID)] = u.Position
		return true
	})
	return want
}

// publishRounds publishes rounds random batches from n and returns the
// last token.
func publishRounds(t *testing.T, n *Node, r *rand.Rand, rounds int, base uint32) Token {
	t.Helper()
	var tok Token
	for i := range rounds {
		var err error
		if tok, err = n.Publish(context.Background(), randBatch(r, 300, 300, base+uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	return tok
}

func awaitAll(t *testing.T, tok Token, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		if err := n.Await(context.Background(), tok.String()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRetentionRestartBehindPurge: a node stopped before the stream was
// purged (below the snapshot before the newest) restarts with saved
// positions below what the stream holds. It must not resume (it would
// skip the purged updates, among them deletes and a truck re-added with
// an older ts than the one the node holds): it restores from the object
// store over its old state and ends with the same fleet as the others.
func TestRetentionRestartBehindPurge(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 3))
	urls, _ := natsCluster(t, 3)
	a := mustRetNode(t, urls, "a", t.TempDir(), nil)
	eng := testEngine(t)
	var err error
	dir := t.TempDir()
	b := mustRetNode(t, urls, "b", dir, eng)
	base := uint32(time.Now().Unix()) - 10000
	tok := publishRounds(t, a, r, 5, base)
	high := store.Update{ID: []byte("x-high"), Position: fleet.Position{Lat: 1, Lon: 2, TS: base + 5000}}
	doomed := []store.Update{high}
	for i := range 20 {
		doomed = append(doomed, store.Update{ID: fmt.Appendf(nil, "gone-%02d", i), Position: fleet.Position{Lat: 3, Lon: 4, TS: base}})
	}
	if tok, err = a.Publish(context.Background(), doomed); err != nil {
		t.Fatal(err)
	}
	awaitAll(t, tok, a, b)
	b.Close()

	// What b misses: updates, deletes, and x-high deleted then re-added
	// older (b's newer copy would win over the snapshot's by ts).
	publishRounds(t, a, r, 5, base+100)
	for i := range 20 {
		if _, err := a.Delete(context.Background(), fmt.Appendf(nil, "gone-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Delete(context.Background(), high.ID); err != nil {
		t.Fatal(err)
	}
	low := high
	low.TS, low.Lat = base+200, 7
	if tok, err = a.Publish(context.Background(), []store.Update{low}); err != nil {
		t.Fatal(err)
	}
	awaitAll(t, tok, a)
	if err := a.PublishSnapshot(); err != nil {
		t.Fatal(err)
	}
	first := a.Stats()
	if first.Purges != 0 || first.StreamFirstSeq != 1 {
		t.Fatalf("the first snapshot purged: %+v", first)
	}
	snap1 := *a.ret.latest.Load()
	tok = publishRounds(t, a, r, 5, base+300)
	awaitAll(t, tok, a)
	if err := a.PublishSnapshot(); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.Purges == 0 || st.StreamFirstSeq <= 1 || st.PurgedBelow != Token(marksOf(snap1)).String() {
		t.Fatalf("the second snapshot did not purge below the first (%v): %+v", snap1, st)
	}
	// Each partition keeps the first snapshot's message (the floor).
	for p, s := range snap1 {
		f, ok, err := a.firstOf(context.Background(), p)
		if err != nil || !ok || f != s {
			t.Fatalf("partition %d: first message %d (%v %v), want the floor %d", p, f, ok, err, s)
		}
	}
	t.Logf("stream first seq %d, %d messages left of %d; purged below %s", st.StreamFirstSeq, st.StreamMessages, st.StreamLastSeq, st.PurgedBelow)

	b2 := mustRetNode(t, urls, "b", dir, eng)
	bs := b2.Stats()
	if !bs.BehindRetentionAtStart || !bs.RestoredFromSnapshot {
		t.Fatalf("the node behind the purge did not restore: %+v", bs)
	}
	awaitAll(t, tok, b2)
	want := fleetMap(a)
	if _, ok := want["gone-03"]; ok {
		t.Fatal("a still holds a deleted truck")
	}
	if want["x-high"].TS != low.TS {
		t.Fatalf("x-high on a: %+v", want["x-high"])
	}
	sameFleet(t, want, b2)

	// A later restart, caught up, resumes (not behind).
	b2.Close()
	b3 := mustRetNode(t, urls, "b", dir, eng)
	if s := b3.Stats(); s.BehindRetentionAtStart || s.RestoredFromSnapshot || !b3.Reached(tok) {
		t.Fatalf("a caught-up restart did not resume: %+v", s)
	}
	// A new empty node joins from the newest snapshot.
	c := mustRetNode(t, urls, "c", t.TempDir(), nil)
	if !c.Stats().RestoredFromSnapshot {
		t.Fatal("the new node did not restore")
	}
	awaitAll(t, tok, c)
	sameFleet(t, want, c)
}

// TestRetentionRefuses: a node whose saved positions were purged with no
// snapshot to restore from, and an empty node whose only snapshot the
// stream was purged past (a publisher race, made by hand here), refuse
// to start rather than read a stream with a gap.
func TestRetentionRefuses(t *testing.T) {
	urls, _ := natsCluster(t, 3)
	r := rand.New(rand.NewPCG(4, 4))
	a := mustRetNode(t, urls, "a", t.TempDir(), nil)
	eng := testEngine(t)
	var err error
	dir := t.TempDir()
	b := mustRetNode(t, urls, "b", dir, eng)
	base := uint32(time.Now().Unix()) - 1000
	awaitAll(t, publishRounds(t, a, r, 3, base), a, b)
	b.Close()
	tok := publishRounds(t, a, r, 3, base+10)
	awaitAll(t, tok, a)
	// Purge every partition below its last message (no snapshot exists).
	purgeBelowApplied := func() {
		for i, p := range a.parts {
			if err := a.stream.Purge(context.Background(), jetstream.WithPurgeSubject(a.subj+strconv.Itoa(i)),
				jetstream.WithPurgeSequence(p.applied.Load())); err != nil {
				t.Fatal(err)
			}
		}
	}
	purgeBelowApplied()
	if _, err := retNode(t, urls, "b", dir, eng); err == nil || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("a node behind a purge with no snapshot started: %v", err)
	}

	if err := a.PublishSnapshot(); err != nil {
		t.Fatal(err)
	}
	awaitAll(t, publishRounds(t, a, r, 3, base+20), a)
	purgeBelowApplied()
	_, err = retNode(t, urls, "c", t.TempDir(), nil)
	if err == nil || !errors.Is(err, errPurgedPast) {
		t.Fatalf("an empty node restored a snapshot the stream was purged past: %v", err)
	}
	t.Log(err)
	// The next snapshot does.
	if err := a.PublishSnapshot(); err != nil {
		t.Fatal(err)
	}
	c := mustRetNode(t, urls, "c", t.TempDir(), nil)
	if !c.Stats().RestoredFromSnapshot {
		t.Fatal("c did not restore")
	}
	sameFleet(t, fleetMap(a), c)
}

// TestRetentionGapAtRunTime: a running node whose partition is below the
// purged stream (made by setting its applied sequence back to a purged
// message: a node that fell that far behind) stops applying that
// partition rather than apply across the gap, says so in its stats, and
// restores from the object store at its restart.
func TestRetentionGapAtRunTime(t *testing.T) {
	urls, _ := natsCluster(t, 3)
	r := rand.New(rand.NewPCG(5, 5))
	a := mustRetNode(t, urls, "a", t.TempDir(), nil)
	eng := testEngine(t)
	dir := t.TempDir()
	b := mustRetNode(t, urls, "b", dir, eng)
	base := uint32(time.Now().Unix()) - 1000
	tok0 := publishRounds(t, a, r, 1, base)
	awaitAll(t, publishRounds(t, a, r, 3, base+1), a, b)
	if err := a.PublishSnapshot(); err != nil {
		t.Fatal(err)
	}
	tok := publishRounds(t, a, r, 3, base+10)
	awaitAll(t, tok, a, b)
	if err := a.PublishSnapshot(); err != nil {
		t.Fatal(err)
	}
	if a.Stats().Purges == 0 {
		t.Fatal("no purge")
	}
	time.Sleep(1500 * time.Millisecond) // the watcher looks: a caught-up node is not behind
	if g := b.Stats().GapPartitions; len(g) != 0 {
		t.Fatalf("a caught-up node reports gaps %v", g)
	}
	// Partition 0 back to its first write: purged since (below the
	// first snapshot, whose message is kept).
	var old uint64
	for _, m := range tok0 {
		if m.Partition == 0 {
			old = m.Seq
		}
	}
	if old == 0 {
		t.Skip("the first writes did not reach partition 0")
	}
	b.parts[0].applied.Store(old)
	deadline := time.Now().Add(10 * time.Second)
	for len(b.Stats().GapPartitions) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if g := b.Stats().GapPartitions; len(g) != 1 || g[0] != 0 {
		t.Fatalf("gap partitions %v, want [0]", g)
	}
	tok = publishRounds(t, a, r, 3, base+20)
	awaitAll(t, tok, a)
	if err := b.Await(context.Background(), tok.String()); !errors.Is(err, ErrNotReached) {
		t.Fatalf("the node applied past the gap: %v", err)
	}
	b.Close()
	b2 := mustRetNode(t, urls, "b", dir, eng)
	if s := b2.Stats(); !s.BehindRetentionAtStart || !s.RestoredFromSnapshot {
		t.Fatalf("the restarted node did not restore: %+v", s)
	}
	awaitAll(t, tok, b2)
	sameFleet(t, fleetMap(a), b2)
}

// TestCovers is covers' table.
// TestRetainFloors: with Options.Retain the purge floor is the newest
// snapshot seen at least Retain ago that the replaced one covers; never
// one younger, never past the replaced one.
func TestRetainFloors(t *testing.T) {
	n := &Node{opts: Options{Retain: time.Hour}}
	now := time.Now()
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	if f := n.retainFloors([]uint64{9, 9}); f != nil {
		t.Fatalf("nothing seen: floors %v", f)
	}
	n.noteSnapshot([]uint64{1, 2}, at(3*time.Hour))
	n.noteSnapshot([]uint64{3, 4}, at(90*time.Minute))
	n.noteSnapshot([]uint64{5, 6}, at(30*time.Minute))
	n.noteSnapshot([]uint64{5, 6}, at(30*time.Minute-time.Millisecond)) // within Retain/1024: not kept
	if got := len(n.ret.seen); got != 3 {
		t.Fatalf("%d kept, want 3", got)
	}
	if f := n.retainFloors([]uint64{2, 9}); !slices.Equal(f, []uint64{1, 2}) {
		t.Fatalf("replaced {2,9} covers only {1,2} of those old enough: floors %v", f)
	}
	if f := n.retainFloors([]uint64{7, 7}); !slices.Equal(f, []uint64{3, 4}) {
		t.Fatalf("floors %v, want the newest an hour old, {3,4}", f)
	}
	if got := len(n.ret.seen); got != 2 {
		t.Fatalf("%d kept after the purge, want 2 (the floor and the younger)", got)
	}
	n.opts.Retain = -1
	if f := n.retainFloors([]uint64{7, 7}); !slices.Equal(f, []uint64{7, 7}) {
		t.Fatalf("Retain < 0: floors %v, want the replaced snapshot's", f)
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		a, b []uint64
		want bool
	}{
		{[]uint64{1, 2}, []uint64{1, 2}, true},
		{[]uint64{3, 2}, []uint64{1, 2}, true},
		{[]uint64{3, 1}, []uint64{1, 2}, false},
		{[]uint64{1}, []uint64{1, 2}, false},
		{nil, nil, true},
	} {
		if got := covers(tc.a, tc.b); got != tc.want {
			t.Errorf("covers(%v, %v) = %v", tc.a, tc.b, got)
		}
	}
}

// TestParsePositions: a snapshot's positions name every partition, 0
// included (a partition without messages), which a client token may not.
func TestParsePositions(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want []uint64
	}{
		{"0:5,1:0,2:7", 3, []uint64{5, 0, 7}},
		{"1:0,0:0", 2, []uint64{0, 0}},
		{"0:5,1:0", 3, nil},  // partition 2 missing
		{"0:5,0:6", 2, nil},  // repeated
		{"0:5,2:1", 2, nil},  // past the count
		{"0:x,1:1", 2, nil},  // not a number
		{"", 1, nil},         // empty
		{"0:1,1:2,", 2, nil}, // trailing comma
		{"0:18446744073709551615", 1, []uint64{1<<64 - 1}},
	} {
		got, err := parsePositions(tc.s, tc.n)
		if (err == nil) != (tc.want != nil) || (err == nil && !slices.Equal(got, tc.want)) {
			t.Errorf("parsePositions(%q, %d) = %v, %v; want %v", tc.s, tc.n, got, err, tc.want)
		}
		if err == nil {
			if again, err := parsePositions(Token(marksOf(got)).String(), tc.n); err != nil || !slices.Equal(again, got) {
				t.Errorf("%v does not round-trip: %v %v", got, again, err)
			}
		}
	}
}

// TestRetentionQuietPartition: partitions that never had a message are
// at 0 in the snapshots; publishing, purging, restoring an empty node
// and restarting one behind the purge all work with them.
func TestRetentionQuietPartition(t *testing.T) {
	urls, _ := natsCluster(t, 3)
	a := mustRetNode(t, urls, "a", t.TempDir(), nil)
	eng := testEngine(t)
	dir := t.TempDir()
	b := mustRetNode(t, urls, "b", dir, eng)
	// Only trucks of partitions 0 and 1.
	var ids [][]byte
	for i := 0; len(ids) < 50; i++ {
		id := fmt.Appendf(nil, "q-%d", i)
		if Partition(id, 4) < 2 {
			ids = append(ids, id)
		}
	}
	base := uint32(time.Now().Unix()) - 1000
	round := func(ts uint32) Token {
		var ups []store.Update
		for i, id := range ids {
			ups = append(ups, store.Update{ID: id, Position: fleet.Position{Lat: int32(i), Lon: int32(ts), TS: ts}})
		}
		tok, err := a.Publish(context.Background(), ups)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	awaitAll(t, round(base), a, b)
	b.Close()
	round(base + 1)
	awaitAll(t, round(base+2), a)
	if err := a.PublishSnapshot(); err != nil {
		t.Fatal(err)
	}
	if l := *a.ret.latest.Load(); l[2] != 0 || l[3] != 0 || l[0] == 0 {
		t.Fatalf("snapshot positions %v", l)
	}
	tok := round(base + 3)
	awaitAll(t, tok, a)
	if err := a.PublishSnapshot(); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.Purges != 2 {
		t.Fatalf("purges %d, want partitions 0 and 1: %+v", s.Purges, s)
	}
	c := mustRetNode(t, urls, "c", t.TempDir(), nil)
	b2 := mustRetNode(t, urls, "b", dir, eng)
	if s := b2.Stats(); !s.BehindRetentionAtStart || !s.RestoredFromSnapshot || !c.Stats().RestoredFromSnapshot {
		t.Fatalf("b %+v, c restored %v", s, c.Stats().RestoredFromSnapshot)
	}
	awaitAll(t, tok, b2, c)
	sameFleet(t, fleetMap(a), b2, c)
}

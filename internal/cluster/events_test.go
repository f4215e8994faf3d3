package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetd/fleetd/internal/outbox"
)

func openTestEvents(t *testing.T, urls []string, name string) *Events {
	t.Helper()
	e, err := OpenEvents(EventsOptions{URLs: urls, Stream: "evtest", Replicas: 1, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func follow(t *testing.T, e *Events, sink string) *EventSink {
	t.Helper()
	s, err := e.Follow(sink, 2)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// holderOf waits until exactly one of ss delivers and returns it.
func holderOf(t *testing.T, within time.Duration, ss ...*EventSink) *EventSink {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		var h *EventSink
		n := 0
		for _, s := range ss {
			if s.Delivering() {
				h, n = s, n+1
			}
		}
		if n == 1 {
			return h
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no single holder within %v", within)
	return nil
}

// testEvents are n events over trucks keys, the same on every node.
func testEvents(seed uint64, n, trucks int) []Event {
	r := rand.New(rand.NewPCG(seed, 1))
	evs := make([]Event, n)
	for i := range evs {
		k := uint64(r.IntN(trucks))
		evs[i] = Event{ID: fmt.Sprintf("%032x", i), Key: k, Time: time.Now().UnixNano(),
			Payload: fmt.Appendf(nil, `{"id":"%032x","truck":"t%d","n":%d}`, i, k, i)}
	}
	return evs
}

// readN reads n events of lane from s within d.
func readN(t *testing.T, s *EventSink, lane, n int, d time.Duration) []outbox.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []outbox.Record
	for len(out) < n {
		var err error
		if out, err = s.NextBatch(ctx, lane, out, n-len(out)); err != nil {
			t.Fatalf("read %d of %d: %v", len(out), n, err)
		}
	}
	return out
}

// TestEventsPublishOnce: two nodes publish the same events (in the same
// per-truck order, interleaved differently) into one lane; the holder
// hands each out once, each truck's in order. Seeded.
func TestEventsPublishOnce(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	urls, _ := natsCluster(t, 1)
	a, b := openTestEvents(t, urls, "a"), openTestEvents(t, urls, "b")
	sa, sb := follow(t, a, "ops.1"), follow(t, b, "ops.1")
	h := holderOf(t, 10*time.Second, sa, sb)
	evs := testEvents(seed, 500, 40)
	// b sees the events with the trucks interleaved otherwise: a stable
	// shuffle that keeps each key's order.
	r := rand.New(rand.NewPCG(seed, 2))
	perKey := map[uint64][]Event{}
	for _, e := range evs {
		perKey[e.Key] = append(perKey[e.Key], e)
	}
	var other []Event
	for len(other) < len(evs) {
		k := uint64(r.IntN(40))
		if q := perKey[k]; len(q) > 0 {
			other, perKey[k] = append(other, q[0]), q[1:]
		}
	}
	errs := make(chan error, 2)
	for _, w := range []struct {
		e   *Events
		evs []Event
	}{{a, evs}, {b, other}} {
		go func() {
			for i := 0; i < len(w.evs); {
				n, err := w.e.Publish(context.Background(), "ops.1", 1, w.evs[i:min(i+64, len(w.evs))])
				if err != nil {
					errs <- err
					return
				}
				i += n
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := readN(t, h, 1, len(evs), 10*time.Second)
	last := map[string]int{}
	seen := map[string]bool{}
	for _, rec := range got {
		var id string
		var truck, n int
		if _, err := fmt.Sscanf(string(rec.Payload), `{"id":"%32s","truck":"t%d","n":%d}`, &id, &truck, &n); err != nil {
			t.Fatalf("%q: %v", rec.Payload, err)
		}
		if seen[id] {
			t.Fatalf("event %s handed out twice", id)
		}
		seen[id] = true
		k := fmt.Sprint(truck)
		if p, ok := last[k]; ok && n < p {
			t.Fatalf("truck %s: event %d after %d", k, n, p)
		}
		last[k] = n
	}
	// Nothing more.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if more, _ := h.NextBatch(ctx, 1, nil, 10); len(more) != 0 {
		t.Fatalf("%d events more than published", len(more))
	}
	if st := a.Stats(); st.Published+b.Stats().Published != int64(len(evs)) || st.Duplicates+b.Stats().Duplicates != int64(len(evs)) {
		t.Fatalf("stats a %+v b %+v", st, b.Stats())
	}
}

// TestEventsTakeover: the holder dies (its connection closed, no
// handover): another node takes over after the lease times out and
// resumes after the saved cursor; a clean Close hands over at once.
// Local (expiry) events are published by the holder only.
func TestEventsTakeover(t *testing.T) {
	urls, _ := natsCluster(t, 1)
	a, b := openTestEvents(t, urls, "a"), openTestEvents(t, urls, "b")
	sa, sb := follow(t, a, "s"), follow(t, b, "s")
	h := holderOf(t, 10*time.Second, sa, sb)
	evs := testEvents(1, 100, 10)
	if n, err := b.Publish(context.Background(), "s", 0, evs); n != 100 || err != nil {
		t.Fatalf("publish: %d %v", n, err)
	}
	got := readN(t, h, 0, 60, 5*time.Second)
	h.Done(0, got[59].Seq)
	time.Sleep(2 * leaseRefresh) // renewed with the cursor
	other, otherEv := sb, b
	if h == sb {
		other, otherEv = sa, a
	}
	h.e.nc.Close() // kill -9 of the holder, as NATS sees it
	died := time.Now()
	holderOf(t, 3*leaseTTL, other)
	took := time.Since(died)
	if took < leaseTTL/2 {
		t.Fatalf("took over %v after the holder died, before the lease could time out", took)
	}
	rest := readN(t, other, 0, 40, 5*time.Second)
	if rest[0].Seq != got[59].Seq+1 || string(rest[0].Payload) != string(evs[60].Payload) {
		t.Fatalf("the new holder resumed at %d %q, want %d %q", rest[0].Seq, rest[0].Payload, got[59].Seq+1, evs[60].Payload)
	}
	other.Done(0, rest[39].Seq)
	t.Logf("took over %v after the holder's connection closed", took.Round(time.Millisecond))

	// Local events: skipped by a node that does not deliver.
	c := openTestEvents(t, urls, "c")
	sc := follow(t, c, "s")
	loc := []Event{{ID: "e1", Key: 1, Local: true, Payload: []byte(`{"id":"e1"}`)}, {ID: "e2", Key: 2, Payload: []byte(`{"id":"e2"}`)}}
	if n, err := c.Publish(context.Background(), "s", 0, loc); n != 2 || err != nil {
		t.Fatalf("publish: %d %v", n, err)
	}
	if n, err := otherEv.Publish(context.Background(), "s", 0, []Event{{ID: "e3", Key: 1, Local: true, Payload: []byte(`{"id":"e3"}`)}}); n != 1 || err != nil {
		t.Fatalf("publish: %d %v", n, err)
	}
	two := readN(t, other, 0, 2, 5*time.Second)
	if string(two[0].Payload) != `{"id":"e2"}` || string(two[1].Payload) != `{"id":"e3"}` || c.Stats().Skipped != 1 {
		t.Fatalf("local events: %q %q, skipped %d", two[0].Payload, two[1].Payload, c.Stats().Skipped)
	}
	other.Done(0, two[1].Seq)

	// A clean close hands over at once, with the cursor.
	start := time.Now()
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	holderOf(t, leaseTTL, sc)
	if d := time.Since(start); d >= leaseTTL {
		t.Fatalf("handover took %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if more, _ := sc.NextBatch(ctx, 0, nil, 10); len(more) != 0 {
		t.Fatalf("after a clean handover, %d events again: %q", len(more), more[0].Payload)
	}
	// Remove: the stream's events and the lease are gone.
	if _, err := c.Publish(context.Background(), "s", 1, testEvents(2, 5, 5)); err != nil {
		t.Fatal(err)
	}
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove("s"); err != nil {
		t.Fatal(err)
	}
	info, err := c.stream.Info(context.Background(), jetstreamSubjects(c.subj+sinkToken("s")+".>"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("after Remove the stream holds %d of the sink's events", info.State.Msgs)
	}
}

func jetstreamSubjects(f string) jetstream.StreamInfoOpt { return jetstream.WithSubjectFilter(f) }

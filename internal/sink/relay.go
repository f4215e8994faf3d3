package sink

import (
	"bytes"
	"context"
	"fmt"

	"github.com/fleetd/fleetd/internal/outbox"
)

// Relay carries sinks' events between the nodes of a cluster (package
// cluster implements it; nil on a single node). With a Relay, each lane
// of a sink has two halves (doc.go, Cluster mode): its events in the
// outbox go to Publish instead of the destination, on every node; and
// Follow's lanes, which hand events out only on the one node that
// delivers for the sink, feed the destination.
type Relay interface {
	// Publish stores evs, one lane's events in the lane's order, in the
	// cluster's events stream, and returns how many from the front are
	// stored (or were already: the same event published by another
	// node); err says why the rest are not. It never has two events of
	// one Key in flight at once, so a failure part way cannot store a
	// truck's later event before its earlier one.
	Publish(ctx context.Context, sink string, lane int, evs []RelayEvent) (int, error)
	// Follow starts taking part in the delivery of sink's events: this
	// node's Follower hands lane i's events out, in stream order, only
	// while it is the one delivering for the sink.
	Follow(sink string, lanes int) (Follower, error)
	// Remove deletes what the cluster holds for a deleted sink (its
	// undelivered events, where its delivery got to).
	Remove(sink string) error
}

// RelayEvent is one event as a node publishes it into the cluster.
type RelayEvent struct {
	ID   string // the event's stable ID: nodes publishing the same event publish the same ID
	Key  uint64 // truckKey of its truck
	Time int64  // emitted (Unix ns): max_age and latency count from it
	// Local: decided by this node's clock rather than by the stream (a
	// truck.expired, or a resolve because the truck expired): nodes
	// expire a truck at different times, so only the delivering node
	// publishes it (see doc.go).
	Local   bool
	Payload []byte
}

// Follower is one node's part in delivering a sink's events from the
// cluster's events stream.
type Follower interface {
	// NextBatch appends lane's next events to dst (at most max): it
	// waits for the first, while this node does not deliver for the
	// sink too; Seq is the event's sequence in the events stream, Time
	// when it was emitted.
	NextBatch(ctx context.Context, lane int, dst []outbox.Record, max int) ([]outbox.Record, error)
	// Done marks lane's events up to seq delivered (lanes deliver in
	// order).
	Done(lane int, seq uint64)
	// Delivering reports whether this node delivers for the sink now.
	Delivering() bool
	// Pending is how many of the sink's events wait in the stream
	// beyond what this node has handed out (0 when not delivering).
	Pending() int64
	// Close stops following; a node that was delivering saves where it
	// got to and hands the delivery over.
	Close() error
}

// source is what a lane reads: its outbox, or a lane of a Follower.
type source interface {
	NextBatch(ctx context.Context, dst []outbox.Record, max int) ([]outbox.Record, error)
	Done(seq uint64)
}

// followLane is lane i of a Follower as a source.
type followLane struct {
	f Follower
	i int
}

func (l followLane) NextBatch(ctx context.Context, dst []outbox.Record, max int) ([]outbox.Record, error) {
	return l.f.NextBatch(ctx, l.i, dst, max)
}

func (l followLane) Done(seq uint64) { l.f.Done(l.i, seq) }

// relayBatch is how many events a publishing lane hands to Publish at
// once (the lane's outbox window permitting).
const relayBatch = 64

// publisher is the sender of a publishing lane: it hands the lane's
// outbox records to the Relay. Owned by its lane's goroutine.
type publisher struct {
	r    Relay
	sink string
	lane int
	evs  []RelayEvent
}

var expiredReason = []byte(`,"reason":"truck expired"}`)

func (p *publisher) send(ctx context.Context, recs []outbox.Record) (int, error) {
	p.evs = p.evs[:0]
	for _, r := range recs {
		id, kind := eventHeader(r.Payload)
		if id == "" {
			// Not one of ours (a damaged record): publishing it would
			// block the lane for max_age. Counted as published.
			continue
		}
		p.evs = append(p.evs, RelayEvent{ID: id, Key: r.Key, Time: r.Time, Payload: r.Payload,
			Local: kind == KindExpired || bytes.HasSuffix(r.Payload, expiredReason)})
	}
	if len(p.evs) < len(recs) {
		// Keep the prefix contract simple: a damaged record is rare.
		return p.sendSkipping(ctx, recs)
	}
	n, err := p.r.Publish(ctx, p.sink, p.lane, p.evs)
	if err != nil {
		err = fmt.Errorf("publishing into the cluster: %w", err)
	}
	return n, err
}

// sendSkipping publishes recs one at a time, skipping damaged ones.
func (p *publisher) sendSkipping(ctx context.Context, recs []outbox.Record) (int, error) {
	for i, r := range recs {
		id, kind := eventHeader(r.Payload)
		if id == "" {
			continue
		}
		ev := []RelayEvent{{ID: id, Key: r.Key, Time: r.Time, Payload: r.Payload,
			Local: kind == KindExpired || bytes.HasSuffix(r.Payload, expiredReason)}}
		if _, err := p.r.Publish(ctx, p.sink, p.lane, ev); err != nil {
			return i, fmt.Errorf("publishing into the cluster: %w", err)
		}
	}
	return len(recs), nil
}

func (p *publisher) close() {}

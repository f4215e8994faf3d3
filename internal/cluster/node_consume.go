package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Consumer timing. A partition's consumer is recreated as soon as it is
// known or suspected dead; the figures bound how long that takes after
// NATS can serve it again (a new stream or meta leader: NATS' own
// election, 4-9 s after a leader's server dies, dominates).
const (
	// consumeHeartbeat is the idle heartbeat asked of the server: two
	// missed (1 s) mean the consumer or its server is gone.
	consumeHeartbeat = 500 * time.Millisecond
	// createTimeout bounds the first two attempts to create a consumer;
	// each further pair waits twice as long, up to maxCreateTimeout (a
	// server too loaded to answer in time still gets its consumer). The
	// client library's ordered consumer waits 10 s an attempt and backs
	// off to 10 s between attempts: a request sent while the meta leader
	// was being elected kept a partition dark for 10-11 s after NATS was
	// back (TestCluster, before this file). Short first attempts matter
	// after a server dies without being the leader: until NATS marks it
	// offline it may still be picked to host the new consumer, and that
	// attempt can only time out.
	createTimeout    = 500 * time.Millisecond
	maxCreateTimeout = 4 * time.Second
	// recreateWait is the pause between two attempts.
	recreateWait = 250 * time.Millisecond
	// consumerStall is how long a partition may stay behind the stream
	// without applying anything before its consumer is recreated: the
	// last resort for a loss no heartbeat or gap shows (the tail of a
	// partition delivered into a connection that then died).
	consumerStall = 2 * time.Second
	// consumerInactive is how long the server keeps a consumer nobody
	// pulls from: the cleanup of consumers abandoned when their
	// deletion could not reach the server.
	consumerInactive = 30 * time.Second
)

// follower is one generation of a partition's consumer: the applier
// drops what older generations still deliver.
type follower struct {
	gen     uint64
	name    string
	cc      jetstream.ConsumeContext
	dseq    uint64        // last consumer (delivery) sequence handed on; the handler's
	trouble chan error    // first reason to replace it (buffered 1)
	done    chan struct{} // closed when replaced: releases a handler blocked on the applier
}

func (f *follower) fail(err error) {
	select {
	case f.trouble <- err:
	default:
	}
}

// follow keeps partition p's consumer alive until Close. Each consumer
// is a plain ephemeral pull consumer (R1, memory, no acks) that starts
// right after the applied sequence, so what it delivers is a gap-free
// run of the partition from there; follow replaces it when
//
//   - the library reports two missed heartbeats, a deleted consumer, no
//     responders or a closed connection;
//   - a delivery sequence skips (messages lost in transit, e.g. pushed
//     into a connection that died); or
//   - the watcher finds the partition behind the stream without
//     progress for consumerStall (kick).
//
// A failed creation is retried every recreateWait, each attempt bounded
// by createTimeout (growing after repeated failures), for as long as the
// node runs; meanwhile the follower reads the partition without a
// consumer (poll).
func (n *Node) follow(p *partition) {
	for failed := 0; ; {
		f, err := n.subscribe(p, min(createTimeout<<min(failed/2, 4), maxCreateTimeout))
		if err != nil {
			failed++
			if n.closed.Load() {
				return
			}
			n.app.consumeErrors.Add(1)
			n.app.rateLog(n.log, "could not create a partition consumer; reading the partition without one meanwhile", "partition", p.n, "applied", p.applied.Load(), "err", err)
			wait := time.Now().Add(recreateWait)
			n.poll(p, p.gen.Load(), wait)
			select {
			case <-n.stop:
				return
			case <-time.After(time.Until(wait)):
			}
			continue
		}
		failed = 0
		var why error
		select {
		case <-n.stop:
			f.cc.Stop()
			// Tidy (Close waits): else the server keeps it consumerInactive.
			ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
			_ = n.js.DeleteConsumer(ctx, n.opts.Stream, f.name)
			cancel()
			return
		case why = <-f.trouble:
		case <-p.kick:
			why = fmt.Errorf("behind the stream (last %d) without progress for %v", p.last.Load(), consumerStall)
		}
		f.cc.Stop()
		close(f.done)
		n.app.consumerRestarts.Add(1)
		n.app.rateLog(n.log, "replacing a partition consumer", "partition", p.n, "applied", p.applied.Load(), "why", why)
		n.wg.Go(func() {
			// Best effort: the server drops it after consumerInactive anyway.
			ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
			_ = n.js.DeleteConsumer(ctx, n.opts.Stream, f.name)
			cancel()
		})
	}
}

// subscribe creates p's next consumer generation, starting after what is
// applied, and starts consuming it; timeout bounds the creation.
func (n *Node) subscribe(p *partition, timeout time.Duration) (*follower, error) {
	// The generation first, then the sequence: whatever an older
	// generation hands over from now on is dropped, and the new one
	// starts at or before the first message not yet applied.
	f := &follower{gen: p.gen.Add(1), trouble: make(chan error, 1), done: make(chan struct{})}
	f.name = n.consumerID + "_p" + strconv.Itoa(p.n) + "_" + strconv.FormatUint(f.gen, 10)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cons, err := n.js.CreateConsumer(ctx, n.opts.Stream, jetstream.ConsumerConfig{
		Name:              f.name,
		Description:       "fleetd node " + n.opts.Name + ", partition " + strconv.Itoa(p.n),
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       p.applied.Load() + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     n.subj + strconv.Itoa(p.n),
		InactiveThreshold: consumerInactive,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: consumer of partition %d: %w", p.n, err)
	}
	f.cc, err = cons.Consume(func(m jetstream.Msg) { n.deliver(p, f, m) },
		jetstream.PullMaxBytes(consumeMaxBytes), jetstream.PullHeartbeat(consumeHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			n.app.consumeErrors.Add(1)
			if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, nats.ErrNoResponders) ||
				errors.Is(err, jetstream.ErrConnectionClosed) || errors.Is(err, jetstream.ErrBadRequest) {
				f.fail(err)
				return
			}
			// Leadership changes, server shutdown notices: the library
			// pulls again; a loss they cause shows as a gap.
			n.app.rateLog(n.log, "partition consumer error", "partition", p.n, "err", err)
		}))
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
		_ = n.js.DeleteConsumer(ctx, n.opts.Stream, f.name)
		cancel()
		return nil, fmt.Errorf("cluster: consuming partition %d: %w", p.n, err)
	}
	return f, nil
}

// deliver hands a message of follower f to p's applier. The library calls
// it from one goroutine per consumer, in delivery order.
func (n *Node) deliver(p *partition, f *follower, m jetstream.Msg) {
	d := delivery{gen: f.gen, data: m.Data()}
	if md, err := m.Metadata(); err == nil {
		if md.Sequence.Consumer != f.dseq+1 {
			// A message in between never arrived: the consumer moved on
			// without us (no acks). Start again from what is applied.
			f.fail(fmt.Errorf("delivery %d after %d: messages lost in transit", md.Sequence.Consumer, f.dseq))
			return
		}
		f.dseq = md.Sequence.Consumer
		d.seq, d.pending, d.stamp = md.Sequence.Stream, md.NumPending, md.Timestamp
	} else {
		d.bad = err
	}
	select {
	case p.msgs <- d:
	case <-f.done:
	case <-n.stop:
	}
}

// poll hands p's messages after the applied sequence to the applier, one
// request each to the stream's get API, until it has handed all the
// stream holds, a request fails, or until passes. The follower polls
// while it cannot create a consumer: consumers are created by the meta
// leader, which NATS may be electing again (4-9 s after its server died)
// while the stream, whose leader serves these gets, takes writes. gen is
// that of the failed attempt: nothing else delivers under it, and the
// next attempt's generation drops what is still queued, so each poll
// starts again from what is applied (a cursor kept from the previous
// poll skipped those dropped messages: TestCluster lost an acknowledged
// update that way).
func (n *Node) poll(p *partition, gen uint64, until time.Time) {
	seq := p.applied.Load() + 1
	subj := n.subj + strconv.Itoa(p.n)
	for time.Now().Before(until) {
		ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
		m, err := n.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		cancel()
		if err != nil {
			return // caught up (not found), or the stream is unavailable too
		}
		select {
		case p.msgs <- delivery{gen: gen, seq: m.Sequence, stamp: m.Time, data: m.Data}:
		case <-n.stop:
			return
		}
		n.app.polled.Add(1)
		seq = m.Sequence + 1
	}
}

// unstick asks p's follower for a new consumer when p has been behind the
// stream without progress for consumerStall. Called by the watcher.
func (n *Node) unstick(p *partition) {
	a := p.applied.Load()
	if p.gap.Load() {
		return // stopped behind the retention: a new consumer cannot help
	}
	if p.last.Load() <= a || a != p.stuckAt || p.stuckFrom.IsZero() {
		p.stuckAt, p.stuckFrom = a, time.Now()
		return
	}
	if time.Since(p.stuckFrom) < consumerStall {
		return
	}
	p.stuckFrom = time.Now()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

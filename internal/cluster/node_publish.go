package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wal"
)

// maxMessageUpdates caps the updates of one message; a message is also
// split until it fits the server's max_payload.
const maxMessageUpdates = 16384

// attemptTimeout bounds the wait for one attempt's acknowledgements: a
// message sent to a server that died is republished (through the
// connection's next server) after it. Between attempts the publisher
// waits from 50 ms, doubling, up to maxRetryWait: while the stream has
// no leader (NATS elects one 4-9 s after the old one's server died)
// the server answers "no responders" at once, and a new leader is used
// at most maxRetryWait after it is elected (it was up to 1 s).
const (
	attemptTimeout = 2 * time.Second
	maxRetryWait   = 250 * time.Millisecond
)

// pubCounters are the publishing side's counters.
type pubCounters struct {
	messages, bytes, updates, retries, failures, duplicates atomic.Int64
}

// pubScratch is one Publish's working memory.
type pubScratch struct {
	entries []wal.Entry
	idx     [][]int32 // per partition, indexes into entries
	bufs    [][]byte
	msgs    []outMsg
}

var pubPool = sync.Pool{New: func() any { return new(pubScratch) }}

// outMsg is one message of a Publish and its acknowledgement.
type outMsg struct {
	part int
	data []byte
	id   string
	seq  uint64
	done bool
	err  error
}

// ErrNotAcknowledged is wrapped by Publish's errors: JetStream did not
// acknowledge every message in time. Some may have been stored; a retry
// of the same updates is deduplicated within the stream's window.
var ErrNotAcknowledged = errors.New("cluster: not acknowledged by JetStream")

// Publish publishes a batch of valid updates, grouped by partition, and
// returns once JetStream has acknowledged every message (stored on a
// quorum of the stream's replicas): the token of the positions reached.
// The updates are applied later, on every node, by the partition
// consumers; ctx bounds the wait together with Options.PublishTimeout.
func (n *Node) Publish(ctx context.Context, batch []store.Update) (Token, error) {
	sc := pubPool.Get().(*pubScratch)
	defer func() {
		clear(sc.entries)
		sc.entries = sc.entries[:0]
		pubPool.Put(sc)
	}()
	for i := range batch {
		var e wal.Entry
		e.SetUpdate(&batch[i])
		sc.entries = append(sc.entries, e)
	}
	return n.publishEntries(ctx, sc)
}

// Delete publishes the deletion of a truck; every node deletes it when it
// applies the message (package engine's Delete, in stream order).
func (n *Node) Delete(ctx context.Context, id []byte) (Token, error) {
	sc := pubPool.Get().(*pubScratch)
	defer func() {
		clear(sc.entries)
		sc.entries = sc.entries[:0]
		pubPool.Put(sc)
	}()
	sc.entries = append(sc.entries, wal.Entry{ID: id, Kind: wal.KindDelete})
	return n.publishEntries(ctx, sc)
}

// Apply is Publish for the device gateways (package gateway's Engine):
// a nil error means the batch is acknowledged by JetStream. The result
// counts nothing: what each update did is known only where it is applied.
func (n *Node) Apply(batch []fleet.Update) (store.Result, error) {
	_, err := n.Publish(context.Background(), batch)
	return store.Result{}, err
}

func (n *Node) publishEntries(ctx context.Context, sc *pubScratch) (Token, error) {
	if n.closed.Load() {
		return nil, fmt.Errorf("%w: the node is closed", ErrNotAcknowledged)
	}
	np := len(n.parts)
	if cap(sc.idx) < np {
		sc.idx = make([][]int32, np)
	}
	sc.idx = sc.idx[:np]
	for p := range sc.idx {
		sc.idx[p] = sc.idx[p][:0]
	}
	for i := range sc.entries {
		p := Partition(sc.entries[i].ID, np)
		sc.idx[p] = append(sc.idx[p], int32(i))
	}
	limit := int(n.nc.MaxPayload()) - 1024 // headroom for headers
	sc.msgs = sc.msgs[:0]
	nb := 0
	for p, idx := range sc.idx {
		for len(idx) > 0 {
			k := min(len(idx), maxMessageUpdates)
			for {
				if nb == len(sc.bufs) {
					sc.bufs = append(sc.bufs, nil)
				}
				sc.bufs[nb] = AppendMessage(sc.bufs[nb][:0], p, sc.entries, idx[:k])
				if len(sc.bufs[nb]) <= limit || k == 1 {
					break
				}
				k /= 2
			}
			sum := sha256.Sum256(sc.bufs[nb])
			sc.msgs = append(sc.msgs, outMsg{part: p, data: sc.bufs[nb], id: base64.RawURLEncoding.EncodeToString(sum[:16])})
			nb++
			idx = idx[k:]
		}
	}
	deadline := time.Now().Add(n.opts.PublishTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err := n.publishAll(ctx, sc.msgs, deadline)
	var t Token
	for i := range sc.msgs {
		m := &sc.msgs[i]
		if m.done {
			t = t.add(m.part, m.seq)
		}
		m.data = nil
	}
	if err != nil {
		n.pub.failures.Add(1)
		return nil, err
	}
	return t, nil
}

// publishAll publishes msgs asynchronously and waits for their
// acknowledgements, republishing (same message ID: JetStream keeps one)
// those that fail or time out until the deadline.
func (n *Node) publishAll(ctx context.Context, msgs []outMsg, deadline time.Time) error {
	type flight struct {
		i   int
		paf jetstream.PubAckFuture
	}
	var fl []flight
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		fl = fl[:0]
		for i := range msgs {
			m := &msgs[i]
			if m.done {
				continue
			}
			if attempt > 0 {
				n.pub.retries.Add(1)
			}
			nm := &nats.Msg{Subject: n.subj + strconv.Itoa(m.part), Data: m.data, Header: nats.Header{}}
			nm.Header.Set(jetstream.MsgIDHeader, m.id)
			paf, err := n.js.PublishMsgAsync(nm, jetstream.WithExpectStream(n.opts.Stream))
			if err != nil {
				m.err = err
				continue
			}
			fl = append(fl, flight{i, paf})
		}
		until := time.Now().Add(attemptTimeout)
		if deadline.Before(until) {
			until = deadline
		}
		actx, cancel := context.WithDeadline(ctx, until)
		for _, f := range fl {
			m := &msgs[f.i]
			select {
			case ack := <-f.paf.Ok():
				m.done, m.seq, m.err = true, ack.Sequence, nil
				if ack.Duplicate {
					n.pub.duplicates.Add(1)
				} else {
					n.pub.messages.Add(1)
					n.pub.bytes.Add(int64(len(m.data)))
					if c, err := wal.CountUpdates(m.data[headerLen(m.data):]); err == nil {
						n.pub.updates.Add(int64(c))
					}
				}
			case err := <-f.paf.Err():
				m.err = err
			case <-actx.Done():
				m.err = fmt.Errorf("no acknowledgement: %w", actx.Err())
			}
		}
		cancel()
		var first error
		left := 0
		for i := range msgs {
			if !msgs[i].done {
				left++
				if first == nil {
					first = msgs[i].err
				}
			}
		}
		if left == 0 {
			return nil
		}
		if ctx.Err() != nil || time.Until(deadline) < backoff {
			return fmt.Errorf("%w: %d of %d messages: %w", ErrNotAcknowledged, left, len(msgs), first)
		}
		n.app.rateLog(n.log, "publish not acknowledged; retrying", "messages", left, "err", first)
		time.Sleep(backoff)
		backoff = min(backoff*2, maxRetryWait)
	}
}

// headerLen is the length of a message's version and partition header.
func headerLen(msg []byte) int {
	_, batch, err := MessageHeader(msg)
	if err != nil {
		return len(msg)
	}
	return len(msg) - len(batch)
}

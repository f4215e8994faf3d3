package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetd/fleetd/internal/outbox"
)

// natsBatch is how many events a lane publishes per flush (or per wait
// for the stream's acknowledgements).
const natsBatch = 256

// natsSender publishes to a subject: through JetStream, waiting for the
// stream's acknowledgements, when a stream holds the subject; else core
// NATS, confirmed by a flush (the server has read the messages).
type natsSender struct {
	url, subject, name string
	timeout            time.Duration
	log                *slog.Logger

	mu struct {
		sync.Mutex
		nc     *nats.Conn
		js     jetstream.JetStream
		stream bool      // the subject is in a stream
		probed time.Time // when stream was decided
	}
}

func newNATS(name string, c Config, log *slog.Logger) *natsSender {
	return &natsSender{url: c.URL, subject: c.Subject, name: name, timeout: time.Duration(c.Timeout), log: log}
}

// conn connects on first use (the server may be down when the sink is
// configured) and decides, once a minute, whether to use JetStream.
func (n *natsSender) conn(ctx context.Context) (*nats.Conn, jetstream.JetStream, bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.nc == nil || n.mu.nc.IsClosed() {
		nc, err := nats.Connect(n.url, nats.Name("fleetd-sink-"+n.name), nats.Timeout(n.timeout),
			nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.NoCallbacksAfterClientClose())
		if err != nil {
			return nil, nil, false, fmt.Errorf("nats: connecting to %s: %w", redactedURL(n.url), err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, nil, false, fmt.Errorf("nats: %w", err)
		}
		n.mu.nc, n.mu.js, n.mu.probed = nc, js, time.Time{}
	}
	if time.Since(n.mu.probed) > time.Minute {
		pctx, cancel := context.WithTimeout(ctx, n.timeout)
		_, err := n.mu.js.StreamNameBySubject(pctx, n.subject)
		cancel()
		switch {
		case err == nil:
			n.mu.stream = true
		case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrJetStreamNotEnabled),
			errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount), errors.Is(err, nats.ErrNoResponders):
			n.mu.stream = false
		default:
			return nil, nil, false, fmt.Errorf("nats: looking up the stream of %s: %w", n.subject, err)
		}
		n.mu.probed = time.Now()
	}
	return n.mu.nc, n.mu.js, n.mu.stream, nil
}

func (n *natsSender) msg(r *outbox.Record) *nats.Msg {
	id, kind := eventHeader(r.Payload)
	m := nats.NewMsg(n.subject)
	m.Data = r.Payload
	m.Header.Set(jetstream.MsgIDHeader, id) // Nats-Msg-Id: the stream drops duplicates
	m.Header.Set("Fleetd-Event-Kind", kind)
	m.Header.Set("Fleetd-Seq", strconv.FormatUint(r.Seq, 10))
	return m
}

func (n *natsSender) send(ctx context.Context, recs []outbox.Record) (int, error) {
	nc, js, stream, err := n.conn(ctx)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	if !stream {
		for i := range recs {
			if err := nc.PublishMsg(n.msg(&recs[i])); err != nil {
				return 0, fmt.Errorf("nats: publishing: %w", err)
			}
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			return 0, fmt.Errorf("nats: flushing: %w", err)
		}
		return len(recs), nil
	}
	futs := make([]jetstream.PubAckFuture, 0, len(recs))
	for i := range recs {
		f, err := js.PublishMsgAsync(n.msg(&recs[i]))
		if err != nil {
			return n.acked(ctx, futs, fmt.Errorf("nats: publishing: %w", err))
		}
		futs = append(futs, f)
	}
	return n.acked(ctx, futs, nil)
}

// acked waits for the futures in order and returns how many from the
// front were acknowledged.
func (n *natsSender) acked(ctx context.Context, futs []jetstream.PubAckFuture, cause error) (int, error) {
	for i, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			n.mu.Lock()
			n.mu.probed = time.Time{} // the stream may be gone: decide again
			n.mu.Unlock()
			return i, fmt.Errorf("nats: not acknowledged by the stream: %w", err)
		case <-ctx.Done():
			return i, fmt.Errorf("nats: waiting for the stream's acknowledgement: %w", ctx.Err())
		}
	}
	return len(futs), cause
}

func (n *natsSender) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.nc != nil {
		n.mu.nc.Close()
		n.mu.nc = nil
	}
}

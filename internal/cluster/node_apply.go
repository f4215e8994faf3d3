package cluster

import (
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wal"
)

const (
	// consumeBuffer is how many delivered messages wait for a partition's
	// applier; consumeMaxBytes bounds what the consumer pulls ahead.
	consumeBuffer   = 64
	consumeMaxBytes = 8 << 20
	// applyMaxMessages is how many delivered messages the applier takes
	// in one round.
	applyMaxMessages = 32
	// applyMaxUpdates caps one engine.Apply: the applier's batch is
	// allocated once at this size and never grows. Growing it to a
	// round's size (32 messages of ~1,250 updates in the catch-up
	// benchmark) was 11-15% of a catching-up node's CPU in growslice
	// (FLEETD_BENCH_CPUPROFILE of BenchmarkClusterCatchUp); capped:
	// 1254-1418 → 1211 ns/update, 0.77-1.06M → 1.19M updates/s.
	applyMaxUpdates = 8192
)

// applyCounters are the applying side's counters.
type applyCounters struct {
	messages, updates, deletes, malformed  atomic.Int64
	applyErrors, consumeErrors, saveErrors atomic.Int64
	awaitTimeouts, consumerRestarts        atomic.Int64
	polled                                 atomic.Int64 // messages read without a consumer (poll)
	refreshedAt                            atomic.Int64 // Unix ns of the last successful look at the stream

	logMu  sync.Mutex
	logged time.Time
	quiet  int // lines not logged since
}

// rateLog logs at most one warning a second; the others are counted in the
// next line.
func (c *applyCounters) rateLog(log *slog.Logger, msg string, args ...any) {
	c.logMu.Lock()
	now := time.Now()
	if now.Sub(c.logged) < time.Second {
		c.quiet++
		c.logMu.Unlock()
		return
	}
	q := c.quiet
	c.logged, c.quiet = now, 0
	c.logMu.Unlock()
	log.Warn(msg, append(args, "similar_lines_not_logged", q)...)
}

// applyBatch is an applier's scratch: updates gathered from several
// messages, their IDs copied into an arena (decoders reuse their memory).
//
// recs are the messages gathered by the single pass, each the wal
// encoding of the next n updates of ups: flush hands them to the engine
// with the updates (engine.ApplyEncoded), which logs them as they are
// rather than encoding the same updates again. plain says some of ups
// came another way (DecodeMessage's pass): then the engine encodes ups.
type applyBatch struct {
	ups      []store.Update
	arena    []byte
	recs     []encRec
	plain    bool
	payloads [][]byte // records' scratch
}

// encRec is a message's update batch and how many updates it holds.
type encRec struct {
	payload []byte
	n       int
}

// reset empties b, keeping its memory.
func (b *applyBatch) reset() {
	clear(b.ups)
	clear(b.recs)
	clear(b.payloads)
	b.ups, b.arena, b.recs, b.plain = b.ups[:0], b.arena[:0], b.recs[:0], false
}

// gather decodes a message of partition part (of parts) into b. A delete
// first has apply called (to apply the updates b holds, which come before
// it), then del; so does a batch that reached applyMaxUpdates before the
// next update.
//
// A message of updates only, at most applyMaxUpdates of them (what
// Publish sends for batches up to that size), is decoded once: checked
// and gathered in one pass, and taken back out of b if it turns out
// malformed. The others go through DecodeMessage (a pass to check, one to
// deliver), as a delete or a full batch applies what came before it.
// Decoding each message twice was 27% of a node's CPU in
// BenchmarkClusterIngest.
func (b *applyBatch) gather(msg []byte, part, parts int, apply func(), del func(id []byte)) error {
	if ok, err := b.gatherOnce(msg, part, parts, apply); ok || err != nil {
		return err
	}
	return DecodeMessage(msg, part, parts, func(e *wal.Entry) {
		if e.Kind == wal.KindDelete {
			apply()
			del(e.ID)
			return
		}
		if len(b.ups) == applyMaxUpdates {
			apply()
		}
		b.plain = true
		b.add(e)
	})
}

// gatherOnce is gather's single pass: ok is false (and b as it was) when
// the message is not one it takes, for DecodeMessage to handle.
func (b *applyBatch) gatherOnce(msg []byte, part, parts int, apply func()) (ok bool, err error) {
	p, batch, err := MessageHeader(msg)
	if err != nil || p != part {
		return false, nil
	}
	c, err := wal.CountUpdates(batch)
	if err != nil || c > applyMaxUpdates {
		return false, nil
	}
	if len(b.ups)+c > applyMaxUpdates {
		apply() // what b holds comes before this message
	}
	ups, arena := len(b.ups), len(b.arena)
	var bad error
	hasDelete := false
	err = wal.DecodeUpdates(batch, func(e *wal.Entry) {
		if bad != nil || hasDelete {
			return
		}
		if bad = checkEntry(e, part, parts); bad != nil {
			return
		}
		if e.Kind == wal.KindDelete {
			hasDelete = true
			return
		}
		b.add(e)
	})
	if err = malformed(err, bad); err != nil || hasDelete {
		clear(b.ups[ups:])
		b.ups, b.arena = b.ups[:ups], b.arena[:arena]
		return false, err
	}
	if c > 0 {
		b.recs = append(b.recs, encRec{batch, c})
	}
	return true, nil
}

// add appends an update entry to b, its ID copied into the arena.
func (b *applyBatch) add(e *wal.Entry) {
	if b.ups == nil {
		b.ups = make([]store.Update, 0, applyMaxUpdates)
	}
	start := len(b.arena)
	b.arena = append(b.arena, e.ID...)
	u := e.Update()
	u.ID = b.arena[start:len(b.arena):len(b.arena)]
	b.ups = append(b.ups, u)
}

// applyLoop applies partition p's messages in stream order until Close.
// It gathers what has already been delivered into one engine call
// (flush); a delete is applied between the updates around it. A
// malformed message is skipped (counted and logged): every node skips it
// the same way.
func (n *Node) applyLoop(p *partition) {
	var b applyBatch
	var ms []delivery
	var stamps []time.Time // of the messages applied this round
	for {
		var m delivery
		select {
		case m = <-p.msgs:
		case <-n.stop:
			return
		}
		ms = append(ms[:0], m)
	gather:
		for len(ms) < applyMaxMessages {
			select {
			case m := <-p.msgs:
				ms = append(ms, m)
			default:
				break gather
			}
		}
		if p.gap.Load() {
			clear(ms) // past a purged gap: a restart restores (checkGap)
			continue
		}
		var lastSeq, pending uint64
		stamps = stamps[:0]
		for _, d := range ms {
			if d.gen != p.gen.Load() {
				continue // from a consumer replaced since (follow)
			}
			if d.bad != nil {
				n.app.malformed.Add(1)
				n.app.rateLog(n.log, "message without JetStream metadata skipped", "partition", p.n, "err", d.bad)
				continue
			}
			seq := d.seq
			if seq <= p.applied.Load() || seq <= lastSeq {
				continue // delivered again after a consumer reset
			}
			lastSeq, pending = seq, d.pending
			stamps = append(stamps, d.stamp)
			err := b.gather(d.data, p.n, len(n.parts), func() { n.flush(p, &b) }, func(id []byte) { n.deleteOne(p, id) })
			if err != nil {
				n.app.malformed.Add(1)
				n.app.rateLog(n.log, "malformed message skipped", "partition", p.n, "seq", seq, "err", err)
				continue
			}
			n.app.messages.Add(1)
		}
		if !n.flush(p, &b) {
			return
		}
		if lastSeq > 0 {
			p.applied.Store(lastSeq)
			p.pending.Store(pending)
			now := time.Now()
			for _, t := range stamps {
				n.lag.add(now.Sub(t)) // each message: the first of a round waited longest
			}
			n.advanced()
		}
		clear(ms)
	}
}

// flush applies the gathered updates in one engine call: ApplyEncoded
// with the messages' update batches as the log records when the single
// pass gathered them all, else Apply. The engine's error (a failed fsync,
// a full disk) is retried until it succeeds or the node closes: skipping
// would leave this node without updates every other node has. It returns
// false when the node closed first.
func (n *Node) flush(p *partition, b *applyBatch) bool {
	if len(b.ups) == 0 {
		b.reset()
		return true
	}
	records := b.records()
	for {
		var err error
		if records != nil {
			_, err = n.opts.Engine.ApplyEncoded(b.ups, records)
		} else {
			_, err = n.opts.Engine.Apply(b.ups)
		}
		if err == nil {
			break
		}
		n.app.applyErrors.Add(1)
		n.app.rateLog(n.log, "could not apply the stream's updates; retrying (this partition waits)", "partition", p.n, "err", err)
		select {
		case <-n.stop:
			return false
		case <-time.After(time.Second):
		}
	}
	n.app.updates.Add(int64(len(b.ups)))
	b.reset()
	return true
}

// records are the log records of b.ups, in order, or nil when some of
// them came another way than the single pass (the engine encodes them).
func (b *applyBatch) records() [][]byte {
	if b.plain || len(b.recs) == 0 {
		return nil
	}
	b.payloads = b.payloads[:0]
	for _, r := range b.recs {
		b.payloads = append(b.payloads, r.payload)
	}
	return b.payloads
}

// deleteOne applies a published delete.
func (n *Node) deleteOne(p *partition, id []byte) {
	for {
		_, err := n.opts.Engine.Delete(id)
		if err == nil {
			n.app.deletes.Add(1)
			return
		}
		n.app.applyErrors.Add(1)
		n.app.rateLog(n.log, "could not apply a delete from the stream; retrying", "partition", p.n, "err", err)
		select {
		case <-n.stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// lagRing keeps the last apply lags (stream store time to applied), for
// the quantiles in Stats.
type lagRing struct {
	mu   sync.Mutex
	ms   []float32
	next int
	full bool
}

const lagSamples = 4096

func (r *lagRing) init() { r.ms = make([]float32, lagSamples) }

func (r *lagRing) add(d time.Duration) {
	r.mu.Lock()
	r.ms[r.next] = float32(d.Seconds() * 1000)
	r.next++
	if r.next == len(r.ms) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// quantile is the q-quantile of the kept lags in milliseconds (NaN: none).
func (r *lagRing) quantile(q float64) float64 {
	r.mu.Lock()
	n := r.next
	if r.full {
		n = len(r.ms)
	}
	s := slices.Clone(r.ms[:n])
	r.mu.Unlock()
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(q*float64(len(s))))])
}

package sink

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/outbox"
	"github.com/fleetd/fleetd/internal/vfs"
)

// Retry backoff bounds: the first retry waits about minBackoff, each next
// one twice as long, up to maxBackoff (±20% jitter).
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// MaxDeadLetters bounds each sink's dead-letter list.
	MaxDeadLetters = 100
)

// sender delivers events to one destination.
type sender interface {
	// send delivers recs in order and returns how many, from the
	// front, the destination acknowledged; err says why the rest were
	// not.
	send(ctx context.Context, recs []outbox.Record) (int, error)
	close()
}

// senderShape is how a sender wants to be driven: events per send (each
// of the sink's lanes sends in parallel).
type senderShape struct{ batch int }

// DeadLetter is an event given up after MaxAge.
type DeadLetter struct {
	Seq      uint64          `json:"seq"`
	Emitted  time.Time       `json:"emitted"`
	Dropped  time.Time       `json:"dropped"`
	Attempts int             `json:"attempts"`
	Error    string          `json:"error"`
	Event    json.RawMessage `json:"event"`
}

// Stats are one sink's delivery counters.
type Stats struct {
	Delivered    int64   `json:"delivered"`      // events the destination acknowledged
	Retried      int64   `json:"retried"`        // delivery attempts after a failed one
	Failed       int64   `json:"failed"`         // delivery attempts that failed
	Dropped      int64   `json:"dropped"`        // events past max_age, to the dead-letter list
	Shed         int64   `json:"shed"`           // events refused by a full outbox
	Depth        int64   `json:"outbox_depth"`   // events not yet delivered
	DiskBytes    int64   `json:"outbox_bytes"`   // outbox on disk
	OldestAgeS   float64 `json:"oldest_age_s"`   // age of the oldest undelivered event
	LatencyP50Ms float64 `json:"latency_p50_ms"` // emitted → acknowledged, since start (to a factor of two)
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	Health       string  `json:"health"` // "ok", "backlog" (oldest over a minute), "failing" (a lane's last attempt failed)
	LastError    string  `json:"last_error,omitempty"`
	LastErrorAt  string  `json:"last_error_at,omitempty"`
	// Cluster is this node's part in the cluster's delivery (cluster
	// mode only). Delivered, Retried, Failed and the latencies count
	// the deliveries this node made; Depth and the outbox figures are
	// its events not yet published into the cluster.
	Cluster *ClusterStats `json:"cluster,omitempty"`
}

// ClusterStats are a sink's figures on a cluster node.
type ClusterStats struct {
	Delivering    bool  `json:"delivering"`     // this node delivers for the sink now
	Published     int64 `json:"published"`      // events this node stored in the events stream (or found there)
	PublishFailed int64 `json:"publish_failed"` // attempts to publish that failed (retried)
	StreamPending int64 `json:"stream_pending"` // events in the stream not yet handed out (delivering node only)
}

// counters are one direction's delivery counters: to the destination,
// or (cluster mode) into the cluster's events stream.
type counters struct {
	delivered, retried, failed, dropped atomic.Int64
	latency                             gateway.Histogram
	failing                             atomic.Int32 // lanes whose last attempt failed
}

// sink is one running sink: its outbox and the goroutines delivering
// from it.
type sink struct {
	name string
	cfg  Config
	ob   *outbox.Outbox // one log; its Lane(i) hands out the trucks whose key % lanes is i
	snd  sender
	// follow is this node's part in the cluster's delivery (nil on a
	// single node): the outbox's lanes are then published into the
	// cluster (pub counts it) and snd is fed from follow's lanes.
	follow Follower
	log    *slog.Logger
	fs     vfs.FS
	dir    string
	// syncLog rate-limits Sync's failure line.
	syncLog gateway.Limiter

	cancel context.CancelFunc
	wg     sync.WaitGroup

	out counters // to the destination
	pub counters // into the cluster's events stream (cluster mode)

	mu struct {
		sync.Mutex
		lastErr   string
		lastErrAt time.Time
		dead      []DeadLetter
		deadDirty bool
	}
}

const deadName = "dead.json"

// lanes is how many lanes (outbox readers and delivery goroutines) a
// sink has: a truck's events always go to lane truckKey % lanes, each
// lane delivers its events in order, and a lane that cannot deliver
// holds back only its own trucks (the other lanes go on).
const lanes = 8

// startSink opens the sink's outbox in dir (migrating the lane
// outboxes left by an older fleetd) and starts delivering: from the
// outbox's lanes to the destination, or with a relay from the lanes into
// the cluster and from the cluster to the destination.
func startSink(fs vfs.FS, dir, name string, cfg Config, log *slog.Logger, obOpts outbox.Options, relay Relay) (*sink, error) {
	snd, shape, err := newSender(name, cfg, log)
	if err != nil {
		return nil, err
	}
	s := &sink{name: name, cfg: cfg, snd: snd, log: log.With("sink", name), fs: fs, dir: dir}
	s.syncLog.Log = s.log
	// One outbox (one writer, one fsync per group commit) read by the
	// lanes: each lane has its own window of events handed out and not
	// yet Done (an eighth of the default, at least one batch: 4096
	// records in memory a sink, however many wait on disk) and its own
	// cursor. The bounds on disk and on the staging buffer are the
	// sink's whole (one writer absorbs a burst as the single outbox did
	// before lanes: see BenchmarkEmit).
	obOpts.FS, obOpts.Logger = fs, log
	obOpts.MaxBytes = max(cfg.MaxOutboxBytes, 0)
	if obOpts.MaxBytes == 0 {
		obOpts.MaxBytes = DefaultMaxOutboxBytes
	}
	obOpts.MaxStaged = cmp.Or(obOpts.MaxStaged, outbox.DefaultMaxStaged)
	obOpts.Window = max(cmp.Or(obOpts.Window, outbox.DefaultWindow)/lanes, shape.batch)
	obOpts.Lanes = lanes
	obOpts.Dir = filepath.Join(dir, outboxDir)
	if s.ob, err = outbox.Open(obOpts); err != nil {
		snd.close()
		return nil, err
	}
	if err := s.migrate(obOpts); err != nil {
		s.closeOutboxes()
		snd.close()
		return nil, err
	}
	if relay != nil {
		if s.follow, err = relay.Follow(name, lanes); err != nil {
			s.closeOutboxes()
			snd.close()
			return nil, err
		}
	}
	s.loadDead()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for i := range lanes {
		s.wg.Add(1)
		if s.follow == nil {
			go s.lane(ctx, s.ob.Lane(i), s.snd, &s.out, shape.batch)
			continue
		}
		go s.lane(ctx, s.ob.Lane(i), &publisher{r: relay, sink: name, lane: i}, &s.pub, min(relayBatch, obOpts.Window))
		s.wg.Add(1)
		go s.lane(ctx, followLane{s.follow, i}, s.snd, &s.out, shape.batch)
	}
	s.wg.Add(1)
	go s.housekeep(ctx)
	return s, nil
}

// outboxDir is the sink's outbox (DIR/<name>/outbox). Before lanes, an
// outbox of one lane lived there in the same format (its cursor file of
// one cursor gives every lane that cursor): it is read in place.
const outboxDir = "outbox"

// laneOutboxes held one outbox a lane (DIR/<name>/lanes/0 … 7), written
// by the fleetd before the lanes shared one outbox: migrate moves them.
const laneOutboxes = "lanes"

// migrate moves the events of the lane outboxes of an older fleetd
// (DIR/<name>/lanes/i) into the sink's outbox: each lane's in order (a
// truck's events are all in one lane, so each truck's order holds),
// with their emission times, made durable before that lane's outbox is
// removed. A crash half way delivers some events twice (the same IDs),
// never loses one.
func (s *sink) migrate(o outbox.Options) error {
	root := filepath.Join(s.dir, laneOutboxes)
	if _, err := s.fs.Stat(root); err != nil {
		return nil
	}
	names, err := s.fs.List(root)
	if err != nil {
		return fmt.Errorf("sink: migrating %s: %w", root, err)
	}
	slices.Sort(names)
	moved := 0
	for _, n := range names {
		m, err := s.migrateLane(filepath.Join(root, n), o.MaxBytes)
		moved += m
		if err != nil {
			return err
		}
	}
	if err := s.fs.Remove(root); err != nil {
		return fmt.Errorf("sink: removing the migrated %s: %w", root, err)
	}
	if err := vfs.SyncParent(s.fs, root); err != nil {
		return fmt.Errorf("sink: removing the migrated %s: %w", root, err)
	}
	s.log.Info("sink: moved the events of the lanes' outboxes into the sink's outbox", "events", moved)
	return nil
}

// migrateLane moves one old lane outbox's events (see migrate).
func (s *sink) migrateLane(dir string, maxBytes int64) (int, error) {
	old, err := outbox.Open(outbox.Options{FS: s.fs, Dir: dir, Logger: s.log})
	if err != nil {
		return 0, err
	}
	fail := func(err error) (int, error) {
		old.CloseReader()
		return 0, errors.Join(fmt.Errorf("sink: migrating %s: %w", dir, err), old.Close())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	moved := 0
	for old.Stats().Depth > 0 {
		r, err := old.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fail(err)
			}
			continue // a skipped bad segment (logged): its records are lost
		}
		for { // wait for room rather than shed (the writer behind)
			if _, ok := s.ob.AppendAt(r.Key, r.Time, r.Payload); ok {
				break
			}
			if err := s.ob.Sync(); err != nil {
				return fail(err)
			}
			if s.ob.Stats().DiskBytes+int64(len(r.Payload))+64 > maxBytes {
				s.log.Warn("sink: the outbox is full while migrating: event shed", "seq", r.Seq)
				break
			}
		}
		old.Done(r.Seq)
		moved++
	}
	if err := s.ob.Sync(); err != nil {
		return fail(err)
	}
	if err := old.Remove(); err != nil {
		return moved, fmt.Errorf("sink: removing the migrated %s: %w", dir, err)
	}
	return moved, nil
}

func (s *sink) closeOutboxes() error {
	err := s.ob.Close()
	s.ob.CloseReader()
	return err
}

// enqueue appends an encoded event to its truck's lane; never blocks.
func (s *sink) enqueue(key uint64, payload []byte) { s.ob.Append(key, payload) }

// lane delivers the events of its source (its trucks) to snd in order,
// batch at a time, counting in c.
func (s *sink) lane(ctx context.Context, src source, snd sender, c *counters, batch int) {
	defer s.wg.Done()
	buf := make([]outbox.Record, 0, batch)
	for {
		var err error
		buf, err = src.NextBatch(ctx, buf[:0], batch)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, outbox.ErrClosed) {
				return
			}
			s.log.Error("sink: reading the outbox", "err", err)
			if len(buf) == 0 {
				continue
			}
		}
		if !s.deliver(ctx, src, snd, c, buf) {
			return // stopping: what was not delivered stays in the outbox
		}
	}
}

// deliver sends recs with snd until each is acknowledged or dropped;
// false when ctx ended first.
func (s *sink) deliver(ctx context.Context, src source, snd sender, c *counters, recs []outbox.Record) bool {
	attempts, failing := 0, false
	defer func() {
		if failing {
			c.failing.Add(-1)
		}
	}()
	maxAge := time.Duration(s.cfg.MaxAge)
	for len(recs) > 0 {
		n, err := snd.send(ctx, recs)
		now := time.Now()
		for _, r := range recs[:n] {
			src.Done(r.Seq)
			c.latency.Observe(now.Sub(time.Unix(0, r.Time)))
		}
		c.delivered.Add(int64(n))
		recs = recs[n:]
		if n > 0 {
			attempts = 0
		}
		if err == nil {
			if failing {
				failing = false
				c.failing.Add(-1)
			}
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		attempts++
		c.failed.Add(1)
		if !failing {
			failing = true
			c.failing.Add(1)
		}
		s.mu.Lock()
		s.mu.lastErr, s.mu.lastErrAt = err.Error(), now
		s.mu.Unlock()
		if len(recs) == 0 {
			continue
		}
		if head := recs[0]; now.Sub(time.Unix(0, head.Time)) > maxAge {
			s.deadLetter(c, head, attempts, err, now)
			src.Done(head.Seq)
			recs, attempts = recs[1:], 0
			continue
		}
		if c.failing.Load() == 1 && pins(src) {
			// Only this lane fails, and its refused head is all that keeps
			// the shared outbox from freeing its oldest segment: waiting
			// for max_age would fill the disk bound and shed every lane's
			// new events. The head goes to the dead letters now.
			s.deadLetter(c, recs[0], attempts, fmt.Errorf("%w (given up before max_age: it alone kept the outbox over half of max_outbox_bytes while the other lanes delivered)", err), now)
			src.Done(recs[0].Seq)
			recs, attempts = recs[1:], 0
			continue
		}
		wait := min(minBackoff<<min(attempts-1, 20), maxBackoff)
		wait = time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		if left := maxAge - now.Sub(time.Unix(0, recs[0].Time)); left > 0 && wait > left {
			wait = left + time.Millisecond // retry once more right at max age
		}
		if !s.backoff(ctx, src, c, wait) {
			return false
		}
		c.retried.Add(1)
	}
	return true
}

// backoff waits d before a lane's next attempt, looking every 250 ms
// whether the lane has come to pin the outbox (then the head is given up
// at once, not after a backoff of up to maxBackoff); false when ctx
// ended first. The lane's read buffer is let go meanwhile: the lane
// retries the events it holds and reads nothing until they are done
// (with a dead receiver, 8 lanes' 256 KiB of RSS held for nothing).
func (s *sink) backoff(ctx context.Context, src source, c *counters, d time.Duration) bool {
	if r, ok := src.(interface{ Release() }); ok {
		r.Release()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-tick.C:
			if c.failing.Load() == 1 && pins(src) {
				return true
			}
		}
	}
}

// pins reports whether src is an outbox lane that alone holds the
// outbox near its disk bound (outbox.Lane.Pins).
func pins(src source) bool {
	p, ok := src.(interface{ Pins() bool })
	return ok && p.Pins()
}

// deadLetter records an event given up after max age (or for pinning
// the outbox: deliver).
func (s *sink) deadLetter(c *counters, r outbox.Record, attempts int, err error, now time.Time) {
	c.dropped.Add(1)
	ev := json.RawMessage(r.Payload)
	if !json.Valid(ev) {
		ev = nil
	}
	d := DeadLetter{Seq: r.Seq, Emitted: time.Unix(0, r.Time).UTC(), Dropped: now.UTC(), Attempts: attempts, Error: err.Error(), Event: ev}
	s.mu.Lock()
	if len(s.mu.dead) >= MaxDeadLetters {
		s.mu.dead = append(s.mu.dead[:0], s.mu.dead[1:]...)
	}
	s.mu.dead = append(s.mu.dead, d)
	s.mu.deadDirty = true
	total := s.out.dropped.Load() + s.pub.dropped.Load()
	s.mu.Unlock()
	if total <= 10 || total%1000 == 0 {
		s.log.Warn("sink: event dropped after max_age", "seq", r.Seq, "age", now.Sub(time.Unix(0, r.Time)).Round(time.Second),
			"attempts", attempts, "err", err, "dropped_total", total)
	}
}

// housekeep saves the dead-letter list when it changed, at most once a
// second (a dead receiver can drop thousands of events a second).
func (s *sink) housekeep(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.saveDead()
			return
		case <-t.C:
			s.saveDead()
		}
	}
}

func (s *sink) saveDead() {
	s.mu.Lock()
	if !s.mu.deadDirty {
		s.mu.Unlock()
		return
	}
	b, err := json.Marshal(s.mu.dead)
	s.mu.deadDirty = false
	s.mu.Unlock()
	if err != nil {
		panic("BUG: sink: marshalling dead letters: " + err.Error())
	}
	tmp, path := filepath.Join(s.dir, deadName+".tmp"), filepath.Join(s.dir, deadName)
	if err := vfs.WriteFile(s.fs, tmp, b); err == nil {
		err = s.fs.Rename(tmp, path)
		if err == nil {
			err = s.fs.SyncDir(s.dir)
		}
		if err != nil {
			s.log.Warn("sink: saving the dead-letter list", "err", err)
		}
	} else {
		s.log.Warn("sink: saving the dead-letter list", "err", err)
	}
}

func (s *sink) loadDead() {
	b, err := vfs.ReadFile(s.fs, filepath.Join(s.dir, deadName))
	if err != nil {
		return
	}
	var d []DeadLetter
	if err := json.Unmarshal(b, &d); err != nil {
		s.log.Warn("sink: unreadable dead-letter list, starting a new one", "err", err)
		return
	}
	if len(d) > MaxDeadLetters {
		d = d[len(d)-MaxDeadLetters:]
	}
	s.mu.dead = d
}

// deadLetters is a copy of the list, oldest first.
func (s *sink) deadLetters() []DeadLetter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]DeadLetter{}, s.mu.dead...)
}

// stats reads the counters.
func (s *sink) stats() Stats {
	os := s.ob.Stats()
	st := Stats{Delivered: s.out.delivered.Load(), Retried: s.out.retried.Load(), Failed: s.out.failed.Load(),
		Dropped: s.out.dropped.Load() + s.pub.dropped.Load(), Shed: os.Shed, Depth: os.Depth, DiskBytes: os.DiskBytes,
		LatencyP50Ms: ms(s.out.latency.Quantile(0.5)), LatencyP99Ms: ms(s.out.latency.Quantile(0.99)), Health: "ok"}
	if s.follow != nil {
		delivering := s.follow.Delivering()
		st.Cluster = &ClusterStats{Delivering: delivering, Published: s.pub.delivered.Load(),
			PublishFailed: s.pub.failed.Load(), StreamPending: s.follow.Pending()}
	}
	if !os.Oldest.IsZero() {
		st.OldestAgeS = max(time.Since(os.Oldest).Seconds(), 0)
	}
	s.mu.Lock()
	st.LastError = s.mu.lastErr
	if !s.mu.lastErrAt.IsZero() {
		st.LastErrorAt = s.mu.lastErrAt.UTC().Format(time.RFC3339)
	}
	s.mu.Unlock()
	switch {
	case s.out.failing.Load() > 0 || s.pub.failing.Load() > 0:
		st.Health = "failing"
	case st.OldestAgeS > 60:
		st.Health = "backlog"
	}
	return st
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// stop ends delivery (undelivered events stay in the outbox) and closes
// the outbox.
func (s *sink) stop() error {
	s.cancel()
	s.wg.Wait()
	err := s.closeOutboxes() // writes what was appended, saves the cursors
	if s.follow != nil {
		err = errors.Join(err, s.follow.Close()) // after the lanes' last Done
	}
	s.snd.close()
	return err
}

// eventHeader reads the id and kind at the front of an encoded event
// (appendJSON writes them first) without decoding it.
func eventHeader(payload []byte) (id, kind string) {
	const pre = `{"id":"`
	if !bytes.HasPrefix(payload, []byte(pre)) {
		return "", ""
	}
	rest := payload[len(pre):]
	i := bytes.IndexByte(rest, '"')
	if i < 0 {
		return "", ""
	}
	id, rest = string(rest[:i]), rest[i:]
	const mid = `","kind":"`
	if !bytes.HasPrefix(rest, []byte(mid)) {
		return id, ""
	}
	rest = rest[len(mid):]
	if j := bytes.IndexByte(rest, '"'); j >= 0 {
		kind = string(rest[:j])
	}
	return id, kind
}

// removeOutboxes deletes the sink's outbox (the sink is stopped).
func (s *sink) removeOutboxes() error { return s.ob.Remove() }

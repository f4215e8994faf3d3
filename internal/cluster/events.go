package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetd/fleetd/internal/outbox"
)

// Sink events in the cluster (doc.go, Sink events): every node publishes
// the events its rules emit into one events stream, deduplicated by the
// events' stable IDs, and one node at a time, the holder of a sink's
// lease, delivers that sink's events from the stream.
const (
	// DefaultEventDuplicates is the events stream's deduplication
	// window: how far apart in time two nodes may publish the same event
	// and still store it once (doc.go says why it suffices).
	DefaultEventDuplicates = 2 * time.Minute
	// leaseRefresh is how often a sink's holder renews its lease (and
	// saves where each lane got to), and how often the other nodes look
	// at it.
	leaseRefresh = time.Second
	// leaseTTL: a node takes a sink's lease over once its revision has
	// not moved for this long on that node's clock. A holder that could
	// not renew for leaseTTL/2 stops handing events out, before anyone
	// can take over (the others' clocks start when they see a renewal,
	// which is after the holder made it).
	leaseTTL = 4 * time.Second
	// eventLaneBuffer is how many events a delivering lane reads ahead;
	// eventPullBytes bounds what its consumer pulls ahead.
	eventLaneBuffer = 256
	eventPullBytes  = 1 << 20
	// eventPublishTimeout bounds the wait for a run's acknowledgements
	// (the sink's lane retries what is not acknowledged, with backoff).
	eventPublishTimeout = 5 * time.Second
	// hdrEmitted carries an event's emission time (Unix ns, decimal).
	hdrEmitted = "Fleetd-Emitted"
)

// Event is one event as a node publishes it (package sink's RelayEvent).
type Event struct {
	ID      string // stable: the same on every node that emits it
	Key     uint64 // its truck's key: events of one key are never in flight together
	Time    int64  // emitted, Unix ns
	Local   bool   // decided by this node's clock (expiry): published only by the sink's holder
	Payload []byte
}

// EventsOptions configures the cluster's sink events.
type EventsOptions struct {
	URLs []string
	// Stream is the cluster's stream name (default DefaultStream): the
	// events stream is <Stream>-events with subjects
	// <Stream>.ev.<sink>.<lane>, the leases the key-value bucket
	// <Stream>-sinks.
	Stream string
	// Replicas of the events stream and the leases' bucket when this
	// node creates them (default DefaultReplicas).
	Replicas int
	// Name is this node's name in the leases (default host name and
	// process ID; it must differ between nodes).
	Name   string
	Logger *slog.Logger
}

// Events publishes this node's sink events into the cluster's events
// stream and takes part in delivering them (Follow). Safe for concurrent
// use.
type Events struct {
	o      EventsOptions
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	kv     jetstream.KeyValue
	name   string // the events stream's name
	subj   string // "<Stream>.ev."

	mu    sync.Mutex
	sinks map[string]*EventSink // followed sinks by name

	published, duplicates, skipped, publishErrors atomic.Int64
	takeovers, handovers, leaseErrors             atomic.Int64
}

// OpenEvents connects to NATS and opens (or creates) the events stream
// and the leases' bucket.
func OpenEvents(o EventsOptions) (*Events, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("cluster: no NATS URL")
	}
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Replicas == 0 {
		o.Replicas = DefaultReplicas
	}
	if o.Name == "" {
		h, _ := os.Hostname()
		o.Name = h + "-" + strconv.Itoa(os.Getpid())
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	e := &Events{o: o, log: o.Logger.With("component", "cluster-events"), name: o.Stream + "-events",
		subj: o.Stream + ".ev.", sinks: map[string]*EventSink{}}
	var err error
	e.nc, err = nats.Connect(strings.Join(o.URLs, ","), nats.Name("fleetd "+o.Name+" events"), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.PingInterval(2*time.Second), nats.MaxPingsOutstanding(2))
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to NATS %s: %w", strings.Join(o.URLs, ","), err)
	}
	e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err == nil {
		err = retryOpen(func(ctx context.Context) (err error) {
			e.stream, err = e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
				Name:        e.name,
				Description: "fleetd sink events, one subject a sink's lane (package cluster)",
				Subjects:    []string{e.subj + ">"},
				Replicas:    o.Replicas,
				Storage:     jetstream.FileStorage,
				Retention:   jetstream.LimitsPolicy,
				Duplicates:  DefaultEventDuplicates,
			})
			return err
		})
	}
	if err == nil {
		err = retryOpen(func(ctx context.Context) (err error) {
			e.kv, err = e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: o.Stream + "-sinks",
				Description: "fleetd sink leases and delivery cursors (package cluster)", History: 1,
				Replicas: o.Replicas, Storage: jetstream.FileStorage})
			return err
		})
	}
	if err != nil {
		e.nc.Close()
		return nil, fmt.Errorf("cluster: opening the events stream %q: %w", e.name, err)
	}
	return e, nil
}

// retryOpen retries f for up to 30 s: JetStream may still be electing
// its meta leader just after the servers start.
func retryOpen(f func(ctx context.Context) error) error {
	giveUp := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f(ctx)
		cancel()
		if err == nil || time.Now().After(giveUp) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// sinkToken is a sink name as a subject token and key: base64url, as
// names may hold '.'.
func sinkToken(name string) string { return base64.RawURLEncoding.EncodeToString([]byte(name)) }

func (e *Events) laneSubject(sink string, lane int) string {
	return e.subj + sinkToken(sink) + "." + strconv.Itoa(lane)
}

// Publish stores evs, one lane of sink's in the lane's order, in the
// events stream with Nats-Msg-Id <sink>.<event ID>: an event another
// node published within DefaultEventDuplicates is stored once. It sends
// runs in which each key appears once, pipelined, and the next run only
// once the whole run is acknowledged, so that a truck's later event is
// never stored while its earlier one may still be lost. It returns how
// many from the front are stored.
func (e *Events) Publish(ctx context.Context, sink string, lane int, evs []Event) (int, error) {
	e.mu.Lock()
	es := e.sinks[sink]
	e.mu.Unlock()
	delivering := es != nil && es.Delivering()
	subj, tok := e.laneSubject(sink, lane), sinkToken(sink)
	var keys []uint64
	futs := make([]jetstream.PubAckFuture, 0, len(evs))
	for done := 0; done < len(evs); {
		keys, futs = keys[:0], futs[:0]
		end := done
		var sendErr error
		for ; end < len(evs) && !slices.Contains(keys, evs[end].Key); end++ {
			ev := &evs[end]
			keys = append(keys, ev.Key)
			if ev.Local && !delivering {
				futs = append(futs, nil) // the holder publishes it
				continue
			}
			m := nats.NewMsg(subj)
			m.Data = ev.Payload
			m.Header.Set(jetstream.MsgIDHeader, tok+"."+ev.ID)
			m.Header.Set(hdrEmitted, strconv.FormatInt(ev.Time, 10))
			f, err := e.js.PublishMsgAsync(m, jetstream.WithExpectStream(e.name))
			if err != nil {
				sendErr = err
				break
			}
			futs = append(futs, f)
		}
		timer := time.NewTimer(eventPublishTimeout)
		for i, f := range futs {
			if f == nil {
				e.skipped.Add(1)
				continue
			}
			var err error
			select {
			case ack := <-f.Ok():
				if ack.Duplicate {
					e.duplicates.Add(1)
				} else {
					e.published.Add(1)
				}
			case err = <-f.Err():
			case <-timer.C:
				err = errors.New("no acknowledgement within " + eventPublishTimeout.String())
			case <-ctx.Done():
				err = ctx.Err()
			}
			if err != nil {
				timer.Stop()
				e.publishErrors.Add(1)
				return done + i, fmt.Errorf("cluster: events stream: %w", err)
			}
		}
		timer.Stop()
		if sendErr != nil {
			e.publishErrors.Add(1)
			return done + len(futs), fmt.Errorf("cluster: events stream: %w", sendErr)
		}
		done = end
	}
	return len(evs), nil
}

// Follow starts taking part in delivering sink's events: the returned
// EventSink hands them out only while this node holds the sink's lease.
func (e *Events) Follow(sink string, lanes int) (*EventSink, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.sinks[sink]; ok {
		return nil, fmt.Errorf("cluster: sink %q is followed already", sink)
	}
	s := &EventSink{e: e, name: sink, key: sinkToken(sink), stop: make(chan struct{}),
		log: e.log.With("sink", sink)}
	for i := range lanes {
		s.lanes = append(s.lanes, &eventLane{subj: e.laneSubject(sink, i), changed: make(chan struct{})})
	}
	e.sinks[sink] = s
	s.wg.Go(s.run)
	return s, nil
}

// Remove deletes a deleted sink's lease, cursors and undelivered events.
// Every node removes them when it deletes the sink.
func (e *Events) Remove(sink string) error {
	ctx, cancel := contextTimeout(5 * time.Second)
	defer cancel()
	err := e.kv.Delete(ctx, sinkToken(sink))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		err = nil
	}
	perr := e.stream.Purge(ctx, jetstream.WithPurgeSubject(e.subj+sinkToken(sink)+".>"))
	return errors.Join(err, perr)
}

// EventsStats are the node's sink-event counters.
type EventsStats struct {
	Published     int64    `json:"published"`      // events this node stored first
	Duplicates    int64    `json:"duplicates"`     // events another node had stored already
	Skipped       int64    `json:"skipped"`        // expiry events left to the sink's holder
	PublishErrors int64    `json:"publish_errors"` // runs not acknowledged (retried)
	Takeovers     int64    `json:"takeovers"`      // sink leases this node took
	Handovers     int64    `json:"handovers"`      // sink leases this node gave up or lost
	LeaseErrors   int64    `json:"lease_errors"`   // failed looks at or renewals of a lease
	Delivering    []string `json:"delivering"`     // the sinks this node delivers for now
}

// Stats reads the counters.
func (e *Events) Stats() EventsStats {
	st := EventsStats{Published: e.published.Load(), Duplicates: e.duplicates.Load(), Skipped: e.skipped.Load(),
		PublishErrors: e.publishErrors.Load(), Takeovers: e.takeovers.Load(), Handovers: e.handovers.Load(),
		LeaseErrors: e.leaseErrors.Load(), Delivering: []string{}}
	e.mu.Lock()
	for name, s := range e.sinks {
		if s.Delivering() {
			st.Delivering = append(st.Delivering, name)
		}
	}
	e.mu.Unlock()
	slices.Sort(st.Delivering)
	return st
}

// Close closes the connection; the followed sinks are closed before it
// (package sink closes them when it stops them).
func (e *Events) Close() error {
	e.mu.Lock()
	ss := make([]*EventSink, 0, len(e.sinks))
	for _, s := range e.sinks {
		ss = append(ss, s)
	}
	e.mu.Unlock()
	var errs []error
	for _, s := range ss {
		errs = append(errs, s.Close())
	}
	e.nc.Close()
	return errors.Join(errs...)
}

// lease is a sink's key in the leases' bucket: who delivers for it
// ("" after a clean handover) and, per lane, the events stream sequence
// up to which its events are delivered.
type lease struct {
	Node   string   `json:"node"`
	Cursor []uint64 `json:"cursor"`
}

// EventSink is this node's part in delivering one sink's events.
type EventSink struct {
	e     *Events
	name  string
	key   string
	log   *slog.Logger
	lanes []*eventLane
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	delivering atomic.Bool

	// Owned by run.
	rev     uint64    // the lease's revision this node wrote last (delivering)
	renewed time.Time // when that write was acknowledged
	seenRev uint64    // the lease's revision seen last (not delivering)
	seenAt  time.Time // when it was first seen
	purged  []uint64  // per lane, the sequence purged up to
}

// eventLane is one lane of a followed sink.
type eventLane struct {
	subj    string
	done    atomic.Uint64 // the highest sequence Done (the cursor)
	pending atomic.Int64  // the stream's events beyond the last handed to the lane

	mu      sync.Mutex
	ch      chan outbox.Record // nil while not delivering
	quit    chan struct{}      // closed when the current generation stops
	changed chan struct{}      // closed and replaced when ch or quit change
}

// Delivering reports whether this node holds the sink's lease.
func (s *EventSink) Delivering() bool { return s.delivering.Load() }

// Pending is how many events wait in the stream beyond those handed out.
func (s *EventSink) Pending() int64 {
	if !s.Delivering() {
		return 0
	}
	var n int64
	for _, l := range s.lanes {
		n += l.pending.Load()
	}
	return n
}

// NextBatch appends lane's next events to dst (at most max), waiting for
// the first while this node does not deliver for the sink. Seq is the
// events stream's sequence, Time the emission time. After Close it
// answers outbox.ErrClosed.
func (s *EventSink) NextBatch(ctx context.Context, lane int, dst []outbox.Record, max int) ([]outbox.Record, error) {
	l := s.lanes[lane]
	for {
		l.mu.Lock()
		ch, changed := l.ch, l.changed
		l.mu.Unlock()
		var r outbox.Record
		select {
		case r = <-ch: // nil while not delivering: blocks
		case <-changed:
			continue
		case <-ctx.Done():
			return dst, ctx.Err()
		case <-s.stop:
			return dst, outbox.ErrClosed
		}
		dst = append(dst, r)
		for len(dst) < max {
			select {
			case r := <-ch:
				dst = append(dst, r)
			default:
				return dst, nil
			}
		}
		return dst, nil
	}
}

// Done marks lane's events up to seq delivered.
func (s *EventSink) Done(lane int, seq uint64) {
	d := &s.lanes[lane].done
	for {
		cur := d.Load()
		if seq <= cur || d.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// Close stops following the sink; a holder saves its cursors and
// releases the lease, so that another node takes over at once.
func (s *EventSink) Close() error {
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.e.mu.Lock()
		if s.e.sinks[s.name] == s {
			delete(s.e.sinks, s.name)
		}
		s.e.mu.Unlock()
	})
	return nil
}

func (s *EventSink) cursors() []uint64 {
	c := make([]uint64, len(s.lanes))
	for i, l := range s.lanes {
		c[i] = l.done.Load()
	}
	return c
}

// run looks at (or renews) the lease every leaseRefresh until Close.
func (s *EventSink) run() {
	t := time.NewTicker(leaseRefresh)
	defer t.Stop()
	for {
		s.tick()
		select {
		case <-s.stop:
			s.release()
			return
		case <-t.C:
		}
	}
}

func (s *EventSink) tick() {
	ctx, cancel := contextTimeout(leaseRefresh)
	defer cancel()
	now := time.Now()
	kv := s.e.kv
	if s.Delivering() {
		cur := s.cursors()
		rev, err := kv.Update(ctx, s.key, s.value(s.e.o.Name, cur), s.rev)
		switch {
		case err == nil:
			s.rev, s.renewed = rev, now
			s.purge(ctx, cur)
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) ||
			errors.Is(err, jetstream.ErrKeyNotFound):
			s.e.leaseErrors.Add(1)
			s.stopDelivering("another node holds the lease")
		default:
			s.e.leaseErrors.Add(1)
			if now.Sub(s.renewed) > leaseTTL/2 {
				s.stopDelivering("could not renew the lease: " + err.Error())
			}
		}
		return
	}
	ent, err := kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		cur := make([]uint64, len(s.lanes))
		if rev, err := kv.Create(ctx, s.key, s.value(s.e.o.Name, cur)); err == nil {
			s.startDelivering(rev, cur)
		}
		return
	}
	if err != nil {
		s.e.leaseErrors.Add(1)
		return
	}
	var l lease
	if err := json.Unmarshal(ent.Value(), &l); err != nil {
		s.log.Warn("unreadable sink lease; taking it over from the start of the stream", "err", err)
		l = lease{}
	}
	if ent.Revision() != s.seenRev {
		s.seenRev, s.seenAt = ent.Revision(), now
		if l.Node != "" {
			return // renewed: its holder lives
		}
	} else if l.Node != "" && now.Sub(s.seenAt) < leaseTTL {
		return
	}
	// Released, or its holder silent for leaseTTL: take it over.
	cur := make([]uint64, len(s.lanes))
	copy(cur, l.Cursor)
	if rev, err := kv.Update(ctx, s.key, s.value(s.e.o.Name, cur), ent.Revision()); err == nil {
		if l.Node != "" {
			s.log.Info("took over delivering a sink whose node went silent", "from", l.Node)
		}
		s.startDelivering(rev, cur)
	}
}

func (s *EventSink) value(node string, cur []uint64) []byte {
	b, err := json.Marshal(lease{Node: node, Cursor: cur})
	if err != nil {
		panic("BUG: cluster: marshalling a lease: " + err.Error())
	}
	return b
}

// purge drops, per lane, the events delivered (the cursor just saved),
// so that the stream holds only what is not yet delivered.
func (s *EventSink) purge(ctx context.Context, cur []uint64) {
	for i, c := range cur {
		if c <= s.purged[i] {
			continue
		}
		if err := s.e.stream.Purge(ctx, jetstream.WithPurgeSubject(s.lanes[i].subj), jetstream.WithPurgeSequence(c+1)); err != nil {
			s.e.leaseErrors.Add(1)
			return // next time
		}
		s.purged[i] = c
	}
}

// startDelivering starts each lane's consumer after its cursor.
func (s *EventSink) startDelivering(rev uint64, cur []uint64) {
	s.rev, s.renewed = rev, time.Now()
	s.purged = slices.Clone(cur)
	for i, l := range s.lanes {
		l.done.Store(cur[i])
		l.pending.Store(0)
		l.mu.Lock()
		quit := make(chan struct{})
		l.quit = quit
		l.mu.Unlock()
		s.wg.Go(func() { s.pump(l, quit, cur[i]) })
	}
	s.delivering.Store(true)
	s.e.takeovers.Add(1)
	s.log.Info("delivering this sink's events from the cluster", "cursor", cur)
}

// stopDelivering stops every lane's consumer: what they read ahead is
// dropped (the next holder reads it again from the saved cursor).
func (s *EventSink) stopDelivering(why string) {
	s.delivering.Store(false)
	for _, l := range s.lanes {
		l.mu.Lock()
		if l.quit != nil {
			close(l.quit)
			l.quit = nil
		}
		l.ch = nil
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}
	s.e.handovers.Add(1)
	s.log.Info("no longer delivering this sink's events", "why", why)
}

// release hands the lease over on Close: the cursors saved, no holder.
func (s *EventSink) release() {
	if !s.Delivering() {
		return
	}
	ctx, cancel := contextTimeout(leaseRefresh)
	defer cancel()
	if _, err := s.e.kv.Update(ctx, s.key, s.value("", s.cursors()), s.rev); err != nil {
		s.log.Warn("could not hand the sink's delivery over; another node takes it over after the lease times out", "err", err)
	}
	s.stopDelivering("closing")
}

// pump feeds lane l from an ordered consumer of its subject, starting
// after cursor, until quit. The library's ordered consumer recreates
// itself after a failure from the last sequence it delivered, so the
// lane sees the subject gap-free and in order.
func (s *EventSink) pump(l *eventLane, quit chan struct{}, cursor uint64) {
	ch := make(chan outbox.Record, eventLaneBuffer)
	handle := func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		t, _ := strconv.ParseInt(m.Headers().Get(hdrEmitted), 10, 64)
		if t == 0 {
			t = md.Timestamp.UnixNano()
		}
		l.pending.Store(int64(md.NumPending))
		select {
		case ch <- outbox.Record{Seq: md.Sequence.Stream, Time: t, Payload: m.Data()}:
		case <-quit:
		}
	}
	var cc jetstream.ConsumeContext
	for {
		ctx, cancel := contextTimeout(2 * time.Second)
		cons, err := s.e.js.OrderedConsumer(ctx, s.e.name, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{l.subj},
			DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:    cursor + 1,
		})
		cancel()
		if err == nil {
			if cc, err = cons.Consume(handle, jetstream.PullMaxBytes(eventPullBytes)); err == nil {
				break
			}
		}
		s.e.leaseErrors.Add(1)
		s.log.Warn("could not consume a lane of the events stream; retrying", "subject", l.subj, "err", err)
		select {
		case <-quit:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
	l.mu.Lock()
	select {
	case <-quit:
	default:
		l.ch = ch
		close(l.changed)
		l.changed = make(chan struct{})
	}
	l.mu.Unlock()
	<-quit
	cc.Stop()
}

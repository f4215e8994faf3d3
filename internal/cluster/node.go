package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/vfs"
)

// Defaults of Options.
const (
	DefaultStream         = "fleetd"
	DefaultReplicas       = 3
	DefaultPartitions     = 8
	DefaultWaitMax        = 2 * time.Second
	DefaultPublishTimeout = 10 * time.Second
	// DefaultSnapshotEvery is how often a node publishes its snapshot to
	// the object store.
	DefaultSnapshotEvery = time.Minute
	// DefaultRetain is how much of its recent past the stream keeps
	// beyond the snapshot (Options.Retain).
	DefaultRetain = time.Hour
	// DefaultDuplicates is the stream's deduplication window: a client
	// retry of the same body within it publishes nothing new.
	DefaultDuplicates = 2 * time.Minute
)

// metaPartitions is the stream metadata key that records the partition
// count, so that every node hashes trucks the same way.
const metaPartitions = "fleetd-partitions"

// Options configures a Node.
type Options struct {
	// URLs are the NATS servers (nats://host:port), any of the cluster's.
	// Required.
	URLs []string
	// Stream is the JetStream stream's name (default DefaultStream); its
	// subjects are <Stream>.p.<partition>.
	Stream string
	// Replicas is the stream's replication factor when this node creates
	// it (default DefaultReplicas); an existing stream keeps its own.
	Replicas int
	// Partitions is the number of partitions (subjects, and ordered
	// consumers per node). 0 takes the existing stream's, or
	// DefaultPartitions when this node creates it; a value that differs
	// from the stream's is an error.
	Partitions int
	// Engine applies what the stream carries. Required.
	Engine *engine.Engine
	// Dir holds the positions file (positions-<Stream>). Empty keeps none:
	// the node then replays the whole stream at every start, which is
	// right for an engine without a data directory.
	Dir string
	// FS is the filesystem of Dir (default the real one).
	FS vfs.FS
	// Name is this node's name in the cluster's stats and as its NATS
	// connection name (default host name and process ID).
	Name string
	// WaitMax bounds how long Await waits for a token (default
	// DefaultWaitMax).
	WaitMax time.Duration
	// PublishTimeout bounds how long Publish retries a message that
	// JetStream has not acknowledged (default DefaultPublishTimeout).
	PublishTimeout time.Duration
	// SaveEvery is how often the positions file is rewritten when the
	// node has applied more (default 1s).
	SaveEvery time.Duration
	// SnapshotEvery is how often the node publishes its store, with the
	// stream positions it covers, to the object store <Stream>-snapshots
	// (default DefaultSnapshotEvery; negative: never, though the node
	// still restores from one when it starts empty).
	SnapshotEvery time.Duration
	// KeepAll keeps every message of the stream. By default, after a
	// node publishes a snapshot, it purges each partition below the
	// positions of the snapshot it replaced (doc.go, Retention).
	KeepAll bool
	// Retain is how much of the stream's recent past the purge keeps: it
	// purges below the newest snapshot this node has seen that is at
	// least Retain old (and never past the one the new snapshot
	// replaced), so a node down for less than Retain catches up from the
	// stream, its history whole, instead of restoring from the snapshot
	// with a hole in its history (default DefaultRetain; negative: keep
	// only the previous snapshot's tail).
	Retain time.Duration
	// Config, when set, keeps this node's zones, rules and sinks in the
	// cluster's key-value bucket (<Stream>-config): Open applies the
	// bucket to it, then every change any node writes (ConfigHandler).
	Config ConfigTarget
	Logger *slog.Logger
}

// Node is one fleetd of a cluster: it publishes writes to the stream and
// applies every partition of it to its engine. Safe for concurrent use.
type Node struct {
	opts    Options
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	subj    string // "<stream>.p."
	created int64  // the stream's creation time, for the positions file
	posPath string // "" without Dir
	parts   []*partition
	cfg     *config // nil without Options.Config
	// consumerID prefixes this process's consumer names (random, so
	// that a restarted node never meets its old consumers).
	consumerID string
	obj        jetstream.ObjectStore
	snap       snapCounters
	ret        retentionCounters

	pub pubCounters
	app applyCounters
	lag lagRing

	// changed is closed (and replaced) whenever a partition's applied
	// sequence advances, waking Await; guarded by mu.
	mu      sync.Mutex
	changed chan struct{}

	stop     chan struct{}
	wg       sync.WaitGroup
	closed   atomic.Bool
	lostTail atomic.Bool // the positions file was ahead of the local log at Open
}

// partition is one partition's consumer and the sequence applied so far.
type partition struct {
	n       int
	applied atomic.Uint64 // last stream sequence applied and durable in the engine
	pending atomic.Uint64 // messages the consumer had not delivered at the last one applied
	last    atomic.Uint64 // last sequence the stream holds on the subject (refreshed each second)
	msgs    chan delivery
	gen     atomic.Uint64 // the current consumer's generation; older deliveries are dropped
	kick    chan struct{} // the watcher to the follower: replace the consumer (buffered 1)
	// gap: the stream was purged past what this partition applied; it
	// applies nothing more until a restart restores (checkGap).
	gap atomic.Bool

	// Owned by the watch goroutine.
	stuckAt   uint64    // applied sequence when the partition was first seen behind without progress
	stuckFrom time.Time // when
}

// delivery is a stream message of a partition, as a consumer or the
// poller handed it over, and the generation of the consumer (or of the
// failed attempt the poller stands in for) it came from.
type delivery struct {
	gen     uint64
	seq     uint64    // stream sequence
	pending uint64    // messages of the partition after it, as the consumer saw (0 from the poller)
	stamp   time.Time // when the stream took it in
	data    []byte
	bad     error // no JetStream metadata (the applier counts it as malformed)
}

// Open connects to NATS, creates the stream if it does not exist, and
// starts applying every partition from the positions file's sequences
// (the beginning of the stream without one).
func Open(o Options) (*Node, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("cluster: no NATS URL")
	}
	if o.Engine == nil {
		return nil, errors.New("cluster: Options.Engine is nil")
	}
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if strings.ContainsAny(o.Stream, ".*> \t") {
		return nil, fmt.Errorf("cluster: stream name %q has '.', '*', '>' or a space", o.Stream)
	}
	if o.Replicas == 0 {
		o.Replicas = DefaultReplicas
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		return nil, fmt.Errorf("cluster: %d replicas: want 1..5", o.Replicas)
	}
	if o.Partitions < 0 || o.Partitions > maxPartitions {
		return nil, fmt.Errorf("cluster: %d partitions: want 1..%d", o.Partitions, maxPartitions)
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Name == "" {
		h, _ := os.Hostname()
		o.Name = h + "-" + strconv.Itoa(os.Getpid())
	}
	if o.WaitMax <= 0 {
		o.WaitMax = DefaultWaitMax
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	if o.SaveEvery <= 0 {
		o.SaveEvery = time.Second
	}
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = DefaultSnapshotEvery
	}
	if o.Retain == 0 {
		o.Retain = DefaultRetain
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	n := &Node{opts: o, log: o.Logger.With("component", "cluster"), subj: o.Stream + ".p.",
		changed: make(chan struct{}), stop: make(chan struct{})}
	n.lag.init()
	n.consumerID = "fleetd_" + rand.Text()[:16]
	var err error
	n.nc, err = nats.Connect(strings.Join(o.URLs, ","), nats.Name("fleetd "+o.Name), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.PingInterval(2*time.Second), nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if !c.IsClosed() {
				n.log.Warn("disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { n.log.Info("reconnected to NATS", "server", c.ConnectedUrlRedacted()) }))
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to NATS %s: %w", strings.Join(o.URLs, ","), err)
	}
	n.js, err = jetstream.New(n.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err == nil {
		err = n.openStream()
	}
	if err == nil {
		err = n.loadPositions()
	}
	if err == nil {
		err = n.openSnapshots()
	}
	if err == nil && o.Config != nil {
		// Before the snapshot and the stream: rules evaluate the
		// positions they carry.
		err = n.openConfig(o.Config)
	}
	if err == nil {
		// After the configuration (rules see the snapshot's trucks).
		err = n.startPositions()
	}
	if err != nil {
		close(n.stop) // the configuration watcher
		n.nc.Close()
		return nil, err
	}
	for _, p := range n.parts {
		n.wg.Go(func() { n.applyLoop(p) })
		n.wg.Go(func() { n.follow(p) })
	}
	n.wg.Go(n.watch)
	if n.posPath != "" {
		n.wg.Go(n.saveLoop)
	}
	if o.SnapshotEvery > 0 {
		n.wg.Go(n.snapshotLoop)
	}
	n.log.Info("cluster node started", "name", o.Name, "stream", o.Stream, "partitions", len(n.parts),
		"server", n.nc.ConnectedUrlRedacted(), "applied", Token(n.appliedMarks()).String())
	return n, nil
}

// openStream finds or creates the stream and settles the partition count.
func (n *Node) openStream() error {
	giveUp := time.Now().Add(30 * time.Second)
	o := &n.opts
	want := o.Partitions
	if want == 0 {
		want = DefaultPartitions
	}
	cfg := jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "fleetd position updates (package cluster)",
		Subjects:    []string{o.Stream + ".p.*"},
		Replicas:    o.Replicas,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  DefaultDuplicates,
		Metadata:    map[string]string{metaPartitions: strconv.Itoa(want)},
	}
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n.stream, err = n.js.Stream(ctx, o.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			n.stream, err = n.js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				cancel()
				continue // another node created it meanwhile
			}
			if err == nil {
				n.log.Info("created the stream", "stream", o.Stream, "replicas", o.Replicas, "partitions", want)
			}
		}
		cancel()
		// JetStream may still be electing its meta leader just after the
		// servers start: retry for a while.
		if err != nil && time.Now().Before(giveUp) && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) &&
			(errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
				errors.Is(err, nats.ErrNoResponders) || strings.Contains(err.Error(), "unavailable")) {
			time.Sleep(250 * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "insufficient resources") || strings.Contains(err.Error(), "replicas") {
			hint = fmt.Sprintf(" (a stream of %d replicas needs as many JetStream servers; --nats-replicas 1 for one server)", o.Replicas)
		}
		return fmt.Errorf("cluster: opening the stream %q: %w%s", o.Stream, err, hint)
	}
	info := n.stream.CachedInfo()
	have, err := strconv.Atoi(info.Config.Metadata[metaPartitions])
	if err != nil || have < 1 || have > maxPartitions {
		return fmt.Errorf("cluster: the stream %q has no valid %s metadata (%q): it was not created by fleetd", o.Stream, metaPartitions, info.Config.Metadata[metaPartitions])
	}
	if o.Partitions != 0 && o.Partitions != have {
		return fmt.Errorf("cluster: --nats-partitions %d, but the stream %q has %d partitions", o.Partitions, o.Stream, have)
	}
	n.created = info.Created.UnixNano()
	n.parts = make([]*partition, have)
	n.ret.purgedTo = make([]atomic.Uint64, have)
	for i := range n.parts {
		n.parts[i] = &partition{n: i, msgs: make(chan delivery, consumeBuffer), kick: make(chan struct{}, 1)}
	}
	return nil
}

// loadPositions starts every partition where the positions file says.
func (n *Node) loadPositions() error {
	if n.opts.Dir == "" {
		return nil
	}
	if err := n.opts.FS.MkdirAll(n.opts.Dir, 0o755); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	n.posPath = filepath.Join(n.opts.Dir, "positions-"+n.opts.Stream)
	p, err := loadPositions(n.opts.FS, n.posPath)
	if err != nil {
		return err
	}
	if p.seqs == nil {
		if t := n.opts.Engine.Store().Len(); t > 0 {
			n.log.Warn("the engine holds trucks but no stream positions: they were not written through this cluster and other nodes will not have them", "trucks", t)
		}
		return nil
	}
	if p.created != n.created {
		return fmt.Errorf("cluster: %s belongs to a stream %q created at %s, but the stream now was created at %s: the data directory holds another stream's fleet; move it away to rejoin",
			n.posPath, n.opts.Stream, time.Unix(0, p.created).UTC().Format(time.RFC3339Nano), time.Unix(0, n.created).UTC().Format(time.RFC3339Nano))
	}
	if len(p.seqs) != len(n.parts) {
		return fmt.Errorf("cluster: %s has %d partitions, the stream %d", n.posPath, len(p.seqs), len(n.parts))
	}
	if st := n.opts.Engine.Stats(); p.walNext > 0 && st.Durable && uint64(st.WAL.NextLSN) < p.walNext {
		// The local log lost records the positions count (a power cut
		// under --fsync interval or never, a repair, a removed wal/):
		// the engine holds a prefix of what was applied, and re-applying
		// the whole stream over it converges (see doc.go).
		n.lostTail.Store(true)
		n.log.Warn("the local write-ahead log ends before the saved stream positions: it lost records they count; reading the whole stream again",
			"file", n.posPath, "saved_wal_next_lsn", p.walNext, "recovered_wal_next_lsn", uint64(st.WAL.NextLSN), "trucks", st.Store.Trucks)
		return nil
	}
	for i, s := range p.seqs {
		n.parts[i].applied.Store(s)
	}
	n.log.Info("resumed after the saved stream positions", "file", n.posPath, "applied", Token(n.appliedMarks()).String())
	return nil
}

// empty reports whether the node starts with nothing: no positions and
// no trucks (a new or wiped data directory, or none).
func (n *Node) empty() bool {
	for _, p := range n.parts {
		if p.applied.Load() != 0 {
			return false
		}
	}
	return n.opts.Engine.Store().Len() == 0
}

// snapCounters count the object-store snapshots.
type snapCounters struct {
	published, errors atomic.Int64
	bytes             atomic.Int64 // of the last one published
	restored          atomic.Bool  // this node started from one
}

// Partitions is the stream's partition count.
func (n *Node) Partitions() int { return len(n.parts) }

// appliedMarks is every partition's applied sequence.
func (n *Node) appliedMarks() []Mark {
	t := make([]Mark, len(n.parts))
	for i, p := range n.parts {
		t[i] = Mark{i, p.applied.Load()}
	}
	return t
}

// advanced wakes every Await after a partition's applied sequence moved.
func (n *Node) advanced() {
	n.mu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
}

// Reached reports whether every mark of t is applied on this node.
func (n *Node) Reached(t Token) bool {
	for _, m := range t {
		if m.Partition >= len(n.parts) || n.parts[m.Partition].applied.Load() < m.Seq {
			return false
		}
	}
	return true
}

// ErrNotReached is returned by Await when the node has not applied the
// token within Options.WaitMax.
var ErrNotReached = errors.New("cluster: this node has not applied the token's writes yet")

// CheckToken parses a token's text form (an error wraps ErrBadToken).
func (n *Node) CheckToken(s string) error {
	_, err := ParseToken(s, len(n.parts))
	return err
}

// Await waits until the node has applied the token's writes, for at most
// Options.WaitMax: nil once they are, an error wrapping ErrBadToken for a
// malformed token, or ErrNotReached (with how far the node is) after the
// bound or when ctx ends.
func (n *Node) Await(ctx context.Context, s string) error {
	t, err := ParseToken(s, len(n.parts))
	if err != nil {
		return err
	}
	if n.Reached(t) {
		return nil
	}
	for _, m := range t {
		if n.parts[m.Partition].gap.Load() {
			return fmt.Errorf("%w: partition %d stopped behind the stream's retention (it was purged past what this node applied); restart this node to restore it from the object store",
				ErrNotReached, m.Partition)
		}
	}
	timer := time.NewTimer(n.opts.WaitMax)
	defer timer.Stop()
	for {
		n.mu.Lock()
		ch := n.changed
		n.mu.Unlock()
		if n.Reached(t) {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			n.app.awaitTimeouts.Add(1)
			return fmt.Errorf("%w: waited %v; applied here: %s (connected to NATS: %v)", ErrNotReached, n.opts.WaitMax,
				Token(n.appliedMarks()).String(), n.nc.IsConnected())
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotReached, ctx.Err())
		case <-n.stop:
			return fmt.Errorf("%w: the node is shutting down", ErrNotReached)
		}
	}
}

// watch refreshes, once a second, the last sequence the stream holds on
// each partition's subject: how far behind this node is.
func (n *Node) watch() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		n.refresh()
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

func (n *Node) refresh() {
	// In parallel: while a stream leader is being elected each look
	// waits out its timeout, and the watcher must keep its pace.
	var failed atomic.Bool
	var wg sync.WaitGroup
	for _, p := range n.parts {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			m, err := n.stream.GetLastMsgForSubject(ctx, n.subj+strconv.Itoa(p.n))
			cancel()
			switch {
			case err == nil:
				p.last.Store(m.Sequence)
				n.checkGap(p)
			case errors.Is(err, jetstream.ErrMsgNotFound):
				p.last.Store(0)
			default:
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	for _, p := range n.parts {
		n.unstick(p)
	}
	if !failed.Load() {
		n.app.refreshedAt.Store(time.Now().UnixNano())
	}
}

// saveLoop rewrites the positions file when the node has applied more.
func (n *Node) saveLoop() {
	t := time.NewTicker(n.opts.SaveEvery)
	defer t.Stop()
	var saved []uint64
	var buf []byte
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		saved, buf = n.save(saved, buf)
	}
}

// save writes the positions file if it would change. Every sequence it
// records was applied by engine.Apply, which returned only once the
// updates were durable per the engine's fsync policy.
func (n *Node) save(saved []uint64, buf []byte) ([]uint64, []byte) {
	cur := make([]uint64, len(n.parts))
	for i, p := range n.parts {
		cur[i] = p.applied.Load()
		if p.gap.Load() {
			cur[i] = 0 // a restart restores from the object store (checkGap)
		}
	}
	if slicesEqual(cur, saved) {
		return saved, buf
	}
	// After the sequences: every update they count is in a log record
	// below the next LSN read now.
	var walNext uint64
	if st := n.opts.Engine.Stats(); st.Durable {
		walNext = uint64(st.WAL.NextLSN)
	}
	buf, err := savePositions(n.opts.FS, n.posPath, positions{created: n.created, walNext: walNext, seqs: cur}, buf)
	if err != nil {
		n.app.saveErrors.Add(1)
		n.app.rateLog(n.log, "could not save the stream positions; a restart re-applies more of the stream (harmless, slower)", "err", err)
		return saved, buf
	}
	return cur, buf
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Close stops the consumers and the appliers, saves the positions and
// closes the NATS connection. The engine is the caller's to close, after.
func (n *Node) Close() error {
	if n.closed.Swap(true) {
		return nil
	}
	close(n.stop) // the followers stop their consumers
	n.wg.Wait()
	if n.posPath != "" {
		n.save(nil, nil)
	}
	n.nc.Close()
	return nil
}

func contextTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

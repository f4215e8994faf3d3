package cluster

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetd/fleetd/internal/vfs"
)

// Kind is the kind of a configuration entry.
type Kind string

// The kinds of configuration kept in the bucket, in the order a node
// applies them when it loads the whole bucket (a rule names zones; a
// deletion goes in the reverse order).
const (
	KindZone Kind = "zone"
	KindSink Kind = "sink"
	KindRule Kind = "rule"
)

var kinds = []Kind{KindZone, KindSink, KindRule}

// Change is one configuration change: Value is the entry's body (a
// zone's GeoJSON, a rule's {"when","for","severity"}, a sink's JSON), nil
// with Delete.
type Change struct {
	Kind   Kind
	Name   string
	Value  []byte
	Delete bool
}

// ConfigTarget is this node's configuration managers (the alert
// evaluator's zones and rules, the sink dispatcher), which the bucket's
// changes are applied to. Package server implements it.
type ConfigTarget interface {
	// Apply applies changes in order; a deletion of what is not there
	// is not an error. A change that fails does not stop the others; the
	// error names every one that failed.
	Apply(cs []Change) error
	// Names lists what this node holds of a kind.
	Names(k Kind) []string
	// Split turns a bulk PUT /v1/rules body (already applied locally)
	// into one change per rule.
	Split(body []byte) ([]Change, error)
}

// ConfigRevisionHeader carries the bucket revision a configuration
// write reached in its answer, and in a request the revision this node
// must have applied before it answers.
const ConfigRevisionHeader = "Fleetd-Config-Revision"

// maxConfigBody bounds a configuration request's body (the bulk rules
// PUT's limit, the largest).
const maxConfigBody = 64 << 20

// config keeps the node's configuration in step with the bucket.
type config struct {
	n      *Node
	target ConfigTarget
	kv     jetstream.KeyValue
	bucket string
	path   string // the applied-revisions file; "" without Dir
	log    *slog.Logger

	// mu serialises a local write (apply, then put) with the watcher's
	// applies, so that applied is exact and the watcher never applies
	// the echo of a write this node made.
	mu struct {
		sync.Mutex
		applied map[string]uint64 // bucket key → revision this node holds
	}
	rev     atomic.Uint64 // the highest bucket revision applied (or known to be held)
	changed chan struct{} // closed and replaced when rev moves; guarded by chMu
	chMu    sync.Mutex

	puts, deletes, applies, applyErrors, restores atomic.Uint64
	entries                                       atomic.Int64 // len(mu.applied), for Stats
	watch                                         jetstream.KeyWatcher
}

// configKey is the bucket key of a name: kind "." base64url(name), as
// names may hold ':' which keys may not.
func configKey(k Kind, name string) string {
	return string(k) + "." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

func parseConfigKey(key string) (Kind, string, bool) {
	ks, enc, ok := strings.Cut(key, ".")
	if !ok || !slices.Contains(kinds, Kind(ks)) {
		return "", "", false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(enc) // one key a name
	// The decoder skips '\r' and '\n': only the name's own key is its key.
	if err != nil || len(b) == 0 || configKey(Kind(ks), string(b)) != key {
		return "", "", false
	}
	return Kind(ks), string(b), true
}

// openConfig opens (or creates) the bucket, applies all of it to the
// target and starts watching it.
func (n *Node) openConfig(t ConfigTarget) error {
	c := &config{n: n, target: t, bucket: n.opts.Stream + "-config", log: n.log.With("bucket", n.opts.Stream+"-config"),
		changed: make(chan struct{})}
	c.mu.applied = map[string]uint64{}
	if n.opts.Dir != "" {
		c.path = filepath.Join(n.opts.Dir, "config-"+n.opts.Stream)
		if err := c.loadApplied(); err != nil {
			return err
		}
	}
	giveUp := time.Now().Add(30 * time.Second)
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c.kv, err = n.js.KeyValue(ctx, c.bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			c.kv, err = n.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: c.bucket,
				Description: "fleetd zones, rules and sinks (package cluster)", History: 1,
				Replicas: n.stream.CachedInfo().Config.Replicas, Storage: jetstream.FileStorage})
			if errors.Is(err, jetstream.ErrBucketExists) {
				cancel()
				continue
			}
		}
		cancel()
		if err != nil && time.Now().Before(giveUp) {
			time.Sleep(250 * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		return fmt.Errorf("cluster: opening the configuration bucket %q: %w", c.bucket, err)
	}
	c.watch, err = c.kv.WatchAll(context.Background())
	if err != nil {
		return fmt.Errorf("cluster: watching the configuration bucket %q: %w", c.bucket, err)
	}
	// The current values, up to the nil that marks their end.
	var initial []jetstream.KeyValueEntry
	timeout := time.After(30 * time.Second)
load:
	for {
		select {
		case e, ok := <-c.watch.Updates():
			if !ok {
				return fmt.Errorf("cluster: the configuration bucket's watcher stopped while loading")
			}
			if e == nil {
				break load
			}
			initial = append(initial, e)
		case <-timeout:
			_ = c.watch.Stop()
			return fmt.Errorf("cluster: loading the configuration bucket %q: no end after 30s", c.bucket)
		}
	}
	if err := c.loadAll(initial); err != nil {
		_ = c.watch.Stop()
		return err
	}
	n.cfg = c
	n.wg.Go(c.watchLoop)
	return nil
}

// loadAll brings the target to the bucket's current values: what it
// holds at the revision the bucket has is kept (a restart does not
// replace a rule and reset its state), the rest applied, and what the
// bucket does not hold deleted.
func (c *config) loadAll(es []jetstream.KeyValueEntry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	live := map[string]bool{}
	var puts []Change
	var putKeys []string
	var putRevs []uint64
	var top uint64
	for _, e := range es {
		top = max(top, e.Revision())
		k, name, ok := parseConfigKey(e.Key())
		if !ok || e.Operation() != jetstream.KeyValuePut {
			continue
		}
		live[e.Key()] = true
		if c.mu.applied[e.Key()] == e.Revision() {
			continue
		}
		puts = append(puts, Change{Kind: k, Name: name, Value: e.Value()})
		putKeys, putRevs = append(putKeys, e.Key()), append(putRevs, e.Revision())
	}
	var dels []Change
	for i := len(kinds) - 1; i >= 0; i-- {
		for _, name := range c.target.Names(kinds[i]) {
			if !live[configKey(kinds[i], name)] {
				dels = append(dels, Change{Kind: kinds[i], Name: name, Delete: true})
			}
		}
	}
	if len(dels) > 0 {
		c.log.Info("removing configuration the bucket does not hold", "count", len(dels))
		if err := c.target.Apply(dels); err != nil {
			c.applyErrors.Add(1)
			c.log.Error("could not remove configuration the bucket does not hold; this node's configuration differs from the cluster's", "err", err)
		}
		for _, d := range dels {
			delete(c.mu.applied, configKey(d.Kind, d.Name))
		}
	}
	// Zones before the sinks before the rules that name them.
	idx := make([]int, len(puts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Compare(slices.Index(kinds, puts[a].Kind), slices.Index(kinds, puts[b].Kind))
	})
	sorted := make([]Change, len(puts))
	for i, j := range idx {
		sorted[i] = puts[j]
	}
	if len(sorted) > 0 {
		if err := c.target.Apply(sorted); err != nil {
			c.applyErrors.Add(1)
			c.log.Error("could not apply the bucket's configuration; this node's configuration differs from the cluster's", "err", err)
		}
		c.applies.Add(uint64(len(sorted)))
	}
	for i, k := range putKeys {
		c.mu.applied[k] = putRevs[i]
	}
	for k := range c.mu.applied {
		if !live[k] {
			delete(c.mu.applied, k)
		}
	}
	c.saveLocked()
	c.advance(top)
	c.log.Info("configuration loaded from the bucket", "entries", len(live), "applied", len(sorted), "removed", len(dels), "revision", top)
	return nil
}

// watchLoop applies what other nodes write to the bucket, in bucket
// order, in batches of what has arrived.
func (c *config) watchLoop() {
	for {
		var batch []jetstream.KeyValueEntry
		select {
		case <-c.n.stop:
			_ = c.watch.Stop()
			return
		case e, ok := <-c.watch.Updates():
			if !ok {
				if !c.n.closed.Load() {
					c.applyErrors.Add(1)
					c.log.Error("the configuration bucket's watcher stopped: this node no longer sees configuration changes until it restarts")
				}
				return
			}
			if e != nil {
				batch = append(batch, e)
			}
		}
	more:
		for len(batch) < 4096 {
			select {
			case e, ok := <-c.watch.Updates():
				if !ok {
					break more
				}
				if e != nil {
					batch = append(batch, e)
				}
			default:
				break more
			}
		}
		if len(batch) > 0 {
			c.applyEntries(batch)
		}
	}
}

func (c *config) applyEntries(es []jetstream.KeyValueEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cs []Change
	var top uint64
	for _, e := range es {
		top = max(top, e.Revision())
		k, name, ok := parseConfigKey(e.Key())
		if !ok {
			continue
		}
		if e.Operation() == jetstream.KeyValuePut {
			if c.mu.applied[e.Key()] >= e.Revision() {
				continue // this node's own write, or older than what it holds
			}
			cs = append(cs, Change{Kind: k, Name: name, Value: e.Value()})
			c.mu.applied[e.Key()] = e.Revision()
			continue
		}
		if _, held := c.mu.applied[e.Key()]; !held {
			continue // deleted here already
		}
		cs = append(cs, Change{Kind: k, Name: name, Delete: true})
		delete(c.mu.applied, e.Key())
	}
	if len(cs) > 0 {
		if err := c.target.Apply(cs); err != nil {
			c.applyErrors.Add(1)
			c.n.app.rateLog(c.log, "could not apply a configuration change from the bucket; this node's configuration differs from the cluster's", "err", err)
		}
		c.applies.Add(uint64(len(cs)))
		c.saveLocked()
	}
	c.advance(top)
}

func (c *config) advance(rev uint64) {
	for {
		cur := c.rev.Load()
		if rev <= cur {
			return
		}
		if c.rev.CompareAndSwap(cur, rev) {
			break
		}
	}
	c.chMu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.chMu.Unlock()
}

// await waits (at most WaitMax) until the node has applied rev.
func (c *config) await(ctx context.Context, rev uint64) error {
	timer := time.NewTimer(c.n.opts.WaitMax)
	defer timer.Stop()
	for {
		c.chMu.Lock()
		ch := c.changed
		c.chMu.Unlock()
		if c.rev.Load() >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("%w: configuration revision %d not applied after %v (applied: %d)", ErrNotReached, rev, c.n.opts.WaitMax, c.rev.Load())
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotReached, ctx.Err())
		case <-c.n.stop:
			return fmt.Errorf("%w: the node is shutting down", ErrNotReached)
		}
	}
}

// write puts cs (applied locally by the caller, under c.mu) into the
// bucket and returns the highest revision, once JetStream acknowledged
// every one. On an error, the keys are restored from the bucket.
func (c *config) writeLocked(ctx context.Context, cs []Change) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.n.opts.PublishTimeout)
	defer cancel()
	var top uint64
	var err error
	if len(cs) == 1 {
		var rev uint64
		key := configKey(cs[0].Kind, cs[0].Name)
		if cs[0].Delete {
			// kv.Delete's own message, published here for its revision.
			m := nats.NewMsg("$KV." + c.bucket + "." + key)
			m.Header.Set("KV-Operation", "DEL")
			var ack *jetstream.PubAck
			if ack, err = c.n.js.PublishMsg(ctx, m); err == nil {
				rev = ack.Sequence
				delete(c.mu.applied, key)
				c.deletes.Add(1)
			}
		} else {
			rev, err = c.kv.Put(ctx, key, cs[0].Value)
			if err == nil {
				c.mu.applied[key] = rev
				c.puts.Add(1)
			}
		}
		top = rev
	} else {
		// In windows, so that a bulk PUT of 100,000 rules never has more
		// in flight than the connection's asynchronous publisher takes.
		const window = 1024
		futs := make([]jetstream.PubAckFuture, 0, window)
		done := 0
		for start := 0; start < len(cs) && err == nil; start += window {
			futs = futs[:0]
			for _, ch := range cs[start:min(start+window, len(cs))] {
				if ch.Delete {
					return 0, errors.New("BUG: cluster: a bulk configuration write deletes")
				}
				f, perr := c.n.js.PublishAsync("$KV."+c.bucket+"."+configKey(ch.Kind, ch.Name), ch.Value)
				if perr != nil {
					err = perr
					break
				}
				futs = append(futs, f)
			}
			for i, f := range futs {
				select {
				case ack := <-f.Ok():
					ch := cs[start+i]
					c.mu.applied[configKey(ch.Kind, ch.Name)] = ack.Sequence
					top = max(top, ack.Sequence)
					c.puts.Add(1)
					done++
				case e := <-f.Err():
					err = cmp.Or(err, e)
				case <-ctx.Done():
					err = cmp.Or(err, ctx.Err())
				}
			}
		}
		if err == nil && done < len(cs) {
			err = errors.New("cluster: not every rule was published")
		}
	}
	if err != nil {
		c.restoreLocked(cs)
		return 0, fmt.Errorf("cluster: writing the configuration to the bucket %q: %w", c.bucket, err)
	}
	c.saveLocked()
	return top, nil
}

// restoreLocked sets the keys of cs back to what the bucket holds, after
// a local change the bucket did not take.
func (c *config) restoreLocked(cs []Change) {
	c.restores.Add(1)
	var back []Change
	for _, ch := range cs {
		key := configKey(ch.Kind, ch.Name)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		e, err := c.kv.Get(ctx, key)
		cancel()
		switch {
		case err == nil:
			back = append(back, Change{Kind: ch.Kind, Name: ch.Name, Value: e.Value()})
			c.mu.applied[key] = e.Revision()
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
			back = append(back, Change{Kind: ch.Kind, Name: ch.Name, Delete: true})
			delete(c.mu.applied, key)
		default:
			c.applyErrors.Add(1)
			c.log.Error("a configuration change the bucket did not take could not be undone (the bucket is unreachable); this node differs until it restarts", "kind", ch.Kind, "name", ch.Name, "err", err)
		}
	}
	if len(back) > 0 {
		if err := c.target.Apply(back); err != nil {
			c.applyErrors.Add(1)
			c.log.Error("undoing a configuration change the bucket did not take", "err", err)
		}
	}
}

// The applied-revisions file, DATA/cluster/config-<stream>: JSON
// {"created": <stream creation ns>, "applied": {"<key>": revision, …}},
// replaced as the positions file is.
type appliedFile struct {
	Created int64             `json:"created"`
	Applied map[string]uint64 `json:"applied"`
}

func (c *config) loadApplied() error {
	f, err := c.n.opts.FS.Open(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<20))
	if err != nil {
		return fmt.Errorf("cluster: reading %s: %w", c.path, err)
	}
	var a appliedFile
	if err := json.Unmarshal(b, &a); err != nil {
		// Not fatal: everything the bucket holds is applied again.
		c.log.Warn("the applied configuration revisions are unreadable; applying the whole bucket again", "file", c.path, "err", err)
		return nil
	}
	if a.Created == c.n.created && a.Applied != nil {
		c.mu.applied = a.Applied
	}
	return nil
}

func (c *config) saveLocked() {
	c.entries.Store(int64(len(c.mu.applied)))
	if c.path == "" {
		return
	}
	b, err := json.Marshal(appliedFile{Created: c.n.created, Applied: c.mu.applied})
	if err == nil {
		err = writeFileAtomic(c.n.opts.FS, c.path, b)
	}
	if err != nil {
		c.n.app.saveErrors.Add(1)
		c.n.app.rateLog(c.log, "could not save the applied configuration revisions; a restart applies the bucket again (resetting rule state)", "err", err)
	}
}

// writeFileAtomic replaces path durably: a temporary file, fsynced,
// renamed over the old one, and the directory fsynced.
func writeFileAtomic(fsys vfs.FS, path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err == nil {
		err = fsys.SyncDir(filepath.Dir(path))
	}
	return err
}

package sink

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/outbox"
	"github.com/fleetd/fleetd/internal/vfs"
)

// ErrNotFound is returned for a sink that does not exist.
var ErrNotFound = errors.New("sink: no such sink")

// ErrPersist wraps a failure to save the configuration (nothing changed).
var ErrPersist = errors.New("sink: saving the configuration failed")

const configName = "sinks.json"

// Options configures a Dispatcher.
type Options struct {
	FS vfs.FS // default vfs.Default
	// Dir holds sinks.json and each sink's outbox; required (use a
	// vfs.MemFS for a server without a data directory).
	Dir    string
	Logger *slog.Logger
	// Outbox tunes every sink's outbox (FS, Dir, Logger and MaxBytes
	// are set per sink).
	Outbox outbox.Options
	// Relay, in cluster mode (package cluster), publishes every sink's
	// events into the cluster and delivers them from there on one node
	// at a time (doc.go, Cluster mode). Nil: a single node.
	Relay Relay
}

// Dispatcher holds the configured sinks, turns alert transitions and
// truck expiries into events and appends each to the outbox of every
// sink whose filter passes it. It is a fleet.Observer (for expiries) and
// its Emit is an alert.Options.Emit.
type Dispatcher struct {
	opts Options
	log  *slog.Logger

	// live is the running sinks, sorted by name; Emit reads it
	// without a lock.
	live atomic.Pointer[[]*sink]

	// mu serialises configuration changes and guards cfgs.
	mu   sync.Mutex
	cfgs map[string]Config
}

// New loads the sinks configured in o.Dir and starts them.
func New(o Options) (*Dispatcher, error) {
	if o.Dir == "" {
		return nil, errors.New("sink: Options.Dir is empty")
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	d := &Dispatcher{opts: o, log: o.Logger, cfgs: map[string]Config{}}
	d.live.Store(&[]*sink{})
	if err := o.FS.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	b, err := vfs.ReadFile(o.FS, filepath.Join(o.Dir, configName))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("sink: %w", err)
	default:
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("sink: %s: %w", filepath.Join(o.Dir, configName), err)
		}
		for name, raw := range doc {
			c, err := ParseConfig(raw)
			if err == nil {
				err = CheckName(name)
			}
			if err != nil {
				return nil, fmt.Errorf("sink: %s: sink %q: %w", filepath.Join(o.Dir, configName), name, err)
			}
			d.cfgs[name] = c
		}
	}
	var live []*sink
	for _, name := range slices.Sorted(maps.Keys(d.cfgs)) {
		s, err := d.start(name, d.cfgs[name])
		if err != nil {
			for _, s := range live {
				_ = s.stop()
			}
			return nil, err
		}
		live = append(live, s)
	}
	d.live.Store(&live)
	if len(live) > 0 {
		d.log.Info("sinks started", "sinks", len(live))
	}
	return d, nil
}

func (d *Dispatcher) start(name string, c Config) (*sink, error) {
	return startSink(d.opts.FS, filepath.Join(d.opts.Dir, name), name, c, d.log, d.opts.Outbox, d.opts.Relay)
}

// save writes the configuration cfgs: sinks.json.tmp, fsync, rename,
// directory fsync. Sinks are few (MaxSinks), so the whole document is
// rewritten on each change.
func (d *Dispatcher) save(cfgs map[string]Config) error {
	b, err := json.MarshalIndent(cfgs, "", "  ")
	if err != nil {
		panic("BUG: sink: marshalling the configuration: " + err.Error())
	}
	tmp, path := filepath.Join(d.opts.Dir, configName+".tmp"), filepath.Join(d.opts.Dir, configName)
	if err := vfs.WriteFile(d.opts.FS, tmp, b); err != nil {
		return fmt.Errorf("%w: %v", ErrPersist, err)
	}
	if err := d.opts.FS.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: %v", ErrPersist, err)
	}
	if err := d.opts.FS.SyncDir(d.opts.Dir); err != nil {
		return fmt.Errorf("%w: %v", ErrPersist, err)
	}
	return nil
}

// Put creates or replaces the sink name; created reports which. A
// replaced sink keeps its outbox: what waits is delivered to the new
// destination. The change is durable when Put returns.
func (d *Dispatcher) Put(name string, c Config) (created bool, err error) {
	if err := CheckName(name); err != nil {
		return false, err
	}
	if err := c.check(); err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	_, exists := d.cfgs[name]
	if !exists && len(d.cfgs) >= MaxSinks {
		return false, fmt.Errorf("%w: at most %d sinks", ErrInvalid, MaxSinks)
	}
	next := maps.Clone(d.cfgs)
	next[name] = c
	if err := d.save(next); err != nil {
		return false, err
	}
	d.cfgs = next
	live := slices.Clone(*d.live.Load())
	i, found := slices.BinarySearchFunc(live, name, func(s *sink, n string) int { return cmpString(s.name, n) })
	if found {
		// Stop the old one first: the outbox has one consumer. Events
		// emitted until the new one runs are shed (counted by the old).
		old := live[i]
		live = slices.Delete(live, i, i+1)
		d.live.Store(&live)
		if err := old.stop(); err != nil {
			d.log.Warn("sink: stopping the replaced sink", "sink", name, "err", err)
		}
		live = slices.Clone(live)
	}
	s, err := d.start(name, c)
	if err != nil {
		d.log.Error("sink: starting", "sink", name, "err", err)
		return !exists, fmt.Errorf("sink: configured but not started: %w", err)
	}
	i, _ = slices.BinarySearchFunc(live, name, func(s *sink, n string) int { return cmpString(s.name, n) })
	live = slices.Insert(live, i, s)
	d.live.Store(&live)
	d.log.Info("sink configured", "sink", name, "type", c.Type, "created", !exists)
	return !exists, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Delete removes the sink and its outbox (undelivered events are lost).
func (d *Dispatcher) Delete(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.cfgs[name]; !ok {
		return ErrNotFound
	}
	next := maps.Clone(d.cfgs)
	delete(next, name)
	if err := d.save(next); err != nil {
		return err
	}
	d.cfgs = next
	live := slices.Clone(*d.live.Load())
	if i := slices.IndexFunc(live, func(s *sink) bool { return s.name == name }); i >= 0 {
		s := live[i]
		live = slices.Delete(live, i, i+1)
		d.live.Store(&live)
		if err := s.stop(); err != nil {
			d.log.Warn("sink: stopping the deleted sink", "sink", name, "err", err)
		}
		if err := s.removeOutboxes(); err != nil {
			d.log.Warn("sink: removing the deleted sink's outbox", "sink", name, "err", err)
		}
	}
	if d.opts.Relay != nil {
		if err := d.opts.Relay.Remove(name); err != nil {
			d.log.Warn("sink: removing the deleted sink's events from the cluster", "sink", name, "err", err)
		}
	}
	dir := filepath.Join(d.opts.Dir, name)
	_ = d.opts.FS.Remove(filepath.Join(dir, deadName))
	_ = d.opts.FS.Remove(dir)
	d.log.Info("sink deleted", "sink", name)
	return nil
}

// View is a sink as GET /v1/sinks shows it: its configuration without
// the secret, and its counters.
type View struct {
	Name      string `json:"name"`
	Config           // Secret is cleared
	SecretSet bool   `json:"secret_set,omitempty"`
	Running   bool   `json:"running"`
	Stats     *Stats `json:"stats,omitempty"`
	// DeadLetters, oldest first, in GET /v1/sinks/{name} only.
	DeadLetters []DeadLetter `json:"dead_letters,omitempty"`
}

func (d *Dispatcher) view(name string, c Config, withDead bool) View {
	v := View{Name: name, Config: c, SecretSet: c.Secret != ""}
	v.Secret, v.URL = "", redactedURL(c.URL)
	for _, s := range *d.live.Load() {
		if s.name == name {
			st := s.stats()
			v.Running, v.Stats = true, &st
			if withDead {
				v.DeadLetters = s.deadLetters()
			}
		}
	}
	return v
}

// Get returns the sink name with its dead letters.
func (d *Dispatcher) Get(name string) (View, bool) {
	d.mu.Lock()
	c, ok := d.cfgs[name]
	d.mu.Unlock()
	if !ok {
		return View{}, false
	}
	return d.view(name, c, true), true
}

// List returns every sink, by name.
func (d *Dispatcher) List() []View {
	d.mu.Lock()
	cfgs := maps.Clone(d.cfgs)
	d.mu.Unlock()
	out := make([]View, 0, len(cfgs))
	for _, name := range slices.Sorted(maps.Keys(cfgs)) {
		out = append(out, d.view(name, cfgs[name], false))
	}
	return out
}

// Stats returns each running sink's counters by name (nil when none is
// configured): /v1/stats's "sinks".
func (d *Dispatcher) Stats() map[string]Stats {
	live := *d.live.Load()
	if len(live) == 0 {
		return nil
	}
	out := make(map[string]Stats, len(live))
	for _, s := range live {
		out[s.name] = s.stats()
	}
	return out
}

// eachStats calls f for every running sink (for /metrics).
func (d *Dispatcher) eachStats(f func(name string, st Stats)) {
	for _, s := range *d.live.Load() {
		f(s.name, s.stats())
	}
}

// Emit queues an alert transition for the sinks whose filters pass it.
// It never waits for a sink or the disk. The event is encoded once, in
// a buffer on the stack (the outboxes copy it), and its ID is written
// into it directly: no allocation for an event of up to emitBuf bytes.
func (d *Dispatcher) Emit(a alert.Alert) {
	live := *d.live.Load()
	if len(live) == 0 {
		return
	}
	var arr [emitBuf]byte
	var buf []byte
	var key uint64
	kind := alertKind(&a)
	for _, s := range live {
		if !s.cfg.Filter.match(kind, a.Rule, a.Severity) {
			continue
		}
		if buf == nil {
			ev := alertEvent(&a)
			buf = ev.appendJSONStableID(arr[:0])
			key = truckKey(a.ID)
		}
		s.enqueue(key, buf)
	}
}

// emitBuf is Emit's stack buffer: an event with IDs and names of usual
// length is ~250 bytes of JSON; a longer one grows onto the heap.
const emitBuf = 512

// Applied is the fleet.Observer hook; positions are not events.
func (d *Dispatcher) Applied(*fleet.Batch) {}

// Removed queues a truck.expired event for an expired truck.
func (d *Dispatcher) Removed(id []byte, p fleet.Position, why fleet.Removal) {
	if why != fleet.Expired {
		return
	}
	live := *d.live.Load()
	var arr [emitBuf]byte
	var buf []byte
	var key uint64
	for _, s := range live {
		if !s.cfg.Filter.match(KindExpired, "", "") {
			continue
		}
		if buf == nil {
			ev := Event{Kind: KindExpired, Truck: string(id), TS: p.TS, Lat: p.LatDeg(), Lon: p.LonDeg(), lat7: p.Lat, lon7: p.Lon, fixed: true}
			buf = ev.appendJSONStableID(arr[:0])
			key = truckKey(ev.Truck)
		}
		s.enqueue(key, buf)
	}
}

// Close stops every sink; undelivered events stay in their outboxes.
func (d *Dispatcher) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	live := *d.live.Load()
	d.live.Store(&[]*sink{})
	var errs []error
	for _, s := range live {
		errs = append(errs, s.stop())
	}
	return errors.Join(errs...)
}

// Sync waits until every event appended so far to any sink's outbox is
// durable (fsynced; the outboxes' writers group-commit, so concurrent
// callers share fsyncs). It never waits for a receiver. No sink, or
// nothing waiting for the disk: an atomic load per sink. It is
// alert.Options.Sync: an ingest batch whose rules emitted is answered
// only once its events are durable. A failing disk is logged (at most
// once a minute) and counted in the outbox's write errors; Sync then
// returns without waiting longer (the events stay in memory, retried).
func (d *Dispatcher) Sync() {
	for _, s := range *d.live.Load() {
		if err := s.ob.Sync(); err != nil && !errors.Is(err, outbox.ErrClosed) {
			s.syncLog.Warn("sink: an acknowledged update's events are not durable yet", "err", err)
		}
	}
}

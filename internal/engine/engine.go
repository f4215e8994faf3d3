package engine

import (
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/snapshot"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/vfs"
	"github.com/fleetd/fleetd/internal/wal"
)

// Options configures an Engine.
type Options struct {
	Store store.Options
	// TTL removes trucks that fleetd has not heard from for this long (0 =
	// keep forever). It counts from the last accepted update by the
	// engine's clock, stale (late) updates included, never from the
	// device's ts: a truck reporting hours-old points stays, and a truck
	// is removed between TTL and TTL·(1+2/ttlEpochs) plus one sweep after
	// it was last heard. Trucks recovered at startup count as heard then.
	// The sweep runs every SweepEvery (default 1s, or TTL/ttlEpochs if
	// that is shorter), chunk by chunk, so no shard is locked for more
	// than a few tens of microseconds at a time; it removes nothing until
	// a last-heard epoch has passed.
	TTL        time.Duration
	SweepEvery time.Duration
	// MemoryLimit, when > 0, is the heap size past which new trucks are
	// refused (known trucks keep updating). The caller also sets the Go
	// soft memory limit; the engine keeps headroom below it.
	MemoryLimit int64
	// Now is the clock (default time.Now); tests replace it.
	Now func() time.Time
	// Observers see every applied batch, delete and expiry (the live feed,
	// alert rules).
	Observers []Observer

	// DataDir, when set, makes the engine durable: a write-ahead log and
	// snapshots live there, and Open recovers from them. Empty means the
	// fleet lives in memory only.
	DataDir string
	// FS is the filesystem for DataDir (default the real one).
	FS vfs.FS
	// Fsync is the WAL's durability policy (default wal.FsyncAlways).
	Fsync wal.FsyncPolicy
	// SnapshotEvery is the WAL growth in bytes that triggers a background
	// snapshot (default 256 MiB; negative disables size-triggered ones).
	SnapshotEvery int64
	// Logger receives recovery, snapshot and expiry messages (default
	// slog.Default()).
	Logger *slog.Logger
	// History, when set and DataDir is set, keeps every accepted update
	// in <DataDir>/history (package history; Dir, FS, Logger and Now are
	// filled in). Nil keeps none.
	History *history.Options
}

// Engine owns the store and everything that must see each applied update.
type Engine struct {
	opts    Options
	st      *store.Store
	ready   atomic.Bool
	closed  atomic.Bool
	updates atomic.Int64 // accepted updates, stale included
	stale   atomic.Int64 // accepted updates older than the stored position
	expired atomic.Int64
	sweeps  atomic.Int64
	refused atomic.Int64
	rate    rateMeter
	started time.Time

	dur      *durable // nil when in memory
	recovery RecoveryReport

	// sweep is the expiry's state, guarded by its mutex.
	sweep struct {
		sync.Mutex
		epoch     int64     // last epoch handed to the store
		swept     int64     // epoch of the last Expire
		logged    time.Time // when expiries were last logged
		unlogged  int       // expired since then
		unloggedS time.Time // first expiry not yet logged
	}

	stop chan struct{}
	bg   sync.WaitGroup
}

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("engine: closed")

// Open builds an engine. It is ready once Open returns.
func Open(o Options) (*Engine, error) {
	st, err := store.New(o.Store)
	if err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = DefaultSnapshotEvery
	}
	e := &Engine{opts: o, st: st, started: o.Now(), stop: make(chan struct{})}
	if o.DataDir != "" {
		if err := openDurable(e, &o); err != nil {
			return nil, err
		}
	}
	if o.TTL > 0 {
		e.opts.SweepEvery = min(o.SweepEvery, e.epochLen())
	}
	if o.TTL > 0 || o.MemoryLimit > 0 || e.dur != nil {
		e.bg.Go(e.housekeeping)
	}
	if e.dur != nil && e.dur.hist != nil {
		e.bg.Go(e.historyWriter)
		e.bg.Go(e.historyKeeper)
	}
	e.ready.Store(true)
	return e, nil
}

// housekeeping runs the expiry sweep and the memory guard until Close.
func (e *Engine) housekeeping() {
	t := time.NewTicker(e.opts.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		if e.opts.TTL > 0 {
			e.Sweep()
		}
		if e.opts.MemoryLimit > 0 {
			e.guardMemory()
		}
		if d := e.dur; d != nil && e.opts.SnapshotEvery > 0 && d.walBytesSinceSnapshot() >= uint64(e.opts.SnapshotEvery) {
			if _, err := d.snapshot(e.st); err != nil {
				e.opts.Logger.Error("background snapshot failed; the write-ahead log keeps everything meanwhile", "err", err)
			}
		}
	}
}

// Snapshot writes a snapshot now (no-op without a data directory).
func (e *Engine) Snapshot() error {
	if e.dur == nil {
		return nil
	}
	_, err := e.dur.snapshot(e.st)
	return err
}

// Recovery reports what Open recovered from the data directory.
func (e *Engine) Recovery() RecoveryReport { return e.recovery }

// ttlEpochs is how many last-heard epochs make a TTL. Records keep the
// epoch mod store.HeardEpochs (128), so the sweep, which runs at least once
// an epoch, sees every truck's true age while it is under 128-33 epochs: a
// truck is expired within two epochs (1/16 of the TTL) after its TTL is up.
const ttlEpochs = 32

// expiryLogEvery is how often expiries are summarised in the log.
const expiryLogEvery = time.Minute

// epochLen is the length of one last-heard epoch.
func (e *Engine) epochLen() time.Duration { return max(e.opts.TTL/ttlEpochs, time.Millisecond) }

// Sweep advances the store's last-heard epoch to now and, when an epoch
// has passed since the last sweep, expires the trucks not heard from for
// the TTL. It returns how many it expired.
func (e *Engine) Sweep() int {
	if e.opts.TTL <= 0 {
		return 0
	}
	sw := &e.sweep
	sw.Lock()
	defer sw.Unlock()
	now := e.opts.Now()
	// The clock may step back; epochs do not.
	sw.epoch = max(sw.epoch, int64(now.Sub(e.started)/e.epochLen()))
	e.st.SetEpoch(uint32(sw.epoch))
	n := 0
	if sw.epoch != sw.swept {
		sw.swept = sw.epoch
		n = e.expire()
		e.sweeps.Add(1)
	}
	if n > 0 && sw.unlogged == 0 {
		sw.unloggedS = now
	}
	sw.unlogged += n
	if sw.unlogged > 0 && now.Sub(sw.logged) >= expiryLogEvery {
		e.opts.Logger.Info("expired trucks not heard from for the TTL", "trucks", sw.unlogged,
			"since", sw.unloggedS.UTC().Format(time.RFC3339), "ttl", e.opts.TTL, "trucks_left", e.st.Len(), "expired_total", e.expired.Load())
		sw.logged, sw.unlogged = now, 0
	}
	return n
}

// expire removes the trucks whose last-heard epoch is more than ttlEpochs
// behind the store's, logs the removals and tells the observers.
func (e *Engine) expire() int {
	var ids [][]byte
	var pos []store.Position
	var tss []uint32
	collect := func(id []byte, p store.Position) {
		ids = append(ids, append([]byte(nil), id...))
		pos = append(pos, p)
		tss = append(tss, p.TS)
	}
	var n int
	if d := e.dur; d != nil {
		// Exclusive against Apply, so that the log orders the expiries
		// exactly where they happened among updates: a late update that
		// recreates an expired truck is logged after the expiry. A crash
		// before the record is durable brings the trucks back, and a later
		// sweep expires them again. The pause is one pass over the store's
		// records and one fsync, once an epoch (TTL/32).
		d.applyMu.Lock()
		n = e.st.Expire(ttlEpochs+1, collect)
		if n > 0 {
			if err := d.logDeletes(wal.KindExpire, ids, tss); err != nil {
				e.opts.Logger.Error("could not log expiries; they will be redone after a restart", "trucks", n, "err", err)
			}
		}
		d.applyMu.Unlock()
	} else {
		n = e.st.Expire(ttlEpochs+1, collect)
	}
	for i := range ids {
		e.notifyRemoved(ids[i], pos[i], Expired)
	}
	e.expired.Add(int64(n))
	return n
}

// guardMemory caps the number of trucks so that the heap stays below 85%
// of the memory limit: the cap is what is stored now plus what fits in the
// remaining headroom at the store's measured bytes per truck (at least 64,
// for the transient garbage of growth).
func (e *Engine) guardMemory() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := e.st.Stats()
	per := max(st.BytesPerTruck, 64)
	room := float64(e.opts.MemoryLimit)*0.85 - float64(ms.HeapAlloc)
	extra := 0
	if room > 0 {
		extra = int(room / per)
	}
	e.st.SetMaxTrucks(max(st.Trucks+extra, 1))
}

// Store gives read access for queries. Writers go through the Engine.
func (e *Engine) Store() *store.Store { return e.st }

// Ready reports whether recovery has finished and the engine serves.
func (e *Engine) Ready() bool { return e.ready.Load() && !e.closed.Load() }

// ApplyChunk is the most updates Apply logs and applies as one: a larger
// batch (a 64 MiB POST holds about 700,000) goes in pieces of this many,
// each its own log record, so that the memory it takes downstream of the
// caller — history's buffer above all, which would otherwise grow by 48
// bytes a point of the whole batch at once — is bounded by this, not by
// the batch. 16,384 is above the 10,000-line batches devices' gateways
// and the benchmarks send, which stay one record.
const ApplyChunk = 16384

// Apply applies a batch of valid updates. When it returns nil, every update
// of the batch is applied (or was stale) and durable per the fsync policy.
// A batch of more than ApplyChunk updates is logged and applied a piece at
// a time: if an error stops it, the pieces before are applied and
// durable, and the Result returned with the error counts them.
func (e *Engine) Apply(batch []store.Update) (store.Result, error) {
	var res store.Result
	for len(batch) > ApplyChunk {
		r, err := e.apply(batch[:ApplyChunk], nil)
		res.Add(r)
		if err != nil {
			return res, err
		}
		batch = batch[ApplyChunk:]
	}
	r, err := e.apply(batch, nil)
	res.Add(r)
	return res, err
}

// ApplyEncoded is Apply for a batch whose log records the caller already
// holds: records, in order, must be package wal's encodings
// (wal.AppendUpdates) of consecutive parts of batch, together exactly
// batch's entries, all of kind update, in batch's order, as a cluster
// node receives them from the stream, where they were decoded from. The
// engine logs each record as it is (copied before it returns), one log
// record each, instead of encoding batch again; recovery reads the same
// updates back. Records that do not match batch are a programming error
// the log cannot detect, so callers pass only what they decoded batch
// from.
func (e *Engine) ApplyEncoded(batch []store.Update, records [][]byte) (store.Result, error) {
	if len(records) == 0 {
		return store.Result{}, errors.New("engine: ApplyEncoded without records")
	}
	return e.apply(batch, records)
}

// apply is Apply, logging records (nil: batch, encoded here).
func (e *Engine) apply(batch []store.Update, records [][]byte) (store.Result, error) {
	if e.closed.Load() {
		return store.Result{}, ErrClosed
	}
	if d := e.dur; d != nil {
		if d.hist != nil {
			// Room in history's buffer first: when its writer is behind,
			// wait for it, not for memory.
			d.hist.Reserve(len(batch), e.stop)
		}
		d.applyMu.RLock()
		defer d.applyMu.RUnlock()
		var err error
		if records == nil {
			err = d.logUpdates(batch)
		} else {
			// One group for all (one fsync under --fsync always). A
			// failure after some records reached the disk is like a failed
			// Apply whose write did: not acknowledged, applied again.
			_, err = d.log.AppendRecords(wal.TypeUpdates, records)
		}
		if err != nil {
			if d.hist != nil {
				d.hist.Release(len(batch))
			}
			return store.Result{}, err
		}
		if d.hist != nil {
			d.hist.AddReserved(batch)
		}
	}
	var res store.Result
	if len(e.opts.Observers) > 0 {
		res = e.applyObserved(batch)
	} else {
		res = e.st.Apply(batch)
	}
	e.refused.Add(int64(res.Refused))
	if res.Stale > 0 {
		e.stale.Add(int64(res.Stale))
	}
	n := int64(res.Inserted + res.Updated + res.Stale)
	e.updates.Add(n)
	e.rate.add(time.Now().Unix(), n)
	return res, nil
}

// Delete removes a truck; it reports whether the truck existed.
func (e *Engine) Delete(id []byte) (bool, error) {
	if e.closed.Load() {
		return false, ErrClosed
	}
	p, ok := e.st.Get(id)
	if !ok {
		return false, nil
	}
	if d := e.dur; d != nil {
		d.applyMu.RLock()
		defer d.applyMu.RUnlock()
		if err := d.logDeletes(wal.KindDelete, [][]byte{id}, []uint32{p.TS}); err != nil {
			return false, err
		}
	}
	// Conditional on the TS read above, like its replay: an update that
	// raced in with a newer TS survives.
	if e.st.DeleteIf(id, p.TS) {
		e.notifyRemoved(id, p, Deleted)
	}
	return true, nil
}

// Stats is the engine's own accounting, without the process-wide runtime
// figures (the API adds those).
type Stats struct {
	Store         store.Stats
	UpdatesTotal  int64
	UpdatesPerSec float64
	StaleTotal    int64 // accepted updates older than the stored position (kept in the log, not applied)
	ExpiredTotal  int64
	Sweeps        int64 // expiry passes over the store
	TTL           time.Duration
	RefusedTotal  int64 // new trucks refused at the memory or truck cap
	Uptime        time.Duration
	Durable       bool
	WAL           wal.Stats
	LastSnapshot  snapshot.Info
	Recovery      RecoveryReport
	History       *history.Stats // nil when history is off
}

// Stats reports the engine's figures.
func (e *Engine) Stats() Stats {
	var ws wal.Stats
	var si snapshot.Info
	if d := e.dur; d != nil {
		ws = d.log.Stats()
		d.snapMu.Lock()
		si = d.lastSnapInfo
		d.snapMu.Unlock()
	}
	var hs *history.Stats
	if h := e.History(); h != nil {
		s := h.Stats()
		hs = &s
	}
	return Stats{
		History:       hs,
		Durable:       e.dur != nil,
		WAL:           ws,
		LastSnapshot:  si,
		Recovery:      e.recovery,
		Store:         e.st.Stats(),
		UpdatesTotal:  e.updates.Load(),
		UpdatesPerSec: e.rate.perSec(time.Now().Unix()),
		StaleTotal:    e.stale.Load(),
		ExpiredTotal:  e.expired.Load(),
		Sweeps:        e.sweeps.Load(),
		TTL:           e.opts.TTL,
		RefusedTotal:  e.refused.Load(),
		Uptime:        time.Since(e.started),
	}
}

// Close stops accepting updates and flushes what must be flushed.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	close(e.stop)
	if h := e.History(); h != nil {
		h.Wake()
	}
	e.bg.Wait()
	if d := e.dur; d != nil {
		var herr error
		if d.hist != nil {
			if herr = e.flushHistory(); herr == nil {
				herr = d.hist.SyncCovered() // before the final snapshot cuts the log
			}
			if herr != nil {
				e.opts.Logger.Error("final history write failed; the write-ahead log still has its points", "err", herr)
			}
		}
		_, serr := d.snapshot(e.st)
		if serr != nil {
			e.opts.Logger.Error("final snapshot failed; the write-ahead log still has everything", "err", serr)
		}
		err := errors.Join(herr, serr, d.log.Close())
		if d.hist != nil {
			err = errors.Join(err, d.hist.Close())
		}
		return err
	}
	return nil
}

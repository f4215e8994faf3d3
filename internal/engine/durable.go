package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/snapshot"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/vfs"
	"github.com/fleetd/fleetd/internal/wal"
)

// The data directory holds two subdirectories:
//
//	<data>/wal/   wal-<first LSN>.log segments (package wal)
//	<data>/snap/  snap-<LSN>.fsnap snapshots, the newest two (package snapshot)
const (
	walDir  = "wal"
	snapDir = "snap"
)

// DefaultSnapshotEvery is the WAL growth that triggers a snapshot.
const DefaultSnapshotEvery = 256 << 20

// durable is the engine's persistence: nil when the engine runs in memory.
type durable struct {
	fs   vfs.FS
	dir  string
	log  *wal.Log
	logf *slog.Logger

	// applyMu orders batches against snapshots: Apply holds it shared from
	// its WAL append until the store has applied the batch; a snapshot
	// takes it exclusively for the instant it reads the LSN it covers, so
	// that every record up to that LSN is in the store.
	applyMu sync.RWMutex

	snapMu       sync.Mutex // one snapshot at a time
	lastSnapLSN  wal.LSN
	lastSnapAt   time.Time
	lastSnapInfo snapshot.Info
	bytesAtSnap  uint64 // wal.Stats().Bytes when the last snapshot started

	encPool sync.Pool // *encodeScratch

	// hist is the history of every update, nil when off. histMu orders
	// its writers; pending is a sealed buffer whose write failed, retried
	// first.
	hist      *history.History
	histKick  chan struct{} // a write happened: housekeep
	histMu    sync.Mutex
	pending   *history.Sealed
	replayUps []store.Update // recovery's scratch for history
	replayIDs []byte
	replayLen []uint8

	// truncMu guards keepWALFrom, the oldest record a kept snapshot needs
	// (0: no snapshot yet), and orders the log's truncations.
	truncMu     sync.Mutex
	keepWALFrom wal.LSN
}

type encodeScratch struct {
	entries []wal.Entry
	buf     []byte
}

// RecoveryReport says what Open found on disk.
type RecoveryReport struct {
	SnapshotLSN     wal.LSN
	SnapshotTrucks  uint64
	SkippedSnaps    []string
	ReplayedRecords int
	ReplayedUpdates int
	Duration        time.Duration
}

func openDurable(e *Engine, o *Options) error {
	fs := o.FS
	if fs == nil {
		fs = vfs.Default
	}
	d := &durable{fs: fs, dir: o.DataDir, logf: o.Logger}
	d.encPool.New = func() any { return &encodeScratch{} }
	for _, sub := range []string{walDir, snapDir} {
		if err := fs.MkdirAll(filepath.Join(o.DataDir, sub), 0o755); err != nil {
			return fmt.Errorf("engine: data directory: %w", err)
		}
	}
	start := time.Now()
	var rep RecoveryReport
	rb := newReplayBatch(e.st)
	res, err := snapshot.Load(fs, filepath.Join(o.DataDir, snapDir), func(en *wal.Entry) error {
		rb.add(en)
		return nil
	})
	rb.flush()
	if err != nil && !errors.Is(err, snapshot.ErrNoValidSnapshot) {
		return fmt.Errorf("engine: loading snapshot: %w", err)
	}
	if errors.Is(err, snapshot.ErrNoValidSnapshot) {
		// Every snapshot on disk is bad: refuse rather than start from a
		// WAL that no longer reaches back to the beginning.
		return fmt.Errorf("engine: no valid snapshot in %s although snapshots exist: %w (run 'fleetd repair' or restore a backup)", filepath.Join(o.DataDir, snapDir), err)
	}
	for _, s := range res.Skipped {
		d.logf.Warn("skipped a corrupt snapshot, falling back to an older one", "snapshot", fmt.Sprint(s))
		rep.SkippedSnaps = append(rep.SkippedSnaps, fmt.Sprint(s))
	}
	rep.SnapshotLSN, rep.SnapshotTrucks = res.LSN, res.Count
	d.lastSnapLSN, d.lastSnapInfo = res.LSN, res.Info

	d.log, err = wal.Open(fs, filepath.Join(o.DataDir, walDir), wal.Options{
		Fsync:    o.Fsync,
		StartLSN: res.LSN + 1,
		OnTailTruncated: func(t wal.TailTruncation) {
			d.logf.Warn("truncated a torn record at the end of the write-ahead log; only unacknowledged data can be there",
				"file", t.File, "offset", t.Offset, "dropped_bytes", t.Dropped, "reason", t.Reason)
		},
	})
	if err != nil {
		return fmt.Errorf("engine: opening the write-ahead log: %w", err)
	}
	if first := d.log.FirstLSN(); first > res.LSN+1 && d.log.NextLSN() > first {
		d.log.Close()
		return fmt.Errorf("engine: the write-ahead log starts at record %d but the snapshot covers only up to %d: records are missing", first, res.LSN)
	}
	if o.History != nil {
		if err := d.openHistory(o); err != nil {
			d.log.Close()
			return err
		}
	}
	err = d.log.Replay(d.replayFrom(res.LSN), func(lsn wal.LSN, typ byte, payload []byte) error {
		if typ != wal.TypeUpdates {
			return fmt.Errorf("record %d has unknown type %d", lsn, typ)
		}
		if err := d.replayHistory(lsn, payload); err != nil {
			return err
		}
		if lsn <= res.LSN {
			return nil // in the snapshot; read for history only
		}
		rep.ReplayedRecords++
		return wal.DecodeUpdates(payload, func(en *wal.Entry) {
			rep.ReplayedUpdates++
			rb.add(en)
		})
	})
	rb.flush()
	if err != nil {
		d.log.Close()
		if d.hist != nil {
			d.hist.Close()
		}
		return fmt.Errorf("engine: replaying the write-ahead log: %w", err)
	}
	d.bytesAtSnap = d.log.Stats().Bytes
	rep.Duration = time.Since(start)
	e.recovery = rep
	e.dur = d
	d.logf.Info("recovered", "trucks", e.st.Len(), "snapshot_lsn", rep.SnapshotLSN, "snapshot_trucks", rep.SnapshotTrucks,
		"replayed_records", rep.ReplayedRecords, "replayed_updates", rep.ReplayedUpdates, "took", rep.Duration.Round(time.Millisecond))
	return nil
}

// replayBatch gathers recovered entries into store batches, copying IDs
// into an arena because decoders reuse their memory.
type replayBatch struct {
	st    *store.Store
	ups   []store.Update
	arena []byte
}

const replayBatchSize = 16384

func newReplayBatch(st *store.Store) *replayBatch {
	return &replayBatch{st: st, ups: make([]store.Update, 0, replayBatchSize), arena: make([]byte, 0, replayBatchSize*16)}
}

func (b *replayBatch) add(en *wal.Entry) {
	if en.Kind != wal.KindUpdate {
		// Deletes are ordered with the updates around them.
		b.flush()
		b.st.DeleteIf(en.ID, en.TS)
		return
	}
	if len(b.arena)+len(en.ID) > cap(b.arena) {
		b.flush()
	}
	start := len(b.arena)
	b.arena = append(b.arena, en.ID...)
	u := en.Update()
	u.ID = b.arena[start:len(b.arena):len(b.arena)]
	b.ups = append(b.ups, u)
	if len(b.ups) == cap(b.ups) {
		b.flush()
	}
}

func (b *replayBatch) flush() {
	if len(b.ups) > 0 {
		b.st.Apply(b.ups)
	}
	b.ups, b.arena = b.ups[:0], b.arena[:0]
}

// logUpdates appends a batch to the WAL and waits until it is as durable
// as the fsync policy promises.
func (d *durable) logUpdates(batch []store.Update) error {
	sc := d.encPool.Get().(*encodeScratch)
	defer d.encPool.Put(sc)
	sc.buf = wal.AppendUpdatesFunc(sc.buf[:0], len(batch), func(i int, e *wal.Entry) {
		e.SetUpdate(&batch[i])
	})
	_, err := d.log.Append(sc.buf)
	return err
}

func (d *durable) logDeletes(kind wal.Kind, ids [][]byte, ts []uint32) error {
	sc := d.encPool.Get().(*encodeScratch)
	defer d.encPool.Put(sc)
	sc.entries = sc.entries[:0]
	for i := range ids {
		sc.entries = append(sc.entries, wal.Entry{ID: ids[i], TS: ts[i], Kind: kind})
	}
	sc.buf = wal.AppendUpdates(sc.buf[:0], sc.entries)
	clear(sc.entries)
	_, err := d.log.Append(sc.buf)
	return err
}

// snapshot writes the whole store to a new snapshot, then prunes old
// snapshots and the WAL segments no kept snapshot needs.
func (d *durable) snapshot(st *store.Store) (snapshot.Info, error) {
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	d.applyMu.Lock()
	lsn := d.log.NextLSN() - 1
	bytes := d.log.Stats().Bytes
	d.applyMu.Unlock()
	if lsn == d.lastSnapLSN && !d.lastSnapAt.IsZero() {
		return d.lastSnapInfo, nil // nothing new
	}
	// The records the snapshot covers reach the disk first (--fsync
	// interval, never): a snapshot ahead of the log after a power cut
	// would have the log number new records as if it covered them.
	if err := d.log.Sync(); err != nil {
		return snapshot.Info{}, fmt.Errorf("engine: snapshot: making the log durable first: %w", err)
	}
	start := time.Now()
	dir := filepath.Join(d.dir, snapDir)
	w, err := snapshot.Create(d.fs, dir, lsn)
	if err != nil {
		return snapshot.Info{}, fmt.Errorf("engine: snapshot: %w", err)
	}
	var werr error
	var en wal.Entry
	st.RangeUpdates(func(u *store.Update) bool {
		en.SetUpdate(u)
		werr = w.Add(&en)
		return werr == nil
	})
	if werr != nil {
		w.Abort()
		return snapshot.Info{}, fmt.Errorf("engine: snapshot: %w", werr)
	}
	info, err := w.Commit()
	if err != nil {
		return snapshot.Info{}, fmt.Errorf("engine: snapshot: %w", err)
	}
	d.lastSnapLSN, d.lastSnapAt, d.lastSnapInfo, d.bytesAtSnap = lsn, time.Now(), info, bytes
	pr, err := snapshot.Prune(d.fs, dir, 2)
	if err != nil {
		return info, fmt.Errorf("engine: pruning snapshots: %w", err)
	}
	if pr.KeepWALFrom > 0 {
		d.truncMu.Lock()
		d.keepWALFrom = pr.KeepWALFrom
		d.truncMu.Unlock()
		if err := d.truncateLog(); err != nil {
			return info, err
		}
	}
	d.logf.Info("snapshot written", "file", info.Name, "lsn", lsn, "trucks", info.Count, "bytes", info.Bytes, "took", time.Since(start).Round(time.Millisecond))
	return info, nil
}

func (d *durable) walBytesSinceSnapshot() uint64 { return d.log.Stats().Bytes - d.bytesAtSnap }

// abandon stops the engine as a crash would: no final snapshot. The log is
// closed so its files can be reopened in the same process (tests and
// benchmarks); what was appended is on disk per the fsync policy.
func (e *Engine) abandon() error {
	if e.closed.Swap(true) {
		return nil
	}
	close(e.stop)
	e.bg.Wait()
	if d := e.dur; d != nil {
		if d.hist != nil {
			d.hist.Wake()
			d.hist.Close()
		}
		return d.log.Close()
	}
	return nil
}

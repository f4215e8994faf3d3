package engine

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/wal"
)

// histDir is history's directory inside the data directory.
const histDir = "history"

// histIdleEvery is how often the history writer looks for a buffer to
// seal by age and for housekeeping when nothing fills a buffer.
const histIdleEvery = time.Second

// openHistory opens history in the data directory. Called by openDurable
// before the log is replayed, so that the replay feeds it.
func (d *durable) openHistory(o *Options) error {
	ho := *o.History
	ho.FS = d.fs
	if ho.Dir == "" {
		ho.Dir = filepath.Join(d.dir, histDir)
	}
	if ho.Logger == nil {
		ho.Logger = d.logf
	}
	if ho.Now == nil {
		ho.Now = o.Now
	}
	h, err := history.Open(ho)
	if err != nil {
		return fmt.Errorf("engine: opening history: %w", err)
	}
	d.hist = h
	d.histKick = make(chan struct{}, 1)
	return nil
}

// replayFrom is the first log record recovery must read: the store needs
// the records after the snapshot, history those after what it covers.
func (d *durable) replayFrom(snapLSN wal.LSN) wal.LSN {
	from := snapLSN + 1
	if d.hist != nil {
		from = min(from, wal.LSN(d.hist.Covered())+1)
		if first := d.log.FirstLSN(); from < first {
			// Written before history was on (or by a version without it):
			// those points are not in the log any more.
			d.logf.Warn("history lacks points older than the write-ahead log; it starts at the log's first record",
				"history_covered", d.hist.Covered(), "log_first", first)
			from = first
		}
	}
	return from
}

// replayHistory gives history a recovered record's updates, sealing and
// writing full buffers as it goes so that replay's memory stays bounded.
func (d *durable) replayHistory(lsn wal.LSN, payload []byte) error {
	if d.hist == nil || uint64(lsn) <= d.hist.Covered() {
		return nil
	}
	d.replayUps, d.replayIDs = d.replayUps[:0], d.replayIDs[:0]
	err := wal.DecodeUpdates(payload, func(en *wal.Entry) {
		if en.Kind == wal.KindUpdate {
			// The decoder reuses the ID's memory: keep offsets into an
			// arena, and slice it once it has stopped growing.
			u := en.Update()
			d.replayIDs = append(d.replayIDs, u.ID...)
			u.ID = nil
			d.replayUps = append(d.replayUps, u)
			d.replayLen = append(d.replayLen[:len(d.replayUps)-1], uint8(len(en.ID)))
		}
	})
	if err != nil {
		return err
	}
	off := 0
	for i := range d.replayUps {
		n := int(d.replayLen[i])
		d.replayUps[i].ID = d.replayIDs[off : off+n]
		off += n
	}
	d.hist.Add(d.replayUps)
	clear(d.replayUps)
	if d.hist.ShouldSeal() {
		if err := d.hist.Write(d.hist.Seal(uint64(lsn))); err != nil {
			return err
		}
		d.hist.Housekeep() // the replay of a long log must not pile up runs
	}
	return nil
}

// historyWriter seals and writes history's buffers until Close: when one
// is full, or old (history.Options.FlushEvery).
func (e *Engine) historyWriter() {
	d := e.dur
	t := time.NewTicker(histIdleEvery)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-d.hist.Full():
		case <-t.C:
			if !d.hist.ShouldSeal() {
				continue
			}
		}
		if err := e.flushHistory(); err != nil {
			e.opts.Logger.Error("writing history failed; its points stay in the write-ahead log and are retried", "err", err)
			select { // do not spin on a broken disk
			case <-e.stop:
				return
			case <-time.After(time.Second):
			}
			continue
		}
		select { // merges and the durable mark, off the flush path
		case d.histKick <- struct{}{}:
		default:
		}
	}
}

// historyKeeper merges and compacts history's runs, applies its retention,
// makes its covered mark durable and then lets the log go of what history
// and the snapshots both cover: after each write, and once every
// histIdleEvery. It runs beside historyWriter so that a merge never holds
// up a flush (and through it, ingest).
func (e *Engine) historyKeeper() {
	d := e.dur
	t := time.NewTicker(histIdleEvery)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-d.histKick:
		case <-t.C:
		}
		d.hist.Housekeep()
		if err := d.hist.SyncCovered(); err != nil {
			e.opts.Logger.Error("history's covered mark could not be made durable; the write-ahead log is kept until it is", "err", err)
			continue
		}
		if err := d.truncateLog(); err != nil {
			e.opts.Logger.Error("truncating the write-ahead log failed; it is retried", "err", err)
		}
	}
}

// flushHistory seals the active buffer at the log's last record — under
// the apply lock, so every record up to it has been added — and writes it.
func (e *Engine) flushHistory() error {
	d := e.dur
	d.histMu.Lock()
	defer d.histMu.Unlock()
	if d.pending == nil {
		d.applyMu.Lock()
		mark := d.log.NextLSN() - 1
		d.pending = d.hist.Seal(uint64(mark))
		d.applyMu.Unlock()
	}
	// As for a snapshot: the records a run says it covers are durable
	// before the run is (a no-op under --fsync always).
	if err := d.log.Sync(); err != nil {
		return fmt.Errorf("engine: making the log durable before history's runs: %w", err)
	}
	if err := d.hist.Write(d.pending); err != nil {
		return err // kept pending: retried, in order, before anything newer
	}
	d.pending = nil
	return nil
}

// truncateLog drops the log segments that neither a kept snapshot nor
// history needs.
func (d *durable) truncateLog() error {
	d.truncMu.Lock()
	defer d.truncMu.Unlock()
	keep := d.keepWALFrom
	if d.hist != nil {
		keep = min(keep, wal.LSN(d.hist.DurableCovered())+1)
	}
	if keep == 0 {
		return nil
	}
	if err := d.log.TruncateBefore(keep); err != nil {
		return fmt.Errorf("engine: truncating the write-ahead log: %w", err)
	}
	return nil
}

// History returns the engine's history, nil when it keeps none.
func (e *Engine) History() *history.History {
	if e.dur == nil {
		return nil
	}
	return e.dur.hist
}

// FlushHistory writes history's buffer now, so that a read of the written
// runs (History.Export) holds every update accepted before the call.
func (e *Engine) FlushHistory() error {
	if e.History() == nil {
		return nil
	}
	if e.closed.Load() {
		return ErrClosed
	}
	if err := e.flushHistory(); err != nil {
		return err
	}
	select {
	case e.dur.histKick <- struct{}{}:
	default:
	}
	return nil
}

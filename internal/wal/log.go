package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/vfs"
)

// Defaults for Options.
const (
	DefaultSegmentSize = 64 << 20
	DefaultMaxPending  = 64 << 20
)

// ErrClosed is returned by operations on a closed Log.
var ErrClosed = errors.New("wal: log closed")

// Options configure Open. The zero value is valid: FsyncAlways, 64 MiB
// segments.
type Options struct {
	// Fsync chooses when records become durable (default FsyncAlways).
	Fsync FsyncPolicy
	// SegmentSize: the active segment is rotated once a group commit
	// leaves it at or above this many bytes, so a segment exceeds it by
	// at most one group. Default DefaultSegmentSize.
	SegmentSize int64
	// MaxPending bounds the bytes of records waiting for the flusher;
	// beyond it Append blocks (back-pressure on a slow disk). A single
	// record larger than MaxPending is still accepted when nothing else
	// is pending. Default DefaultMaxPending.
	MaxPending int
	// StartLSN is the LSN of the first record of a log created in an
	// empty directory (default 1). Use it to continue numbering after a
	// snapshot when the WAL directory was lost. Ignored if segments exist.
	StartLSN LSN
	// OnTailTruncated, if set, is called by Open when it cuts a torn
	// tail off the last segment (log it: it names file, offset and bytes).
	OnTailTruncated func(TailTruncation)
}

func (o *Options) fill() error {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.StartLSN == 0 {
		o.StartLSN = 1
	}
	if o.SegmentSize < 0 || o.MaxPending < 0 {
		return fmt.Errorf("wal: negative SegmentSize %d or MaxPending %d", o.SegmentSize, o.MaxPending)
	}
	if o.Fsync.mode == modeInterval && o.Fsync.interval <= 0 {
		return fmt.Errorf("wal: fsync interval must be positive, got %v", o.Fsync.interval)
	}
	return nil
}

// group is one group commit: the records appended while the previous
// group was being written. buf and n are guarded by Log.mu while the
// group is pending; base and err are written by the flusher before done
// is closed and read by waiters after.
type group struct {
	buf  []byte // encoded records, back to back
	n    int    // records in buf
	done chan struct{}
	base LSN // LSN of the first record, valid if err == nil
	err  error
}

func newGroup(buf []byte) *group { return &group{buf: buf[:0], done: make(chan struct{})} }

// Log is an open write-ahead log. See doc.go for the concurrency contract.
type Log struct {
	fs   vfs.FS
	dir  string
	opts Options

	kick chan struct{}   // capacity 1: wakes the flusher when a group starts
	quit chan struct{}   // closed by Close
	sync chan chan error // Sync's requests to the flusher
	done chan struct{}   // closed when the flusher has exited

	mu struct {
		sync.Mutex
		cond    sync.Cond // on Mutex: signalled when pending is taken or the log closes
		pending *group    // records accepted but not yet taken by the flusher
		closed  bool
		segs    []segment // every segment, oldest first; the last is active
		next    LSN       // LSN the next written record gets
		written int64     // bytes of records written to the active segment
	}

	// Owned by the flusher goroutine once Open returns.
	f        vfs.File // active segment
	name     string   // its base name
	off      int64    // end of written records in f
	synced   int64    // end of durable records in f (off == synced in FsyncAlways)
	retained []byte   // bytes in [synced, off): acknowledged but unsynced (interval/never)
	broken   error    // set by a failed write/fsync until repair succeeds
	next     LSN      // LSN of the next record written
	spare    []byte   // recycled group buffer
	lastSync time.Time
	closeErr error // result of the final flush, returned by Close

	stats struct {
		records, groups, bytes, syncs           atomic.Uint64
		writeErrors, syncErrors, rotateFailures atomic.Uint64
	}
}

// Stats are cumulative counters and the current LSN range.
type Stats struct {
	FirstLSN, NextLSN LSN // records in the log are [FirstLSN, NextLSN)
	Segments          int
	Records           uint64 // records written since Open
	Groups            uint64 // group commits (one write each)
	Bytes             uint64 // bytes written, record headers included
	Syncs             uint64 // successful fsyncs of segment files
	WriteErrors       uint64 // failed writes (each failed a group)
	SyncErrors        uint64 // failed fsyncs
	RotateFailures    uint64 // rotations postponed by an error
}

// Open opens or creates the log in dir. It verifies every segment:
// a torn tail of the last segment is truncated (and reported through
// Options.OnTailTruncated); any other damage returns a *CorruptError,
// which Repair can cut away. The returned Log accepts appends at once.
func Open(fsys vfs.FS, dir string, opts Options) (*Log, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, ioErr("mkdir", dir, err)
	}
	if err := vfs.SyncParent(fsys, dir); err != nil {
		return nil, ioErr("fsync parent of", dir, err)
	}
	res, err := scanLog(fsys, dir)
	if err != nil {
		return nil, err
	}
	if res.bad != nil && !res.tail {
		return nil, res.bad
	}
	if err := removeStale(fsys, dir, res.stale); err != nil {
		return nil, err
	}
	if res.bad != nil {
		if err := truncateFile(fsys, res.bad.File, res.bad.Offset); err != nil {
			return nil, err
		}
		if opts.OnTailTruncated != nil {
			opts.OnTailTruncated(TailTruncation{
				File: res.bad.File, Offset: res.bad.Offset,
				Dropped: res.sizes[res.badSeg] - res.bad.Offset,
				Reason:  res.bad.Reason + "; " + res.tailWhy,
			})
		}
	}

	l := &Log{fs: fsys, dir: dir, opts: opts,
		kick: make(chan struct{}, 1), quit: make(chan struct{}), sync: make(chan chan error), done: make(chan struct{})}
	l.mu.cond.L = &l.mu.Mutex
	l.mu.pending = newGroup(nil)
	if k := len(res.segs); k > 0 {
		l.mu.segs = res.segs
		l.next = res.segs[k-1].first + LSN(res.counts[k-1])
		l.off = res.ends[k-1]
	} else {
		l.mu.segs = []segment{{first: opts.StartLSN, name: segmentName(opts.StartLSN)}}
		l.next = opts.StartLSN
	}
	l.name = l.mu.segs[len(l.mu.segs)-1].name
	path := filepath.Join(dir, l.name)
	f, err := fsys.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, ioErr("open", l.name, err)
	}
	// Whatever a crashed predecessor left in the page cache becomes
	// durable now, and so does the directory entry of a new segment.
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, ioErr("fsync", l.name, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		f.Close()
		return nil, ioErr("fsync dir", dir, err)
	}
	l.f, l.synced, l.lastSync = f, l.off, time.Now()
	l.mu.next, l.mu.written = l.next, l.off

	var tick <-chan time.Time
	var ticker *time.Ticker
	if opts.Fsync.mode == modeInterval {
		ticker = time.NewTicker(opts.Fsync.interval)
		tick = ticker.C
	}
	go l.run(tick, ticker)
	return l, nil
}

// Append appends payload as a record of type TypeUpdates (an update
// batch made by AppendUpdates) and returns its LSN. See AppendRecord.
func (l *Log) Append(payload []byte) (LSN, error) { return l.AppendRecord(TypeUpdates, payload) }

// AppendRecord appends one record and returns its LSN once the record is
// as durable as the fsync policy promises: after the fsync covering it
// (FsyncAlways) or after the write (FsyncInterval, FsyncNever). payload
// is copied before AppendRecord returns. typ must not be 0.
//
// Safe for concurrent use: concurrent calls are grouped into one write
// and one fsync. If the group's write or fsync fails, every call in the
// group returns the error and none of its records is in the log (after a
// crash, a failed record may still be found: an error means "not
// acknowledged", not "definitely absent"); later calls are retried
// normally. LSNs are assigned in the order records are written.
func (l *Log) AppendRecord(typ byte, payload []byte) (LSN, error) {
	if typ == 0 {
		return 0, errors.New("wal: record type 0 is reserved")
	}
	if len(payload) > MaxPayload {
		return 0, fmt.Errorf("wal: record of %d bytes exceeds MaxPayload (%d)", len(payload), MaxPayload)
	}
	var hdr [headerSize]byte
	recordHeader(&hdr, typ, payload) // checksum outside the lock
	size := headerSize + len(payload)

	l.mu.Lock()
	for !l.mu.closed && l.mu.pending.n > 0 && len(l.mu.pending.buf)+size > l.opts.MaxPending {
		l.mu.cond.Wait()
	}
	if l.mu.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	g := l.mu.pending
	idx := g.n
	g.n++
	g.buf = append(g.buf, hdr[:]...)
	g.buf = append(g.buf, payload...)
	l.mu.Unlock()
	if idx == 0 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	<-g.done
	if g.err != nil {
		return 0, g.err
	}
	return g.base + LSN(idx), nil
}

// AppendRecords appends payloads as records of type typ, in order, and
// returns the LSN of the last once all are as durable as AppendRecord's
// would be. They join the pending group together (one write and, under
// FsyncAlways, one fsync for all, where AppendRecord in a loop would wait
// for one fsync per record); what does not fit in MaxPending goes in the
// next group, and other callers' records may come between the groups. On an error no record is acknowledged (some may have been
// written: as for AppendRecord, an error means "not acknowledged").
func (l *Log) AppendRecords(typ byte, payloads [][]byte) (LSN, error) {
	if typ == 0 {
		return 0, errors.New("wal: record type 0 is reserved")
	}
	if len(payloads) == 0 {
		return 0, errors.New("wal: AppendRecords without records")
	}
	for _, p := range payloads {
		if len(p) > MaxPayload {
			return 0, fmt.Errorf("wal: record of %d bytes exceeds MaxPayload (%d)", len(p), MaxPayload)
		}
	}
	var (
		g    *group
		idx  int
		wait []*group // groups holding our records, in order
	)
	l.mu.Lock()
	for _, p := range payloads {
		var hdr [headerSize]byte
		recordHeader(&hdr, typ, p)
		size := headerSize + len(p)
		for !l.mu.closed && l.mu.pending.n > 0 && len(l.mu.pending.buf)+size > l.opts.MaxPending {
			l.mu.cond.Wait()
		}
		if l.mu.closed {
			break
		}
		g = l.mu.pending
		idx = g.n
		g.n++
		g.buf = append(g.buf, hdr[:]...)
		g.buf = append(g.buf, p...)
		if len(wait) == 0 || wait[len(wait)-1] != g {
			wait = append(wait, g)
		}
		if idx == 0 {
			select {
			case l.kick <- struct{}{}:
			default:
			}
		}
	}
	closed := l.mu.closed
	l.mu.Unlock()
	var err error
	for _, w := range wait {
		<-w.done
		if err == nil && w.err != nil {
			err = w.err
		}
	}
	if err == nil && closed {
		err = ErrClosed
	}
	if err != nil {
		return 0, err
	}
	return g.base + LSN(idx), nil
}

// Sync makes every record appended so far durable, in every fsync mode,
// and returns once it is (at once under FsyncAlways, where it already
// is). A mark that says "covered up to LSN n" (a snapshot, history's
// runs) must not reach disk before records up to n have: after a power
// cut, the log would end below the mark and number new records as if
// the mark covered them.
func (l *Log) Sync() error {
	ch := make(chan error, 1)
	select {
	case l.sync <- ch:
	case <-l.done:
		return ErrClosed
	}
	return <-ch
}

// Close writes and fsyncs everything pending (in every fsync mode),
// stops the flusher and closes the active segment. Appends waiting for
// the flusher complete normally; later ones fail with ErrClosed. The
// error is that of the final write, fsync or close.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.mu.closed = true
	l.mu.cond.Broadcast()
	l.mu.Unlock()
	close(l.quit)
	<-l.done
	return l.closeErr
}

// run is the flusher goroutine.
func (l *Log) run(tick <-chan time.Time, ticker *time.Ticker) {
	defer close(l.done)
	if ticker != nil {
		defer ticker.Stop()
	}
	interval := l.opts.Fsync.interval
	for {
		if g := l.take(); g != nil {
			l.flush(g)
			// Also fsync once maxRetained bytes wait for one: retained
			// holds them until then (for repair), and its capacity stayed
			// in RSS (issue 17: interval=1s held 60 B/truck more).
			if l.off > l.synced && (interval > 0 && time.Since(l.lastSync) >= interval || len(l.retained) >= maxRetained) {
				l.syncActive()
			}
			select { // a Sync is not kept waiting by a busy log
			case ch := <-l.sync:
				ch <- l.syncActive()
			default:
			}
			continue
		}
		select {
		case ch := <-l.sync:
			ch <- l.syncActive()
		case <-l.kick:
		case <-tick:
			l.syncActive()
		case <-l.quit:
			for g := l.take(); g != nil; g = l.take() {
				l.flush(g)
			}
			err := l.syncActive()
			if cerr := l.f.Close(); err == nil && cerr != nil {
				err = ioErr("close", l.name, cerr)
			}
			l.closeErr = err
			return
		}
	}
}

// take detaches the pending group, or returns nil if it is empty.
func (l *Log) take() *group {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.mu.pending
	if g.n == 0 {
		return nil
	}
	l.mu.pending = newGroup(l.spare)
	l.spare = nil
	l.mu.cond.Broadcast()
	return g
}

// flush writes one group (and fsyncs it under FsyncAlways), then
// releases its waiters.
func (l *Log) flush(g *group) {
	defer func() { l.spare, g.buf = g.buf[:0], nil }()
	if l.broken != nil {
		if err := l.repair(); err != nil {
			l.release(g, err)
			return
		}
	}
	if _, err := l.f.WriteAt(g.buf, l.off); err != nil {
		l.stats.writeErrors.Add(1)
		l.fail(g, ioErr("write", l.name, err))
		return
	}
	end := l.off + int64(len(g.buf))
	if l.opts.Fsync.mode == modeAlways {
		if err := l.f.Sync(); err != nil {
			l.stats.syncErrors.Add(1)
			l.fail(g, ioErr("fsync", l.name, err))
			return
		}
		l.synced = end
		l.stats.syncs.Add(1)
	} else {
		l.retained = append(l.retained, g.buf...)
	}
	l.off = end
	g.base = l.next
	l.next += LSN(g.n)
	l.mu.Lock()
	l.mu.next, l.mu.written = l.next, l.off
	l.mu.Unlock()
	l.stats.records.Add(uint64(g.n))
	l.stats.groups.Add(1)
	l.stats.bytes.Add(uint64(len(g.buf)))
	l.release(g, nil)
	if l.off >= l.opts.SegmentSize {
		l.rotate()
	}
}

func (l *Log) release(g *group, err error) {
	g.err = err
	close(g.done)
}

// fail handles a failed write or fsync of group g: the log is cut back to
// its last good state (repair) before the group's waiters get err. If the
// repair fails too, the log stays broken and every later flush retries
// the repair first, failing its group until the repair succeeds.
func (l *Log) fail(g *group, err error) {
	l.broken = err
	l.repair()
	l.release(g, err)
}

// repair truncates the active segment to its last durable offset,
// rewrites the acknowledged-but-unsynced bytes (interval/never modes) and
// fsyncs. After a failed fsync the kernel may have dropped dirty pages,
// so nothing written since the last good fsync is trusted to be on disk.
func (l *Log) repair() error {
	if err := l.f.Truncate(l.synced); err != nil {
		return ioErr("truncate", l.name, err)
	}
	if len(l.retained) > 0 {
		if _, err := l.f.WriteAt(l.retained, l.synced); err != nil {
			l.stats.writeErrors.Add(1)
			return ioErr("write", l.name, err)
		}
	}
	if err := l.f.Sync(); err != nil {
		l.stats.syncErrors.Add(1)
		return ioErr("fsync", l.name, err)
	}
	l.stats.syncs.Add(1)
	l.synced += int64(len(l.retained))
	l.off = l.synced
	l.retained = shrinkRetained(l.retained)
	l.broken = nil
	l.lastSync = time.Now()
	return nil
}

// syncActive makes everything written to the active segment durable
// (interval/never modes, rotation, Close).
func (l *Log) syncActive() error {
	if l.broken != nil {
		return l.repair()
	}
	if l.off == l.synced {
		return nil
	}
	if err := l.f.Sync(); err != nil {
		l.stats.syncErrors.Add(1)
		l.broken = ioErr("fsync", l.name, err)
		return l.repair()
	}
	l.stats.syncs.Add(1)
	l.synced = l.off
	l.retained = shrinkRetained(l.retained)
	l.lastSync = time.Now()
	return nil
}

// maxRetained bounds the acknowledged-but-unsynced bytes held for repair
// (interval and never modes): past it the flusher fsyncs early. At 4 MiB
// (up to 8 allocated) --fsync=interval=1s --history=false held 67.7
// B/truck of RSS over empty after BenchmarkRESPIngest's three passes at
// 1M trucks, 4 more than always; at 1 MiB 63.5, for the same 2.6-2.9M
// updates/s (an fsync every ~75,000 updates at 14 B each).
const maxRetained = 1 << 20

// shrinkRetained empties retained after an fsync, dropping a buffer that a
// large group grew past twice the bound.
func shrinkRetained(b []byte) []byte {
	if cap(b) > 2*maxRetained {
		return nil
	}
	return b[:0]
}

// rotate starts a new segment named after the next LSN. On any error the
// current segment stays active and rotation is retried after the next
// group; the durability of written records never depends on it.
func (l *Log) rotate() {
	if l.syncActive() != nil {
		l.stats.rotateFailures.Add(1)
		return
	}
	name := segmentName(l.next)
	path := filepath.Join(l.dir, name)
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		l.stats.rotateFailures.Add(1)
		return
	}
	// The new name must be durable before a record in it is acknowledged.
	if err := l.fs.SyncDir(l.dir); err != nil {
		l.stats.rotateFailures.Add(1)
		f.Close()
		l.fs.Remove(path) // if this fails too, Open discards the empty file
		return
	}
	old := l.f
	l.f, l.name, l.off, l.synced = f, name, 0, 0
	old.Close() // its records are durable: a close error loses nothing
	l.mu.Lock()
	l.mu.segs = append(l.mu.segs, segment{first: l.next, name: name})
	l.mu.written = 0
	l.mu.Unlock()
}

// Stats returns counters and the LSN range. Safe for concurrent use.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	s := Stats{FirstLSN: l.mu.segs[0].first, NextLSN: l.mu.next, Segments: len(l.mu.segs)}
	l.mu.Unlock()
	s.Records = l.stats.records.Load()
	s.Groups = l.stats.groups.Load()
	s.Bytes = l.stats.bytes.Load()
	s.Syncs = l.stats.syncs.Load()
	s.WriteErrors = l.stats.writeErrors.Load()
	s.SyncErrors = l.stats.syncErrors.Load()
	s.RotateFailures = l.stats.rotateFailures.Load()
	return s
}

// NextLSN returns the LSN the next appended record will get; every LSN
// below it has been written (and acknowledged).
func (l *Log) NextLSN() LSN {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.next
}

// FirstLSN returns the LSN of the oldest record still in the log (equal
// to NextLSN when the log is empty).
func (l *Log) FirstLSN() LSN {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.segs[0].first
}

// Dir returns the directory of the log.
func (l *Log) Dir() string { return l.dir }

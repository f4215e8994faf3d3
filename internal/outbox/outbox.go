package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/vfs"
)

// Defaults of Options.
const (
	DefaultMaxBytes     = 1 << 30
	DefaultSegmentBytes = 64 << 20
	DefaultMaxStaged    = 4 << 20
	DefaultWindow       = 4096
	// MaxPayload bounds one event.
	MaxPayload = 1 << 20
)

const (
	recHeader   = 32 // crc u32 | len u32 | seq u64 | key u64 | time i64
	segSuffix   = ".seg"
	cursorName  = "cursor"
	cursorMagic = "FLOBXCUR"
	cursorSize  = 20
)

// checkpointEvery is how often the cursor is saved and segments below it
// deleted (a variable for tests that checkpoint by hand).
var checkpointEvery = time.Second

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by Next once the outbox is closed.
var ErrClosed = errors.New("outbox: closed")

// ErrNotDurable is returned by Sync when a write or fsync failed while it
// waited: the events are kept in memory and retried, not yet on disk.
var ErrNotDurable = errors.New("outbox: events not yet durable (the disk failed)")

// Options configures an Outbox.
type Options struct {
	FS  vfs.FS // default vfs.Default
	Dir string // required
	// MaxBytes bounds the segments on disk plus what waits for the
	// writer (default DefaultMaxBytes); Append sheds beyond it.
	MaxBytes int64
	// SegmentBytes is the size past which a new segment starts.
	SegmentBytes int64
	// MaxStaged bounds the bytes appended and not yet written.
	MaxStaged int
	// Window bounds the events handed out by Next and not yet Done.
	Window int
	Logger *slog.Logger
}

// Record is one event as Next hands it out.
type Record struct {
	Seq     uint64
	Key     uint64
	Time    int64  // Unix nanoseconds of the Append
	Payload []byte // the caller's own copy
}

// Stats are an outbox's counters.
type Stats struct {
	Appended    int64     `json:"appended"`     // since Open
	Shed        int64     `json:"shed"`         // refused at MaxBytes or MaxStaged
	Depth       int64     `json:"depth"`        // appended (now or before a restart) and not Done
	DiskBytes   int64     `json:"disk_bytes"`   // in segments
	WriteErrors int64     `json:"write_errors"` // failed writes or fsyncs (retried)
	Corrupt     int64     `json:"corrupt"`      // segments cut short by a bad record
	Oldest      time.Time `json:"-"`            // Append time of the oldest not Done (zero: none handed out)
}

type segment struct {
	first uint64
	size  int64 // bytes durable (fsynced) in it
}

type slot struct {
	done bool
	time int64
}

// Outbox is a durable FIFO of events; see the package documentation.
type Outbox struct {
	opts            Options
	fs              vfs.FS
	log             *slog.Logger
	shedLog, errLog gateway.Limiter

	wake chan struct{} // cap 1: something was appended
	quit chan struct{}
	done chan struct{} // the writer ended

	// mu guards the staging buffer (Append's side).
	mu struct {
		sync.Mutex
		staged []byte
		next   uint64 // Seq of the next Append
		closed bool
	}
	pendingBytes atomic.Int64 // bytes the writer holds, not yet durable
	diskBytes    atomic.Int64
	// durable mirrors smu.durable for Sync's lock-free fast path.
	durable atomic.Uint64
	// flushFails counts failed writes of events (not of the cursor): a
	// Sync that sees it move gives up.
	flushFails atomic.Int64

	// smu guards the positions shared by the writer, Next and Done.
	smu struct {
		sync.Mutex
		changed  chan struct{} // closed and replaced on every change
		segs     []segment
		durable  uint64 // Seq below which records are durable
		cursor   uint64 // Seq below which records are Done
		readNext uint64 // Seq Next hands out next
		ring     []slot // by Seq % Window, for cursor ≤ Seq < readNext
		saved    uint64 // cursor last checkpointed
		closed   bool
	}

	// w is the writer goroutine's.
	w struct {
		f       vfs.File
		size    int64
		pending []byte // records taken from staged, not yet durable
		pendEnd uint64 // Seq after the last record of pending
	}

	// r is the consumer's (Next).
	r struct {
		f      vfs.File
		first  uint64 // the open segment's first Seq
		off    int64  // offset of the record Seq readNext in it
		buf    []byte // file bytes from bufOff
		bufOff int64
	}

	appended, shed, writeErrors, corrupt atomic.Int64
}

// Open opens (creating if needed) the outbox in o.Dir, recovering what a
// crash left there, and starts its writer.
func Open(o Options) (*Outbox, error) {
	if o.Dir == "" {
		return nil, errors.New("outbox: Options.Dir is empty")
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxStaged <= 0 {
		o.MaxStaged = DefaultMaxStaged
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	x := &Outbox{opts: o, fs: o.FS, log: o.Logger.With("outbox", o.Dir),
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	x.shedLog.Log, x.errLog.Log = x.log, x.log
	x.errLog.Every = 10 * time.Second
	if err := x.recover(); err != nil {
		return nil, err
	}
	x.smu.changed = make(chan struct{})
	x.smu.ring = make([]slot, o.Window)
	go x.writer()
	return x, nil
}

func segName(first uint64) string { return fmt.Sprintf("%016x%s", first, segSuffix) }

// recover reads the directory: segments, the last one's valid end, the
// cursor.
func (x *Outbox) recover() error {
	dir := x.opts.Dir
	if err := x.fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := vfs.SyncParent(x.fs, dir); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	names, err := x.fs.List(dir)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	var segs []segment
	for _, n := range names {
		hex, ok := strings.CutSuffix(n, segSuffix)
		if !ok {
			if n == cursorName+".tmp" {
				_ = x.fs.Remove(filepath.Join(dir, n))
			}
			continue
		}
		first, err := strconv.ParseUint(hex, 16, 64)
		if err != nil || len(hex) != 16 {
			continue
		}
		st, err := x.fs.Stat(filepath.Join(dir, n))
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		segs = append(segs, segment{first: first, size: st.Size()})
	}
	next := uint64(0)
	cursor, haveCursor := x.readCursor()
	for len(segs) > 0 {
		last := &segs[len(segs)-1]
		n, size, err := x.scanTail(*last)
		if err != nil {
			return err
		}
		if n > 0 {
			last.size = size
			next = last.first + n
			break
		}
		// An empty segment (a crash right after creating it) would be
		// created again under the same name: drop it.
		if err := x.fs.Remove(filepath.Join(dir, segName(last.first))); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		segs = segs[:len(segs)-1]
	}
	if len(segs) == 0 && haveCursor {
		next = cursor
	}
	if !haveCursor || len(segs) > 0 && cursor < segs[0].first {
		cursor = next
		if len(segs) > 0 {
			cursor = segs[0].first
		}
	}
	cursor = min(cursor, next)
	var disk int64
	for _, s := range segs {
		disk += s.size
	}
	x.mu.next = next
	x.w.pendEnd = next
	x.diskBytes.Store(disk)
	x.smu.segs, x.smu.durable, x.smu.cursor, x.smu.readNext, x.smu.saved = segs, next, cursor, cursor, cursor
	x.durable.Store(next)
	x.dropDone()
	return nil
}

// scanTail finds the valid end of segment s: the number of whole records
// and their size. A torn tail is cut off.
func (x *Outbox) scanTail(s segment) (n uint64, size int64, err error) {
	path := filepath.Join(x.opts.Dir, segName(s.first))
	data, err := vfs.ReadFile(x.fs, path)
	if err != nil {
		return 0, 0, fmt.Errorf("outbox: %w", err)
	}
	off := 0
	for {
		rest := data[off:]
		if len(rest) < recHeader {
			break
		}
		l := binary.LittleEndian.Uint32(rest[4:])
		if l > MaxPayload || len(rest)-recHeader < int(l) {
			break
		}
		rec := rest[:recHeader+int(l)]
		if crc32.Checksum(rec[4:], crcTable) != binary.LittleEndian.Uint32(rec) ||
			binary.LittleEndian.Uint64(rec[8:]) != s.first+n {
			break
		}
		off += len(rec)
		n++
	}
	if off < len(data) {
		x.log.Warn("outbox: cutting off a torn tail", "segment", path, "offset", off, "bytes", len(data)-off)
		f, err := x.fs.OpenFile(path, os.O_RDWR, 0o644)
		if err != nil {
			return 0, 0, fmt.Errorf("outbox: %w", err)
		}
		err = f.Truncate(int64(off))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, 0, fmt.Errorf("outbox: cutting off the torn tail of %s: %w", path, err)
		}
	}
	return n, int64(off), nil
}

func (x *Outbox) readCursor() (uint64, bool) {
	b, err := vfs.ReadFile(x.fs, filepath.Join(x.opts.Dir, cursorName))
	if err != nil || len(b) != cursorSize || string(b[:8]) != cursorMagic ||
		crc32.Checksum(b[:16], crcTable) != binary.LittleEndian.Uint32(b[16:]) {
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			x.log.Warn("outbox: unreadable cursor, delivering everything on disk again", "err", err)
		}
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[8:]), true
}

// appendRecord frames one record.
func appendRecord(dst []byte, seq, key uint64, t int64, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, recHeader)...)
	h := dst[start:]
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:], seq)
	binary.LittleEndian.PutUint64(h[16:], key)
	binary.LittleEndian.PutUint64(h[24:], uint64(t))
	dst = append(dst, payload...)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], crcTable))
	return dst
}

// Append queues one event under key for writing and returns its Seq; ok
// is false when it was shed (see the package documentation). It never
// waits for I/O.
func (x *Outbox) Append(key uint64, payload []byte) (seq uint64, ok bool) {
	if len(payload) > MaxPayload {
		x.shed.Add(1)
		x.shedLog.Warn("outbox: event larger than MaxPayload shed", "bytes", len(payload))
		return 0, false
	}
	need := int64(recHeader + len(payload))
	now := time.Now().UnixNano()
	x.mu.Lock()
	staged := int64(len(x.mu.staged)) + x.pendingBytes.Load()
	if x.mu.closed || staged+need > int64(x.opts.MaxStaged) || x.diskBytes.Load()+staged+need > x.opts.MaxBytes {
		closed := x.mu.closed
		x.mu.Unlock()
		x.shed.Add(1)
		if !closed {
			x.shedLog.Warn("outbox: full, shedding events", "disk_bytes", x.diskBytes.Load(),
				"max_bytes", x.opts.MaxBytes, "staged_bytes", staged, "shed_total", x.shed.Load())
		}
		return 0, false
	}
	seq = x.mu.next
	x.mu.next++
	x.mu.staged = appendRecord(x.mu.staged, seq, key, now, payload)
	x.mu.Unlock()
	x.appended.Add(1)
	select {
	case x.wake <- struct{}{}:
	default:
	}
	return seq, true
}

// Sync waits until every event appended before it was called is durable
// (written and fsynced by the writer; group commit: the callers of Sync
// and Append of one moment share one fsync). It never waits for the
// consumer. Nothing appended, or everything already durable: one mutex
// and one atomic load. It returns ErrNotDurable when a write or fsync
// fails while it waits (the writer keeps retrying; the events stay in
// memory) and ErrClosed when the outbox closed first without writing
// them.
func (x *Outbox) Sync() error {
	x.mu.Lock()
	target := x.mu.next
	x.mu.Unlock()
	if x.durable.Load() >= target {
		return nil
	}
	fails0 := x.flushFails.Load()
	for {
		x.smu.Lock()
		durable, closed, ch := x.smu.durable, x.smu.closed, x.smu.changed
		x.smu.Unlock()
		switch {
		case durable >= target:
			return nil
		case closed:
			return ErrClosed
		case x.flushFails.Load() != fails0:
			return ErrNotDurable
		}
		<-ch
	}
}

// writer writes and fsyncs what was appended, and checkpoints.
func (x *Outbox) writer() {
	defer close(x.done)
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	backoff := time.Duration(0)
	for {
		var retry <-chan time.Time
		if backoff > 0 {
			retry = time.After(backoff)
		}
		select {
		case <-x.wake:
		case <-retry:
		case <-tick.C:
			x.checkpoint()
		case <-x.quit:
			x.flush()
			x.checkpoint()
			return
		}
		if x.flush() {
			backoff = 0
		} else {
			backoff = min(max(2*backoff, 50*time.Millisecond), 5*time.Second)
		}
	}
}

// flush moves the staged records to the writer's pending buffer and
// writes and fsyncs them; false if that failed (they stay pending).
func (x *Outbox) flush() bool {
	x.mu.Lock()
	if n := len(x.mu.staged); n > 0 {
		if len(x.w.pending) == 0 {
			// The common case: hand the buffer over, no copy (two
			// buffers in all, each at most MaxStaged).
			x.w.pending, x.mu.staged = x.mu.staged, x.w.pending[:0]
		} else { // a failed write is being retried: keep the order
			x.w.pending = append(x.w.pending, x.mu.staged...)
			x.mu.staged = x.mu.staged[:0]
		}
		x.pendingBytes.Add(int64(n))
		x.w.pendEnd = x.mu.next
	}
	x.mu.Unlock()
	if len(x.w.pending) == 0 {
		return true
	}
	if err := x.writePending(); err != nil {
		x.writeErrors.Add(1)
		x.flushFails.Add(1)
		x.errLog.Warn("outbox: write failed, retrying", "err", err, "pending_bytes", len(x.w.pending))
		x.smu.Lock()
		x.broadcastLocked() // wake Sync's waiters: ErrNotDurable
		x.smu.Unlock()
		return false
	}
	n := int64(len(x.w.pending))
	x.w.pending = x.w.pending[:0]
	x.pendingBytes.Add(-n)
	x.diskBytes.Add(n)
	x.smu.Lock()
	x.smu.segs[len(x.smu.segs)-1].size = x.w.size
	x.smu.durable = x.w.pendEnd
	x.durable.Store(x.w.pendEnd)
	x.broadcastLocked()
	x.smu.Unlock()
	return true
}

// writePending writes the pending records at the end of the current
// segment (starting one when there is none or it is full) and fsyncs.
// On failure the segment is cut back to its durable size.
func (x *Outbox) writePending() error {
	if x.w.f == nil || x.w.size >= x.opts.SegmentBytes {
		first := binary.LittleEndian.Uint64(x.w.pending[8:])
		f, err := x.fs.Create(filepath.Join(x.opts.Dir, segName(first)))
		if err != nil {
			return err
		}
		if err := x.fs.SyncDir(x.opts.Dir); err != nil {
			f.Close()
			return err
		}
		if x.w.f != nil {
			_ = x.w.f.Close()
		}
		x.w.f, x.w.size = f, 0
		x.smu.Lock()
		x.smu.segs = append(x.smu.segs, segment{first: first})
		x.smu.Unlock()
	}
	_, err := x.w.f.WriteAt(x.w.pending, x.w.size)
	if err == nil {
		err = x.w.f.Sync()
	}
	if err != nil {
		_ = x.w.f.Truncate(x.w.size)
		return err
	}
	x.w.size += int64(len(x.w.pending))
	return nil
}

func (x *Outbox) broadcastLocked() {
	close(x.smu.changed)
	x.smu.changed = make(chan struct{})
}

// checkpoint saves the cursor when it moved and deletes the segments
// wholly below it.
func (x *Outbox) checkpoint() {
	x.smu.Lock()
	cursor, saved := x.smu.cursor, x.smu.saved
	x.smu.Unlock()
	if cursor == saved {
		return
	}
	var b [cursorSize]byte
	copy(b[:], cursorMagic)
	binary.LittleEndian.PutUint64(b[8:], cursor)
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], crcTable))
	tmp, path := filepath.Join(x.opts.Dir, cursorName+".tmp"), filepath.Join(x.opts.Dir, cursorName)
	err := vfs.WriteFile(x.fs, tmp, b[:])
	if err == nil {
		err = x.fs.Rename(tmp, path)
	}
	if err != nil {
		x.writeErrors.Add(1)
		x.errLog.Warn("outbox: saving the cursor failed", "err", err)
		return
	}
	x.smu.Lock()
	x.smu.saved = cursor
	x.smu.Unlock()
	x.dropDone()
	if err := x.fs.SyncDir(x.opts.Dir); err != nil {
		x.errLog.Warn("outbox: syncing the directory failed", "err", err)
	}
}

// dropDone deletes the segments whose records are all below the saved
// cursor (never the last segment).
func (x *Outbox) dropDone() {
	for {
		x.smu.Lock()
		if len(x.smu.segs) < 2 || x.smu.segs[1].first > x.smu.saved {
			x.smu.Unlock()
			return
		}
		s := x.smu.segs[0]
		x.smu.segs = x.smu.segs[1:]
		x.smu.Unlock()
		x.diskBytes.Add(-s.size)
		if err := x.fs.Remove(filepath.Join(x.opts.Dir, segName(s.first))); err != nil && !errors.Is(err, os.ErrNotExist) {
			x.errLog.Warn("outbox: removing a delivered segment failed", "err", err)
		}
	}
}

// Next returns the next durable event, waiting for one (and for room in
// the window) until ctx is done or the outbox closed.
func (x *Outbox) Next(ctx context.Context) (Record, error) { return x.next(ctx, true) }

// NextBatch appends to dst the next durable events, at most max: it waits
// for the first as Next does, then takes only those ready at once.
func (x *Outbox) NextBatch(ctx context.Context, dst []Record, max int) ([]Record, error) {
	r, err := x.next(ctx, true)
	if err != nil {
		return dst, err
	}
	dst = append(dst, r)
	for len(dst) < max {
		r, err := x.next(ctx, false)
		if err != nil {
			break // none ready now (a skipped segment is logged where it is skipped)
		}
		dst = append(dst, r)
	}
	return dst, nil
}

// errNotReady is next's answer, without waiting, when no event is ready.
var errNotReady = errors.New("outbox: no event ready")

func (x *Outbox) next(ctx context.Context, wait bool) (Record, error) {
	for {
		x.smu.Lock()
		if x.smu.closed {
			x.smu.Unlock()
			return Record{}, ErrClosed
		}
		seq := x.smu.readNext
		if seq < x.smu.durable && seq-x.smu.cursor < uint64(len(x.smu.ring)) {
			// Locate the segment holding seq and its durable size.
			i := len(x.smu.segs) - 1
			for i > 0 && x.smu.segs[i].first > seq {
				i--
			}
			s := x.smu.segs[i]
			var nextFirst uint64 = x.smu.durable
			if i+1 < len(x.smu.segs) {
				nextFirst = x.smu.segs[i+1].first
			}
			x.smu.Unlock()
			rec, err := x.read(s, seq, nextFirst)
			if err != nil {
				return Record{}, err
			}
			x.smu.Lock()
			x.smu.ring[rec.Seq%uint64(len(x.smu.ring))] = slot{time: rec.Time}
			x.smu.readNext = rec.Seq + 1
			x.smu.Unlock()
			return rec, nil
		}
		ch := x.smu.changed
		x.smu.Unlock()
		if !wait {
			return Record{}, errNotReady
		}
		select {
		case <-ctx.Done():
			return Record{}, ctx.Err()
		case <-ch:
		}
	}
}

// read reads record seq from segment s (durable up to s.size); nextFirst
// is the first Seq after the segment. A bad record skips the rest of the
// segment: its Seqs are marked done and the next record is returned.
func (x *Outbox) read(s segment, seq, nextFirst uint64) (Record, error) {
	if x.r.f == nil || x.r.first != s.first {
		if x.r.f != nil {
			_ = x.r.f.Close()
			x.r.f = nil
		}
		f, err := x.fs.Open(filepath.Join(x.opts.Dir, segName(s.first)))
		if err != nil {
			return Record{}, fmt.Errorf("outbox: %w", err)
		}
		x.r.f, x.r.first, x.r.off, x.r.buf, x.r.bufOff = f, s.first, 0, x.r.buf[:0], 0
		// Skip to seq (at Open: the cursor may be inside the segment).
		for cur := s.first; cur < seq; cur++ {
			h, err := x.bytesAt(x.r.off, recHeader, s.size)
			if err != nil {
				return x.skipSegment(s, seq, nextFirst, err)
			}
			x.r.off += int64(recHeader) + int64(binary.LittleEndian.Uint32(h[4:]))
		}
	}
	h, err := x.bytesAt(x.r.off, recHeader, s.size)
	if err != nil {
		return x.skipSegment(s, seq, nextFirst, err)
	}
	l := binary.LittleEndian.Uint32(h[4:])
	if l > MaxPayload {
		return x.skipSegment(s, seq, nextFirst, fmt.Errorf("record length %d", l))
	}
	rec, err := x.bytesAt(x.r.off, recHeader+int(l), s.size)
	if err != nil {
		return x.skipSegment(s, seq, nextFirst, err)
	}
	if crc32.Checksum(rec[4:], crcTable) != binary.LittleEndian.Uint32(rec) {
		return x.skipSegment(s, seq, nextFirst, errors.New("checksum mismatch"))
	}
	if got := binary.LittleEndian.Uint64(rec[8:]); got != seq {
		return x.skipSegment(s, seq, nextFirst, fmt.Errorf("seq %d where %d belongs", got, seq))
	}
	x.r.off += int64(len(rec))
	return Record{
		Seq:     seq,
		Key:     binary.LittleEndian.Uint64(rec[16:]),
		Time:    int64(binary.LittleEndian.Uint64(rec[24:])),
		Payload: append([]byte(nil), rec[recHeader:]...),
	}, nil
}

// bytesAt returns n bytes of the reader's segment at off (below limit),
// reading ahead in chunks.
func (x *Outbox) bytesAt(off int64, n int, limit int64) ([]byte, error) {
	if off+int64(n) > limit {
		return nil, fmt.Errorf("record at offset %d runs past the segment's end %d", off, limit)
	}
	if off >= x.r.bufOff && off+int64(n) <= x.r.bufOff+int64(len(x.r.buf)) {
		return x.r.buf[off-x.r.bufOff : off-x.r.bufOff+int64(n)], nil
	}
	want := min(max(int64(n), 256<<10), limit-off)
	if int64(cap(x.r.buf)) < want {
		x.r.buf = make([]byte, want)
	}
	buf := x.r.buf[:want]
	m, err := x.r.f.ReadAt(buf, off)
	if m < n {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	x.r.buf, x.r.bufOff = buf[:m], off
	return buf[:n], nil
}

// skipSegment gives up on the rest of segment s after a bad record at
// seq: its Seqs up to nextFirst are done, and reading goes on after it.
func (x *Outbox) skipSegment(s segment, seq, nextFirst uint64, cause error) (Record, error) {
	x.corrupt.Add(1)
	x.log.Error("outbox: bad record, skipping the rest of its segment", "segment", segName(s.first),
		"seq", seq, "lost", nextFirst-seq, "err", cause)
	_ = x.r.f.Close()
	x.r.f = nil
	x.smu.Lock()
	if nextFirst <= seq || nextFirst > x.smu.durable {
		x.smu.Unlock()
		return Record{}, fmt.Errorf("outbox: segment %s: %w", segName(s.first), cause)
	}
	for q := seq; q < nextFirst; q++ {
		x.smu.ring[q%uint64(len(x.smu.ring))] = slot{done: true}
	}
	x.smu.readNext = nextFirst
	x.advanceLocked()
	x.smu.Unlock()
	return Record{}, fmt.Errorf("outbox: segment %s: %w (skipped)", segName(s.first), cause)
}

// Done marks record seq (handed out by Next) delivered or given up.
func (x *Outbox) Done(seq uint64) {
	x.smu.Lock()
	defer x.smu.Unlock()
	if seq < x.smu.cursor || seq >= x.smu.readNext {
		panic(fmt.Sprintf("BUG: outbox: Done(%d) outside the handed-out range [%d, %d)", seq, x.smu.cursor, x.smu.readNext))
	}
	x.smu.ring[seq%uint64(len(x.smu.ring))].done = true
	x.advanceLocked()
}

func (x *Outbox) advanceLocked() {
	w := uint64(len(x.smu.ring))
	moved := false
	for x.smu.cursor < x.smu.readNext && x.smu.ring[x.smu.cursor%w].done {
		x.smu.ring[x.smu.cursor%w] = slot{}
		x.smu.cursor++
		moved = true
	}
	if moved {
		x.broadcastLocked()
	}
}

// Stats returns the outbox's counters.
func (x *Outbox) Stats() Stats {
	x.mu.Lock()
	next := x.mu.next
	x.mu.Unlock()
	s := Stats{Appended: x.appended.Load(), Shed: x.shed.Load(), DiskBytes: x.diskBytes.Load(),
		WriteErrors: x.writeErrors.Load(), Corrupt: x.corrupt.Load()}
	x.smu.Lock()
	s.Depth = int64(next - x.smu.cursor)
	if x.smu.cursor < x.smu.readNext {
		s.Oldest = time.Unix(0, x.smu.ring[x.smu.cursor%uint64(len(x.smu.ring))].time)
	}
	x.smu.Unlock()
	return s
}

// Close writes what was appended, checkpoints the cursor and stops the
// writer; Next then returns ErrClosed. Events appended after Close are
// shed.
func (x *Outbox) Close() error {
	x.mu.Lock()
	if x.mu.closed {
		x.mu.Unlock()
		return nil
	}
	x.mu.closed = true
	x.mu.Unlock()
	close(x.quit)
	<-x.done
	x.smu.Lock()
	x.smu.closed = true
	x.broadcastLocked()
	x.smu.Unlock()
	var err error
	if len(x.w.pending) > 0 {
		err = fmt.Errorf("outbox: %d bytes of events could not be written", len(x.w.pending))
	}
	if x.w.f != nil {
		err = errors.Join(err, x.w.f.Close())
	}
	return err
}

// CloseReader releases the consumer's file; call it after the consumer
// stopped calling Next (Close does not, since Next may still run).
func (x *Outbox) CloseReader() {
	if x.r.f != nil {
		_ = x.r.f.Close()
		x.r.f = nil
	}
}

// Remove closes the outbox and deletes its files and directory (a sink
// deleted with events still in it).
func (x *Outbox) Remove() error {
	err := x.Close()
	x.CloseReader()
	names, lerr := x.fs.List(x.opts.Dir)
	if lerr != nil {
		return errors.Join(err, lerr)
	}
	for _, n := range names {
		err = errors.Join(err, x.fs.Remove(filepath.Join(x.opts.Dir, n)))
	}
	err = errors.Join(err, x.fs.Remove(x.opts.Dir))
	return errors.Join(err, vfs.SyncParent(x.fs, x.opts.Dir))
}

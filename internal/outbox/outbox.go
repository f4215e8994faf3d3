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
	"slices"
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

// keepStaged is the capacity up to which the writer keeps a staging
// buffer whatever a flush used: a burst grows the two buffers to up to
// MaxStaged each (4 MiB), which the outbox held ever after (8 MiB of
// fleetd's RSS with a dead receiver: BenchmarkServeIngestSinkDead). A
// flush that used under a quarter of a buffer larger than this drops it.
// An ingest batch's events (hundreds of ~300-byte records) stay below
// it, so a steady flow never reallocates.
const keepStaged = 1 << 20

// readChunk is how much a lane reads ahead (bytesAt).
const readChunk = 256 << 10

const (
	recHeader   = 32 // crc u32 | len u32 | seq u64 | key u64 | time i64
	segSuffix   = ".seg"
	cursorName  = "cursor"
	cursorMagic = "FLOBXCUR" // one cursor (an outbox of one lane, written by older fleetd)
	cursorSize  = 20
	// cursorMagic2 heads the file of one cursor a lane.
	cursorMagic2 = "FLOBXCR2"
	// MaxLanes bounds Options.Lanes.
	MaxLanes = 256
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
	// SegmentBytes is the size past which a new segment starts (default
	// DefaultSegmentBytes, at most MaxBytes/8).
	SegmentBytes int64
	// MaxStaged bounds the bytes appended and not yet written.
	MaxStaged int
	// Window bounds the events each lane handed out and not yet Done.
	Window int
	// Lanes is how many readers the outbox has (default 1, at most
	// MaxLanes): lane i hands out the records whose key % Lanes is i,
	// each lane in Seq order, with its own window and cursor.
	Lanes  int
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
	Depth       int64     `json:"depth"`        // appended (now or before a restart) and not Done (see the package documentation: how exact)
	DiskBytes   int64     `json:"disk_bytes"`   // in segments
	WriteErrors int64     `json:"write_errors"` // failed writes or fsyncs (retried)
	Corrupt     int64     `json:"corrupt"`      // segments cut short by a bad record
	Oldest      time.Time `json:"-"`            // Append time of the oldest not Done (zero: none handed out)
}

type segment struct {
	first uint64
	size  int64 // bytes durable (fsynced) in it
}

// slot is a record a lane handed out and that is not yet behind its
// cursor.
type slot struct {
	seq  uint64
	time int64
	done bool
}

// Lane is one reader of an Outbox: it hands out, in Seq order, the
// records whose key % Options.Lanes is its index, and skips the others.
type Lane struct {
	x   *Outbox
	idx uint64
	// appended counts this lane's records appended since Open.
	appended atomic.Int64

	// Guarded by x.smu:
	readNext uint64 // Seq the lane's scan reaches next: its records below it were handed out (or skipped)
	ring     []slot // handed out and not behind the cursor, in Seq order: ring[(head+i) % Window], i < n
	head, n  int
	saved    uint64 // cursor last checkpointed
	blocked  bool   // Next waits for room in the window: Done must wake it
	readOld  int64  // records below openNext handed out
	done     int64  // records Done

	// r is the lane's reader (its consumer's goroutine).
	r struct {
		f      vfs.File
		first  uint64 // the open segment's first Seq
		off    int64  // offset of the record Seq readNext in it
		buf    []byte // file bytes from bufOff
		bufOff int64
	}
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

	// smu guards the positions shared by the writer, the lanes' Next
	// and Done (the fields under smu in Lane too).
	smu struct {
		sync.Mutex
		changed chan struct{} // closed and replaced on every change a waiter needs
		segs    []segment
		durable uint64 // Seq below which records are durable
		saved   uint64 // the lowest lane cursor last checkpointed: segments below it are deleted
		closed  bool
		// corruptSegs are the segments a lane found a bad record in
		// (counted once, however many lanes skip them).
		corruptSegs []uint64
	}
	// openNext is the first Seq appended since Open: the lanes' records
	// below it were on disk at Open (Stats estimates those not yet read).
	openNext uint64
	lanes    []Lane

	// w is the writer goroutine's.
	w struct {
		f       vfs.File
		size    int64
		pending []byte // records taken from staged, not yet durable
		pendEnd uint64 // Seq after the last record of pending
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
	// The last segment is never deleted: one as large as MaxBytes would
	// shed for good once full, however much of it was delivered.
	o.SegmentBytes = min(o.SegmentBytes, max(o.MaxBytes/8, 4096))
	if o.MaxStaged <= 0 {
		o.MaxStaged = DefaultMaxStaged
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Lanes <= 0 {
		o.Lanes = 1
	}
	if o.Lanes > MaxLanes {
		return nil, fmt.Errorf("outbox: %d lanes, at most %d", o.Lanes, MaxLanes)
	}
	x := &Outbox{opts: o, fs: o.FS, log: o.Logger.With("outbox", o.Dir),
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	x.shedLog.Log, x.errLog.Log = x.log, x.log
	x.errLog.Every = 10 * time.Second
	x.lanes = make([]Lane, o.Lanes)
	for i := range x.lanes {
		x.lanes[i].x, x.lanes[i].idx = x, uint64(i)
		x.lanes[i].ring = make([]slot, o.Window)
	}
	if err := x.recover(); err != nil {
		return nil, err
	}
	x.smu.changed = make(chan struct{})
	go x.writer()
	return x, nil
}

func segName(first uint64) string { return fmt.Sprintf("%016x%s", first, segSuffix) }

// recover reads the directory: segments, the last one's valid end, the
// lanes' cursors.
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
	cursors := x.readCursors()
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
	if len(segs) == 0 && cursors != nil {
		next = slices.Max(cursors) // keep numbering after what was done
	}
	first := next
	if len(segs) > 0 {
		first = segs[0].first
	}
	low := next
	for i := range x.lanes {
		c := first // no cursor: everything on disk is delivered again
		if cursors != nil {
			c = min(max(cursors[i], first), next)
		}
		l := &x.lanes[i]
		l.readNext, l.saved = c, c
		low = min(low, c)
	}
	var disk int64
	for _, s := range segs {
		disk += s.size
	}
	x.mu.next = next
	x.w.pendEnd = next
	x.openNext = next
	x.diskBytes.Store(disk)
	x.smu.segs, x.smu.durable, x.smu.saved = segs, next, low
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

// readCursors reads the cursor file: one cursor a lane, or nil when
// there is none (or it is damaged: everything on disk is delivered
// again). A file of one cursor (written by an older fleetd, or by an
// outbox of another number of lanes) gives each lane the lowest: what
// a lane had done beyond it is delivered again.
func (x *Outbox) readCursors() []uint64 {
	b, err := vfs.ReadFile(x.fs, filepath.Join(x.opts.Dir, cursorName))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			x.log.Warn("outbox: unreadable cursor, delivering everything on disk again", "err", err)
		}
		return nil
	}
	cs, err := parseCursors(b)
	if err != nil {
		x.log.Warn("outbox: unreadable cursor, delivering everything on disk again", "err", err)
		return nil
	}
	if len(cs) != len(x.lanes) {
		low := slices.Min(cs)
		cs = make([]uint64, len(x.lanes))
		for i := range cs {
			cs[i] = low
		}
	}
	return cs
}

// parseCursors decodes a cursor file (either format).
func parseCursors(b []byte) ([]uint64, error) {
	switch {
	case len(b) == cursorSize && string(b[:8]) == cursorMagic:
		if crc32.Checksum(b[:16], crcTable) != binary.LittleEndian.Uint32(b[16:]) {
			return nil, errors.New("outbox: cursor checksum mismatch")
		}
		return []uint64{binary.LittleEndian.Uint64(b[8:])}, nil
	case len(b) >= 16 && string(b[:8]) == cursorMagic2:
		n := binary.LittleEndian.Uint32(b[8:])
		if n == 0 || n > MaxLanes || len(b) != 16+8*int(n) {
			return nil, fmt.Errorf("outbox: cursor file of %d bytes for %d lanes", len(b), n)
		}
		end := 12 + 8*int(n)
		if crc32.Checksum(b[:end], crcTable) != binary.LittleEndian.Uint32(b[end:]) {
			return nil, errors.New("outbox: cursor checksum mismatch")
		}
		cs := make([]uint64, n)
		for i := range cs {
			cs[i] = binary.LittleEndian.Uint64(b[12+8*i:])
		}
		return cs, nil
	}
	return nil, fmt.Errorf("outbox: cursor file of %d bytes without a known header", len(b))
}

// appendCursors encodes the lanes' cursors (the format of one a lane).
func appendCursors(dst []byte, cs []uint64) []byte {
	start := len(dst)
	dst = append(dst, cursorMagic2...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(cs)))
	for _, c := range cs {
		dst = binary.LittleEndian.AppendUint64(dst, c)
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], crcTable))
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
	return x.AppendAt(key, time.Now().UnixNano(), payload)
}

// AppendAt is Append with the event's time given (Unix nanoseconds; a
// migrated event keeps its first Append's time).
func (x *Outbox) AppendAt(key uint64, now int64, payload []byte) (seq uint64, ok bool) {
	if len(payload) > MaxPayload {
		x.shed.Add(1)
		x.shedLog.Warn("outbox: event larger than MaxPayload shed", "bytes", len(payload))
		return 0, false
	}
	need := int64(recHeader + len(payload))
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
	x.lanes[key%uint64(len(x.lanes))].appended.Add(1) // under mu: before the writer can make it readable
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
	if c := cap(x.w.pending); c > keepStaged && int(n) < c/4 {
		// A burst is over (this flush used under a quarter of a buffer
		// it grew to): let the buffer go rather than hold it for good.
		// The two buffers swap at every flush, so both shrink in turn.
		x.w.pending = nil
	} else {
		x.w.pending = x.w.pending[:0]
	}
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

// checkpoint saves the lanes' cursors when one moved and deletes the
// segments wholly below the lowest.
func (x *Outbox) checkpoint() {
	cs := make([]uint64, len(x.lanes))
	x.smu.Lock()
	moved := false
	for i := range x.lanes {
		l := &x.lanes[i]
		cs[i] = l.cursorLocked()
		moved = moved || cs[i] != l.saved
	}
	x.smu.Unlock()
	if !moved {
		return
	}
	var b []byte
	if len(cs) == 1 {
		// One lane: the format older fleetd reads too.
		b = append(b, cursorMagic...)
		b = binary.LittleEndian.AppendUint64(b, cs[0])
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	} else {
		b = appendCursors(b, cs)
	}
	tmp, path := filepath.Join(x.opts.Dir, cursorName+".tmp"), filepath.Join(x.opts.Dir, cursorName)
	err := vfs.WriteFile(x.fs, tmp, b)
	if err == nil {
		err = x.fs.Rename(tmp, path)
	}
	if err != nil {
		x.writeErrors.Add(1)
		x.errLog.Warn("outbox: saving the cursor failed", "err", err)
		return
	}
	x.smu.Lock()
	for i := range x.lanes {
		x.lanes[i].saved = cs[i]
	}
	x.smu.saved = slices.Min(cs)
	x.smu.Unlock()
	x.dropDone()
	if err := x.fs.SyncDir(x.opts.Dir); err != nil {
		x.errLog.Warn("outbox: syncing the directory failed", "err", err)
	}
}

// dropDone deletes the segments whose records are all below the saved
// cursor of every lane (never the last segment).
func (x *Outbox) dropDone() {
	for {
		x.smu.Lock()
		if len(x.smu.segs) < 2 || x.smu.segs[1].first > x.smu.saved {
			x.smu.Unlock()
			return
		}
		s := x.smu.segs[0]
		x.smu.segs = x.smu.segs[1:]
		x.smu.corruptSegs = slices.DeleteFunc(x.smu.corruptSegs, func(f uint64) bool { return f <= s.first })
		x.smu.Unlock()
		x.diskBytes.Add(-s.size)
		if err := x.fs.Remove(filepath.Join(x.opts.Dir, segName(s.first))); err != nil && !errors.Is(err, os.ErrNotExist) {
			x.errLog.Warn("outbox: removing a delivered segment failed", "err", err)
		}
	}
}

// Lane returns lane i (0 ≤ i < Options.Lanes).
func (x *Outbox) Lane(i int) *Lane { return &x.lanes[i] }

// Next is Lane(0).Next: with one lane, the outbox's next event.
func (x *Outbox) Next(ctx context.Context) (Record, error) { return x.lanes[0].Next(ctx) }

// NextBatch is Lane(0).NextBatch.
func (x *Outbox) NextBatch(ctx context.Context, dst []Record, max int) ([]Record, error) {
	return x.lanes[0].NextBatch(ctx, dst, max)
}

// Done is Lane(0).Done.
func (x *Outbox) Done(seq uint64) { x.lanes[0].Done(seq) }

// Next returns the lane's next durable event, waiting for one (and for
// room in the lane's window) until ctx is done or the outbox closed.
func (l *Lane) Next(ctx context.Context) (Record, error) { return l.next(ctx, true) }

// NextBatch appends to dst the lane's next durable events, at most max:
// it waits for the first as Next does, then takes only those ready at
// once.
func (l *Lane) NextBatch(ctx context.Context, dst []Record, max int) ([]Record, error) {
	r, err := l.next(ctx, true)
	if err != nil {
		return dst, err
	}
	dst = append(dst, r)
	for len(dst) < max {
		r, err := l.next(ctx, false)
		if err != nil {
			break // none ready now (a skipped segment is logged where it is skipped)
		}
		dst = append(dst, r)
	}
	return dst, nil
}

// errOpen is read's answer when a segment cannot be opened.
var errOpen = errors.New("outbox: opening a segment")

// Pins reports whether this lane alone holds the outbox near its disk
// bound: over half of MaxBytes is used, every other lane is
// done with the oldest segment, and this lane's cursor is still in it
// (a lane whose consumer cannot get an event delivered while the others
// deliver: see the package documentation, Lanes). Never with one lane.
func (l *Lane) Pins() bool {
	x := l.x
	if len(x.lanes) < 2 || x.diskBytes.Load()+x.pendingBytes.Load() < x.opts.MaxBytes/2 {
		return false
	}
	x.smu.Lock()
	defer x.smu.Unlock()
	if len(x.smu.segs) < 2 {
		return false
	}
	next := x.smu.segs[1].first
	if l.cursorLocked() >= next {
		return false
	}
	for i := range x.lanes {
		if o := &x.lanes[i]; o != l && o.cursorLocked() < next {
			return false
		}
	}
	return true
}

// errNotReady is next's answer, without waiting, when no event is ready.
var errNotReady = errors.New("outbox: no event ready")

// cursorLocked is the Seq below which every record of the lane is
// done: its oldest handed-out record not done, or where its scan is.
func (l *Lane) cursorLocked() uint64 {
	if l.n > 0 {
		return l.ring[l.head].seq
	}
	return l.readNext
}

func (l *Lane) next(ctx context.Context, wait bool) (Record, error) {
	x := l.x
	lanes := uint64(len(x.lanes))
	for {
		x.smu.Lock()
		if x.smu.closed {
			x.smu.Unlock()
			return Record{}, ErrClosed
		}
		seq := l.readNext
		room := l.n < len(l.ring)
		if seq < x.smu.durable && room {
			// Locate the segment holding seq and its durable size.
			i := len(x.smu.segs) - 1
			for i > 0 && x.smu.segs[i].first > seq {
				i--
			}
			s := x.smu.segs[i]
			nextFirst := x.smu.durable
			if i+1 < len(x.smu.segs) {
				nextFirst = x.smu.segs[i+1].first
			}
			x.smu.Unlock()
			// Scan without the lock (only this goroutine moves readNext
			// and fills the ring; Done only makes room), skipping the
			// other lanes' records, to the first of ours.
			for ; seq < nextFirst; seq++ {
				b, err := l.read(s, seq)
				if errors.Is(err, errOpen) {
					return Record{}, err // not the data's fault: tried again on the next call
				}
				if err != nil {
					return Record{}, l.skipSegment(s, seq, nextFirst, err)
				}
				if binary.LittleEndian.Uint64(b[16:])%lanes != l.idx {
					continue
				}
				rec := Record{
					Seq:     seq,
					Key:     binary.LittleEndian.Uint64(b[16:]),
					Time:    int64(binary.LittleEndian.Uint64(b[24:])),
					Payload: append([]byte(nil), b[recHeader:]...),
				}
				x.smu.Lock()
				l.ring[(l.head+l.n)%len(l.ring)] = slot{seq: seq, time: rec.Time}
				l.n++
				l.readNext = seq + 1
				if seq < x.openNext {
					l.readOld++
				}
				x.smu.Unlock()
				return rec, nil
			}
			x.smu.Lock()
			l.readNext = seq
			x.smu.Unlock()
			continue
		}
		l.blocked = !room
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

// read checks record seq of segment s (durable up to s.size) at the
// reader's offset and returns its bytes (valid until the next read),
// moving the offset past it. Every lane checks every record's checksum
// (a few ns a record on CPUs with CRC-32C instructions), so all lanes
// agree on a bad one.
func (l *Lane) read(s segment, seq uint64) ([]byte, error) {
	if l.r.f == nil || l.r.first != s.first {
		if l.r.f != nil {
			_ = l.r.f.Close()
			l.r.f = nil
		}
		f, err := l.x.fs.Open(filepath.Join(l.x.opts.Dir, segName(s.first)))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errOpen, err)
		}
		l.r.f, l.r.first, l.r.off, l.r.buf, l.r.bufOff = f, s.first, 0, l.r.buf[:0], 0
		// Skip to seq (at Open: the cursor may be inside the segment).
		for cur := s.first; cur < seq; cur++ {
			h, err := l.bytesAt(l.r.off, recHeader, s.size)
			if err != nil {
				return nil, err
			}
			l.r.off += int64(recHeader) + int64(binary.LittleEndian.Uint32(h[4:]))
		}
	}
	h, err := l.bytesAt(l.r.off, recHeader, s.size)
	if err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(h[4:])
	if n > MaxPayload {
		return nil, fmt.Errorf("record length %d", n)
	}
	rec, err := l.bytesAt(l.r.off, recHeader+int(n), s.size)
	if err != nil {
		return nil, err
	}
	if crc32.Checksum(rec[4:], crcTable) != binary.LittleEndian.Uint32(rec) {
		return nil, errors.New("checksum mismatch")
	}
	if got := binary.LittleEndian.Uint64(rec[8:]); got != seq {
		return nil, fmt.Errorf("seq %d where %d belongs", got, seq)
	}
	l.r.off += int64(len(rec))
	return rec, nil
}

// bytesAt returns n bytes of the reader's segment at off (below limit),
// reading ahead in chunks.
func (l *Lane) bytesAt(off int64, n int, limit int64) ([]byte, error) {
	if off+int64(n) > limit {
		return nil, fmt.Errorf("record at offset %d runs past the segment's end %d", off, limit)
	}
	if off >= l.r.bufOff && off+int64(n) <= l.r.bufOff+int64(len(l.r.buf)) {
		return l.r.buf[off-l.r.bufOff : off-l.r.bufOff+int64(n)], nil
	}
	want := min(max(int64(n), readChunk), limit-off)
	if int64(cap(l.r.buf)) < want {
		l.r.buf = make([]byte, want)
	}
	buf := l.r.buf[:want]
	m, err := l.r.f.ReadAt(buf, off)
	if m < n {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l.r.buf, l.r.bufOff = buf[:m], off
	return buf[:n], nil
}

// Release lets the lane's read buffer (readChunk bytes) go until its
// next read, for a consumer that will not call Next for a while (package
// sink: a lane backing off from a failing receiver, which holds the
// events it retries). Like Next, it is called from the lane's consumer.
func (l *Lane) Release() {
	l.r.buf, l.r.bufOff = nil, 0
}

// skipSegment gives up on the rest of segment s after a bad record at
// seq: the lane's scan goes on at nextFirst (its records in between are
// lost: counted once in Stats.Corrupt and logged, whichever lane finds
// it first).
func (l *Lane) skipSegment(s segment, seq, nextFirst uint64, cause error) error {
	x := l.x
	if l.r.f != nil {
		_ = l.r.f.Close()
		l.r.f = nil
	}
	x.smu.Lock()
	defer x.smu.Unlock()
	if nextFirst <= seq || nextFirst > x.smu.durable {
		return fmt.Errorf("outbox: segment %s: %w", segName(s.first), cause)
	}
	if !slices.Contains(x.smu.corruptSegs, s.first) {
		x.smu.corruptSegs = append(x.smu.corruptSegs, s.first)
		x.corrupt.Add(1)
		x.log.Error("outbox: bad record, skipping the rest of its segment", "segment", segName(s.first),
			"seq", seq, "records", nextFirst-seq, "err", cause)
	}
	l.readNext = nextFirst
	return fmt.Errorf("outbox: segment %s: %w (skipped)", segName(s.first), cause)
}

// Done marks the lane's record seq (handed out by Next) delivered or
// given up.
func (l *Lane) Done(seq uint64) {
	x := l.x
	x.smu.Lock()
	defer x.smu.Unlock()
	w := len(l.ring)
	// The ring is in Seq order: binary search.
	i, j := 0, l.n
	for i < j {
		h := int(uint(i+j) >> 1)
		if l.ring[(l.head+h)%w].seq < seq {
			i = h + 1
		} else {
			j = h
		}
	}
	if i == l.n || l.ring[(l.head+i)%w].seq != seq || l.ring[(l.head+i)%w].done {
		panic(fmt.Sprintf("BUG: outbox: lane %d: Done(%d) of a record not handed out (or done twice)", l.idx, seq))
	}
	l.ring[(l.head+i)%w].done = true
	l.done++
	if i > 0 {
		return
	}
	for l.n > 0 && l.ring[l.head].done {
		l.ring[l.head] = slot{}
		l.head = (l.head + 1) % w
		l.n--
	}
	if l.blocked {
		l.blocked = false
		x.broadcastLocked()
	}
}

// Stats returns the outbox's counters. Depth is exact for the events
// appended since Open and for those on disk at Open that the lanes have
// read; those a lane has not read yet count 1/Lanes each for it (exact
// with one lane).
func (x *Outbox) Stats() Stats {
	s := Stats{Appended: x.appended.Load(), Shed: x.shed.Load(), DiskBytes: x.diskBytes.Load(),
		WriteErrors: x.writeErrors.Load(), Corrupt: x.corrupt.Load()}
	nl := uint64(len(x.lanes))
	x.smu.Lock()
	var oldest int64
	for i := range x.lanes {
		l := &x.lanes[i]
		s.Depth += l.appended.Load() + l.readOld - l.done
		if l.readNext < x.openNext {
			s.Depth += int64((x.openNext - l.readNext + nl - 1 - l.idx) / nl)
		}
		if l.n > 0 && (oldest == 0 || l.ring[l.head].time < oldest) {
			oldest = l.ring[l.head].time
		}
	}
	x.smu.Unlock()
	if oldest != 0 {
		s.Oldest = time.Unix(0, oldest)
	}
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

// CloseReader releases the lanes' files; call it after their consumers
// stopped calling Next (Close does not, since Next may still run).
func (x *Outbox) CloseReader() {
	for i := range x.lanes {
		if l := &x.lanes[i]; l.r.f != nil {
			_ = l.r.f.Close()
			l.r.f = nil
		}
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

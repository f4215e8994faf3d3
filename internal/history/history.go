package history

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/vfs"
)

// Defaults of Options.
const (
	DefaultRetention   = 7 * 24 * time.Hour
	DefaultMaxDisk     = 4 << 30 // a demo fleet must not fill a laptop
	DefaultBufferBytes = 2 << 20
	DefaultFlushEvery  = 10 * time.Second
	// DefaultMergeFanIn runs of one size tier in a partition are merged
	// into one. Each tier of merges rewrites every point of a filling hour
	// once more (a million trucks' hour is some 2,700 flushes: 2.9 tiers at
	// 16, 3.8 at 8; the first one is skipped, see
	// Options.FirstMergeFanIn), and a lookup reads every run of the hour
	// (at most about 15 a tier, and MergeFanIn² full flushes).
	DefaultMergeFanIn = 16
	// CompactAfter is how long a partition whose hour is over must go
	// without new points before its runs are merged into one. Until then
	// (an hour still filling, or late points trickling in) only the tiered
	// merges run, so that each point is rewritten a logarithmic number of
	// times, never once per late point.
	CompactAfter = 10 * time.Minute
)

// Options configures a History.
type Options struct {
	FS  vfs.FS // default vfs.Default
	Dir string // required
	// Retention drops partitions whose hour ended longer ago than this.
	Retention time.Duration
	// MaxDisk drops the oldest partitions while the runs take more bytes.
	MaxDisk int64
	// BufferBytes is the in-memory buffer's size at which it is sealed.
	// History's memory is two buffers, one being written and the active
	// one, which Reserve keeps within 2·BufferBytes however many batches
	// are in flight and however large (the engine cuts them into
	// engine.ApplyChunk updates); the
	// writer's sort order, a third of the written buffer's size (16 bytes
	// a point against pointBytes' 48); one block per run being merged;
	// and the merge's read buffers (mergeReadBytes).
	BufferBytes int
	// FlushEvery seals a buffer this old even if it is not full.
	FlushEvery time.Duration
	// MergeFanIn is how many runs of one size tier are merged into one
	// (default DefaultMergeFanIn).
	MergeFanIn int
	// FirstMergeFanIn is how many full flushes of one hour (level-0 runs
	// of at least a quarter of BufferBytes' points) wait before they are
	// merged, into one run of the tier MergeFanIn² of them make (default
	// MergeFanIn², whose merges then skip the first tier). At a million
	// trucks a flush holds about one point a truck, and a first-tier
	// merge of 16 of them combined almost nothing: it rewrote every point
	// to cut the number of runs (12% of the server's CPU in
	// BenchmarkServeIngest's profile, history's being 26%). Skipping it
	// rewrites each point of a filling hour about 2 times instead of 3
	// (some 2,700 flushes an hour: 10 merges of 256, then the compaction;
	// BenchmarkMergeFirst), for up to FirstMergeFanIn-1 more runs that a
	// lookup of the hour reads (BenchmarkTrailFilling), each an open file:
	// with the hour before it not yet compacted, some 500 descriptors.
	FirstMergeFanIn int
	Logger          *slog.Logger
	Now             func() time.Time
}

func (o *Options) fill() {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxDisk <= 0 {
		o.MaxDisk = DefaultMaxDisk
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = DefaultBufferBytes
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	if o.MergeFanIn < 2 {
		o.MergeFanIn = DefaultMergeFanIn
	}
	if o.FirstMergeFanIn < 2 {
		o.FirstMergeFanIn = o.MergeFanIn * o.MergeFanIn
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// window holds the points of order[base:base+len(pts)] for the writer,
// and their hashes.
// Their IDs stay in the sealed buffer's arena, which nothing changes
// until the buffer is written: copying each into the window, then into a
// scratch and into the run writer's last-ID check was a sixth of a
// flush's CPU (memmove of 10–20 bytes at a time; BenchmarkWriteSparse).
type window struct {
	base int
	pts  []bufPoint
	hash []uint64
}

// windowPoints is a window's length: 128 KiB of points.
const windowPoints = 4096

// fill gathers the points of order[from:] into w, as many as fit, with
// their hashes (by buffer index).
func (w *window) fill(b *buffer, order []uint32, hash []uint64, from int) {
	n := min(windowPoints, len(order)-from)
	w.base = from
	w.pts = slices.Grow(w.pts[:0], n)[:n]
	w.hash = slices.Grow(w.hash[:0], n)[:n]
	for x, i := range order[from : from+n] {
		w.pts[x], w.hash[x] = *b.at(int(i)), hash[i]
	}
}

// partition is one hour's runs.
type partition struct {
	hour      uint32
	lastWrite time.Time // of a level-0 run (open time for recovered partitions)
	runs      []*run
	corrupt   int // runs that could not be read
	bytes     int64
	nextSeq   uint64
}

// History is the on-disk history of every accepted update.
type History struct {
	o Options

	// mu guards the buffers and the partitions' lists; files are read
	// outside it, by readers that hold a reference to each run they read
	// (run.acquire), so that merges and drops never wait for a reader.
	mu struct {
		sync.Mutex
		active  *buffer
		sealed  []*buffer  // oldest first, being written
		pool    freeChunks // written buffers' chunks, for the active one
		spare   *buffer    // a written buffer (without its chunks), for the next active one
		parts   map[uint32]*partition
		covered uint64    // written through (COVERED written)
		durable uint64    // ... and fsynced: what the log may be cut at
		room    sync.Cond // signalled when the active buffer is sealed or a reservation released
		// reserved: the BufferBytes of the points Reserve has made room
		// for and AddReserved not yet added
		reserved int
	}
	kick chan struct{} // a buffer is full: seal it

	// cover is the covered mark's file, kept open once it is in the
	// two-slot format (see setCovered); nil before.
	cover struct {
		sync.Mutex
		f        vfs.File
		slot     int  // the slot the next mark goes to
		dirDirty bool // the file was renamed into place: the directory needs a sync
	}

	wsort keySorter // the writer's order of a buffer's points, kept between buffers
	wwin  window    // and its window of points in that order

	points, dropped, corrupt atomic.Int64
	waits                    atomic.Int64 // Reserve blocked
	waitNanos                atomic.Int64 // time Reserve's callers spent blocked, summed
	overLogged               atomic.Bool  // the over-the-limit warning is out
	diskBytes                atomic.Int64
}

// Open opens (creating if needed) a history directory.
func Open(o Options) (*History, error) {
	o.fill()
	if o.Dir == "" {
		return nil, errors.New("history: Options.Dir is empty")
	}
	if err := o.FS.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	h := &History{o: o, kick: make(chan struct{}, 1)}
	h.mu.room.L = &h.mu.Mutex
	h.mu.active = &buffer{}
	h.mu.pool = newFreeChunks(o.BufferBytes)
	h.mu.parts = map[uint32]*partition{}
	if b, err := vfs.ReadFile(o.FS, filepath.Join(o.Dir, coveredFile)); err == nil {
		v, err := parseCovered(b)
		if err != nil {
			// Its last rename was not fsynced before a crash: replaying
			// the whole log is safe (duplicates are dropped).
			o.Logger.Warn("history: the covered mark is unreadable; the whole write-ahead log will be replayed into history", "file", coveredFile, "err", err)
			v = 0
		}
		h.mu.covered, h.mu.durable = v, v
	}
	names, err := o.FS.List(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	for _, name := range names {
		hour, ok := parseHourDir(name)
		if !ok {
			continue
		}
		if err := h.openPartition(hour, filepath.Join(o.Dir, name)); err != nil {
			h.closeRuns()
			return nil, err
		}
	}
	return h, nil
}

const coveredFile = "COVERED"

// The covered mark's file is two slots of coverSlot bytes, | coverMagic |
// covered u64 | zeros | CRC u32 of 0..28 |, written in turn in place, so
// that a flush costs one small write instead of a file created and renamed
// (about 200 us of CPU each on the benchmark machine: a few ns a point),
// and a torn write loses at most the newer slot: the mark is the larger
// of the valid ones. Marks of fleetd before the slots are a decimal number
// and a newline, read as such and replaced by the first write.
const (
	coverMagic = "FHCOVER1"
	coverSlot  = 32
)

// appendCoverSlot appends a slot holding v.
func appendCoverSlot(dst []byte, v uint64) []byte {
	k := len(dst)
	dst = append(dst, coverMagic...)
	dst = binary.LittleEndian.AppendUint64(dst, v)
	dst = append(dst, make([]byte, 12)...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[k:], castagnoli))
}

// parseCovered reads a covered mark's file: the larger of its valid
// slots, or the older decimal form.
func parseCovered(b []byte) (uint64, error) {
	slotted, found, v := false, false, uint64(0)
	for off := 0; off+coverSlot <= len(b) && off < 2*coverSlot; off += coverSlot {
		sl := b[off : off+coverSlot]
		if string(sl[:len(coverMagic)]) == coverMagic {
			slotted = true
		}
		if string(sl[:len(coverMagic)]) == coverMagic && binary.LittleEndian.Uint32(sl[28:]) == crc32.Checksum(sl[:28], castagnoli) {
			found, v = true, max(v, binary.LittleEndian.Uint64(sl[8:]))
		}
	}
	switch {
	case found:
		return v, nil
	case slotted || len(b) >= coverSlot:
		return 0, errors.New("no valid slot")
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

func (h *History) openPartition(hour uint32, dir string) error {
	names, err := h.o.FS.List(dir)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	p := &partition{hour: hour, lastWrite: h.o.Now()}
	for _, n := range names {
		path := filepath.Join(dir, n)
		if strings.HasSuffix(n, ".tmp") {
			_ = h.o.FS.Remove(path) // an interrupted write
			continue
		}
		level, seq, ok := parseRunName(n)
		if !ok {
			continue
		}
		r, err := openRun(h.o.FS, path)
		if err != nil {
			h.o.Logger.Error("history: a run is unreadable; its points are missing from answers until it is repaired", "file", path, "err", err)
			p.corrupt++
			h.corrupt.Add(1)
			continue
		}
		r.level, r.seq = level, seq
		p.runs = append(p.runs, r)
		p.bytes += r.size
		p.nextSeq = max(p.nextSeq, seq+1)
	}
	h.diskBytes.Add(p.bytes)
	h.mu.parts[hour] = p
	return nil
}

func hourName(hour uint32) string {
	return time.Unix(int64(hour)*3600, 0).UTC().Format("2006010215")
}

func parseHourDir(name string) (uint32, bool) {
	t, err := time.Parse("2006010215", name)
	if err != nil || len(name) != 10 || t.Unix() < 0 {
		return 0, false
	}
	return uint32(t.Unix() / 3600), true
}

func runName(level int, seq uint64) string { return fmt.Sprintf("%d-%012d.fhr", level, seq) }

func parseRunName(n string) (int, uint64, bool) {
	base, ok := strings.CutSuffix(n, ".fhr")
	if !ok {
		return 0, 0, false
	}
	l, s, ok := strings.Cut(base, "-")
	if !ok {
		return 0, 0, false
	}
	level, err1 := strconv.Atoi(l)
	seq, err2 := strconv.ParseUint(s, 10, 64)
	return level, seq, err1 == nil && err2 == nil && level >= 0
}

// Add buffers the accepted updates of one batch. It never blocks on disk.
// Replay adds without a reservation; the engine's batches come through
// Reserve and AddReserved.
func (h *History) Add(ups []fleet.Update) { h.add(ups, 0) }

// AddReserved is Add for a batch whose room Reserve made: it takes the
// reservation back as the points go in.
func (h *History) AddReserved(ups []fleet.Update) { h.add(ups, len(ups)) }

func (h *History) add(ups []fleet.Update, reserved int) {
	h.mu.Lock()
	b := h.mu.active
	if b.n == 0 {
		b.start = h.o.Now()
	}
	b.add(ups, &h.mu.pool)
	h.mu.reserved -= reserved * pointBytes
	full := b.size() >= h.o.BufferBytes
	h.mu.Unlock()
	h.points.Add(int64(len(ups)))
	if full {
		h.kickWriter()
	}
}

func (h *History) kickWriter() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// Full delivers a value when the active buffer has reached BufferBytes,
// or when Reserve waits for room.
func (h *History) Full() <-chan struct{} { return h.kick }

// Reserve waits until the active buffer has room for n more points within
// 2·BufferBytes — counting the points that other callers have reserved
// and not yet added — and reserves it; AddReserved of those n points, or
// Release(n) if they will not be added, gives it back. The engine calls
// it before it logs a batch, so that a slow disk slows ingest rather than
// growing memory, and however many batches are in flight at once the
// active buffer stays within 2·BufferBytes (their attributes' 4 bytes a
// value besides). A batch too large for even an empty buffer goes when
// the buffer is empty and nothing else is reserved, so Reserve never
// waits for ever; the engine cuts its batches well below that
// (engine.ApplyChunk). While it waits it asks the writer to seal the
// active buffer, full or not. It returns at once, reserving anyway,
// when stop is closed.
func (h *History) Reserve(n int, stop <-chan struct{}) {
	need := n * pointBytes
	h.mu.Lock()
	defer h.mu.Unlock()
	var t0 time.Time
	defer func() {
		h.mu.reserved += need
		if !t0.IsZero() {
			h.waitNanos.Add(int64(time.Since(t0)))
		}
	}()
	for {
		b := h.mu.active
		if b.size()+h.mu.reserved+need <= 2*h.o.BufferBytes || b.n == 0 && h.mu.reserved == 0 {
			return
		}
		select {
		case <-stop:
			return
		default:
		}
		if t0.IsZero() {
			t0 = time.Now()
			h.waits.Add(1)
		}
		if b.n > 0 {
			h.kickWriter() // the writer seals it when it can: room for this batch
		}
		h.mu.room.Wait()
	}
}

// Release gives back a reservation of n points that will not be added.
func (h *History) Release(n int) {
	h.mu.Lock()
	h.mu.reserved -= n * pointBytes
	h.mu.room.Broadcast()
	h.mu.Unlock()
}

// Wake releases the callers of Reserve to check their stop channel.
func (h *History) Wake() {
	h.mu.Lock()
	h.mu.room.Broadcast()
	h.mu.Unlock()
}

// ShouldSeal reports whether the active buffer is full or old enough.
func (h *History) ShouldSeal() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.mu.active
	return b.n > 0 && (b.size() >= h.o.BufferBytes || h.o.Now().Sub(b.start) >= h.o.FlushEvery)
}

// Seal closes the active buffer at log position covers (every record up
// to it has been added) and returns it for Write.
func (h *History) Seal(covers uint64) *buffer {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.mu.active
	b.covers = covers
	next := h.mu.spare
	if next == nil {
		next = &buffer{}
	}
	h.mu.spare = nil
	h.mu.active = next
	h.mu.sealed = append(h.mu.sealed, b)
	h.mu.room.Broadcast()
	return b
}

// Covered is the log position up to which every point is in a durable
// run, as far as this process knows; recovery replays the log after it.
func (h *History) Covered() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.covered
}

// DurableCovered is Covered as the disk knows it after a crash: the
// engine keeps the log after it. SyncCovered advances it.
func (h *History) DurableCovered() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.durable
}

// SyncCovered makes the covered mark durable (one fsync of the mark, and
// of the directory after the file was renamed into place), if it moved.
// Write leaves that to it, so that a flush costs the run's fsyncs only;
// the engine calls it before it cuts the log.
func (h *History) SyncCovered() error {
	h.mu.Lock()
	v := h.mu.covered
	moved := v > h.mu.durable
	h.mu.Unlock()
	if !moved {
		return nil
	}
	h.cover.Lock()
	f, dirDirty := h.cover.f, h.cover.dirDirty
	h.cover.Unlock()
	var err error
	if f != nil {
		err = f.Sync() // setCovered wrote v (or a newer mark) before covered moved
	} else {
		if f, err = h.o.FS.Open(filepath.Join(h.o.Dir, coveredFile)); err == nil {
			err = f.Sync()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		dirDirty = true
	}
	if err == nil && dirDirty {
		if err = h.o.FS.SyncDir(h.o.Dir); err == nil {
			h.cover.Lock()
			h.cover.dirDirty = false
			h.cover.Unlock()
		}
	}
	if err != nil {
		return fmt.Errorf("history: syncing the covered mark: %w", err)
	}
	h.mu.Lock()
	h.mu.durable = max(h.mu.durable, v)
	h.mu.Unlock()
	return nil
}

// Write makes a sealed buffer durable: one run per hour it touches, then
// the covered mark. Buffers must be written in the order Seal returned
// them, by one goroutine.
func (h *History) Write(b *buffer) error {
	if err := h.write(b); err != nil {
		return err
	}
	h.mu.Lock()
	h.mu.sealed = slices.DeleteFunc(h.mu.sealed, func(x *buffer) bool { return x == b })
	// Readers copy out of buffers under mu and keep no references: the
	// memory is free to reuse.
	b.release(&h.mu.pool)
	h.mu.spare = b
	h.mu.Unlock()
	return nil
}

func (h *History) write(b *buffer) error {
	// Readers scan sealed buffers until they are written: sort an order,
	// never the points. Sort indices by hash, not points: a point's
	// hash and hour are read in order without touching the points (a
	// random access each, which was most of the writer's time:
	// BenchmarkWriteSparse 1.7M → 2.4M points/s), and the hash is
	// computed here, off the ingest path. The sorter's memory is kept for
	// the next buffer (the writer is one goroutine).
	s := &h.wsort
	s.reset(b.n)
	for c := range b.pts {
		for x := range b.chunk(c) {
			p, i := &b.pts[c][x], c*pointChunk+x
			s.hash[i], s.hour[i] = idHash(b.id(p)), p.TS/3600
		}
	}
	s.sort(func(x, y uint32) int {
		// One truck's points (or, rarely, two IDs with one hash).
		px, py := b.at(int(x)), b.at(int(y))
		if c := bytes.Compare(b.id(px), b.id(py)); c != 0 {
			return c
		}
		if px.TS != py.TS {
			return cmp.Compare(px.TS, py.TS)
		}
		qx, qy := b.point(px), b.point(py)
		return comparePoints(&qx, &qy)
	})
	// The points in that order, a window at a time: a tight gather loop
	// has its cache misses in flight together, where reading each point
	// as the runs are written took a miss at a time (a third of the
	// writer's time at a million trucks).
	win := &h.wwin
	win.base, win.pts = 0, win.pts[:0]
	fetch := func(k int) (*bufPoint, []byte, uint64) {
		if k < win.base || k >= win.base+len(win.pts) {
			win.fill(b, s.order, s.hash, k)
		}
		p := &win.pts[k-win.base]
		return p, b.id(p), win.hash[k-win.base]
	}
	cutoff := h.retentionCutoff()
	var ps []Point
	var pos []fleet.Position
	newDirs := false
	i := 0
	for _, span := range s.spans {
		hour, j := span.hour, span.end
		if hour < cutoff {
			h.dropped.Add(int64(j - i))
			i = j
			continue
		}
		p, created := h.partition(hour)
		newDirs = newDirs || created
		dir := filepath.Join(h.o.Dir, hourName(hour))
		if err := h.o.FS.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		h.mu.Lock()
		seq := p.nextSeq
		p.nextSeq++
		p.lastWrite = h.o.Now()
		h.mu.Unlock()
		w, err := createRun(h.o.FS, filepath.Join(dir, runName(0, seq)), hour, b.covers, layoutRaw)
		if err != nil {
			return err
		}
		w.stableIDs = true
		for k := i; k < j; {
			// A truck's points as positions while none has attributes
			// (most trucks): 16 bytes a point to the raw block instead
			// of a 60-byte Point copied twice (BenchmarkWriteSparse).
			q, id, hash := fetch(k)
			pos, ps = pos[:0], ps[:0]
			asPts := false
			for {
				switch {
				case asPts:
					ps = append(ps, b.point(q))
				case q.mask != 0:
					ps, asPts = append(appendPositions(ps, pos), b.point(q)), true
				default:
					pos = append(pos, q.Position)
				}
				if k++; k >= j {
					break
				}
				var qid []byte
				var qh uint64
				if q, qid, qh = fetch(k); qh != hash || !bytes.Equal(qid, id) {
					break
				}
			}
			if asPts {
				err = w.add(hash, id, slices.CompactFunc(ps, func(x, y Point) bool { return comparePoints(&x, &y) == 0 }))
			} else {
				err = w.addPos(hash, id, slices.Compact(pos))
			}
			if err != nil {
				w.Abort()
				return err
			}
		}
		if _, err := w.Finish(); err != nil {
			return err
		}
		if err := h.o.FS.SyncDir(dir); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		if err := h.install(p, filepath.Join(dir, runName(0, seq)), 0, seq, nil); err != nil {
			return err
		}
		i = j
	}
	if newDirs { // a new hour's directory entry
		if err := h.o.FS.SyncDir(h.o.Dir); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	// The mark last: a crash before it replays the buffer's log records
	// into history again, and the duplicates are dropped.
	if err := h.setCovered(b.covers); err != nil {
		return err
	}
	return nil
}

// setCovered writes a new covered mark, without fsyncs (see
// SyncCovered): the runs it covers are durable already. The first one
// of a process renames a file of two slots holding it into place (the
// file may be of an older fleetd, or absent); the next ones overwrite a
// slot in turn, so that the other always holds the previous mark.
func (h *History) setCovered(v uint64) error {
	h.cover.Lock()
	err := h.writeCovered(v)
	h.cover.Unlock()
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	h.mu.Lock()
	h.mu.covered = max(h.mu.covered, v)
	h.mu.Unlock()
	return nil
}

func (h *History) writeCovered(v uint64) error {
	c := &h.cover
	if c.f != nil {
		_, err := c.f.WriteAt(appendCoverSlot(nil, v), int64(c.slot*coverSlot))
		c.slot ^= 1
		return err
	}
	path := filepath.Join(h.o.Dir, coveredFile)
	f, err := h.o.FS.Create(path + ".tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(appendCoverSlot(appendCoverSlot(nil, v), v))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = h.o.FS.Rename(path+".tmp", path)
	}
	if err == nil {
		c.dirDirty = true
		// Kept open for the next marks; failing that, the next one
		// renames again.
		if f, oerr := h.o.FS.OpenFile(path, os.O_RDWR, 0); oerr == nil {
			c.f, c.slot = f, 0
		}
	}
	return err
}

// partition returns hour's partition, creating it (created: it was new).
func (h *History) partition(hour uint32) (p *partition, created bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p = h.mu.parts[hour]
	if p == nil {
		p = &partition{hour: hour, lastWrite: h.o.Now()}
		h.mu.parts[hour] = p
		created = true
	}
	return p, created
}

// install opens a new run of p and removes the runs it replaces.
func (h *History) install(p *partition, path string, level int, seq uint64, replaces []*run) error {
	r, err := openRun(h.o.FS, path)
	if err != nil {
		return err
	}
	r.level, r.seq = level, seq
	h.mu.Lock()
	p.runs = append(slices.DeleteFunc(p.runs, func(x *run) bool { return slices.Contains(replaces, x) }), r)
	p.bytes += r.size
	for _, x := range replaces {
		p.bytes -= x.size
	}
	h.mu.Unlock()
	h.diskBytes.Add(r.size)
	for _, x := range replaces {
		x.retire()
		h.diskBytes.Add(-x.size)
	}
	return nil
}

func (h *History) retentionCutoff() uint32 {
	c := h.o.Now().Add(-h.o.Retention).Unix() / 3600
	return uint32(max(c, 0))
}

// Housekeep merges partitions with Options.MergeFanIn runs of one size tier,
// compacts finished hours and drops partitions past the retention or the
// disk limit. It may run concurrently with Write (the engine runs it on a
// goroutine of its own, so that merges never delay a flush), not with
// itself.
func (h *History) Housekeep() {
	for _, p := range h.partitions() {
		for {
			runs := h.mergeable(p)
			if runs == nil {
				break
			}
			if err := h.merge(p, runs, false); err != nil {
				h.o.Logger.Error("history: merging runs failed; they stay as they are", "partition", hourName(p.hour), "err", err)
				break
			}
			// Merges can go on as long as new runs arrive: the disk
			// limit is not left waiting for them.
			h.enforceDisk()
		}
	}
	now := h.o.Now()
	done := uint32((now.Add(-CompactAfter).Unix()) / 3600) // hours over for a while
	for _, p := range h.partitions() {
		if p.hour < done && !h.compacted(p) && now.Sub(h.lastWrite(p)) >= CompactAfter {
			if err := h.compact(p); err != nil {
				h.o.Logger.Error("history: compacting a finished hour failed; its runs stay as they are", "partition", hourName(p.hour), "err", err)
			}
		}
	}
	cutoff := h.retentionCutoff()
	for _, p := range h.partitions() {
		if p.hour < cutoff {
			h.drop(p, "older than the retention")
		}
	}
	h.enforceDisk()
}

// enforceDisk keeps the run files under MaxDisk. A partition still being
// filled takes many times its final size (its first runs hold about one
// point per truck at a million trucks), so the older partitions are
// compacted first, oldest first, and then dropped whole, oldest first.
// The newest partition is neither compacted for it (that would rewrite an
// hour still growing) nor dropped: if it alone is over the limit, that is
// logged once.
func (h *History) enforceDisk() {
	if h.diskBytes.Load() <= h.o.MaxDisk {
		h.overLogged.Store(false)
		return
	}
	ps := h.partitions()
	for _, p := range ps[:max(len(ps)-1, 0)] {
		if h.diskBytes.Load() <= h.o.MaxDisk {
			return
		}
		if h.runCount(p) < 2 {
			continue
		}
		if err := h.compact(p); err != nil {
			h.o.Logger.Error("history: compacting at the disk limit failed; dropping old hours instead", "partition", hourName(p.hour), "err", err)
			break
		}
	}
	for h.diskBytes.Load() > h.o.MaxDisk {
		ps := h.partitions()
		if len(ps) <= 1 {
			if !h.overLogged.Swap(true) {
				h.o.Logger.Warn("history: the current hour alone is over --history-max-disk; it is kept until it can be compacted or dropped",
					"disk_bytes", h.diskBytes.Load(), "max_disk", h.o.MaxDisk)
			}
			return
		}
		h.drop(ps[0], "over the disk limit")
	}
}

// partitions lists the partitions, oldest first.
func (h *History) partitions() []*partition {
	h.mu.Lock()
	defer h.mu.Unlock()
	ps := make([]*partition, 0, len(h.mu.parts))
	for _, p := range h.mu.parts {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *partition) int { return cmp.Compare(a.hour, b.hour) })
	return ps
}

func (h *History) lastWrite(p *partition) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return p.lastWrite
}

// compacted reports whether p is one run of one truck per block.
func (h *History) compacted(p *partition) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(p.runs) == 1 && !p.runs[0].grouped()
}

func (h *History) runCount(p *partition) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(p.runs)
}

// mergeable returns Options.MergeFanIn runs of p of about the same size (the
// same tier: size within a factor of 4), oldest first, smallest tier
// first, or nil. Merging by size rather than by level keeps a big run
// from being rewritten for a few small late ones: each point is rewritten
// about log8 of the partition's size over a flush's.
//
// Full flushes (level 0, at least fullFlushPoints) wait for
// Options.FirstMergeFanIn of them instead, and are merged first: the
// tiers by size leave them alone, so that only the hour being filled
// (and the one before it, until its compaction) holds that many.
func (h *History) mergeable(p *partition) []*run {
	h.mu.Lock()
	defer h.mu.Unlock()
	byTier := map[int][]*run{}
	var full []*run
	low := -1
	for _, r := range p.runs {
		if r.level == 0 && r.points >= h.fullFlushPoints() {
			full = append(full, r)
			continue
		}
		t := bits.Len64(uint64(r.size)) / 2
		byTier[t] = append(byTier[t], r)
		if len(byTier[t]) >= h.o.MergeFanIn && (low < 0 || t < low) {
			low = t
		}
	}
	if len(full) >= h.o.FirstMergeFanIn {
		slices.SortFunc(full, func(a, b *run) int { return cmp.Compare(a.seq, b.seq) })
		return full[:h.o.FirstMergeFanIn]
	}
	if low < 0 {
		return nil
	}
	rs := byTier[low]
	slices.SortFunc(rs, func(a, b *run) int { return cmp.Compare(a.seq, b.seq) })
	return rs[:h.o.MergeFanIn]
}

// fullFlushPoints is how many points make a level-0 run a full flush,
// for Options.FirstMergeFanIn: a quarter of what a buffer sealed at
// BufferBytes holds. Smaller ones (a quiet fleet's timed flushes, late
// points of an older hour) are merged by size tier, so that no hour
// keeps hundreds of small runs.
func (h *History) fullFlushPoints() uint64 {
	return uint64(h.o.BufferBytes / pointBytes / 4)
}

func (h *History) drop(p *partition, why string) {
	h.mu.Lock()
	delete(h.mu.parts, p.hour)
	runs := p.runs
	p.runs = nil
	h.mu.Unlock()
	var points uint64
	for _, r := range runs {
		points += r.points
		r.retire()
		h.diskBytes.Add(-r.size)
	}
	dir := filepath.Join(h.o.Dir, hourName(p.hour))
	if names, err := h.o.FS.List(dir); err == nil && len(names) == 0 {
		_ = h.o.FS.Remove(dir)
	}
	h.dropped.Add(int64(points))
	h.o.Logger.Info("history: dropped a partition", "hour", hourName(p.hour), "why", why, "points", points, "runs", len(runs))
}

// Close closes the run files. Buffered points that were not written are
// still in the log.
func (h *History) Close() error {
	h.closeRuns()
	h.cover.Lock()
	defer h.cover.Unlock()
	if h.cover.f != nil {
		err := h.cover.f.Close()
		h.cover.f = nil
		if err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	return nil
}

func (h *History) closeRuns() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.mu.parts {
		for _, r := range p.runs {
			r.release()
		}
		p.runs = nil
	}
}

// Stats are history's figures.
type Stats struct {
	Points      int64   `json:"points_total"`                    // added since start
	Dropped     int64   `json:"dropped_total"`                   // removed by retention or the disk limit
	Corrupt     int64   `json:"corrupt_runs"`                    // run files that could not be read
	DiskBytes   int64   `json:"disk_bytes"`                      // run files
	Partitions  int     `json:"partitions"`                      // hours on disk
	Runs        int     `json:"runs"`                            // run files
	Buffered    int     `json:"buffered"`                        // points not yet written
	Covered     uint64  `json:"covered_lsn"`                     // log position written through
	StoredPts   uint64  `json:"stored_points"`                   // points in run files (duplicates until merged included)
	Waits       int64   `json:"backpressure_waits_total"`        // batches that waited for the writer
	WaitSeconds float64 `json:"backpressure_wait_seconds_total"` // how long they waited, summed
	BufferBytes int     `json:"buffer_bytes"`                    // memory held by buffered points
}

// Stats reports history's figures.
func (h *History) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := Stats{Points: h.points.Load(), Dropped: h.dropped.Load(), Corrupt: h.corrupt.Load(), DiskBytes: h.diskBytes.Load(),
		Partitions: len(h.mu.parts), Covered: h.mu.covered, Buffered: h.mu.active.n, Waits: h.waits.Load(),
		WaitSeconds: time.Duration(h.waitNanos.Load()).Seconds()}
	for _, b := range h.mu.sealed {
		st.Buffered += b.n
	}
	st.BufferBytes = st.Buffered * pointBytes
	for _, p := range h.mu.parts {
		st.Runs += len(p.runs)
		for _, r := range p.runs {
			st.StoredPts += r.points
		}
	}
	return st
}

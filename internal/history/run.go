package history

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/vfs"
)

const (
	runMagic    = "FLEETHST"
	runEndMagic = "FHRE"
	// Version 3 runs hold one truck per block (what compaction writes, so
	// that a finished hour's index bounds each truck on its own); version
	// 2 runs hold blocks of consecutive trucks (see groupPoints); version
	// 1 runs, one truck a block in the legacy layout, are still read.
	// Version 4 runs are version 2's blocks with each truck's ID
	// front-coded against the block's previous one: what grouped runs are
	// written as now (version 2's are still read).
	versionLegacy   = 1
	versionGrouped  = 2
	versionSolo     = 3
	versionPrefixed = 4
	headerSize      = 32
	trailerSize     = 24
	entrySize       = 48
	maxBlockSize    = 64 << 20 // a truck's hour; far above any real one

	// groupPoints is about how many points a grouped run's block holds: a
	// truck joins the block being filled unless it would take it past
	// groupPoints, and a block is written once it has them. A filling
	// hour's runs hold a few points a truck (about one at a million trucks
	// in a level-0 run): a block and a 48-byte index entry for each was 88
	// bytes a point and most of the writer's time.
	groupPoints = 128
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// idHash is FNV-1a, stable across processes (the index is on disk).
func idHash(id []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range id {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// entry is one truck's index entry in a run.
type entry struct {
	hash           uint64
	off            uint64
	length, points uint32
	minTS, maxTS   uint32
	minLat, minLon int32
	maxLat, maxLon int32
}

func (e *entry) put(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], e.hash)
	le.PutUint64(b[8:], e.off)
	le.PutUint32(b[16:], e.length)
	le.PutUint32(b[20:], e.points)
	le.PutUint32(b[24:], e.minTS)
	le.PutUint32(b[28:], e.maxTS)
	le.PutUint32(b[32:], uint32(e.minLat))
	le.PutUint32(b[36:], uint32(e.minLon))
	le.PutUint32(b[40:], uint32(e.maxLat))
	le.PutUint32(b[44:], uint32(e.maxLon))
}

func (e *entry) get(b []byte) {
	le := binary.LittleEndian
	*e = entry{
		hash: le.Uint64(b[0:]), off: le.Uint64(b[8:]), length: le.Uint32(b[16:]), points: le.Uint32(b[20:]),
		minTS: le.Uint32(b[24:]), maxTS: le.Uint32(b[28:]),
		minLat: int32(le.Uint32(b[32:])), minLon: int32(le.Uint32(b[36:])),
		maxLat: int32(le.Uint32(b[40:])), maxLon: int32(le.Uint32(b[44:])),
	}
}

// runWriter streams a run: blocks to the file, index entries to memory
// up to idxMemMax and past it to a side file, appended at Finish, so that
// memory does not grow with the number of trucks. A flush's run (about
// 340 entries) and a first-tier merge's (about 5,500) never need the side
// file: creating, copying and removing it was a tenth of a flush's CPU
// (BenchmarkWriteSparse).
type runWriter struct {
	fs        vfs.FS
	path      string   // final name; writes go to path+".tmp"
	f, idx    vfs.File // idx: the side file, once the index passes idxMemMax
	w, iw     *bufio.Writer
	ibuf      []byte // index entries not in the side file
	off       uint64
	blocks    uint32
	trucks    int
	points    uint64
	idxCRC    uint32
	lastHash  uint64
	lastID    []byte
	shared    int // bytes of the last ID shared with the one before it (grouped runs)
	buf, ebuf []byte
	hour      uint32
	covers    uint64
	layout    layout
	grouped   bool // several trucks a block
	prefixed  bool // grouped, IDs front-coded (version 4; else 2)
	// stableIDs: the IDs given to Add stay as they are until Finish (a
	// sealed buffer's arena), so the order check keeps the last one
	// without a copy.
	stableIDs bool

	// The block being filled (grouped runs): its trucks as the block
	// lists them (shared u8 | suffixLen u8 | suffix | uvarint n,
	// each; see appendPrefixed), their points
	// ending at ends: in pos while every one came without attributes
	// through addPos, in pts (asPts) once one did not.
	head  []byte
	ends  []int
	pts   []Point
	pos   []fleet.Position
	asPts bool
	hash  uint64  // of its first truck
	cvt   []Point // scratch: positions as points, for columns
}

// rawBelowPerTruck: a grouped block whose trucks have fewer points than
// this each, on average, is written raw (layoutRaw), as a flush writes its
// blocks: what the first merges of a filling hour write at a million
// trucks, about a point a truck, which columns make no smaller and several
// times dearer to write and to read back in the next merge.
const rawBelowPerTruck = 2

// groupedVersion is the version grouped runs are written in: 4, or 2 as
// fleetd wrote them before (a variable for tests of reading those).
var groupedVersion = uint32(versionPrefixed)

// idxMemMax is how many bytes of a run's index its writer keeps in
// memory (5,461 entries) before it moves them to a side file (a variable
// for tests). Level-0 runs (about a thousand blocks at a million trucks)
// stay under it; a merge of a filling hour or a compaction writes
// hundreds of thousands, and at 1 MiB their writers held 2.2 MB of the
// heap in the sustained run's profile.
var idxMemMax = 256 << 10

// writerPool holds runWriters' file buffers (256 KiB each): a flush or a
// merge borrows one for the run it writes.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}

// createRun starts a run of one truck per block (layoutSolo, version 3;
// layoutLegacy, version 1), or of grouped blocks (version 2) in columns
// or raw.
func createRun(fs vfs.FS, path string, hour uint32, covers uint64, l layout) (*runWriter, error) {
	f, err := fs.Create(path + ".tmp")
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(f)
	w := &runWriter{fs: fs, path: path, f: f, w: bw,
		off: headerSize, hour: hour, covers: covers, layout: l, grouped: l == layoutGrouped || l == layoutRaw, ebuf: make([]byte, entrySize)}
	w.prefixed = w.grouped && groupedVersion == versionPrefixed
	if _, err := w.w.Write(make([]byte, headerSize)); err != nil { // patched by Finish
		w.Abort()
		return nil, fmt.Errorf("history: %w", err)
	}
	return w, nil
}

// Add adds one truck's points; trucks must come in (hash, id) order and
// ps must be sorted without duplicates. ps may be reused once it returns.
func (w *runWriter) Add(id []byte, ps []Point) error { return w.add(idHash(id), id, ps) }

// add is Add with the ID's hash h, which the caller has.
func (w *runWriter) add(h uint64, id []byte, ps []Point) error {
	if len(ps) == 0 {
		return nil
	}
	w.order(h, id)
	if !w.grouped {
		return w.writeSolo(h, id, nil, ps)
	}
	if err := w.room(len(ps)); err != nil {
		return err
	}
	if !w.asPts {
		w.pts, w.pos, w.asPts = appendPositions(w.pts[:0], w.pos), w.pos[:0], true
	}
	w.pts = append(w.pts, ps...)
	return w.added(h, id, len(w.pts))
}

// addPos is add for points without attributes, sorted by ts (ties by the
// other fields) without duplicates.
func (w *runWriter) addPos(h uint64, id []byte, ps []fleet.Position) error {
	if len(ps) == 0 {
		return nil
	}
	w.order(h, id)
	if !w.grouped {
		return w.writeSolo(h, id, ps, nil)
	}
	if err := w.room(len(ps)); err != nil {
		return err
	}
	var n int
	if w.asPts {
		w.pts = appendPositions(w.pts, ps)
		n = len(w.pts)
	} else {
		w.pos = append(w.pos, ps...)
		n = len(w.pos)
	}
	return w.added(h, id, n)
}

// order checks that trucks come in (hash, id) order and notes this one.
func (w *runWriter) order(h uint64, id []byte) {
	if w.trucks > 0 && (h < w.lastHash || h == w.lastHash && bytes.Compare(id, w.lastID) <= 0) {
		panic(fmt.Sprintf("BUG: history: run trucks out of order: %q after %q", id, w.lastID))
	}
	w.trucks++
	if w.prefixed {
		w.shared = commonPrefix(w.lastID, id)
	}
	if w.stableIDs {
		w.lastHash, w.lastID = h, id
		return
	}
	w.lastHash, w.lastID = h, append(w.lastID[:0], id...)
}

// writeSolo writes one truck's block (pos, or ps) in a run of one truck
// per block.
func (w *runWriter) writeSolo(h uint64, id []byte, pos []fleet.Position, ps []Point) error {
	n := len(ps) + len(pos)
	w.head = appendTruck(w.head[:0], id, n)
	w.ends = append(w.ends[:0], n)
	err := w.writeBlock(h, w.head, pos, ps)
	w.head, w.ends = w.head[:0], w.ends[:0]
	return err
}

// room writes the block being filled if n more points would take it
// past groupPoints.
func (w *runWriter) room(n int) error {
	if len(w.ends) > 0 && len(w.pts)+len(w.pos)+n > groupPoints {
		return w.flush()
	}
	return nil
}

// added records a truck whose points now end at end in the block being
// filled, and writes the block once it has groupPoints.
func (w *runWriter) added(h uint64, id []byte, end int) error {
	if len(w.ends) == 0 {
		w.hash = h
	}
	start := 0
	if len(w.ends) > 0 {
		start = w.ends[len(w.ends)-1]
	}
	shared := 0
	if len(w.ends) > 0 { // the block's previous truck is the last one
		shared = w.shared
	}
	if w.prefixed {
		w.head = appendPrefixed(w.head, id, shared, end-start)
	} else {
		w.head = appendTruck(w.head, id, end-start)
	}
	w.ends = append(w.ends, end)
	if end >= groupPoints {
		return w.flush()
	}
	return nil
}

// flush writes the block being filled.
func (w *runWriter) flush() error {
	if len(w.ends) == 0 {
		return nil
	}
	var err error
	if w.asPts {
		err = w.writeBlock(w.hash, w.head, nil, w.pts)
	} else {
		err = w.writeBlock(w.hash, w.head, w.pos, nil)
	}
	w.head, w.ends, w.pts, w.pos, w.asPts = w.head[:0], w.ends[:0], w.pts[:0], w.pos[:0], false
	return err
}

// appendTruck appends a block's listing of a truck: its ID and point
// count.
func appendTruck(dst, id []byte, n int) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(id)))
	dst = append(dst, id...)
	return binary.AppendUvarint(dst, uint64(n))
}

// appendPrefixed appends a grouped block's listing of a truck (version
// 4): its ID as the number of bytes it shares with the block's previous
// truck's (0 for the first) and the rest, then its point count. A flush at
// a million trucks holds about a point a truck, so the ID is half a
// level-0 run's bytes; in (hash, id) order, IDs of one fleet still share
// their prefix ("truck-0…", an IMEI's type code), about half of them.
func appendPrefixed(dst, id []byte, shared, n int) []byte {
	dst = append(dst, byte(shared), byte(len(id)-shared)) // IDs are at most fleet.MaxIDLen
	dst = append(dst, id[shared:]...)
	return binary.AppendUvarint(dst, uint64(n))
}

// A version 4 listing's lengths are single bytes.
const _ = uint8(fleet.MaxIDLen)

// commonPrefix is the length of the longest common prefix of a and b.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i+8 <= n {
		if x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:]); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
		i += 8
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// writeBlock writes one block: the trucks of w.ends, listed in head, with
// their points in ps, or without attributes in pos (ps nil); h is the
// first one's hash.
func (w *runWriter) writeBlock(h uint64, head []byte, pos []fleet.Position, ps []Point) error {
	n := len(ps) + len(pos)
	// The block is built in the file buffer's free space when it fits
	// there, so that Write finds it in place instead of copying it.
	b, inPlace := w.buf[:0], false
	if avail := w.w.AvailableBuffer(); cap(avail) >= 64+len(head)+n*(rawPointSize+4) {
		b, inPlace = avail, true
	}
	b = append(b, 0, 0, 0, 0)
	if w.layout != layoutLegacy {
		b = binary.AppendUvarint(b, uint64(len(w.ends)))
	}
	b = append(b, head...)
	l := w.layout
	if l == layoutGrouped && n < rawBelowPerTruck*len(w.ends) {
		l = layoutRaw // a merge of a filling hour's first runs
	}
	var e entry
	switch {
	case ps != nil:
		b = appendColumns(b, ps, w.ends, l)
		e.bound(ps[0].Position)
		for i := range ps {
			e.extend(&ps[i].Position)
		}
	case l == layoutRaw:
		b = appendRawPositions(b, pos)
	default:
		w.cvt = appendPositions(w.cvt[:0], pos)
		b = appendColumns(b, w.cvt, w.ends, l)
	}
	if ps == nil {
		e.bound(pos[0])
		for i := range pos {
			e.extend(&pos[i])
		}
	}
	binary.LittleEndian.PutUint32(b, crc32.Checksum(b[4:], castagnoli))
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if !inPlace {
		w.buf = b // kept for the next block
	}
	e.hash, e.off, e.length, e.points = h, w.off, uint32(len(b)), uint32(n)
	if len(w.ibuf)+entrySize > idxMemMax {
		if err := w.spillIndex(); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	k := len(w.ibuf)
	w.ibuf = append(w.ibuf, w.ebuf...)
	e.put(w.ibuf[k:])
	w.idxCRC = crc32.Update(w.idxCRC, castagnoli, w.ibuf[k:])
	w.off += uint64(len(b))
	w.blocks++
	w.points += uint64(n)
	return nil
}

// bound starts e's bounds at p.
func (e *entry) bound(p fleet.Position) {
	e.minTS, e.maxTS, e.minLat, e.maxLat, e.minLon, e.maxLon = p.TS, p.TS, p.Lat, p.Lat, p.Lon, p.Lon
}

// extend widens e's bounds to p.
func (e *entry) extend(p *fleet.Position) {
	e.minTS, e.maxTS = min(e.minTS, p.TS), max(e.maxTS, p.TS)
	e.minLat, e.maxLat = min(e.minLat, p.Lat), max(e.maxLat, p.Lat)
	e.minLon, e.maxLon = min(e.minLon, p.Lon), max(e.maxLon, p.Lon)
}

// Finish appends the index and trailer, patches the header, fsyncs and
// renames the run into place (the caller syncs the directory). It returns
// the file's size.
func (w *runWriter) Finish() (int64, error) {
	err := w.flush()
	if err == nil {
		err = w.finish()
	}
	if err != nil {
		w.Abort()
		return 0, fmt.Errorf("history: writing %s: %w", w.path, err)
	}
	return int64(w.off) + int64(w.blocks)*entrySize + trailerSize, nil
}

// spillIndex moves the index entries in memory to the side file.
func (w *runWriter) spillIndex() error {
	if w.idx == nil {
		idx, err := w.fs.Create(w.path + ".idx.tmp")
		if err != nil {
			return err
		}
		w.idx, w.iw = idx, bufio.NewWriterSize(idx, 64<<10)
	}
	_, err := w.iw.Write(w.ibuf)
	w.ibuf = w.ibuf[:0]
	return err
}

func (w *runWriter) finish() error {
	if w.idx != nil {
		if err := w.spillIndex(); err != nil {
			return err
		}
		if err := w.iw.Flush(); err != nil {
			return err
		}
		if _, err := io.Copy(w.w, io.NewSectionReader(w.idx, 0, int64(w.blocks)*entrySize)); err != nil {
			return err
		}
	} else if _, err := w.w.Write(w.ibuf); err != nil {
		return err
	}
	t := make([]byte, trailerSize)
	binary.LittleEndian.PutUint64(t[0:], w.off)
	binary.LittleEndian.PutUint64(t[8:], w.points)
	binary.LittleEndian.PutUint32(t[16:], w.idxCRC)
	copy(t[20:], runEndMagic)
	if _, err := w.w.Write(t); err != nil {
		return err
	}
	if err := w.w.Flush(); err != nil {
		return err
	}
	h := make([]byte, headerSize)
	copy(h, runMagic)
	version := uint32(versionSolo)
	switch {
	case w.prefixed:
		version = versionPrefixed
	case w.grouped:
		version = versionGrouped
	case w.layout == layoutLegacy:
		version = versionLegacy
	}
	binary.LittleEndian.PutUint32(h[8:], version)
	binary.LittleEndian.PutUint32(h[12:], w.hour)
	binary.LittleEndian.PutUint64(h[16:], w.covers)
	binary.LittleEndian.PutUint32(h[24:], w.blocks)
	binary.LittleEndian.PutUint32(h[28:], crc32.Checksum(h[:28], castagnoli))
	if _, err := w.f.WriteAt(h, 0); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	w.f = nil
	w.release()
	if w.idx != nil {
		w.idx.Close()
		w.idx = nil
		_ = w.fs.Remove(w.path + ".idx.tmp")
	}
	return w.fs.Rename(w.path+".tmp", w.path)
}

// release returns the file buffer to the pool.
func (w *runWriter) release() {
	if w.w != nil {
		w.w.Reset(nil)
		writerPool.Put(w.w)
		w.w = nil
	}
}

// Abort removes the partial files.
func (w *runWriter) Abort() {
	if w.f != nil {
		w.f.Close()
	}
	w.release()
	if w.idx != nil {
		w.idx.Close()
		_ = w.fs.Remove(w.path + ".idx.tmp")
	}
	_ = w.fs.Remove(w.path + ".tmp")
}

// run is an open run file.
type run struct {
	fs   vfs.FS
	path string
	f    vfs.File
	// refs counts the partition's reference and each reader's; the file is
	// closed when the last goes, and removed then if obsolete (merged or
	// dropped), so that a reader never loses a file under it.
	refs     atomic.Int32
	obsolete atomic.Bool
	bad      atomic.Bool // a read failed its checks (counted once)

	// fence holds every stride-th index entry's hash, loaded by the
	// first find, so that a lookup reads one slice of the index instead
	// of binary-searching it a pread at a time (see fenceStride). 8
	// bytes per 512 blocks: 16 KiB for a compacted 1M-truck hour.
	fenceOnce sync.Once
	fence     []uint64
	stride    int
	fenceErr  error
	size      int64
	hour      uint32
	covers    uint64
	blocks    int // index entries
	version   uint32
	points    uint64
	idxOff    int64
	idxCRC    uint32
	level     int
	seq       uint64
}

// openRun opens a run and checks its header and trailer; blocks and the
// index are checked as they are read.
func openRun(fs vfs.FS, path string) (*run, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	r, err := readRunMeta(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.fs = fs
	r.refs.Store(1)
	return r, nil
}

func readRunMeta(f vfs.File, path string) (*run, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	size := fi.Size()
	if size < headerSize+trailerSize {
		return nil, corrupt("%s: %d bytes, shorter than a header and trailer", path, size)
	}
	h := make([]byte, headerSize)
	t := make([]byte, trailerSize)
	if _, err := f.ReadAt(h, 0); err != nil {
		return nil, fmt.Errorf("history: %s: %w", path, err)
	}
	if _, err := f.ReadAt(t, size-trailerSize); err != nil {
		return nil, fmt.Errorf("history: %s: %w", path, err)
	}
	le := binary.LittleEndian
	if string(h[:8]) != runMagic || le.Uint32(h[28:]) != crc32.Checksum(h[:28], castagnoli) {
		return nil, corrupt("%s: bad header", path)
	}
	version := le.Uint32(h[8:])
	if version < versionLegacy || version > versionPrefixed {
		return nil, corrupt("%s: unknown version %d", path, version)
	}
	if string(t[20:]) != runEndMagic {
		return nil, corrupt("%s: bad trailer", path)
	}
	r := &run{path: path, f: f, size: size, hour: le.Uint32(h[12:]), covers: le.Uint64(h[16:]),
		version: version, blocks: int(le.Uint32(h[24:])), idxOff: int64(le.Uint64(t[0:])), points: le.Uint64(t[8:]), idxCRC: le.Uint32(t[16:])}
	if r.idxOff < headerSize || r.idxOff+int64(r.blocks)*entrySize+trailerSize != size {
		return nil, corrupt("%s: index of %d blocks at %d does not fit %d bytes", path, r.blocks, r.idxOff, size)
	}
	return r, nil
}

func (r *run) entry(i int, buf []byte, e *entry) error {
	if _, err := r.f.ReadAt(buf[:entrySize], r.idxOff+int64(i)*entrySize); err != nil {
		return fmt.Errorf("history: %s: %w", r.path, err)
	}
	e.get(buf)
	return r.checkEntry(i, e)
}

// checkEntry checks that index entry i points inside the blocks.
func (r *run) checkEntry(i int, e *entry) error {
	if e.off < headerSize || int64(e.off)+int64(e.length) > r.idxOff || e.length > maxBlockSize || e.length < 4 {
		return corrupt("%s: index entry %d points outside the blocks", r.path, i)
	}
	return nil
}

// group is a decoded block: its trucks' IDs (pointing into the block
// as read, or into idBuf: version 4's IDs, rebuilt) and points, truck k's
// being pts[ends[k-1]:ends[k]].
type group struct {
	ids   [][]byte
	idBuf []byte
	ends  []int
	pts   []Point
	// With wantPos set (a merge's cursor), a raw block without
	// attributes is decoded into pos, not pts (isPos): 16 bytes a point
	// instead of 60, copied as they are through the merge.
	wantPos, isPos bool
	pos            []fleet.Position
}

func (g *group) trucks() int { return len(g.ids) }

// grouped reports whether the run holds several trucks a block.
func (r *run) grouped() bool { return r.version == versionGrouped || r.version == versionPrefixed }

// truckPos returns truck k's ID and points of a group decoded as
// positions (isPos).
func (g *group) truckPos(k int) ([]byte, []fleet.Position) {
	start := 0
	if k > 0 {
		start = g.ends[k-1]
	}
	return g.ids[k], g.pos[start:g.ends[k]]
}

// truck returns truck k's ID and points.
func (g *group) truck(k int) ([]byte, []Point) {
	start := 0
	if k > 0 {
		start = g.ends[k-1]
	}
	return g.ids[k], g.pts[start:g.ends[k]]
}

// block reads and checks the block of e into g; buf is the read buffer
// (returned, grown), which g's IDs point into.
func (r *run) block(e *entry, buf []byte, g *group) ([]byte, error) {
	buf = slices.Grow(buf[:0], int(e.length))[:e.length]
	if _, err := r.f.ReadAt(buf, int64(e.off)); err != nil {
		return buf, fmt.Errorf("history: %s: %w", r.path, err)
	}
	return buf, r.decodeBlock(e, buf, g, nil)
}

// decodeBlock checks the block of e, read into buf, and decodes it into
// g. With want set, only its trucks' IDs are decoded unless want is one of
// them (a lookup in a grouped block).
func (r *run) decodeBlock(e *entry, buf []byte, g *group, want []byte) error {
	g.ids, g.ends, g.pts, g.pos, g.isPos = g.ids[:0], g.ends[:0], g.pts[:0], g.pos[:0], false
	if binary.LittleEndian.Uint32(buf) != crc32.Checksum(buf[4:], castagnoli) {
		return corrupt("%s: block at %d fails its checksum", r.path, e.off)
	}
	b := buf[4:]
	trucks := uint64(1)
	if r.version != versionLegacy {
		var n int
		trucks, n = binary.Uvarint(b)
		if n <= 0 || trucks == 0 || trucks > uint64(e.points) {
			return corrupt("%s: block at %d: bad truck count", r.path, e.off)
		}
		b = b[n:]
	}
	prefixed := r.version == versionPrefixed
	if prefixed && want != nil {
		// A lookup: tell from the listing whether want is there before
		// rebuilding any ID (most blocks a lookup reads do not hold it).
		if ok, err := r.listsID(e, b, trucks, want); !ok || err != nil {
			return err
		}
		want = nil
	}
	found := want == nil
	le := binary.LittleEndian
	var wantTail uint64
	if len(want) >= 8 {
		wantTail = le.Uint64(want[len(want)-8:])
	}
	total := 0
	if prefixed {
		g.idBuf = slices.Grow(g.idBuf[:0], int(trucks)*16)
	}
	var id []byte
	for range trucks {
		// IDs are shorter than 128 bytes and most trucks have fewer than
		// 128 points a block: one-byte varints, read inline (a lookup of
		// a filling hour scans a grouped block's 128 trucks in each of
		// hundreds of runs; BenchmarkTrailFilling).
		var shared, sl uint64 // sl: the ID's length, or its suffix's (version 4)
		var n int
		switch {
		case prefixed:
			if len(b) < 2 || int(b[0]) > len(id) {
				return corrupt("%s: block at %d: bad ID prefix", r.path, e.off)
			}
			shared, sl, n = uint64(b[0]), uint64(b[1]), 2
		case len(b) > 0 && b[0] < 0x80:
			sl, n = uint64(b[0]), 1
		default:
			sl, n = binary.Uvarint(b)
		}
		if n <= 0 || shared+sl == 0 || shared+sl > fleet.MaxIDLen || uint64(len(b)-n) < sl {
			return corrupt("%s: block at %d: bad ID", r.path, e.off)
		}
		if prefixed {
			// Rebuilt in g.idBuf: an ID from before a growth keeps the
			// old array, which nothing writes to again.
			start := len(g.idBuf)
			g.idBuf = append(append(g.idBuf, id[:shared]...), b[n:n+int(sl)]...)
			id = g.idBuf[start:len(g.idBuf):len(g.idBuf)]
		} else {
			id = b[n : n+int(sl)]
		}
		b = b[n+int(sl):]
		l := len(id)
		var np uint64
		if len(b) > 0 && b[0] < 0x80 {
			np, n = uint64(b[0]), 1
		} else {
			np, n = binary.Uvarint(b)
		}
		if n <= 0 || np == 0 || np > uint64(e.points)-uint64(total) {
			return corrupt("%s: block at %d: bad point count", r.path, e.off)
		}
		b = b[n:]
		total += int(np)
		g.ids = append(g.ids, id)
		g.ends = append(g.ends, total)
		// IDs of one fleet share their prefix ("truck-…"): their last 8
		// bytes tell most apart without a call.
		found = found || len(id) == len(want) && (l < 8 || le.Uint64(id[l-8:]) == wantTail) && bytes.Equal(id, want)
	}
	if total != int(e.points) {
		return corrupt("%s: block at %d: %d points, index says %d", r.path, e.off, total, e.points)
	}
	if !found {
		return nil
	}
	if g.wantPos && r.grouped() {
		pos, ok, err := decodeRawPositions(g.pos, b, g.ends)
		g.pos, g.isPos = pos, ok && err == nil
		if err != nil {
			return fmt.Errorf("%s: block at %d: %w", r.path, e.off, err)
		}
		if ok {
			return nil
		}
	}
	pts, err := decodeColumns(g.pts, b, g.ends, r.version == versionLegacy)
	g.pts = pts
	if err != nil {
		return fmt.Errorf("%s: block at %d: %w", r.path, e.off, err)
	}
	return nil
}

// listsID reports whether a version 4 block's listing b of trucks
// trucks holds want, without rebuilding the IDs: m, the bytes the
// current ID shares with want, carries from one ID to the next unless the
// next keeps fewer of the current one's bytes than that (then it shares
// those), and grows by the suffix's.
func (r *run) listsID(e *entry, b []byte, trucks uint64, want []byte) (bool, error) {
	m, cur := 0, 0 // cur: the current ID's length
	for range trucks {
		if len(b) < 2 {
			return false, corrupt("%s: block at %d: bad ID", r.path, e.off)
		}
		shared, sl := int(b[0]), int(b[1])
		if shared > cur || shared+sl == 0 || shared+sl > fleet.MaxIDLen || len(b)-2 < sl+1 {
			return false, corrupt("%s: block at %d: bad ID", r.path, e.off)
		}
		suffix := b[2 : 2+sl]
		b = b[2+sl:]
		if shared <= m {
			m = shared
			if m < len(want) && sl > 0 && suffix[0] == want[m] {
				m += commonPrefix(suffix, want[m:])
			}
		}
		cur = shared + sl
		if m == len(want) && cur == len(want) {
			return true, nil
		}
		if b[0] < 0x80 { // the point count, inline as in decodeBlock
			b = b[1:]
		} else if _, n := binary.Uvarint(b); n > 0 {
			b = b[n:]
		} else {
			return false, corrupt("%s: block at %d: bad point count", r.path, e.off)
		}
	}
	return false, nil
}

// fenceEvery is the stride of a large run's fence, smallFenceEvery a
// small one's (up to smallFenceEvery² blocks: a flush's runs, some 340
// blocks at a million trucks, and the first merges of an hour).
const (
	fenceEvery      = 512
	smallFenceEvery = 64
)

// fenceStride is the fence's stride for a run of blocks: a lookup reads
// one stride of the index (24 KiB at 512, 3 KiB at 64), and the fence
// takes 8 bytes a stride, at most 512 bytes for a small run. A lookup of
// the hour being filled reads hundreds of small runs
// (Options.FirstMergeFanIn): with 512, their whole index each time
// (BenchmarkTrailFilling/first=256, with decodeBlock's inline varints:
// 1.19 → 0.92 ms a lookup).
func fenceStride(blocks int) int {
	if blocks <= smallFenceEvery*smallFenceEvery {
		return smallFenceEvery
	}
	return fenceEvery
}

// chunkPool holds find's index slices (24 KiB each).
var chunkPool = sync.Pool{New: func() any { b := make([]byte, (fenceEvery+1)*entrySize); return &b }}

// loadFence reads the index once, in large reads, checking its checksum.
func (r *run) loadFence() {
	stride := fenceStride(r.blocks)
	fence := make([]uint64, 0, (r.blocks+stride-1)/stride)
	r.fenceErr = r.scan(func(i int, e *entry) bool {
		if i%stride == 0 {
			fence = append(fence, e.hash)
		}
		return true
	})
	r.fence, r.stride = fence, stride
}

// find appends the points of id to dst: the fence narrows the index to
// one slice of at most stride+1 entries, read at once and searched in
// memory. Its blocks are those whose first truck's hash is h and, in a
// grouped run, the last one before them.
func (r *run) find(id []byte, buf []byte, g *group, dst []Point) ([]byte, []Point, error) {
	r.fenceOnce.Do(r.loadFence)
	if r.fenceErr != nil {
		return buf, dst, r.fenceErr
	}
	h := idHash(id)
	k := sort.Search(len(r.fence), func(k int) bool { return r.fence[k] >= h })
	// Entries with hash h lie after fence[k-1] (< h) and, but for equal
	// hashes, at or before fence[k].
	var e, before entry
	haveBefore := false
	cp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(cp)
	chunk := *cp
	// look reads block e and appends id's points if it holds them; done
	// once id is found.
	look := func(e *entry) (done bool, err error) {
		buf = slices.Grow(buf[:0], int(e.length))[:e.length]
		if _, err := r.f.ReadAt(buf, int64(e.off)); err != nil {
			return false, fmt.Errorf("history: %s: %w", r.path, err)
		}
		if err := r.decodeBlock(e, buf, g, id); err != nil {
			return false, err
		}
		if len(g.pts) == 0 { // not among its trucks
			return false, nil
		}
		for t := range g.trucks() {
			if got, ps := g.truck(t); bytes.Equal(got, id) {
				dst = append(dst, ps...)
				return true, nil
			}
		}
		return false, nil
	}
	for i := max(k-1, 0) * r.stride; i < r.blocks; {
		n := min(r.stride+1, r.blocks-i)
		chunk = chunk[:n*entrySize]
		if _, err := r.f.ReadAt(chunk, r.idxOff+int64(i)*entrySize); err != nil {
			return buf, dst, fmt.Errorf("history: %s: %w", r.path, err)
		}
		// The first entry with hash >= h (the index is sorted by hash).
		j0 := sort.Search(n, func(j int) bool { return binary.LittleEndian.Uint64(chunk[j*entrySize:]) >= h })
		if j0 > 0 {
			before.get(chunk[(j0-1)*entrySize:])
			if err := r.checkEntry(i+j0-1, &before); err != nil {
				return buf, dst, err
			}
			haveBefore = true
		}
		if j0 == n && i+n < r.blocks {
			i += n
			continue
		}
		if haveBefore && r.grouped() {
			haveBefore = false
			if done, err := look(&before); done || err != nil {
				return buf, dst, err
			}
		}
		for j := j0; j < n; j++ {
			e.get(chunk[j*entrySize:])
			if err := r.checkEntry(i+j, &e); err != nil {
				return buf, dst, err
			}
			if e.hash > h {
				return buf, dst, nil
			}
			if done, err := look(&e); done || err != nil {
				return buf, dst, err
			}
		}
		i += n
	}
	return buf, dst, nil
}

// scan calls fn for every index entry in order, checking the index's
// checksum once it has been read whole; an entry is valid during the call.
// Reading stops at fn's first false.
func (r *run) scan(fn func(i int, e *entry) bool) error {
	const chunk = 1024
	buf := make([]byte, chunk*entrySize)
	var e entry
	crc := uint32(0)
	for i := 0; i < r.blocks; i += chunk {
		n := min(chunk, r.blocks-i)
		b := buf[:n*entrySize]
		if _, err := r.f.ReadAt(b, r.idxOff+int64(i)*entrySize); err != nil {
			return fmt.Errorf("history: %s: %w", r.path, err)
		}
		crc = crc32.Update(crc, castagnoli, b)
		for j := range n {
			e.get(b[j*entrySize:])
			if e.off < headerSize || int64(e.off)+int64(e.length) > r.idxOff || e.length > maxBlockSize || e.length < 4 {
				return corrupt("%s: index entry %d points outside the blocks", r.path, i+j)
			}
			if !fn(i+j, &e) {
				return nil
			}
		}
	}
	if crc != r.idxCRC {
		return corrupt("%s: index fails its checksum", r.path)
	}
	return nil
}

func (r *run) acquire() { r.refs.Add(1) }

// release drops a reference; the last one closes the file, and removes it
// when the run is obsolete.
func (r *run) release() {
	switch n := r.refs.Add(-1); {
	case n > 0:
		return
	case n < 0:
		panic("BUG: history: run released more often than acquired: " + r.path)
	}
	_ = r.f.Close()
	if r.obsolete.Load() {
		_ = r.fs.Remove(r.path) // a crash before this leaves duplicates, which reads and merges drop
	}
}

// retire releases the partition's reference to a run that is merged or
// dropped: its file goes once no reader has it open.
func (r *run) retire() {
	r.obsolete.Store(true)
	r.release()
}

package history

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"slices"

	"github.com/fleetd/fleetd/internal/fleet"
)

// cursor walks one run's trucks in index order for a merge. Blocks lie
// in the file in index order, so it reads both the index and the blocks
// sequentially, in large reads: one pread per truck was most of a merge's
// time (the engine's ingest profile at 1M trucks).
type cursor struct {
	r     *run
	n     int // the run's place among the merge's (older first)
	i     int // the next index entry
	e     entry
	g     group // the block of e
	k     int   // the current truck in g
	hash  uint64
	id    []byte
	pts   []Point          // the current truck's points, or
	pos   []fleet.Position // with isPos (g.isPos), its positions
	isPos bool
	buf   []byte
	idxN  int    // entries per index read
	brN   int    // bytes per block read
	idx   []byte // index entries [idxAt, idxAt+len(idx)/entrySize)
	idxAt int
	crc   uint32        // of the index entries read so far (they are read in order)
	br    *bufio.Reader // blocks from at on
	at    int64         // the file offset br reads from
	done  bool
}

const (
	cursorIndexChunk = 1024     // entries per index read, at most
	cursorBlockBuf   = 64 << 10 // bytes per block read, at most
)

// mergeReadBytes bounds a merge's read buffers, all cursors together
// (a variable for tests): the first merge of a filling hour
// (Options.FirstMergeFanIn runs) or a compaction after it has hundreds
// of inputs, and each cursor's buffers shrink to fit (at 256, 6 KiB of
// blocks and 42 index entries each; at 16, the largest sizes). A first
// merge runs about a quarter of the time at 1M updates/s, so this is
// part of the server's RSS; at 2 MiB rather than 4,
// BenchmarkMergeFirst/first=256 took the same CPU a point (AMD EPYC
// 2-vCPU VM, 3 alternated runs: 224–232 against 213–292 ns).
var mergeReadBytes = 2 << 20

// cursorBuffers returns the index chunk (entries) and block buffer
// (bytes) of each of n cursors: the largest sizes, or smaller ones that
// keep n of them within mergeReadBytes.
func cursorBuffers(n int) (entries, bytes int) {
	n = max(n, 1)
	entries = min(cursorIndexChunk, max(16, mergeReadBytes/4/(n*entrySize)))
	bytes = min(cursorBlockBuf, max(4<<10, mergeReadBytes*3/4/n))
	return entries, bytes
}

// runError is a read failure of one run.
type runError struct {
	r   *run
	err error
}

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

func (c *cursor) next() error {
	if err := c.advance(); err != nil {
		return &runError{c.r, err}
	}
	return nil
}

func (c *cursor) advance() error {
	if c.k+1 < c.g.trucks() {
		c.k++
		c.load()
		return nil
	}
	if c.i >= c.r.blocks {
		c.done = true
		return nil
	}
	if c.i < c.idxAt || c.i >= c.idxAt+len(c.idx)/entrySize {
		n := min(c.idxN, c.r.blocks-c.i)
		c.idx = slices.Grow(c.idx[:0], n*entrySize)[:n*entrySize]
		if _, err := c.r.f.ReadAt(c.idx, c.r.idxOff+int64(c.i)*entrySize); err != nil {
			return fmt.Errorf("history: %s: %w", c.r.path, err)
		}
		c.idxAt = c.i
		// The index's checksum, checked once it has been read whole:
		// an entry's hash, which no block's checksum covers, orders the
		// merge (which checks the index first; an export's answer is
		// marked incomplete).
		if c.crc = crc32.Update(c.crc, castagnoli, c.idx); c.i+n == c.r.blocks && c.crc != c.r.idxCRC {
			return corrupt("%s: index fails its checksum", c.r.path)
		}
	}
	c.e.get(c.idx[(c.i-c.idxAt)*entrySize:])
	if err := c.r.checkEntry(c.i, &c.e); err != nil {
		return err
	}
	c.i++
	if c.br == nil || c.at != int64(c.e.off) {
		c.br = bufio.NewReaderSize(io.NewSectionReader(c.r.f, int64(c.e.off), c.r.idxOff-int64(c.e.off)), c.brN)
		c.at = int64(c.e.off)
	}
	c.buf = slices.Grow(c.buf[:0], int(c.e.length))[:c.e.length]
	if _, err := io.ReadFull(c.br, c.buf); err != nil {
		return fmt.Errorf("history: %s: block at %d: %w", c.r.path, c.e.off, err)
	}
	c.at += int64(c.e.length)
	if err := c.r.decodeBlock(&c.e, c.buf, &c.g, nil); err != nil {
		return err
	}
	c.k = 0
	c.load()
	return nil
}

// load makes truck c.k of the block the current one. A block's first
// truck's hash (a solo run's only one) is its index entry's, whose
// checksum the merge has checked; the others' are computed from the ID
// (storing them in the blocks, 8 bytes a truck, cost a merge more in
// reading and writing them than the hashing: BenchmarkMergeSparse;
// carrying the hash's state over a front-coded ID's shared prefix, so
// as to hash its suffix only, was no faster: BenchmarkMergeFirst).
func (c *cursor) load() {
	if c.isPos = c.g.isPos; c.isPos {
		c.id, c.pos = c.g.truckPos(c.k)
	} else {
		c.id, c.pts = c.g.truck(c.k)
	}
	if c.k == 0 {
		c.hash = c.e.hash
	} else {
		c.hash = idHash(c.id)
	}
}

// merge replaces runs of p (one level, oldest first) by one run of the
// next level holding their points, each truck's sorted without
// duplicates: a grouped run, or with solo one truck per block. Memory:
// one block per input.
func (h *History) merge(p *partition, runs []*run, solo bool) error {
	for _, r := range runs {
		if err := r.scan(func(int, *entry) bool { return true }); err != nil { // the index's checksum
			return err
		}
	}
	level := 0
	for _, r := range runs {
		level = max(level, r.level+1)
	}
	h.mu.Lock()
	seq := p.nextSeq
	p.nextSeq++
	covers := uint64(0)
	for _, r := range runs {
		covers = max(covers, r.covers)
	}
	h.mu.Unlock()
	dir := filepath.Join(h.o.Dir, hourName(p.hour))
	path := filepath.Join(dir, runName(level, seq))
	l := layoutGrouped
	if solo {
		l = layoutSolo
	}
	w, err := createRun(h.o.FS, path, p.hour, covers, l)
	if err != nil {
		return err
	}
	if err := mergeRuns(runs, w.add, w.addPos); err != nil {
		w.Abort()
		return err
	}
	if _, err := w.Finish(); err != nil {
		return err
	}
	if err := h.o.FS.SyncDir(dir); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return h.install(p, path, level, seq, runs)
}

// mergeRuns calls fn with each truck of runs (its ID's hash and the ID),
// in index order, with its points from every run sorted and without duplicates. Memory: one block
// per run. ps is valid only during the call. With fnPos, a truck whose
// points all come from raw blocks without attributes (a flush's runs, and
// the first merges of a filling hour) goes to fnPos instead, as
// positions: 16 bytes a point copied where Points are 60, and no
// re-encoding of what is raw already (BenchmarkMergeSparse).
func mergeRuns(runs []*run, fn func(hash uint64, id []byte, ps []Point) error, fnPos func(hash uint64, id []byte, ps []fleet.Position) error) error {
	cs := make([]*cursor, len(runs))
	idxN, brN := cursorBuffers(len(runs))
	for i, r := range runs {
		c := &cursor{r: r, n: i, idxN: idxN, brN: brN}
		c.g.wantPos = fnPos != nil
		if err := c.next(); err != nil {
			return err
		}
		cs[i] = c
	}
	t := newLoserTree(cs)
	var id []byte
	var pts []Point
	var pos []fleet.Position
	for len(cs) > 0 && !t.winner().done {
		c := t.winner()
		id = append(id[:0], c.id...)
		hash := c.hash
		pts, pos = pts[:0], pos[:0]
		asPos := true // every run so far gave positions
		// The runs holding the truck win in run order (the tree's
		// tie-break: oldest first), so that its points are usually in ts
		// order already. Each is advanced where it stands (its next truck
		// sorts after this one) and replayed up the tree.
		for c := t.winner(); !c.done && c.hash == hash && bytes.Equal(c.id, id); c = t.winner() {
			// Before next reuses c's block:
			switch {
			case c.isPos && asPos:
				pos = append(pos, c.pos...)
			case c.isPos:
				pts = appendPositions(pts, c.pos)
			default:
				if asPos {
					pts, asPos = appendPositions(pts, pos), false
				}
				pts = append(pts, c.pts...)
			}
			if err := c.next(); err != nil {
				return err
			}
			t.replay()
		}
		var err error
		if asPos {
			err = fnPos(hash, id, sortPositions(pos))
		} else {
			err = fn(hash, id, sortPoints(pts))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// loserTree picks the least of a merge's cursors by (hash, ID, run
// order), a finished cursor above every other: after the winner advances,
// one replay from its leaf to the root, a comparison a level (4 for
// Options.MergeFanIn's 16 runs), where a binary heap's sift-down took two
// a level (BenchmarkMergeSparse). Leaf i (cursor i) is node len(cs)+i;
// node p > 0 holds the loser of the match between its children 2p and
// 2p+1, node 0 the overall winner.
type loserTree struct {
	cs   []*cursor
	node []int
	// key is each cursor's hash (all ones once done), beside the tree so
	// that most matches are decided without loading a cursor.
	key []uint64
}

func newLoserTree(cs []*cursor) *loserTree {
	t := &loserTree{cs: cs, node: make([]int, max(len(cs), 1)), key: make([]uint64, len(cs))}
	for i := range cs {
		t.setKey(i)
	}
	if len(cs) > 0 {
		t.node[0] = t.build(1)
	}
	return t
}

// build plays the matches below node p and returns its winner.
func (t *loserTree) build(p int) int {
	if p >= len(t.cs) {
		return p - len(t.cs)
	}
	a, b := t.build(2*p), t.build(2*p+1)
	if t.less(b, a) {
		a, b = b, a
	}
	t.node[p] = b
	return a
}

func (t *loserTree) winner() *cursor { return t.cs[t.node[0]] }

// replay restores the tree after the winner has advanced. Most matches
// are decided by the keys alone, compared here; equal keys (one truck in
// several runs) go to less.
func (t *loserTree) replay() {
	w := t.node[0]
	t.setKey(w)
	kw := t.key[w]
	node, key := t.node, t.key
	for p := (w + len(t.cs)) / 2; p > 0; p /= 2 {
		o := node[p]
		if ko := key[o]; ko < kw || ko == kw && t.less(o, w) {
			node[p], w, kw = w, o, ko
		}
	}
	node[0] = w
}

func (t *loserTree) setKey(i int) {
	t.key[i] = t.cs[i].hash
	if t.cs[i].done {
		t.key[i] = ^uint64(0)
	}
}

// less orders cursors i and j.
func (t *loserTree) less(i, j int) bool {
	if t.key[i] != t.key[j] {
		return t.key[i] < t.key[j]
	}
	a, b := t.cs[i], t.cs[j]
	if a.done || b.done {
		return !a.done || a.done && b.done && i < j
	}
	// Equal keys are one truck in two runs but for a hash collision: an
	// equality test first, cheaper than the comparison it mostly spares
	// (bytes.Compare was a tenth of a first merge: BenchmarkMergeFirst).
	if string(a.id) == string(b.id) {
		return i < j
	}
	return bytes.Compare(a.id, b.id) < 0
}

// appendPositions appends ps to dst as points without attributes.
func appendPositions(dst []Point, ps []fleet.Position) []Point {
	for i := range ps {
		dst = append(dst, Point{Position: ps[i]})
	}
	return dst
}

// compact merges every run of p into one of one truck per block: done
// once p's hour is over, so that a finished hour costs one index lookup
// per truck, its points sit together, and each truck's block has its own
// bounding box for Within.
func (h *History) compact(p *partition) error {
	h.mu.Lock()
	runs := slices.Clone(p.runs)
	h.mu.Unlock()
	if len(runs) == 0 || len(runs) == 1 && !runs[0].grouped() {
		return nil
	}
	// Oldest data first: merged runs (higher levels) hold what came
	// before the level-0 runs written since.
	slices.SortFunc(runs, func(a, b *run) int {
		if a.level != b.level {
			return cmp.Compare(b.level, a.level)
		}
		return cmp.Compare(a.seq, b.seq)
	})
	return h.merge(p, runs, true)
}

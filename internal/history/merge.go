package history

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"path/filepath"
	"slices"
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
	pts   []Point
	buf   []byte
	idx   []byte // index entries [idxAt, idxAt+len(idx)/entrySize)
	idxAt int
	br    *bufio.Reader // blocks from pos on
	pos   int64
	done  bool
}

const (
	cursorIndexChunk = 1024     // entries per index read
	cursorBlockBuf   = 64 << 10 // bytes per block read
)

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
		c.id, c.pts = c.g.truck(c.k)
		c.hash = idHash(c.id)
		return nil
	}
	if c.i >= c.r.blocks {
		c.done = true
		return nil
	}
	if c.i < c.idxAt || c.i >= c.idxAt+len(c.idx)/entrySize {
		n := min(cursorIndexChunk, c.r.blocks-c.i)
		c.idx = slices.Grow(c.idx[:0], n*entrySize)[:n*entrySize]
		if _, err := c.r.f.ReadAt(c.idx, c.r.idxOff+int64(c.i)*entrySize); err != nil {
			return fmt.Errorf("history: %s: %w", c.r.path, err)
		}
		c.idxAt = c.i
	}
	c.e.get(c.idx[(c.i-c.idxAt)*entrySize:])
	if err := c.r.checkEntry(c.i, &c.e); err != nil {
		return err
	}
	c.i++
	if c.br == nil || c.pos != int64(c.e.off) {
		c.br = bufio.NewReaderSize(io.NewSectionReader(c.r.f, int64(c.e.off), c.r.idxOff-int64(c.e.off)), cursorBlockBuf)
		c.pos = int64(c.e.off)
	}
	c.buf = slices.Grow(c.buf[:0], int(c.e.length))[:c.e.length]
	if _, err := io.ReadFull(c.br, c.buf); err != nil {
		return fmt.Errorf("history: %s: block at %d: %w", c.r.path, c.e.off, err)
	}
	c.pos += int64(c.e.length)
	if err := c.r.decodeBlock(&c.e, c.buf, &c.g, nil); err != nil {
		return err
	}
	c.k = 0
	c.id, c.pts = c.g.truck(0)
	c.hash = idHash(c.id)
	return nil
}

func (c *cursor) compare(o *cursor) int {
	if c := cmp.Compare(c.hash, o.hash); c != 0 {
		return c
	}
	return bytes.Compare(c.id, o.id)
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
	if err := mergeRuns(runs, w.add); err != nil {
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
// per run. ps is valid only during the call.
func mergeRuns(runs []*run, fn func(hash uint64, id []byte, ps []Point) error) error {
	var q cursorHeap
	for i, r := range runs {
		c := &cursor{r: r, n: i}
		if err := c.next(); err != nil {
			return err
		}
		if !c.done {
			q.push(c)
		}
	}
	var id []byte
	var pts []Point
	for len(q) > 0 {
		id = append(id[:0], q[0].id...)
		hash := q[0].hash
		pts = pts[:0]
		// The runs holding the truck come to the top in run order (the
		// heap's tie-break: oldest first), so that its points are
		// usually in ts order already. Each is advanced where it stands
		// (its next truck sorts after this one) and sifted down: one
		// pass down the heap a truck, not a pop and a push.
		for len(q) > 0 && q[0].hash == hash && bytes.Equal(q[0].id, id) {
			c := q[0]
			pts = append(pts, c.pts...) // before next reuses c's block
			if err := c.next(); err != nil {
				return err
			}
			if c.done {
				q.pop()
			} else {
				q.down(0)
			}
		}
		if err := fn(hash, id, sortPoints(pts)); err != nil {
			return err
		}
	}
	return nil
}

// cursorHeap is a min-heap of cursors by (hash, ID, run order): a merge
// of Options.MergeFanIn runs picks each truck in a few comparisons rather than a
// pass over every run.
type cursorHeap []*cursor

func (q cursorHeap) less(i, j int) bool {
	if c := q[i].compare(q[j]); c != 0 {
		return c < 0
	}
	return q[i].n < q[j].n
}

func (q *cursorHeap) push(c *cursor) {
	*q = append(*q, c)
	h := *q
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (q *cursorHeap) pop() *cursor {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	*q = h[:last]
	q.down(0)
	return top
}

// down restores the heap below i after q[i] has grown.
func (q cursorHeap) down(i int) {
	h := q
	for {
		l, m := 2*i+1, i
		if l < len(h) && h.less(l, m) {
			m = l
		}
		if r := l + 1; r < len(h) && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// compact merges every run of p into one of one truck per block: done
// once p's hour is over, so that a finished hour costs one index lookup
// per truck, its points sit together, and each truck's block has its own
// bounding box for Within.
func (h *History) compact(p *partition) error {
	h.mu.Lock()
	runs := slices.Clone(p.runs)
	h.mu.Unlock()
	if len(runs) == 0 || len(runs) == 1 && runs[0].version != versionGrouped {
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

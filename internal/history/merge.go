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
	i     int
	e     entry
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
	if c.i >= c.r.trucks {
		c.done = true
		return nil
	}
	if c.i < c.idxAt || c.i >= c.idxAt+len(c.idx)/entrySize {
		n := min(cursorIndexChunk, c.r.trucks-c.i)
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
	id, pts, err := c.r.decodeBlock(&c.e, c.buf, c.pts[:0])
	c.pts = pts
	if err != nil {
		return err
	}
	c.id = append(c.id[:0], id...)
	return nil
}

func (c *cursor) compare(o *cursor) int {
	if c := cmp.Compare(c.e.hash, o.e.hash); c != 0 {
		return c
	}
	return bytes.Compare(c.id, o.id)
}

// merge replaces runs of p (one level, oldest first) by one run of the
// next level holding their points, each truck's sorted without
// duplicates. Memory: one block per input.
func (h *History) merge(p *partition, runs []*run) error {
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
	w, err := createRun(h.o.FS, path, p.hour, covers)
	if err != nil {
		return err
	}
	if err := mergeRuns(runs, w.Add); err != nil {
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

// mergeRuns calls fn with each truck of runs, in index order, with its
// points from every run sorted and without duplicates. Memory: one block
// per run. ps is valid only during the call.
func mergeRuns(runs []*run, fn func(id []byte, ps []Point) error) error {
	cs := make([]*cursor, len(runs))
	for i, r := range runs {
		cs[i] = &cursor{r: r}
		if err := cs[i].next(); err != nil {
			return err
		}
	}
	var id []byte
	var pts []Point
	hit := make([]*cursor, 0, len(cs))
	for {
		var lo *cursor
		for _, c := range cs {
			if !c.done && (lo == nil || c.compare(lo) < 0) {
				lo = c
			}
		}
		if lo == nil {
			return nil
		}
		id = append(id[:0], lo.id...)
		pts = pts[:0]
		// In run order (oldest first), so that a truck's points are
		// usually in ts order already.
		hit = hit[:0]
		for _, c := range cs {
			if !c.done && (c == lo || c.compare(lo) == 0) {
				hit = append(hit, c)
				pts = append(pts, c.pts...)
			}
		}
		for _, c := range hit {
			if err := c.next(); err != nil {
				return err
			}
		}
		if err := fn(id, sortPoints(pts)); err != nil {
			return err
		}
	}
}

// compact merges every run of p into one: done once p's hour is over, so
// that a finished hour costs one index lookup per truck and its points
// sit together.
func (h *History) compact(p *partition) error {
	h.mu.Lock()
	runs := slices.Clone(p.runs)
	h.mu.Unlock()
	if len(runs) < 2 {
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
	return h.merge(p, runs)
}

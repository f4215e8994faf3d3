package history

import (
	"bytes"
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
)

// cursor walks one run's trucks in index order for a merge.
type cursor struct {
	r    *run
	i    int
	e    entry
	id   []byte
	pts  []Point
	buf  []byte
	ebuf [entrySize]byte
	done bool
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
	if c.i >= c.r.trucks {
		c.done = true
		return nil
	}
	if err := c.r.entry(c.i, c.ebuf[:], &c.e); err != nil {
		return err
	}
	c.i++
	var id []byte
	var err error
	c.buf, id, c.pts, err = c.r.block(&c.e, c.buf, c.pts[:0])
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

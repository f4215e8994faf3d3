package history

import (
	"bytes"
	"errors"
	"math"
	"slices"

	"github.com/fleetd/fleetd/internal/geo"
)

// Answer says how complete a query's answer is.
type Answer struct {
	// Incomplete is set when a run the range needs could not be read
	// (a corrupt file): the answer lacks its points.
	Incomplete bool
}

// runsIn returns the runs of the partitions overlapping [from, to],
// acquired (the caller releases them), and whether any of those
// partitions has unreadable runs.
func (h *History) runsIn(from, to uint32) ([]*run, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var rs []*run
	bad := false
	if to-from > uint32(len(h.mu.parts))*3600 {
		for _, p := range h.mu.parts {
			if p.hour >= from/3600 && p.hour <= to/3600 {
				rs = acquire(rs, p.runs)
				bad = bad || p.corrupt > 0
			}
		}
		return rs, bad
	}
	for hour := from / 3600; hour <= to/3600; hour++ {
		if p := h.mu.parts[hour]; p != nil {
			rs = acquire(rs, p.runs)
			bad = bad || p.corrupt > 0
		}
		if hour == math.MaxUint32 {
			break
		}
	}
	return rs, bad
}

// buffered appends the buffered points of id in [from, to].
func (h *History) buffered(id []byte, from, to uint32, dst []Point) []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range append(h.mu.sealed[:len(h.mu.sealed):len(h.mu.sealed)], h.mu.active) {
		for c := range b.pts {
			for i := range b.chunk(c) {
				p := &b.pts[c][i]
				if int(p.idLen) == len(id) && p.TS >= from && p.TS <= to && bytes.Equal(b.id(p), id) {
					dst = append(dst, b.point(p))
				}
			}
		}
	}
	return dst
}

// Trail appends to dst the points of truck id with from ≤ ts ≤ to, in ts
// order, without duplicates.
func (h *History) Trail(id []byte, from, to uint32, dst []Point) ([]Point, Answer, error) {
	ans, err := h.Walk(id, from, to, func(ps []Point) error {
		dst = append(dst, ps...)
		return nil
	})
	return dst, ans, err
}

// Walk calls fn with the points of truck id with from ≤ ts ≤ to, in ts
// order without duplicates, one hour partition at a time: its memory is
// one hour of one truck, however long the range. ps is valid only during
// the call; an error from fn stops the walk and is returned.
func (h *History) Walk(id []byte, from, to uint32, fn func(ps []Point) error) (Answer, error) {
	from = max(from, h.retentionCutoff()*3600)
	if from > to {
		return Answer{}, nil
	}
	// The buffers first: a point written meanwhile is then in a run as
	// well, and the hour's sort drops the copy.
	buffered := sortPoints(h.buffered(id, from, to, nil))
	hours, bad := h.hoursIn(from, to)
	ans := Answer{Incomplete: bad}
	for _, p := range buffered { // hours with buffered points only
		if n := len(hours); n == 0 || hours[n-1] != p.TS/3600 {
			hours = append(hours, p.TS/3600)
		}
	}
	slices.Sort(hours)
	hours = slices.Compact(hours)
	var buf, all []Point
	var scratch []byte
	var g group
	for _, hour := range hours {
		all = all[:0]
		rs := h.runsOf(hour)
		for _, r := range rs {
			var err error
			scratch, buf, err = r.find(id, scratch, &g, buf[:0])
			if err != nil {
				h.noteCorrupt(r, err)
				ans.Incomplete = true
				continue
			}
			for i := range buf {
				if buf[i].TS >= from && buf[i].TS <= to {
					all = append(all, buf[i])
				}
			}
		}
		releaseAll(rs)
		for len(buffered) > 0 && buffered[0].TS/3600 == hour {
			all = append(all, buffered[0])
			buffered = buffered[1:]
		}
		if all = sortPoints(all); len(all) > 0 {
			if err := fn(all); err != nil {
				return ans, err
			}
		}
	}
	return ans, nil
}

// hoursIn lists the partitions' hours overlapping [from, to], sorted, and
// whether any of them has unreadable runs.
func (h *History) hoursIn(from, to uint32) ([]uint32, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var hours []uint32
	bad := false
	for hour, p := range h.mu.parts {
		if hour >= from/3600 && hour <= to/3600 {
			hours = append(hours, hour)
			bad = bad || p.corrupt > 0
		}
	}
	slices.Sort(hours)
	return hours, bad
}

// runsOf returns hour's runs, acquired: the caller releases them.
func (h *History) runsOf(hour uint32) []*run {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.mu.parts[hour]; p != nil {
		return acquire(nil, p.runs)
	}
	return nil
}

// acquire appends rs to dst, taking a reference to each. h.mu is held.
func acquire(dst, rs []*run) []*run {
	for _, r := range rs {
		r.acquire()
	}
	return append(dst, rs...)
}

func releaseAll(rs []*run) {
	for _, r := range rs {
		r.release()
	}
}

func (h *History) noteCorrupt(r *run, err error) {
	if r.bad.Swap(true) {
		return // counted and logged once per run
	}
	h.corrupt.Add(1)
	h.o.Logger.Error("history: a run failed a read; answers that need it are marked incomplete until 'fleetd repair' quarantines it", "file", r.path, "err", err)
}

// Region is the area of a Within query: a box, or a circle.
type Region struct {
	box                            geo.Box
	minLat, maxLat, minLon, maxLon int32
	wraps                          bool
	circle                         bool
	lat, lon, hav                  float64
}

// BoxRegion is a box query; MinLon > MaxLon crosses the antimeridian.
func BoxRegion(b geo.Box) Region {
	return Region{box: b, minLat: geo.ToFixed(b.MinLat), maxLat: geo.ToFixed(b.MaxLat),
		minLon: geo.ToFixed(b.MinLon), maxLon: geo.ToFixed(b.MaxLon), wraps: b.MinLon > b.MaxLon}
}

// CircleRegion is the region within radiusM metres of (lat, lon).
func CircleRegion(lat, lon, radiusM float64) Region {
	return Region{circle: true, lat: lat, lon: lon, hav: geo.MToHav(radiusM)}
}

// mayHold reports whether a run block's bounding box can meet the region.
func (r *Region) mayHold(e *entry) bool {
	if r.circle {
		b := geo.Box{MinLat: geo.FromFixed(e.minLat), MinLon: geo.FromFixed(e.minLon), MaxLat: geo.FromFixed(e.maxLat), MaxLon: geo.FromFixed(e.maxLon)}
		return geo.BoxMinHav(r.lat, r.lon, b) <= r.hav*(1+1e-9)
	}
	if e.maxLat < r.minLat || e.minLat > r.maxLat {
		return false
	}
	if r.wraps {
		return e.maxLon >= r.minLon || e.minLon <= r.maxLon
	}
	return e.maxLon >= r.minLon && e.minLon <= r.maxLon
}

// Contains reports whether a stored point is in the region.
func (r *Region) Contains(lat, lon int32) bool {
	if r.circle {
		return geo.Hav(r.lat, r.lon, geo.FromFixed(lat), geo.FromFixed(lon)) <= r.hav
	}
	if lat < r.minLat || lat > r.maxLat {
		return false
	}
	if r.wraps {
		return lon >= r.minLon || lon <= r.maxLon
	}
	return lon >= r.minLon && lon <= r.maxLon
}

// Visit is one truck's presence in a Within answer.
type Visit struct {
	ID      string
	FirstTS uint32
	LastTS  uint32
	Points  int // distinct points inside
}

// Within returns the trucks with at least one point inside the region
// with from ≤ ts ≤ to: when they were first and last seen inside, and how
// many of their points were. Every stored point in the range is tested
// (exact), blocks that lie outside by their bounding box or time range
// skipped unread (in a compacted hour, a block is one truck's).
func (h *History) Within(rg Region, from, to uint32) ([]Visit, Answer, error) {
	from = max(from, h.retentionCutoff()*3600)
	if from > to {
		return nil, Answer{}, nil
	}
	rs, bad := h.runsIn(from, to)
	defer releaseAll(rs)
	ans := Answer{Incomplete: bad}
	found := map[string][]Point{}
	var g group
	var buf []byte
	for _, r := range rs {
		var blockErr error
		err := r.scan(func(_ int, e *entry) bool {
			if e.maxTS < from || e.minTS > to || !rg.mayHold(e) {
				return true
			}
			if buf, blockErr = r.block(e, buf, &g); blockErr != nil {
				return false
			}
			for t := range g.trucks() {
				id, pts := g.truck(t)
				for i := range pts {
					if p := &pts[i]; p.TS >= from && p.TS <= to && rg.Contains(p.Lat, p.Lon) {
						found[string(id)] = append(found[string(id)], *p)
					}
				}
			}
			return true
		})
		if err == nil {
			err = blockErr
		}
		if err != nil {
			h.noteCorrupt(r, err)
			ans.Incomplete = true
		}
	}
	h.mu.Lock()
	for _, b := range append(h.mu.sealed[:len(h.mu.sealed):len(h.mu.sealed)], h.mu.active) {
		for c := range b.pts {
			for i := range b.chunk(c) {
				if p := &b.pts[c][i]; p.TS >= from && p.TS <= to && rg.Contains(p.Lat, p.Lon) {
					found[string(b.id(p))] = append(found[string(b.id(p))], b.point(p))
				}
			}
		}
	}
	h.mu.Unlock()
	out := make([]Visit, 0, len(found))
	for id, ps := range found {
		ps = sortPoints(ps)
		out = append(out, Visit{ID: id, FirstTS: ps[0].TS, LastTS: ps[len(ps)-1].TS, Points: len(ps)})
	}
	return out, ans, nil
}

// Export calls fn with every truck's points with from ≤ ts ≤ to, one hour
// partition at a time, oldest first, and within an hour truck by truck in
// index order, each truck's points sorted by ts without duplicates (a
// truck appears once per hour it has points in). It reads the runs
// written so far: buffered points are not included, so the engine writes
// its buffer first. Memory: one block per run of an hour. ps is valid only
// during the call; an error from fn stops the export and is returned.
func (h *History) Export(from, to uint32, fn func(id []byte, ps []Point) error) (Answer, error) {
	from = max(from, h.retentionCutoff()*3600)
	if from > to {
		return Answer{}, nil
	}
	hours, bad := h.hoursIn(from, to)
	ans := Answer{Incomplete: bad}
	var sel []Point
	for _, hour := range hours {
		rs := h.runsOf(hour)
		var fnErr error
		err := mergeRuns(rs, func(_ uint64, id []byte, ps []Point) error {
			sel = sel[:0]
			for i := range ps {
				if ps[i].TS >= from && ps[i].TS <= to {
					sel = append(sel, ps[i])
				}
			}
			if len(sel) == 0 {
				return nil
			}
			fnErr = fn(id, sel)
			return fnErr
		}, nil)
		releaseAll(rs)
		if fnErr != nil {
			return ans, fnErr
		}
		if re := (*runError)(nil); errors.As(err, &re) {
			h.noteCorrupt(re.r, re.err)
			ans.Incomplete = true // the rest of the hour is missing from the export
		} else if err != nil {
			return ans, err
		}
	}
	return ans, nil
}

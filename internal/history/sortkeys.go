package history

import (
	"cmp"
	"math/bits"
	"slices"
)

// keySorter orders a sealed buffer's points for writing: by (hour, hash)
// and, within one (hour, hash) — one truck's points, or rarely two IDs
// with one hash — by a tie. Its arrays are kept between the writer's
// buffers.
//
// It sorts buffer indices, not keys: the caller fills hash and hour (by
// buffer index), and order comes out as the indices in write order, with
// spans marking where each hour's points end. That is 16 bytes a point
// (8 of hash, 4 of hour, 4 of order) where sorted 16-byte keys and the
// scratch they were scattered into took 32: 4.6 MB of the 1M-truck
// sustained run's heap, whose sealed buffers reach 150,000 points.
type keySorter struct {
	hash  []uint64 // by buffer index: the ID's hash
	hour  []uint32 // by buffer index: ts / 3600
	order []uint32 // buffer indices in write order
	spans []hourSpan
	start []uint32 // bucket bounds
}

// hourSpan says that order[..end] up from the previous span's end holds
// the points of hour.
type hourSpan struct {
	hour uint32
	end  int
}

// reset sizes hash and hour for n points.
func (s *keySorter) reset(n int) {
	s.hash = slices.Grow(s.hash[:0], n)[:n]
	s.hour = slices.Grow(s.hour[:0], n)[:n]
}

// sort fills order and spans from hash and hour; tie compares two indices
// of equal hour and hash. Hashes are uniform, so it is a bucket sort:
// one counting pass over the hour and the hash's top bits (about four
// points a bucket), one scatter of the indices, then an insertion sort
// of each bucket on its hashes, gathered (a comparison sort of the large
// ones: a small fleet's trucks have many points a buffer). A buffer's
// comparison sort was a third of the writer's time (pdqsort's ~16
// comparisons a key at 40,000 keys; BenchmarkSortKeys). Buffers spanning
// more than 16 hours (replays of long outages) take the comparison sort.
func (s *keySorter) sort(tie func(x, y uint32) int) {
	n := len(s.hash)
	s.order = slices.Grow(s.order[:0], n)[:n]
	s.spans = s.spans[:0]
	if n == 0 {
		return
	}
	hash, hour, order := s.hash, s.hour, s.order
	lo, hi := hour[0], hour[0]
	for _, h := range hour {
		lo, hi = min(lo, h), max(hi, h)
	}
	inBucket := func(x, y uint32) int {
		if hash[x] != hash[y] {
			return cmp.Compare(hash[x], hash[y])
		}
		return tie(x, y)
	}
	hourBits := bits.Len32(hi - lo)
	if hourBits > 4 {
		for i := range order {
			order[i] = uint32(i)
		}
		slices.SortFunc(order, func(x, y uint32) int {
			if hour[x] != hour[y] {
				return cmp.Compare(hour[x], hour[y])
			}
			return inBucket(x, y)
		})
		for k, i := range order {
			if k+1 == n || hour[order[k+1]] != hour[i] {
				s.spans = append(s.spans, hourSpan{hour[i], k + 1})
			}
		}
		return
	}
	hashBits := min(max(bits.Len(uint(n/4)), 1), 16)
	bucket := func(i int) uint64 { return uint64(hour[i]-lo)<<hashBits | hash[i]>>(64-hashBits) }
	nb := 1 << (hourBits + hashBits)
	s.start = slices.Grow(s.start[:0], nb+1)[:nb+1]
	start := s.start
	clear(start)
	for i := range n {
		start[bucket(i)+1]++
	}
	for b := 1; b <= nb; b++ {
		start[b] += start[b-1]
	}
	// The scatter advances start[b] to bucket b's end, which is bucket
	// b+1's start: bucket b is then start[b-1]..start[b].
	for i := range n {
		b := bucket(i)
		order[start[b]] = uint32(i)
		start[b]++
	}
	var pair [32]struct {
		h uint64
		i uint32
	}
	from := uint32(0)
	for b := range nb {
		bk := order[from:start[b]]
		from = start[b]
		if len(bk) < 2 {
			continue
		}
		if len(bk) > len(pair) { // a truck's many points (a small fleet), or an unlucky bucket
			slices.SortFunc(bk, inBucket)
			continue
		}
		// The hashes gathered (their loads in flight together) and
		// compared here, tie (a call) only on equal ones.
		p := pair[:len(bk)]
		for x, i := range bk {
			p[x].h, p[x].i = hash[i], i
		}
		for x := 1; x < len(p); x++ {
			for y := x; y > 0 && (p[y].h < p[y-1].h || p[y].h == p[y-1].h && tie(p[y].i, p[y-1].i) < 0); y-- {
				p[y], p[y-1] = p[y-1], p[y]
			}
		}
		for x := range p {
			bk[x] = p[x].i
		}
	}
	prev := 0
	for h := range uint32(1) << hourBits {
		if end := int(start[(h+1)<<hashBits-1]); end > prev { // hours without points have no span
			s.spans = append(s.spans, hourSpan{lo + h, end})
			prev = end
		}
	}
}

package history

import (
	"cmp"
	"math/bits"
	"slices"
)

// keySorter is sortKeys' scratch, kept between the writer's buffers: the
// bucket counts alone are 256 KiB at a flush's 40,000 keys.
type keySorter struct {
	tmp         []writeKey
	start, next []uint32
}

// sortKeys orders keys by (hour, hash), and the keys of one (hour, hash)
// — one truck's points, or rarely two IDs with one hash — by tie. Hashes
// are uniform, so it is a bucket sort: one counting pass over the hour and
// the hash's top bits (about four keys a bucket), one scatter into tmp,
// then an insertion sort of each bucket (a comparison sort of the large
// ones: a small fleet's trucks have many points a buffer). A buffer's comparison sort was a
// third of the writer's time (pdqsort's ~16 comparisons a key at 40,000
// keys; BenchmarkSortKeys). Buffers spanning more than 16 hours (replays
// of long outages) take the comparison sort. It returns the sorted keys:
// keys, or the scratch it scattered them into (keys' memory becomes the
// scratch then, instead of a copy back).
func (s *keySorter) sortKeys(keys []writeKey, tie func(x, y writeKey) int) []writeKey {
	if len(keys) < 2 {
		return keys
	}
	lo, hi := keys[0].hour, keys[0].hour
	for _, k := range keys {
		lo, hi = min(lo, k.hour), max(hi, k.hour)
	}
	inBucket := func(x, y writeKey) int {
		if x.hash != y.hash {
			return cmp.Compare(x.hash, y.hash)
		}
		return tie(x, y)
	}
	hourBits := bits.Len32(hi - lo)
	if hourBits > 4 {
		slices.SortFunc(keys, func(x, y writeKey) int {
			if x.hour != y.hour {
				return cmp.Compare(x.hour, y.hour)
			}
			return inBucket(x, y)
		})
		return keys
	}
	hashBits := min(max(bits.Len(uint(len(keys)/4)), 1), 16)
	bucket := func(k *writeKey) uint64 { return uint64(k.hour-lo)<<hashBits | k.hash>>(64-hashBits) }
	nb := 1<<(hourBits+hashBits) + 1
	s.start = slices.Grow(s.start[:0], nb)[:nb]
	start := s.start
	clear(start)
	for i := range keys {
		start[bucket(&keys[i])+1]++
	}
	for b := 1; b < len(start); b++ {
		start[b] += start[b-1]
	}
	s.tmp = slices.Grow(s.tmp[:0], len(keys))[:len(keys)]
	tmp := s.tmp
	s.next = append(s.next[:0], start[:len(start)-1]...)
	next := s.next
	for i := range keys {
		b := bucket(&keys[i])
		tmp[next[b]] = keys[i]
		next[b]++
	}
	for b := range len(start) - 1 {
		bk := tmp[start[b]:start[b+1]]
		if len(bk) > 32 { // a truck's many points (a small fleet), or an unlucky bucket
			slices.SortFunc(bk, inBucket)
			continue
		}
		// The hashes compared here, tie (a call) only on equal ones.
		for i := 1; i < len(bk); i++ {
			for j := i; j > 0 && (bk[j].hash < bk[j-1].hash || bk[j].hash == bk[j-1].hash && tie(bk[j], bk[j-1]) < 0); j-- {
				bk[j], bk[j-1] = bk[j-1], bk[j]
			}
		}
	}
	s.tmp = keys[:0]
	return tmp
}

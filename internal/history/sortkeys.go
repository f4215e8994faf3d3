package history

import (
	"cmp"
	"math/bits"
	"slices"
)

// sortKeys orders keys by (hour, hash), and the keys of one (hour, hash)
// — one truck's points, or rarely two IDs with one hash — by tie. Hashes
// are uniform, so it is a bucket sort: one counting pass over the hour and
// the hash's top bits (about four keys a bucket), one scatter into tmp,
// then an insertion sort of each bucket (a comparison sort of the large
// ones: a small fleet's trucks have many points a buffer). A buffer's comparison sort was a
// third of the writer's time (pdqsort's ~16 comparisons a key at 40,000
// keys; BenchmarkSortKeys). Buffers spanning more than 16 hours (replays
// of long outages) take the comparison sort. tmp is scratch of at least
// len(keys); the sorted keys are in keys.
func sortKeys(keys, tmp []writeKey, tie func(x, y writeKey) int) {
	if len(keys) < 2 {
		return
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
		return
	}
	hashBits := min(max(bits.Len(uint(len(keys)/4)), 1), 16)
	bucket := func(k *writeKey) uint64 { return uint64(k.hour-lo)<<hashBits | k.hash>>(64-hashBits) }
	start := make([]int, 1<<(hourBits+hashBits)+1)
	for i := range keys {
		start[bucket(&keys[i])+1]++
	}
	for b := 1; b < len(start); b++ {
		start[b] += start[b-1]
	}
	tmp = tmp[:len(keys)]
	next := slices.Clone(start[:len(start)-1])
	for i := range keys {
		b := bucket(&keys[i])
		tmp[next[b]] = keys[i]
		next[b]++
	}
	for b := range len(start) - 1 {
		s := tmp[start[b]:start[b+1]]
		if len(s) > 32 { // a truck's many points (a small fleet), or an unlucky bucket
			slices.SortFunc(s, inBucket)
			continue
		}
		for i := 1; i < len(s); i++ {
			for j := i; j > 0 && inBucket(s[j], s[j-1]) < 0; j-- {
				s[j], s[j-1] = s[j-1], s[j]
			}
		}
	}
	copy(keys, tmp)
}

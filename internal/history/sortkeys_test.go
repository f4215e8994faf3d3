package history

import (
	"cmp"
	"slices"
	"testing"
)

// TestSortKeys compares the bucket sort with a comparison sort of the same
// order on random keys: few hours, many, a span past the radix pass's,
// and equal hashes (one truck's points, a few trucks' many, collisions).
func TestSortKeys(t *testing.T) {
	r := seeded(t)
	tie := func(x, y writeKey) int { return cmp.Compare(x.i, y.i) }
	full := func(x, y writeKey) int {
		return cmp.Or(cmp.Compare(x.hour, y.hour), cmp.Compare(x.hash, y.hash), tie(x, y))
	}
	var reused keySorter
	for round := range 200 {
		n := r.IntN(3000)
		hours := []uint32{1, 3, 300, 100000}[round%4]
		keys := make([]writeKey, n)
		for i := range keys {
			keys[i] = writeKey{hash: r.Uint64(), hour: 490000 + uint32(r.IntN(int(hours))), i: uint32(r.IntN(n + 1))}
			if i > 0 && r.IntN(4) == 0 {
				keys[i].hash = keys[r.IntN(i)].hash
			}
			if round%5 == 0 { // a few trucks with many points each
				keys[i].hash = uint64(r.IntN(3)) << 60
			}
			if r.IntN(8) == 0 {
				keys[i].hash &= 0xff // small hashes: the high digits equal
			}
		}
		want := slices.Clone(keys)
		slices.SortFunc(want, full)
		var s keySorter
		if round%2 == 0 {
			s = reused // scratch left by earlier rounds, larger or smaller
		}
		keys = s.sortKeys(keys, tie)
		reused = s
		if !slices.Equal(keys, want) {
			t.Fatalf("round %d (%d keys over %d hours): the order differs", round, n, hours)
		}
	}
}

// BenchmarkSortKeys sorts a sealed buffer's keys at a million trucks
// (40,000 points, one a truck, two hours) against slices.SortFunc.
func BenchmarkSortKeys(b *testing.B) {
	r := seeded(b)
	keys := make([]writeKey, 40000)
	for i := range keys {
		keys[i] = writeKey{hash: r.Uint64(), hour: 490000 + uint32(r.IntN(2)), i: uint32(i)}
	}
	tie := func(x, y writeKey) int { return cmp.Compare(x.i, y.i) }
	work := make([]writeKey, len(keys))
	var s keySorter
	b.Run("bucket", func(b *testing.B) {
		for b.Loop() {
			copy(work, keys)
			work = s.sortKeys(work, tie)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
	})
	b.Run("pdqsort", func(b *testing.B) {
		for b.Loop() {
			copy(work, keys)
			slices.SortFunc(work, func(x, y writeKey) int {
				return cmp.Or(cmp.Compare(x.hour, y.hour), cmp.Compare(x.hash, y.hash), tie(x, y))
			})
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
	})
}

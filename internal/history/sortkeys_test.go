package history

import (
	"cmp"
	"slices"
	"testing"
)

// TestSortKeys compares the bucket sort with a comparison sort of the same
// order on random points: few hours, many, a span past the bucket pass's,
// and equal hashes (one truck's points, a few trucks' many, collisions),
// with the sorter's arrays reused from earlier rounds, larger or smaller.
func TestSortKeys(t *testing.T) {
	r := seeded(t)
	tie := func(x, y uint32) int { return cmp.Compare(x, y) }
	var reused keySorter
	for round := range 200 {
		n := r.IntN(3000)
		hours := []uint32{1, 3, 300, 100000}[round%4]
		var s keySorter
		if round%2 == 0 {
			s = reused
		}
		s.reset(n)
		for i := range n {
			s.hash[i], s.hour[i] = r.Uint64(), 490000+uint32(r.IntN(int(hours)))
			if i > 0 && r.IntN(4) == 0 {
				s.hash[i] = s.hash[r.IntN(i)]
			}
			if round%5 == 0 { // a few trucks with many points each
				s.hash[i] = uint64(r.IntN(3)) << 60
			}
			if r.IntN(8) == 0 {
				s.hash[i] &= 0xff // small hashes: the high digits equal
			}
		}
		want := make([]uint32, n)
		for i := range want {
			want[i] = uint32(i)
		}
		slices.SortFunc(want, func(x, y uint32) int {
			return cmp.Or(cmp.Compare(s.hour[x], s.hour[y]), cmp.Compare(s.hash[x], s.hash[y]), tie(x, y))
		})
		var wantSpans []hourSpan
		for k, i := range want {
			if k+1 == n || s.hour[want[k+1]] != s.hour[i] {
				wantSpans = append(wantSpans, hourSpan{s.hour[i], k + 1})
			}
		}
		s.sort(tie)
		reused = s
		if !slices.Equal(s.order, want) {
			t.Fatalf("round %d (%d points over %d hours): the order differs", round, n, hours)
		}
		if !slices.Equal(s.spans, wantSpans) {
			t.Fatalf("round %d (%d points over %d hours): spans %v, want %v", round, n, hours, s.spans, wantSpans)
		}
	}
}

// BenchmarkSortKeys sorts a sealed buffer's points at a million trucks
// (40,000 points, one a truck, two hours) against slices.SortFunc.
func BenchmarkSortKeys(b *testing.B) {
	r := seeded(b)
	const n = 40000
	var s keySorter
	s.reset(n)
	for i := range n {
		s.hash[i], s.hour[i] = r.Uint64(), 490000+uint32(r.IntN(2))
	}
	tie := func(x, y uint32) int { return cmp.Compare(x, y) }
	b.Run("bucket", func(b *testing.B) {
		for b.Loop() {
			s.sort(tie)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
	})
	b.Run("pdqsort", func(b *testing.B) {
		order := make([]uint32, n)
		for b.Loop() {
			for i := range order {
				order[i] = uint32(i)
			}
			slices.SortFunc(order, func(x, y uint32) int {
				return cmp.Or(cmp.Compare(s.hour[x], s.hour[y]), cmp.Compare(s.hash[x], s.hash[y]), tie(x, y))
			})
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
	})
}

package sim

import (
	"math"
	"math/bits"
	"time"
)

// histogram is a fixed-size log-linear latency histogram over microseconds
// (the HdrHistogram layout with 4 sub-bucket bits): values below 16 µs get
// one bucket each, and every power-of-two range above is split into 16
// equal buckets, so a bucket is at most 1/16 (6.25 %) of its values wide.
// Values from 2^histMaxExp µs (~19 h) up share the last bucket.
//
//	index:  0 … 15 | 16 … 31 | 32 … 47 | …
//	µs:     0 … 15 | 16 … 31 | 32 … 62 (step 2) | 64 … 124 (step 4) | …
//
// Its memory is fixed whatever the run length: histBuckets × 8 bytes.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    uint64 // µs
}

const (
	histSubBits = 4
	histSub     = 1 << histSubBits
	histMaxExp  = 36
	histBuckets = histSub + (histMaxExp-histSubBits)*histSub
)

// histIndex returns the bucket of a value in µs.
func histIndex(us uint64) int {
	if us < histSub {
		return int(us)
	}
	e := bits.Len64(us) - 1 // us in [2^e, 2^(e+1)), e >= histSubBits
	if e >= histMaxExp {
		return histBuckets - 1
	}
	sub := int(us>>(e-histSubBits)) & (histSub - 1)
	return histSub + (e-histSubBits)*histSub + sub
}

// histLow returns the smallest value (µs) in bucket i.
func histLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := (i-histSub)/histSub + histSubBits
	sub := uint64((i - histSub) % histSub)
	return (histSub + sub) << (e - histSubBits)
}

func (h *histogram) record(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.counts[histIndex(us)]++
	h.n++
	h.max = max(h.max, us)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

func (h *histogram) reset() { *h = histogram{} }

// quantile returns an estimate of the q-quantile (0 < q <= 1): the middle of
// the bucket holding the ceil(q·n)-th smallest value, capped at the maximum
// recorded. An empty histogram gives 0.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo := histLow(i)
			hi := lo + 1
			if i+1 < histBuckets {
				hi = histLow(i + 1)
			}
			mid := lo + (hi-lo-1)/2
			return time.Duration(min(mid, h.max)) * time.Microsecond
		}
	}
	panic("BUG: sim: histogram counts do not add up to n")
}

// maxValue returns the largest recorded duration (µs resolution).
func (h *histogram) maxValue() time.Duration {
	return time.Duration(h.max) * time.Microsecond
}

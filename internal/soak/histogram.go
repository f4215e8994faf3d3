package soak

import (
	"sync"
	"time"
)

// histogram counts durations in 1 ms buckets from 0 to histBuckets ms;
// longer ones share the last bucket (the maximum is kept exactly). Its
// memory is fixed whatever the run length, which matters here: the memory
// verdict covers the soak's own process.
type histogram struct {
	mu struct {
		sync.Mutex
		counts [histBuckets]uint64
		n      uint64
		max    time.Duration
	}
}

const histBuckets = 10_000 // 0–10 s

func (h *histogram) add(d time.Duration) {
	i := min(max(int(d/time.Millisecond), 0), histBuckets-1)
	h.mu.Lock()
	h.mu.counts[i]++
	h.mu.n++
	h.mu.max = max(h.mu.max, d)
	h.mu.Unlock()
}

// summary returns the count, the p50 and p99 (the upper edge of the bucket
// holding the quantile, so at most 1 ms high; the maximum for the last
// bucket) and the maximum.
func (h *histogram) summary() (n int64, p50, p99, mx time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := func(f float64) time.Duration {
		rank := uint64(f*float64(h.mu.n-1)) + 1 // 1-based rank of the quantile
		var seen uint64
		for i, c := range h.mu.counts {
			seen += c
			if seen >= rank {
				if i == histBuckets-1 {
					return h.mu.max
				}
				return min(time.Duration(i+1)*time.Millisecond, h.mu.max)
			}
		}
		return h.mu.max
	}
	if h.mu.n == 0 {
		return 0, 0, 0, 0
	}
	return int64(h.mu.n), q(0.50), q(0.99), h.mu.max
}

package engine

import "sync/atomic"

// rateWindow is how many whole seconds the update rate is averaged over.
const rateWindow = 10

// rateMeter counts events per second in a ring of one-second buckets,
// lock-free: the hot path does one or two atomic operations.
type rateMeter struct {
	sec   [rateWindow + 2]atomic.Int64 // which second each bucket holds
	count [rateWindow + 2]atomic.Int64
}

func (m *rateMeter) add(now int64, n int64) {
	i := now % int64(len(m.sec))
	if s := m.sec[i].Load(); s != now {
		// A new second reuses the bucket; a racing adder may lose a few
		// counts at the boundary, which a rate display tolerates.
		if m.sec[i].CompareAndSwap(s, now) {
			m.count[i].Store(0)
		}
	}
	m.count[i].Add(n)
}

// perSec averages the last rateWindow complete seconds.
func (m *rateMeter) perSec(now int64) float64 {
	var total int64
	for s := now - rateWindow; s < now; s++ {
		i := s % int64(len(m.sec))
		if m.sec[i].Load() == s {
			total += m.count[i].Load()
		}
	}
	return float64(total) / rateWindow
}

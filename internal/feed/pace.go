package feed

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"
)

// defaultWideBytesPerCore is Options.WideBytesPerSec's default per core
// (GOMAXPROCS): see doc.go, Conflation, for the arithmetic.
const defaultWideBytesPerCore = 32 << 20

// paceBurst is how far ahead of its rate the pacer lets writers go: a
// burst of this much of the rate is written without waiting.
const paceBurst = 100 * time.Millisecond

// errHubClosed interrupts a paced write when the hub closes.
var errHubClosed = errors.New("feed: hub closed")

// pacer shares a byte rate between the writers of conflated frames (all
// wide subscribers together) by virtual-time reservation (GCRA): each
// write reserves its bytes' share of the rate after every earlier
// reservation and waits until its turn, so writers are served in the
// order they asked, each at most one write ahead of the others.
type pacer struct {
	nsPerByte float64
	burst     int64 // ns
	mu        struct {
		sync.Mutex
		next int64 // hub clock (ns) at which the reserved bytes are all due
	}
}

func newPacer(bytesPerSec int64) *pacer {
	return &pacer{nsPerByte: 1e9 / float64(bytesPerSec), burst: int64(paceBurst)}
}

// defaultWideBytes is the default of Options.WideBytesPerSec.
func defaultWideBytes() int64 { return int64(runtime.GOMAXPROCS(0)) * defaultWideBytesPerCore }

// reserve books n bytes at hub time now and returns how long the caller
// must wait before writing them (0: write now).
func (pc *pacer) reserve(now int64, n int) time.Duration {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.mu.next = max(pc.mu.next, now) + int64(float64(n)*pc.nsPerByte)
	return time.Duration(max(0, pc.mu.next-now-pc.burst))
}

// pace waits until the hub's frame budget allows writing n bytes, or the
// hub closes (errHubClosed) or the client leaves (ctx's error).
func (p *pump) pace(ctx context.Context, n int) error {
	pc := p.h.pace
	if pc == nil {
		return nil
	}
	d := pc.reserve(p.h.clock(), n)
	if d == 0 {
		return nil
	}
	p.h.paceWaits.Add(1)
	if p.paceTimer == nil {
		p.paceTimer = time.NewTimer(d)
	} else {
		p.paceTimer.Reset(d)
	}
	select {
	case <-p.paceTimer.C:
		return nil
	case <-p.h.quit:
		p.paceTimer.Stop()
		return errHubClosed
	case <-ctx.Done():
		p.paceTimer.Stop()
		return ctx.Err()
	}
}

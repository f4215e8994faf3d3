package sim

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// pacer is a token bucket at batch granularity shared by the workers: each
// batch of n lines costs n/rate seconds of a virtual clock, and may start
// when the clock reaches it. The clock never lags real time by more than
// burst, so a generator that fell behind (a slow server) catches up by at
// most burst's worth of lines.
type pacer struct {
	perLine float64       // seconds per line
	burst   time.Duration // how far behind real time the clock may lag
	mu      struct {
		sync.Mutex
		next time.Time // when the next batch may start
	}
}

func newPacer(rate float64, start time.Time, burst time.Duration) *pacer {
	p := &pacer{perLine: 1 / rate, burst: burst}
	p.mu.next = start
	return p
}

// reserve books a batch of n lines and returns when it may start. It books
// nothing and returns false when the batch would not complete, at the
// paced rate, by deadline (zero: no deadline), so a run of duration D sends
// about rate×D lines.
func (p *pacer) reserve(n int, deadline time.Time) (time.Time, bool) {
	cost := time.Duration(float64(n) * p.perLine * float64(time.Second))
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if floor := now.Add(-p.burst); p.mu.next.Before(floor) {
		p.mu.next = floor
	}
	start := p.mu.next
	if !deadline.IsZero() && start.Add(cost).After(deadline) {
		return start, false
	}
	p.mu.next = start.Add(cost)
	return start, true
}

// bodyGate lets a worker reuse its request buffer safely. The HTTP
// transport may still be reading a request body after Client.Do returns
// (when the server answers before reading it all), and closes the body when
// it is done with it; for a retry it asks GetBody for another reader. The
// gate counts the readers it handed out over the buffer and not yet closed.
type bodyGate struct {
	pending atomic.Int32
	idle    chan struct{} // a token is sent whenever pending drops to 0
}

func newBodyGate() *bodyGate { return &bodyGate{idle: make(chan struct{}, 1)} }

// gatedBody is one reader over the buffer.
type gatedBody struct {
	bytes.Reader
	gate   *bodyGate
	closed atomic.Bool
}

// open returns a new reader over buf, counted until it is closed.
func (g *bodyGate) open(buf []byte) *gatedBody {
	g.pending.Add(1)
	b := &gatedBody{gate: g}
	b.Reset(buf)
	return b
}

// Close releases the reader; the transport may call it more than once.
func (b *gatedBody) Close() error {
	if b.closed.CompareAndSwap(false, true) && b.gate.pending.Add(-1) == 0 {
		select {
		case b.gate.idle <- struct{}{}:
		default:
		}
	}
	return nil
}

// wait returns true once every reader is closed, or false if that has not
// happened within timeout (or ctx ended first), in which case the buffer
// must not be reused.
func (g *bodyGate) wait(ctx context.Context, timeout time.Duration) bool {
	if g.pending.Load() == 0 {
		return true
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for g.pending.Load() != 0 {
		select {
		case <-g.idle: // maybe a stale token: the loop re-checks
		case <-timer.C:
			return false
		case <-ctx.Done():
			return g.pending.Load() == 0
		}
	}
	return true
}

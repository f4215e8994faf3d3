package gateway

import (
	"log/slog"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts what one gateway did. Every field is safe for concurrent
// use; the zero value is ready.
type Stats struct {
	Connections      atomic.Int64 // open now (TCP connections, MQTT sessions: 1 when connected)
	ConnectionsTotal atomic.Int64 // accepted since start
	Frames           atomic.Int64 // frames (packets, requests, messages) decoded
	Points           atomic.Int64 // points made durable
	Rejected         atomic.Int64 // points that failed Check, acknowledged, not applied
	BadFrames        atomic.Int64 // frames refused: bad CRC, length, syntax (the connection closed, or 400)
	Acks             atomic.Int64 // acknowledgements sent
	CommitErrors     atomic.Int64 // frames not acknowledged because the engine failed
	Timeouts         atomic.Int64 // connections closed for a silent device (handshake, idle, a frame not finished)
	ConnsRefused     atomic.Int64 // connections closed at once: the gateway's connection limit was reached
	AckLatency       Histogram    // frame received → acknowledgement sent
}

// Snapshot is Stats read once, for /v1/stats.
type Snapshot struct {
	Connections      int64   `json:"connections"`
	ConnectionsTotal int64   `json:"connections_total"`
	Frames           int64   `json:"frames"`
	Points           int64   `json:"points"`
	Rejected         int64   `json:"rejected_points"`
	BadFrames        int64   `json:"bad_frames"`
	Acks             int64   `json:"acks"`
	CommitErrors     int64   `json:"commit_errors"`
	Timeouts         int64   `json:"timeouts"`
	ConnsRefused     int64   `json:"connections_refused"`
	AckP50Ms         float64 `json:"ack_latency_p50_ms"`
	AckP99Ms         float64 `json:"ack_latency_p99_ms"`
}

// Snapshot reads the counters.
func (s *Stats) Snapshot() Snapshot {
	return Snapshot{
		Connections: s.Connections.Load(), ConnectionsTotal: s.ConnectionsTotal.Load(),
		Frames: s.Frames.Load(), Points: s.Points.Load(), Rejected: s.Rejected.Load(),
		BadFrames: s.BadFrames.Load(), Acks: s.Acks.Load(), CommitErrors: s.CommitErrors.Load(),
		Timeouts: s.Timeouts.Load(), ConnsRefused: s.ConnsRefused.Load(),
		AckP50Ms: ms(s.AckLatency.Quantile(0.5)), AckP99Ms: ms(s.AckLatency.Quantile(0.99)),
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Histogram counts durations in power-of-two buckets of microseconds
// (bucket i holds [2^(i-1), 2^i) µs; bucket 0 is under 1 µs), so a
// quantile is exact to a factor of two and reading costs 40 atomic loads.
type Histogram struct {
	b     [histBuckets]atomic.Int64
	sumUS atomic.Int64
}

const histBuckets = 40

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.b[min(bits.Len64(uint64(us)), histBuckets-1)].Add(1)
	h.sumUS.Add(us)
}

// Count is how many durations were observed.
func (h *Histogram) Count() int64 {
	var n int64
	for i := range h.b {
		n += h.b[i].Load()
	}
	return n
}

// Sum is the sum of the observed durations.
func (h *Histogram) Sum() time.Duration { return time.Duration(h.sumUS.Load()) * time.Microsecond }

// Quantile returns the upper bound of the bucket holding quantile q (0 if
// nothing was observed).
func (h *Histogram) Quantile(q float64) time.Duration {
	var c [histBuckets]int64
	var n int64
	for i := range h.b {
		c[i] = h.b[i].Load()
		n += c[i]
	}
	if n == 0 {
		return 0
	}
	rank := int64(q*float64(n-1)) + 1
	var seen int64
	for i, v := range c {
		if seen += v; seen >= rank {
			return time.Duration(uint64(1)<<i) * time.Microsecond
		}
	}
	return time.Duration(uint64(1)<<(histBuckets-1)) * time.Microsecond
}

// Limiter logs a line at most once per Every, counting the events it
// held back and reporting them on the next line it lets through.
type Limiter struct {
	Log   *slog.Logger
	Every time.Duration // default one minute

	mu struct {
		sync.Mutex
		last  time.Time
		quiet int64 // events since the last line
	}
}

// Warn logs msg with args, or counts it if a line went out less than
// Every ago.
func (l *Limiter) Warn(msg string, args ...any) {
	every := l.Every
	if every <= 0 {
		every = time.Minute
	}
	l.mu.Lock()
	now := time.Now()
	if !l.mu.last.IsZero() && now.Sub(l.mu.last) < every {
		l.mu.quiet++
		l.mu.Unlock()
		return
	}
	quiet := l.mu.quiet
	l.mu.last, l.mu.quiet = now, 0
	l.mu.Unlock()
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	log.Warn(msg, append(args, "similar_since_last_line", quiet)...)
}

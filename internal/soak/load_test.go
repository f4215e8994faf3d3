package soak

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// slowServer answers POST /v1/positions after a fixed delay, counting the
// lines it was sent.
type slowServer struct {
	delay time.Duration
	lines atomic.Int64
}

func (s *slowServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	time.Sleep(s.delay)
	s.lines.Add(int64(bytes.Count(b, []byte{'\n'})))
	w.Write([]byte(`{"accepted":1}`))
}

// TestLoadOpenLoop checks that a slow server does not lower the offered
// rate while a connection is free: with 150 ms answers, one connection
// can carry 1,000-line posts at about 6,700 lines/s; four carry the
// 20,000/s asked for. With one connection the rate is bounded by the
// latency, as it must be.
func TestLoadOpenLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 4 s")
	}
	for _, tc := range []struct {
		conns    int
		min, max float64 // acknowledged lines/s
	}{
		{4, 14_000, 21_000}, // 20,000 less the posts still in flight at the end
		{1, 4_000, 7_500},
	} {
		srv := &slowServer{delay: 150 * time.Millisecond}
		ts := httptest.NewServer(srv)
		o := Options{Target: ts.URL, Trucks: 10_000, Rate: 20_000, Conns: tc.conns, Batch: 1_000, WarmUp: time.Hour}
		start := time.Now()
		cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: tc.conns + 1}}
		ld := newLoad(o, cl, start, &probes{start: start, warmUp: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ld.run(ctx)
		cancel()
		el := time.Since(start).Seconds()
		cl.CloseIdleConnections()
		ts.Close()
		acked := float64(ld.acked.Load()) / el
		t.Logf("%d connections: %.0f lines/s acknowledged, %.0f offered, %d probe lines", tc.conns, acked,
			float64(ld.offered.Load())/el, ld.probes.n.Load())
		if acked < tc.min || acked > tc.max {
			t.Errorf("%d connections: %.0f lines/s acknowledged, want %.0f–%.0f", tc.conns, acked, tc.min, tc.max)
		}
		if got := srv.lines.Load() - int64(ld.probes.n.Load()); got < ld.acked.Load() {
			t.Errorf("server got %d load lines, %d acknowledged", got, ld.acked.Load())
		}
		if ld.failed.Load() != 0 {
			t.Errorf("%d failed posts", ld.failed.Load())
		}
	}
}

func TestPacer(t *testing.T) {
	start := time.Now()
	p := newPacer(1000, start, time.Second)
	for i := range 5 {
		if at := p.reserve(100); at != start.Add(time.Duration(i)*100*time.Millisecond) {
			t.Fatalf("reservation %d at %v, want %v", i, at.Sub(start), time.Duration(i)*100*time.Millisecond)
		}
	}
	// A clock lagging by more than the burst jumps to now − burst.
	p = newPacer(1000, start.Add(-time.Minute), time.Second)
	if lag := time.Since(p.reserve(100)); lag < time.Second || lag > 2*time.Second {
		t.Errorf("lag %v after a long stall, want about the 1 s burst", lag)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	if n, p50, p99, mx := h.summary(); n != 0 || p50 != 0 || p99 != 0 || mx != 0 {
		t.Errorf("empty: %d %v %v %v", n, p50, p99, mx)
	}
	for i := range 1000 {
		h.add(time.Duration(i)*time.Millisecond + 500*time.Microsecond) // 0.5 ms … 999.5 ms
	}
	n, p50, p99, mx := h.summary()
	if n != 1000 || p50 != 500*time.Millisecond || p99 != 990*time.Millisecond || mx != 999500*time.Microsecond {
		t.Errorf("n %d p50 %v p99 %v max %v", n, p50, p99, mx)
	}
	h.add(time.Minute) // past the last bucket: counted, kept as the maximum
	if n, _, _, mx := h.summary(); n != 1001 || mx != time.Minute {
		t.Errorf("after a minute: n %d max %v", n, mx)
	}
}

func TestProbesScan(t *testing.T) {
	start := time.Now().Add(-time.Minute)
	p := &probes{start: start, warmUp: 10 * time.Second}
	sent := start.Add(30 * time.Second)
	p.sent(7, 1764000000, sent)
	p.sent(8, 1764000001, sent)
	lines := []byte(`data: {"type":"position","id":"truck-0000042","lat":1,"lon":2,"ts":1764000000,"speed":0,"heading":0}

data: {"type":"position","id":"probe-0007","lat":1,"lon":2,"ts":1764000000,"speed":0,"heading":0}

data: {"type":"expired","id":"probe-0008","ts":1764000001}

data: {"type":"position","id":"probe-0008","lat":1,"lon":2,"ts":1763999999,"speed":0,"heading":0}

data: {"type":"position","id":"probe-9999","lat":1,"lon":2,"ts":1764000000,"speed":0,"heading":0}

`)
	p.scan(lines, sent.Add(42*time.Millisecond))
	n, p50, _, _ := p.delay.summary()
	if n != 1 || p50 != 42*time.Millisecond {
		t.Errorf("%d delays, p50 %v; want one of 42 ms", n, p50)
	}
	if got := p.unmatched.Load(); got != 1 {
		t.Errorf("%d unmatched, want 1 (probe-0008 with an old ts)", got)
	}
	// Before the warm-up nothing counts.
	p.scan(lines, start.Add(5*time.Second))
	if n, _, _, _ := p.delay.summary(); n != 1 || p.unmatched.Load() != 1 {
		t.Errorf("counted before the warm-up")
	}
}

func TestThousands(t *testing.T) {
	for _, tc := range []struct {
		x    float64
		want string
	}{{0, "0"}, {999.4, "999"}, {999.6, "1,000"}, {498_000, "498,000"}, {4_898_237.2, "4,898,237"}, {-1234, "-1,234"}} {
		if got := thousands(tc.x); got != tc.want {
			t.Errorf("thousands(%v) = %q, want %q", tc.x, got, tc.want)
		}
	}
}

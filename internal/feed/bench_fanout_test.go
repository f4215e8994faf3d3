//go:build linux

package feed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// BenchmarkFanoutSSE measures the whole live-feed path at issue 5's load:
// subs SSE subscribers on loopback, each with a 1% bbox of a 1M-truck US
// fleet, while 10,000-update batches are published at 500,000 updates/s
// (one iteration = one batch, paced at 20 ms; a slow iteration is caught
// up without sleeping). Clients read into 64 KiB buffers and discard the
// bytes, as cheap a client as there is.
//
// cpu-ns/event is the process's CPU time (user + system, from getrusage:
// publisher, hub, handlers, clients and their kernel work) divided by the
// events delivered; cores is that CPU time over the wall time. lost counts
// events dropped from full rings: non-zero means the machine did not keep
// up at this rate.
func BenchmarkFanoutSSE(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	batches := benchBatches(rng, 32)
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			benchFanout(b, rng, batches, n, 500_000)
		})
	}
}

func benchFanout(b *testing.B, rng *rand.Rand, batches [][]fleet.Update, n int, rate float64) {
	h, err := New(Options{WideHz: -1, MaxSubscribers: n})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(h.ServeSSE))
	tr := &http.Transport{ReadBufferSize: 64 << 10, MaxIdleConnsPerHost: n}
	cl := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		h.Close()
		wg.Wait()
		tr.CloseIdleConnections()
		srv.Close()
	}()
	for range n {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"?"+onePercentBox(rng), nil)
		resp, err := cl.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer resp.Body.Close()
			buf := make([]byte, 64<<10)
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					return
				}
			}
		})
	}
	for h.Stats().Subscribers != n {
		time.Sleep(time.Millisecond)
	}
	for _, ups := range batches[:4] { // grow rings
		h.PublishPositions(ups)
	}
	time.Sleep(200 * time.Millisecond)
	st0 := h.Stats()
	cpu0 := cpuTime()
	per := time.Duration(float64(len(batches[0])) / rate * float64(time.Second))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	next := start
	for i := 0; i < b.N; i++ {
		h.PublishPositions(batches[i%len(batches)])
		next = next.Add(per)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
	// Let the last flush interval go out.
	for range 100 {
		st := h.Stats()
		if st.Delivered >= st.Queued-st.Dropped {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	st := h.Stats()
	delivered := float64(st.Delivered - st0.Delivered)
	updates := float64(b.N * len(batches[0]))
	b.ReportMetric(float64(cpu.Nanoseconds())/max(delivered, 1), "cpu-ns/event")
	b.ReportMetric(float64(cpu.Nanoseconds())/updates, "cpu-ns/update")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
	b.ReportMetric(delivered/wall.Seconds(), "events/s")
	b.ReportMetric(float64(st.Dropped-st0.Dropped), "lost")
}

// cpuTime returns the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

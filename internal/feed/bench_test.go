package feed

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// The benchmark fleet: 1M trucks spread uniformly over the contiguous US.
const (
	usMinLat, usMaxLat = 24.5, 49.5
	usMinLon, usMaxLon = -125.0, -66.9
	benchFleet         = 1_000_000
	benchBatch         = 10_000
)

// benchBatches returns n batches of benchBatch random updates of the
// fleet. Each batch's IDs lie in one buffer, as the ingest decoder leaves
// them.
func benchBatches(rng *rand.Rand, n int) [][]fleet.Update {
	out := make([][]fleet.Update, n)
	for b := range out {
		ups := make([]fleet.Update, benchBatch)
		arena := make([]byte, 0, benchBatch*len("truck-0000000"))
		for i := range ups {
			start := len(arena)
			arena = fmt.Appendf(arena, "truck-%07d", rng.IntN(benchFleet))
			ups[i] = fleet.Update{ID: arena[start:len(arena):len(arena)], Position: fleet.MakePosition(
				usMinLat+rng.Float64()*(usMaxLat-usMinLat), usMinLon+rng.Float64()*(usMaxLon-usMinLon),
				1764000000+int64(b), rng.Float64()*120, rng.Float64()*359)}
		}
		out[b] = ups
	}
	return out
}

// onePercentBox returns a bbox query covering 1% of the US box (a tenth of
// each side) at a random place in it.
func onePercentBox(rng *rand.Rand) string {
	w, h := (usMaxLon-usMinLon)/10, (usMaxLat-usMinLat)/10
	lon := usMinLon + rng.Float64()*(usMaxLon-usMinLon-w)
	lat := usMinLat + rng.Float64()*(usMaxLat-usMinLat-h)
	return fmt.Sprintf("bbox=%.4f,%.4f,%.4f,%.4f", lon, lat, lon+w, lat+h)
}

// BenchmarkPublishPositions measures the ingest-side cost of the feed:
// PublishPositions of 10,000-update batches from a 1M-truck US fleet, with
// 0, 10 and 1,000 subscribers each filtering on a 1% bbox.
//
// ring=drained: after each batch the rings are emptied outside the timer,
// as by consumers that keep up (rings stay small and cache-warm).
// ring=full: nobody consumes, every ring is full at 4096 entries, and each
// queued event also drops the oldest — the worst case, every subscriber
// stalled, with rings far larger than the CPU caches.
func BenchmarkPublishPositions(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	batches := benchBatches(rng, 32)
	for _, n := range []int{0, 10, 1000} {
		for _, drained := range []bool{true, false} {
			if n == 0 && !drained {
				continue
			}
			mode := "full"
			if drained {
				mode = "drained"
			}
			b.Run(fmt.Sprintf("subs=%d/ring=%s", n, mode), func(b *testing.B) {
				benchPublish(b, rng, batches, n, drained)
			})
		}
	}
}

func benchPublish(b *testing.B, rng *rand.Rand, batches [][]fleet.Update, n int, drained bool) {
	h, err := New(Options{WideHz: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	var subs []*subscriber
	for range n {
		f, err := parseFilter(onePercentBox(rng))
		if err != nil {
			b.Fatal(err)
		}
		s, err := h.subscribe(&f)
		if err != nil {
			b.Fatal(err)
		}
		subs = append(subs, s)
	}
	defer func() {
		for _, s := range subs {
			h.unsubscribe(s)
		}
	}()
	tb := newTakeBuf()
	drain := func() {
		for _, s := range subs {
			for {
				if got, _ := s.take(tb); !got {
					break
				}
			}
		}
	}
	for _, ups := range batches { // grow rings and scratch
		h.PublishPositions(ups)
		if drained {
			drain()
		}
	}
	q0 := h.Stats().Queued
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.PublishPositions(batches[i%len(batches)])
		i++
		if drained {
			b.StopTimer()
			drain()
			b.StartTimer()
		}
	}
	updates := float64(i) * benchBatch
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/updates, "ns/update")
	b.ReportMetric(updates/b.Elapsed().Seconds(), "updates/s")
	b.ReportMetric(float64(h.Stats().Queued-q0)/updates, "matches/update")
}

// BenchmarkDeliveryDelaySSE measures the time from PublishPositions to the
// client having parsed the event, for an SSE subscriber (no filter) that
// keeps up, over a real loopback HTTP connection. The publisher sends a
// batch every millisecond, of 100 updates (100,000 events/s) or of 10
// (10,000 events/s); one benchmark iteration is one batch. p50/p99/max are
// reported in ms. With the default 50 ms FlushInterval the delay is
// bounded by the interval, or by the time to fill half the ring
// (2,048 events) when that comes first.
func BenchmarkDeliveryDelaySSE(b *testing.B) {
	for _, flush := range []time.Duration{defaultFlushInterval, 5 * time.Millisecond} {
		for _, perBatch := range []int{100, 10} {
			b.Run(fmt.Sprintf("flush=%v/rate=%dk", flush, perBatch), func(b *testing.B) {
				benchDelay(b, flush, perBatch)
			})
		}
	}
}

func benchDelay(b *testing.B, flush time.Duration, perBatch int) {
	h, err := New(Options{WideHz: -1, FlushInterval: flush})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(h.ServeSSE))
	defer srv.Close()
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()

	var sent []time.Time // publish time by batch number
	type receipt struct {
		batch int
		at    time.Time
	}
	got := make(chan []receipt, 1)
	stop := make(chan struct{})
	go func() {
		br := bufio.NewReaderSize(resp.Body, 64<<10)
		var rs []receipt
		defer func() { got <- rs }()
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			// data: {"type":"position","id":"b000000123-042",...
			const pre = `data: {"type":"position","id":"b`
			if len(line) > len(pre)+9 && string(line[:len(pre)]) == pre {
				n, _ := strconv.Atoi(string(line[len(pre) : len(pre)+9]))
				rs = append(rs, receipt{n, time.Now()})
			}
			if string(line) == "data: {\"type\":\"expired\",\"id\":\"end\",\"ts\":0}\n" {
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	ups := make([]fleet.Update, perBatch)
	pos := fleet.MakePosition(40, -74, 1764000000, 50, 90)
	b.ReportAllocs()
	next := time.Now()
	for i := 0; i < b.N; i++ {
		for k := range ups {
			ups[k] = fleet.Update{ID: fmt.Appendf(ups[k].ID[:0], "b%09d-%03d", i, k), Position: pos}
		}
		sent = append(sent, time.Now())
		h.PublishPositions(ups)
		next = next.Add(time.Millisecond)
		time.Sleep(time.Until(next))
	}
	h.PublishExpired([]byte("end"), 0, 0, 0)
	var rs []receipt
	select {
	case rs = <-got:
	case <-time.After(10 * time.Second):
		close(stop)
		rs = <-got
	}
	b.StopTimer()
	if len(rs) == 0 {
		b.Fatal("no event received")
	}
	delays := make([]float64, len(rs))
	for i, r := range rs {
		delays[i] = float64(r.at.Sub(sent[r.batch]).Nanoseconds()) / 1e6
	}
	slices.Sort(delays)
	q := func(p float64) float64 { return delays[min(int(p*float64(len(delays))), len(delays)-1)] }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(delays[len(delays)-1], "max-ms")
	b.ReportMetric(float64(b.N*perBatch-len(rs)), "lost")
}

// BenchmarkEncodePosition measures the JSON encoding of a position, which
// PublishPositions does once per matched update.
func BenchmarkEncodePosition(b *testing.B) {
	u := fleet.Update{ID: []byte("truck-0000042"), Position: fleet.MakePosition(40.7128123, -74.0061234, 1764000000, 52.5, 90)}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendPositionRecord(buf[:0], &u)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkSubscribe measures a subscribe plus an unsubscribe (two
// snapshot rebuilds) with 1,000 subscribers already on 1% bboxes.
func BenchmarkSubscribe(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	h, err := New(Options{WideHz: -1, MaxSubscribers: 1001})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	var subs []*subscriber
	for range 1000 {
		f, _ := parseFilter(onePercentBox(rng))
		s, err := h.subscribe(&f)
		if err != nil {
			b.Fatal(err)
		}
		subs = append(subs, s)
	}
	f, _ := parseFilter(onePercentBox(rng))
	b.ReportAllocs()
	for b.Loop() {
		s, err := h.subscribe(&f)
		if err != nil {
			b.Fatal(err)
		}
		h.unsubscribe(s)
	}
	for _, s := range subs {
		h.unsubscribe(s)
	}
}

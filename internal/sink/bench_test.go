package sink

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/vfs"
)

// benchDispatcher opens a dispatcher on the real filesystem (fsyncs
// included) with one sink of config c.
func benchDispatcher(b *testing.B, c Config) *Dispatcher {
	b.Helper()
	d, err := New(Options{FS: vfs.Default, Dir: b.TempDir(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	if _, err := d.Put("s", c); err != nil {
		b.Fatal(err)
	}
	return d
}

func benchAlert(i int) alert.Alert {
	return alert.Alert{Rule: "speeding", ID: fmt.Sprintf("truck-%07d", i%10000), State: alert.StateFiring,
		Severity: "warning", Since: 1764000000, TS: 1764000000 + uint32(i), Lat: 407128000, Lon: -740060000}
}

func okServer(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// waitDelivered waits until the sink acknowledged n events.
func waitDelivered(b *testing.B, d *Dispatcher, n int64) {
	deadline := time.Now().Add(5 * time.Minute)
	for d.Stats()["s"].Delivered < n {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d", d.Stats()["s"].Delivered, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkWebhookBurst: b.N events emitted at once, delivered to a
// loopback webhook (8 lanes, one POST each): events/s end to end.
func BenchmarkWebhookBurst(b *testing.B) {
	d := benchDispatcher(b, Config{Type: TypeWebhook, URL: okServer(b).URL, Secret: "k"})
	b.ReportAllocs()
	b.ResetTimer()
	t0 := time.Now()
	for i := range b.N {
		d.Emit(benchAlert(i))
	}
	waitDelivered(b, d, int64(b.N))
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
}

// BenchmarkWebhookPaced10k emits 10,000 events a second (in steps of
// 10 a millisecond) to a loopback webhook and reports the delivery
// latency (emitted → 2xx) p99, from the sink's histogram (power-of-two
// buckets: the figure is an upper bound within a factor of two).
func BenchmarkWebhookPaced10k(b *testing.B) {
	d := benchDispatcher(b, Config{Type: TypeWebhook, URL: okServer(b).URL, Secret: "k"})
	b.ReportAllocs()
	b.ResetTimer()
	t0 := time.Now()
	for i := range b.N {
		if i%10 == 0 {
			if ahead := time.Duration(i/10)*time.Millisecond - time.Since(t0); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		d.Emit(benchAlert(i))
	}
	waitDelivered(b, d, int64(b.N))
	st := d.Stats()["s"]
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
	b.ReportMetric(st.LatencyP99Ms, "p99_ms")
	b.ReportMetric(st.LatencyP50Ms, "p50_ms")
}

// BenchmarkNATSBurst: b.N events at once to an embedded NATS server
// (core: batches of up to 256 confirmed by a flush).
func BenchmarkNATSBurst(b *testing.B) {
	srv := startNATS(b)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	sub, _ := nc.SubscribeSync("fleet.alerts") // a subscriber, so the server delivers
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)
	d := benchDispatcher(b, Config{Type: TypeNATS, URL: srv.ClientURL(), Subject: "fleet.alerts"})
	b.ReportAllocs()
	b.ResetTimer()
	t0 := time.Now()
	for i := range b.N {
		d.Emit(benchAlert(i))
	}
	waitDelivered(b, d, int64(b.N))
	st := d.Stats()["s"]
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
	b.ReportMetric(st.LatencyP99Ms, "p99_ms")
}

// BenchmarkEmit is the ingest side: what Emit costs the goroutine that
// applied the update, with no sink, and with one whose receiver is dead
// and whose outbox already holds a million events.
func BenchmarkEmit(b *testing.B) {
	b.Run("no-sink", func(b *testing.B) {
		d, err := New(Options{FS: vfs.NewMem(), Dir: "s", Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		a := benchAlert(1)
		b.ReportAllocs()
		for b.Loop() {
			d.Emit(a)
		}
	})
	b.Run("dead-receiver-1M-pending", func(b *testing.B) {
		dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}))
		defer dead.Close()
		d := benchDispatcher(b, Config{Type: TypeWebhook, URL: dead.URL, MaxOutboxBytes: 4 << 30})
		for i := range 1_000_000 {
			d.Emit(benchAlert(i))
			if i%5_000 == 0 {
				d.Sync() // let the writer keep up (MaxStaged: 4 MiB is ~13,000 events)
			}
		}
		if d.Stats()["s"].Shed > 0 {
			b.Fatal("shed while filling")
		}
		for d.Stats()["s"].DiskBytes < 200<<20 {
			time.Sleep(10 * time.Millisecond)
		}
		a := benchAlert(1)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			d.Emit(a)
		}
		b.StopTimer()
		st := d.Stats()["s"]
		b.ReportMetric(float64(st.Depth), "pending")
		b.ReportMetric(float64(st.Shed), "shed")
	})
}

// BenchmarkEmitSync is what an ingest batch that caused events pays
// before it is acknowledged: one op is 10 events emitted then Sync (they
// are fsynced by the outbox's writer), from 8 goroutines at once per core
// (batches of concurrent connections), on the real filesystem, the
// receiver dead. fsyncs/op shows the group commit: concurrent batches
// share the writer's fsyncs, whichever lanes their events fall in (an
// outbox a lane: 2.5 fsyncs/op, 320 us/op; one outbox: 0.126, 34 us).
func BenchmarkEmitSync(b *testing.B) {
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer dead.Close()
	ff := vfs.NewFaultFS(vfs.Default) // no faults: it counts the fsyncs
	d, err := New(Options{FS: ff, Dir: b.TempDir(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Put("s", Config{Type: TypeWebhook, URL: dead.URL}); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	syncs0 := ff.Count(vfs.OpSync)
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(seq.Add(10))
			for k := range 10 {
				d.Emit(benchAlert(i + k))
			}
			d.Sync()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(ff.Count(vfs.OpSync)-syncs0)/float64(b.N), "fsyncs/op")
}

// BenchmarkEncodeEvent is Emit's encoding of one alert (the event, its
// ID, the JSON), with the coordinates written from their fixed-point
// form (what Emit does) and through float formatting (an Event whose
// coordinates are only floats).
func BenchmarkEncodeEvent(b *testing.B) {
	for _, fixed := range []bool{true, false} {
		b.Run(map[bool]string{true: "fixed", false: "float"}[fixed], func(b *testing.B) {
			var arr [emitBuf]byte
			a := benchAlert(3)
			b.ReportAllocs()
			for b.Loop() {
				e := alertEvent(&a)
				e.fixed = fixed
				_ = e.appendJSONStableID(arr[:0])
			}
		})
	}
}

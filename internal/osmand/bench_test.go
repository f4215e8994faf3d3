package osmand

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/wal"
)

func BenchmarkParse(b *testing.B) {
	v, _ := url.ParseQuery("id=phone-1&lat=40.7128&lon=-74.006&timestamp=1763999000&speed=10&bearing=90&altitude=12&batt=80&accuracy=5")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(v, Knots, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServer: 64 keep-alive clients sending GET positions into a
// real engine, in memory and with fsync before every 200. Clients and
// server share the machine.
func BenchmarkServer(b *testing.B) {
	for _, durable := range []bool{false, true} {
		name := "memory"
		if durable {
			name = "fsync-always"
		}
		b.Run(name, func(b *testing.B) {
			o := engine.Options{Logger: slog.New(slog.DiscardHandler)}
			if durable {
				o.DataDir, o.Fsync = filepath.Join(b.TempDir(), "data"), wal.FsyncAlways
			}
			eng, err := engine.Open(o)
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close()
			com := gateway.NewCommitter(eng, 0, 0)
			defer com.Close()
			s, err := Listen(Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, com)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const clients = 64
			tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			base := "http://" + s.Addr().String()
			ts := time.Now().Unix() - 3600
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			per := (b.N + clients - 1) / clients
			for w := range clients {
				wg.Go(func() {
					for k := range per {
						res, err := c.Get(fmt.Sprintf("%s/?id=phone-%d&lat=40.%d&lon=-74&timestamp=%d&speed=10", base, w, k, ts+int64(k)))
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if res.StatusCode != 200 {
							b.Errorf("status %d", res.StatusCode)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(per*clients)/time.Since(start).Seconds(), "requests/s")
			b.ReportMetric(float64(s.Stats.AckLatency.Quantile(0.99).Microseconds())/1000, "p99-ack-ms")
		})
	}
}

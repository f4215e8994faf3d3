package soak

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/feed"
	"github.com/fleetd/fleetd/internal/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunShort soaks a small in-process server for a few seconds: the
// report must have samples, the load offered and acknowledged, probe
// delays from reading subscribers, trucks that expired under churn, and
// every goroutine gone afterwards (goleak).
func TestRunShort(t *testing.T) {
	fleet, err := server.Open(server.Options{
		Engine: engine.Options{TTL: 2 * time.Second, SweepEvery: 200 * time.Millisecond},
		Feed:   feed.Options{Stall: time.Second, Buffer: 256},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fleet}
	go srv.Serve(ln)
	rep, err := Run(context.Background(), Options{
		Target: "http://" + ln.Addr().String(), Duration: 6 * time.Second, Trucks: 2000, Churn: 5, Rate: 4000,
		Subscribers: 20, Stalled: 0.5, SampleEvery: 500 * time.Millisecond, WarmUp: 2 * time.Second, Sample: SelfSample,
	}, nil)
	fleet.CloseStreams()
	srv.Shutdown(context.Background())
	if cerr := fleet.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Samples) < 8 {
		t.Fatalf("%d samples", len(rep.Samples))
	}
	last := rep.Samples[len(rep.Samples)-1]
	if last.Updates == 0 || last.Trucks <= 0 {
		t.Fatalf("no ingest: %+v", last)
	}
	if fleet.Engine.Stats().ExpiredTotal == 0 {
		t.Fatal("churn expired no truck")
	}
	in, d := rep.Ingest, rep.Delay
	t.Logf("ingest %+v\ndelay %+v", in, d)
	if in.Offered < 3000 || in.Offered > 5000 || in.Acked < 3000 || in.FailedPosts != 0 {
		t.Errorf("ingest %+v, want about 4,000 updates/s offered and acknowledged", in)
	}
	if in.Delivered <= 0 {
		t.Errorf("feed delivered %v events/s", in.Delivered)
	}
	if d.Probes == 0 || d.P99 <= 0 || d.Max < d.P99 || d.P99 > 5*time.Second {
		t.Errorf("delay %+v, want probes received in reasonable time", d)
	}
	var sb strings.Builder
	rep.Print(&sb)
	if !strings.Contains(sb.String(), "verdict:") || !strings.Contains(sb.String(), "updates/s acknowledged (offered") {
		t.Fatalf("no verdict:\n%s", sb.String())
	}
	sb.Reset()
	if err := rep.PrintCSV(&sb); err != nil || !strings.HasPrefix(sb.String(), "elapsed_s,") {
		t.Fatalf("csv: %v\n%s", err, sb.String())
	}
}

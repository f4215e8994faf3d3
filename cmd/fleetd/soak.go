package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/feed"
	"github.com/fleetd/fleetd/internal/server"
	"github.com/fleetd/fleetd/internal/soak"
	"github.com/fleetd/fleetd/internal/wal"
)

func init() {
	register("soak", "run a server in-process under churn and prove its memory stays flat", runSoak)
}

const soakHelp = `Usage: fleetd soak [flags]

Runs a fleetd server in this process, on a loopback port, with a durable
data directory in a temporary folder, and drives it for --duration: trucks
keep appearing and, once they stop reporting, expiring (--churn), while
live-feed subscribers connect, read, stall and vanish without closing
(--subscribers, --stalled). Subscribers each watch a bbox of about 1% of
the fleet's area and reconnect after 5-25 s.

The load is open-loop: --conns connections, each with one POST of --batch
updates in flight, share a pacer that offers --rate updates/s as long as a
connection is free, so a slow answer does not lower the offered rate.
Beside it, 50 probe positions a second are posted one per POST; subscribers
that keep reading time each probe's event from the start of its POST,
giving the delivery delay (the probes' own POST round trip is shown too).

Every --sample it records RSS, Go heap, heap objects, goroutines and open
file descriptors, prints them as a table (or CSV) with the acknowledged
updates/s, then the ingest rate after the warm-up (the first fifth of the
run, at least 15 s) against the offered rate, the feed's delivered and
dropped events/s, and the delivery delay (p50, p99, max). It ends with a
verdict on memory: after the warm-up, RSS grows at most 5%, and goroutines
and file descriptors return to their baseline once subscribers leave; the
verdict line repeats the ingest rate. Exit status 0 on PASS, 1 on FAIL.

The subscribers and the load generator run in the server's process, on
the same cores: a measure of the whole machine, not of the server alone.

Flags:
`

func runSoak(args []string) int {
	fs := flag.NewFlagSet("fleetd soak", flag.ContinueOnError)
	dur := fs.Duration("duration", 10*time.Minute, "how long to run")
	trucks := fs.Int("trucks", 100_000, "trucks reporting at any moment")
	churn := fs.Float64("churn", 0.1, "fraction of the fleet replaced by new trucks per minute")
	rate := fs.Float64("rate", 0, "updates per second offered (default trucks/2)")
	conns := fs.Int("conns", 4, "concurrent posting connections, one POST in flight on each")
	batch := fs.Int("batch", 10_000, "updates per POST (at most rate/10)")
	subs := fs.Int("subscribers", 100, "live-feed subscribers kept connected")
	stalled := fs.Float64("stalled", 0.1, "fraction of subscribers that stall or vanish")
	ttl := fs.Duration("ttl", time.Minute, "the server's --ttl: trucks silent this long expire")
	sample := fs.Duration("sample", 5*time.Second, "sampling interval")
	stall := fs.Duration("stream-stall", 5*time.Second, "the server's --stream-stall")
	asCSV := fs.Bool("csv", false, "print the samples as CSV")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole process (server, load and subscribers) to this file")
	fs.Usage = func() { fmt.Fprint(os.Stderr, soakHelp); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *trucks < 100 || *dur < 10*time.Second || *churn < 0 || *stalled < 0 || *stalled > 1 || *subs < 0 || *conns < 1 || *batch < 2 || *rate < 0 {
		fmt.Fprintln(os.Stderr, "fleetd soak: need --trucks ≥ 100, --duration ≥ 10s, 0 ≤ --stalled ≤ 1, --churn ≥ 0, --conns ≥ 1, --batch ≥ 2, --rate ≥ 0")
		return 2
	}
	dir, err := os.MkdirTemp("", "fleetd-soak-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetd soak:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fleet, err := server.Open(server.Options{
		Engine: engine.Options{DataDir: dir, Fsync: wal.FsyncInterval(10 * time.Millisecond), TTL: *ttl, SweepEvery: time.Second},
		Feed:   feed.Options{MaxSubscribers: max(*subs, 1), Stall: *stall, Buffer: 1024},
		Logger: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetd soak:", err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetd soak:", err)
		return 1
	}
	srv := &http.Server{Handler: fleet, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go srv.Serve(ln)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleetd soak:", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	fmt.Fprintf(os.Stderr, "soak: %v, %d trucks, churn %.2f/min, %d subscribers (%.0f%% stalled), TTL %v, server on %s\n",
		*dur, *trucks, *churn, *subs, *stalled*100, *ttl, ln.Addr())
	var out io.Writer = os.Stdout
	rep, err := soak.Run(ctx, soak.Options{
		Target: "http://" + ln.Addr().String(), Duration: *dur, Trucks: *trucks, Churn: *churn, Rate: *rate,
		Conns: *conns, Batch: *batch, Subscribers: *subs, Stalled: *stalled, SampleEvery: *sample, Sample: soak.SelfSample,
	}, func(s soak.Sample) {
		if !*asCSV {
			fmt.Fprintf(os.Stderr, "%6v  trucks %d  updates %d  subscribers %d  RSS %.1f MB  heap %.1f MB  objects %d  goroutines %d  fds %d\n",
				s.Elapsed, s.Trucks, s.Updates, s.Subscribers, float64(s.RSS)/1e6, float64(s.HeapInuse)/1e6, s.HeapObjects, s.Goroutines, s.FDs)
		}
	})
	fleet.CloseStreams()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	srv.Shutdown(sctx)
	cancel()
	cerr := fleet.Close()
	if err != nil || cerr != nil {
		fmt.Fprintln(os.Stderr, "fleetd soak:", errors.Join(err, cerr))
		return 1
	}
	if *asCSV {
		if err := rep.PrintCSV(out); err != nil {
			return 1
		}
	} else {
		rep.Print(out)
	}
	if !rep.Pass {
		return 1
	}
	return 0
}

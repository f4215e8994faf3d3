package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fleetd/fleetd/internal/sim"
)

func init() {
	register("sim", "simulate a fleet and load a server with its GPS updates (load generator)", runSim)
}

const simUsage = `Usage: fleetd sim [flags]

Simulates --trucks trucks driving between real places (GeoNames data) at
road speeds and POSTs their GPS updates as NDJSON to <target>/v1/positions,
over --conns keep-alive connections, paced to --rate, for --duration. It
first waits up to --ready-timeout for <target>/healthz to answer 200.

Progress goes to stderr (one live line on a terminal, a line every 5 s
otherwise); a summary goes to stdout at the end, also on Ctrl-C.

Examples:
  fleetd sim --trucks 1000000 --rate 1000000/s --duration 60s
  fleetd sim --target http://10.0.0.5:8080 --token-file token.txt --json
  fleetd sim --trucks 100000 --history 2h --duration 1s   # load two hours of history

Exit status: 0 when the server accepted updates; 1 when it accepted none,
could not be reached or refused the requests (4xx); 2 on bad flags.

Flags:
`

// simRate is the --rate flag: sim.ParseRate's forms ("50000", "50000/s").
type simRate float64

func (r *simRate) String() string { return strconv.FormatFloat(float64(*r), 'f', -1, 64) }

func (r *simRate) Set(s string) error {
	v, err := sim.ParseRate(s)
	if err != nil {
		return err
	}
	*r = simRate(v)
	return nil
}

// simOptions is what the flags decide besides sim.Config.
type simOptions struct {
	cfg      sim.Config
	asJSON   bool
	protocol string // http (sim.Run), or a device protocol (sim_protocol.go)
}

// simDefaultTarget is --target's default.
const simDefaultTarget = "http://127.0.0.1:8080"

func runSim(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one kills the process the default way.
	context.AfterFunc(ctx, stop)
	return simMain(ctx, args, os.Stdout, os.Stderr, simIsTerminal(os.Stderr))
}

// simMain is runSim with its environment passed in, for tests.
func simMain(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) int {
	opts, err := parseSimFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if opts.protocol != "http" {
		return simDevices(ctx, opts, stdout, stderr)
	}
	pp := &simProgress{w: stderr, tty: tty}
	sum, err := sim.Run(ctx, opts.cfg, pp.update)
	pp.finish()
	switch {
	case opts.asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(sum)
	case err == nil || sum.Requests > 0:
		printSimSummary(stdout, &sum)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fleetd sim: %s\n", strings.TrimPrefix(err.Error(), "sim: "))
		return 1
	}
	if sum.Accepted == 0 {
		msg := "no update was accepted"
		if sum.LastError != "" {
			msg += " (last error: " + sum.LastError + ")"
		}
		fmt.Fprintf(stderr, "fleetd sim: %s\n", msg)
		return 1
	}
	return 0
}

func parseSimFlags(args []string, stderr io.Writer) (*simOptions, error) {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), simUsage)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), simProtocolHelp)
	}
	o := &simOptions{}
	var rate simRate
	var tokenFile, region string
	fs.StringVar(&o.cfg.Target, "target", simDefaultTarget, "base URL of the fleetd server (a gateway's address with --protocol)")
	fs.StringVar(&o.protocol, "protocol", "http", "http (NDJSON POSTs), or a device protocol: teltonika, osmand, mqtt")
	fs.IntVar(&o.cfg.Trucks, "trucks", 10000, "number of simulated trucks")
	fs.Var(&rate, "rate", "updates per second in total, e.g. 50000 or 50000/s; 0 = as fast as the server takes them")
	fs.DurationVar(&o.cfg.Duration, "duration", 30*time.Second, "how long to send; 0 = until interrupted")
	fs.DurationVar(&o.cfg.History, "history", 0, "first post the fleet's past: every truck every 30 s over this long before now (e.g. 2h), as fast as the server takes it; then run live until --duration (counted from the start)")
	fs.IntVar(&o.cfg.Batch, "batch", sim.DefaultBatch, "updates per POST, at most")
	fs.IntVar(&o.cfg.Conns, "conns", sim.DefaultConns, "concurrent connections (one request in flight on each)")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the bearer token, if the server requires one")
	fs.Int64Var(&o.cfg.Seed, "seed", 1, "seed of the simulated fleet (same seed, same trucks)")
	fs.StringVar(&region, "region", "all", "where the trucks drive: all, us (continental US) or world (outside the US)")
	fs.DurationVar(&o.cfg.ReadyTimeout, "ready-timeout", sim.DefaultReadyTimeout, "how long to wait for <target>/healthz")
	fs.BoolVar(&o.asJSON, "json", false, "print only the summary, as JSON, on stdout")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) (*simOptions, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintf(stderr, "fleetd sim: %v\n", err)
		return nil, err
	}
	o.cfg.Rate = float64(rate)
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q (all settings are flags; see --help)", fs.Arg(0))
	case o.cfg.Trucks < 1:
		return bad("--trucks %d: want at least 1", o.cfg.Trucks)
	case o.cfg.Batch < 1:
		return bad("--batch %d: want at least 1", o.cfg.Batch)
	case o.cfg.Conns < 1 || o.cfg.Conns > 1024:
		return bad("--conns %d: want 1..1024", o.cfg.Conns)
	case o.cfg.Duration < 0:
		return bad("--duration %v: want >= 0", o.cfg.Duration)
	case o.cfg.History < 0:
		return bad("--history %v: want >= 0", o.cfg.History)
	case o.cfg.History > 0 && o.protocol != "http":
		return bad("--history is for --protocol http (a device sends its past as it happens)")
	case o.cfg.ReadyTimeout <= 0:
		return bad("--ready-timeout %v: want > 0", o.cfg.ReadyTimeout)
	case o.protocol != "http" && o.protocol != "teltonika" && o.protocol != "osmand" && o.protocol != "mqtt":
		return bad("--protocol %q: want http, teltonika, osmand or mqtt", o.protocol)
	}
	var err error
	if o.cfg.Region, err = sim.ParseRegion(region); err != nil {
		return bad("--region %q: want all, us or world", region)
	}
	if tokenFile != "" {
		if o.cfg.Token, err = readToken(tokenFile); err != nil {
			return bad("%v", err)
		}
	}
	return o, nil
}

// simProgress prints sim.Progress: on a terminal one line rewritten in
// place every second, otherwise a line every simLogEvery.
type simProgress struct {
	w       io.Writer
	tty     bool
	last    time.Duration // elapsed at the last printed line (not tty)
	printed bool          // a live line is on screen (tty)
}

const simLogEvery = 5 * time.Second

func (p *simProgress) update(pr sim.Progress) {
	line := fmt.Sprintf("%4ds  sent %s/s  acked %s/s  rejected %s  errors %d  p50 %s  p99 %s",
		int(pr.Elapsed.Seconds()), simGroup(int64(pr.SentPerSec)), simGroup(int64(pr.AcceptedPerSec)),
		simGroup(pr.Rejected), pr.HTTPErrors+pr.Overloaded+pr.TransportErrors, simMs(pr.P50), simMs(pr.P99))
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.printed = true
		return
	}
	if pr.Elapsed-p.last >= simLogEvery {
		p.last = pr.Elapsed
		fmt.Fprintln(p.w, line)
	}
}

// finish ends the live line so that what follows starts on its own line.
func (p *simProgress) finish() {
	if p.printed {
		fmt.Fprintln(p.w)
		p.printed = false
	}
}

func printSimSummary(w io.Writer, s *sim.Summary) {
	perSec := func(n int64) string {
		if s.DurationS <= 0 {
			return "-"
		}
		return simGroup(int64(float64(n)/s.DurationS)) + "/s"
	}
	fmt.Fprintf(w, "fleetd sim: %s trucks for %.1f s\n", simGroup(int64(s.Trucks)), s.DurationS)
	fmt.Fprintf(w, "  sent       %s updates in %s requests (%s)\n", simGroup(s.Sent), simGroup(s.Requests), perSec(s.Sent))
	fmt.Fprintf(w, "  accepted   %s (%s)\n", simGroup(s.Accepted), perSec(s.Accepted))
	fmt.Fprintf(w, "  rejected   %s\n", simGroup(s.Rejected))
	fmt.Fprintf(w, "  failed     %d HTTP errors, %d overloaded (429/503/507), %d without answer\n", s.HTTPErrors, s.Overloaded, s.TransportErrors)
	fmt.Fprintf(w, "  latency    p50 %.1f ms  p99 %.1f ms  max %.1f ms\n", s.P50Ms, s.P99Ms, s.MaxMs)
	if s.LastError != "" {
		fmt.Fprintf(w, "  last error %s\n", s.LastError)
	}
}

// simGroup formats n with thousands separators: 1234567 → "1,234,567".
func simGroup(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func simMs(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
}

// simIsTerminal reports whether f is a terminal (a character device).
func simIsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

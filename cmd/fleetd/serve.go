package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/api"
	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/feed"
	"github.com/fleetd/fleetd/internal/frontdoor"
	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/resp"
	"github.com/fleetd/fleetd/internal/server"
	"github.com/fleetd/fleetd/internal/sim"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wal"
)

func init() {
	register("serve", "run the HTTP API server (optionally with a simulated demo fleet)", runServe)
}

// Defaults of fleetd serve.
const (
	serveDefaultHTTP       = "127.0.0.1:8080"
	serveDefaultData       = "./fleetd-data"
	serveDefaultDemo       = 10000 // trucks when --demo has no number
	serveShutdownTimeout   = 15 * time.Second
	serveDemoLogEvery      = time.Minute
	serveReadHeaderTimeout = 10 * time.Second
	serveGCPercent         = 10
	serveMinProcs          = 2
)

// raiseMaxProcs gives the Go scheduler at least serveMinProcs Ps (on a
// one-CPU machine or container, or under taskset -c N, Go starts with
// one) unless GOMAXPROCS is set. Under --fsync always the log's fsync is
// a blocking system call that keeps its P for its whole ~0.3 ms (the
// runtime takes a P back from a system call only after a sysmon tick,
// which backs off to 10 ms on a quiet process): with one P nothing else
// runs meanwhile, no batch forms behind the fsync, and every request
// pays one. Measured with the OsmAnd gateway on one core (taskset -c 0,
// 512 connections, fsync always): one P, 3.4-4.4k requests/s and 48,189
// fsyncs for 50,000 requests; two, 25-91k requests/s.
func raiseMaxProcs(log *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if n := runtime.GOMAXPROCS(0); n < serveMinProcs {
		runtime.GOMAXPROCS(serveMinProcs)
		log.Info("GOMAXPROCS raised so that fsyncs do not stall the server (set GOMAXPROCS to choose)", "from", n, "to", serveMinProcs)
	}
}

const serveHelp = `Usage: fleetd serve [flags]

Runs the fleetd HTTP API (contract v1): POST /v1/positions to ingest,
GET /v1/trucks/{id}, /v1/nearby, /v1/within to query, the live feed
(/v1/stream as Server-Sent Events, /v1/ws as WebSocket), zones, alert rules
and alerts (/v1/zones, /v1/rules, /v1/alerts), /v1/stats, /metrics,
/debug/pprof/, /healthz, and the dashboard at /. Logs go to stderr; SIGINT or SIGTERM drains
in-flight requests, stops the demo, closes the engine and exits 0.

Flags:
  --http ADDR        listen address (default 127.0.0.1:8080, loopback only;
                     use :8080 to listen on every interface, :0 or
                     127.0.0.1:0 for a free port: the log line
                     msg=listening addr=… names the actual address)
  --data DIR         data directory, created if missing (default
                     ./fleetd-data): write-ahead log (wal/) and snapshots
                     (snap/). On start the newest valid snapshot is loaded
                     and the log replayed; /healthz is 503 until then.
                     --data "" keeps the fleet in memory only
  --fsync POLICY     when an acknowledged update is on disk:
                       always        (default) a 200 is sent only after the
                                     fsync covering the batch; concurrent
                                     batches share one fsync. Nothing
                                     acknowledged is lost, even on power cut
                       interval=10ms fsync every 10ms; kill -9 loses nothing,
                                     a power cut up to 10ms of acknowledged
                                     updates
                       never         the OS decides; a power cut can lose
                                     everything since the last segment
                     With --nats the default is interval=10ms: the stream
                     is what makes a 200 durable (always only adds apply
                     lag), and a node whose log a power cut shortened
                     reads the stream again
  --frontdoor        answer GET /v1/nearby, /v1/within, /v1/trucks/{id}
                     and /healthz on fleetd's own HTTP/1.1 loop, the rest
                     with Go's net/http (default true; about a third less
                     server CPU a query). Without TLS only. The same
                     handlers, auth and limits; --frontdoor=false leaves
                     every request to net/http
  --history          keep every accepted update, late ones included, in
                     DIR/history (default true; needs --data): trails,
                     trips and stops, "who was here" and export under
                     /v1/trucks/{id}/history, /trips, /v1/history/…, at
                     about 4 bytes a point on disk. --history=false keeps
                     the latest position only
  --history-retention D
                     drop history hours older than D (default 7d; D takes
                     d for days, or h, m, s), whole, logged and counted
  --history-max-disk SIZE
                     when history's files take more than SIZE (default
                     4GiB), compact past hours, then drop the oldest whole
                     (logged, counted); the current hour is always kept
  --history-buffer SIZE
                     points are buffered in memory up to SIZE before they
                     are written (default 2MiB); history's memory is
                     about 4-7x SIZE whatever the fleet and the retention
                     (two buffers and the writer's sort): when the disk
                     falls behind, ingest waits for it
  --snapshot-every SIZE
                     write a snapshot in the background once the log has
                     grown by SIZE (default 256MiB), and on shutdown; older
                     log segments are then deleted
  --ttl D            remove trucks fleetd has not heard from for D (default
                     24h; 0 keeps them forever). It counts from the last
                     accepted update by the server's clock, late (stale)
                     ones included, never from the device's ts: a tracker
                     that uploads yesterday's points is alive. A truck goes
                     between D and D+D/16 after it fell silent; restarted
                     servers count their recovered trucks as heard at
                     startup. Expiry runs in the background in small steps;
                     a summary is logged at most once a minute and
                     /v1/stats counts expired_total
  --max-clock-skew D
                     reject an update whose ts is more than D ahead of the
                     server's clock (default 5m; 0 = no limit), with a
                     reason naming the time: latest wins by ts, so one
                     point from a device whose clock runs a year ahead
                     would freeze its truck for a year. Late points are
                     never rejected, however old (they are counted as
                     "stale" when a newer one is stored). A numeric ts from
                     1e11 to 1e14 is taken as milliseconds
  --demo [N]         also run the simulator in-process against this server:
                     N trucks (default 10000 when N is omitted) driving
                     between real places, each reporting about every 2 s
  --demo-rate R      demo updates per second (default N/2), e.g. 5000,
                     50k/s, 600/min; 0 = as fast as possible
  --max-body SIZE    largest POST /v1/positions body (default 64MiB); larger
                     bodies get 413 and nothing is applied. SIZE is bytes or
                     a number with KB/MB/GB (powers of 1000) or K/KiB, M/MiB,
                     G/GiB (powers of 1024)
  --token-file F     require a bearer token ("Authorization: Bearer <token>")
                     or a dashboard session on every route but /healthz,
                     /v1/login, /v1/session and (see --metrics-public)
                     /metrics. F holds one token per line:
                       <token> [scopes] [name]     # comments, blank lines ok
                     scopes, comma-separated: ingest (POST /v1/positions),
                     read (queries, stats, live feed, dashboard), admin
                     (zones, rules, DELETE, /debug/pprof/), or all; a bare
                     token has all (a file with one token works as before).
                     No token: 401; a token without the route's scope: 403.
                     SIGHUP re-reads F (a bad file keeps the old tokens).
                     The dashboard logs in with a token and keeps only an
                     HttpOnly session cookie (12h)
  --metrics-public   serve /metrics without a token (default true): it
                     shows counts, rates, latencies and memory (trucks,
                     updates, requests per route, feed and alert totals,
                     Go runtime), never positions or IDs;
                     --metrics-public=false requires the read scope
  --allowed-hosts H,…
                     more Host names a loopback server answers (default:
                     loopback names and addresses only, e.g. localhost,
                     127.0.0.1, [::1]; any other Host gets 421, which stops
                     DNS-rebinding pages from reading the fleet). On a
                     non-loopback --http, if set, only these (and loopback)
                     are served. "*" allows any Host
  --allowed-origins O,…
                     web origins (https://ops.example.com) besides the
                     server's own that may change state (POST, PUT, DELETE,
                     WebSocket) from a browser; they also get CORS. Other
                     origins get 403. A POST needs a Content-Type a web form
                     cannot send (application/x-ndjson or application/json):
                     none, text/plain or a form type gets 415
  --tls-cert F, --tls-key F
                     serve HTTPS (HTTP/2 and HTTP/1.1, TLS 1.2+ with the Go
                     standard library's defaults) with this PEM certificate
                     chain and key; SIGHUP re-reads them. Session cookies
                     are then Secure
  --memory-limit SIZE
                     soft memory limit of the process (as GOMEMLIMIT), e.g.
                     2GiB: the Go runtime collects harder as the process
                     nears it (RSS stays near the live heap), and the engine
                     refuses new trucks (507) once its heap passes 85% of
                     it; known trucks keep updating. Default: none (or the
                     GOMEMLIMIT environment variable)
  --max-subscribers N
                     live-feed subscribers allowed at once (default 1000);
                     more get 503
  --stream-stall D   disconnect a live-feed subscriber that stays behind
                     (or whose writes do not complete) for D (default 30s);
                     one that falls behind briefly loses its oldest
                     position events and is told so ({"type":"lag"})
  --stream-wide-hz N a subscriber to the whole fleet (no ids, and no bbox or
                     one over 1024 1° cells) that gives no max_hz gets each
                     truck's newest position at most N times a second (default
                     1, at most 10), in frames built once for all such
                     subscribers: it may miss intermediate positions, never
                     the newest. -1 sends them every update, as narrow
                     subscribers get
  --stream-wide-rate SIZE
                     the bytes of such frames written per second to all
                     whole-fleet subscribers together (default 32MiB per
                     core): past it frames come less often and writes wait
                     their turn; 0: no limit
  --alert-max-pairs N
                     the (rule, truck) pairs whose condition is true, pending
                     or firing, tracked at most (default 4194304, ~600 MB when
                     full); past it a rule newly true for a truck is not
                     tracked, counted (alert_pairs_shed_total) and logged:
                     rules true for most of a large fleet at once
  --basemap-style URL
                     the dashboard's map style (a MapLibre style JSON URL);
                     default: built-in offline country and state outlines
  --shards N         store shards, rounded up to a power of two, at most 256
                     (default: twice the CPUs Go uses, from 2 to 8; more
                     shards spread writers, fewer make queries cheaper)
  --access-log       log one line per request (off by default)
  --resp ADDR        also serve the Redis protocol (RESP2) with Tile38's
                     commands on ADDR (off by default), e.g. 127.0.0.1:9851:
                     SET/GET/DEL/NEARBY/WITHIN/SCAN/STATS/SERVER/INFO on one
                     collection, for redis-cli and Redis/Tile38 clients.
                     Writes take the same path and durability as HTTP (a
                     reply means durable); with --token-file, AUTH <token>
                     with the same scopes. The log line msg="resp
                     listening" addr=... names the address
  --resp-collection NAME
                     the RESP collection's key (default fleet); other keys
                     get an error
  --nats URL,…       run as a node of a fleetd cluster on NATS JetStream
                     (off by default: a single node). Writes (HTTP and the
                     device gateways) are published to the stream, by
                     partition of the truck ID, and answered 200 once
                     JetStream has acknowledged them (stored on a quorum of
                     replicas); every node applies every partition in
                     stream order and serves every query. A write's answer
                     carries a token (Fleetd-Token header, "token" field);
                     a GET with that header or ?after=TOKEN waits (at most
                     2s, then 503) until this node has applied it. The
                     local write-ahead log and snapshots (--data) still
                     make restarts fast: the node resumes from the stream
                     positions it saved in DATA/cluster. Zones, rules and
                     sinks written on any node are kept in the bucket
                     STREAM-config and applied by every node; --resp is
                     not available in cluster mode
  --nats-stream NAME the stream (default fleetd; subjects NAME.p.N)
  --nats-replicas N  the stream's replicas when this node creates it
                     (default 3; 1 for a single NATS server)
  --nats-partitions N
                     partitions when this node creates the stream (default
                     8, at most 1024); an existing stream keeps its own
  --nats-name NAME   this node's name in /v1/stats (default host:port of
                     --http)
  --nats-snapshot-every D
                     how often this node publishes its snapshot, with the
                     stream positions it covers, to the object store
                     STREAM-snapshots, from which an empty node starts
                     (default 1m; 0: never)
  --nats-retain D    how much of its recent past the stream keeps beyond the
                     snapshot (default 1h): a node down for less catches up
                     from the stream with its history whole; longer, it
                     restores from the snapshot, and its history misses
                     the time it was down (0: keep only the tail of the
                     previous snapshot)
  -h, --help         this help
`

// demoFlag is --demo [N]: a boolean flag that may also carry a truck count,
// as --demo=N or, after rewriteDemoArgs, --demo N.
type demoFlag struct {
	on     bool
	trucks int
}

func (d *demoFlag) String() string {
	if d == nil || !d.on {
		return "off"
	}
	return strconv.Itoa(d.trucks)
}

func (d *demoFlag) Set(s string) error {
	switch s {
	case "true":
		d.on, d.trucks = true, serveDefaultDemo
		return nil
	case "false":
		d.on, d.trucks = false, 0
		return nil
	}
	n, err := parseTruckCount(s)
	if err != nil {
		return err
	}
	d.on, d.trucks = true, n
	return nil
}

// IsBoolFlag lets --demo stand alone, followed by another flag or nothing.
func (d *demoFlag) IsBoolFlag() bool { return true }

// parseTruckCount parses a truck count: a positive whole number, optionally with
// a k or M suffix (10k, 1M).
func parseTruckCount(s string) (int, error) {
	t, mult := s, 1
	switch {
	case strings.HasSuffix(t, "k"), strings.HasSuffix(t, "K"):
		t, mult = t[:len(t)-1], 1000
	case strings.HasSuffix(t, "M"):
		t, mult = t[:len(t)-1], 1000000
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 1 || n > math.MaxUint32/mult {
		return 0, fmt.Errorf("invalid truck count %q: want a whole number from 1 (e.g. 10000, 10k, 1M)", s)
	}
	return n * mult, nil
}

// rewriteDemoArgs turns "--demo N" into "--demo=N" when N is a count, so
// that the bool-style flag also takes a separate value. Arguments after
// "--" are left alone.
func rewriteDemoArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if (a == "--demo" || a == "-demo") && i+1 < len(args) {
			if _, err := parseTruckCount(args[i+1]); err == nil {
				out = append(out, a+"="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// sizeFlag is a byte size such as 64MiB.
type sizeFlag int64

func (f *sizeFlag) String() string { return strconv.FormatInt(int64(*f), 10) }

func (f *sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*f = sizeFlag(n)
	return nil
}

// parseSize parses a byte size: a number (fractions allowed) and an
// optional unit, B, KB/MB/GB/TB (powers of 1000) or K/KiB, M/MiB, G/GiB,
// T/TiB (powers of 1024), case-insensitive. The result is at least 1 byte.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	mult := map[string]float64{
		"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
	}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if mult == 0 || err != nil || num == "" || strings.ContainsAny(num, "eEnNiIxX_+-") {
		return 0, fmt.Errorf("invalid size %q: want e.g. 500KB, 64MiB or 1GiB", s)
	}
	b := math.Round(v * mult)
	if b < 1 || b > 1<<50 {
		return 0, fmt.Errorf("size %q out of range [1 byte, 1 PiB]", s)
	}
	return int64(b), nil
}

// serveConfig is the parsed command line.
type serveConfig struct {
	addr          string
	data          string
	demo          demoFlag
	demoRate      string
	maxBody       sizeFlag
	memLimit      sizeFlag
	tokenFile     string
	shards        int
	accessLog     bool
	fsync         string
	snapEvery     sizeFlag
	ttl           time.Duration
	maxSkew       time.Duration
	maxSubs       int
	stall         time.Duration
	wideHz        float64
	wideRate      int64 // feed.Options.WideBytesPerSec: 0 default, -1 none
	basemap       string
	origins       string
	hosts         string
	tlsCert       string
	tlsKey        string
	metricsPublic bool
	respAddr      string
	respKey       string
	frontdoor     bool
	history       bool
	histRetention dayDuration
	histMaxDisk   sizeFlag
	histBuffer    sizeFlag
	alertPairs    int
	gateways      gatewayFlags
	nats          string
	natsStream    string
	natsReplicas  int
	natsParts     int
	natsName      string
	natsSnapEvery time.Duration
	natsRetain    time.Duration
}

// clusterFsync is --fsync's default in cluster mode: acknowledgements
// wait for JetStream, not for the local log, and package cluster notices
// a log that lost records its saved positions count (see its doc.go).
const clusterFsync = "interval=10ms"

// flagGiven reports whether the command line set the flag name.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// snapshotEvery is --nats-snapshot-every (or --nats-retain) as
// cluster.Options takes it (0 there is the default, negative never or
// none).
func snapshotEvery(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// dayDuration is a duration flag that also takes days ("7d", "1d12h").
type dayDuration time.Duration

func (d *dayDuration) String() string { return time.Duration(*d).String() }

func (d *dayDuration) Set(s string) error {
	days := 0.0
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		v, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || v < 0 {
			return fmt.Errorf("%q: want a duration such as 7d, 36h or 90m", s)
		}
		days, s = v, s[i+1:]
	}
	var rest time.Duration
	if s != "" {
		var err error
		if rest, err = time.ParseDuration(s); err != nil {
			return fmt.Errorf("%q: want a duration such as 7d, 36h or 90m", s)
		}
	}
	*d = dayDuration(time.Duration(days*24*float64(time.Hour)) + rest)
	return nil
}

func parseServeFlags(args []string, stderr io.Writer) (*serveConfig, error) {
	c := &serveConfig{maxBody: api.DefaultMaxBody, snapEvery: engine.DefaultSnapshotEvery,
		histRetention: dayDuration(history.DefaultRetention), histMaxDisk: history.DefaultMaxDisk, histBuffer: history.DefaultBufferBytes}
	fs := flag.NewFlagSet("fleetd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, serveHelp, serveGatewayHelp) }
	fs.StringVar(&c.addr, "http", serveDefaultHTTP, "listen address")
	fs.StringVar(&c.data, "data", serveDefaultData, "data directory")
	fs.Var(&c.demo, "demo", "run the simulator with N trucks")
	fs.StringVar(&c.demoRate, "demo-rate", "", "demo updates per second")
	fs.Var(&c.maxBody, "max-body", "largest positions body")
	fs.Var(&c.memLimit, "memory-limit", "soft memory limit")
	fs.StringVar(&c.tokenFile, "token-file", "", "bearer token file")
	fs.IntVar(&c.shards, "shards", 0, "store shards")
	fs.BoolVar(&c.accessLog, "access-log", false, "log every request")
	fs.StringVar(&c.fsync, "fsync", "always", "fsync policy")
	fs.Var(&c.snapEvery, "snapshot-every", "log growth between snapshots")
	fs.DurationVar(&c.ttl, "ttl", 24*time.Hour, "expire trucks not heard from for this long")
	fs.DurationVar(&c.maxSkew, "max-clock-skew", api.DefaultMaxClockSkew, "reject ts further ahead of the server clock")
	fs.IntVar(&c.maxSubs, "max-subscribers", 1000, "live-feed subscriber limit")
	fs.DurationVar(&c.stall, "stream-stall", 30*time.Second, "disconnect subscribers behind for this long")
	fs.Float64Var(&c.wideHz, "stream-wide-hz", 1, "whole-fleet subscribers' default max_hz (conflated; -1: every update)")
	fs.Func("stream-wide-rate", "whole-fleet frames' bytes per second, all subscribers together (0: no limit)", func(v string) error {
		if strings.TrimSpace(v) == "0" {
			c.wideRate = -1
			return nil
		}
		n, err := parseSize(v)
		c.wideRate = n
		return err
	})
	fs.StringVar(&c.basemap, "basemap-style", "", "dashboard map style URL")
	fs.StringVar(&c.origins, "allowed-origins", "", "web origins that may change state")
	fs.StringVar(&c.hosts, "allowed-hosts", "", "more Host names to serve")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate chain (PEM)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fs.BoolVar(&c.metricsPublic, "metrics-public", true, "serve /metrics without a token")
	fs.StringVar(&c.respAddr, "resp", "", "RESP (Redis protocol) listen address")
	fs.StringVar(&c.respKey, "resp-collection", resp.DefaultCollection, "RESP collection key")
	fs.BoolVar(&c.frontdoor, "frontdoor", true, "answer hot GET queries on fleetd's own HTTP/1.1 loop")
	fs.BoolVar(&c.history, "history", true, "keep every update in DIR/history")
	fs.Var(&c.histRetention, "history-retention", "drop history older than this")
	fs.Var(&c.histMaxDisk, "history-max-disk", "history's disk limit")
	fs.Var(&c.histBuffer, "history-buffer", "history's write buffer")
	fs.IntVar(&c.alertPairs, "alert-max-pairs", alert.DefaultMaxPairs, "(rule, truck) pairs with a true condition tracked at most")
	c.gateways.register(fs)
	fs.StringVar(&c.nats, "nats", "", "NATS server URLs (cluster mode)")
	fs.StringVar(&c.natsStream, "nats-stream", cluster.DefaultStream, "JetStream stream name")
	fs.IntVar(&c.natsReplicas, "nats-replicas", cluster.DefaultReplicas, "stream replicas")
	fs.IntVar(&c.natsParts, "nats-partitions", 0, "stream partitions")
	fs.StringVar(&c.natsName, "nats-name", "", "this node's name in the cluster")
	fs.DurationVar(&c.natsSnapEvery, "nats-snapshot-every", cluster.DefaultSnapshotEvery, "how often to publish a snapshot to the cluster's object store (0: never)")
	fs.DurationVar(&c.natsRetain, "nats-retain", cluster.DefaultRetain, "how much of its recent past the stream keeps beyond the snapshot (0: only the previous snapshot's tail)")
	if err := fs.Parse(rewriteDemoArgs(args)); err != nil {
		return nil, err
	}
	if c.nats != "" && !flagGiven(fs, "fsync") {
		c.fsync = clusterFsync
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fleetd serve: unexpected argument %q\n\n%s", fs.Arg(0), serveHelp)
		return nil, errors.New("unexpected argument")
	}
	if _, err := c.gateways.options(); err != nil {
		fmt.Fprintf(stderr, "fleetd serve: %v\n", err)
		return nil, errors.New("bad gateway flags")
	}
	if _, err := wal.ParseFsync(c.fsync); err != nil {
		fmt.Fprintf(stderr, "fleetd serve: --fsync: %v\n", err)
		return nil, errors.New("bad --fsync")
	}
	if c.ttl < 0 {
		fmt.Fprintf(stderr, "fleetd serve: --ttl %v: want 0 (never) or a positive duration\n", c.ttl)
		return nil, errors.New("bad --ttl")
	}
	if c.maxSkew < 0 {
		fmt.Fprintf(stderr, "fleetd serve: --max-clock-skew %v: want 0 (no limit) or a positive duration\n", c.maxSkew)
		return nil, errors.New("bad --max-clock-skew")
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		fmt.Fprintf(stderr, "fleetd serve: --tls-cert and --tls-key go together\n")
		return nil, errors.New("bad --tls-cert/--tls-key")
	}
	if c.histRetention <= 0 {
		fmt.Fprintf(stderr, "fleetd serve: --history-retention %v: want a positive duration\n", c.histRetention.String())
		return nil, errors.New("bad --history-retention")
	}
	if !(c.wideHz == -1 || c.wideHz > 0 && c.wideHz <= 10) {
		fmt.Fprintf(stderr, "fleetd serve: --stream-wide-hz %v: want a rate in (0, 10], or -1 for every update\n", c.wideHz)
		return nil, errors.New("bad --stream-wide-hz")
	}
	if c.nats != "" && c.respAddr != "" {
		fmt.Fprintf(stderr, "fleetd serve: --resp is not available with --nats (cluster mode) yet\n")
		return nil, errors.New("bad --resp with --nats")
	}
	if c.natsReplicas < 1 || c.natsReplicas > 5 || c.natsParts < 0 || c.natsParts > 1024 {
		fmt.Fprintf(stderr, "fleetd serve: --nats-replicas %d / --nats-partitions %d: want 1..5 replicas and 1..1024 partitions\n", c.natsReplicas, c.natsParts)
		return nil, errors.New("bad --nats-replicas/--nats-partitions")
	}
	if c.shards < 0 || c.shards > 256 {
		fmt.Fprintf(stderr, "fleetd serve: --shards %d: want 1..256\n", c.shards)
		return nil, errors.New("bad --shards")
	}
	return c, nil
}

// skewOption maps --max-clock-skew (0 = no limit) to api.Options (where 0
// is the default and negative no limit).
func skewOption(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// readToken reads a token file (the auth package's format) and returns
// the first token with the ingest scope: what a client (fleetd sim, the
// in-process demo) posts with.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading --token-file: %w", err)
	}
	toks, err := auth.Parse(b)
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	for _, t := range toks {
		if t.Scope&auth.Ingest != 0 {
			return t.Secret, nil
		}
	}
	return "", fmt.Errorf("--token-file %s has no token with the ingest scope", path)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func runServe(args []string) int {
	c, err := parseServeFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := serve(c, log); err != nil {
		log.Error("fleetd serve failed", "error", err)
		return 1
	}
	return 0
}

func serve(c *serveConfig, log *slog.Logger) error {
	var (
		keys  *auth.Keyring
		token string // the demo's
		cert  *auth.Certificate
	)
	if c.tokenFile != "" {
		var err error
		if keys, err = auth.LoadKeyring(c.tokenFile); err != nil {
			return fmt.Errorf("reading --token-file: %w", err)
		}
		if c.demo.on {
			if token, err = readToken(c.tokenFile); err != nil {
				return fmt.Errorf("--demo: %w", err)
			}
		}
	}
	if c.tlsCert != "" {
		if c.demo.on {
			return errors.New("--demo with --tls-cert is not supported: run the demo on a plain-HTTP loopback server")
		}
		var err error
		if cert, err = auth.LoadCertificate(c.tlsCert, c.tlsKey); err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
	}
	rate := float64(c.demo.trucks) / 2
	if c.demo.on && c.demoRate != "" {
		var err error
		if rate, err = sim.ParseRate(c.demoRate); err != nil {
			return fmt.Errorf("--demo-rate: %w", err)
		}
	}
	if c.data != "" {
		if err := os.MkdirAll(c.data, 0o755); err != nil {
			return fmt.Errorf("creating --data directory: %w", err)
		}
	}
	fsync, err := wal.ParseFsync(c.fsync)
	if err != nil {
		return fmt.Errorf("--fsync: %w", err)
	}
	// The engine keeps its fleet in pointer-free slabs, so a collection
	// has almost nothing to scan and a tight GC target costs little CPU
	// while keeping RSS close to the live heap (measured at 1M trucks:
	// GOGC=10 ingests as fast as 25 with 2 bytes a truck less RSS, and
	// 100 would hold ~30 more). GOGC, if set, wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
	raiseMaxProcs(log)
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	// Listen first: until the engine is open (recovery, once it is
	// durable), /healthz answers 503 {"status":"starting"} and every other
	// route 503, so clients and load balancers can tell "starting" from
	// "down".
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("--http: %w", err)
	}
	handler := &serveSwap{}
	handler.set(http.HandlerFunc(serveStarting))
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: serveReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	var front httpFront = srv
	var fd *frontdoor.Server
	switch {
	case cert != nil:
		srv.TLSConfig = cert.Config()
		go func() { served <- srv.ServeTLS(ln, "", "") }()
	case c.frontdoor:
		fd = frontdoor.New(srv, api.QueryPath, log)
		front = fd
		go func() { served <- fd.Serve(ln) }()
	default:
		go func() { served <- srv.Serve(ln) }()
	}
	stopReload := serveReloadOnHUP(keys, cert, log)
	defer stopReload()
	log.Info("listening", "addr", ln.Addr().String(), "data", c.data)

	srvOpts := server.Options{
		Engine: engine.Options{
			Store:         store.Options{Shards: c.shards},
			DataDir:       c.data,
			Fsync:         fsync,
			SnapshotEvery: int64(c.snapEvery),
			TTL:           c.ttl,
		},
		API: api.Options{MaxBody: int64(c.maxBody), Keyring: keys, AccessLog: c.accessLog, MaxClockSkew: skewOption(c.maxSkew),
			MetricsPrivate: !c.metricsPublic},
		Guard: auth.GuardOptions{Loopback: serveIsLoopback(ln.Addr()), AllowedHosts: splitList(c.hosts),
			AllowedOrigins: splitList(c.origins)},
		Feed:          feed.Options{MaxSubscribers: c.maxSubs, Stall: c.stall, WideHz: c.wideHz, WideBytesPerSec: c.wideRate},
		BasemapStyle:  c.basemap,
		AlertMaxPairs: c.alertPairs,
		Logger:        log,
	}
	if fd != nil {
		srvOpts.API.Frontdoor = fd.Stats
	}
	if srvOpts.Gateways, err = c.gateways.options(); err != nil {
		_ = front.Close()
		<-served
		return err
	}
	if c.history && c.data != "" {
		srvOpts.Engine.History = &history.Options{Retention: time.Duration(c.histRetention), MaxDisk: int64(c.histMaxDisk),
			BufferBytes: int(c.histBuffer)}
	}
	if c.nats != "" {
		name := c.natsName
		if name == "" {
			host, _ := os.Hostname()
			name = host + ":" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		}
		srvOpts.Cluster = &cluster.Options{URLs: splitList(c.nats), Stream: c.natsStream, Replicas: c.natsReplicas,
			Partitions: c.natsParts, Name: name, SnapshotEvery: snapshotEvery(c.natsSnapEvery), Retain: snapshotEvery(c.natsRetain), Logger: log}
	}
	if c.memLimit > 0 {
		debug.SetMemoryLimit(int64(c.memLimit))
		srvOpts.Engine.MemoryLimit = int64(c.memLimit)
	}
	fleet, err := server.Open(srvOpts)
	if err != nil {
		_ = front.Close()
		<-served
		return err
	}
	eng := fleet.Engine
	handler.set(fleet)
	log.Info("ready", "trucks", eng.Store().Len(), "shards", eng.Store().NumShards(), "max_body", int64(c.maxBody),
		"auth", keys != nil, "tokens", keys.Len(), "tls", cert != nil, "memory_limit", int64(c.memLimit))

	respSrv, respDone, err := serveRESP(c, fleet, keys, log)
	if err != nil {
		_ = front.Close()
		<-served
		return errors.Join(err, fleet.Close())
	}

	demoCtx, stopDemo := context.WithCancel(context.Background())
	defer stopDemo()
	demoDone := make(chan struct{})
	if c.demo.on {
		cfg := sim.Config{
			Target: "http://" + serveLoopbackAddr(ln.Addr()),
			Trucks: c.demo.trucks,
			Rate:   rate,
			Token:  token,
			Seed:   1,
		}
		log.Info("demo started", "trucks", cfg.Trucks, "rate_per_sec", cfg.Rate, "target", cfg.Target)
		go func() {
			defer close(demoDone)
			runServeDemo(demoCtx, cfg, log)
		}()
	} else {
		close(demoDone)
	}

	var serveErr error
	select {
	case <-sigCtx.Done():
		log.Info("shutting down", "cause", context.Cause(sigCtx))
	case serveErr = <-served:
		log.Error("http server stopped", "error", serveErr)
	}
	stopSignals() // a second signal kills the process the default way

	stopDemo()
	<-demoDone
	// Live-feed streams never end by themselves: end them before draining.
	fleet.CloseStreams()
	ctx, cancel := context.WithTimeout(context.Background(), serveShutdownTimeout)
	defer cancel()
	if err := front.Shutdown(ctx); err != nil {
		log.Error("shutdown: in-flight requests did not finish in time; closing connections", "timeout", serveShutdownTimeout, "error", err)
		_ = front.Close()
		if serveErr == nil {
			serveErr = err
		}
	} else {
		log.Info("shutdown: http server drained")
	}
	if respSrv != nil {
		if err := respSrv.Close(); err != nil {
			log.Error("shutdown: closing the RESP listener", "error", err)
		}
		<-respDone
		log.Info("shutdown: resp server closed")
	}
	if err := fleet.Close(); err != nil {
		return fmt.Errorf("closing the engine: %w", err)
	}
	log.Info("shutdown: engine closed")
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// httpFront is what serves the HTTP listener: net/http's server, or the
// front door before it.
type httpFront interface {
	Shutdown(context.Context) error
	Close() error
}

// serveSwap is the server's handler: the starting handler until the
// engine is open, then the API.
type serveSwap struct {
	h atomic.Pointer[http.Handler]
}

func (s *serveSwap) set(h http.Handler) { s.h.Store(&h) }

func (s *serveSwap) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

// serveStarting answers while the engine opens, in the API's JSON shapes.
func serveStarting(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	if r.URL.Path == "/healthz" {
		_, _ = io.WriteString(w, `{"status":"starting"}`)
		return
	}
	_, _ = io.WriteString(w, `{"error":"fleetd is starting (opening its data); retry shortly"}`)
}

// serveIsLoopback reports whether the listener is on a loopback address
// only (then the Host check of auth.Guard applies).
func serveIsLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// serveReloadOnHUP re-reads the token file and the TLS key pair on SIGHUP
// until the returned stop is called. A failed reload keeps the old ones.
func serveReloadOnHUP(keys *auth.Keyring, cert *auth.Certificate, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			if keys != nil {
				if err := keys.Reload(); err != nil {
					log.Error("SIGHUP: token file not reloaded; the old tokens stay", "error", err)
				} else {
					log.Info("SIGHUP: token file reloaded", "tokens", keys.Len())
				}
			}
			if cert != nil {
				if err := cert.Reload(); err != nil {
					log.Error("SIGHUP: TLS key pair not reloaded; the old one stays", "error", err)
				} else {
					log.Info("SIGHUP: TLS key pair reloaded")
				}
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}

// serveLoopbackAddr is the address the in-process demo dials: the listener's,
// with an unspecified IP (0.0.0.0, ::) replaced by loopback.
func serveLoopbackAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}

// runServeDemo runs the simulator until ctx ends, logging progress now and then.
func runServeDemo(ctx context.Context, cfg sim.Config, log *slog.Logger) {
	var last time.Duration
	sum, err := sim.Run(ctx, cfg, func(p sim.Progress) {
		if p.Elapsed-last < serveDemoLogEvery {
			return
		}
		last = p.Elapsed
		log.Info("demo progress", "sent", p.Sent, "accepted", p.Accepted, "rejected", p.Rejected,
			"accepted_per_sec", math.Round(p.AcceptedPerSec), "p99", p.P99)
	})
	if err != nil && ctx.Err() == nil {
		log.Error("demo failed", "error", err, "last_error", sum.LastError)
		return
	}
	log.Info("demo stopped", "sent", sum.Sent, "accepted", sum.Accepted, "rejected", sum.Rejected,
		"updates_per_sec", math.Round(sum.UpdatesPerSec), "p99_ms", sum.P99Ms)
}

package osmand

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wal"
)

// BenchmarkParse: one query with every usual parameter, scanned and
// parsed as a request's are.
func BenchmarkParse(b *testing.B) {
	const q = "id=phone-1&lat=40.7128&lon=-74.006&timestamp=1763999000&speed=10&bearing=90&altitude=12&batt=80&accuracy=5&hdop=1.1"
	var p Params
	b.ReportAllocs()
	for b.Loop() {
		p.Reset()
		p.Add(q)
		if _, err := Parse(&p, Knots, now); err != nil {
			b.Fatal(err)
		}
	}
}

// countingEngine counts the engine batches the committer makes.
type countingEngine struct {
	*engine.Engine
	applies, points atomic.Int64
}

func (e *countingEngine) Apply(batch []fleet.Update) (store.Result, error) {
	e.applies.Add(1)
	e.points.Add(int64(len(batch)))
	return e.Engine.Apply(batch)
}

// reportBatch reports how many points the committer merged into one
// engine batch, on average: the requests of many connections share an
// Apply (and, with fsync, one fsync).
func (e *countingEngine) reportBatch(b *testing.B) {
	if n := e.applies.Load(); n > 0 {
		b.ReportMetric(float64(e.points.Load())/float64(n), "points/apply")
	}
}

// benchServer starts a Server on a real engine, in memory or with fsync
// before every 200.
func benchServer(b *testing.B, durable bool) (*Server, *countingEngine) {
	o := engine.Options{Logger: slog.New(slog.DiscardHandler)}
	if durable {
		o.DataDir, o.Fsync = filepath.Join(b.TempDir(), "data"), wal.FsyncAlways
	}
	eng, err := engine.Open(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close() })
	ce := &countingEngine{Engine: eng}
	com := gateway.NewCommitter(ce, 0, 0)
	b.Cleanup(com.Close)
	s, err := Listen(Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, com)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, ce
}

// cpuTime is the process's CPU time so far (user and system), which
// contention for the machine's cores inflates far less than wall time:
// per request, it is what client and server cost together.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var durability = []struct {
	name    string
	durable bool
}{{"memory", false}, {"fsync-always", true}}

// BenchmarkServer: 64 keep-alive clients (net/http's) sending GET
// positions into a real engine, in memory and with fsync before every
// 200. Clients and server share the machine: net/http's client costs
// about as much CPU as the server (see BenchmarkServerRaw).
func BenchmarkServer(b *testing.B) {
	for _, d := range durability {
		b.Run(d.name, func(b *testing.B) {
			s, eng := benchServer(b, d.durable)
			const clients = 64
			tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			base := "http://" + s.Addr().String()
			ts := time.Now().Unix() - 3600
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
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
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(per*clients), "cpu-µs/request")
			b.ReportMetric(float64(s.Stats.AckLatency.Quantile(0.99).Microseconds())/1000, "p99-ack-ms")
			eng.reportBatch(b)
		})
	}
}

// BenchmarkServerRaw is BenchmarkServer with a lean client: each
// connection writes a GET built in a reused buffer and reads the answer
// with a bufio.Reader, so most of the CPU is the server's; conns
// keep-alive connections, each with one request in flight (as a phone
// sends).
//
// With OSMAND_BENCH_ADDR=host:port the clients load that server instead
// (fleetd serve --osmand in another process, so that client and server
// can be pinned to different cores), and with OSMAND_BENCH_PID=pid also
// report that process's CPU per request (server-cpu-µs/request, from
// /proc/pid/stat).
func BenchmarkServerRaw(b *testing.B) {
	if addr := os.Getenv("OSMAND_BENCH_ADDR"); addr != "" {
		pid, _ := strconv.Atoi(os.Getenv("OSMAND_BENCH_PID"))
		for _, conns := range []int{64, 512} {
			b.Run(fmt.Sprintf("conns=%d/external", conns), func(b *testing.B) {
				cpu0 := procCPU(b, pid)
				rawLoad(b, addr, conns)
				if pid > 0 {
					b.ReportMetric(float64((procCPU(b, pid)-cpu0).Microseconds())/float64(b.N), "server-cpu-µs/request")
				}
			})
		}
		return
	}
	for _, conns := range []int{64, 512} {
		for _, d := range durability {
			b.Run(fmt.Sprintf("conns=%d/%s", conns, d.name), func(b *testing.B) {
				s, eng := benchServer(b, d.durable)
				rawLoad(b, s.Addr().String(), conns)
				b.ReportMetric(float64(s.Stats.AckLatency.Quantile(0.99).Microseconds())/1000, "p99-ack-ms")
				eng.reportBatch(b)
			})
		}
	}
}

// rawLoad sends about b.N GETs over conns keep-alive connections to addr,
// one in flight on each, and reports requests/s and the CPU of this
// process per request.
func rawLoad(b *testing.B, addr string, conns int) {
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
	}
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	per := (b.N + conns - 1) / conns
	// Each connection's timestamps rise by a second a request and end a
	// minute ago: none is ahead of the server's clock.
	ts := time.Now().Unix() - int64(per) - 60
	for w, c := range cs {
		wg.Go(func() {
			br := bufio.NewReader(c)
			var req []byte
			for k := range per {
				req = append(req[:0], "GET /?id=phone-"...)
				req = strconv.AppendInt(req, int64(w), 10)
				req = append(req, "&lat=40."...)
				req = strconv.AppendInt(req, int64(k), 10)
				req = append(req, "&lon=-74&timestamp="...)
				req = strconv.AppendInt(req, ts+int64(k), 10)
				req = append(req, "&speed=10 HTTP/1.1\r\nHost: fleetd\r\n\r\n"...)
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				if err := readAnswer(br); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(per*conns)/time.Since(start).Seconds(), "requests/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(per*conns), "cpu-µs/request")
}

// procCPU is process pid's CPU time so far (user and system, in clock
// ticks of 10 ms), 0 if pid is 0.
func procCPU(b *testing.B, pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command's closing parenthesis: state is the
	// first, utime and stime the 12th and 13th.
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stt) * 10 * time.Millisecond
}

// readAnswer reads one HTTP response and fails unless it is a 200.
func readAnswer(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("answer %q", line)
	}
	n := -1
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(h) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(h, []byte("Content-Length: ")); ok {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return fmt.Errorf("answer without Content-Length")
	}
	_, err = br.Discard(n)
	return err
}

package teltonika

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/wal"
)

// BenchmarkDecode: one 50-record Codec 8 packet with four IO elements a
// record.
func BenchmarkDecode(b *testing.B) {
	recs := recsAt(50, 1764000000)
	for i := range recs {
		recs[i].IO = IO{Mask: HasIgnition | HasMovement | HasExtVoltage | HasOdometer, Ignition: true, ExtVoltage: 12000, Odometer: 5}
	}
	frame := AppendFrame(nil, Codec8, recs)
	dst := make([]Record, 0, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		_, out, err := Decode(frame, dst[:0], DefaultMaxDataLen)
		if err != nil || len(out) != 50 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*50/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkServerThroughput: 1,000 connections (spread over 127.0.0.x
// source addresses) each sending 50-record packets (five IO elements a
// record, kept as attributes) and waiting for the ack, into a real engine in memory and with a write-ahead log fsynced
// before every ack. Clients and server share the machine.
func BenchmarkServerThroughput(b *testing.B) {
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
			raiseFileLimit(b, 4096)
			const conns, perPacket = 1000, 50
			conn := make([]net.Conn, conns)
			for i := range conn {
				c, err := dialFrom(s.Addr().String(), i)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Write(AppendIMEI(nil, fmt.Sprintf("35%013d", i))); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					b.Fatal(err)
				}
				conn[i] = c
			}
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			var wg sync.WaitGroup
			per := (b.N + conns - 1) / conns
			for i, c := range conn {
				wg.Go(func() {
					recs := recsAt(perPacket, 1764000000)
					for j := range recs { // what an FMB sends by default
						recs[j].Satellites = 12
						recs[j].IO = IO{Mask: HasIgnition | HasMovement | HasExtVoltage | HasBatteryVoltage | HasOdometer,
							Ignition: true, Movement: true, ExtVoltage: 24100, BatteryVoltage: 4050, Odometer: uint32(1e8 + j)}
					}
					var buf []byte
					var ack [4]byte
					for k := range per {
						for j := range recs {
							recs[j].TimeMs = (1764000000 + int64(k*perPacket+j)) * 1000
							recs[j].Lat = int32(400000000 + i)
						}
						buf = AppendFrame(buf[:0], Codec8, recs)
						if _, err := c.Write(buf); err != nil {
							b.Error(err)
							return
						}
						if _, err := io.ReadFull(c, ack[:]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			el := time.Since(start)
			b.ReportMetric(float64(per*conns*perPacket)/el.Seconds(), "records/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(per*conns*perPacket), "cpu-ns/record")
			b.ReportMetric(float64(s.Stats.AckLatency.Quantile(0.99).Microseconds())/1000, "p99-ack-ms")
		})
	}
}

// BenchmarkIdleConnections: the server's resident memory per idle
// connection (handshake done, waiting for a packet). The clients are raw
// blocking sockets outside the Go runtime, so the process's RSS growth is
// the server's. FLEETD_BENCH_CONNS sets the count (default 10,000); the
// benchmark raises its descriptor limit and spreads the clients over
// 127.0.0.x source addresses.
func BenchmarkIdleConnections(b *testing.B) {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("FLEETD_BENCH_CONNS")); err == nil && v > 0 {
		n = v
	}
	if lim := raiseFileLimit(b, uint64(2*n+1000)); lim < uint64(2*n+1000) {
		n = int(lim-1000) / 2
		b.Logf("descriptor limit %d (hard): measuring %d connections", lim, n)
	}
	for _, goroutines := range []bool{false, true} {
		name := "poller"
		if goroutines {
			name = "goroutines"
		}
		b.Run(name, func(b *testing.B) { benchIdle(b, n, goroutines) })
	}
}

func benchIdle(b *testing.B, n int, goroutines bool) {
	eng, err := engine.Open(engine.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	com := gateway.NewCommitter(eng, 0, 0)
	defer com.Close()
	s, err := Listen(Options{Addr: "127.0.0.1:0", MaxConns: 2 * n, Goroutines: goroutines, Logger: slog.New(slog.DiscardHandler)}, com)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	port := s.Addr().(*net.TCPAddr).Port
	b.ReportAllocs()
	for b.Loop() {
		rss0, heap0 := settle()
		fds := make([]int, 0, n)
		for i := range n {
			fd, err := rawDial(port, i)
			if err != nil {
				b.Fatalf("connection %d: %v", i, err)
			}
			fds = append(fds, fd)
		}
		for s.Stats.Connections.Load() != int64(n) {
			time.Sleep(10 * time.Millisecond)
		}
		rss1, heap1 := settle()
		b.ReportMetric(float64(rss1-rss0)/float64(n), "rss-bytes/conn")
		b.ReportMetric(float64(heap1-heap0)/float64(n), "heap+stack-bytes/conn")
		for _, fd := range fds {
			_ = syscall.Close(fd)
		}
		for s.Stats.Connections.Load() != 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// settle collects garbage and returns the RSS and the Go heap and stacks
// in use.
func settle() (rss, heapStack int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b, _ := os.ReadFile("/proc/self/statm")
	f := bytes.Fields(b)
	if len(f) > 1 {
		pages, _ := strconv.ParseInt(string(f[1]), 10, 64)
		rss = pages * int64(os.Getpagesize())
	}
	return rss, int64(m.HeapInuse + m.StackInuse)
}

// rawDial connects a blocking socket from 127.0.0.(2 + i%250), sends an
// IMEI and reads the 01.
func rawDial(port, i int) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, byte(2 + i%250)}}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if _, err := syscall.Write(fd, AppendIMEI(nil, fmt.Sprintf("35%013d", i))); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	var b [1]byte
	if n, err := syscall.Read(fd, b[:]); n != 1 || b[0] != 1 {
		syscall.Close(fd)
		return -1, fmt.Errorf("handshake: %d %v", n, err)
	}
	return fd, nil
}

func dialFrom(addr string, i int) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%250))}}
	return d.Dial("tcp", addr)
}

// raiseFileLimit raises the descriptor limit towards n (as far as the
// hard limit allows, or further as root) and returns the limit in force.
func raiseFileLimit(b *testing.B, n uint64) uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
	if l.Cur >= n {
		return l.Cur
	}
	want := l
	want.Cur, want.Max = n, max(n, l.Max)
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return n
	}
	l.Cur = l.Max // not allowed past the hard limit
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
	return l.Cur
}

// BenchmarkIdleFleet: the fleet shape at the machine's descriptor
// limit: FLEETD_BENCH_CONNS connections (default 10,000, fewer if the
// limit says so) that together send FLEETD_BENCH_RATE one-record packets
// a second (default 3,300, which is 100,000 devices reporting every 30 s)
// for FLEETD_BENCH_SECONDS (default 10), into an engine with a
// write-ahead log fsynced before every ack. It reports the server's RSS
// per connection under that load and the ack latency seen by the
// devices (write → ack read).
func BenchmarkIdleFleet(b *testing.B) {
	n, rate, secs := envInt("FLEETD_BENCH_CONNS", 10_000), envInt("FLEETD_BENCH_RATE", 3300), envInt("FLEETD_BENCH_SECONDS", 10)
	if lim := raiseFileLimit(b, uint64(2*n+1000)); lim < uint64(2*n+1000) {
		n = int(lim-1000) / 2
		b.Logf("descriptor limit %d (hard): %d connections", lim, n)
	}
	eng, err := engine.Open(engine.Options{DataDir: filepath.Join(b.TempDir(), "data"), Fsync: wal.FsyncAlways, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	com := gateway.NewCommitter(eng, 0, 0)
	defer com.Close()
	s, err := Listen(Options{Addr: "127.0.0.1:0", MaxConns: 2 * n, Logger: slog.New(slog.DiscardHandler)}, com)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	port := s.Addr().(*net.TCPAddr).Port
	for b.Loop() {
		rss0, _ := settle()
		fds := make([]int, n)
		for i := range fds {
			if fds[i], err = rawDial(port, i); err != nil {
				b.Fatal(err)
			}
		}
		const senders = 64
		var (
			mu  sync.Mutex
			lat []time.Duration
			wg  sync.WaitGroup
		)
		start := time.Now()
		end := start.Add(time.Duration(secs) * time.Second)
		interval := time.Duration(float64(time.Second) * senders / float64(rate))
		for w := range senders {
			wg.Go(func() {
				var mine []time.Duration
				var ack [4]byte
				next := start.Add(time.Duration(w) * interval / senders)
				for k := w; time.Now().Before(end); k += senders {
					time.Sleep(time.Until(next))
					next = next.Add(interval)
					fd := fds[k%n]
					frame := AppendFrame(nil, Codec8, []Record{{TimeMs: time.Now().UnixMilli() - 1000, Lat: int32(400000000 + k), Lon: -740000000, Speed: 50}})
					t0 := time.Now()
					if _, err := syscall.Write(fd, frame); err != nil {
						b.Error(err)
						return
					}
					if m, err := io.ReadFull(fdReader(fd), ack[:]); m != 4 || err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		el := time.Since(start)
		rss1, _ := settle()
		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatal("nothing sent")
		}
		b.ReportMetric(float64(len(lat))/el.Seconds(), "records/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ack-ms")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ack-ms")
		b.ReportMetric(float64(rss1-rss0)/float64(n), "rss-bytes/conn")
		for _, fd := range fds {
			_ = syscall.Close(fd)
		}
	}
}

type fdReader int

func (f fdReader) Read(b []byte) (int, error) {
	n, err := syscall.Read(int(f), b)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return max(n, 0), err
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// cpuTime is the process's CPU time so far (user and system): per record,
// what clients and server cost together, which contention for the cores
// inflates far less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

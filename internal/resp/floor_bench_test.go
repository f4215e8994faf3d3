package resp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
)

// BenchmarkRoundTripFloor measures servers' CPU per request-reply round
// trip over loopback TCP at 4 clients, each server in a child process
// (this test binary run again) so that its CPU is its own, as e2e's
// BenchmarkQueryCPU measures fleetd's:
//
//   - echo: the floor, a bare Go TCP loop (one goroutine per connection:
//     Read, then Write a fixed "+PONG\r\n") — what any Go server built on
//     net.Conn pays per round trip;
//   - echo1000: the same loop writing a 1,000-byte reply (about a NEARBY
//     LIMIT 10 reply of GeoJSON objects), the cost of a bigger write;
//   - ping: this package's Server answering PING on an empty engine.
//
// The three run side by side, in turns of 1,000 round trips a client, so
// that a shared machine's drifts (its round trips cost twice as much at
// some times as at others) fall on all three alike; each reports its
// server µs/op, and ping-over-echo is ping's minus echo's. Linux only
// (/proc). Use -benchtime 100000x or more: CPU comes in 10 ms ticks.
func BenchmarkRoundTripFloor(b *testing.B) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		b.Skip("needs /proc")
	}
	const clients, turn = 4, 1000
	servers := []*floorServer{
		startFloor(b, "echo", 7, clients),
		startFloor(b, "echo", 1000, clients),
		startFloor(b, "resp", 0, clients),
	}
	names := []string{"echo", "echo1000", "ping"}
	req := encode("PING")
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := make([]time.Duration, len(servers))
	for i, s := range servers {
		cpu0[i] = childCPU(b, s.cmd.Process.Pid)
	}
	for done := 0; done < b.N; {
		n := min(turn*clients, b.N-done)
		for _, s := range servers {
			if err := s.rounds(n, req); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
	b.StopTimer()
	us := make([]float64, len(servers))
	for i, s := range servers {
		us[i] = float64((childCPU(b, s.cmd.Process.Pid) - cpu0[i]).Nanoseconds()) / 1e3 / float64(b.N)
		b.ReportMetric(us[i], names[i]+"-server-µs/op")
	}
	b.ReportMetric(us[2]-us[0], "ping-over-echo-µs/op")
}

// floorServer is a child server process and the benchmark's connections
// to it.
type floorServer struct {
	cmd   *exec.Cmd
	conns []net.Conn
	brs   []*bufio.Reader
}

// floorChildEnv names the child's mode (echo or resp); floorReplyEnv the
// echo reply's size.
const (
	floorChildEnv = "FLEETD_RESP_FLOOR_CHILD"
	floorReplyEnv = "FLEETD_RESP_FLOOR_REPLY"
)

// startFloor starts a child server and dials it clients times; it is
// stopped at the benchmark's cleanup.
func startFloor(b *testing.B, mode string, reply, clients int) *floorServer {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), floorChildEnv+"="+mode, floorReplyEnv+"="+strconv.Itoa(reply))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &floorServer{cmd: cmd}
	b.Cleanup(func() {
		for _, nc := range s.conns {
			_ = nc.Close()
		}
		_ = stdin.Close() // the child exits at EOF
		if err := cmd.Wait(); err != nil {
			b.Errorf("floor child %s: %v", mode, err)
		}
	})
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("floor child %s: %v", mode, err)
	}
	for range clients {
		nc, err := net.Dial("tcp", strings.TrimSpace(addr))
		if err != nil {
			b.Fatal(err)
		}
		s.conns = append(s.conns, nc)
		s.brs = append(s.brs, bufio.NewReaderSize(nc, 16<<10))
	}
	if err := s.rounds(10*clients, encode("PING")); err != nil { // warm up
		b.Fatal(err)
	}
	return s
}

// rounds runs n round trips of req, spread over the connections, each
// connection in its own goroutine.
func (s *floorServer) rounds(n int, req []byte) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(s.conns))
	for i, nc := range s.conns {
		m := n / len(s.conns)
		if i < n%len(s.conns) {
			m++
		}
		br := s.brs[i]
		wg.Go(func() {
			for range m {
				if _, err := nc.Write(req); err != nil {
					errs <- err
					return
				}
				if err := readFloorReply(br); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// readFloorReply reads one simple-string or bulk-string reply.
func readFloorReply(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	switch {
	case len(line) > 0 && line[0] == '+':
		return nil
	case len(line) > 3 && line[0] == '$':
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil {
			return err
		}
		_, err = br.Discard(n + 2)
		return err
	}
	return fmt.Errorf("unexpected reply %q", line)
}

// childCPU is a process's user+system CPU time from /proc (USER_HZ 100).
func childCPU(b *testing.B, pid int) time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	sy, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+sy) * (time.Second / 100)
}

// floorChild runs the child's server if this process is one: it prints
// its address and serves until its stdin closes. It reports whether it ran.
func floorChild() bool {
	mode := os.Getenv(floorChildEnv)
	if mode == "" {
		return false
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	switch mode {
	case "echo":
		size, _ := strconv.Atoi(os.Getenv(floorReplyEnv))
		reply := []byte("+PONG\r\n")
		if size > len(reply) {
			body := bytes.Repeat([]byte{'x'}, size-len(fmt.Sprintf("$%d\r\n\r\n", size)))
			reply = AppendBulk(nil, body)
		}
		go serveEcho(ln, reply)
	case "resp":
		eng, err := engine.Open(engine.Options{Logger: quiet})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		s, err := New(Options{Engine: eng, Logger: quiet})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() { _ = s.Serve(ln) }()
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: want echo or resp\n", floorChildEnv, mode)
		os.Exit(2)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return true
}

// serveEcho is the floor: a goroutine per connection that answers each
// read with one write of reply.
func serveEcho(ln net.Listener, reply []byte) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer nc.Close()
			buf := make([]byte, 4<<10)
			for {
				if _, err := nc.Read(buf); err != nil {
					return // the benchmark closed it
				}
				if _, err := nc.Write(reply); err != nil {
					return
				}
			}
		}()
	}
}

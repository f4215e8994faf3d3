package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The peer in BenchmarkQueryCPU's side-by-side: Redis GEO (Debian's
// redis-server, installed when missing), holding the same trucks at the
// same positions as fleetd, on loopback, without persistence (its
// fastest; fleetd keeps its log and history on), queried by the same
// client code with the same points. Tile38, the other peer, is
// not obtainable here (the Go module proxy refuses its versions and no
// registry packages it).

// redisPeer is a running redis-server.
type redisPeer struct {
	cmd  *exec.Cmd
	addr string
	dir  string
}

// debianBinary finds name on PATH, installing Debian's package pkg when
// it is missing and apt-get can (as root): the error says why not.
func debianBinary(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	install := exec.Command("sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "+pkg)
	if out, err := install.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s is missing and installing %s failed: %v\n%s", name, pkg, err, out)
	}
	return exec.LookPath(name)
}

// redis returns the peer, started and loaded with s's fleet on first
// use; the benchmark is skipped when Redis cannot be had.
func (s *respBench) redis(b *testing.B) *redisPeer {
	s.peerOnce.Do(func() { s.peer, s.peerErr = startRedisPeer(b, s.dir, s.pass) })
	if s.peerErr != nil {
		b.Skipf("no Redis to compare with: %v", s.peerErr)
	}
	return s.peer
}

func startRedisPeer(b *testing.B, dir string, pass int) (*redisPeer, error) {
	bin, err := debianBinary("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for it
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	p := &redisPeer{addr: addr, dir: filepath.Join(dir, "redis")}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", p.dir, "--daemonize", "no", "--loglevel", "warning")
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	if err := p.load(b, pass); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// load waits for Redis to answer, then GEOADDs the fleet at pass's
// positions (pipelined, 100 trucks a command) and logs what it holds.
func (p *redisPeer) load(b *testing.B, pass int) error {
	var nc net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if nc, err = net.Dial("tcp", p.addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("redis-server did not start: %v", err)
	}
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 64<<10)
	const group = 100
	start := time.Now()
	per := respBenchFleet / respBenchClients
	errc := make(chan error, 1)
	go func() { // write while the replies are read
		bw := bufio.NewWriterSize(nc, 64<<10)
		var args []string
		flush := func() {
			if len(args) == 0 {
				return
			}
			fmt.Fprintf(bw, "*%d\r\n$6\r\nGEOADD\r\n$5\r\nfleet\r\n", len(args)+2)
			for _, a := range args {
				fmt.Fprintf(bw, "$%d\r\n%s\r\n", len(a), a)
			}
			args = args[:0]
		}
		for c := range respBenchClients {
			fleetPass(c, per, pass, func(id, lat, lon string) {
				if args = append(args, lon, lat, id); len(args) == 3*group {
					flush()
				}
			})
		}
		flush()
		errc <- bw.Flush()
	}()
	for range (respBenchFleet + group - 1) / group {
		line, err := br.ReadSlice('\n')
		if err != nil || line[0] != ':' {
			return fmt.Errorf("GEOADD reply %q: %v", line, err)
		}
	}
	if err := <-errc; err != nil {
		return err
	}
	took := time.Since(start)
	info, err := p.info(nc, br)
	if err != nil {
		return err
	}
	b.Logf("redis peer: %d trucks GEOADDed in %v (%.0f/s, %d trucks a command); used_memory %s B/truck, used_memory_rss %s B/truck",
		respBenchFleet, took.Round(time.Millisecond), respBenchFleet/took.Seconds(), group,
		perTruck(info["used_memory"]), perTruck(info["used_memory_rss"]))
	return nil
}

// info is Redis's INFO memory as fields.
func (p *redisPeer) info(nc net.Conn, br *bufio.Reader) (map[string]string, error) {
	if _, err := nc.Write([]byte("*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n")); err != nil {
		return nil, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil || line[0] != '$' {
		return nil, fmt.Errorf("INFO reply %q: %v", line, err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(line[1:])))
	body := make([]byte, n+2)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(body), "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = v
		}
	}
	return m, nil
}

func perTruck(v string) string {
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return "?"
	}
	return strconv.FormatFloat(n/respBenchFleet, 'f', 1, 64)
}

func (p *redisPeer) stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sigterm)
		_ = p.cmd.Wait()
	}
}

// Package mqtttest runs a real Mosquitto broker for tests: installed with
// apt-get when missing (the tests' machines are Debian, as root), started
// on a free loopback port with its own persistence directory, and
// restartable on the same port and data, to test that sessions and
// queued messages survive a broker restart.
package mqtttest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	installOnce sync.Once
	binPath     string
	installErr  error
)

// binary finds mosquitto, installing Debian's package if it is missing.
func binary() (string, error) {
	installOnce.Do(func() {
		find := func() string {
			if p, err := exec.LookPath("mosquitto"); err == nil {
				return p
			}
			if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
				return "/usr/sbin/mosquitto"
			}
			return ""
		}
		if binPath = find(); binPath != "" {
			return
		}
		cmd := exec.Command("sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto")
		out, err := cmd.CombinedOutput()
		if binPath = find(); binPath == "" {
			installErr = fmt.Errorf("installing mosquitto: %v\n%s", err, out)
		}
	})
	return binPath, installErr
}

// Broker is a running Mosquitto.
type Broker struct {
	t    testing.TB
	Addr string // 127.0.0.1:port
	dir  string
	conf string
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []string
	done chan struct{}
}

// Start runs a broker on a free loopback port; it skips the test only if
// Mosquitto can be neither found nor installed.
func Start(t testing.TB) *Broker {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Skipf("mqtttest: no Mosquitto broker and it could not be installed: %v", err)
	}
	_ = bin
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "mosquitto.conf")
	// No inflight limit and no queue limit, so that neither the broker
	// nor fleetd's batching is throttled and nothing queued for an
	// offline persistent session is dropped.
	// Run as root it would switch to the mosquitto user, who cannot write
	// to the test's directory; keep the test's user.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root\n"
	}
	cfg := user + fmt.Sprintf(`listener %s 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 1
max_inflight_messages 0
max_queued_messages 0
log_dest stderr
log_type error
log_type warning
log_type notice
`, port, dir)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &Broker{t: t, Addr: addr, dir: dir, conf: conf}
	b.start()
	t.Cleanup(b.Stop)
	return b
}

// URL is the broker's tcp:// URL.
func (b *Broker) URL() string { return "tcp://" + b.Addr }

func (b *Broker) start() {
	b.t.Helper()
	bin, _ := binary()
	b.cmd = exec.Command(bin, "-c", b.conf)
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.done = make(chan struct{})
	go func(done chan struct{}, cmd *exec.Cmd) {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.mu.Lock()
			b.logs = append(b.logs, sc.Text())
			b.mu.Unlock()
		}
		_ = cmd.Wait()
		close(done)
	}(b.done, b.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", b.Addr)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto did not listen on %s:\n%s", b.Addr, b.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the broker with SIGTERM (it saves its persistence file).
func (b *Broker) Stop() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// Restart stops the broker and starts it again on the same port and
// persistence directory.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// Logs is what the broker printed.
func (b *Broker) Logs() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.logs, "\n")
}

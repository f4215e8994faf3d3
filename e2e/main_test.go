// Package e2e drives the real fleetd binary over loopback HTTP, using only
// the public contract: it builds ./cmd/fleetd once, starts `fleetd serve`
// on 127.0.0.1:0 and reads the chosen address from the log line
// msg=listening addr=….
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bin is the fleetd binary TestMain built.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleetd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "fleetd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/fleetd")...)
	build.Dir = ".." // the module root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building fleetd: %v\n", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if benchSrv != nil {
		benchSrv.stop()
	}
	if benchNoHistSrv != nil {
		benchNoHistSrv.stop()
	}
	if benchRulesSrv != nil {
		benchRulesSrv.stop()
	}
	if respBenchSrv != nil {
		respBenchSrv.stop()
	}
	for _, s := range sinkBenchSrv {
		if s != nil {
			s.stop()
		}
	}
	for _, w := range []*wideBench{&wideReading, &wideIdle, &rules10k} {
		if w.srv != nil {
			w.srv.stop()
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running `fleetd serve`.
type proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	addr  string // host:port it listens on
	token string

	mu   sync.Mutex
	logs []string

	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// start runs `fleetd serve --http 127.0.0.1:0 --data <tmp>` plus args (the
// defaults otherwise) and waits for it to listen and be ready.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startData(t, filepath.Join(t.TempDir(), "data"), args...)
}

// startData is start with a given data directory, for restarts.
func startData(t *testing.T, data string, args ...string) *proc {
	t.Helper()
	// The server's defaults otherwise: tests post fixed timestamps from
	// 2025, and the TTL counts from when the server heard from a truck,
	// so they stay.
	all := append([]string{"serve", "--http", "127.0.0.1:0", "--data", data}, args...)
	p := &proc{t: t, cmd: exec.Command(bin, all...), exited: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs = append(p.logs, line)
			p.mu.Unlock()
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case p.addr = <-addr:
	case <-p.exited:
		t.Fatalf("fleetd exited before listening: %v\n%s", p.err, p.logText())
	case <-time.After(15 * time.Second):
		t.Fatalf("fleetd did not log its address\n%s", p.logText())
	}
	p.waitLog("msg=ready") // the engine is open; until then every route answers 503
	return p
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.logs, "\n")
}

// waitLog waits for a log line containing frag.
func (p *proc) waitLog(frag string) {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.logText(), frag) {
		if time.Now().After(deadline) {
			p.t.Fatalf("no log line with %q:\n%s", frag, p.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) url(path string) string { return "http://" + p.addr + path }

// stop sends sig and returns the exit code.
func (p *proc) stop(sig os.Signal) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	return p.wait()
}

func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("fleetd did not exit\n%s", p.logText())
	}
	if p.err == nil {
		return 0
	}
	if ee := (*exec.ExitError)(nil); errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	p.t.Fatalf("wait: %v", p.err)
	return -1
}

// resp is an answer read whole.
type resp struct {
	code   int
	header http.Header
	body   []byte
}

var client = &http.Client{Timeout: 20 * time.Second}

// do sends a request with the proc's token (if any) unless header
// overrides Authorization.
func (p *proc) do(method, path, body string, header ...string) resp {
	p.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, method, p.url(path), rd)
	if err != nil {
		p.t.Fatal(err)
	}
	if p.token != "" {
		r.Header.Set("Authorization", "Bearer "+p.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(r)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		p.t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	return resp{res.StatusCode, res.Header, b}
}

// want checks the status and, for JSON answers, the Content-Type and
// validity; it returns the body.
func (r resp) want(t *testing.T, code int) []byte {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d: %s", r.code, code, r.body)
	}
	if code != http.StatusNoContent {
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		if !json.Valid(r.body) {
			t.Fatalf("invalid JSON: %s", r.body)
		}
	}
	return r.body
}

// wantErr checks an {"error": …} answer containing frag.
func (r resp) wantErr(t *testing.T, code int, frag string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.want(t, code), &e); err != nil || !strings.Contains(e.Error, frag) {
		t.Fatalf("error %q (%v), want it to contain %q", e.Error, err, frag)
	}
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

var sigterm = syscall.SIGTERM

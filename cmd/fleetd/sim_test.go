package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetd/fleetd/internal/sim"
)

// simFake is a minimal /healthz + /v1/positions server that accepts every
// line unless acceptNone is set.
func simFake(t *testing.T, token string, acceptNone bool) (*httptest.Server, *atomic.Int64) {
	var lines atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"bad token"}`)
			return
		}
		if r.URL.Path == "/healthz" {
			return
		}
		n := 0
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			var v map[string]any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				t.Errorf("bad line %q: %v", sc.Text(), err)
			}
			n++
		}
		lines.Add(int64(n))
		acc := n
		if acceptNone {
			acc = 0
		}
		fmt.Fprintf(w, `{"accepted":%d,"rejected":%d,"errors":[]}`, acc, n-acc)
	}))
	t.Cleanup(ts.Close)
	return ts, &lines
}

// simNoLeaks checks, after the test's other cleanups (its servers), that
// the test left no goroutine behind.
func simNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func runSimTest(t *testing.T, ctx context.Context, tty bool, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = simMain(ctx, args, &out, &errb, tty)
	return code, out.String(), errb.String()
}

func TestSimFlags(t *testing.T) {
	simNoLeaks(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want int
		msg  string
	}{
		{[]string{"--help"}, 0, "Usage: fleetd sim"},
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
		{[]string{"--trucks", "0"}, 2, "--trucks 0"},
		{[]string{"--rate", "fast"}, 2, "invalid value"},
		{[]string{"--rate", "-5/s"}, 2, "invalid value"},
		{[]string{"--batch", "0"}, 2, "--batch"},
		{[]string{"--conns", "0"}, 2, "--conns"},
		{[]string{"--duration", "-1s"}, 2, "--duration"},
		{[]string{"--region", "mars"}, 2, "--region"},
		{[]string{"--token-file", filepath.Join(dir, "missing")}, 2, "token-file"},
		{[]string{"--token-file", empty}, 2, "empty"},
		{[]string{"extra"}, 2, "unexpected argument"},
	} {
		code, stdout, stderr := runSimTest(t, context.Background(), false, tt.args...)
		if code != tt.want || !strings.Contains(stderr, tt.msg) || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d mentioning %q", tt.args, code, stdout, stderr, tt.want, tt.msg)
		}
	}
	o, err := parseSimFlags([]string{"--rate", "50000/s", "--trucks", "7", "--region", "us"}, io.Discard)
	if err != nil || o.cfg.Rate != 50000 || o.cfg.Trucks != 7 || o.cfg.Region != sim.RegionUS ||
		o.cfg.Target != "http://127.0.0.1:8080" || o.cfg.Duration != 30*time.Second || o.cfg.Batch != 10000 || o.cfg.Conns != 4 {
		t.Errorf("parseSimFlags = %+v, %v", o, err)
	}
}

func TestSimJSON(t *testing.T) {
	simNoLeaks(t)
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts, lines := simFake(t, "s3cret", false)
	code, stdout, stderr := runSimTest(t, context.Background(), false,
		"--target", ts.URL, "--trucks", "500", "--duration", "300ms", "--rate", "10000/s", "--token-file", tok, "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var sum sim.Summary
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sum); err != nil || dec.More() {
		t.Fatalf("stdout is not one Summary: %v\n%s", err, stdout)
	}
	if sum.Accepted == 0 || sum.Sent != lines.Load() || sum.Trucks != 500 {
		t.Errorf("summary %+v, server saw %d lines", sum, lines.Load())
	}
}

func TestSimHuman(t *testing.T) {
	simNoLeaks(t)
	ts, _ := simFake(t, "", false)
	// Duration 0 runs until interrupted: cancel, as SIGINT would, once
	// the live progress line is out.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	errw := &simCancelOnWrite{cancel: cancel}
	code := simMain(ctx, []string{"--target", ts.URL, "--trucks", "200", "--duration", "0", "--rate", "2000"}, &out, errw, true)
	stdout, stderr := out.String(), errw.buf.String()
	if code != 0 || ctx.Err() != context.Canceled {
		t.Fatalf("exit %d, ctx %v, stderr %q", code, ctx.Err(), stderr)
	}
	for _, want := range []string{"fleetd sim: 200 trucks", "accepted", "latency    p50"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "\r\033[K") || !strings.Contains(stderr, "acked") || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("no live progress line on the terminal: %q", stderr)
	}
}

func TestSimFailures(t *testing.T) {
	simNoLeaks(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	code, stdout, stderr := runSimTest(t, context.Background(), false, "--target", closed, "--ready-timeout", "300ms")
	if code != 1 || !strings.Contains(stderr, "not ready") || stdout != "" {
		t.Errorf("unreachable: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	ts, _ := simFake(t, "", true)
	code, _, stderr = runSimTest(t, context.Background(), false, "--target", ts.URL, "--trucks", "50", "--duration", "200ms")
	if code != 1 || !strings.Contains(stderr, "no update was accepted") {
		t.Errorf("nothing accepted: exit %d, stderr %q", code, stderr)
	}

	guarded, _ := simFake(t, "right", false)
	code, _, stderr = runSimTest(t, context.Background(), false, "--target", guarded.URL, "--trucks", "50", "--ready-timeout", "300ms")
	if code != 1 || !strings.Contains(stderr, "401") {
		t.Errorf("no token: exit %d, stderr %q", code, stderr)
	}
}

func TestSimGroup(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {1234567, "1,234,567"}, {-1234, "-1,234"}, {100000, "100,000"}} {
		if got := simGroup(tt.n); got != tt.want {
			t.Errorf("simGroup(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// simCancelOnWrite records what is written and cancels once something is.
type simCancelOnWrite struct {
	buf    bytes.Buffer
	cancel context.CancelFunc
}

func (w *simCancelOnWrite) Write(p []byte) (int, error) {
	w.cancel()
	return w.buf.Write(p)
}

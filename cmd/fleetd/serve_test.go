package main

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // 0: error
	}{
		{"64MiB", 64 << 20},
		{"64mib", 64 << 20},
		{"64M", 64 << 20},
		{"1GiB", 1 << 30},
		{"1g", 1 << 30},
		{"500KB", 500000},
		{"500kb", 500000},
		{"1.5KiB", 1536},
		{"2MB", 2000000},
		{"1024", 1024},
		{"1024B", 1024},
		{" 8 KiB ", 8192},
		{"1TiB", 1 << 40},
		{"", 0},
		{"MiB", 0},
		{"0", 0},
		{"-1MiB", 0},
		{"1e3", 0},
		{"0x10", 0},
		{"NaN", 0},
		{"Inf", 0},
		{"10 parsecs", 0},
		{"2PiB", 0},
		{"0.1", 0},
	} {
		got, err := parseSize(tc.in)
		if tc.want == 0 {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseTruckCount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int // 0: error
	}{
		{"1", 1}, {"10000", 10000}, {"10k", 10000}, {"10K", 10000}, {"1M", 1000000},
		{"0", 0}, {"-5", 0}, {"", 0}, {"k", 0}, {"1.5k", 0}, {"lots", 0}, {"99999999999", 0},
	} {
		got, err := parseTruckCount(tc.in)
		if (tc.want == 0) != (err != nil) || got != tc.want {
			t.Errorf("parseTruckCount(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestRewriteDemoArgs(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"--demo"}, []string{"--demo"}},
		{[]string{"--demo", "5000"}, []string{"--demo=5000"}},
		{[]string{"-demo", "2k", "--http", ":0"}, []string{"-demo=2k", "--http", ":0"}},
		{[]string{"--demo", "--http", ":0"}, []string{"--demo", "--http", ":0"}},
		{[]string{"--demo=7"}, []string{"--demo=7"}},
		{[]string{"--", "--demo", "5"}, []string{"--", "--demo", "5"}},
		{[]string{"--data", "--demo", "--demo", "9"}, []string{"--data", "--demo", "--demo=9"}},
	} {
		if got := rewriteDemoArgs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("rewriteDemoArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseServeFlags(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		demo          bool
		trucks        int
		addr          string
		maxBody       int64
		wantErrOutput string
	}{
		{args: nil, addr: "127.0.0.1:8080", maxBody: 64 << 20},
		{args: []string{"--demo"}, demo: true, trucks: 10000, addr: "127.0.0.1:8080", maxBody: 64 << 20},
		{args: []string{"--demo", "--http", ":9"}, demo: true, trucks: 10000, addr: ":9", maxBody: 64 << 20},
		{args: []string{"--http", ":9", "--demo"}, demo: true, trucks: 10000, addr: ":9", maxBody: 64 << 20},
		{args: []string{"--demo", "250", "--max-body", "1MiB"}, demo: true, trucks: 250, addr: "127.0.0.1:8080", maxBody: 1 << 20},
		{args: []string{"--demo=3k"}, demo: true, trucks: 3000, addr: "127.0.0.1:8080", maxBody: 64 << 20},
		{args: []string{"--demo=false"}, addr: "127.0.0.1:8080", maxBody: 64 << 20},
		{args: []string{"--demo=0"}, wantErrOutput: "invalid truck count"},
		{args: []string{"--max-body", "big"}, wantErrOutput: `invalid size "big"`},
		{args: []string{"--shards", "-1"}, wantErrOutput: "--shards -1"},
		{args: []string{"--stream-wide-hz", "0"}, wantErrOutput: "--stream-wide-hz 0"},
		{args: []string{"--stream-wide-hz", "11"}, wantErrOutput: "--stream-wide-hz 11"},
		{args: []string{"--stream-wide-hz", "-1"}, addr: "127.0.0.1:8080", maxBody: 64 << 20},
		{args: []string{"--stream-wide-rate", "0"}, addr: "127.0.0.1:8080", maxBody: 64 << 20},
		{args: []string{"--stream-wide-rate", "256MiB"}, addr: "127.0.0.1:8080", maxBody: 64 << 20},
		{args: []string{"--stream-wide-rate", "fast"}, wantErrOutput: `invalid size "fast"`},
		{args: []string{"--history-retention", "1d12h"}, addr: "127.0.0.1:8080", maxBody: 64 << 20},
		{args: []string{"--history-retention", "0"}, wantErrOutput: "--history-retention 0s"},
		{args: []string{"--history-retention", "week"}, wantErrOutput: "want a duration such as 7d"},
		{args: []string{"extra"}, wantErrOutput: `unexpected argument "extra"`},
		{args: []string{"--help"}, wantErrOutput: "Usage: fleetd serve"},
	} {
		var stderr bytes.Buffer
		c, err := parseServeFlags(tc.args, &stderr)
		if tc.wantErrOutput != "" {
			if err == nil || !strings.Contains(stderr.String(), tc.wantErrOutput) {
				t.Errorf("%q: err %v, output %q; want %q", tc.args, err, stderr.String(), tc.wantErrOutput)
			}
			if slices.Contains(tc.args, "--help") && !errors.Is(err, flag.ErrHelp) {
				t.Errorf("--help: %v", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v (%s)", tc.args, err, stderr.String())
			continue
		}
		if c.demo.on != tc.demo || c.demo.trucks != tc.trucks || c.addr != tc.addr || int64(c.maxBody) != tc.maxBody {
			t.Errorf("%q: %+v", tc.args, c)
		}
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := readToken(write("ok", "\n  s3cret \r\n")); err != nil || tok != "s3cret" {
		t.Fatalf("%q, %v", tok, err)
	}
	if tok, err := readToken(write("scoped", "# tokens\nwall read\ndev ingest gw\n")); err != nil || tok != "dev" {
		t.Fatalf("scoped: %q, %v", tok, err)
	}
	for _, p := range []string{write("empty", ""), write("blank", " \n\t"), write("scope", "a bogus"), write("no-ingest", "a read\nb admin"), filepath.Join(dir, "missing")} {
		if _, err := readToken(p); err == nil {
			t.Errorf("%s: no error", p)
		}
	}
}

func TestServeLoopbackAddr(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}, "127.0.0.1:80"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 81}, "127.0.0.1:81"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 82}, "127.0.0.1:82"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 83}, "[::1]:83"},
		{&net.TCPAddr{Port: 84}, "127.0.0.1:84"},
	} {
		if got := serveLoopbackAddr(tc.addr); got != tc.want {
			t.Errorf("serveLoopbackAddr(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestServeStarting(t *testing.T) {
	h := &serveSwap{}
	h.set(http.HandlerFunc(serveStarting))
	for _, tc := range []struct{ path, body string }{
		{"/healthz", `{"status":"starting"}`},
		{"/v1/nearby?lat=1&lon=1", `{"error":"fleetd is starting (opening its data); retry shortly"}`},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", tc.path, nil))
		if w.Code != http.StatusServiceUnavailable || w.Body.String() != tc.body ||
			w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Retry-After") == "" {
			t.Errorf("%s: %d %q %v", tc.path, w.Code, w.Body.String(), w.Header())
		}
	}
	h.set(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
	if w.Code != http.StatusTeapot {
		t.Fatalf("after the swap: %d", w.Code)
	}
}

// TestRaiseMaxProcs: one P is raised to serveMinProcs (and logged)
// unless GOMAXPROCS is set; more are left alone.
func TestRaiseMaxProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	runtime.GOMAXPROCS(1)
	raiseMaxProcs(log)
	if n := runtime.GOMAXPROCS(0); n != serveMinProcs || !strings.Contains(logged.String(), "GOMAXPROCS raised") {
		t.Fatalf("one P: now %d, log %q", n, logged.String())
	}
	runtime.GOMAXPROCS(3)
	raiseMaxProcs(log)
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Fatalf("three Ps: now %d", n)
	}
	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)
	logged.Reset()
	raiseMaxProcs(log)
	if n := runtime.GOMAXPROCS(0); n != 1 || logged.Len() != 0 {
		t.Fatalf("GOMAXPROCS=1 set: now %d, log %q", n, logged.String())
	}
}

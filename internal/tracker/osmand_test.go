package tracker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/osmand"
	"github.com/fleetd/fleetd/internal/sim"
)

// osmandServer starts the real gateway on a fake engine.
func osmandServer(t *testing.T) (*osmand.Server, *fakeEngine) {
	t.Helper()
	eng := &fakeEngine{ids: map[string]int{}}
	com := gateway.NewCommitter(eng, 0, 0)
	t.Cleanup(com.Close)
	s, err := osmand.Listen(osmand.Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, com)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, eng
}

func testConn(addr string) (*httpConn, *atomic.Int64) {
	var dials atomic.Int64
	return newHTTPConn(addr, func() { dials.Add(1) }), &dials
}

// get is an OsmAnd GET of phone-1 at lat, with the extra header lines.
func get(lat, extra string) []byte {
	ts := time.Now().Unix() - 60
	return []byte("GET /?id=phone-1&lat=" + lat + "&lon=-74&timestamp=" + itoa(ts) + " HTTP/1.1\r\nHost: fleetd\r\n" + extra + "\r\n")
}

func itoa(i int64) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int64) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// TestHTTPConnGateway: the client against fleetd's own OsmAnd server: 200s
// on one kept-alive connection, a 400 with its reason (connection kept),
// an answer with Connection: close (the next request dials again), a
// request the server refuses as malformed (400, and it closes), and a
// server that went away (an error, then the backoff).
func TestHTTPConnGateway(t *testing.T) {
	s, eng := osmandServer(t)
	h, dials := testConn(s.Addr().String())
	ctx := context.Background()
	do := func(req []byte, want int) {
		t.Helper()
		st, err := h.do(ctx, req)
		if err != nil || st != want {
			t.Fatalf("%q: status %d, %v; want %d", req, st, err, want)
		}
	}
	for range 5 {
		do(get("40.5", ""), 200)
	}
	if dials.Load() != 1 || eng.trucks() != 1 {
		t.Fatalf("%d dials, %d trucks; want 1, 1", dials.Load(), eng.trucks())
	}
	do(get("91", ""), 400)
	if !bytes.Contains(h.body(), []byte("out of range")) {
		t.Fatalf("400 body %q", h.body())
	}
	do(get("40.5", ""), 200)
	do(get("40.5", "Connection: close\r\n"), 200)
	if h.c != nil {
		t.Fatal("connection kept after Connection: close")
	}
	do(get("40.5", ""), 200)
	if dials.Load() != 2 {
		t.Fatalf("%d dials, want 2", dials.Load())
	}
	do([]byte("GET /?id=x HTTP/1.1\r\nHost: a\r\nContent-Length: zz\r\n\r\n"), 400)
	if h.c != nil || dials.Load() != 2 {
		t.Fatalf("after a refused request: conn %v, %d dials", h.c, dials.Load())
	}
	do(get("40.5", ""), 200)
	if dials.Load() != 3 {
		t.Fatalf("%d dials, want 3", dials.Load())
	}
	// The server goes away: the kept-alive connection fails, the retry
	// cannot dial, and the next attempt waits for the backoff first.
	s.Close()
	if _, err := h.do(ctx, get("40.5", "")); err == nil {
		t.Fatal("request to a closed server succeeded")
	}
	if h.fails != 1 {
		t.Fatalf("fails %d, want 1", h.fails)
	}
	t0 := time.Now()
	if _, err := h.do(ctx, get("40.5", "")); err == nil {
		t.Fatal("request to a closed server succeeded")
	}
	if d := time.Since(t0); d < backoffMin/2 || h.fails != 2 {
		t.Fatalf("redialled after %v, fails %d", d, h.fails)
	}
}

// fakeServer answers each request read on a connection with the next of
// answers (a request is a head ending in a blank line); "" closes the
// connection instead, and when they run out the connection is closed.
func fakeServer(t *testing.T, answers ...string) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var buf []byte
				tmp := make([]byte, 4096)
				for _, a := range answers {
					for !bytes.Contains(buf, crlf2) {
						n, err := c.Read(tmp)
						if err != nil {
							return
						}
						buf = append(buf, tmp[:n]...)
					}
					_, buf, _ = bytes.Cut(buf, crlf2)
					if a == "" {
						return
					}
					if _, err := io.WriteString(c, a); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr()
}

// TestHTTPConnAnswers: answers fleetd does not send but a proxy or another
// server may, and servers that end connections.
func TestHTTPConnAnswers(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
	for _, tt := range []struct {
		name    string
		answers []string // per connection
		status  []int    // of consecutive requests; 0: an error
		dials   int64
		errFrag string
	}{
		{"keep-alive", []string{ok, ok, ok}, []int{200, 200, 200}, 1, ""},
		// The server ends each connection after one answer without
		// saying so: each next request fails on the old connection before
		// any answer and is sent again on a new one.
		{"silent close", []string{ok}, []int{200, 200, 200}, 3, ""},
		{"Connection: close", []string{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", ok}, []int{200, 200}, 2, ""},
		{"close, keep-alive", []string{"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n", ok}, []int{200, 200}, 2, ""},
		{"HTTP/1.0", []string{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", ok}, []int{200, 200}, 2, ""},
		{"HTTP/1.0 keep-alive", []string{"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", ok}, []int{200, 200}, 1, ""},
		{"body to close", []string{"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe rest"}, []int{200, 200}, 2, ""},
		{"1xx skipped", []string{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}, []int{200}, 1, ""},
		{"204", []string{"HTTP/1.1 204 No Content\r\n\r\n"}, []int{204}, 1, ""},
		{"400", []string{"HTTP/1.1 400 Bad Request\r\nContent-Length: 15\r\n\r\n{\"error\":\"no\"}\n", ok}, []int{400, 200}, 1, ""},
		{"no answer", []string{""}, []int{0}, 1, "EOF"},
		{"half a head", []string{"HTTP/1.1 200 OK\r\nContent-"}, []int{0}, 1, "EOF"},
		{"half a body", []string{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"}, []int{0}, 1, "EOF"},
		{"chunked", []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"}, []int{0}, 1, "chunked"},
		{"no length", []string{"HTTP/1.1 200 OK\r\n\r\n"}, []int{0}, 1, "without Content-Length"},
		{"garbage", []string{"SSH-2.0-OpenSSH\r\n\r\n"}, []int{0}, 1, "malformed status line"},
		{"two lengths", []string{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"}, []int{0}, 1, "Content-Length"},
		{"extra bytes", []string{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", ok}, []int{200, 0}, 1, "after the last answer"},
		{"huge head", []string{"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", readBuf) + "\r\n\r\n"}, []int{0}, 1, "over 4 KiB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, dials := testConn(fakeServer(t, tt.answers...).String())
			for i, want := range tt.status {
				st, err := h.do(context.Background(), get("40.5", ""))
				switch {
				case want == 0 && (err == nil || !strings.Contains(err.Error(), tt.errFrag)):
					t.Fatalf("request %d: %d, %v; want an error with %q", i, st, err, tt.errFrag)
				case want != 0 && (err != nil || st != want):
					t.Fatalf("request %d: %d, %v; want %d", i, st, err, want)
				}
			}
			if dials.Load() != tt.dials {
				t.Fatalf("%d dials, want %d", dials.Load(), tt.dials)
			}
		})
	}
}

// TestHTTPConnAbort: abort ends a request the server never answers.
func TestHTTPConnAbort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	h, _ := testConn(ln.Addr().String())
	time.AfterFunc(50*time.Millisecond, h.abort)
	t0 := time.Now()
	if _, err := h.do(context.Background(), get("40.5", "")); err == nil || time.Since(t0) > 5*time.Second {
		t.Fatalf("%v after %v", err, time.Since(t0))
	}
	if _, err := h.do(context.Background(), get("40.5", "")); !errors.Is(err, errAborted) {
		t.Fatalf("after abort: %v", err)
	}
}

// TestSendAllocs: a report (the request built, sent and its answer read)
// over a kept-alive connection allocates nothing.
func TestSendAllocs(t *testing.T) {
	r := &run{cfg: Config{Protocol: OsmAnd, Trucks: 1}}
	var err error
	if r.osmAddr, r.osmHost, r.osmPath, err = osmandTarget("http://" + cannedServer(t)); err != nil {
		t.Fatal(err)
	}
	f, err := sim.NewFleet(sim.FleetOptions{Trucks: 1, Count: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{r: r, fleet: f}
	if err := w.connect(); err != nil {
		t.Fatal(err)
	}
	defer w.close()
	ctx := context.Background()
	ts := time.Now().Add(-time.Hour)
	w.ups = w.fleet.Next(w.ups[:0], 1, ts)
	send := func() {
		if err := w.send(ctx, w.ups[0]); err != nil {
			t.Fatal(err)
		}
	}
	send()
	if n := testing.AllocsPerRun(500, send); n != 0 {
		t.Fatalf("%v allocations a report", n)
	}
	if r.conns.Load() != 1 {
		t.Fatalf("%d connections", r.conns.Load())
	}
}

// cannedServer answers every request head with a fixed 200, allocating
// nothing once a connection is open.
func cannedServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		ans := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
		buf := make([]byte, 4096)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			if i := bytes.Index(buf[:n], crlf2); i >= 0 {
				n = copy(buf, buf[i+4:n])
				if _, err := c.Write(ans); err != nil {
					return
				}
			}
		}
	}()
	return ln.Addr().String()
}

func TestParseHead(t *testing.T) {
	for _, tt := range []struct {
		head           string
		status         int
		length         int64
		closing, isErr bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 200, 11, false, false},
		{"HTTP/1.1 200\r\ncontent-length:3\r\n\r\n", 200, 3, false, false},
		{"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n", 404, -1, true, false},
		{"HTTP/1.1 200 OK\r\nCONNECTION: Upgrade, CLOSE\r\n\r\n", 200, -1, true, false},
		{"HTTP/1.0 200 OK\r\n\r\n", 200, -1, true, false},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", 200, -1, false, false},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n\r\n", 200, -1, true, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 200, 5, false, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, false, true},
		{"HTTP/2 200\r\n\r\n", 0, 0, false, true},
		{"HTTP/1.1 2000 OK\r\n\r\n", 0, 0, false, true},
		{"HTTP/1.1 099 OK\r\n\r\n", 0, 0, false, true},
		{"HTTP/1.1 20x OK\r\n\r\n", 0, 0, false, true},
		{"http/1.1 200 OK\r\n\r\n", 0, 0, false, true},
	} {
		st, n, cl, err := parseHead([]byte(tt.head))
		if (err != nil) != tt.isErr || (err == nil && (st != tt.status || n != tt.length || cl != tt.closing)) {
			t.Errorf("%q: %d %d %v %v; want %d %d %v error %v", tt.head, st, n, cl, err, tt.status, tt.length, tt.closing, tt.isErr)
		}
	}
}

func TestOsmandTarget(t *testing.T) {
	for _, tt := range []struct{ target, addr, host, path string }{
		{"http://127.0.0.1:5055", "127.0.0.1:5055", "127.0.0.1:5055", "/"},
		{"http://127.0.0.1:5055/", "127.0.0.1:5055", "127.0.0.1:5055", "/"},
		{"http://gw.example/osmand/", "gw.example:80", "gw.example", "/osmand/"},
		{"http://[::1]:5055/a b", "[::1]:5055", "[::1]:5055", "/a%20b/"},
	} {
		addr, host, path, err := osmandTarget(tt.target)
		if err != nil || addr != tt.addr || host != tt.host || path != tt.path {
			t.Errorf("%s: %q %q %q %v", tt.target, addr, host, path, err)
		}
	}
	for _, bad := range []string{"127.0.0.1:5055", "https://gw:443", "http://", "http://gw/?x=1", "http://u:p@gw/", "tcp://gw:1"} {
		if _, _, _, err := osmandTarget(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// pieceConn is a net.Conn that reads data in pieces of the given sizes.
type pieceConn struct {
	net.Conn
	data   []byte
	pieces []byte
}

func (c *pieceConn) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.pieces) > 0 {
		n = max(1, int(c.pieces[0]))
		c.pieces = c.pieces[1:]
	}
	n = copy(b, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}
func (c *pieceConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *pieceConn) SetDeadline(time.Time) error      { return nil }
func (c *pieceConn) Close() error                     { return nil }
func (c *pieceConn) SetReadDeadline(time.Time) error  { return nil }
func (c *pieceConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzAnswer: any bytes, read in any pieces, as the answers to three
// requests: no panic, and each answer read is whole: read in one piece,
// the same bytes give the same statuses.
func FuzzAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}HTTP/1.1 400 Bad\r\nContent-Length: 2\r\n\r\nnoHTTP/1.0 200 OK\r\n\r\nrest"), []byte{3, 50, 1})
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 OK\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"), []byte{})
	f.Fuzz(func(t *testing.T, data, pieces []byte) {
		run := func(pieces []byte) (out []int) {
			h := newHTTPConn("", nil)
			c := &pieceConn{data: data, pieces: pieces}
			h.dial = func() (net.Conn, error) {
				if c == nil {
					return nil, errors.New("one connection")
				}
				cc := c
				c = nil
				return cc, nil
			}
			h.fails = 0
			if err := h.connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if h.c == nil {
					break
				}
				st, err := h.do(context.Background(), []byte("GET / HTTP/1.1\r\n\r\n"))
				if err != nil {
					break
				}
				if st < 200 || st > 999 || h.nsnip > len(h.snip) {
					t.Fatalf("status %d, snip %d", st, h.nsnip)
				}
				out = append(out, st)
			}
			return out
		}
		// Read whole, bytes after an answer are in the buffer when the
		// next request is sent (an error); in pieces they may not be yet,
		// so the whole run's statuses are a prefix of the other's.
		whole := run(nil)
		if got := run(pieces); len(data) <= readBuf && (len(got) < len(whole) || !equalInts(got[:len(whole)], whole)) {
			t.Fatalf("in pieces %v, whole %v", got, whole)
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testServer runs a front door on loopback serving /fast/ paths (and
// /big, /flush) with a handler that echoes what it got; servedBy says
// which server answered.
func testServer(t *testing.T) (*Server, string) {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Type", "text/plain")
			for i := range 5000 {
				fmt.Fprintf(w, "line %05d of a body past BodyBuffer\n", i)
			}
			return
		case "/flush":
			_, _ = io.WriteString(w, "first")
			_ = http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, "second")
			return
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo", "a\r\nInjected: yes") // CR LF become spaces
		fmt.Fprintf(w, "%s %s %s host=%s ua=%s body=%q", r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Get("User-Agent"), body)
	})
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 2 * time.Second, IdleTimeout: time.Minute}
	s := New(hs, func(p string) bool {
		return strings.HasPrefix(p, "/fast/") || p == "/big" || p == "/flush" || p == "/nocontent"
	}, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s, ln.Addr().String()
}

// roundTrips writes raw on one connection and reads an answer for each
// of methods (the requests' methods, in order: a HEAD answer has no body).
func roundTrips(t *testing.T, addr, raw string, methods ...string) []*http.Response {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	var out []*http.Response
	for i, method := range methods {
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("answer %d of %q: %v", i, raw, err)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("answer %d body: %v", i, err)
		}
		res.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, res)
	}
	return out
}

func bodyOf(t *testing.T, r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// TestServedAndHandedOn: the same requests answered by the front door
// (fast paths) and by net/http (others, and any head the front door
// will not frame) give the same answers, and each is counted where it
// was served.
func TestServedAndHandedOn(t *testing.T) {
	s, addr := testServer(t)
	for _, tc := range []struct {
		name, raw, want string
		fast            bool
	}{
		{"fast", "GET /fast/x?a=1&b=2 HTTP/1.1\r\nHost: h\r\nUser-Agent: ua\r\n\r\n", "GET /fast/x a=1&b=2 host=h ua=ua body=\"\"", true},
		{"fast, lower-case names", "GET /fast/y HTTP/1.1\r\nhost: h2\r\nuser-agent: u2\r\n\r\n", "GET /fast/y  host=h2 ua=u2 body=\"\"", true},
		{"slow path", "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n", "GET /slow  host=h ua= body=\"\"", false},
		{"a body", "GET /fast/x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", "GET /fast/x  host=h ua= body=\"abc\"", false},
		{"POST", "POST /fast/x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", "POST /fast/x  host=h ua= body=\"hi\"", false},
		{"escaped path", "GET /fast/%78 HTTP/1.1\r\nHost: h\r\n\r\n", "GET /fast/x  host=h ua= body=\"\"", false},
		{"bare LF", "GET /fast/x HTTP/1.1\nHost: h\n\n", "GET /fast/x  host=h ua= body=\"\"", false},
		{"HTTP/1.0", "GET /fast/x HTTP/1.0\r\n\r\n", "GET /fast/x  host= ua= body=\"\"", true},
		{"an empty body said", "GET /fast/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", "GET /fast/x  host=h ua= body=\"\"", true},
		{"two lengths", "GET /fast/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", "GET /fast/x  host=h ua= body=\"\"", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats()
			res := roundTrips(t, addr, tc.raw, "GET")[0]
			if got := bodyOf(t, res); res.StatusCode != 200 || got != tc.want {
				t.Fatalf("%d %q, want 200 %q", res.StatusCode, got, tc.want)
			}
			if v := res.Header.Get("X-Echo"); v != "a  Injected: yes" || res.Header.Get("Injected") != "" {
				t.Fatalf("X-Echo %q, Injected %q: a header value split the head", v, res.Header.Get("Injected"))
			}
			after := s.Stats()
			if fast := after.Served > before.Served; fast != tc.fast || (after.HandedOn > before.HandedOn) == tc.fast {
				t.Fatalf("served here: %v, want %v (%+v → %+v)", fast, tc.fast, before, after)
			}
			if res.Header.Get("Date") == "" || res.ContentLength != int64(len(tc.want)) {
				t.Fatalf("Date %q, Content-Length %d", res.Header.Get("Date"), res.ContentLength)
			}
		})
	}
	// Heads net/http refuses are refused by net/http, not served here.
	for _, raw := range []string{
		"GET /fast/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /fast/x HTTP/1.1\r\n\r\n",
		"GET /fast/x HTTP/1.1\r\nHost: h\r\n Folded: x\r\n\r\n",
		"GET /fast/x HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
	} {
		before := s.Stats()
		res := roundTrips(t, addr, raw, "GET")[0]
		if res.StatusCode != http.StatusBadRequest || s.Stats().Served != before.Served {
			t.Fatalf("%q: %d (served here: %v), want net/http's 400", raw, res.StatusCode, s.Stats().Served != before.Served)
		}
	}
}

// TestPipelineAndHandOnMidConnection: pipelined requests are answered in
// order; a request the front door does not take hands the rest of the
// connection, bytes already read included, to net/http.
func TestPipelineAndHandOnMidConnection(t *testing.T) {
	s, addr := testServer(t)
	raw := "GET /fast/1 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"HEAD /fast/2 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /fast/3 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"POST /fast/4 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody" +
		"GET /fast/5 HTTP/1.1\r\nHost: h\r\n\r\n"
	res := roundTrips(t, addr, raw, "GET", "HEAD", "GET", "POST", "GET")
	wants := []string{"GET /fast/1  host=h ua= body=\"\"", "", "GET /fast/3  host=h ua= body=\"\"", "POST /fast/4  host=h ua= body=\"body\"", "GET /fast/5  host=h ua= body=\"\""}
	for i, r := range res {
		if got := bodyOf(t, r); got != wants[i] {
			t.Fatalf("answer %d: %q, want %q", i, got, wants[i])
		}
	}
	if res[1].ContentLength != int64(len("HEAD /fast/2  host=h ua= body=\"\"")) {
		t.Fatalf("HEAD Content-Length %d", res[1].ContentLength)
	}
	if st := s.Stats(); st.Served != 3 || st.HandedOn != 1 {
		t.Fatalf("stats %+v, want 3 served here and the connection handed on once", st)
	}
}

// TestChunkedAndClose: a body past BodyBuffer, and one flushed by the
// handler, are sent chunked and whole; 204 has no body; Connection:
// close closes after the answer.
func TestChunkedAndClose(t *testing.T) {
	_, addr := testServer(t)
	res := roundTrips(t, addr, "GET /big HTTP/1.1\r\nHost: h\r\n\r\nGET /flush HTTP/1.1\r\nHost: h\r\n\r\nGET /nocontent HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "GET", "GET")
	big := bodyOf(t, res[0])
	if len(res[0].TransferEncoding) != 1 || strings.Count(big, "\n") != 5000 || !strings.HasPrefix(big, "line 00000") || !strings.HasSuffix(big, "line 04999 of a body past BodyBuffer\n") {
		t.Fatalf("big: TE %v, %d bytes", res[0].TransferEncoding, len(big))
	}
	if got := bodyOf(t, res[1]); got != "firstsecond" || len(res[1].TransferEncoding) != 1 {
		t.Fatalf("flush: %q, TE %v", got, res[1].TransferEncoding)
	}
	if res[2].StatusCode != 204 || res[2].ContentLength > 0 {
		t.Fatalf("204: %d, length %d", res[2].StatusCode, res[2].ContentLength)
	}

	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(nc, "GET /fast/c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	all, err := io.ReadAll(nc) // ends: the server closed
	if err != nil || !bytes.Contains(all, []byte("Connection: close")) || !bytes.HasSuffix(all, []byte(`body=""`)) {
		t.Fatalf("close: %q, %v", all, err)
	}
}

// TestShutdownClosesIdle: Shutdown ends idle connections and returns
// once they are gone; a new connection is refused.
func TestShutdownClosesIdle(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	s := New(&http.Server{Handler: h}, func(string) bool { return true }, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, _ = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(nc), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := nc.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the idle connection is still open: %d, %v", n, err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("a new connection was accepted after Shutdown")
	}
}

// TestIdleConnMemory: a connection idle after a large answer keeps no
// answer buffer: the heap and stacks it holds stay a few KiB.
func TestIdleConnMemory(t *testing.T) {
	_, addr := testServer(t)
	const conns = 300
	measure := func() uint64 {
		runtime.GC()
		runtime.GC() // twice: the pool's victim cache too
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc + ms.StackInuse
	}
	before := measure()
	var ncs []net.Conn
	defer func() {
		for _, nc := range ncs {
			nc.Close()
		}
	}()
	for range conns {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		ncs = append(ncs, nc)
		_, _ = io.WriteString(nc, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := io.Copy(io.Discard, res.Body); n < 150_000 {
			t.Fatalf("%d bytes", n)
		}
	}
	time.Sleep(100 * time.Millisecond) // the servers' goroutines back at their reads
	per := float64(measure()-before) / conns
	t.Logf("%.0f B a connection idle after a 185 kB answer (server and client sides)", per)
	if per > 24<<10 {
		t.Fatalf("%.0f B a connection: an idle connection keeps its answer's buffers", per)
	}
}

// TestConcurrentMixed: many clients at once, each on its own keep-alive
// connection, send a seeded random mix of requests the front door takes
// and requests it hands on (a POST with a body, an escaped path),
// pipelined or one at a time: every answer arrives, in order, and is the
// right one, under the race detector.
func TestConcurrentMixed(t *testing.T) {
	_, addr := testServer(t)
	const clients, requests = 16, 60
	errs := make(chan error, clients)
	for c := range clients {
		go func() {
			errs <- func() error {
				rng := rand.New(rand.NewPCG(uint64(c), 99))
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					return err
				}
				defer nc.Close()
				_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(nc)
				for i := 0; i < requests; {
					// A burst of 1-4 pipelined requests, then their answers.
					var raw strings.Builder
					var wants, methods []string
					for range 1 + rng.IntN(4) {
						i++
						switch k := rng.IntN(10); {
						case k < 6:
							fmt.Fprintf(&raw, "GET /fast/%d-%d?q=%d HTTP/1.1\r\nHost: h\r\n\r\n", c, i, k)
							wants, methods = append(wants, fmt.Sprintf("GET /fast/%d-%d q=%d host=h ua= body=\"\"", c, i, k)), append(methods, "GET")
						case k < 8:
							body := strings.Repeat("b", rng.IntN(3000))
							fmt.Fprintf(&raw, "POST /fast/%d HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
							wants, methods = append(wants, fmt.Sprintf("POST /fast/%d  host=h ua= body=%q", i, body)), append(methods, "POST")
						case k < 9:
							fmt.Fprintf(&raw, "GET /fast/%%41%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
							wants, methods = append(wants, fmt.Sprintf("GET /fast/A%d  host=h ua= body=\"\"", i)), append(methods, "GET")
						default:
							raw.WriteString("GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
							wants, methods = append(wants, "big"), append(methods, "GET")
						}
					}
					if _, err := io.WriteString(nc, raw.String()); err != nil {
						return err
					}
					for j, want := range wants {
						res, err := http.ReadResponse(br, &http.Request{Method: methods[j]})
						if err != nil {
							return fmt.Errorf("client %d: answer to %q: %v", c, want, err)
						}
						b, err := io.ReadAll(res.Body)
						if err != nil {
							return err
						}
						if want == "big" {
							if strings.Count(string(b), "\n") != 5000 {
								return fmt.Errorf("client %d: big answer of %d bytes", c, len(b))
							}
							continue
						}
						if string(b) != want {
							return fmt.Errorf("client %d: %q, want %q", c, b, want)
						}
					}
				}
				return nil
			}()
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

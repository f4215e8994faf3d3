package osmand

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/gateway"
)

// parseRaw frames one whole request as conn.next does: the head, then a
// Content-Length or chunked body.
func parseRaw(raw []byte, maxBody int64) (h httpHead, body []byte, err *httpError) {
	n := headEnd(raw, 0)
	if n == 0 || n > maxHead {
		if len(raw) > maxHead || n > maxHead {
			return h, nil, errHeadTooLarge
		}
		return h, nil, &httpError{-1, "incomplete head"}
	}
	if h, err = parseHead(raw[:n]); err != nil {
		return h, nil, err
	}
	if h.chunked {
		var st chunked
		body, err = decodeChunked(raw[n:], &st, nil, maxBody)
		if err == errNeedMore {
			return h, nil, &httpError{-1, "incomplete body"}
		}
		return h, body, err
	}
	if h.length > maxBody {
		return h, nil, bodyTooLarge(maxBody)
	}
	if int64(len(raw)-n) < h.length {
		return h, nil, &httpError{-1, "incomplete body"}
	}
	return h, raw[n : n+int(h.length)], nil
}

// echoed is what net/http's server hands a handler, as far as the gateway
// reads it.
type echoed struct {
	Method, Query, CType, Body string
	Close                      bool
}

// TestHTTPMatchesNetHTTP: for the requests devices send, and malformed
// ones, the gateway's parser sees what net/http's server does (method,
// query, Content-Type, body, whether the connection ends) or refuses what
// it refuses with the same status; the few deliberate differences are
// listed with the gateway's status.
func TestHTTPMatchesNetHTTP(t *testing.T) {
	srv := &http.Server{
		MaxHeaderBytes: maxHead - 4096, // net/http reads 4096 bytes more than this
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				w.Header().Set("Connection", "close")
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_ = json.NewEncoder(w).Encode(echoed{r.Method, r.URL.RawQuery, r.Header.Get("Content-Type"), string(b), r.Close})
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	ask := func(raw string) (int, echoed) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for {
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%q: net/http's answer: %v", raw, err)
			}
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode == http.StatusContinue {
				continue
			}
			var e echoed
			if res.StatusCode == http.StatusOK {
				if err := json.Unmarshal(b, &e); err != nil {
					t.Fatalf("%q: %s", raw, b)
				}
			}
			return res.StatusCode, e
		}
	}
	const form = "id=t1&lat=1&lon=2"
	for _, tt := range []struct {
		name, raw string
		ours      int // the gateway's status where it deliberately differs (0: none)
	}{
		{"get", "GET /?id=t1&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"bare LF", "GET /?id=t1 HTTP/1.1\nHost: x\nUser-Agent: a\n\n", 0},
		{"path and query", "GET /osmand/?id=t1&lat=1 HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"no query", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"absolute form", "GET http://fleetd:5055/?id=t1 HTTP/1.1\r\nHost: fleetd\r\n\r\n", 0},
		{"http/1.0", "GET /?id=t1 HTTP/1.0\r\n\r\n", 0},
		{"http/1.0 keep-alive", "GET /?id=t1 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0},
		{"http/1.2", "GET /?id=t1 HTTP/1.2\r\nHost: x\r\n\r\n", 0},
		{"close", "GET /?id=t1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0},
		{"close in a list", "GET /?id=t1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n", 0},
		{"form", "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 17\r\n\r\n" + form, 0},
		{"form, odd case and spaces", "POST /?a=b HTTP/1.1\r\nhost: x\r\nCONTENT-TYPE:application/x-www-form-urlencoded\r\ncontent-length:   17 \t\r\n\r\n" + form, 0},
		{"json", "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}", 0},
		{"two equal lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 0},
		{"get with a body", "GET /?id=t1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 0},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nid=t1\r\nC;ext=1\r\n&lat=1&lon=2\r\n0\r\nX-Trailer: y\r\n\r\n", 0},
		{"chunked, upper hex", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n00A\r\n0123456789\r\n0\r\n\r\n", 0},
		{"expect 100-continue", "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 17\r\n\r\n" + form, 0},
		{"http/1.0 ignores transfer-encoding", "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nab", 0},
		{"obs-text in a value", "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: caf\xe9\r\n\r\n", 0},

		{"missing host", "GET / HTTP/1.1\r\n\r\n", 0},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0},
		{"http/2", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 0},
		{"bad version", "GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 0},
		{"no version", "GET /\r\nHost: x\r\n\r\n", 0},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"control in target", "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"relative target", "GET foo HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"header without colon", "GET / HTTP/1.1\r\nHost: x\r\nOops\r\n\r\n", 0},
		{"space in a header name", "GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 0},
		{"space before the colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 0},
		{"control in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 0},
		{"negative length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 0},
		{"plus length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab", 0},
		{"conflicting lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", 0},
		{"gzip encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 0},
		{"chunk size not hex", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 0},
		{"chunk with bare LF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n", 0},
		{"chunk data too long", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 0},
		{"expect something", "POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\nab", 0},
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", maxHead+100) + "\r\n\r\n", 0},

		// Deliberate differences: net/http takes the chunked body and drops
		// the Content-Length (a request-smuggling shape that no device
		// sends); it also folds obs-fold lines. The gateway refuses both.
		{"chunked and length", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n2\r\nab\r\n0\r\n\r\n", 400},
		{"two transfer-encodings", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n  b\r\n\r\n", 400},
		// Blank lines before the request line are skipped (RFC 9112,
		// 2.2); net/http refuses them.
		{"leading blank lines", "\r\n\r\nGET /?id=t1 HTTP/1.1\r\nHost: x\r\n\r\n", 200},
	} {
		code, want := ask(tt.raw)
		h, body, err := parseRaw([]byte(tt.raw), DefaultMaxBody)
		got := http.StatusOK
		if err != nil {
			got = err.code
		}
		wantCode := code
		if tt.ours != 0 {
			if tt.ours == code {
				t.Errorf("%s: listed as a difference, but net/http answers %d too", tt.name, code)
			}
			wantCode = tt.ours
		}
		if got != wantCode {
			t.Errorf("%s: %d (%v), want %d (net/http %d)", tt.name, got, err, wantCode, code)
			continue
		}
		if err != nil || tt.ours != 0 {
			continue
		}
		e := echoed{string(h.method), string(query(h.target)), string(h.ctype), string(body), h.close}
		if h.method == nil {
			e.Method = ""
		}
		if e != want {
			t.Errorf("%s: %+v, net/http %+v", tt.name, e, want)
		}
	}
}

// TestHeadEndResumes: headEnd finds the same end when the head arrives a
// byte at a time (resuming at headScanFrom) as when it is whole.
func TestHeadEndResumes(t *testing.T) {
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest",
		"GET / HTTP/1.1\nHost: x\n\nrest",
		"\r\n\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\n\r\nrest",
		"GET / HTTP/1.1\r\n\r\n",
	} {
		whole := headEnd([]byte(raw), 0)
		from, got := 0, 0
		for n := 1; n <= len(raw) && got == 0; n++ {
			if got = headEnd([]byte(raw[:n]), from); got == 0 {
				from = headScanFrom([]byte(raw[:n]))
			}
		}
		if whole == 0 || got != whole {
			t.Errorf("%q: byte by byte %d, whole %d", raw, got, whole)
		}
	}
}

// FuzzHTTP: the parser never panics, a head found byte by byte is the
// head found whole, a chunked body decoded as its bytes arrive is the
// body decoded whole, and a body never exceeds the limit.
func FuzzHTTP(f *testing.F) {
	f.Add([]byte("GET /?id=t1&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\n"), uint8(3))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nid=t1\r\nC;e=1\r\n&lat=1&lon=2\r\n0\r\nT: y\r\n\r\n"), uint8(1))
	f.Add([]byte("POST / HTTP/1.0\r\nContent-Length: 2\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\r\n{}"), uint8(7))
	f.Fuzz(func(t *testing.T, raw []byte, step uint8) {
		const maxBody = 1 << 10
		h, body, err := parseRaw(raw, maxBody)
		if int64(len(body)) > maxBody {
			t.Fatalf("body of %d bytes over %d", len(body), maxBody)
		}
		// The head, found as raw arrives step bytes at a time.
		st := int(step%16) + 1
		whole := headEnd(raw, 0)
		from, got := 0, 0
		for n := min(st, len(raw)); got == 0; n = min(n+st, len(raw)) {
			if got = headEnd(raw[:n], from); got == 0 {
				from = headScanFrom(raw[:n])
			}
			if n == len(raw) {
				break
			}
		}
		if got != whole {
			t.Fatalf("head end %d arriving %d bytes at a time, %d whole", got, st, whole)
		}
		if err != nil || !h.chunked {
			return
		}
		// The chunked body, decoded as it arrives.
		rest := raw[h.size:]
		var cs chunked
		var dst []byte
		var derr *httpError
		for n := min(st, len(rest)); ; n = min(n+st, len(rest)) {
			if dst, derr = decodeChunked(rest[:n], &cs, dst, maxBody); derr != errNeedMore || n == len(rest) {
				break
			}
		}
		if derr != nil || !bytes.Equal(dst, body) {
			t.Fatalf("chunked body arriving %d bytes at a time: %q %v, whole %q", st, dst, derr, body)
		}
	})
}

// FuzzServer: whatever bytes a device sends, in whatever pieces, the
// server answers with well-formed HTTP responses (parsed by net/http's
// client), one per request up to the first it refuses, then closes;
// never a panic, never a point without its 200.
func FuzzServer(f *testing.F) {
	f.Add([]byte("GET /?id=t1&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\nGET /?id=t2&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\n"), uint16(5))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nid=t1\r\nC\r\n&lat=1&lon=2\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"), uint16(1))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 68\r\n\r\n{\"device_id\":\"p\",\"location\":{\"coords\":{\"latitude\":1,\"longitude\":2}}}"), uint16(40))
	f.Add([]byte("GET /?id=t1&lat=1&lon=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n"), uint16(2))
	eng := &fakeEngine{}
	s, _ := testServer(f, eng, Options{MaxBody: 4 << 10})
	f.Fuzz(func(t *testing.T, raw []byte, step uint16) {
		eng.mu.Lock()
		before := len(eng.applied)
		eng.mu.Unlock()
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		// A HEAD's answer has no body: the client side here would need to
		// know which answer is one.
		raw = bytes.ReplaceAll(raw, []byte("HEAD"), []byte("HEAX"))
		go func() {
			st := int(step%512) + 1
			for b := raw; len(b) > 0; {
				n := min(st, len(b))
				if _, err := c.Write(b[:n]); err != nil {
					return
				}
				b = b[n:]
			}
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		br := bufio.NewReader(c)
		oks := 0
		for {
			if _, err := br.Peek(1); err == io.EOF {
				break
			}
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("answer: %v", err)
			}
			if _, err := io.Copy(io.Discard, res.Body); err != nil {
				t.Fatalf("answer's body: %v", err)
			}
			if res.StatusCode == http.StatusOK {
				oks++
			}
		}
		eng.mu.Lock()
		applied := len(eng.applied) - before
		eng.mu.Unlock()
		if applied != oks {
			t.Fatalf("%d points applied, %d answered 200", applied, oks)
		}
	})
}

// TestServerHTTP: net/http's client and raw connections against the
// gateway: pipelined requests answered in order by shared commits,
// HTTP/1.0, chunked and 100-continue bodies, HEAD, Connection: close,
// oversize heads, and the answer's headers.
func TestServerHTTP(t *testing.T) {
	eng := &fakeEngine{}
	s, base := testServer(t, eng, Options{})
	// net/http's client, a chunked body of unknown length and one sent
	// after 100 Continue.
	tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	req, _ := http.NewRequest("POST", base+"/", io.MultiReader(strings.NewReader("id=chunk&lat=1"), strings.NewReader("&lon=2")))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res, err := c.Do(req); err != nil || res.StatusCode != 200 || len(res.TransferEncoding) != 0 {
		t.Fatalf("chunked: %v %+v", err, res)
	} else {
		res.Body.Close()
	}
	req, _ = http.NewRequest("POST", base+"/", strings.NewReader("id=cont&lat=1&lon=2"))
	req.Header.Set("Expect", "100-continue")
	if res, err := c.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("100-continue: %v %+v", err, res)
	} else {
		res.Body.Close()
	}

	raw := func(in string, methods ...string) []*http.Response {
		t.Helper()
		nc, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(nc, in); err != nil {
			t.Fatal(err)
		}
		_ = nc.(*net.TCPConn).CloseWrite()
		br := bufio.NewReader(nc)
		var out []*http.Response
		for {
			if _, err := br.Peek(1); err == io.EOF {
				return out
			}
			m := "GET"
			if len(out) < len(methods) {
				m = methods[len(out)]
			}
			res, err := http.ReadResponse(br, &http.Request{Method: m})
			if err != nil {
				t.Fatalf("%q: %v", in, err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body = io.NopCloser(bytes.NewReader(b))
			out = append(out, res)
		}
	}
	// 100 pipelined requests in one write: 100 answers in order.
	var in strings.Builder
	for i := range 100 {
		fmt.Fprintf(&in, "GET /?id=p%d&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	eng.mu.Lock()
	n0 := len(eng.applied)
	eng.mu.Unlock()
	if res := raw(in.String()); len(res) != 100 {
		t.Fatalf("%d answers to 100 pipelined requests", len(res))
	} else {
		for _, r := range res {
			if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Date") == "" || r.Close {
				t.Fatalf("pipelined answer %+v", r)
			}
		}
	}
	eng.mu.Lock()
	for i, u := range eng.applied[n0 : n0+100] {
		if string(u.ID) != fmt.Sprintf("p%d", i) {
			t.Fatalf("pipelined point %d is %s", i, u.ID)
		}
	}
	eng.mu.Unlock()

	for _, tt := range []struct {
		name, in string
		methods  []string
		codes    []int
		close    bool // the last answer says Connection: close
	}{
		{"http/1.0 closes", "GET /?id=a&lat=1&lon=2 HTTP/1.0\r\n\r\nGET /?id=b&lat=1&lon=2 HTTP/1.0\r\n\r\n", nil, []int{200}, true},
		{"http/1.0 keep-alive", "GET /?id=a&lat=1&lon=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /?id=b&lat=1&lon=2 HTTP/1.0\r\n\r\n", nil, []int{200, 200}, true},
		{"close", "GET /?id=a&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /?id=b&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\n", nil, []int{200}, true},
		{"400 keeps the connection", "GET /?lat=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /?id=b&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\n", nil, []int{400, 200}, false},
		{"malformed closes", "GET /?id=a&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nOops\r\n\r\nGET / HTTP/1.1\r\n\r\n", nil, []int{200, 400}, true},
		{"head", "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /?id=a&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HEAD"}, []int{405, 200}, false},
		{"431", "GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", maxHead) + "\r\n\r\n", nil, []int{431}, true},
		{"431 without an end", "GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 3*maxHead), nil, []int{431}, true},
		{"413", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nid=", nil, []int{413}, true},
		{"413 chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n", nil, []int{413}, true},
		{"505", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", nil, []int{505}, true},
	} {
		res := raw(tt.in, tt.methods...)
		if len(res) == 0 {
			t.Errorf("%s: no answer", tt.name)
			continue
		}
		var codes []int
		for _, r := range res {
			codes = append(codes, r.StatusCode)
		}
		if fmt.Sprint(codes) != fmt.Sprint(tt.codes) || res[len(res)-1].Close != tt.close {
			t.Errorf("%s: answers %v (close %v), want %v (close %v)", tt.name, codes, res[len(res)-1].Close, tt.codes, tt.close)
		}
		if last := res[len(res)-1]; last.StatusCode != 200 && last.StatusCode != 405 {
			b, _ := io.ReadAll(last.Body)
			if !bytes.HasPrefix(b, []byte(`{"error":"osmand`)) {
				t.Errorf("%s: body %s", tt.name, b)
			}
		}
	}
	if st := s.Stats.Snapshot(); st.Connections != 0 && st.ConnectionsTotal == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// testServer starts a Server over a fake engine.
func testServer(tb testing.TB, eng *fakeEngine, o Options) (*Server, string) {
	com := newTestCommitter(eng)
	tb.Cleanup(com.Close)
	o.Addr = "127.0.0.1:0"
	o.Logger = discard
	s, err := Listen(o, com)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, "http://" + s.Addr().String()
}

var discard = slog.New(slog.DiscardHandler)

func newTestCommitter(eng *fakeEngine) *gateway.Committer { return gateway.NewCommitter(eng, 0, 0) }

// TestServerTimeouts: a head not finished within the head timeout, a
// body not finished within the request's, and a connection idle past the
// idle timeout are closed without an answer and counted; a slow device
// that finishes in time is answered.
func TestServerTimeouts(t *testing.T) {
	eng := &fakeEngine{}
	com := newTestCommitter(eng)
	defer com.Close()
	s, err := listen(Options{Addr: "127.0.0.1:0", Logger: discard}, com,
		timeouts{head: 500 * time.Millisecond, read: 900 * time.Millisecond, idle: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c, bufio.NewReader(c)
	}
	// closed waits for the server to close c, which must not answer.
	closed := func(name string, c net.Conn, br *bufio.Reader, within time.Duration) {
		t.Helper()
		start := time.Now()
		if b, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%s: read %q %v, want EOF", name, b, err)
		}
		if d := time.Since(start); d > within {
			t.Errorf("%s: closed after %v, want within %v", name, d, within)
		}
		c.Close()
	}
	c, br := dial()
	io.WriteString(c, "GET /?id=a&lat=1&lon=2 HTTP/1.1\r\nHo")
	closed("head", c, br, 2*time.Second)

	// A body may take longer than the head timeout, within the
	// request's.
	c, br = dial()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\nid=a")
	time.Sleep(600 * time.Millisecond)
	io.WriteString(c, "&lat=1&lon=2")
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("body after the head timeout: %v %+v", err, res)
	}
	c.Close()
	c, br = dial()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\nid=a")
	closed("body", c, br, 2*time.Second)

	// A slow device: a byte every 2 ms, twice, with a pause between
	// requests shorter than the idle timeout; then idle.
	c, br = dial()
	req := "GET /?id=slow&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\n"
	for range 2 {
		for i := range len(req) {
			io.WriteString(c, req[i:i+1])
			time.Sleep(2 * time.Millisecond)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("slow device: %v %+v", err, res)
		}
		io.Copy(io.Discard, res.Body)
		time.Sleep(200 * time.Millisecond)
	}
	closed("idle", c, br, 2*time.Second)
	if st := s.Stats.Snapshot(); st.Timeouts != 3 || st.Acks != 3 {
		t.Fatalf("stats %+v", st)
	}
}

package frontdoor

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// conn is one connection the front door serves. Its fields belong to its
// goroutine.
type conn struct {
	s      *Server
	nc     net.Conn
	remote string
	host   string          // the last request's Host
	ctx    context.Context // the requests' context: cancelled when the connection ends
	cancel context.CancelFunc

	buf    []byte // read buffer; buf[r:w] is unread
	r, w   int
	inHead bool // buf[r:w] is part of a head: ReadHeaderTimeout runs
	served int  // requests answered

	h        head
	req      request
	res      response
	deadline time.Time // the read deadline set on nc
	dateSec  int64
	date     []byte // the Date value of dateSec
}

const readInit = 4 << 10

// request holds what each request of a connection reuses.
type request struct {
	base http.Request // zero but for the connection's context
	r    http.Request
	url  url.URL
	hdr  http.Header
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, remote: nc.RemoteAddr().String(), buf: make([]byte, readInit)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.req.base = http.Request{}
	c.req.base = *c.req.base.WithContext(c.ctx)
	c.req.hdr = http.Header{}
	c.res.c = c
	c.res.hdr = http.Header{}
	return c
}

func (c *conn) serve() {
	handed := false
	defer func() {
		c.cancel()
		if !handed {
			_ = c.nc.Close()
		}
		c.s.untrack(c)
	}()
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			c.s.log.Error("frontdoor: handler panic; connection closed", "remote", c.remote, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	for {
		n := headEnd(c.buf[c.r:c.w])
		if n < 0 {
			handed = c.handOn()
			return
		}
		if n == 0 {
			if c.w-c.r >= MaxHead {
				handed = c.handOn()
				return
			}
			if !c.read() {
				return
			}
			continue
		}
		c.inHead = false
		host, ok := parseHead(c.buf[c.r:c.r+n], &c.h, c.req.hdr, c.host)
		c.host = host
		if !ok {
			handed = c.handOn()
			return
		}
		target := string(c.h.target)
		if path, _, _ := strings.Cut(target, "?"); !c.s.paths(path) {
			handed = c.handOn()
			return
		}
		if !c.s.setBusy(c, true) {
			return
		}
		c.s.served.Add(1) // before: the client may read the answer before this goroutine runs again
		c.answer(host, target)
		c.r += n
		if c.r == c.w {
			c.r, c.w = 0, 0
		}
		c.served++
		if c.res.err != nil || c.h.close {
			return
		}
	}
}

// read reads more of a head into buf; false: the connection is done (an
// error, a timeout, or the server closing while it was idle).
func (c *conn) read() bool {
	switch {
	case c.r == c.w && c.served > 0:
		// Between requests: IdleTimeout, renewed lazily (idleSlack).
		c.r, c.w = 0, 0
		if len(c.buf) > readInit {
			c.buf = make([]byte, readInit) // a long head is gone: so is its buffer
		}
		if !c.s.setBusy(c, false) {
			return false
		}
		if now := time.Now(); c.deadline.Sub(now) < c.idleTimeout() {
			c.deadline = now.Add(c.idleTimeout() + idleSlack)
			_ = c.nc.SetReadDeadline(c.deadline)
		}
	case !c.inHead:
		// A head begins (or, on a new connection, is awaited): the client
		// has ReadHeaderTimeout to send all of it, as under net/http.
		c.inHead = true
		if t := c.s.hs.ReadHeaderTimeout; t > 0 {
			c.deadline = time.Now().Add(t)
			_ = c.nc.SetReadDeadline(c.deadline)
		}
	}
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if c.w == len(c.buf) {
		c.buf = append(c.buf, make([]byte, min(len(c.buf), MaxHead))...)
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.w += n
	return n > 0 || err == nil
}

func (c *conn) idleTimeout() time.Duration {
	if t := c.s.hs.IdleTimeout; t > 0 {
		return t
	}
	return 2 * time.Minute
}

// handOn gives the connection, with what was read of it, to net/http.
func (c *conn) handOn() bool {
	_ = c.nc.SetReadDeadline(time.Time{})
	pre := bytes.Clone(c.buf[c.r:c.w])
	return c.s.give(&prefixConn{Conn: c.nc, pre: pre})
}

// answer runs the handler for the parsed head and sends its answer.
func (c *conn) answer(host, target string) {
	q := &c.req
	path, query, _ := strings.Cut(target, "?")
	q.url = url.URL{Path: path, RawQuery: query}
	method := http.MethodGet
	if string(c.h.method) == http.MethodHead {
		method = http.MethodHead
	}
	proto := "HTTP/1.1"
	if c.h.minor == 0 {
		proto = "HTTP/1.0"
	}
	// A fresh request each time (a handler may have set Form, or the mux
	// its pattern), copied from one that holds the context: no
	// allocation, where WithContext makes one.
	r := &q.r
	*r = q.base
	r.Method, r.URL, r.Proto, r.ProtoMajor, r.ProtoMinor = method, &q.url, proto, 1, c.h.minor
	r.Header, r.Body, r.Host, r.RemoteAddr, r.RequestURI, r.Close = q.hdr, http.NoBody, host, c.remote, target, c.h.close
	c.res.reset(method == http.MethodHead, c.h.close, c.h.minor == 0)
	c.s.hs.Handler.ServeHTTP(&c.res, r)
	c.res.finish()
}

// httpDate is the Date header's value now, formatted once a second.
func (c *conn) httpDate() []byte {
	t := time.Now()
	if sec := t.Unix(); sec != c.dateSec || c.date == nil {
		c.dateSec = sec
		c.date = t.UTC().AppendFormat(c.date[:0], http.TimeFormat)
	}
	return c.date
}

// response is the http.ResponseWriter of a request served here.
type response struct {
	c       *conn
	hdr     http.Header
	code    int
	wrote   bool   // the status is set
	sent    bool   // the head is on the wire (chunked)
	isHead  bool   // a HEAD request: no body is sent
	close   bool   // Connection: close
	http10  bool   // an HTTP/1.0 request: keep-alive is said when kept
	body    []byte // from getBuf while the handler writes; nil between requests
	bodyLen int64  // bytes the handler wrote
	err     error
}

func (w *response) reset(isHead, close, http10 bool) {
	clear(w.hdr)
	w.code, w.wrote, w.sent, w.isHead, w.close, w.http10, w.bodyLen, w.err = 0, false, false, isHead, close, http10, 0, nil
}

func (w *response) Header() http.Header { return w.hdr }

func (w *response) WriteHeader(code int) {
	if w.wrote || code < 200 {
		return // 1xx: not sent (no handler served here sends one)
	}
	w.code, w.wrote = code, true
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !bodyAllowed(w.code) {
		return 0, http.ErrBodyNotAllowed
	}
	w.bodyLen += int64(len(p))
	if w.isHead {
		return len(p), nil
	}
	if w.body == nil {
		w.body = getBuf()
	}
	w.body = append(w.body, p...)
	if len(w.body) >= BodyBuffer {
		w.sendChunk()
	}
	return len(p), w.err
}

// Flush sends what is buffered, chunked from then on.
func (w *response) Flush() { _ = w.FlushError() }

func (w *response) FlushError() error {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if !w.isHead && bodyAllowed(w.code) && w.err == nil {
		w.sendChunk()
	}
	return w.err
}

// sendChunk sends the head (the first time) and the buffered body as a
// chunk.
func (w *response) sendChunk() {
	out := getBuf()
	if !w.sent {
		out = w.appendHead(out, -1)
		w.sent = true
	}
	if len(w.body) > 0 {
		out = strconv.AppendInt(out, int64(len(w.body)), 16)
		out = append(out, "\r\n"...)
		out = append(out, w.body...)
		out = append(out, "\r\n"...)
	}
	w.body = w.body[:0]
	w.write(out)
}

// finish completes the answer: head and body in one write, or the last
// chunk.
func (w *response) finish() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	defer func() { // an idle connection holds no answer's memory
		putBuf(w.body)
		w.body = nil
	}()
	if w.err != nil {
		return
	}
	out := getBuf()
	switch {
	case w.sent:
		if len(w.body) > 0 {
			out = strconv.AppendInt(out, int64(len(w.body)), 16)
			out = append(out, "\r\n"...)
			out = append(out, w.body...)
			out = append(out, "\r\n"...)
		}
		out = append(out, "0\r\n\r\n"...)
	default:
		out = w.appendHead(out, w.bodyLen)
		if !w.isHead {
			out = append(out, w.body...)
		}
	}
	w.write(out)
}

// write sends out, a buffer from getBuf, and returns it to the pool.
func (w *response) write(out []byte) {
	if _, err := w.c.nc.Write(out); err != nil {
		w.err = err
	}
	putBuf(out)
}

// bufPool holds answer buffers between requests, so that an idle
// connection keeps none (measured: TestIdleConnMemory).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func getBuf() []byte { return (*bufPool.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if b == nil || cap(b) > 2*BodyBuffer+MaxHead {
		return // an outsized one goes to the collector
	}
	bufPool.Put(&b)
}

// appendHead appends the status line and headers; length < 0: chunked.
func (w *response) appendHead(dst []byte, length int64) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(w.code), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(w.code)...)
	dst = append(dst, "\r\n"...)
	for k, vs := range w.hdr {
		if k == "Content-Length" && length < 0 || k == "Transfer-Encoding" || k == "Connection" {
			continue // the front door frames the answer
		}
		for _, v := range vs {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = appendValue(dst, v)
			dst = append(dst, "\r\n"...)
		}
	}
	if _, ok := w.hdr["Date"]; !ok {
		dst = append(dst, "Date: "...)
		dst = append(dst, w.c.httpDate()...)
		dst = append(dst, "\r\n"...)
	}
	if bodyAllowed(w.code) {
		if _, ok := w.hdr["Content-Type"]; !ok && w.bodyLen > 0 && !w.isHead {
			dst = append(dst, "Content-Type: "...)
			dst = append(dst, http.DetectContentType(w.body)...)
			dst = append(dst, "\r\n"...)
		}
		switch _, set := w.hdr["Content-Length"]; {
		case length < 0:
			dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
		case !set:
			dst = append(dst, "Content-Length: "...)
			dst = strconv.AppendInt(dst, length, 10)
			dst = append(dst, "\r\n"...)
		}
	}
	switch {
	case w.close:
		dst = append(dst, "Connection: close\r\n"...)
	case w.http10:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// appendValue appends a header value with CR and LF made spaces, as
// net/http does.
func appendValue(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

// bodyAllowed: a status whose answer has a body (RFC 9110, 6.4.1).
func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

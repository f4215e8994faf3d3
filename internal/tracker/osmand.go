package tracker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// httpConn is one OsmAnd tracker's keep-alive HTTP/1.1 connection: one
// request in flight, as a phone sends, written from the caller's buffer
// and answered into a fixed read buffer, so that a report allocates
// nothing once connected. net/http's client, which the trackers used
// before, cost more CPU a request than fleetd's gateway does to serve it:
// fleetd sim --protocol osmand peaked at ~5k requests/s where the raw
// client of internal/osmand's BenchmarkServerRaw drives the same server
// past 80k.
//
// Answers are read as RFC 9112 frames them for a GET: a status line and
// headers (at most len(rbuf) bytes together), then a Content-Length body,
// or for an answer without one that ends the connection, everything up to
// the close; 1xx heads are skipped. A chunked answer (fleetd never sends
// one) is an error. The connection is closed after an answer that says
// Connection: close (or an HTTP/1.0 one without keep-alive) and after any
// error; the next request dials again, after a backoff that doubles with
// each failure in a row (backoffMin to backoffMax, jittered). A request
// that fails on a connection kept alive from an earlier one before any
// byte of its answer arrives (the server closed the idle connection) is
// sent once more on a new one, as net/http does for a GET.
//
// Only the goroutine that calls do touches the fields, except mu's, which
// abort takes from another.
type httpConn struct {
	dial    func() (net.Conn, error)
	onDial  func() // called after each successful dial
	c       net.Conn
	reused  bool      // c has answered a request before
	got     bool      // a byte of the current answer has been read
	fails   int       // failures in a row, for the backoff
	ioDead  time.Time // c's deadline, moved only when it is a second stale
	rbuf    []byte
	r, w    int // rbuf[r:w] is read and not yet consumed
	snip    [96]byte
	nsnip   int // the first bytes of a non-200 answer's body, for the error
	aborted atomic.Bool
	mu      sync.Mutex // guards c's replacement against abort
}

const (
	dialTimeout = 10 * time.Second
	ioTimeout   = 30 * time.Second // a request's write and its answer
	backoffMin  = 10 * time.Millisecond
	backoffMax  = time.Second
	// readBuf is an answer head's limit: fleetd's are ~100 bytes.
	readBuf = 4 << 10
)

var (
	errChunked = errors.New("tracker: chunked answer (not supported)")
	errNoLen   = errors.New("tracker: kept-alive answer without Content-Length")
	errHead    = errors.New("tracker: answer head over 4 KiB")
	errAborted = errors.New("tracker: stopped")
)

// osmandTarget parses --target http://host[:port][/path] into the
// address to dial, the Host header and the request path ("/path/").
func osmandTarget(target string) (addr, host, path string, err error) {
	u, err := url.Parse(target)
	switch {
	case err != nil:
		return "", "", "", fmt.Errorf("tracker: target %q: %w", target, err)
	case u.Scheme != "http":
		return "", "", "", fmt.Errorf("tracker: target %q: want http://host:port", target)
	case u.Host == "" || u.RawQuery != "" || u.User != nil:
		return "", "", "", fmt.Errorf("tracker: target %q: want http://host:port[/path]", target)
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return addr, u.Host, strings.TrimSuffix(u.EscapedPath(), "/") + "/", nil
}

func newHTTPConn(addr string, onDial func()) *httpConn {
	return &httpConn{
		dial:   func() (net.Conn, error) { return net.DialTimeout("tcp", addr, dialTimeout) },
		onDial: onDial,
		rbuf:   make([]byte, readBuf),
	}
}

// do sends req (a whole request) and returns the answer's status; a body
// of a non-200 answer begins with h.body().
func (h *httpConn) do(ctx context.Context, req []byte) (int, error) {
	if h.c != nil && h.r != h.w {
		// Bytes the server sent after its last answer: not a frame
		// boundary to send the next request on (and not retried).
		err := fmt.Errorf("tracker: %d bytes after the last answer", h.w-h.r)
		h.drop()
		h.fails++
		return 0, err
	}
	for retried := false; ; retried = true {
		if h.c == nil {
			if err := h.connect(ctx); err != nil {
				return 0, err
			}
		}
		reused := h.reused
		status, err := h.roundTrip(req)
		if err == nil {
			h.fails = 0
			return status, nil
		}
		h.drop()
		if reused && !h.got && !retried && !h.aborted.Load() && !errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		h.fails++
		return 0, err
	}
}

// connect dials, after the backoff if the last attempts failed.
func (h *httpConn) connect(ctx context.Context) error {
	if h.fails > 0 {
		d := min(backoffMin<<min(h.fails-1, 16), backoffMax)
		d = d/2 + rand.N(d/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	c, err := h.dial()
	if err != nil {
		h.fails++
		return err
	}
	h.mu.Lock()
	if h.aborted.Load() {
		h.mu.Unlock()
		c.Close()
		return errAborted
	}
	h.c = c
	h.mu.Unlock()
	h.reused, h.r, h.w, h.ioDead = false, 0, 0, time.Time{}
	if h.onDial != nil {
		h.onDial()
	}
	return nil
}

// drop closes the connection.
func (h *httpConn) drop() {
	h.mu.Lock()
	if h.c != nil {
		h.c.Close()
		h.c = nil
	}
	h.mu.Unlock()
}

// abort makes the request in flight, if any, and every later one fail at
// once; safe to call from any goroutine.
func (h *httpConn) abort() {
	h.aborted.Store(true)
	h.mu.Lock()
	if h.c != nil {
		_ = h.c.SetDeadline(time.Unix(1, 0))
	}
	h.mu.Unlock()
}

func (h *httpConn) body() []byte { return h.snip[:h.nsnip] }

func (h *httpConn) roundTrip(req []byte) (int, error) {
	h.got, h.nsnip = false, 0
	h.r, h.w = 0, 0
	// Setting a deadline costs a timer update: move it only when it has
	// gone a second stale (as the gateway does for its reads).
	if d := time.Now().Add(ioTimeout); d.Sub(h.ioDead) > time.Second {
		if err := h.c.SetDeadline(d); err != nil {
			return 0, err
		}
		h.ioDead = d
		// abort sets aborted and then the deadline: seeing it unset here
		// means its deadline comes after this one.
		if h.aborted.Load() {
			return 0, errAborted
		}
	}
	if _, err := h.c.Write(req); err != nil {
		return 0, err
	}
	for {
		status, length, closing, err := h.readHead()
		if err != nil {
			return 0, err
		}
		if status < 200 {
			if status == 101 {
				return 0, errors.New("tracker: answer 101 Switching Protocols to a GET")
			}
			continue
		}
		if status == 204 || status == 304 {
			length = 0
		}
		if length < 0 && !closing {
			return 0, errNoLen
		}
		if err := h.discard(length, status != 200); err != nil {
			return 0, err
		}
		if closing {
			h.drop()
		} else {
			h.reused = true
		}
		return status, nil
	}
}

// fill reads more of the answer into rbuf.
func (h *httpConn) fill() error {
	if h.r == h.w {
		h.r, h.w = 0, 0
	} else if h.w == len(h.rbuf) {
		if h.r == 0 {
			return errHead
		}
		h.w = copy(h.rbuf, h.rbuf[h.r:h.w])
		h.r = 0
	}
	for {
		n, err := h.c.Read(h.rbuf[h.w:])
		if n > 0 {
			h.w += n
			h.got = true
			return nil
		}
		if err != nil {
			return err
		}
	}
}

var crlf2 = []byte("\r\n\r\n")

// readHead reads an answer's status line and headers and consumes them:
// the status, the Content-Length (-1 if none), and whether the connection
// ends after this answer.
func (h *httpConn) readHead() (status int, length int64, closing bool, err error) {
	from := h.r
	for {
		if i := bytes.Index(h.rbuf[from:h.w], crlf2); i >= 0 {
			end := from + i + len(crlf2)
			head := h.rbuf[h.r:end]
			h.r = end
			return parseHead(head)
		}
		from = max(h.r, h.w-len(crlf2)+1)
		off := h.r
		if err := h.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, false, err
		}
		from -= off - h.r // fill may have moved the unread bytes to the front
	}
}

// parseHead parses an answer head that ends with its blank line.
func parseHead(head []byte) (status int, length int64, closing bool, err error) {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[7] < '0' || line[7] > '9' ||
		line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, 0, false, fmt.Errorf("tracker: malformed status line %q", clip(line))
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, false, fmt.Errorf("tracker: malformed status line %q", clip(line))
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, 0, false, fmt.Errorf("tracker: malformed status line %q", clip(line))
	}
	http10 := line[7] == '0'
	var sawClose, sawKeep bool
	length = -1
	for len(rest) > 2 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return 0, 0, false, fmt.Errorf("tracker: malformed header %q", clip(line))
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseLength(value)
			if !ok || (length >= 0 && n != length) {
				return 0, 0, false, fmt.Errorf("tracker: bad Content-Length %q", clip(value))
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, 0, false, errChunked
		case bytes.EqualFold(name, []byte("Connection")):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = bytes.Trim(tok, " \t")
				switch {
				case bytes.EqualFold(tok, []byte("close")):
					sawClose = true
				case bytes.EqualFold(tok, []byte("keep-alive")):
					sawKeep = true
				}
			}
		}
	}
	// close wins over keep-alive; HTTP/1.0 closes unless kept alive.
	return status, length, sawClose || (http10 && !sawKeep), nil
}

// parseLength parses a Content-Length: digits, at most 1 GiB.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 10 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, n <= 1<<30
}

// discard consumes a body of length bytes, or up to the close if length
// is -1, keeping its first bytes in snip if keep.
func (h *httpConn) discard(length int64, keep bool) error {
	for length != 0 {
		if h.r == h.w {
			if err := h.fill(); err != nil {
				if length < 0 && err == io.EOF {
					return nil
				}
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		n := h.w - h.r
		if length >= 0 {
			n = int(min(int64(n), length))
			length -= int64(n)
		}
		if keep {
			h.nsnip += copy(h.snip[h.nsnip:], h.rbuf[h.r:h.r+n])
		}
		h.r += n
	}
	return nil
}

// clip bounds a malformed line quoted in an error.
func clip(b []byte) []byte { return b[:min(len(b), 64)] }

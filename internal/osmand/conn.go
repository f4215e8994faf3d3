package osmand

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/gateway"
)

// conn is one connection and the state of its goroutine (doc.go, "HTTP").
// Nothing in it is shared: only Server.Close touches nc, to close it.
type conn struct {
	s  *Server
	nc net.Conn

	buf  []byte // buf[r:w]: received, not yet consumed
	r, w int
	scan int       // where headEnd resumes on the head at buf[r:]
	read time.Time // when the last read returned

	// The request whose head is parsed and whose body is still arriving.
	hasHead bool
	head    httpHead
	ch      chunked
	body    []byte    // its chunked body, decoded so far
	started time.Time // when its first bytes arrived; zero between requests
	sent100 bool      // "100 Continue" was written for it

	reqs []*request // one per request of the batch
	ans  []answer
	job  *gateway.Job
	out  []byte

	readDL, writeDL time.Time // the deadlines set on nc
	dateSec         int64     // the second date holds
	date            []byte    // the Date header's value
	remote          string    // nc's remote address, formatted on first use
}

// answer is how one request of a batch is answered.
type answer struct {
	code     int
	msg      string // the error, for a code other than 200
	close    bool   // the connection ends after it
	noBody   bool   // a HEAD request: headers only
	keep10   bool   // an HTTP/1.0 request that asked for keep-alive
	point    bool   // its point is in the batch's job: 200 or 503 after the commit
	received time.Time
}

// initialBuf is a connection's first read buffer: a device's request is
// a few hundred bytes. It grows, for a large request, up to bufLimit.
const initialBuf = 4 << 10

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{s: s, nc: nc, buf: make([]byte, initialBuf), job: gateway.NewJob()}
}

// bufLimit is the largest buffer a request needs: a whole head, and a
// Content-Length body or one chunk with its size line.
func (c *conn) bufLimit() int { return maxHead + int(c.s.o.MaxBody) + maxChunkLine + 2 }

// serve reads requests, answers each batch of them after one commit, and
// closes the connection when the device does, on a timeout, or after an
// answer that ends it.
func (c *conn) serve() {
	defer c.s.forget(c)
	defer c.nc.Close()
	for {
		closing, more := c.batch()
		if !c.flush() {
			return
		}
		if closing {
			c.linger()
			return
		}
		if more {
			continue // maxPipeline requests answered, complete ones left
		}
		if !c.fill() {
			return
		}
	}
}

// batch parses the complete requests buffered (up to maxPipeline),
// commits their points in one Commit and writes their answers into
// c.out. closing: the last answer ends the connection; more: requests
// are left that may be complete.
func (c *conn) batch() (closing, more bool) {
	c.ans = c.ans[:0]
	c.job.Updates = c.job.Updates[:0]
	for {
		if len(c.ans) == maxPipeline {
			more = true
			break
		}
		a, ok := c.next()
		if !ok {
			break
		}
		c.ans = append(c.ans, a)
		if a.close {
			closing = true
			break
		}
	}
	if len(c.job.Updates) > 0 {
		c.commit()
	}
	for i := range c.ans {
		c.appendAnswer(&c.ans[i])
	}
	if c.hasHead && c.head.continue100 && !c.sent100 && !closing {
		c.out = append(c.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
		c.sent100 = true
	}
	for _, rq := range c.reqs {
		if cap(rq.p.raw) > maxPooledBody || cap(rq.p.tmp) > maxPooledBody {
			rq.p = Params{}
		}
	}
	return closing, more
}

// next takes the next complete request from the buffer and judges it;
// ok is false if none is complete yet.
func (c *conn) next() (a answer, ok bool) {
	s := c.s
	if c.r < c.w && c.started.IsZero() {
		c.started = c.read
	}
	if !c.hasHead {
		b := c.buf[c.r:c.w]
		n := headEnd(b, c.scan)
		if n == 0 {
			if len(b) > maxHead {
				return c.refuse(errHeadTooLarge), true
			}
			c.scan = headScanFrom(b)
			return a, false
		}
		c.scan = 0
		if n > maxHead {
			return c.refuse(errHeadTooLarge), true
		}
		h, err := parseHead(b[:n])
		if err != nil {
			return c.refuse(err), true
		}
		if !h.chunked && h.length > s.o.MaxBody {
			return c.refuse(bodyTooLarge(s.o.MaxBody)), true
		}
		c.head, c.hasHead, c.ch, c.body, c.sent100 = h, true, chunked{}, c.body[:0], false
	}
	h := &c.head
	start := c.r + h.size
	var body []byte
	end := start + int(h.length)
	if h.chunked {
		var err *httpError
		c.body, err = decodeChunked(c.buf[start:c.w], &c.ch, c.body, s.o.MaxBody)
		if err == errNeedMore {
			return a, false
		}
		if err != nil {
			return c.refuse(err), true
		}
		body, end = c.body, start+c.ch.at
	} else {
		if end > c.w {
			return a, false
		}
		body = c.buf[start:end]
	}
	c.r, c.hasHead = end, false
	received := c.read
	c.started = time.Time{}
	a = c.handle(h, body, received)
	a.received = received
	a.noBody = string(h.method) == http.MethodHead
	a.close = a.close || h.close
	a.keep10 = h.minor == 0 && !a.close
	return a, true
}

// refuse answers a request whose framing is broken, and ends the
// connection.
func (c *conn) refuse(err *httpError) answer {
	c.s.Stats.BadFrames.Add(1)
	c.s.rejLog.Warn("osmand: request refused", "code", err.code, "remote", c.remoteAddr(), "error", err.msg)
	c.hasHead = false
	return answer{code: err.code, msg: err.msg, close: true}
}

// handle parses one request's position into the batch's job (doc.go).
func (c *conn) handle(h *httpHead, body []byte, received time.Time) answer {
	s := c.s
	switch string(h.method) {
	case http.MethodGet:
	case http.MethodPost:
		if isJSON(h.ctype) {
			u, err := ParseJSON(body, received.Unix())
			return c.point(u, err, received)
		}
	default:
		return answer{code: http.StatusMethodNotAllowed, msg: "osmand: use GET or POST"}
	}
	rq := c.request()
	rq.p.Reset()
	if string(h.method) == http.MethodPost {
		// A form body, or none: the parameters may also be in the
		// query, and the body's win (scanned first).
		rq.p.AddBytes(body)
	}
	rq.p.AddBytes(query(h.target))
	u, err := Parse(&rq.p, s.o.Speed, received.Unix())
	return c.point(u, err, received)
}

// request returns the scratch of the batch's next query request.
func (c *conn) request() *request {
	n := len(c.job.Updates)
	for len(c.reqs) <= n {
		c.reqs = append(c.reqs, new(request))
	}
	// The batch's requests that did not reach the job (refused) reuse
	// the scratch of the next point: nothing of theirs is kept.
	return c.reqs[n]
}

// point checks a parsed point and adds it to the batch.
func (c *conn) point(u fleet.Update, err error, received time.Time) answer {
	s := c.s
	if err == nil {
		err = gateway.Check(&u, received.Unix(), int64(s.o.MaxAhead/time.Second))
	}
	if err != nil {
		s.Stats.BadFrames.Add(1)
		s.rejLog.Warn("osmand: position refused (400)", "remote", c.remoteAddr(), "error", err)
		return answer{code: http.StatusBadRequest, msg: err.Error()}
	}
	s.Stats.Frames.Add(1)
	c.job.Updates = append(c.job.Updates, u)
	return answer{code: http.StatusOK, point: true}
}

// commit makes the batch's points durable and sets their answers.
func (c *conn) commit() {
	s := c.s
	err := s.com.Commit(c.job)
	clear(c.job.Updates) // do not pin the IDs' buffers
	n := int64(len(c.job.Updates))
	if err == nil {
		s.Stats.Points.Add(n)
		return
	}
	s.Stats.CommitErrors.Add(n)
	s.errLog.Warn("osmand: positions not acknowledged: the engine could not make them durable", "positions", n, "error", err)
	msg := "osmand: not stored, retry: " + err.Error()
	for i := range c.ans {
		if a := &c.ans[i]; a.point {
			a.code, a.msg = http.StatusServiceUnavailable, msg
		}
	}
}

const okBody = `{"ok":true}`

// appendAnswer writes a's response into c.out: {"ok":true} or
// {"error":msg}, as JSON with a Content-Length.
func (c *conn) appendAnswer(a *answer) {
	b := c.out
	if a.code == http.StatusOK {
		b = append(b, "HTTP/1.1 200 OK\r\n"...)
	} else {
		b = append(b, "HTTP/1.1 "...)
		b = strconv.AppendInt(b, int64(a.code), 10)
		b = append(b, ' ')
		b = append(b, http.StatusText(a.code)...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Type: application/json\r\nDate: "...)
	b = append(b, c.httpDate(a.received)...)
	b = append(b, "\r\n"...)
	switch {
	case a.close:
		b = append(b, "Connection: close\r\n"...)
	case a.keep10:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	switch a.code {
	case http.StatusServiceUnavailable:
		b = append(b, "Retry-After: 1\r\n"...)
	case http.StatusMethodNotAllowed:
		b = append(b, "Allow: GET, POST\r\n"...)
	}
	var body []byte
	if a.code == http.StatusOK {
		body = []byte(okBody)
	} else {
		m, _ := json.Marshal(a.msg) // a string always marshals
		body = append(append([]byte(`{"error":`), m...), '}')
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	if !a.noBody {
		b = append(b, body...)
	}
	c.out = b
}

// httpDate is the Date header's value for t, formatted once a second.
func (c *conn) httpDate(t time.Time) []byte {
	if t.IsZero() {
		t = time.Now()
	}
	if sec := t.Unix(); sec != c.dateSec || c.date == nil {
		c.dateSec = sec
		c.date = t.UTC().AppendFormat(c.date[:0], http.TimeFormat)
	}
	return c.date
}

// flush writes c.out, then counts the acknowledgements in it; false: the
// connection is broken.
func (c *conn) flush() bool {
	if len(c.out) == 0 {
		return true
	}
	now := time.Now()
	if c.writeDL.Sub(now) < writeTimeout-time.Second {
		c.writeDL = now.Add(writeTimeout)
		_ = c.nc.SetWriteDeadline(c.writeDL)
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	if err != nil {
		return false
	}
	s := c.s
	for i := range c.ans {
		if a := &c.ans[i]; a.point && a.code == http.StatusOK {
			s.Stats.Acks.Add(1)
			s.Stats.AckLatency.Observe(now.Sub(a.received))
		}
	}
	return true
}

// fill reads more bytes, making room first; false: the connection is
// over (EOF, an error or a timeout).
func (c *conn) fill() bool {
	if c.r == c.w && !c.hasHead {
		c.r, c.w = 0, 0
	}
	if c.w == len(c.buf) {
		c.makeRoom()
	}
	// The deadline: the idle timeout between requests, the head's or the
	// request's once one has begun. A later deadline is only set when it
	// moved by more than a second (an eighth of the idle timeout if that
	// is less), so a busy connection sets it about once a second, not at
	// every read.
	now := time.Now()
	var dl time.Time
	to := &c.s.to
	switch {
	case c.started.IsZero():
		dl = now.Add(to.idle)
	case !c.hasHead:
		dl = c.started.Add(to.head)
	default:
		dl = c.started.Add(to.read)
	}
	if dl.Before(c.readDL) || dl.Sub(c.readDL) > min(time.Second, to.idle/8) {
		c.readDL = dl
		_ = c.nc.SetReadDeadline(dl)
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.w += n
	c.read = time.Now()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.s.Stats.Timeouts.Add(1)
		}
		return false
	}
	return true
}

// makeRoom frees or adds room at the end of a full buffer: it drops the
// chunk bytes already decoded, moves the unconsumed bytes to the front,
// or grows the buffer (up to bufLimit, which a request within the limits
// never needs to exceed: next refuses it first).
func (c *conn) makeRoom() {
	if c.hasHead && c.head.chunked && c.ch.at > 0 {
		start := c.r + c.head.size
		c.w = start + copy(c.buf[start:], c.buf[start+c.ch.at:c.w])
		c.ch.at = 0
	}
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
		if c.hasHead {
			// The head's spans moved with it: parse it again where it is
			// now (it parsed before, it parses the same).
			h, err := parseHead(c.buf[:c.head.size])
			if err != nil {
				panic("BUG: osmand: a parsed head no longer parses: " + err.msg)
			}
			c.head = h
		}
	}
	if c.w < len(c.buf) {
		return
	}
	limit := c.bufLimit()
	if len(c.buf) >= limit {
		panic("BUG: osmand: a request within the limits overflows the read buffer")
	}
	nb := make([]byte, min(2*len(c.buf), limit))
	copy(nb, c.buf[:c.w])
	c.buf = nb
}

// linger ends a connection the server closes: it shuts down the sending
// side, then reads and drops what the device still sends for a moment,
// so that the kernel does not answer unread bytes with a reset that
// could discard the answer before the device read it.
func (c *conn) linger() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	for n := 0; n < lingerBytes; {
		k, err := c.nc.Read(c.buf)
		if err != nil {
			return
		}
		n += k
	}
}

func (c *conn) remoteAddr() string {
	if c.remote == "" {
		c.remote = c.nc.RemoteAddr().String()
	}
	return c.remote
}

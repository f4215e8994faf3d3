package teltonika

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/gateway"
)

// Defaults of Options.
const (
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultFrameTimeout     = 2 * time.Minute
	DefaultMaxConns         = 200_000
	writeTimeout            = 10 * time.Second
	maxIMEILen              = 17 // 15 digits; a little slack for odd firmware
)

// Options configures a Server.
type Options struct {
	// Addr is the TCP address to listen on, e.g. 127.0.0.1:5027.
	Addr string
	// IDPrefix is put before the IMEI to make the truck ID ("" keeps the
	// IMEI as it is); prefix and IMEI must make a valid fleet ID.
	IDPrefix string
	// MaxDataLen bounds a frame's announced data length (default
	// DefaultMaxDataLen); a longer one is a bad frame.
	MaxDataLen int
	// HandshakeTimeout closes a connection that has not sent its IMEI
	// this long after connecting; IdleTimeout one that sends nothing for
	// this long between frames; FrameTimeout one that began a frame and
	// has not finished it (a device one byte a second finishes a 100-byte
	// frame in 100 s).
	HandshakeTimeout, IdleTimeout, FrameTimeout time.Duration
	// MaxConns bounds open connections (default DefaultMaxConns); more are
	// closed at once and counted.
	MaxConns int
	// MaxAhead is how far a record's time may be ahead of the server's
	// clock (0: no limit).
	MaxAhead time.Duration
	Logger   *slog.Logger
}

// Server accepts Teltonika devices on a TCP listener (doc.go).
type Server struct {
	o     Options
	ln    net.Listener
	com   *gateway.Committer
	log   *slog.Logger
	Stats gateway.Stats

	badLog, rejLog, errLog gateway.Limiter

	mu struct {
		sync.Mutex
		conns  map[net.Conn]struct{}
		closed bool
	}
	wg sync.WaitGroup
}

// Listen starts a server on o.Addr that commits through com.
func Listen(o Options, com *gateway.Committer) (*Server, error) {
	if o.IDPrefix != "" && !fleet.ValidID([]byte(o.IDPrefix+"123456789012345")) {
		return nil, fmt.Errorf("teltonika: ID prefix %q: prefix and IMEI must be at most 64 bytes of [A-Za-z0-9_.:-]", o.IDPrefix)
	}
	if o.MaxDataLen <= 0 {
		o.MaxDataLen = DefaultMaxDataLen
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.FrameTimeout <= 0 {
		o.FrameTimeout = DefaultFrameTimeout
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("teltonika: %w", err)
	}
	s := &Server{o: o, ln: ln, com: com, log: o.Logger}
	for _, l := range []*gateway.Limiter{&s.badLog, &s.rejLog, &s.errLog} {
		l.Log = o.Logger
	}
	s.mu.conns = make(map[net.Conn]struct{})
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting, closes every connection (a frame not yet
// acknowledged stays unacknowledged: the device resends it) and waits for
// their goroutines.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.mu.closed = true
	for c := range s.mu.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.errLog.Warn("teltonika: accept failed; retrying", "error", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !s.track(c) {
			_ = c.Close()
			continue
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

// track registers c; false if the server is closed or full.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	if len(s.mu.conns) >= s.o.MaxConns {
		s.Stats.ConnsRefused.Add(1)
		s.errLog.Warn("teltonika: connection limit reached; closing new connections", "max_conns", s.o.MaxConns, "remote", c.RemoteAddr().String())
		return false
	}
	s.mu.conns[c] = struct{}{}
	s.Stats.Connections.Add(1)
	s.Stats.ConnectionsTotal.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.mu.conns, c)
	s.mu.Unlock()
	s.Stats.Connections.Add(-1)
	_ = c.Close()
}

// scratch is the working memory of one frame, pooled between frames so
// that an idle connection holds none of it.
type scratch struct {
	buf  []byte
	recs []Record
	job  *gateway.Job
}

// retainBuf bounds the frame buffer a pooled scratch keeps: a device's
// usual 1280-byte packets fit; rarer large ones allocate their own.
const retainBuf = 16 << 10

var scratchPool = sync.Pool{New: func() any { return &scratch{job: gateway.NewJob()} }}

// serve runs one connection: the handshake, then frames until an error.
// Its own state is a few dozen bytes on its stack; see doc.go for the
// memory per connection.
func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer s.untrack(c)
	var idBuf [fleet.MaxIDLen]byte
	id, err := s.handshake(c, idBuf[:0])
	if err != nil {
		s.closing(c, nil, err)
		return
	}
	var hdr [HeaderLen]byte
	for {
		// Idle: wait for the first byte of the next frame with nothing but
		// this 8-byte array.
		if err := readFull(c, hdr[:1], s.o.IdleTimeout); err != nil {
			s.closing(c, id, err)
			return
		}
		frameDeadline := time.Now().Add(s.o.FrameTimeout)
		_ = c.SetReadDeadline(frameDeadline)
		if _, err := io.ReadFull(c, hdr[1:]); err != nil {
			s.closing(c, id, err)
			return
		}
		n, err := ParseHeader(hdr[:], s.o.MaxDataLen)
		if err != nil {
			s.bad(c, id, err)
			return
		}
		sc := scratchPool.Get().(*scratch)
		ok := s.frame(c, id, sc, hdr[:], n)
		sc.recs = sc.recs[:0]
		clear(sc.job.Updates) // do not pin this connection's ID
		sc.job.Updates = sc.job.Updates[:0]
		if cap(sc.buf) > retainBuf {
			sc.buf = nil
		}
		scratchPool.Put(sc)
		if !ok {
			return
		}
	}
}

// frame reads the rest of a frame whose header said n data bytes,
// commits it and acknowledges it; false closes the connection.
func (s *Server) frame(c net.Conn, id []byte, sc *scratch, hdr []byte, n int) bool {
	size := HeaderLen + n + CRCLen
	if cap(sc.buf) < size {
		sc.buf = make([]byte, size, max(size, 2048))
	}
	buf := sc.buf[:size]
	copy(buf, hdr)
	if _, err := io.ReadFull(c, buf[HeaderLen:]); err != nil {
		s.closing(c, id, err)
		return false
	}
	received := time.Now()
	_, recs, err := Decode(buf, sc.recs[:0], s.o.MaxDataLen)
	sc.recs = recs
	if err != nil {
		s.bad(c, id, err)
		return false
	}
	s.Stats.Frames.Add(1)
	now := received.Unix()
	ahead := int64(s.o.MaxAhead / time.Second)
	ups := sc.job.Updates[:0]
	for i := range recs {
		u, err := MakeUpdate(id, &recs[i])
		if err == nil {
			err = gateway.Check(&u, now, ahead)
		}
		if err != nil {
			s.Stats.Rejected.Add(1)
			s.rejLog.Warn("teltonika: record not applied (acknowledged: the device would resend it for ever)",
				"imei", string(id[len(s.o.IDPrefix):]), "error", err)
			continue
		}
		ups = append(ups, u)
	}
	sc.job.Updates = ups
	if err := s.com.Commit(sc.job); err != nil {
		s.Stats.CommitErrors.Add(1)
		s.errLog.Warn("teltonika: frame not acknowledged: the engine could not make it durable; closing so the device resends",
			"imei", string(id[len(s.o.IDPrefix):]), "error", err)
		return false
	}
	s.Stats.Points.Add(int64(len(ups)))
	var ack [4]byte
	binary.BigEndian.PutUint32(ack[:], uint32(len(recs)))
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write(ack[:]); err != nil {
		s.closing(c, id, err)
		return false
	}
	s.Stats.Acks.Add(1)
	s.Stats.AckLatency.Observe(time.Since(received))
	return true
}

// handshake reads the IMEI (2-byte length, ASCII digits), appends the ID
// to dst and answers 01; a malformed one is answered 00.
func (s *Server) handshake(c net.Conn, dst []byte) ([]byte, error) {
	var b [2 + maxIMEILen]byte
	if err := readFull(c, b[:2], s.o.HandshakeTimeout); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(b[:2]))
	if n < 1 || n > maxIMEILen {
		s.reject(c)
		return nil, fmt.Errorf("%w: IMEI length %d, want 1 to %d", errHandshake, n, maxIMEILen)
	}
	if _, err := io.ReadFull(c, b[2:2+n]); err != nil {
		return nil, err
	}
	imei := b[2 : 2+n]
	for _, d := range imei {
		if d < '0' || d > '9' {
			s.reject(c)
			return nil, fmt.Errorf("%w: IMEI %q is not all digits", errHandshake, imei)
		}
	}
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write([]byte{1}); err != nil {
		return nil, err
	}
	dst = append(dst, s.o.IDPrefix...)
	return append(dst, imei...), nil
}

var errHandshake = errors.New("teltonika: bad handshake")

func (s *Server) reject(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{0})
}

// bad counts and logs a malformed frame or handshake; the caller closes.
func (s *Server) bad(c net.Conn, id []byte, err error) {
	s.Stats.BadFrames.Add(1)
	s.badLog.Warn("teltonika: bad frame; closing the connection", "remote", c.RemoteAddr().String(), "imei", imeiOf(id, s.o.IDPrefix), "error", err)
}

// closing sorts out why a connection ends: a silent device, a bad
// handshake, or an ordinary disconnect (EOF, reset), which is not logged.
func (s *Server) closing(c net.Conn, id []byte, err error) {
	switch {
	case errors.Is(err, errHandshake):
		s.bad(c, id, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.Stats.Timeouts.Add(1)
	}
}

func imeiOf(id []byte, prefix string) string {
	if len(id) < len(prefix) {
		return ""
	}
	return string(id[len(prefix):])
}

func readFull(c net.Conn, b []byte, timeout time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.ReadFull(c, b)
	return err
}

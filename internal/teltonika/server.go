package teltonika

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	// Goroutines serves each connection with a goroutine of its own
	// blocked in Read, instead of the poller (Linux only) that holds an
	// idle connection in a few hundred bytes; doc.go compares them.
	// Off Linux it is the only mode.
	Goroutines bool
	Logger     *slog.Logger
}

// Server accepts Teltonika devices on a TCP listener (doc.go).
type Server struct {
	o     Options
	com   *gateway.Committer
	log   *slog.Logger
	addr  net.Addr
	Stats gateway.Stats

	badLog, rejLog, errLog gateway.Limiter

	stop func() error // the mode's Close
	once sync.Once
	err  error
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
	s := &Server{o: o, com: com, log: o.Logger, addr: ln.Addr()}
	for _, l := range []*gateway.Limiter{&s.badLog, &s.rejLog, &s.errLog} {
		l.Log = o.Logger
	}
	if o.Goroutines || !havePoller {
		s.stop = s.serveGoroutines(ln)
		return s, nil
	}
	if s.stop, err = s.servePoller(ln); err != nil {
		return nil, fmt.Errorf("teltonika: %w", err)
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops accepting, closes every connection (a frame not yet
// acknowledged stays unacknowledged: the device resends it) and waits for
// the goroutines working on them.
func (s *Server) Close() error {
	s.once.Do(func() { s.err = s.stop() })
	return s.err
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

func getScratch() *scratch {
	sc := scratchPool.Get().(*scratch)
	sc.buf = sc.buf[:0]
	return sc
}

// growStep is the first size of a newly allocated frame buffer, which
// then doubles as bytes arrive: a frame's memory follows what the device
// has sent, not what its header announced (a device that announces 64 KiB
// and stalls holds 2 KiB).
const growStep = 2048

// window returns where the next bytes of a size-byte frame go, got bytes
// being in: the rest of sc.buf, grown when it is full.
func (sc *scratch) window(got, size int) []byte {
	if got == len(sc.buf) {
		n := size
		if cap(sc.buf) < size {
			n = min(size, max(2*len(sc.buf), growStep))
		}
		if cap(sc.buf) >= n {
			sc.buf = sc.buf[:n]
		} else {
			nb := make([]byte, n)
			copy(nb, sc.buf[:got])
			sc.buf = nb
		}
	}
	return sc.buf[got:]
}

func putScratch(sc *scratch) {
	sc.recs = sc.recs[:0]
	clear(sc.job.Updates) // do not pin a connection's ID
	sc.job.Updates = sc.job.Updates[:0]
	if cap(sc.buf) > retainBuf {
		sc.buf = nil
	}
	scratchPool.Put(sc)
}

// errBadFrame wraps a decoding error of process.
var errBadFrame = errors.New("teltonika: bad frame")

// process decodes the whole frame in sc.buf (complete: its length is the
// frame's), checks its records and
// commits the good ones. It returns the record count to acknowledge, or
// an error: wrapping errBadFrame for a malformed frame, else the
// committer's.
func (s *Server) process(id []byte, sc *scratch, received time.Time) (int, error) {
	_, recs, err := Decode(sc.buf, sc.recs[:0], s.o.MaxDataLen)
	sc.recs = recs
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errBadFrame, err)
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
				"imei", imeiOf(id, s.o.IDPrefix), "error", err)
			continue
		}
		ups = append(ups, u)
	}
	sc.job.Updates = ups
	if err := s.com.Commit(sc.job); err != nil {
		s.Stats.CommitErrors.Add(1)
		s.errLog.Warn("teltonika: frame not acknowledged: the engine could not make it durable; closing so the device resends",
			"imei", imeiOf(id, s.o.IDPrefix), "error", err)
		return 0, err
	}
	s.Stats.Points.Add(int64(len(ups)))
	return len(recs), nil
}

// acked counts an acknowledgement written.
func (s *Server) acked(received time.Time) {
	s.Stats.Acks.Add(1)
	s.Stats.AckLatency.Observe(time.Since(received))
}

var errHandshake = errors.New("teltonika: bad handshake")

// imeiLen judges the handshake's 2-byte length.
func imeiLen(n int) error {
	if n < 1 || n > maxIMEILen {
		return fmt.Errorf("%w: IMEI length %d, want 1 to %d", errHandshake, n, maxIMEILen)
	}
	return nil
}

// checkIMEI judges the handshake's digits.
func checkIMEI(imei []byte) error {
	for _, d := range imei {
		if d < '0' || d > '9' {
			return fmt.Errorf("%w: IMEI %q is not all digits", errHandshake, imei)
		}
	}
	return nil
}

// bad counts and logs a malformed frame or handshake; the caller closes.
func (s *Server) bad(remote func() string, id []byte, err error) {
	s.Stats.BadFrames.Add(1)
	s.badLog.Warn("teltonika: bad frame; closing the connection", "remote", remote(), "imei", imeiOf(id, s.o.IDPrefix), "error", err)
}

// refuse counts a connection over the limit; the caller closes it.
func (s *Server) refuse(remote string) {
	s.Stats.ConnsRefused.Add(1)
	s.errLog.Warn("teltonika: connection limit reached; closing new connections", "max_conns", s.o.MaxConns, "remote", remote)
}

func imeiOf(id []byte, prefix string) string {
	if len(id) < len(prefix) {
		return ""
	}
	return string(id[len(prefix):])
}

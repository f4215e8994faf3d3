package osmand

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/fleetd/fleetd/internal/gateway"
)

// DefaultMaxBody bounds a request body: one position is a few hundred
// bytes.
const DefaultMaxBody = 64 << 10

// Options configures a Server.
type Options struct {
	// Addr is the HTTP address to listen on, e.g. 127.0.0.1:5055.
	Addr string
	// Speed is the unit of the speed parameter of queries and forms
	// (default Knots); the JSON variant is always m/s.
	Speed SpeedUnit
	// MaxAhead is how far a timestamp may be ahead of the server's clock
	// (0: no limit).
	MaxAhead time.Duration
	// MaxBody bounds a request body (default DefaultMaxBody).
	MaxBody int64
	Logger  *slog.Logger
}

// defaultTimeouts are a connection's (net/http's ReadHeaderTimeout,
// ReadTimeout and IdleTimeout as the gateway set them before it had its
// own server).
var defaultTimeouts = timeouts{
	head: 10 * time.Second, // the first byte of a request to its blank line
	read: 30 * time.Second, // the first byte of a request to its last
	idle: 2 * time.Minute,  // between requests
}

type timeouts struct{ head, read, idle time.Duration }

const (
	writeTimeout = 10 * time.Second // an answer's write
	// lingerTimeout bounds how long a connection the server closes is
	// drained after its last answer, so that the device reads the answer
	// before the kernel resets the connection over unread bytes
	// (net/http's rstAvoidanceDelay is 500 ms).
	lingerTimeout = 500 * time.Millisecond
	lingerBytes   = 256 << 10
	// maxPipeline bounds the requests of one connection answered by one
	// commit; more pipelined requests wait for the next.
	maxPipeline = 64
)

// Server serves the OsmAnd protocol on its own listener (doc.go).
type Server struct {
	o     Options
	ln    net.Listener
	com   *gateway.Committer
	Stats gateway.Stats

	to             timeouts
	rejLog, errLog gateway.Limiter
	mu             struct {
		sync.Mutex
		conns  map[*conn]struct{}
		closed bool
	}
	wg   sync.WaitGroup // the accept loop and the connections
	once sync.Once
	err  error
}

// Listen starts a server on o.Addr that commits through com.
func Listen(o Options, com *gateway.Committer) (*Server, error) {
	return listen(o, com, defaultTimeouts)
}

// listen is Listen with the connections' timeouts (tests shorten them).
func listen(o Options, com *gateway.Committer, to timeouts) (*Server, error) {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("osmand: %w", err)
	}
	s := &Server{o: o, ln: ln, com: com, to: to}
	s.rejLog.Log, s.errLog.Log = o.Logger, o.Logger
	s.mu.conns = make(map[*conn]struct{})
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close closes the listener and every connection, and waits for their
// goroutines; a request not yet answered stays unanswered (the device
// resends).
func (s *Server) Close() error {
	s.once.Do(func() {
		s.err = s.ln.Close()
		s.mu.Lock()
		s.mu.closed = true
		for c := range s.mu.conns {
			_ = c.nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s.err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: pause rather than spin.
			s.errLog.Warn("osmand: accept failed; retrying", "error", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.mu.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.Stats.Connections.Add(1)
		s.Stats.ConnectionsTotal.Add(1)
		go c.serve()
	}
}

// forget removes a closed connection.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.mu.conns, c)
	s.mu.Unlock()
	s.Stats.Connections.Add(-1)
	s.wg.Done()
}

// request is the scratch of one request of a batch: its parameters, which
// the point's ID aliases until the batch's commit returned.
type request struct {
	p Params
}

// maxPooledBody is the largest parameter buffer a connection keeps
// between batches: a rare big form is not kept for ever.
const maxPooledBody = 4 << 10

// isJSON reports whether a Content-Type header is application/json (any
// parameters, any case).
func isJSON(ct []byte) bool {
	t := ct
	if i := bytes.IndexByte(t, ';'); i >= 0 {
		t = t[:i]
	}
	return equalFold(trimOWS(t), "application/json")
}

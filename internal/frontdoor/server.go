package frontdoor

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// MaxHead bounds a head served here; a longer one goes to net/http
	// (whose MaxHeaderBytes then applies).
	MaxHead = 16 << 10
	// BodyBuffer is how much of an answer is held to send it with a
	// Content-Length; past it the answer is sent chunked, BodyBuffer at a
	// time.
	BodyBuffer = 32 << 10
	// idleSlack: an idle connection's deadline is renewed only when it is
	// less than IdleTimeout away, not at every request, so a connection
	// idle for IdleTimeout closes within IdleTimeout+idleSlack.
	idleSlack = 10 * time.Second
)

// Server is the front door for one listener; see the package doc.
type Server struct {
	hs      *http.Server
	paths   func(path string) bool
	log     *slog.Logger
	handoff *handoffListener

	served, handed atomic.Int64 // requests answered here; connections given to net/http

	wg sync.WaitGroup // serving connections
	mu struct {
		sync.Mutex
		ln     net.Listener
		conns  map[*conn]bool // true while answering
		closed bool
	}
}

// New returns a front door that serves hs.Handler for the paths that
// paths accepts, and hands the other connections to hs (its timeouts,
// limits and ErrorLog apply to those; ReadHeaderTimeout and IdleTimeout
// apply here too).
func New(hs *http.Server, paths func(path string) bool, log *slog.Logger) *Server {
	s := &Server{hs: hs, paths: paths, log: log}
	s.mu.conns = map[*conn]bool{}
	return s
}

// Stats are the front door's counts.
type Stats struct {
	Served   int64 `json:"requests_served"`       // requests answered by the front door
	HandedOn int64 `json:"connections_handed_on"` // connections given to net/http
}

// Stats reports the counts.
func (s *Server) Stats() Stats { return Stats{Served: s.served.Load(), HandedOn: s.handed.Load()} }

// Serve accepts connections on ln until Shutdown or Close, and returns
// http.ErrServerClosed then (or the accept error that stopped it).
func (s *Server) Serve(ln net.Listener) error {
	s.handoff = &handoffListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
	hsDone := make(chan struct{})
	go func() {
		defer close(hsDone)
		_ = s.hs.Serve(s.handoff)
	}()
	defer func() {
		s.handoff.Close()
		<-hsDone
	}()
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return http.ErrServerClosed
	}
	s.mu.ln = ln
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closed() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors and the like: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("frontdoor: accept failed; retrying", "error", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c := s.track(nc)
		if c == nil {
			_ = nc.Close()
			return http.ErrServerClosed
		}
		go c.serve()
	}
}

func (s *Server) closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.closed
}

// track registers a new connection; nil once closed.
func (s *Server) track(nc net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil
	}
	c := newConn(s, nc)
	s.mu.conns[c] = false
	s.wg.Add(1)
	return c
}

// setBusy marks c answering or idle; false when the server is closing:
// c then ends instead of starting a request or waiting for one.
func (s *Server) setBusy(c *conn, busy bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.conns[c] = busy
	return !s.mu.closed
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.mu.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// give hands nc to net/http; false if it has shut down.
func (s *Server) give(nc net.Conn) bool {
	s.handed.Add(1) // before: net/http may answer before this goroutine runs again
	select {
	case s.handoff.ch <- nc:
		return true
	case <-s.handoff.done:
		s.handed.Add(-1)
		return false
	}
}

// Shutdown stops accepting, ends idle connections, waits (until ctx is
// done) for the others to finish their answer, and shuts net/http down
// with ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeIdle(true)
	err := s.hs.Shutdown(ctx)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return err
		case <-ctx.Done():
			s.closeAll()
			return cmp.Or(err, ctx.Err())
		case <-t.C:
			s.closeIdle(false) // those that finished their answer since
		}
	}
}

// Close closes the listener and every connection at once, net/http's too.
func (s *Server) Close() error {
	s.closeAll()
	return s.hs.Close()
}

func (s *Server) closeIdle(first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if first {
		s.mu.closed = true
		if s.mu.ln != nil {
			_ = s.mu.ln.Close()
		}
	}
	for c, busy := range s.mu.conns {
		if !busy {
			_ = c.nc.Close()
		}
	}
}

func (s *Server) closeAll() {
	s.closeIdle(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.mu.conns {
		_ = c.nc.Close()
	}
}

// handoffListener is the listener net/http serves: the connections the
// front door gives it.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// prefixConn is a connection handed on with the bytes the front door had
// read from it: net/http reads them first.
type prefixConn struct {
	net.Conn
	pre []byte
}

// CloseWrite passes on to the TCP connection, which net/http uses to
// close a connection gracefully after an error answer.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

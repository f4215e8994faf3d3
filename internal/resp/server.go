package resp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/store"
)

// Defaults and limits of a Server (see the package doc).
const (
	DefaultCollection = "fleet"
	DefaultMaxConns   = 1024
	DefaultMaxAhead   = 5 * time.Minute

	readInit = 4 << 10 // a connection's first read buffer
	// readBatch is what the read buffer grows to while reads fill it
	// (pipelining): one engine batch per read, ~2,900 SETs of 90 bytes.
	// Each pipelining connection holds it and its batch's updates
	// (~88 B a SET) until the pipeline drains; at 1 MiB the four
	// connections of BenchmarkRESPIngest kept the server's RSS at
	// 84 B/truck over empty after three passes at 1M trucks (interval=1s:
	// 86), at 256 KiB 70 (72), for the same 1-2M updates/s on the
	// shared box.
	readBatch    = 256 << 10
	outFlush     = 64 << 10 // replies are written once this many are buffered
	outRetain    = 1 << 20  // a reply buffer grown past this is dropped after use
	writeTimeout = 30 * time.Second
	writeSlack   = time.Second // a write's deadline is writeTimeout to writeTimeout+writeSlack away
	maxAuthFails = 8           // failed AUTHs before the connection is closed
	logEvery     = time.Minute
)

// Options configures a Server.
type Options struct {
	// Engine applies SETs and DELs and serves the queries. Required.
	Engine *engine.Engine
	// Collection is the one key this server answers (default "fleet").
	Collection string
	// Keyring, if set, requires AUTH with a token of the command's scope
	// (the same tokens and scopes as HTTP). Nil: every command is allowed.
	Keyring *auth.Keyring
	// Stats returns the JSON object of GET /v1/stats, which SERVER and
	// INFO answer. Nil: the engine's own figures.
	Stats func() []byte
	// MaxClockSkew is how far ahead of the server clock a SET's ts may be
	// (default 5m; negative: no limit), as HTTP's --max-clock-skew.
	MaxClockSkew time.Duration
	// MaxConns bounds the connections served at once (default 1024);
	// more are answered an error and closed.
	MaxConns int
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock for SETs without a ts (default time.Now).
	Now func() time.Time
}

// Server serves the RESP protocol on listeners. It is safe for concurrent
// use; each connection is served by one goroutine.
type Server struct {
	eng      *engine.Engine
	st       *store.Store
	key      string
	keys     *auth.Keyring
	stats    func() []byte
	maxAhead int64 // seconds; 0: no limit
	maxConns int
	log      *slog.Logger
	now      func() time.Time

	counters counters

	// mu guards the listeners and connections, for Close.
	mu struct {
		sync.Mutex
		lns    map[net.Listener]struct{}
		conns  map[*conn]struct{}
		closed bool
	}
	wg sync.WaitGroup

	logMu   sync.Mutex
	logLast map[string]time.Time // rate limit of warning lines, by kind
}

// counters are the server's own figures (Stats).
type counters struct {
	conns, accepted, refused     atomic.Int64
	commands, sets, batches      atomic.Int64
	protocolErrors, authFailures atomic.Int64
	future, millis               atomic.Int64
}

// Stats is what a Server counted.
type Stats struct {
	Connections    int64 // open now
	Accepted       int64 // connections served since start
	Refused        int64 // connections refused at MaxConns
	Commands       int64
	Sets           int64 // SETs applied
	Batches        int64 // engine batches they made (one per read of pipelined SETs)
	ProtocolErrors int64 // connections closed for a framing error
	AuthFailures   int64
	FutureTS       int64 // SETs refused for a ts too far ahead
	MillisTS       int64 // SETs whose ts was in milliseconds, converted
}

// Stats reports the server's counters.
func (s *Server) Stats() Stats {
	c := &s.counters
	return Stats{
		Connections: c.conns.Load(), Accepted: c.accepted.Load(), Refused: c.refused.Load(),
		Commands: c.commands.Load(), Sets: c.sets.Load(), Batches: c.batches.Load(),
		ProtocolErrors: c.protocolErrors.Load(), AuthFailures: c.authFailures.Load(),
		FutureTS: c.future.Load(), MillisTS: c.millis.Load(),
	}
}

// New builds a Server.
func New(o Options) (*Server, error) {
	if o.Engine == nil {
		return nil, errors.New("resp: Options.Engine is nil")
	}
	if o.Collection == "" {
		o.Collection = DefaultCollection
	}
	for i := 0; i < len(o.Collection); i++ {
		if c := o.Collection[i]; c <= ' ' || c > '~' {
			return nil, fmt.Errorf("resp: collection name %q has a blank or non-ASCII byte", o.Collection)
		}
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxClockSkew == 0 {
		o.MaxClockSkew = DefaultMaxAhead
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		eng: o.Engine, st: o.Engine.Store(), key: o.Collection, keys: o.Keyring, stats: o.Stats,
		maxConns: o.MaxConns, log: o.Logger, now: o.Now, logLast: map[string]time.Time{},
	}
	if o.MaxClockSkew > 0 {
		s.maxAhead = max(int64(o.MaxClockSkew/time.Second), 1)
	}
	s.mu.lns = map[net.Listener]struct{}{}
	s.mu.conns = map[*conn]struct{}{}
	return s, nil
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("resp: server closed")

// Serve accepts connections on ln until Close (then it returns
// ErrServerClosed) or an accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.mu.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.lns, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.mu.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			if retryable(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.warn("accept", "resp: accept failed; retrying", "error", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("resp: accept: %w", err)
		}
		delay = 0
		s.start(nc)
	}
}

// retryable reports whether an accept error is worth a retry: a timeout,
// or one that reports Temporary (EMFILE, ECONNABORTED and the like).
func retryable(err error) bool {
	var t interface {
		Timeout() bool
		Temporary() bool
	}
	return errors.As(err, &t) && (t.Timeout() || t.Temporary())
}

func (s *Server) start(nc net.Conn) {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	if len(s.mu.conns) >= s.maxConns {
		s.mu.Unlock()
		s.counters.refused.Add(1)
		s.warn("maxconns", "resp: connection refused: too many clients", "max_conns", s.maxConns, "refused_total", s.counters.refused.Load())
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write([]byte("-ERR max number of clients reached\r\n"))
		_ = nc.Close()
		return
	}
	c := newConn(s, nc)
	s.mu.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.counters.conns.Add(1)
	s.counters.accepted.Add(1)
	go func() {
		defer s.wg.Done()
		c.serve()
		s.mu.Lock()
		delete(s.mu.conns, c)
		s.mu.Unlock()
		s.counters.conns.Add(-1)
	}()
}

// Close stops the listeners, closes every connection and waits for their
// goroutines. A SET being applied finishes (and is answered) first.
func (s *Server) Close() error {
	s.mu.Lock()
	s.mu.closed = true
	var err error
	for ln := range s.mu.lns {
		err = errors.Join(err, ln.Close())
	}
	for c := range s.mu.conns {
		c.shutdown()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// warn logs a warning at most once a logEvery per kind.
func (s *Server) warn(kind, msg string, args ...any) {
	now := time.Now()
	s.logMu.Lock()
	last, ok := s.logLast[kind]
	if ok && now.Sub(last) < logEvery {
		s.logMu.Unlock()
		return
	}
	s.logLast[kind] = now
	s.logMu.Unlock()
	s.log.Warn(msg, args...)
}

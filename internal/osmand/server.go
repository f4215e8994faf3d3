package osmand

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
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

// Server serves the OsmAnd protocol on its own listener.
type Server struct {
	o     Options
	ln    net.Listener
	srv   *http.Server
	com   *gateway.Committer
	Stats gateway.Stats

	rejLog, errLog gateway.Limiter
	done           chan struct{}
}

var jobs = sync.Pool{New: func() any { return gateway.NewJob() }}

// Listen starts a server on o.Addr that commits through com.
func Listen(o Options, com *gateway.Committer) (*Server, error) {
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
	s := &Server{o: o, ln: ln, com: com, done: make(chan struct{})}
	s.rejLog.Log, s.errLog.Log = o.Logger, o.Logger
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.Stats.Connections.Add(1)
				s.Stats.ConnectionsTotal.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.Stats.Connections.Add(-1)
			}
		},
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close closes the listener and every connection; a request not yet
// answered stays unanswered (the device resends).
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// ServeHTTP answers one position (doc.go).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	var v url.Values
	switch r.Method {
	case http.MethodGet:
		v = r.URL.Query()
	case http.MethodPost:
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		body, rerr := io.ReadAll(http.MaxBytesReader(w, r.Body, s.o.MaxBody))
		if rerr != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(rerr, &mbe) {
				s.answer(w, http.StatusRequestEntityTooLarge, "osmand: body larger than "+strconv.FormatInt(s.o.MaxBody, 10)+" bytes")
				s.Stats.BadFrames.Add(1)
				return
			}
			s.answer(w, http.StatusBadRequest, "osmand: reading the body: "+rerr.Error())
			return
		}
		if ct == "application/json" {
			s.commit(w, r, received, func(now int64) (u updateOrErr) { u.u, u.err = ParseJSON(body, now); return })
			return
		}
		// A form body, or none: the parameters may also be in the query.
		v = r.URL.Query()
		if len(body) > 0 {
			form, perr := url.ParseQuery(string(body))
			if perr != nil {
				s.bad(w, r, fmt.Errorf("%w: form body: %v", ErrSyntax, perr))
				return
			}
			for k, vs := range form {
				v[k] = append(vs, v[k]...)
			}
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		s.answer(w, http.StatusMethodNotAllowed, "osmand: use GET or POST")
		return
	}
	s.commit(w, r, received, func(now int64) (u updateOrErr) { u.u, u.err = Parse(v, s.o.Speed, now); return })
}

type updateOrErr struct {
	u   fleet.Update
	err error
}

// commit decodes with parse, checks, commits and answers.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, received time.Time, parse func(now int64) updateOrErr) {
	now := received.Unix()
	p := parse(now)
	if p.err == nil {
		p.err = gateway.Check(&p.u, now, int64(s.o.MaxAhead/time.Second))
	}
	if p.err != nil {
		s.bad(w, r, p.err)
		return
	}
	s.Stats.Frames.Add(1)
	j := jobs.Get().(*gateway.Job)
	j.Updates = append(j.Updates[:0], p.u)
	err := s.com.Commit(j)
	clear(j.Updates)
	jobs.Put(j)
	if err != nil {
		s.Stats.CommitErrors.Add(1)
		s.errLog.Warn("osmand: position not acknowledged: the engine could not make it durable", "error", err)
		w.Header().Set("Retry-After", "1")
		s.answer(w, http.StatusServiceUnavailable, "osmand: not stored, retry: "+err.Error())
		return
	}
	s.Stats.Points.Add(1)
	s.answer(w, http.StatusOK, "")
	s.Stats.Acks.Add(1)
	s.Stats.AckLatency.Observe(time.Since(received))
}

func (s *Server) bad(w http.ResponseWriter, r *http.Request, err error) {
	s.Stats.BadFrames.Add(1)
	s.rejLog.Warn("osmand: position refused (400)", "remote", r.RemoteAddr, "error", err)
	s.answer(w, http.StatusBadRequest, err.Error())
}

// answer writes {"ok":true} or {"error":msg}.
func (s *Server) answer(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if code == http.StatusOK {
		_, _ = io.WriteString(w, `{"ok":true}`)
		return
	}
	b, _ := json.Marshal(msg) // a string always marshals
	_, _ = w.Write(append(append([]byte(`{"error":`), b...), '}'))
}

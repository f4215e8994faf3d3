package osmand

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
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

// request is the scratch of one request, pooled: the parameters, the
// body and the job that carries the point to the committer. Nothing of it
// outlives the request (the committer only reads the job's updates until
// Commit returns).
type request struct {
	p    Params
	body []byte
	job  *gateway.Job
}

var requests = sync.Pool{New: func() any { return &request{job: gateway.NewJob()} }}

// maxPooledBody is the largest body buffer put back in the pool: a rare
// big body is not kept for ever.
const maxPooledBody = 4 << 10

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
	rq := requests.Get().(*request)
	defer rq.release()
	rq.p.Reset()
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		var err error
		if rq.body, err = readBody(rq.body[:0], r.Body, s.o.MaxBody); err != nil {
			if errors.Is(err, errTooLarge) {
				s.Stats.BadFrames.Add(1)
				w.Header().Set("Connection", "close") // the rest of the body is not read
				s.answer(w, http.StatusRequestEntityTooLarge, "osmand: body larger than "+strconv.FormatInt(s.o.MaxBody, 10)+" bytes")
				return
			}
			s.answer(w, http.StatusBadRequest, "osmand: reading the body: "+err.Error())
			return
		}
		if isJSON(r.Header["Content-Type"]) {
			now := received.Unix()
			u, err := ParseJSON(rq.body, now)
			s.commit(w, r, rq, received, u, err)
			return
		}
		// A form body, or none: the parameters may also be in the
		// query, and the body's win (scanned first).
		rq.p.AddBytes(rq.body)
	default:
		w.Header().Set("Allow", "GET, POST")
		s.answer(w, http.StatusMethodNotAllowed, "osmand: use GET or POST")
		return
	}
	rq.p.Add(r.URL.RawQuery)
	u, err := Parse(&rq.p, s.o.Speed, received.Unix())
	s.commit(w, r, rq, received, u, err)
}

func (rq *request) release() {
	if cap(rq.body) > maxPooledBody {
		rq.body = nil
	}
	if cap(rq.p.raw) > maxPooledBody {
		rq.p = Params{}
	}
	requests.Put(rq)
}

var errTooLarge = errors.New("osmand: body too large")

// readBody appends r's bytes to dst, up to max bytes (errTooLarge past
// them).
func readBody(dst []byte, r io.Reader, max int64) ([]byte, error) {
	if r == nil || r == http.NoBody {
		return dst, nil
	}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		room := dst[len(dst):cap(dst)]
		if rest := max + 1 - int64(len(dst)); int64(len(room)) > rest {
			room = room[:rest]
		}
		n, err := r.Read(room)
		dst = dst[:len(dst)+n]
		if int64(len(dst)) > max {
			return dst, errTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// isJSON reports whether a Content-Type header is application/json (any
// parameters, any case).
func isJSON(ct []string) bool {
	if len(ct) == 0 {
		return false
	}
	t, _, _ := strings.Cut(ct[0], ";")
	return strings.EqualFold(strings.TrimSpace(t), "application/json")
}

// commit checks the parsed point, commits it and answers.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, rq *request, received time.Time, u fleet.Update, err error) {
	now := received.Unix()
	if err == nil {
		err = gateway.Check(&u, now, int64(s.o.MaxAhead/time.Second))
	}
	if err != nil {
		s.bad(w, r, err)
		return
	}
	s.Stats.Frames.Add(1)
	j := rq.job
	j.Updates = append(j.Updates[:0], u)
	err = s.com.Commit(j)
	clear(j.Updates) // do not pin the ID's buffer
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

// The headers of every answer, shared: net/http only reads a header's
// values, and setting the map entry to these saves the slices Set would
// allocate for each request.
var (
	jsonType = []string{"application/json"}
	okLength = []string{strconv.Itoa(len(okBody))}
)

const okBody = `{"ok":true}`

// answer writes {"ok":true} or {"error":msg}.
func (s *Server) answer(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h["Content-Type"] = jsonType
	if code == http.StatusOK {
		h["Content-Length"] = okLength
		w.WriteHeader(code)
		_, _ = io.WriteString(w, okBody)
		return
	}
	w.WriteHeader(code)
	b, _ := json.Marshal(msg) // a string always marshals
	_, _ = w.Write(append(append([]byte(`{"error":`), b...), '}'))
}

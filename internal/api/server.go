package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetd/fleetd/internal/wire"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/frontdoor"
	"github.com/fleetd/fleetd/internal/store"
)

// DefaultMaxBody is the default limit on a POST /v1/positions body.
const DefaultMaxBody = 64 << 20

// DefaultMaxClockSkew is how far ahead of the server's clock a posted ts
// may be by default: device clocks drift by seconds, not minutes.
const DefaultMaxClockSkew = 5 * time.Minute

// Options configures a Server.
type Options struct {
	// Engine applies writes and serves reads. Required.
	Engine *engine.Engine
	// MaxBody limits a POST /v1/positions body in bytes (default
	// DefaultMaxBody); a larger body is answered 413 and nothing applied.
	MaxBody int64
	// MaxClockSkew is how far a posted ts may be ahead of the server's
	// clock before the update is rejected (default DefaultMaxClockSkew;
	// negative: no limit). A truck whose stored ts is in the future would
	// drop every correct update until then (latest wins by ts).
	MaxClockSkew time.Duration
	// Token, if not empty, is a single bearer token with every scope
	// (shorthand for a Keyring of one token).
	Token string
	// Keyring, if set, holds the bearer tokens and their scopes; every route
	// but /healthz, the login endpoints and (unless MetricsPrivate)
	// /metrics requires one with the route's scope (auth.go). Nil and no
	// Token: authentication is off.
	Keyring *auth.Keyring
	// Sessions, if set with a keyring, lets the dashboard log in
	// (POST /v1/login) and use a session cookie instead of a bearer token.
	Sessions *auth.Sessions
	// MetricsPrivate makes /metrics require the read scope.
	MetricsPrivate bool
	// Logger receives notable events: 5xx answers with their cause,
	// recovered panics, and (with AccessLog) one line per request. Default:
	// slog.Default().
	Logger *slog.Logger
	// AccessLog logs every request at level Info.
	AccessLog bool
	// Routes are more handlers served behind the same authentication,
	// metrics and panic recovery as the built-in routes (the live feed,
	// the density endpoint).
	Routes []Route
	// Subscribers, if set, reports live-feed subscribers for /v1/stats.
	Subscribers func() int
	// Gateways, if set, reports the device gateways' counters for
	// /v1/stats ("gateways"; nil: none runs).
	Gateways func() any
	// Frontdoor, if set, reports the HTTP front door's counters for
	// /v1/stats ("frontdoor") and /metrics (fleetd_frontdoor_*); nil:
	// net/http serves every request.
	Frontdoor func() frontdoor.Stats
	// Sinks, if set, reports the alert sinks' counters for /v1/stats
	// ("sinks"; nil: none configured).
	Sinks func() any
	// Alerts serves the zone, rule and alert endpoints (alerts.go); nil
	// answers them 404.
	Alerts *alert.Evaluator
	// Cluster, when set, makes this server a node of a cluster
	// (cluster.go): writes are published to the cluster's log, and reads
	// may wait for a write's token.
	Cluster Cluster
}

// Server is the HTTP API over one engine. It implements http.Handler, is
// safe for concurrent use and starts no goroutines.
type Server struct {
	extra       []Route
	subscribers func() int
	gateways    func() any
	frontdoor   func() frontdoor.Stats
	sinks       func() any
	eng         *engine.Engine
	st          *store.Store
	alerts      *alert.Evaluator // nil: alert endpoints answer 404
	cluster     Cluster          // nil: a single node
	log         *slog.Logger
	maxBody     int64
	maxAhead    int64 // seconds a ts may be ahead of now; 0: no limit
	ts          tsCounters
	keys        *auth.Keyring // nil: authentication off
	sessions    *auth.Sessions
	scopes      map[string]auth.Scope // extra routes' scopes by name
	accessLog   bool
	mux         *http.ServeMux
	reg         *prometheus.Registry
	m           *metrics
	started     time.Time

	ingestFree chan *ingestScratch // see getIngest
	hitPool    sync.Pool           // *[]store.Hit
	streamPool sync.Pool           // *streamScratch
	bufPool    sync.Pool           // *[]byte of a one-write answer (getTruck)
}

// New builds a Server.
func New(o Options) (*Server, error) {
	if o.Engine == nil {
		return nil, errors.New("api: Options.Engine is nil")
	}
	if o.MaxBody < 0 {
		return nil, fmt.Errorf("api: MaxBody %d is negative", o.MaxBody)
	}
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Token != strings.TrimSpace(o.Token) || strings.ContainsAny(o.Token, "\r\n") {
		return nil, errors.New("api: token has surrounding whitespace or a line break")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxClockSkew == 0 {
		o.MaxClockSkew = DefaultMaxClockSkew
	}
	maxAhead := int64(0) // no limit
	if o.MaxClockSkew > 0 {
		maxAhead = max(int64(o.MaxClockSkew/time.Second), 1)
	}
	s := &Server{
		extra:       o.Routes,
		subscribers: o.Subscribers,
		gateways:    o.Gateways,
		frontdoor:   o.Frontdoor,
		sinks:       o.Sinks,
		eng:         o.Engine,
		st:          o.Engine.Store(),
		alerts:      o.Alerts,
		cluster:     o.Cluster,
		log:         o.Logger,
		maxBody:     o.MaxBody,
		maxAhead:    maxAhead,
		keys:        o.Keyring,
		sessions:    o.Sessions,
		scopes:      map[string]auth.Scope{},
		accessLog:   o.AccessLog,
		mux:         http.NewServeMux(),
		reg:         prometheus.NewRegistry(),
		started:     time.Now(),

		ingestFree: make(chan *ingestScratch, ingestFree),
	}
	if s.keys == nil && o.Token != "" {
		s.keys = auth.NewKeyring([]auth.Token{{Secret: o.Token, Scope: auth.All, Name: "token"}})
	}
	if s.keys == nil {
		s.sessions = nil
	}
	m, err := newMetrics(s.reg, o.Engine)
	if err != nil {
		return nil, err
	}
	s.m = m
	if fd := o.Frontdoor; fd != nil {
		for _, c := range []prometheus.Collector{
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleetd_frontdoor_requests_total",
				Help: "HTTP requests answered by the front door (the rest by net/http)."}, func() float64 { return float64(fd().Served) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleetd_frontdoor_handoffs_total",
				Help: "HTTP connections the front door handed to net/http, at their first request it does not answer."}, func() float64 { return float64(fd().HandedOn) }),
		} {
			if err := s.reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	s.routes(o)
	return s, nil
}

// Registry is the Prometheus registry /metrics serves; callers may register
// more collectors on it.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// ServeHTTP dispatches to the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// QueryPath reports whether path is one of the hot read queries that a
// front door (package frontdoor) may answer itself, for GET and HEAD:
// /healthz, /v1/nearby, /v1/within and /v1/trucks/{id}. Their handlers
// answer through the http.ResponseWriter alone (no hijacking, no flushed
// stream that never ends) and keep nothing of the request once they
// return (a front door reuses it), which is all a front door provides.
func QueryPath(path string) bool {
	switch path {
	case "/healthz", "/v1/nearby", "/v1/within":
		return true
	}
	id, ok := strings.CutPrefix(path, "/v1/trucks/")
	return ok && id != "" && !strings.Contains(id, "/")
}

// Route is an extra handler for Options.Routes. Method may be empty for
// handlers that check methods themselves.
type Route struct {
	Method, Path string
	Name         string // metrics label
	Public       bool   // served without the bearer token
	// Scope the route needs; zero: read for GET (or no method), admin for
	// any other method.
	Scope   auth.Scope
	Handler http.Handler
}

// route is one registered pattern and how it is served.
type route struct {
	method, path string
	name         string // metric label
	public       bool   // served without the bearer token
	h            http.HandlerFunc
}

func (s *Server) routes(o Options) {
	rs := []route{
		{"GET", "/healthz", "healthz", true, s.healthz},
		{"POST", "/v1/positions", "positions", false, s.positions},
		{"GET", "/v1/trucks/{id}", "truck_get", false, s.getTruck},
		{"DELETE", "/v1/trucks/{id}", "truck_delete", false, s.deleteTruck},
		{"GET", "/v1/nearby", "nearby", false, s.nearby},
		{"GET", "/v1/within", "within", false, s.within},
		{"GET", "/v1/stats", "stats", false, s.stats},
		{"GET", "/metrics", "metrics", !o.MetricsPrivate, s.m.handler(s.reg, s.log).ServeHTTP},
		{"", "/debug/pprof/", "pprof", false, s.pprof}, // checks methods itself
	}
	rs = append(rs, s.alertRoutes()...)
	rs = append(rs, s.historyRoutes()...)
	rs = append(rs, s.sessionRoutes()...)
	for _, x := range s.extra {
		rs = append(rs, route{x.Method, x.Path, x.Name, x.Public, x.Handler.ServeHTTP})
		if x.Scope != 0 {
			s.scopes[x.Name] = x.Scope
		}
	}
	allow := map[string][]string{}
	public := map[string]bool{}
	for _, rt := range rs {
		if rt.method == "" {
			s.mux.Handle(rt.path, s.wrap(rt.name, rt.public, rt.h))
			continue
		}
		s.mux.Handle(rt.method+" "+rt.path, s.wrap(rt.name, rt.public, rt.h))
		allow[rt.path] = append(allow[rt.path], rt.method)
		public[rt.path] = rt.public
	}
	// A known path with another method: 405 as JSON (ServeMux's own 405 is
	// plain text). Patterns without a method are less specific, so they
	// only catch what the routes above do not.
	for path, methods := range allow {
		if slices.Contains(methods, "GET") {
			methods = append(methods, "HEAD")
		}
		slices.Sort(methods)
		a := strings.Join(methods, ", ")
		s.mux.Handle(path, s.wrap("method_not_allowed", public[path], func(w http.ResponseWriter, r *http.Request) {
			s.methodNotAllowed(w, r, a)
		}))
	}
	s.mux.Handle("/", s.wrap("not_found", false, func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	}))
}

// wrap adds what every route shares: authentication, panic recovery,
// metrics and the access log.
func (s *Server) wrap(name string, public bool, h http.HandlerFunc) http.Handler {
	rm := s.m.route(name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		defer func() {
			p := recover()
			// http.ErrAbortHandler is compared by identity, as net/http does.
			abort := p != nil && (p == http.ErrAbortHandler || sw.wrote)
			if p != nil && p != http.ErrAbortHandler {
				s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if !sw.wrote {
					s.writeError(sw, r, http.StatusInternalServerError, "internal error (logged); the request may not have been applied")
				}
			}
			d := time.Since(start)
			code := sw.code
			if code == 0 {
				code = http.StatusOK // the handler wrote nothing
			}
			rm.observe(code, d)
			if s.accessLog {
				s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", code, "bytes", sw.n, "dur", d, "remote", r.RemoteAddr)
			}
			if abort {
				// Headers are out: abort the connection so the client sees a
				// truncated answer, not a complete-looking one.
				panic(http.ErrAbortHandler)
			}
		}()
		if !public && s.keys != nil && !s.authorize(sw, r, name) {
			return
		}
		if r.Method == http.MethodPost && !noFormCheck[name] {
			if msg := formBody(r.Header.Get("Content-Type")); msg != "" {
				s.writeError(sw, r, http.StatusUnsupportedMediaType, msg)
				return
			}
		}
		if s.cluster != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) && !s.awaitToken(sw, r) {
			return
		}
		h(sw, r)
	})
}

// statusWriter records the status and size of a response. It passes Flush
// through and unwraps for http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	code  int
	n     int64
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Shared header values: assigning a shared slice avoids Header().Set's
// allocation on every response. net/http only reads them.
var (
	jsonType   = []string{"application/json"}
	ndjsonType = []string{"application/x-ndjson"}
	noSniff    = []string{"nosniff"}
)

func setJSON(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = jsonType
	h["X-Content-Type-Options"] = noSniff
}

// writeJSON writes a complete JSON body.
func writeJSON(w http.ResponseWriter, code int, body []byte) {
	setJSON(w)
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// writeError answers {"error": msg}; 5xx answers are logged with their cause.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if code >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", code, "error", msg)
	}
	writeJSON(w, code, wire.AppendError(make([]byte, 0, len(msg)+16), msg))
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	s.writeError(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
}

// pprof serves /debug/pprof/ and below with the standard handlers.
func (s *Server) pprof(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/")
	allow := "GET, HEAD"
	if name == "symbol" {
		allow = "GET, HEAD, POST"
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !(name == "symbol" && r.Method == http.MethodPost) {
		s.methodNotAllowed(w, r, allow)
		return
	}
	switch name {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r) // the index and every named profile (heap, goroutine, …)
	}
}

// healthz's bodies: a []byte literal passed to Write escapes, one
// allocation a request.
var (
	healthStarting = []byte(`{"status":"starting"}`)
	healthOK       = []byte(`{"status":"ok"}`)
)

// healthz answers 200 once the engine serves.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if !s.eng.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, healthStarting)
		return
	}
	writeJSON(w, http.StatusOK, healthOK)
}

package server

import (
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/api"
	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/feed"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/sink"
	"github.com/fleetd/fleetd/internal/vfs"
	"github.com/fleetd/fleetd/internal/web"
)

// Options configures a server. Engine.Observers is filled in by Open.
type Options struct {
	Engine engine.Options
	API    api.Options // Engine, Alerts and Routes are filled in by Open
	Feed   feed.Options
	// BasemapStyle is the dashboard's optional online map style URL.
	BasemapStyle string
	// Guard configures the Host and Origin checks every
	// request passes first (auth.Guard).
	Guard auth.GuardOptions
	// Gateways configures the device gateways (Teltonika, OsmAnd), off
	// unless their addresses are set.
	Gateways Gateways
	// Cluster, when set, makes this server a node of a fleetd cluster on
	// NATS JetStream (package cluster; its Engine and Dir are filled in):
	// writes are published to the stream and applied from it. Nil: a
	// single node.
	Cluster *cluster.Options
	// AlertMaxPairs is alert.Options.MaxPairs (0: its default).
	AlertMaxPairs int
	Logger        *slog.Logger
}

// Server is a running fleetd: use it as the http.Handler of a listener.
type Server struct {
	Engine *engine.Engine
	Feed   *feed.Hub
	Alerts *alert.Evaluator
	API    *api.Server
	// Cluster is the cluster node, nil for a single node.
	Cluster *cluster.Node
	// Sinks deliver alerts and expiries to webhooks, NATS and MQTT.
	Sinks *sink.Dispatcher
	mux   *http.ServeMux
	api   http.Handler // the mux's "/": the API (through the cluster's configuration handler on a node)
	h     http.Handler // route behind the guard
	gw    *gateways
	// events carry the sinks' events between the cluster's nodes (nil
	// for a single node).
	events *cluster.Events
}

// Open builds a server, recovering the engine's data directory.
func Open(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	hub, err := feed.New(o.Feed)
	if err != nil {
		return nil, err
	}
	cfgDir := ""
	if o.Engine.DataDir != "" {
		cfgDir = filepath.Join(o.Engine.DataDir, "config")
	}
	var events *cluster.Events
	var relay sink.Relay
	if o.Cluster != nil {
		// Every node publishes its sinks' events into the cluster; one
		// node a sink delivers them (package cluster, Sink events).
		if events, err = openEvents(o.Cluster); err != nil {
			hub.Close()
			return nil, err
		}
		relay = sinkRelay{events}
	}
	sinks, err := openSinks(o.Engine.FS, o.Engine.DataDir, o.Logger, relay)
	if err != nil {
		hub.Close()
		return nil, errors.Join(err, closeEvents(events))
	}
	opened := false
	defer func() {
		if !opened {
			_ = sinks.Close()
			_ = closeEvents(events)
		}
	}()
	restoreGC := loadGC()
	alerts, err := alert.New(alert.Options{
		FS:       o.Engine.FS,
		Dir:      cfgDir,
		Logger:   o.Logger,
		Emit:     func(a alert.Alert) { hub.PublishAlert(a); sinks.Emit(a) },
		Sync:     sinks.Sync, // every front door's Apply answers once its events are on the sinks' disk
		MaxPairs: o.AlertMaxPairs,
	})
	restoreGC()
	if err != nil {
		hub.Close()
		return nil, err
	}
	o.Engine.Logger = o.Logger
	// The feed first: a position is published before the alert it causes;
	// the sinks after the alerts: an expired truck's alerts are resolved
	// before its truck.expired event.
	o.Engine.Observers = append(o.Engine.Observers, hub, alerts, sinks)
	eng, err := engine.Open(o.Engine)
	if err != nil {
		hub.Close()
		return nil, err
	}
	var node *cluster.Node
	var gwEng gateway.Engine = eng
	if o.Cluster != nil {
		co := *o.Cluster
		co.Config = clusterConfig{alerts: alerts, sinks: sinks}
		if node, err = openCluster(co, eng, o.Engine.DataDir); err != nil {
			hub.Close()
			return nil, errors.Join(err, eng.Close())
		}
		o.API.Cluster, gwEng = clusterAPI{node, events}, node
	}
	gw := &gateways{}
	o.API.Engine, o.API.Alerts, o.API.Logger = eng, alerts, o.Logger
	o.API.Subscribers = func() int { return hub.Stats().Subscribers }
	o.API.Gateways = gw.snapshot
	o.API.Sinks = func() any {
		if st := sinks.Stats(); st != nil {
			return st
		}
		return nil
	}
	o.API.Routes = append(o.API.Routes,
		api.Route{Method: "GET", Path: "/v1/stream", Name: "stream", Handler: http.HandlerFunc(hub.ServeSSE)},
		api.Route{Method: "GET", Path: "/v1/ws", Name: "ws", Handler: http.HandlerFunc(hub.ServeWS)},
		api.Route{Method: "GET", Path: "/v1/density", Name: "density", Handler: web.DensityHandler(eng.Store())},
		api.Route{Method: "GET", Path: "/v1/stats/gateways", Name: "gateway_stats", Handler: http.HandlerFunc(gw.serveStats)},
		api.Route{Method: "GET", Path: "/v1/sinks", Name: "sinks", Handler: http.HandlerFunc(sinks.ServeList)},
		api.Route{Method: "GET", Path: "/v1/sinks/{name}", Name: "sink_get", Handler: http.HandlerFunc(sinks.ServeGet)},
		api.Route{Method: "PUT", Path: "/v1/sinks/{name}", Name: "sink_put", Handler: http.HandlerFunc(sinks.ServePut)},
		api.Route{Method: "DELETE", Path: "/v1/sinks/{name}", Name: "sink_delete", Handler: http.HandlerFunc(sinks.ServeDelete)},
	)
	if o.API.Keyring != nil && o.API.Sessions == nil {
		o.API.Sessions = auth.NewSessions(auth.SessionOptions{Keyring: o.API.Keyring, Logger: o.Logger})
	}
	guard, err := auth.NewGuard(o.Guard)
	if err != nil {
		hub.Close()
		return nil, errors.Join(err, closeNode(node), eng.Close())
	}
	apiServer, err := api.New(o.API)
	if err == nil && node != nil {
		err = node.Register(apiServer.Registry())
	}
	if err != nil {
		hub.Close()
		return nil, errors.Join(err, closeNode(node), eng.Close())
	}
	registerMetrics(apiServer, hub, alerts)
	apiServer.Registry().MustRegister(sinks.Collector())
	s := &Server{Engine: eng, Feed: hub, Alerts: alerts, API: apiServer, Cluster: node, Sinks: sinks, mux: http.NewServeMux(), events: events}
	// The dashboard's page and files are public: a browser cannot send a
	// bearer token when it first loads a page (it asks for one on a 401
	// from the API). Everything else is the API's, with its own 404/405.
	dash := web.Handler(web.Options{BasemapStyle: o.BasemapStyle, Stream: true, Zones: true, Alerts: true})
	for _, p := range []string{"GET /{$}", "GET /index.html", "GET /assets/", "GET /favicon.svg"} {
		s.mux.Handle(p, dash)
	}
	s.api = apiServer
	if node != nil {
		// Configuration writes go to the cluster's bucket too.
		s.api = node.ConfigHandler(apiServer)
	}
	s.mux.Handle("/", s.api)
	s.h = guard.Handler(http.HandlerFunc(s.route))
	registerGuardMetrics(apiServer, guard)
	if err := gw.open(o.Gateways, gwEng, o.API.MaxClockSkew, o.Logger); err != nil {
		hub.Close()
		return nil, errors.Join(err, closeNode(node), eng.Close())
	}
	s.gw = gw
	registerGatewayMetrics(apiServer, gw)
	opened = true
	return s, nil
}

// openSinks opens the sinks kept in DATA/sinks (in memory without a data
// directory, like the fleet).
func openSinks(fs vfs.FS, dataDir string, log *slog.Logger, relay sink.Relay) (*sink.Dispatcher, error) {
	dir := filepath.Join(dataDir, "sinks")
	if dataDir == "" {
		fs, dir = vfs.NewMem(), "sinks"
	}
	return sink.New(sink.Options{FS: fs, Dir: dir, Logger: log, Relay: relay})
}

// route serves the API's paths (/v1/…, /healthz) without the dashboard
// mux's lookup, whose answer for them is always its "/" pattern, the API
// (whose own mux cleans paths and redirects as this one would). The
// lookup was 5 of a /healthz request's 7 allocations and 0.9 µs of a kNN
// query's server CPU in the profile of BenchmarkQueryCPU/http/knn10.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; strings.HasPrefix(p, "/v1/") || p == "/healthz" {
		s.api.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// ServeHTTP serves the API and the dashboard.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.h.ServeHTTP(w, r) }

// CloseStreams disconnects every live-feed subscriber. Call it before
// http.Server.Shutdown, which would otherwise wait for streams that never
// end.
func (s *Server) CloseStreams() { s.Feed.Close() }

// Close stops the device gateways, ends the streams and closes the
// engine (final snapshot).
func (s *Server) Close() error {
	gwErr := s.gw.close()
	cErr := closeNode(s.Cluster) // before the engine: its appliers apply to it
	s.Feed.Close()
	return errors.Join(gwErr, cErr, s.Engine.Close(), s.Alerts.Close(), s.Sinks.Close(), closeEvents(s.events))
}

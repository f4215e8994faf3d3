package server

import (
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/api"
	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/feed"
	"github.com/fleetd/fleetd/internal/gateway"
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
	Logger  *slog.Logger
}

// Server is a running fleetd: use it as the http.Handler of a listener.
type Server struct {
	Engine *engine.Engine
	Feed   *feed.Hub
	Alerts *alert.Evaluator
	API    *api.Server
	// Cluster is the cluster node, nil for a single node.
	Cluster *cluster.Node
	mux     *http.ServeMux
	h       http.Handler // mux behind the guard
	gw      *gateways
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
	alerts, err := alert.New(alert.Options{
		FS:     o.Engine.FS,
		Dir:    cfgDir,
		Logger: o.Logger,
		Emit:   hub.PublishAlert,
	})
	if err != nil {
		hub.Close()
		return nil, err
	}
	o.Engine.Logger = o.Logger
	// The feed first: a position is published before the alert it causes.
	o.Engine.Observers = append(o.Engine.Observers, hub, alerts)
	eng, err := engine.Open(o.Engine)
	if err != nil {
		hub.Close()
		return nil, err
	}
	var node *cluster.Node
	var gwEng gateway.Engine = eng
	if o.Cluster != nil {
		if node, err = openCluster(*o.Cluster, eng, o.Engine.DataDir); err != nil {
			hub.Close()
			return nil, errors.Join(err, eng.Close())
		}
		o.API.Cluster, gwEng = clusterAPI{node}, node
	}
	gw := &gateways{}
	o.API.Engine, o.API.Alerts, o.API.Logger = eng, alerts, o.Logger
	o.API.Subscribers = func() int { return hub.Stats().Subscribers }
	o.API.Gateways = gw.snapshot
	o.API.Routes = append(o.API.Routes,
		api.Route{Method: "GET", Path: "/v1/stream", Name: "stream", Handler: http.HandlerFunc(hub.ServeSSE)},
		api.Route{Method: "GET", Path: "/v1/ws", Name: "ws", Handler: http.HandlerFunc(hub.ServeWS)},
		api.Route{Method: "GET", Path: "/v1/density", Name: "density", Handler: web.DensityHandler(eng.Store())},
		api.Route{Method: "GET", Path: "/v1/stats/gateways", Name: "gateway_stats", Handler: http.HandlerFunc(gw.serveStats)},
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
	s := &Server{Engine: eng, Feed: hub, Alerts: alerts, API: apiServer, Cluster: node, mux: http.NewServeMux()}
	// The dashboard's page and files are public: a browser cannot send a
	// bearer token when it first loads a page (it asks for one on a 401
	// from the API). Everything else is the API's, with its own 404/405.
	dash := web.Handler(web.Options{BasemapStyle: o.BasemapStyle, Stream: true, Zones: true, Alerts: true})
	for _, p := range []string{"GET /{$}", "GET /index.html", "GET /assets/", "GET /favicon.svg"} {
		s.mux.Handle(p, dash)
	}
	s.mux.Handle("/", apiServer)
	s.h = guard.Handler(s.mux)
	registerGuardMetrics(apiServer, guard)
	if err := gw.open(o.Gateways, gwEng, o.API.MaxClockSkew, o.Logger); err != nil {
		hub.Close()
		return nil, errors.Join(err, closeNode(node), eng.Close())
	}
	s.gw = gw
	registerGatewayMetrics(apiServer, gw)
	return s, nil
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
	return errors.Join(gwErr, cErr, s.Engine.Close(), s.Alerts.Close())
}

package server

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/api"
	"github.com/fleetd/fleetd/internal/auth"
)

// registerGuardMetrics exports the guard's refusals on /metrics as
// fleetd_http_refused_total{reason}.
func registerGuardMetrics(a *api.Server, g *auth.Guard) {
	for reason, c := range map[string]*atomic.Int64{"host": &g.Misdirected, "origin": &g.Forbidden} {
		a.Registry().MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "fleetd_http_refused_total",
			Help:        "Requests refused before any route: Host not served (421), cross-origin write or preflight (403).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(c.Load()) }))
	}
}

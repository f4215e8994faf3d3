package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/api"
	"github.com/fleetd/fleetd/internal/feed"
)

// registerMetrics exports the feed's and the alert engine's counters on
// the API's /metrics.
func registerMetrics(a *api.Server, hub *feed.Hub, al *alert.Evaluator) {
	reg := a.Registry()
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	gauge("fleetd_feed_subscribers", "Live-feed subscribers connected now.", func() float64 { return float64(hub.Stats().Subscribers) })
	counter("fleetd_feed_delivered_total", "Events delivered to live-feed subscribers.", func() float64 { return float64(hub.Stats().Delivered) })
	counter("fleetd_feed_dropped_total", "Events dropped for subscribers that fell behind.", func() float64 { return float64(hub.Stats().Dropped) })
	counter("fleetd_feed_stall_disconnects_total", "Subscribers disconnected for staying behind.", func() float64 { return float64(hub.Stats().StallDisconnects) })
	gauge("fleetd_alert_rules", "Alert rules defined.", func() float64 { return float64(al.Stats().Rules) })
	gauge("fleetd_alerts_firing", "Alerts firing now.", func() float64 { return float64(al.Stats().FiringNow) })
	counter("fleetd_alert_evaluations_total", "Rule evaluations.", func() float64 { return float64(al.Stats().Evaluations) })
	counter("fleetd_alerts_fired_total", "Alerts that started firing.", func() float64 { return float64(al.Stats().Fired) })
	counter("fleetd_alert_pairs_shed_total", "Rules found true for a truck but not tracked: --alert-max-pairs reached.", func() float64 { return float64(al.Stats().PairsShed) })
}

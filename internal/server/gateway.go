package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/api"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/mqtt"
	"github.com/fleetd/fleetd/internal/osmand"
	"github.com/fleetd/fleetd/internal/teltonika"
)

// Gateways configures the device gateways; each is off while its
// address (MQTT: broker URL) is empty. MaxAhead defaults to the API's
// clock-skew limit.
type Gateways struct {
	Teltonika teltonika.Options
	OsmAnd    osmand.Options
	MQTT      mqtt.Options
}

// gateways are the running device gateways and the committer they share.
type gateways struct {
	com *gateway.Committer
	tk  *teltonika.Server
	osm *osmand.Server
	mq  *mqtt.Client
}

// open starts the configured gateways on eng.
func (g *gateways) open(o Gateways, eng gateway.Engine, skew time.Duration, log *slog.Logger) error {
	if o.Teltonika.Addr == "" && o.OsmAnd.Addr == "" && o.MQTT.URL == "" {
		return nil
	}
	switch {
	case skew == 0:
		skew = api.DefaultMaxClockSkew
	case skew < 0:
		skew = 0
	}
	g.com = gateway.NewCommitter(eng, 0, 0)
	if a := o.Teltonika; a.Addr != "" {
		a.Logger = log
		if a.MaxAhead == 0 {
			a.MaxAhead = skew
		}
		s, err := teltonika.Listen(a, g.com)
		if err != nil {
			g.close()
			return err
		}
		g.tk = s
		log.Info("gateway listening", "gateway", "teltonika", "addr", s.Addr().String())
	}
	if a := o.OsmAnd; a.Addr != "" {
		a.Logger = log
		if a.MaxAhead == 0 {
			a.MaxAhead = skew
		}
		s, err := osmand.Listen(a, g.com)
		if err != nil {
			g.close()
			return err
		}
		g.osm = s
		log.Info("gateway listening", "gateway", "osmand", "addr", s.Addr().String())
	}
	if a := o.MQTT; a.URL != "" {
		a.Logger = log
		if a.MaxAhead == 0 {
			a.MaxAhead = skew
		}
		c, err := mqtt.Connect(a, g.com)
		if err != nil {
			g.close()
			return err
		}
		g.mq = c
	}
	return nil
}

// close stops the gateways (unacknowledged frames stay so: devices
// resend) and then the committer; before the engine closes.
func (g *gateways) close() error {
	var errs []error
	if g.tk != nil {
		errs = append(errs, g.tk.Close())
	}
	if g.osm != nil {
		errs = append(errs, g.osm.Close())
	}
	if g.mq != nil {
		g.mq.Close()
	}
	if g.com != nil {
		g.com.Close()
	}
	return errors.Join(errs...)
}

// each calls f for every gateway that runs, by name.
func (g *gateways) each(f func(name string, st *gateway.Stats)) {
	if g.tk != nil {
		f("teltonika", &g.tk.Stats)
	}
	if g.osm != nil {
		f("osmand", &g.osm.Stats)
	}
	if g.mq != nil {
		f("mqtt", &g.mq.Stats)
	}
}

// snapshot is each running gateway's counters by name (nil when none
// runs): /v1/stats's "gateways" and GET /v1/stats/gateways.
func (g *gateways) snapshot() any {
	out := map[string]gateway.Snapshot{}
	g.each(func(name string, st *gateway.Stats) { out[name] = st.Snapshot() })
	if len(out) == 0 {
		return nil
	}
	return out
}

// serveStats is GET /v1/stats/gateways: each running gateway's counters.
func (g *gateways) serveStats(w http.ResponseWriter, _ *http.Request) {
	out := map[string]gateway.Snapshot{}
	g.each(func(name string, st *gateway.Stats) { out[name] = st.Snapshot() })
	b, err := json.Marshal(map[string]any{"gateways": out})
	if err != nil {
		panic("BUG: server: marshalling gateway stats: " + err.Error())
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// registerGatewayMetrics exports each running gateway's counters with a
// gateway label.
func registerGatewayMetrics(a *api.Server, g *gateways) {
	reg := a.Registry()
	g.each(func(name string, st *gateway.Stats) {
		labels := prometheus.Labels{"gateway": name}
		counter := func(metric, help string, f func() int64) {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metric, Help: help, ConstLabels: labels},
				func() float64 { return float64(f()) }))
		}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetd_gateway_connections",
			Help: "Device connections open now.", ConstLabels: labels}, func() float64 { return float64(st.Connections.Load()) }))
		counter("fleetd_gateway_connections_total", "Device connections accepted.", st.ConnectionsTotal.Load)
		counter("fleetd_gateway_frames_total", "Frames (packets, requests, messages) decoded.", st.Frames.Load)
		counter("fleetd_gateway_points_total", "Points made durable.", st.Points.Load)
		counter("fleetd_gateway_rejected_points_total", "Points that could not be applied (acknowledged, not applied).", st.Rejected.Load)
		counter("fleetd_gateway_bad_frames_total", "Malformed frames (bad CRC, length, syntax).", st.BadFrames.Load)
		counter("fleetd_gateway_acks_total", "Acknowledgements sent after durability.", st.Acks.Load)
		counter("fleetd_gateway_commit_errors_total", "Frames not acknowledged because the engine failed.", st.CommitErrors.Load)
		counter("fleetd_gateway_timeouts_total", "Connections closed for a silent device.", st.Timeouts.Load)
		counter("fleetd_gateway_connections_refused_total", "Connections closed at the connection limit.", st.ConnsRefused.Load)
		for _, q := range []struct {
			name string
			q    float64
		}{{"p50", 0.5}, {"p99", 0.99}} {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetd_gateway_ack_latency_" + q.name + "_seconds",
				Help: "Frame received to acknowledgement sent, " + q.name + " since start (to a factor of two).", ConstLabels: labels},
				func() float64 { return st.AckLatency.Quantile(q.q).Seconds() }))
		}
	})
}

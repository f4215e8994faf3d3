package api

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetd/fleetd/internal/engine"
)

// metrics holds the Server's Prometheus instruments. Each Server has its own
// registry, so several servers (tests) never collide.
type metrics struct {
	requests *prometheus.CounterVec   // fleetd_http_requests_total{route,code}
	latency  *prometheus.HistogramVec // fleetd_http_request_duration_seconds{route}
	lines    *prometheus.CounterVec   // fleetd_ingest_lines_total{result}

	accepted, rejected, refused prometheus.Counter
	future, millis              prometheus.Counter // fleetd_ingest_ts_total{kind}
}

func newMetrics(reg *prometheus.Registry, eng *engine.Engine) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_http_requests_total",
			Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fleetd_http_request_duration_seconds",
			Help:    "Time from routing a request to the handler's return, by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_ingest_lines_total",
			Help: "Position updates received by POST /v1/positions: accepted, rejected by the decoder, or refused by the full store.",
		}, []string{"result"}),
	}
	ts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetd_ingest_ts_total",
		Help: "Posted timestamps the decoder acted on: future (rejected, more than --max-clock-skew ahead of the server clock; counted in rejected too) and milliseconds (converted to seconds; accepted).",
	}, []string{"kind"})
	m.future, m.millis = ts.WithLabelValues("future"), ts.WithLabelValues("milliseconds")
	m.accepted = m.lines.WithLabelValues("accepted")
	m.rejected = m.lines.WithLabelValues("rejected")
	m.refused = m.lines.WithLabelValues("refused")
	for _, c := range []prometheus.Collector{
		m.requests, m.latency, m.lines, ts,
		&engineCollector{eng: eng},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// routeMetrics are one route's instruments, curried once at registration.
type routeMetrics struct {
	name    string
	m       *metrics
	latency prometheus.Observer
	common  [len(commonCodes)]prometheus.Counter
}

// commonCodes get a pre-resolved counter each; others are looked up.
var commonCodes = [...]int{200, 204, 400, 401, 404, 405, 413, 415, 500, 503, 507}

func (m *metrics) route(name string) *routeMetrics {
	rm := &routeMetrics{name: name, m: m, latency: m.latency.WithLabelValues(name)}
	for i, c := range commonCodes {
		rm.common[i] = m.requests.WithLabelValues(name, strconv.Itoa(c))
	}
	return rm
}

func (rm *routeMetrics) observe(code int, d time.Duration) {
	rm.latency.Observe(d.Seconds())
	for i, c := range commonCodes {
		if c == code {
			rm.common[i].Inc()
			return
		}
	}
	rm.m.requests.WithLabelValues(rm.name, strconv.Itoa(code)).Inc()
}

// engineCollector reads the engine's figures once per scrape.
type engineCollector struct {
	eng *engine.Engine
}

var (
	descTrucks = prometheus.NewDesc("fleetd_trucks",
		"Trucks in the store.", nil, nil)
	descUpdates = prometheus.NewDesc("fleetd_updates_total",
		"Updates the engine accepted (stale ones included).", nil, nil)
	descRate = prometheus.NewDesc("fleetd_updates_per_second",
		"Accepted updates per second, averaged over the last 10 s.", nil, nil)
	descMemory = prometheus.NewDesc("fleetd_memory_bytes",
		"Store memory by component, from its own accounting.", []string{"component"}, nil)
	descCells = prometheus.NewDesc("fleetd_index_cells",
		"Occupied spatial grid cells, summed over shards.", nil, nil)
	descStale = prometheus.NewDesc("fleetd_updates_stale_total",
		"Accepted updates older than the truck's stored position: durable, not moving it.", nil, nil)
	descExpired = prometheus.NewDesc("fleetd_trucks_expired_total",
		"Trucks removed because fleetd had not heard from them for the TTL.", nil, nil)
	descSweeps = prometheus.NewDesc("fleetd_expiry_sweeps_total",
		"Expiry passes over the store (one per TTL/32 when a TTL is set).", nil, nil)
	descHistPoints = prometheus.NewDesc("fleetd_history_points_total",
		"Points added to history since start (every accepted update).", nil, nil)
	descHistDropped = prometheus.NewDesc("fleetd_history_dropped_points_total",
		"History points removed by the retention or the disk limit.", nil, nil)
	descHistDisk = prometheus.NewDesc("fleetd_history_disk_bytes",
		"Bytes of history's run files.", nil, nil)
	descHistBuffered = prometheus.NewDesc("fleetd_history_buffered_points",
		"History points in memory, not yet written (the writer's backlog).", nil, nil)
	descHistCorrupt = prometheus.NewDesc("fleetd_history_corrupt_runs",
		"History run files that failed a checksum (run fleetd repair).", nil, nil)
	descHistWaits = prometheus.NewDesc("fleetd_history_backpressure_waits_total",
		"Batches that waited because history's writer was behind.", nil, nil)
	descHistWaitSeconds = prometheus.NewDesc("fleetd_history_backpressure_wait_seconds_total",
		"Time batches spent waiting for history's writer, summed over the batches.", nil, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTrucks, descUpdates, descRate, descMemory, descCells, descStale, descExpired, descSweeps,
		descHistPoints, descHistDropped, descHistDisk, descHistBuffered, descHistCorrupt, descHistWaits, descHistWaitSeconds} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.eng.Stats()
	ch <- prometheus.MustNewConstMetric(descTrucks, prometheus.GaugeValue, float64(st.Store.Trucks))
	ch <- prometheus.MustNewConstMetric(descUpdates, prometheus.CounterValue, float64(st.UpdatesTotal))
	ch <- prometheus.MustNewConstMetric(descRate, prometheus.GaugeValue, st.UpdatesPerSec)
	ch <- prometheus.MustNewConstMetric(descCells, prometheus.GaugeValue, float64(st.Store.IndexCells))
	ch <- prometheus.MustNewConstMetric(descStale, prometheus.CounterValue, float64(st.StaleTotal))
	ch <- prometheus.MustNewConstMetric(descExpired, prometheus.CounterValue, float64(st.ExpiredTotal))
	ch <- prometheus.MustNewConstMetric(descSweeps, prometheus.CounterValue, float64(st.Sweeps))
	if h := st.History; h != nil {
		ch <- prometheus.MustNewConstMetric(descHistPoints, prometheus.CounterValue, float64(h.Points))
		ch <- prometheus.MustNewConstMetric(descHistDropped, prometheus.CounterValue, float64(h.Dropped))
		ch <- prometheus.MustNewConstMetric(descHistDisk, prometheus.GaugeValue, float64(h.DiskBytes))
		ch <- prometheus.MustNewConstMetric(descHistBuffered, prometheus.GaugeValue, float64(h.Buffered))
		ch <- prometheus.MustNewConstMetric(descHistCorrupt, prometheus.GaugeValue, float64(h.Corrupt))
		ch <- prometheus.MustNewConstMetric(descHistWaits, prometheus.CounterValue, float64(h.Waits))
		ch <- prometheus.MustNewConstMetric(descHistWaitSeconds, prometheus.CounterValue, h.WaitSeconds)
	}
	for _, mc := range []struct {
		name string
		v    int64
	}{
		{"records", st.Store.Records},
		{"ids", st.Store.IDs},
		{"index", st.Store.Index},
		{"free_lists", st.Store.FreeLists},
		{"spare", st.Store.Spare},
	} {
		ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(mc.v), mc.name)
	}
}

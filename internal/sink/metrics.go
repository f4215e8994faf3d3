package sink

import "github.com/prometheus/client_golang/prometheus"

// Collector exports every running sink's counters with a sink label;
// sinks come and go at run time, so it collects from the live set on each
// scrape.
func (d *Dispatcher) Collector() prometheus.Collector { return collector{d} }

type collector struct{ d *Dispatcher }

var (
	labels   = []string{"sink", "type"}
	descs    = map[string]*prometheus.Desc{}
	descList = []struct {
		name, help string
		counter    bool
		get        func(Stats) float64
	}{
		{"fleetd_sink_delivered_total", "Events the sink's destination acknowledged.", true, func(s Stats) float64 { return float64(s.Delivered) }},
		{"fleetd_sink_retried_total", "Delivery attempts after a failed one.", true, func(s Stats) float64 { return float64(s.Retried) }},
		{"fleetd_sink_failed_total", "Delivery attempts that failed.", true, func(s Stats) float64 { return float64(s.Failed) }},
		{"fleetd_sink_dropped_total", "Events dropped to the dead-letter list past max_age.", true, func(s Stats) float64 { return float64(s.Dropped) }},
		{"fleetd_sink_shed_total", "Events refused by a full outbox.", true, func(s Stats) float64 { return float64(s.Shed) }},
		{"fleetd_sink_outbox_depth", "Events in the outbox not yet delivered.", false, func(s Stats) float64 { return float64(s.Depth) }},
		{"fleetd_sink_outbox_bytes", "Bytes of the outbox on disk.", false, func(s Stats) float64 { return float64(s.DiskBytes) }},
		{"fleetd_sink_oldest_age_seconds", "Age of the oldest undelivered event.", false, func(s Stats) float64 { return s.OldestAgeS }},
		{"fleetd_sink_latency_p50_seconds", "Emitted to acknowledged, p50 since start (to a factor of two).", false, func(s Stats) float64 { return s.LatencyP50Ms / 1000 }},
		{"fleetd_sink_latency_p99_seconds", "Emitted to acknowledged, p99 since start (to a factor of two).", false, func(s Stats) float64 { return s.LatencyP99Ms / 1000 }},
	}
)

func init() {
	for _, m := range descList {
		descs[m.name] = prometheus.NewDesc(m.name, m.help, labels, nil)
	}
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.d.eachStats(func(name string, st Stats) {
		typ := ""
		c.d.mu.Lock()
		typ = c.d.cfgs[name].Type
		c.d.mu.Unlock()
		for _, m := range descList {
			vt := prometheus.GaugeValue
			if m.counter {
				vt = prometheus.CounterValue
			}
			ch <- prometheus.MustNewConstMetric(descs[m.name], vt, m.get(st), name, typ)
		}
	})
}

package api

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"os"
	rtmetrics "runtime/metrics"
	"strconv"

	"github.com/fleetd/fleetd/internal/history"
)

// statsResponse is GET /v1/stats. encoding/json is fine here: it is called
// by people and dashboards, not per update.
type statsResponse struct {
	Trucks        int         `json:"trucks"`
	UpdatesTotal  int64       `json:"updates_total"`
	UpdatesPerSec float64     `json:"updates_per_sec"`
	Memory        memoryStats `json:"memory"`
	HeapObjects   uint64      `json:"heap_objects"`    // live and unswept heap objects
	GCPauseP99Ms  float64     `json:"gc_pause_p99_ms"` // over the process lifetime
	GCCycles      uint64      `json:"gc_cycles"`
	Goroutines    uint64      `json:"goroutines"`
	RSSBytes      int64       `json:"rss_bytes"`  // 0 where /proc/self/statm is absent
	HeapAlloc     uint64      `json:"heap_alloc"` // bytes in heap objects (runtime.MemStats.HeapAlloc)
	UptimeS       float64     `json:"uptime_s"`
	IndexCells    int         `json:"index_cells"`
	Shards        int         `json:"shards"`
	StaleTotal    int64       `json:"stale_total"`           // accepted updates older than the stored position
	FutureTotal   int64       `json:"rejected_future_total"` // rejected: ts too far ahead of the server clock
	MillisTotal   int64       `json:"ts_milliseconds_total"` // accepted with a ts in milliseconds, converted
	TTLS          float64     `json:"ttl_s"`                 // 0: trucks never expire
	Sweeps        int64       `json:"expiry_sweeps"`
	ExpiredTotal  int64       `json:"expired_total"`
	RefusedTotal  int64       `json:"refused_total"` // new trucks refused at the memory limit
	Subscribers   int         `json:"subscribers"`   // live-feed subscribers connected now
	AlertsFiring  int64       `json:"alerts_firing"`
	AlertPairs    int64       `json:"alert_pairs"`            // (rule, truck) pairs with a true condition
	AlertShed     uint64      `json:"alert_pairs_shed_total"` // not tracked: --alert-max-pairs reached
	Durability    *durability `json:"durability,omitempty"`
	History       *histStats  `json:"history,omitempty"`   // absent when history is off
	Gateways      any         `json:"gateways,omitempty"`  // per device gateway, when any runs
	Frontdoor     any         `json:"frontdoor,omitempty"` // the HTTP front door's counters, when it runs
	Sinks         any         `json:"sinks,omitempty"`     // per alert sink, when any is configured
	Cluster       any         `json:"cluster,omitempty"`   // the cluster node's positions and counters (package cluster)
}

// histStats is the history part of /v1/stats: history.Stats and the disk
// cost of a point.
type histStats struct {
	history.Stats
	DiskBytesPerPoint float64 `json:"disk_bytes_per_point"` // over the points in run files
}

// durability is the write-ahead log and snapshot part of /v1/stats.
type durability struct {
	WALSegments      int     `json:"wal_segments"`
	WALBytesWritten  uint64  `json:"wal_bytes_written"`
	WALBytesPerUpd   float64 `json:"wal_bytes_per_update"`
	Fsyncs           uint64  `json:"fsyncs"`
	WriteErrors      uint64  `json:"write_errors"`
	LastSnapshotLSN  uint64  `json:"last_snapshot_lsn"`
	LastSnapshotSize int64   `json:"last_snapshot_bytes"`
	RecoveredIn      float64 `json:"recovered_in_s"`
}

// memoryStats: the store's components in bytes (store.Stats), its total and
// per-truck figure, and process-wide figures for comparison.
type memoryStats struct {
	Records       int64   `json:"records"`
	IDs           int64   `json:"ids"`
	Index         int64   `json:"index"`
	FreeLists     int64   `json:"free_lists"`
	Spare         int64   `json:"spare"`
	Store         int64   `json:"store"` // sum of the above
	BytesPerTruck float64 `json:"bytes_per_truck"`
	GoHeap        uint64  `json:"go_heap"`  // heap objects, the store's slabs included
	GoTotal       uint64  `json:"go_total"` // all memory the Go runtime has mapped
	RSS           int64   `json:"rss"`
	RSSPerTruck   float64 `json:"rss_per_truck"`
}

var runtimeSamples = [...]string{
	"/gc/heap/objects:objects",
	"/sched/pauses/total/gc:seconds",
	"/gc/cycles/total:gc-cycles",
	"/sched/goroutines:goroutines",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/total:bytes",
}

// runtimeFigures reads the runtime/metrics samples stats needs.
type runtimeFigures struct {
	heapObjects, gcCycles, goroutines, heapBytes, totalBytes uint64
	gcPauseP99                                               float64 // seconds
}

func readRuntime() runtimeFigures {
	samples := make([]rtmetrics.Sample, len(runtimeSamples))
	for i, name := range runtimeSamples {
		samples[i].Name = name
	}
	rtmetrics.Read(samples)
	u := func(i int) uint64 {
		if samples[i].Value.Kind() == rtmetrics.KindUint64 {
			return samples[i].Value.Uint64()
		}
		return 0
	}
	f := runtimeFigures{
		heapObjects: u(0),
		gcCycles:    u(2),
		goroutines:  u(3),
		heapBytes:   u(4),
		totalBytes:  u(5),
	}
	if samples[1].Value.Kind() == rtmetrics.KindFloat64Histogram {
		f.gcPauseP99 = quantile(samples[1].Value.Float64Histogram(), 0.99)
	}
	return f
}

// quantile estimates a quantile of a runtime/metrics histogram as the upper
// bound of the bucket holding it (the lower bound if that is +Inf).
func quantile(h *rtmetrics.Float64Histogram, q float64) float64 {
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var cum uint64
	for i, c := range h.Counts {
		cum += c
		if cum >= rank {
			if hi := h.Buckets[i+1]; !math.IsInf(hi, 1) {
				return hi
			}
			return h.Buckets[i]
		}
	}
	return h.Buckets[len(h.Buckets)-1]
}

// rss reads the resident set size from /proc/self/statm (Linux); 0 where
// that is not available.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// stats is GET /v1/stats.
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.StatsJSON())
}

// StatsJSON is the body of GET /v1/stats, for other front doors (the RESP
// server's SERVER and INFO answer the same figures).
func (s *Server) StatsJSON() []byte {
	es := s.eng.Stats()
	rt := readRuntime()
	st := es.Store
	resp := statsResponse{
		Trucks:        st.Trucks,
		UpdatesTotal:  es.UpdatesTotal,
		UpdatesPerSec: es.UpdatesPerSec,
		Memory: memoryStats{
			Records:       st.Records,
			IDs:           st.IDs,
			Index:         st.Index,
			FreeLists:     st.FreeLists,
			Spare:         st.Spare,
			Store:         st.Total,
			BytesPerTruck: round2(st.BytesPerTruck),
			GoHeap:        rt.heapBytes,
			GoTotal:       rt.totalBytes,
			RSS:           rss(),
		},
		HeapObjects:  rt.heapObjects,
		GCPauseP99Ms: round2(rt.gcPauseP99 * 1000),
		GCCycles:     rt.gcCycles,
		Goroutines:   rt.goroutines,
		HeapAlloc:    rt.heapBytes,
		UptimeS:      round2(es.Uptime.Seconds()),
		IndexCells:   st.IndexCells,
		Shards:       st.Shards,
	}
	resp.ExpiredTotal, resp.RefusedTotal = es.ExpiredTotal, es.RefusedTotal
	resp.StaleTotal, resp.Sweeps, resp.TTLS = es.StaleTotal, es.Sweeps, es.TTL.Seconds()
	resp.FutureTotal, resp.MillisTotal = s.ts.future.Load(), s.ts.millis.Load()
	if s.subscribers != nil {
		resp.Subscribers = s.subscribers()
	}
	if s.cluster != nil {
		resp.Cluster = s.cluster.Stats()
	}
	if s.frontdoor != nil {
		resp.Frontdoor = s.frontdoor()
	}
	if s.gateways != nil {
		resp.Gateways = s.gateways()
	}
	if s.sinks != nil {
		resp.Sinks = s.sinks()
	}
	if h := es.History; h != nil {
		resp.History = &histStats{Stats: *h}
		if h.StoredPts > 0 {
			resp.History.DiskBytesPerPoint = round2(float64(h.DiskBytes) / float64(h.StoredPts))
		}
	}
	if s.alerts != nil {
		as := s.alerts.Stats()
		resp.AlertsFiring, resp.AlertPairs, resp.AlertShed = as.FiringNow, as.StateEntries, as.PairsShed
	}
	if es.Durable {
		d := &durability{
			WALSegments:      es.WAL.Segments,
			WALBytesWritten:  es.WAL.Bytes,
			Fsyncs:           es.WAL.Syncs,
			WriteErrors:      es.WAL.WriteErrors + es.WAL.SyncErrors,
			LastSnapshotLSN:  uint64(es.LastSnapshot.LSN),
			LastSnapshotSize: es.LastSnapshot.Bytes,
			RecoveredIn:      round2(es.Recovery.Duration.Seconds()),
		}
		if es.UpdatesTotal > 0 {
			d.WALBytesPerUpd = round2(float64(es.WAL.Bytes) / float64(es.UpdatesTotal))
		}
		resp.Durability = d
	}
	resp.RSSBytes = resp.Memory.RSS
	if st.Trucks > 0 {
		resp.Memory.RSSPerTruck = round2(float64(resp.Memory.RSS) / float64(st.Trucks))
	}
	body, err := json.Marshal(&resp)
	if err != nil {
		panic("BUG: api: marshalling stats: " + err.Error())
	}
	return body
}

// round2 rounds to two decimals for display.
func round2(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return math.Round(v*100) / 100
}

package cluster

import (
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats is the node's part of /v1/stats ("cluster").
type Stats struct {
	Node       string `json:"node"`
	Stream     string `json:"stream"`
	Partitions int    `json:"partitions"`
	Connected  bool   `json:"nats_connected"`
	Server     string `json:"nats_server,omitempty"`
	// Servers is every NATS server the connection knows of.
	Servers []string `json:"nats_servers"`
	// Applied is the text form of a token of everything applied here;
	// Behind counts the messages the stream holds past it (as of the last
	// look at the stream, at most a second old; StreamCheckedS ago).
	Applied        string          `json:"applied"`
	Behind         uint64          `json:"behind_messages"`
	StreamCheckedS float64         `json:"stream_checked_s_ago"`
	PartitionsInfo []PartitionInfo `json:"partition_positions"`
	// ApplyLagP50Ms and ApplyLagP99Ms are over the last 4,096 applied
	// messages (a message is one partition's part of a write): from
	// JetStream taking it in (its stream timestamp, set by the stream
	// leader when the message arrives, before replication and the
	// acknowledgement: an upper bound of the lag from the ack) to this
	// node's engine having applied it.
	ApplyLagP50Ms float64 `json:"apply_lag_p50_ms"`
	ApplyLagP99Ms float64 `json:"apply_lag_p99_ms"`

	PublishedMessages   int64   `json:"published_messages"`
	PublishedUpdates    int64   `json:"published_updates"`
	PublishedBytes      int64   `json:"published_bytes"` // message payloads
	BytesPerUpdate      float64 `json:"published_bytes_per_update"`
	PublishRetries      int64   `json:"publish_retries"`
	PublishFailures     int64   `json:"publish_failures"`
	PublishDuplicates   int64   `json:"publish_duplicates"` // acknowledged as already stored (retries)
	AppliedMessages     int64   `json:"applied_messages"`
	AppliedUpdates      int64   `json:"applied_updates"`
	AppliedDeletes      int64   `json:"applied_deletes"`
	MalformedMessages   int64   `json:"malformed_messages"`
	ApplyErrors         int64   `json:"apply_errors"`
	ConsumerErrors      int64   `json:"consumer_errors"`
	ConsumerRestarts    int64   `json:"consumer_restarts"` // consumers replaced: dead, lost messages or stalled
	PolledMessages      int64   `json:"polled_messages"`   // read one by one while no consumer could be created
	PositionSaveErrors  int64   `json:"position_save_errors"`
	AwaitTimeouts       int64   `json:"await_timeouts"`
	StreamMessages      uint64  `json:"stream_messages"`
	StreamBytes         uint64  `json:"stream_bytes"`
	StreamFirstSeq      uint64  `json:"stream_first_seq"`
	StreamLastSeq       uint64  `json:"stream_last_seq"`
	StreamBytesPerMsg   float64 `json:"stream_bytes_per_message"`
	StreamReplicas      int     `json:"stream_replicas"`
	StreamLeader        string  `json:"stream_leader,omitempty"`
	StreamReplicasState []Peer  `json:"stream_peers,omitempty"`
	// SnapshotsPublished counts the snapshots this node put in the object
	// store (SnapshotBytes: the last one's size); RestoredFromSnapshot:
	// it started from the object store's.
	SnapshotsPublished   int64 `json:"snapshots_published"`
	SnapshotBytes        int64 `json:"snapshot_bytes"`
	SnapshotErrors       int64 `json:"snapshot_errors"`
	RestoredFromSnapshot bool  `json:"restored_from_snapshot"`
	// Purges counts the partition purges this node did after publishing
	// a snapshot (PurgeErrors: those that failed); PurgedBelow is a token
	// of the floors it purged to (each partition's messages below are
	// gone; other nodes may have purged further).
	Purges      int64  `json:"stream_purges"`
	PurgeErrors int64  `json:"stream_purge_errors"`
	PurgedBelow string `json:"stream_purged_below,omitempty"`
	// BehindRetentionAtStart: the saved positions were below what the
	// stream still held (purged while the node was down), so it restored
	// from the object store instead of resuming. GapPartitions: the
	// partitions it stopped applying at run time because the stream was
	// purged past them (it must be restarted; reads of them answer 503).
	BehindRetentionAtStart bool  `json:"behind_retention_at_start"`
	GapPartitions          []int `json:"gap_partitions,omitempty"`
	// PositionsAheadOfLog: at start, the positions file counted updates
	// the local log had lost (a power cut under --fsync interval or
	// never), so this node read the whole stream again.
	PositionsAheadOfLog bool `json:"positions_ahead_of_log"`
	// Config is the configuration bucket's figures; nil without one.
	Config *ConfigStats `json:"config,omitempty"`
}

// ConfigStats is the configuration bucket as this node sees it.
type ConfigStats struct {
	Bucket string `json:"bucket"`
	// Revision is the highest bucket revision applied here: a read with
	// ConfigRevisionHeader at most this answers at once.
	Revision uint64 `json:"revision"`
	Entries  int    `json:"entries"` // keys this node holds from the bucket
	Puts     uint64 `json:"puts"`    // written by this node
	Deletes  uint64 `json:"deletes"`
	Applied  uint64 `json:"applied"` // changes applied from the bucket
	// ApplyErrors counts changes from the bucket this node could not
	// apply (its configuration then differs; the log says which).
	ApplyErrors uint64 `json:"apply_errors"`
	// Restores counts local changes undone because the bucket refused them.
	Restores uint64 `json:"restores"`
}

// PartitionInfo is one partition's position.
type PartitionInfo struct {
	Partition int    `json:"partition"`
	Applied   uint64 `json:"applied_seq"`
	Last      uint64 `json:"stream_last_seq"`
}

// Peer is a stream replica other than the leader.
type Peer struct {
	Name    string  `json:"name"`
	Current bool    `json:"current"`
	ActiveS float64 `json:"active_s_ago"`
}

// Stats reports the node's figures. It reads the stream's info from the
// NATS server (bounded by a one-second timeout; the cached figures are
// reported if that fails).
func (n *Node) Stats() Stats {
	s := Stats{Node: n.opts.Name, Stream: n.opts.Stream, Partitions: len(n.parts), Connected: n.nc.IsConnected(),
		Servers: n.nc.Servers(), Applied: Token(n.appliedMarks()).String()}
	s.SnapshotsPublished, s.SnapshotBytes = n.snap.published.Load(), n.snap.bytes.Load()
	s.SnapshotErrors, s.RestoredFromSnapshot = n.snap.errors.Load(), n.snap.restored.Load()
	s.PositionsAheadOfLog = n.lostTail.Load()
	s.Purges, s.PurgeErrors = n.ret.purges.Load(), n.ret.purgeErrors.Load()
	if s.Purges > 0 {
		floors := make([]uint64, len(n.parts))
		for i := range floors {
			floors[i] = n.ret.purgedTo[i].Load()
		}
		s.PurgedBelow = Token(marksOf(floors)).String()
	}
	s.BehindRetentionAtStart, s.GapPartitions = n.ret.behindAtStart.Load(), n.gapPartitions()
	if c := n.cfg; c != nil {
		s.Config = &ConfigStats{Bucket: c.bucket, Revision: c.rev.Load(), Entries: int(c.entries.Load()), Puts: c.puts.Load(),
			Deletes: c.deletes.Load(), Applied: c.applies.Load(), ApplyErrors: c.applyErrors.Load(), Restores: c.restores.Load()}
	}
	if s.Connected {
		s.Server = n.nc.ConnectedUrlRedacted()
	}
	for i, p := range n.parts {
		a, l := p.applied.Load(), p.last.Load()
		s.PartitionsInfo = append(s.PartitionsInfo, PartitionInfo{i, a, l})
		if l > a {
			s.Behind += max(p.pending.Load(), 1)
		}
	}
	if t := n.app.refreshedAt.Load(); t > 0 {
		s.StreamCheckedS = time.Since(time.Unix(0, t)).Seconds()
	}
	s.ApplyLagP50Ms, s.ApplyLagP99Ms = finite(n.lag.quantile(0.5)), finite(n.lag.quantile(0.99))
	s.PublishedMessages, s.PublishedUpdates, s.PublishedBytes = n.pub.messages.Load(), n.pub.updates.Load(), n.pub.bytes.Load()
	if s.PublishedUpdates > 0 {
		s.BytesPerUpdate = float64(s.PublishedBytes) / float64(s.PublishedUpdates)
	}
	s.PublishRetries, s.PublishFailures, s.PublishDuplicates = n.pub.retries.Load(), n.pub.failures.Load(), n.pub.duplicates.Load()
	s.AppliedMessages, s.AppliedUpdates, s.AppliedDeletes = n.app.messages.Load(), n.app.updates.Load(), n.app.deletes.Load()
	s.MalformedMessages, s.ApplyErrors, s.ConsumerErrors = n.app.malformed.Load(), n.app.applyErrors.Load(), n.app.consumeErrors.Load()
	s.PositionSaveErrors, s.AwaitTimeouts, s.ConsumerRestarts = n.app.saveErrors.Load(), n.app.awaitTimeouts.Load(), n.app.consumerRestarts.Load()
	s.PolledMessages = n.app.polled.Load()
	info := n.stream.CachedInfo()
	if s.Connected {
		ctx, cancel := contextTimeout(time.Second)
		if fresh, err := n.stream.Info(ctx); err == nil {
			info = fresh
		}
		cancel()
	}
	if info != nil {
		st := info.State
		s.StreamMessages, s.StreamBytes, s.StreamFirstSeq, s.StreamLastSeq = st.Msgs, st.Bytes, st.FirstSeq, st.LastSeq
		if st.Msgs > 0 {
			s.StreamBytesPerMsg = float64(st.Bytes) / float64(st.Msgs)
		}
		s.StreamReplicas = info.Config.Replicas
		if c := info.Cluster; c != nil {
			s.StreamLeader = c.Leader
			for _, r := range c.Replicas {
				s.StreamReplicasState = append(s.StreamReplicasState, Peer{r.Name, r.Current, r.Active.Seconds()})
			}
		}
	}
	return s
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// Register adds the node's metrics (fleetd_cluster_…) to reg.
func (n *Node) Register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetd_cluster_nats_connected", Help: "1 while connected to a NATS server."}, func() float64 {
			if n.nc.IsConnected() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetd_cluster_behind_messages", Help: "Messages the stream holds that this node has not applied (as of its last look, at most a second old)."}, func() float64 {
			var b uint64
			for _, p := range n.parts {
				if l, a := p.last.Load(), p.applied.Load(); l > a {
					b += max(p.pending.Load(), 1)
				}
			}
			return float64(b)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetd_cluster_apply_lag_p50_seconds", Help: "Median lag of the last 4096 applied messages, from JetStream storing a message to this node having applied it."}, func() float64 {
			return finite(n.lag.quantile(0.5)) / 1000
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetd_cluster_apply_lag_p99_seconds", Help: "p99 of the last 4096 applied messages' lag, from JetStream storing a message to this node having applied it."}, func() float64 {
			return finite(n.lag.quantile(0.99)) / 1000
		}),
		counterFunc("fleetd_cluster_published_messages_total", "Messages this node published and JetStream acknowledged.", &n.pub.messages),
		counterFunc("fleetd_cluster_published_updates_total", "Updates in those messages.", &n.pub.updates),
		counterFunc("fleetd_cluster_published_bytes_total", "Payload bytes of those messages.", &n.pub.bytes),
		counterFunc("fleetd_cluster_publish_retries_total", "Messages republished after a missing acknowledgement.", &n.pub.retries),
		counterFunc("fleetd_cluster_publish_failures_total", "Publishes answered 503: not acknowledged in time.", &n.pub.failures),
		counterFunc("fleetd_cluster_applied_messages_total", "Stream messages this node applied.", &n.app.messages),
		counterFunc("fleetd_cluster_applied_updates_total", "Updates this node applied from the stream.", &n.app.updates),
		counterFunc("fleetd_cluster_malformed_messages_total", "Stream messages skipped as malformed.", &n.app.malformed),
		counterFunc("fleetd_cluster_apply_errors_total", "Engine errors while applying the stream (retried).", &n.app.applyErrors),
		counterFunc("fleetd_cluster_stream_purges_total", "Partition purges of the stream this node did after publishing a snapshot.", &n.ret.purges),
		counterFunc("fleetd_cluster_retention_gaps_total", "Partitions this node stopped applying because the stream was purged past them (restart it).", &n.ret.gaps),
		counterFunc("fleetd_cluster_await_timeouts_total", "Reads whose token was not applied within the bound (503).", &n.app.awaitTimeouts),
	}
	appliedSeq := prometheus.NewDesc("fleetd_cluster_applied_seq", "Last stream sequence applied, per partition.", []string{"partition"}, nil)
	cs = append(cs, &seqCollector{n: n, desc: appliedSeq})
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

type int64Loader interface{ Load() int64 }

func counterFunc(name, help string, v int64Loader) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
}

// seqCollector reports each partition's applied sequence.
type seqCollector struct {
	n    *Node
	desc *prometheus.Desc
}

func (c *seqCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *seqCollector) Collect(ch chan<- prometheus.Metric) {
	for i, p := range c.n.parts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(p.applied.Load()), strconv.Itoa(i))
	}
}

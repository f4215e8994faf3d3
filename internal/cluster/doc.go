// Package cluster runs fleetd as several nodes on NATS JetStream: any node
// takes writes, JetStream replicates them, and every node applies every
// write, in stream order, to its own engine and serves every query from
// its own memory. No replication protocol of fleetd's own: the stream is
// the log, its replicas (R3 in the tests) the durability, and each node a
// deterministic reader of it.
//
// # Write path
//
// A node decodes and validates a batch exactly as a single node does
// (package ingest), then Publish groups the updates by partition
// (Partition: FNV-1a of the truck ID mod the partition count, the same on
// every node), encodes each group as one message (many updates, split
// only past maxMessageUpdates or the server's max_payload), publishes the
// messages asynchronously to <stream>.p.<partition> with a Nats-Msg-Id
// header, and returns only once JetStream has acknowledged every one:
// stored on a quorum of the stream's replicas, on their disks. That is
// what a 200 means in cluster mode. A message not acknowledged within
// 2 s is republished with the same ID (through another server, after a
// reconnect) until Options.PublishTimeout; then the request fails (503)
// and the client retries.
//
// The message ID is the first 128 bits of SHA-256 of the message, so a
// client's retry of the same body within the stream's duplicate window
// (DefaultDuplicates) publishes the same messages with the same IDs and
// JetStream keeps one copy. A retry after the window is applied again,
// which is harmless: identical updates do not move a truck and history
// keeps a point once.
//
// # Message format
//
//	message := version=1 (1 byte) | partition (uvarint) | batch
//	batch   := package wal's update batch codec (wal/doc.go): count,
//	           base ts, entries prefix-compressed against the previous ID
//
// Entries of one message are sorted by ID, stably (a truck's updates keep
// their order), which shortens the shared-prefix IDs: about 16.5 bytes an
// update for IDs like "truck-00042" (TestNodesConverge logs it), plus
// JetStream's per-message overhead (subject, headers, ~100 bytes) shared
// by the message's updates. A delete is an entry of kind delete. The
// decoder validates the whole message (codec, the store's ranges, every
// ID in the subject's partition) before delivering any entry; a malformed
// message is skipped, counted and logged, the same way on every node.
//
// # Apply path
//
// Each node follows every partition with a consumer of its own: an
// ephemeral pull consumer (R1, in memory, no acks, byte-bounded pulls)
// that starts right after the partition's applied sequence, so what it
// delivers is a gap-free run of the partition from there. A partition's
// follower goroutine replaces its consumer, again from the applied
// sequence, as soon as it is dead or suspect:
//
//   - two missed idle heartbeats (0.5 s each; the consumer lives on one
//     server, which may have died), a deleted consumer, "no responders"
//     or a closed connection, as the client library reports them;
//   - a delivery sequence that skips (no acks: messages pushed into a
//     connection that died are gone, and the consumer moved on);
//   - the partition behind the stream (the watcher looks once a second)
//     without progress for 2 s: a lost tail that nothing else shows.
//
// A replaced consumer's generation is dropped by the applier: whatever it
// still hands over is ignored, and the next one starts from the applied
// sequence, read after the generation changed.
//
// Creation attempts are bounded by 0.5 s (doubling every second failure,
// up to 4 s) and retried every 250 ms. The client library's ordered
// consumer, used before, waited 10 s an attempt and backed off up to
// 10 s: a request made while NATS was electing a leader kept a partition
// dark for 10-11 s after NATS was back, which is what "consumers stuck
// after a NATS server is killed" was. While no consumer can be created
// (the meta leader, which creates them, is being elected, or the new
// consumer was placed on the dead server), the follower reads the
// partition message by message through the stream's get API, which the
// stream leader serves, from the applied sequence on.
//
// Measured in TestCluster (medians over runs on a shared 2-core box): a
// kill -9 of the NATS server leading the stream pauses writes while NATS
// elects a new stream leader (its raft election timeout, 4-9 s after the
// dead leader's last heartbeat): 4.2-9.4 s, median 5.9 s, 11 runs; every
// node applies the first write acknowledged after it within 0.26 s of the
// ack (median 13 ms). A kill -9 of another server does not pause writes
// (3-65 ms); each
// node applies them again within 1.3-1.7 s, median of the slowest node
// 1.5 s, 8 runs (it was 2.3-6.8 s without the poller). The test bounds
// both at 15 s.
//
// A partition's applier gathers what has been delivered (up to
// applyMaxMessages messages, applyMaxUpdates updates) into one engine
// call, so partitions apply in parallel on the store's shards while each
// truck's updates (all in one partition) apply in stream order. A
// message of updates only (no delete, at most applyMaxUpdates) is checked
// and decoded in one pass (taken back out if it turns out malformed);
// when all of a call's messages are such, it is engine.ApplyEncoded with
// the messages' update batches, as they came, as the local log's records
// (the message format's batch is the log's codec), instead of
// engine.Apply encoding the same updates again. Other messages are
// checked, then decoded, and go through engine.Apply, a delete between
// the updates around it. BenchmarkClusterCatchUp, the catching-up node's
// CPU an update (medians of 3 on a shared 2-core box): 494 → 436 ns,
// with --history=false 247 → 183 ns. A failed Apply (disk error) is
// retried: skipping would lose what every other node has. Expiry (the
// TTL) runs on each node by its own clock.
//
// # Positions file and restart
//
// After engine.Apply returns (the updates are in the node's local
// write-ahead log, written, and fsynced per --fsync), the partition's
// applied sequence advances; once a second the sequences are written to
// <dir>/positions-<stream>, with the engine's next log sequence number
// read after them (wal next: every update they count is in a record
// below it):
//
//	+------+---------+-------------+-----------+-------------+----------------+--------+
//	| FLCP | version | created     | wal next  | n (uvarint) | seq × n        | CRC32C |
//	| 4 B  | 1 B = 2 | int64 LE ns | uint64 LE |             | uint64 LE each | 4 B LE |
//	+------+---------+-------------+-----------+-------------+----------------+--------+
//
// written to a temporary file, fsynced, renamed and the directory fsynced
// (version 1, without wal next, is still read). created is the stream's
// creation time: a positions file of a recreated stream is refused. On
// restart the engine recovers its snapshot and log, and each partition
// resumes after its saved sequence. The local state may hold more than
// the file says (applied after the last save), so a suffix of each
// partition is applied again. That converges to the state of applying
// the stream once (TestReapplySuffix, with ties and deletes): latest wins
// by ts and a tie goes to the update applied last, and re-applying a
// suffix in order ends with the same last update per truck; a delete
// removes whatever came before it. History keeps a re-applied point
// once. Without a data directory the node keeps no file and replays the
// whole stream at start.
//
// # The local log in cluster mode
//
// A 200 waits for JetStream, not for the local log: the stream is the
// durability log, and the local log (with the snapshots) only makes a
// restart read less of it. So cluster mode defaults --fsync to
// interval=10ms (an explicit --fsync is kept): an fsync a batch costs
// apply lag for nothing, and it depends on what else uses the disk
// (BenchmarkClusterApplyLag at 100k updates/s on a shared 2-core box,
// 4 runs each: apply lag p99 18-42 ms, median 20, with interval=10ms;
// 21-372 ms, median 118, with always). A kill -9 loses
// nothing from the local log either way; a power cut can shorten it
// below what the positions file counts. The node notices at start (the
// recovered log's next LSN is below the file's wal next), says so in
// its log and in /v1/stats (cluster.positions_ahead_of_log), and reads
// the whole stream again over what the engine kept, which converges as
// above (re-applying the whole stream is re-applying a suffix);
// TestNodeLogLostTail cuts a log short to check it.
//
// # Configuration
//
// Zones, rules and sinks live in a JetStream key-value bucket,
// <stream>-config (history 1, file storage, as many replicas as the
// stream). Keys are kind "." base64url(name), kind one of zone, sink,
// rule (names may hold ':', which keys may not); a value is the body a
// single node takes for that entry: a zone's GeoJSON, a rule's
// {"when","for","severity"}, a sink's JSON (with its secret: the bucket
// is as private as the NATS account). A bulk PUT /v1/rules is one key a
// rule, published asynchronously and all acknowledged before the answer.
//
// A write (PUT or DELETE of /v1/zones/{name}, /v1/rules/{name},
// /v1/sinks/{name}; PUT /v1/rules) on any node is first applied to that
// node exactly as on a single node (authentication, validation, limits,
// status codes: a refused write never reaches the bucket), then put to
// the bucket; its 2xx answer is sent only after JetStream acknowledged
// the put, with Fleetd-Config-Revision: the bucket revision it reached.
// If the put fails (503), the node sets the key back to what the bucket
// holds. One mutex a node serialises its local writes with the watcher,
// which applies every other node's changes in bucket order (batched:
// consecutive rule puts are one PutRules) and skips the echo of the
// node's own writes: each key's applied revision is kept in memory and
// in DATA/cluster/config-<stream> (JSON {"created","applied":{key:rev}}),
// replaced atomically like the positions file.
//
// Read your configuration writes: a request carrying
// Fleetd-Config-Revision waits (at most WaitMax) until this node has
// applied that revision (a bounded wait on the bucket revision, not the
// stream token: configuration is not in the stream), then answers;
// past the bound 503 with the revision applied here.
//
// At start, before the stream's consumers (rules see the positions the
// stream carries), a node loads the whole bucket: entries whose revision
// matches the applied-revisions file are kept as they are (a restart
// does not replace a rule and reset its state), the others applied in
// the order zones, sinks, rules; what the node holds that the bucket
// does not is deleted (rules, then sinks, then zones): the bucket is the
// configuration, the node's DATA/config and DATA/sinks its copy. A
// change a node cannot apply (a zone deleted elsewhere while a rule here
// names it) is logged and counted (stats cluster.config.apply_errors).
//
// Limits: a value is at most the NATS server's max_payload (1 MiB by
// default), so a zone larger than that is refused with 503 in cluster
// mode. Two nodes writing the same key at once end, on every node, with
// the bucket's last write.
//
// # Snapshots in the object store
//
// Every Options.SnapshotEvery (--nats-snapshot-every, default 1 min) a
// node reads its partitions' applied sequences P, then walks its store,
// and puts the result in the JetStream object store <stream>-snapshots
// (as many replicas as the stream) as the object "latest", with
// metadata positions (P as a token), created (the stream's creation
// time), node and trucks. It skips the put when "latest" already covers
// P (another node published as far), when it covers more than P on some
// partition (a node further on publishes; see Retention), or when it is
// younger than half a period (so that about one node a period
// publishes). A 1M-truck fleet is a
// 16.4 MB object, encoded in ~0.2 s and decoded with every check in
// ~0.11 s (BenchmarkEncodeSnapshot, medians of 5 on a shared 2-core
// box). P is read before the store, so the object holds every update up
// to P and perhaps some after: a restore then applies a suffix of the
// stream again, which converges (see Positions file and restart).
//
//	object  := "FLCS" | version=1 (1 byte) | created (int64 LE ns)
//	           | n (uvarint) | seq × n (uint64 LE) | chunk*
//	chunk   := len (uvarint) | message    (the stream's message format:
//	           one partition's updates, at most maxMessageUpdates)
//
// The object store keeps a SHA-256 digest of the object, checked when it
// is read; each chunk is checked as a stream message is (DecodeMessage),
// all of them before anything is applied.
//
// A node that starts empty (no positions file and no trucks: a new or
// wiped data directory, or none) fetches "latest" if it is of this
// stream, applies its trucks to the engine (the configuration is loaded
// first, so rules see them), sets every partition's applied sequence to
// P and reads only the stream after P. Without a snapshot, or if the
// restore fails (logged, stats snapshot_errors), it reads the whole
// stream if nothing of it was purged, and refuses to start otherwise
// (see Retention). History is not in the snapshot: a restored node's history
// starts with the tail it reads.
//
// # Retention
//
// The stream has limits retention with no age or size limit; what
// bounds it is a purge after each snapshot. A node that has just put a
// snapshot (positions P) in the object store purges each partition's
// subject below the positions Q of the newest snapshot it has seen that
// was put at least Options.Retain ago (--nats-retain, default 1 h) and
// that the snapshot P replaced covers (JetStream's purge by subject up
// to, not including, a sequence: the message at Q[p] stays). So the
// stream holds Retain plus one to two snapshot periods of each
// partition: its size is what that much ingest takes (1M trucks
// reporting every 30 s: 33k updates/s at 16.5 B, about 2 GB an hour on
// each NATS server), flat over months, and the object store one
// snapshot ("latest" is replaced; a 1M fleet is 16.4 MB). Retain is
// there for history: a node down for less than it (a restart, an
// upgrade, a reboot) catches up from the stream and its history stays
// whole; one down for longer restores from the snapshot (below) and its
// history misses the time it was down. A node remembers the snapshots
// it saw (at most about 1,024 per Retain) only in memory: after its
// restart it purges again once it has seen one Retain old. With Retain
// negative (--nats-retain 0) Q is the snapshot P replaced.
// Options.KeepAll turns the purge off.
// TestClusterRetention: with --nats-snapshot-every 1s the stream's first
// sequence advances to the floor (to 217 with 544 published; 328 kept,
// in one run).
//
// Why at most the replaced snapshot and not P (a margin of one period): a publisher reads "latest"
// before its put, so two publishers can race; each put covers the
// snapshot its publisher read (a snapshot never replaces one it does not
// cover on every partition: PublishSnapshot skips), so every snapshot
// that can be latest after the put of P covers Q unless a publisher's
// read-to-put took longer than the half period between two puts. And a
// live node a little behind (a NATS failover, up to 15 s; a slow disk)
// has a period to catch up before the purge passes it. A node stopped for
// longer than between half a period and a period (puts are at least half
// a period apart) restarts from the snapshot rather than the stream
// (below): for a 1M fleet a 16 MB fetch and 1M updates applied, where
// replaying a minute of ingest at 500,000 updates/s is 30M. Purges are
// idempotent and only ever remove a prefix of a subject, so several
// nodes purging at once (each after its own put) do no harm. No one else
// may purge or limit the stream: what follows relies on each partition's
// subject keeping a suffix of its messages, the one at the last floor
// first.
//
// Behind the purge. A node that has applied partition p up to a (a
// stream sequence of p, or 0) lacks nothing the stream lost if a is at
// or past p's first message f: the stream holds every message of p after
// f. If 0 < a < f, message a was purged and so may have been the ones
// after it: the node is behind (conservatively: the purge may have
// stopped right after a). If a = 0 < f, it is behind when a snapshot
// covers f (f may be a purge's floor; floors are snapshot positions).
//
//   - At Open, a node with saved positions (or a log that lost its tail,
//     read from 0) that is behind on any partition logs it, sets stats
//     behind_retention_at_start and restores from the object store's
//     snapshot instead of resuming (resuming would silently skip the
//     purged updates: the consumer starts at the first message the
//     stream holds). Its old state is cleared first where the snapshot
//     would not overwrite it: trucks the snapshot lacks (deleted or
//     expired in what the node missed) and trucks the node holds with a
//     newer ts than the snapshot's (latest wins would keep them) are
//     deleted; the others are overwritten. Without a usable snapshot the
//     node refuses to start (Open fails, saying why).
//   - A snapshot is usable only if the stream holds its tail: its
//     positions are not behind (above). One that is not (the race
//     above) is refused; an empty node then refuses to start too,
//     rather than read a stream with a gap, and starts after the next.
//     An empty node without a snapshot reads the whole stream, which is
//     whole: no snapshot, no purge.
//   - While running, the watcher looks each second at every partition
//     behind the stream: one that is behind the purge stops applying
//     (what it would apply next leaves a gap), logs an error, shows in
//     stats gap_partitions (reads of it answer 503), and its saved
//     position becomes 0, so that its restart restores from the object
//     store. Not built: restoring in place without a restart.
//
// Limits. A live node more than a period behind, on a consumer that
// keeps delivering, may apply up to a second across a fresh purge before
// the watcher stops it (the saved 0 still makes its restart restore); a
// registry of the nodes' applied positions would let the purge wait for
// them. The restore over an old state keeps its history (a gap in the
// history of what the node missed). TestRetention* and
// TestClusterRetention check the purge, the restart behind it, the
// refusals and the run-time stop.
//
// # Sink events
//
// Every node evaluates every rule on every truck, so every node emits
// every alert transition of the stream's updates, with the same stable
// ID (package sink: a SHA-256 of kind, rule, truck, reason, since, ts).
// A receiver gets each once:
//
// Publishing. Each node's sinks keep their lane outboxes exactly as on a
// single node (the filter applied at emission, the outbox fsynced inside
// engine.Apply, so before the partition's applied sequence advances);
// in cluster mode each lane's outbox is read by a publisher instead of
// the destination (sink.Relay). Events.Publish stores the events in the
// stream <Stream>-events, one subject a sink's lane:
//
//	subject  <Stream>.ev.<base64url(sink)>.<lane 0-7>
//	headers  Nats-Msg-Id: <base64url(sink)>.<event id>   Fleetd-Emitted: Unix ns
//	data     the event's JSON, as the destination gets it
//
// Every node publishes the same IDs; JetStream stores the first and
// acknowledges the others as duplicates. A publisher sends runs in
// which each truck appears once, pipelined, and the next run only after
// the whole run is acknowledged (the lane retries what is not), so a
// node never has two events of a truck in flight: what it stores of a
// truck is in its emission order. First arrivals are then in order too:
// if every node stores X1 before X2, the first copy of X1 (the earliest
// of the nodes' X1) comes before the first copy of X2.
//
// The duplicate window is DefaultEventDuplicates, 2 minutes. It must
// cover the spread between the first and the last publication of an
// event by nodes that are current: they apply a message within the
// apply lag of each other (p99 well under 100 ms; up to natsFailoverBound,
// 15 s, across a NATS server's kill -9) and publish from their outboxes
// within milliseconds; a publish not acknowledged is retried with the
// sink's backoff (100 ms doubling), so a node cut off from NATS for less
// than about a minute still lands inside it. JetStream keeps the
// window's IDs in memory (about 100 bytes each): at 10,000 events a
// second, 2 minutes is 1.2M IDs, ~120 MB on each server, which is why it
// is not longer.
//
// Delivering. One node at a time delivers a sink's events: the holder
// of its lease, the key base64url(sink) in the bucket <Stream>-sinks
// (history 1, file storage, the stream's replicas):
//
//	{"node": "<holder's name, or empty once handed over>", "cursor": [seq × 8]}
//
// cursor[i] is the events stream sequence up to which lane i's events
// are delivered. The holder rewrites the key every leaseRefresh (1 s),
// as a compare-and-set on the revision it last wrote, with its lanes'
// cursors; after each successful write it purges each lane's subject
// up to its cursor, so the stream holds only what is not delivered. The
// other nodes read the key each second and take it over (a
// compare-and-set on the revision they saw) when the revision has not
// moved for leaseTTL (4 s) on their own clock, or at once when the
// holder handed it over (empty node: Close saves the cursors last). A
// holder that could not renew for leaseTTL/2 stops handing events out,
// before any other node can take over; a holder whose compare-and-set
// fails stops at once. No clocks are compared between nodes.
//
// The holder reads each lane with an ordered consumer starting after
// its cursor (gap-free and in order; the client library recreates it
// after a failure) and hands the events to the sink's lanes, which
// deliver them as on a single node (in order per lane, so per truck;
// retries, max_age, dead letters). So after a kill -9 of the holder the
// new one delivers again what was delivered after the last saved cursor
// (at most about a second of deliveries): TestClusterSink, 3 NATS
// servers and 3 nodes on a shared 2-core box, 6 runs: 3,000 events each
// once in steady state (3,950-4,870 events/s through one webhook, from
// the first post to the last delivery); after the kill -9 of the
// holder, every one of 9,000 events arrived 3.8-5.6 s after the kill,
// 16-677 of them a second time.
//
// At least once: a node that dies after applying an update but before
// publishing its events loses nothing, since every other node publishes
// the same IDs, and its own outbox (fsynced before the update counted as
// applied) is published when it restarts.
//
// Expiry is decided by each node's clock (a truck expires between TTL
// and TTL+TTL/16 after it fell silent, at a different moment on each
// node: often further apart than the window). Its events (truck.expired,
// and alert.resolved with reason "truck expired"; sink.RelayEvent.Local)
// are therefore published only by the node holding the sink's lease;
// the others skip them (stats skipped). A truck expiring on both sides
// of a takeover can reach the receiver twice.
//
// Limits, not built yet:
//
//   - A node that applies a message more than the window after the
//     others (a node restarted after a long stop reads its tail; one cut
//     off from NATS for minutes) publishes that tail's events after the
//     window: the receiver gets them again, with the same IDs. Skipping
//     them safely needs to know that another node applied the message
//     (a registry of the nodes' applied positions).
//   - Alert state is not persisted (package alert): a restarted node
//     fires again the alerts still firing, with a new since, so with
//     other IDs; the receiver gets an extra alert.fired (and, when the
//     truck leaves, an extra resolve), as after a single node's restart.
//   - A sink deleted and created again under the same name faster than
//     the configuration reaches every node: a slower node's delete
//     purges the new sink's first events from the stream.
//   - A sink whose receiver is down keeps its events in the stream (on
//     the NATS servers' disks, as many replicas as the stream) until
//     they are delivered or pass max_age, besides each node's outbox
//     until it has published them.
//
// # Read your writes
//
// Publish returns a Token: for each partition the write touched, the
// stream sequence of its message ("3:1042,7:1045"). Await blocks until
// every mark is applied on this node, at most Options.WaitMax (default
// 2 s), so a client can read its writes on any node; past the bound it
// fails with ErrNotReached (the API answers 503 with where the node is).
//
// # Concurrency
//
// Every exported method is safe for concurrent use. Publish calls run
// concurrently (the connection's asynchronous publisher carries them);
// one follower and one applier goroutine per partition; one goroutine
// looks at the stream each second (Stats' behind_messages, and the
// followers' stall check), one saves positions. Events (sink events) has
// its own connection, a goroutine per followed sink (its lease) and,
// while it delivers, one per lane (the lane's consumer). Close stops
// the consumers and appliers, saves the positions and closes the
// connection; the engine is closed after it by the caller.
package cluster

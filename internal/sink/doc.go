// Package sink delivers fleetd's alert transitions and truck expiries to
// systems outside it: webhooks (HTTP POST with an HMAC-SHA256
// signature), NATS subjects (JetStream with acknowledgement when a
// stream holds the subject) and MQTT topics (QoS 1), each through its own
// durable outbox (package outbox) read by eight lanes, so that no event
// is lost and no receiver slows ingest.
//
// # Configuration
//
// A sink is configured by name (1–64 of A–Z a–z 0–9 . _ -, at most
// MaxSinks) with PUT /v1/sinks/{name}, shown by GET /v1/sinks/{name}
// (with its counters and dead letters) and GET /v1/sinks, removed by
// DELETE (its outbox too). The body (ParseConfig; unknown fields refused):
//
//	{"type": "webhook", "url": "https://ops.example/hook", "secret": "…", "timeout": "5s",
//	 "max_age": "24h", "max_outbox_bytes": 1073741824,
//	 "filter": {"rules": ["speeding"], "severities": ["critical"], "kinds": ["alert.fired"]}}
//	{"type": "nats", "url": "nats://127.0.0.1:4222", "subject": "fleet.alerts"}
//	{"type": "mqtt", "url": "tcp://broker:1883", "topic": "fleet/alerts"}
//
// An empty filter list passes everything; truck.expired events have no
// rule or severity, so a rules or severities filter passes them only when
// kinds names truck.expired. The secret is never shown back
// ("secret_set": true) and the URL's password is redacted.
//
// The configuration is kept in DIR/sinks.json (DIR = DATA/sinks),
// rewritten whole on each change (tmp, fsync, rename, directory fsync:
// sinks are few, so O(configuration) per change is a few KiB), and
// durable when the PUT or DELETE answers. Each sink has one outbox, in
// DIR/<name>/outbox, read by its lanes (see Delivery; its cursor file
// holds each lane's cursor), and its dead-letter list in
// DIR/<name>/dead.json. Older layouts are read when the sink starts: the
// single outbox of the fleetd before lanes was in DIR/<name>/outbox in
// the same format, with one cursor, which every lane starts from (read
// in place); the fleetd that gave each lane its own outbox
// (DIR/<name>/lanes/0 … 7) has them moved into the sink's outbox, each
// lane's in order with its emission times, made durable, then removed (a
// crash half way delivers some events twice, with the same IDs; a
// fleetd older than this one cannot read the sink's outbox of eight
// cursors back: it delivers everything in it again). Replacing a sink
// keeps its outbox: what waits goes to the new destination. Events
// emitted while a sink is being replaced (the old one stopped, the new
// one not yet started: its outbox is reopened) are not queued for it.
//
// # Events
//
// One JSON object, the same bytes for every sink (encoding/json's
// encoding, written without reflection):
//
//	{"id":"9f2c…(32 hex)","kind":"alert.fired","truck":"truck-42","rule":"speeding",
//	 "severity":"warning","ts":1764000000,"since":1763999970,"lat":40.7128,"lon":-74.006}
//	{"id":"…","kind":"alert.resolved",…,"reason":"truck expired"}
//	{"id":"…","kind":"zone.entered","truck":"truck-42","rule":"in-yard","zone":"yard-3",…}
//	{"id":"…","kind":"truck.expired","truck":"truck-42","ts":1764000000,"lat":…,"lon":…}
//
// kind is alert.fired, alert.resolved, truck.expired, zone.entered or
// zone.left. Entering and leaving a zone are a rule whose whole
// condition is inside("zone") (alert.Alert.Zone; written with spaces or
// not, nothing else in it) firing and resolving: the firing is
// zone.entered, the resolve caused by an update zone.left, both with
// "zone"; a resolve for another reason (truck deleted or expired, rule
// deleted or replaced: "reason" says which) stays alert.resolved, since
// the truck did not leave. A "for" on the rule delays zone.entered until
// the truck has been inside that long. Other rules that mention zones
// (near(), inside() && speed > 5) stay alert.fired/alert.resolved: they
// are not a crossing of the boundary. The kinds filter names kinds
// exactly: alert.fired does not pass zone.entered. id is stable: the first 128 bits of a SHA-256 over (kind,
// rule, truck, reason, since, ts), so a transition has the same ID
// however often it is delivered, and receivers deduplicate by it. The
// event is kept in the outbox as these bytes, so a redelivery after a
// crash carries the same ID and body.
//
// Headers: webhook: X-Fleetd-Event-Id, X-Fleetd-Event-Kind, X-Fleetd-Seq
// (the sequence number in the sink's outbox: increasing per truck
// and sink, not dense per truck), X-Fleetd-Signature: "sha256=" + hex HMAC-SHA256(secret, body)
// when a secret is set; NATS: Nats-Msg-Id (the id: a JetStream stream's
// duplicate window drops redeliveries), Fleetd-Event-Kind, Fleetd-Seq;
// MQTT 3.1.1 has no headers: the id is in the body.
//
// # Delivery
//
// Emit (alert.Options.Emit) and Removed (fleet.Observer) encode the
// event once and Append it to the outbox of each sink whose filter
// passes it (keyed by its truck): a copy into memory, never I/O, never a wait for a receiver
// (package outbox: at most MaxStaged bytes wait for its writer, which
// fsyncs before anything is delivered; beyond its disk bound it sheds,
// counted as "shed" and logged once a minute).
//
// An acknowledged update's events are durable: Sync
// (alert.Options.Sync, called by the alert evaluator once after an
// Applied that emitted, inside engine.Apply, so before any front door —
// HTTP, OsmAnd, Teltonika, MQTT, RESP — answers) waits until each
// sink's outbox has fsynced what was appended so far. It waits only for
// the local disk, never for a receiver; concurrent batches share the
// writer's fsync (group commit: one fsync a sink, whichever lanes the
// events fall in); a batch that emitted nothing does not call it, and
// with no sink it is one atomic load. A failing disk makes
// it return at once (logged, counted in the outbox's write errors;
// the events stay in memory and are retried). Not covered: events of
// an expiry (no one is answered), and cluster mode (package cluster),
// where an update is answered once the stream holds it, before a node
// applies it: its events become durable when that node applies it.
//
// A sink has 8 lanes, each a reader of the sink's outbox (outbox.Lane)
// with its own read position, window and cursor; a truck's events are
// lane truckKey % 8's (FNV-1a of the truck ID: stable across restarts,
// since the key is kept on disk). Each lane's goroutine reads its events
// in order (skipping the other lanes'): webhook one event a request; NATS up to 256 events a batch
// (one flush or the stream's acknowledgements per batch); MQTT up to 64
// (each PUBACK awaited). A lane delivers its events in order and does not move
// past one until it is acknowledged (2xx, flush, PubAck, PUBACK) or
// dropped, so events of one truck reach a receiver in order; when a
// batch fails part way, the unacknowledged rest is sent again, so a
// receiver may see an event again after a later one of the same batch
// (first arrivals stay in order; deduplicate by id). A failed attempt is
// retried after 100 ms, doubling up to 30 s (±20% jitter), until the
// event is older than max_age (default 24h); then it is counted as
// dropped, logged (the first ten, then every thousandth) and kept in the
// dead-letter list (the last MaxDeadLetters, saved at most once a
// second).
//
// A lane that waits (a receiver refusing one truck's event for good,
// until max_age) holds back only its own trucks, an eighth of the fleet,
// however long it waits: the other lanes read and deliver on
// (TestStuckLaneHoldsOnlyItsTrucks). Each lane has an eighth of the
// window of events read and not yet done (512 records, at least one
// batch), so a sink holds at most 4096 undelivered events in memory
// however many wait on disk, plus what waits for the outbox's writer
// (MaxStaged, 4 MiB, while the disk lags behind a burst; let go once the
// burst is over) and a read buffer a lane (256 KiB, let go while the lane
// backs off). What a waiting lane does cost the others: the
// outbox deletes a segment only once every lane's cursor is past it, so
// the waiting lane keeps on disk everything emitted since its oldest
// undone event. So that this never fills max_outbox_bytes and sheds
// every lane's new events, a lane that alone pins the outbox (over half
// of max_outbox_bytes used, only this lane failing, every other lane
// done with the oldest segment: outbox.Lane.Pins) gives its refused
// head up at once, before max_age, to the dead letters (counted as
// dropped, its error saying why), and so on for each refused event while
// the pin lasts; a backoff looks every 250 ms whether it has come to
// that (TestStuckLaneDoesNotFillTheOutbox: 8,000 events through a 1 MiB
// outbox, one truck refused: none shed; without it 349 shed). With a
// dead receiver every lane fails, nothing is given up early, and the
// outbox sheds new events once full, as documented. That sharing
// is the price of one fsync a group commit: with an outbox a lane (the
// layout before), a batch whose events fell in k lanes cost k fsyncs,
// each a device cache flush, and the eight files fsynced in parallel
// slowed the WAL's fsyncs too (an ingest with a dead receiver ran at
// 55-75% of the rate without a sink). An outbox a lane without the
// fsyncs (a delayed, demand-driven fsync) did not help measurably: it is
// the number of fsynced files a batch that counts.
//
// Delivery is at least once: an event is marked done only after its
// acknowledgement, the lanes' cursors are checkpointed once a second, and
// after a crash each lane delivers again everything of its own after its
// last checkpointed cursor.
//
// # Cluster mode
//
// With Options.Relay (package cluster's Events, wired by package server
// when fleetd runs with --nats) a sink is the same outbox, lanes and
// counters with one seam: each lane has two halves.
//
//	every node:       Emit → outbox (fsynced, as above) → lane → publisher → Relay.Publish
//	                  (the cluster's events stream, deduplicated by event id)
//	the holder only:  Relay.Follow's lane (the stream, in order) → the destination
//
// The publishing half reads its lane of the outbox as a destination would (batches
// of up to 64, retried with the same backoff, max_age, dead letters);
// the delivering half is the lane loop of a single node reading the
// Follower instead of the outbox: its Seq (X-Fleetd-Seq, Fleetd-Seq) is
// the event's sequence in the events stream, its Time the emission time
// on the node that published it first. A Follower hands events out only
// on the node that holds the sink's lease, so one node delivers at a
// time and another takes over when it dies (package cluster, Sink
// events, says how, and what a receiver may see twice). Expiry events
// are decided by each node's clock: RelayEvent.Local, published only by
// the delivering node. Sync, filters and the outbox bounds are
// unchanged. Stats: delivered, retried, failed and the latencies count
// this node's deliveries; outbox_depth and outbox_bytes its events not
// yet published; "cluster" adds delivering (this node holds the lease),
// published, publish_failed and stream_pending (events in the stream not
// yet handed out, on the delivering node). DELETE also removes the
// sink's events and lease from the cluster (Relay.Remove). Without a
// Relay (a single node) nothing of this runs.
//
// # Counters
//
// Stats (GET /v1/sinks, /v1/stats "sinks", /metrics fleetd_sink_*{sink,
// type}): delivered, retried (attempts after a failure), failed
// (attempts), dropped (past max_age), shed (outbox full), outbox depth
// and bytes, the age of the oldest undelivered event, emitted →
// acknowledged latency p50/p99, health ("failing" while a lane's last
// attempt failed, "backlog" when the oldest waits over a minute, else "ok") and
// the last error.
//
// # Concurrency
//
// Emit and Removed run on the engine's goroutines and read the running
// sinks through an atomic pointer (no lock). Put and Delete are
// serialised by a mutex, held while a replaced sink stops. Each sink runs
// a goroutine a lane and a housekeeping goroutine; Close
// stops them (what was not delivered stays in the outboxes).
package sink

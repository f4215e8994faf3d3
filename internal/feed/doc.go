// Package feed pushes live truck positions, expirations and alerts to
// dashboards over Server-Sent Events (Hub.ServeSSE) and WebSocket
// (Hub.ServeWS). Its one promise is boundedness: whatever clients do —
// read slowly, stop reading, vanish without closing — memory per
// subscriber has a fixed ceiling, no goroutine waits on a client for
// longer than Options.Stall, and publishers (the ingest path) never wait
// on a client at all.
//
// A Hub is a fleet.Observer: the engine hands it every applied batch
// (Applied publishes the updates that changed the store) and every expiry
// (Removed); server only wires it. Alerts come from package alert
// (PublishAlert takes an alert.Alert, the one transition type).
//
// # Events
//
// Each event is one JSON object (lat/lon in degrees with at most 7
// decimals, speed in km/h with one decimal, heading in degrees, ts in Unix
// seconds):
//
//	{"type":"position","id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}
//	{"type":"expired","id":"truck-0000042","ts":1764000300}
//	{"type":"alert","rule":"speeding","id":"truck-0000042","state":"firing","ts":1764000000,"lat":40.7128,"lon":-74.006}
//	{"type":"lag","dropped":1234}
//
// SSE sends each as "data: {json}\n\n" and ": ping\n\n" comments when idle
// (Options.Heartbeat). Over HTTP/1.1 the body is not chunked and ends when
// the connection closes (Transfer-Encoding: identity, net/http's setup for
// SSE), so that a batch over 4 KiB is one write syscall rather than
// three. WebSocket sends text messages that are JSON arrays of one or more
// events (a batch of at most about 17 KiB, within the 32 KiB default read
// limit of common client libraries), and ping frames when idle.
//
// # Subscription parameters
//
//	bbox=minLon,minLat,maxLon,maxLat   degrees, edges included; minLon > maxLon crosses the antimeridian
//	ids=a,b,c                          at most MaxIDs truck IDs (fleet.ValidID syntax)
//	types=position,expired,alert,lag   default all
//	max_hz=x                           0 < x ≤ 1000: at most x position events per truck per second
//	                                   (for a wide subscriber, at most 10; see Conflation)
//
// Filters combine with AND. Positions and alerts pass bbox by their
// coordinates, expired events by the truck's last position (the event
// itself carries none), so a client hears of the expiry of a truck whose
// last position was in its box, and not of the rest of the fleet's. ids
// applies to all three. A bad
// parameter answers 400 {"error":"…"}; past Options.MaxSubscribers the
// answer is 503 {"error":"too many subscribers (limit N)"}.
//
// max_hz is leading-edge per truck: a position is sent if the truck's last
// sent one is at least ceil(1000/x) ms old on the hub's monotonic clock,
// else skipped (Stats.Throttled). The last-sent times live in a fixed
// table of 2048 sets × 4 ways (64 KiB) keyed by a hash of the ID; when
// more than 4 trucks of a subscriber share a set, the one sent longest ago
// is forgotten and its next position goes through early. Collisions can
// thus over-send slightly, never under-send.
//
// # Conflation: wide subscribers
//
// A subscriber is wide when it names no ids and has no bbox or one over
// more than 1024 1° cells (a continent), and wants positions. Copying
// every update to every wide subscriber would make each one cost the
// ingest path a share of the whole fleet's rate, so wide subscribers are
// conflated instead: they get each truck's newest position at most
// max_hz times a second (Options.WideHz, default 1, when they give no
// max_hz; at most 10: a wide subscriber asking for more gets 10).
//
//   - Each distinct frame period (1/max_hz rounded up to a multiple of
//     100 ms) is a class. A publish adds its batch once to each class's
//     builder, under the class's mutex, keeping only the newest position
//     of each truck (keyed by a 64-bit hash of the ID; two IDs colliding
//     in one period would lose one, with odds of about n²/2⁶⁵): a map
//     lookup and a 24-byte record, not encoded (a truck updated many
//     times in a period would be encoded each time for one use): the
//     ingest path does O(classes) work per update whatever the number of
//     wide subscribers.
//   - Every period a loop (one goroutine, running while a wide
//     subscriber exists) seals the builder into an immutable frame (the
//     swap under the mutex, the JSON encoding of its positions after it)
//     and wakes the class's subscribers; each writes the frame out from the
//     shared bytes, filtering by its bbox if it has one. Without a bbox it
//     writes the frame's shared framing (SSE records, or WebSocket
//     messages), built once by the first that needs it, as it is: no copy
//     per subscriber. So an extra wide subscriber costs the bytes written
//     to its socket.
//   - Semantics: you may miss intermediate positions, never the newest —
//     as long as you keep up. A truck that did not move in a period is not
//     in its frame. A subscriber still writing a frame when more are
//     sealed skips to the newest and is told {"type":"lag","dropped":n},
//     n being the records of the frames it skipped; a frame full at
//     Options.FrameTrucks (default 262,144) refuses further trucks until
//     the next period, counted in Stats.FrameTrucksDropped and reported
//     as lag too. After a lag, re-read GET /v1/within if exact state
//     matters. Stall applies to frame writes as to any.
//   - Order: a frame is written before the control events (expired,
//     alert) taken in the same pass, and an expiry removes the truck from
//     the frame being built, so a frame does not bring back a truck after
//     its expiry. Positions are not otherwise ordered with alerts.
//   - Bandwidth: the bytes of frames written to all wide subscribers
//     together are capped at Options.WideBytesPerSec (default 32 MiB/s
//     per core, GOMAXPROCS), because they are what wide subscribers cost:
//     100 whole-fleet subscribers of a 1M-truck fleet posting 400k
//     updates/s want 100 frames of 262,144 trucks (28 MB) a second, 2.8
//     GB/s, and on a 2-core box reading 1.1 GB/s of them held ingest to
//     24% of its rate without subscribers (measured with
//     BenchmarkServeIngestWide; the server spent half its CPU in write
//     syscalls). Each frame write (64 KiB for SSE, one WebSocket message)
//     reserves its bytes' share of the rate after every earlier
//     reservation (GCRA, 100 ms of burst) and waits its turn, so
//     subscribers are served in the order they asked. And a class whose
//     frame, written to each of its subscribers, takes longer than its
//     period at its share of the cap (the cap over the classes) seals its
//     next frame only when that time has passed: under the cap frames
//     come less often and carry more trucks' newest positions, rather
//     than being sealed and skipped, so the subscribers write the same
//     frame and no more are pinned. Negative WideBytesPerSec lifts the
//     cap. Stats.FrameBytes and FramePaceWaits count frame bytes and the
//     writes that waited.
//   - Narrow subscribers (ids, or a bbox of at most 1024 cells) keep
//     per-update delivery (with max_hz as below). Options.WideHz < 0
//     turns conflation off: every subscriber gets per-update delivery.
//
// Memory: a wide subscriber has no max_hz table and its position ring
// stays at its first 64 entries (6 KiB). Each class holds its builder
// (up to FrameTrucks records of 24 B, their IDs and a map entry, and a
// spare of the records and IDs for the next period) and the newest frame
// (records of 14 B plus their JSON, about 94 B each) with its shared framings,
// plus any older frame a slow subscriber is still writing: about 100 MiB
// per class at the default FrameTrucks with a fleet that fills it, shared
// by all its subscribers. A subscriber blocked in a write keeps the frame
// it is writing alive until the write completes or times out (Stall), so
// at most min(wide subscribers, Stall/period + 1) older frames are
// pinned; measured with 100 whole-fleet subscribers that never read, on
// a 1M-truck fleet posting about 300k updates/s: +130 MB of Go heap,
// shared, and 0.04 MiB of RSS per subscriber (BenchmarkServeIngestWideIdle).
//
// # Memory bounds (per subscriber, defaults in brackets)
//
// Buffer is rounded up to a power of two, B [4096].
//
//	position ring   ≤ B × 2 B (lengths) + max(B × 94, 472) B (JSON)  [384 KiB]
//	control ring    ≤ max(16, B/16) × 216 B (ctlEntry)              [ 54 KiB]
//	max_hz table    2048 × 4 × 8 B, only with max_hz               [ 64 KiB]
//	take buffer     32 KiB + 256 × 2 B + 32 × 216 B                 [ 39 KiB]
//	batch buffer    ≤ 64 KiB + one event (≤ 1.3 KiB)
//	filter          ≤ MaxIDs IDs (here and in the hub's ID index), and
//	                ≤ 1024 grid-cell entries of 4 B in the routing snapshot
//	goroutines      SSE: the handler's; WebSocket: the handler's and its
//	                read loop
//
// A position is queued as its encoded JSON after the constant
// {"type":"position","id": (the payload, at most 472 bytes; 94 for an ID
// like truck-0000042 with 7-decimal coordinates), so the ring holds B
// events of up to 94 bytes, fewer when longer: it is full at B events or
// at its byte limit, whichever comes first. Rings start at 64 positions
// (6 KiB) and 16 control entries and double only when full, so a
// subscriber that keeps up holds a few KiB of ring. With the defaults the
// ceiling is about 0.53 MiB per subscriber (0.6 with max_hz; without ids,
// plus net/http's and the WebSocket library's per-connection buffers), so
// 1000 subscribers ≈ 530 MiB; lower Buffer to lower it. Rings are pointer-free (IDs up to
// MaxIDLen bytes inline in control entries), so a ring is one or two
// allocations the garbage collector does not scan. Take and batch buffers
// are pooled in the hub between connections. The hub itself holds one
// routing snapshot (a cell table over the rectangle of cells that holds
// every small bbox — about 1,500 entries of 4 B for boxes over the
// contiguous US, at most 64,801 — plus per-subscriber entries) and pooled
// publisher scratch proportional to the largest batch (its encoded
// positions, about 100 B an update, and its matches).
//
// # Drop and stall policy
//
// A publisher never waits: when a subscriber's position ring is full (B
// events, or its bytes), the oldest pending positions are dropped to make room (the control ring drops
// its oldest the same way). Dropping the oldest means a truck's newest
// position is always the one kept: the client ends with every truck's
// latest state even when it missed intermediate ones. Drops are counted
// (Stats.Dropped) and the subscriber's next delivery starts with
// {"type":"lag","dropped":n}, n being the events lost since its previous
// delivery; a client that gets one should re-read what it shows
// (GET /v1/within) if exact state matters.
//
// The consumer works in passes: take everything pending, write it, flush,
// sleep. A subscriber is behind from a drop that happens during a pass
// until a whole pass goes by without one: for as long as it loses events
// because its client is slow. (Drops while the consumer sleeps come from a
// single burst larger than the ring; they are reported as lag but are no
// sign of a slow client.) One that stays behind for Stall, or whose single
// write (an SSE write or flush under
// http.ResponseController.SetWriteDeadline, a WebSocket message or ping
// under a context timeout) does not complete within Stall, is disconnected
// and counted in Stats.StallDisconnects. A client that closes is noticed
// through the request context (SSE) or the read loop (WebSocket; its slot
// is freed before the close handshake, which may wait for the client); one that
// vanishes silently is noticed when a write (events, or the WebSocket
// ping) times out, or for an idle SSE stream when the kernel gives up on
// the connection (TCP retransmission timeout).
//
// Writes are batched: after a pass the consumer sleeps at least
// FlushInterval (50 ms) before the next, unless half its ring fills first,
// so a client gets at most about 20 writes a second and events wait at
// most about FlushInterval (sparse events after a quiet spell go out at
// once).
//
// # Routing (what a publish costs)
//
// Subscribers' filters are indexed in an immutable snapshot, rebuilt on
// subscribe/unsubscribe and swapped atomically: a 1°×1° grid maps each cell
// to the subscribers whose bbox touches it (bboxes over more than 1024
// cells, and subscribers without bbox, go to an "everywhere" list);
// subscribers with ids= are found through a map by ID. An update visits
// only its cell's list, the everywhere list and its ID's entry; so do an
// alert and an expiry, at their position. Matches are
// grouped per subscriber (a counting sort in pooled scratch), so each
// matched subscriber's lock is taken once per PublishPositions call. With
// no subscriber, a publish is one atomic load. A subscribe or unsubscribe
// rebuilds the snapshot: O(subscribers + their cells + the cell table),
// about 0.1 ms with 1000 subscribers on 1% boxes of the US, plus a copy of
// the ID index when ids= changed it.
//
// Each matched update is encoded to JSON once per PublishPositions call,
// in the publisher's scratch, whatever the number of subscribers it
// reaches; queueing it copies those bytes, and delivery frames them. With
// 1,000 subscribers on 1% boxes, an update reaches about 10, so encoding
// per subscriber at delivery (as the feed first did) cost ten encodings.
// Expired and alert events, rare, are queued as fixed entries and encoded
// at delivery.
//
// # Concurrency contract
//
//   - PublishPositions, PublishExpired and PublishAlert may be called from
//     any number of goroutines at once, and never block on clients: they
//     take only per-subscriber mutexes, each held (by a publisher or by
//     the subscriber's consumer) only to copy events in or out — at most
//     a batch's matches, or 256 positions in 32 KiB and 32 control entries
//     — never across I/O. The
//     caller keeps ownership of its slices.
//   - Per subscriber, the events of one call are queued in call order, and
//     position and control events keep their relative order (a control
//     entry records the position sequence number it follows). Calls made
//     concurrently interleave in the order they reach the subscriber, so
//     per-truck order holds when the caller does not publish the same
//     truck from two goroutines at once; a client can compare ts.
//   - ServeSSE and ServeWS each serve one subscriber on the calling
//     goroutine and return when the client leaves, stalls, or the hub
//     closes. Close disconnects all and waits until every handler is done
//     with its subscriber; later subscriptions get 503 and later publishes
//     do nothing.
//   - Stats may be called at any time; it locks each subscriber briefly.
package feed

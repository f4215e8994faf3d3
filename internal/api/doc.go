// Package api is fleetd's HTTP interface (contract v1): it decodes position
// bodies with package ingest, hands the updates to the engine, and answers
// queries from the engine's store. It holds no engine logic: every write
// goes through engine.Apply or engine.Delete, every read through the store's
// query methods.
//
// # Routes
//
//	GET    /healthz            200 {"status":"ok"} once engine.Ready, else 503 {"status":"starting"}
//	POST   /v1/positions       NDJSON (application/x-ndjson, or no Content-Type) or a
//	                           JSON array (application/json) of updates; see below
//	GET    /v1/trucks/{id}     {"id","lat","lon","ts","speed","heading"[,attributes]}; 404 unknown, 400 bad id
//	                           (attributes: those the truck's latest position carried, in package fleet's
//	                           order and units: alt, ignition, motion, odometer, ext_voltage,
//	                           battery_voltage, battery_level, accuracy, hdop, satellites)
//	DELETE /v1/trucks/{id}     204; 404 unknown, 400 bad id
//	GET    /v1/nearby          ?lat=&lon=[&k=10][&radius_m=] → {"results":[hit, …]}, nearest first
//	GET    /v1/within          ?bbox=minLon,minLat,maxLon,maxLat or ?lat=&lon=&radius_m=,
//	                           [&limit=] → {"results":[hit, …],"count":n}, or NDJSON rows
//	                           when the Accept header names application/x-ndjson
//	GET    /v1/stats           engine, store and runtime figures (see statsResponse), history's
//	                           and, when any runs, the device gateways' counters; "sinks" per
//	                           alert sink when any is configured (Options.Sinks)
//	PUT    /v1/zones/{name}    GeoJSON Polygon/MultiPolygon; GET, DELETE (409 while a rule uses it),
//	GET    /v1/zones           and the list (alerts.go)
//	PUT    /v1/rules/{name}    {"when","for","severity"}; GET [?disasm=1], DELETE; GET /v1/rules
//	PUT    /v1/rules           {"rules":[{"name","when","for","severity"}, …]}: many at once, all or none
//	GET    /v1/alerts          {"count":n,"alerts":[…]}: what fires now [?rule= &id= &limit=] (alerts.go)
//	GET    /v1/trucks/{id}/history  ?from=&to=[&limit=][&format=json|ndjson|geojson[&simplify_m=]]
//	                           the truck's points in ts order (history.go; see History below)
//	GET    /v1/trucks/{id}/trips    ?from=&to=[&stop_radius_m=100][&stop_min_s=300] → trips and stops
//	GET    /v1/history/within  ?bbox= or ?lat=&lon=&radius_m=, &from=&to=[&limit=] → who was inside
//	GET    /v1/history/export  ?from=&to=[&format=ndjson|parquet] → every point, streamed
//	…      Options.Routes      more routes behind the same middleware: the live feed
//	                           (/v1/stream, /v1/ws), /v1/density and the alert sinks
//	                           (PUT/GET/DELETE /v1/sinks/{name}, GET /v1/sinks: package sink;
//	                           event kinds alert.fired, alert.resolved, truck.expired,
//	                           zone.entered, zone.left), mounted by package server
//	GET    /metrics            Prometheus text format
//	GET    /debug/pprof/…      the standard net/http/pprof handlers
//
// Every response is JSON (Content-Type: application/json) except /metrics,
// /debug/pprof/, 204s and streamed NDJSON. An error is {"error":"<message>"}
// with a 4xx status, 413 for a body over the limit, 503 when the engine
// cannot accept writes (durability failure or shutdown), 507 when the fleet
// is at its truck limit, 500 only for a handler panic (a bug: logged with its
// stack, the server keeps running). Unknown paths answer 404 and a known
// path with the wrong method 405 with an Allow header, both as JSON.
//
// A hit is
//
//	{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"distance_m":12.345,"ts":1764000000,"speed":52.5,"heading":90}
//
// lat/lon in degrees (at most 7 decimals, as stored), speed in km/h (one
// decimal), heading in whole degrees, ts in Unix seconds, distance_m in
// metres rounded to the millimetre (haversine on a sphere of radius
// geo.EarthRadiusM). distance_m is present in nearby hits and in within
// hits of a circle query, absent for a bbox query.
//
// # POST /v1/positions
//
// The body is read (http.MaxBytesReader, Options.MaxBody) by a pooled
// ingest.Batch: an NDJSON body 64 KiB at a time, each piece's complete
// lines decoded and converted into fleet.Updates whose IDs are copied into
// a block arena, so the body is never held whole; a JSON array is read
// whole.
// Once the whole body is read, the updates are applied with one
// engine.Apply call (a body that fails or is too large applies nothing):
//
//	200 {"accepted":A,"rejected":R,"stale":S,"errors":[{"line":7,"error":"…"}],"unknown_fields":["…"]}
//
// errors lists the first ingest.MaxErrors rejections, unknown_fields the
// unknown field names seen (both always present, possibly empty). A 200
// means every accepted update is durable and was applied by the engine;
// stale counts the accepted ones that did not move their truck because a
// newer position (by ts) was stored: late data is data, kept in the log,
// and it keeps the truck alive (below), but latest wins on the map.
//
// # Cluster mode
//
// With Options.Cluster (fleetd serve --nats, package cluster) the decoded
// updates are published to the cluster's stream instead of applied here,
// and every node applies them from it:
//
//	200 {"accepted":A,"token":"3:1042,7:1045","rejected":R,"errors":[…],"unknown_fields":[…]}
//	    with the header Fleetd-Token: 3:1042,7:1045
//
// A 200 means the stream has acknowledged every update (stored on a
// quorum of its replicas); there is no "stale" (only applying nodes know
// it; /v1/stats counts it); 503 when the stream did not acknowledge in
// time (a retry of the same body is deduplicated). DELETE /v1/trucks/{id}
// publishes the delete (204 with Fleetd-Token; 404 if this node does not
// hold the truck). Any GET or HEAD with a Fleetd-Token header or an
// ?after=TOKEN parameter waits until this node has applied the token's
// writes: at most 2 s, then 503 {"error":"cluster: this node has not
// applied the token's writes yet: …"} with Retry-After; a malformed token
// is 400. Tokens of several writes may be joined with commas. /v1/stats
// has "cluster": the node's applied positions, how far behind the stream
// it is, the apply lag, publish and apply counters and the stream's state.
// Configuration writes (PUT/DELETE of zones, rules and sinks) answer as
// on a single node, once the cluster's key-value bucket has them, with
// Fleetd-Config-Revision: N; any request with that header waits (at most
// 2 s, then 503) until this node has applied revision N (package cluster,
// "Configuration").
//
// # Device clocks
//
// Devices send points late (buffered in dead zones), with clocks reset to
// 1980, in milliseconds, or ahead of true time. The contract:
//
//   - A ts in the past is valid however old (package ingest's range: from
//     1970-01-01T00:00:01Z). It never moves a truck whose stored ts is
//     newer, and is counted as stale.
//
//   - A ts more than Options.MaxClockSkew (fleetd serve --max-clock-skew,
//     default 5m) ahead of the server's clock is a rejected line: "ts
//     2027-01-06T10:00:00Z is 400 days ahead of the server clock (max
//     5m0s): is the device's clock set?". Accepting it would freeze the
//     truck until that time (latest wins by ts). Such rejections are
//     counted (rejected_future_total, fleetd_ingest_ts_total{kind="future"})
//     and logged at most once a minute with an example.
//
//   - A numeric ts from 1e11 to 1e14 can only be milliseconds and is
//     divided by 1000 (ts_milliseconds_total); 0 (a clock that is not set)
//     and larger values are rejected with a reason saying so. RFC 3339
//     strings are accepted. An absent ts is the server's clock.
//
//   - The TTL (engine.Options.TTL, --ttl) counts from when the server last
//     accepted an update of the truck, stale ones included, never from its
//     ts: a truck is never expired sooner than the TTL after it was last
//     heard from, and at most TTL/16 later. Expiries are counted
//     (expired_total, fleetd_trucks_expired_total) and summarised in the
//     log at most once a minute.
//
//   - A body over the limit: 413, nothing applied.
//
//   - A Content-Type other than application/x-ndjson or application/json
//     (parameters ignored), or any Content-Encoding but identity: 415. No
//     Content-Type at all is 415 too (any web page can make a browser
//     POST such a body cross-site without a preflight; so can text/plain
//     and the form types, which every POST route refuses, auth.FormBody).
//
//   - engine.Apply fails: 503 {"error": …}; nothing of the request is
//     acknowledged. A request of more than engine.ApplyChunk updates is
//     logged and applied in pieces of that many, so that its memory
//     downstream (history's buffer) is bounded: when a piece fails, the
//     pieces before it are applied and durable, and the error says how
//     many updates that is. Resending the whole request is safe (a resent
//     update is stale for the latest position and a duplicate history
//     drops); a request of at most ApplyChunk updates is applied whole or
//     not at all.
//
//   - The store refuses new trucks because it is at its truck limit
//     (store.Result.Refused > 0): the store cannot say which lines those
//     were, so the answer is 507
//     {"error":"fleet is at its truck limit: N new trucks refused; updates of known trucks were applied","accepted":A-N,"rejected":R,"refused":N,"errors":[…],"unknown_fields":[…]}
//     where accepted counts the updates that were applied.
//
// Malformed input of any kind (bad bytes, NaN, huge exponents, deep
// nesting, invalid UTF-8, a truncated last line) is a rejected line, never
// a 5xx: the decoder's own contract (package ingest) guarantees it, and
// FuzzPositions checks it through the handler.
//
// # Streaming
//
// /v1/within never collects its results: it writes each hit, as the
// store's Within iterator yields it, through a pooled 32 KiB bufio.Writer
// straight into the ResponseWriter, flushing to the client at least every
// flushEvery rows. Memory per request is constant (the writer, one row of
// scratch and the store's bounded run of hits) however many trucks match.
// In the JSON form count comes after the results, since it is known only
// then: {"results":[…],"count":n}. With Accept: application/x-ndjson each
// hit is one line and there is no count. count is the number of results in
// the response (at most limit). A client that goes away stops the scan.
//
// # History
//
// With history on (the default with a data directory; package history),
// every accepted update is kept, late and stale ones included, exact
// resends once. Times (from, to) are Unix seconds or RFC 3339, inclusive;
// to defaults to now and from to 24 h before to (1 h for history/within);
// from after to is a 400. An unknown truck has an empty history (trucks
// expire, their history stays until the retention). Without history every
// route below answers 404 {"error":"history is off …"}.
//
// GET /v1/trucks/{id}/history streams, in constant memory, a walk of the
// truck's points one hour partition at a time:
//
//	{"id":"t1","from":F,"to":T,"points":[{"ts","lat","lon","speed","heading"[,attributes]}, …],
//	 "count":n,"truncated":false,"incomplete":false}
//
// at most limit points (default 100,000, at most 10,000,000; truncated says
// more were there). format=ndjson, or Accept: application/x-ndjson, gives
// one point per line. format=geojson answers application/geo+json, a
// Feature whose geometry is a LineString of [lon, lat] (a Point for one
// point, null for none) simplified with Douglas–Peucker so that no dropped
// point is more than simplify_m metres (default 0: every point) from the
// line, and whose properties hold id, from, to, points (before
// simplification), simplify_m and times (the kept points' ts).
//
// GET /v1/trucks/{id}/trips splits the same points (package trip): a stop
// is the truck staying within stop_radius_m (default 100, at most 10,000) of
// where it stopped for at least stop_min_s (default 300), gaps in reporting
// included; trips are what lies between stops.
//
//	{"id","from","to","stop_radius_m","stop_min_s",
//	 "trips":[{"start_ts","end_ts","start_lat","start_lon","end_lat","end_lon","distance_m","duration_s","max_speed"}],
//	 "stops":[{"start_ts","end_ts","lat","lon","duration_s"}],"truncated":false,"incomplete":false}
//
// GET /v1/history/within tests every stored point of the interval against
// the box or circle (exact: no false positives or negatives) and answers
// the trucks with at least one point inside, sorted by ID:
//
//	{"from","to","results":[{"id","first_ts","last_ts","points"}],"count":n,"incomplete":false}
//
// (count: all that matched; results: at most limit, default 10,000.)
//
// GET /v1/history/export writes history's buffer first (so that every
// update accepted before the request is in it), then streams every point of
// the interval, hour by hour and truck by truck: NDJSON lines
// {"id","ts","lat","lon","speed","heading"[,attributes]}, or with format=parquet
// one Parquet file (ExportRow is its schema; written by parquet-go in row
// groups of 128Ki rows, so memory stays bounded) that DuckDB, Spark and
// pandas read directly.
//
// "incomplete": true means a damaged history file (a checksum failed) left
// points out of the answer; the file is logged and counted in /v1/stats
// (history.corrupt_runs) until `fleetd repair` quarantines it. Streamed
// answers, whose body is written before the end is known, carry the same
// flag in the HTTP trailer Fleetd-Incomplete: true|false.
//
// # Metrics
//
// /metrics serves the Server's own Prometheus registry (Registry): the
// standard Go and process collectors, and
//
//	fleetd_trucks, fleetd_updates_total, fleetd_updates_per_second,
//	fleetd_index_cells                     engine figures, read once per scrape
//	fleetd_memory_bytes{component}         the store's records, ids, index,
//	                                       free_lists, spare
//	fleetd_ingest_lines_total{result}      accepted, rejected, refused
//	fleetd_ingest_ts_total{kind}           future (rejected), milliseconds
//	                                       (converted)
//	fleetd_updates_stale_total             accepted, older than the stored ts
//	fleetd_trucks_expired_total            not heard from for the TTL
//	fleetd_expiry_sweeps_total
//	fleetd_http_requests_total{route,code} one per answered request
//	fleetd_http_request_duration_seconds{route}
//
// route is the route's name (positions, truck_get, truck_delete, nearby,
// within, stats, healthz, metrics, pprof, not_found, method_not_allowed),
// never the raw path, so label cardinality is fixed.
//
// # Authentication
//
// With Options.Keyring (or the one-token shorthand Options.Token) set,
// every route except /healthz, POST /v1/login, POST /v1/logout,
// GET /v1/session and (unless MetricsPrivate) /metrics needs a credential:
// "Authorization: Bearer <token>", or else the dashboard's session cookie
// (auth.CookieName). Tokens are compared in constant time (auth.Keyring).
//
//   - No credential, or an unknown one: 401 with WWW-Authenticate: Bearer.
//     Unknown paths answer 401 too, so they reveal nothing.
//   - A known credential without the route's scope: 403 naming the token's
//     name (never the token), its scopes and the scope needed. Scopes:
//     POST /v1/positions ingest; DELETE /v1/trucks/{id}, PUT/DELETE of
//     zones and rules, /debug/pprof/ admin; every other GET read (the
//     live feed and /v1/density included); unknown paths and wrong
//     methods any valid credential.
//   - POST /v1/login {"token":"…"} (application/json only, else 415; 401
//     for an unknown token) answers 200 {"auth":true,"session":true,
//     "name":…,"scopes":…,"ttl":"43200s"} and sets the cookie: HttpOnly,
//     SameSite=Strict, Path=/, Max-Age, Secure under TLS. POST /v1/logout
//     ends it. GET /v1/session says {"auth":bool,"session":bool,…}.
//
// Before any route, the server's auth.Guard answers 421 for a Host a
// loopback server does not serve (DNS rebinding) and 403 for a
// state-changing request from a foreign Origin (see internal/auth).
//
// # Concurrency and memory
//
// A Server is safe for concurrent use and starts no goroutines. Ingest
// scratch (body buffer, decoder, update slices) comes from a free list of
// at most 8 (a sync.Pool would drop megabytes of buffers at every other
// GC); query scratch (hit slices, stream writers) from sync.Pools. A buffer
// grown past its retention limit by an unusual request is dropped rather
// than kept. The ingest path allocates nothing
// per update: one POST costs a handful of allocations whatever its size.
// Results are encoded with strconv.Append* into byte buffers, never with
// encoding/json reflection per hit (only /v1/stats uses encoding/json).
package api

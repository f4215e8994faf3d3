// Package osmand serves the OsmAnd protocol over HTTP: what the OsmAnd
// app's online tracking and Traccar Client send, one position per
// request, on a listener of its own (devices, not browsers, talk to it).
//
// # Requests
//
// GET or POST to any path, with parameters in the query or (POST) an
// application/x-www-form-urlencoded body (both are read; the body wins):
//
//	id | deviceid       truck ID (fleet's ID rule)                 required
//	lat, lon           degrees; or location=lat,lon               required
//	timestamp          Unix seconds (fraction truncated), Unix    the server's
//	                   milliseconds (1e11 to 1e14), or ISO 8601:  clock
//	                   2025-11-24T15:40:00Z, with a fraction or
//	                   an offset, or without a zone (UTC), "T"
//	                   or a space
//	speed              in Options.Speed: knots (the protocol's    0
//	                   and the default), m/s, km/h or mph; at
//	                   most 1000 km/h
//	bearing | heading  degrees, 0-360 (360 is 0)                  0
//	altitude           metres, kept as fleet.Altitude (alt)       none
//	accuracy           metres, kept as accuracy (0.1 m)           none
//	hdop               kept as hdop (0.1)                         none
//	batt               battery %, kept as battery_level           none
//	ignition, motion   true/false or 1/0, kept as ignition and    none
//	                   motion
//	odometer           metres, kept as odometer                   none
//
// A negative speed or bearing (Android's "unknown") is 0. A value of
// accuracy, hdop, batt, ignition, motion or odometer that is not a
// number (or true/false) or is outside the attribute's range (package
// fleet; -1 is Android's "unknown") is left out and the position kept:
// a phone must not resend a position for ever over its battery reading.
// Other keys are ignored. Each key's first non-empty value counts; a
// %-escape that does not decode in a key that is read is a 400.
//
// A POST with Content-Type application/json is the JSON variant (Traccar
// Client 8 and later):
//
//	{"device_id": "phone-1",
//	 "location": {"timestamp": "2025-11-24T15:40:00.000Z",
//	              "coords": {"latitude": 40.71, "longitude": -74.0,
//	                         "speed": 10, "heading": 90, "altitude": 12,
//	                         "accuracy": 5},
//	              "battery": {"level": 0.8}, "is_moving": true}}
//
// where speed is m/s whatever Options.Speed says, and timestamp is a
// string or a number as above; coords.accuracy (m), battery.level (a
// fraction, kept as a percentage), is_moving (motion) and odometer (m)
// are kept as the query's are.
//
// # Answers
//
//	200 {"ok":true}          the position is durable (gateway contract)
//	400 {"error":"..."}      the reason, e.g. "osmand: lat 91 out of range
//	                         [-90, 90]"; nothing was applied
//	405                      another method (HEAD too; its answer has
//	                         no body)
//	413, 431                 a body over Options.MaxBody; a request line
//	                         and headers over 16 KiB (the connection is
//	                         closed after the answer)
//	400, 501, 505, 417       malformed HTTP (closed after the answer)
//	503 {"error":"..."}      the engine could not make it durable: retry
//
// The timestamp rules are ingest's: any age is accepted, more than
// Options.MaxAhead ahead of the server's clock is a 400.
//
// # HTTP
//
// The server speaks HTTP/1.1 itself (http.go parses, conn.go serves), not
// through net/http: a device's request is one small GET or POST, and
// net/http's per-request machinery (the request and header maps, the
// response writer, contexts, the goroutine that watches the connection
// for a close while the handler runs) cost more CPU than the request.
// One goroutine serves a connection:
//
//	read what the socket has ──▶ frame every complete request in it
//	        ▲                      (head, Content-Length or chunked body)
//	        │                    parse each position (400s answered here)
//	        │                    one Commit of all of them ── durable ──┐
//	        └── one write of all the answers, in order  ◀──────────────┘
//
// so pipelined requests share one commit and one write(2), and the
// positions of many connections still share an Apply and an fsync (the
// committer merges their Commit calls). Requests are framed as RFC 9112
// and net/http do (TestHTTPMatchesNetHTTP holds them side by side): CRLF
// or bare LF in the head, Content-Length or chunked bodies (CRLF only,
// extensions and trailers dropped), Expect: 100-continue, HTTP/1.0 with
// or without keep-alive, Connection: close, one Host required in
// HTTP/1.1. It refuses, where net/http interprets, a Transfer-Encoding
// together with a Content-Length, two Transfer-Encoding headers and
// obs-fold lines (all request-smuggling shapes, none sent by devices);
// it skips blank lines before a request line, which net/http refuses.
// Limits: 16 KiB of request line and headers (431), Options.MaxBody of
// body (413), 4 KiB of a chunk-size line or of trailers. A connection's
// buffer starts at 4 KiB and grows, for a large request, to at most
// head + body limits + 4 KiB; the head must arrive within 10 s of its
// first byte, the request within 30 s, the next request within 2
// minutes, or the connection is closed (Stats.Timeouts). A connection the
// server closes is shut down for writing and drained for up to 500 ms
// first, so that the device reads its answer before the kernel would
// reset the connection over unread bytes.
//
// # Concurrency
//
// Parse and ParseJSON are pure. The Server runs a goroutine per
// connection; a connection's requests are answered in order; their
// positions reach the engine merged by the gateway.Committer, so the
// points of many connections share one Apply and one fsync.
//
// # Cost of a request
//
// A GET costs no allocation (BenchmarkServerRaw): the parameters are
// scanned in place (Params: the raw bytes and a span per known key, no
// url.Values), the request framed in the connection's buffer, the answer
// appended to a reused one. The JSON variant allocates in encoding/json.
//
// Measured on the 2-core development VM (load 2-7, medians of 3 runs
// alternated with the net/http server this one replaced), keep-alive
// connections each with one request in flight, fsync always:
//
//	                              net/http        this server
//	in process (go test -bench ServerRaw -benchtime 100000x; client and
//	server CPU together):
//	  64 connections              40.7k req/s     62.6k req/s
//	                              30.4 µs/req     19.5 µs/req
//	  512 connections             49.9k req/s     89.2k req/s
//	                              28.8 µs/req     15.5 µs/req
//	fleetd serve --osmand (history on) pinned to one core, the client
//	(OSMAND_BENCH_ADDR) to the other; server CPU alone:
//	  64 connections              29.6k req/s     49.0k req/s
//	                              29.5 µs/req     15.9 µs/req
//	  512 connections             32.9k req/s     91.2k req/s
//	                              30.0 µs/req     10.6 µs/req
//
// In memory (no fsync), in process: 64 connections 89k → 164k req/s.
// With one core the server needs GOMAXPROCS=2, which fleetd serve sets
// unless GOMAXPROCS is given: with a single P, the WAL's fsync holds it
// and the connections wait (3-8k req/s over 512 connections, either
// server, one fsync a request).
package osmand

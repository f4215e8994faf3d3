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
//	405, 413                 another method; a body over Options.MaxBody
//	503 {"error":"..."}      the engine could not make it durable: retry
//
// The timestamp rules are ingest's: any age is accepted, more than
// Options.MaxAhead ahead of the server's clock is a 400.
//
// # Concurrency
//
// Parse and ParseJSON are pure. The Server handles requests concurrently
// (net/http, a goroutine per connection); their positions reach the
// engine merged by the gateway.Committer, so the points of many
// connections share one Apply and one fsync.
//
// # Cost of a request
//
// The parameters are scanned in place (Params: the raw bytes and a span
// per known key, no url.Values), the body is read into a pooled buffer,
// the answer's headers are shared slices. A GET costs 17 allocations
// (BenchmarkServerRaw, allocation profile), all net/http's: reading the
// request line and headers (8), its contexts and background read (4),
// and for the answer the header map's first entry and the copy
// WriteHeader takes of it (4). The CPU of a request is mostly the
// kernel's: on the 2-core development VM, the response's write(2) alone
// is a quarter of all samples, client included; the handler is a tenth.
package osmand

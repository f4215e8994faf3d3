// Package sim is fleetd's fleet simulator and load generator.
//
// # Fleet
//
// A Fleet simulates trucks driving between depots near real places (the
// embedded places.tsv: 700 continental-US places and 300-odd world cities
// from GeoNames, CC BY 4.0; see its header). A truck drives a leg from one
// depot to a depot near a neighbouring place (20–450 km away, chosen with
// probability ∝ population / distance), along the great circle, then stops
// (15–90 s, or 5–40 min one time in four) and picks the next destination.
// Cruise speed is 45–75 km/h on legs under 80 km and 70–100 km/h on longer
// ones, with a ±10 % wave along the road, slowing to a quarter of it within
// 5 km of either end.
//
// Invariants of a reported Update:
//   - Lat in [-90, 90], Lon in [-180, 180), Heading in [0, 360), Speed >= 0.
//   - Positions are continuous: between two updates of a truck it moved
//     along its legs; only its first update (creation) is anywhere.
//   - Speed is the path length driven since the truck's previous update
//     divided by the time between them (km/h); on a truck's first update,
//     its instantaneous speed (0 when stopped).
//   - Heading is the initial bearing of the great circle from the reported
//     position to the leg's destination: the direction of travel, and where
//     a stopped truck will go next.
//   - Truck i's behaviour depends only on (seed, region, i) and the times
//     it is advanced to, not on which Fleet simulates it, nor on other
//     trucks: each truck has its own 32-bit random stream.
//
// Memory: one pointer-free 64-byte struct per truck (BytesPerTruck), held in
// a single slice; the position is derived from the leg and the distance
// driven on it, not stored. A million trucks take 64 MB and ~0.4 s to
// create.
//
// # Wire format
//
// AppendNDJSON renders a batch without allocating, one line per update:
//
//	{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}
//
// The ID is "truck-" and the truck index zero-padded to 7 digits (more when
// the fleet has more than 10,000,000 trucks); lat/lon have at most 7
// decimals, speed exactly 1, heading none; ts is unix seconds.
//
// # Load generator
//
// Run waits for GET /healthz to answer 200, then splits the fleet into
// min(Conns, Trucks) disjoint Fleets, one per worker goroutine. Each worker
// keeps one POST /v1/positions in flight on its own keep-alive connection:
// it advances the next batch of its trucks to the current time, renders
// them into a reused buffer and sends it (Content-Type application/x-ndjson).
// A batch holds at most Batch lines, at most the worker's truck count (no
// truck twice in one request) and, when paced, at most Rate/20 lines so
// that there are at least 20 requests a second.
//
// Pacing is a token bucket at batch granularity shared by the workers (see
// pacer): a generator that fell behind its schedule (a slow answer, a
// descheduled worker) catches up on at most 500 ms of it. A batch is sent
// only if it completes, at the paced rate, before Duration ends, and a paced
// run lasts Duration, so it sends Rate × Duration lines (rounded down to
// whole batches) when the server keeps up.
//
// Answers are counted per status: 2xx adds the JSON answer's accepted and
// rejected counts; 429, 503 and 507 count as overloaded (the worker pauses
// 25 ms and goes on); other 5xx count as HTTP errors (pause 100 ms); other
// 4xx stop the run with an error, as does a target that has answered
// nothing for 10 s. Request latency (send to the end of the answer) goes
// into fixed-size log-linear histograms (histogram: 528 buckets, ≤ 6.25 %
// error), one for the run and one per progress interval.
//
// # Concurrency
//
// A Fleet is not safe for concurrent use. Run is safe to call concurrently
// with itself (runs share nothing); it calls progress from its own
// goroutine, and every goroutine it starts has exited when it returns. A
// worker reuses its request buffer only after the HTTP transport has closed
// every reader it was given over it (bodyGate): the transport may go on
// reading a body after Client.Do returns.
package sim

// Package gateway is what fleetd's device gateways (packages teltonika,
// osmand and mqtt) share between a decoded point and its acknowledgement:
// the check that a decoded point may be applied, the committer that hands
// points of many connections to the engine in shared batches, and each
// gateway's counters.
//
// # The acknowledgement contract
//
// A gateway acknowledges a device's frame (a Teltonika record count, an
// HTTP 200, an MQTT PUBACK) only after Committer.Commit returned nil for
// every point of the frame, and Commit returns nil only after the engine's
// Apply did: the points are applied and as durable as the engine's fsync
// policy promises. A frame whose Commit failed is never acknowledged, so
// the device sends it again; the engine's latest-wins-by-ts rule makes a
// resent point stale, never a second move of the truck.
//
// # Points that cannot be applied
//
// Check judges a decoded point by the same rules as POST /v1/positions
// (package ingest): a valid ID, coordinates in range, speed ≤ 1000 km/h,
// heading 0-359, ts from 1 to 4294967295 and not more than MaxAhead
// seconds after the server's clock. A point that fails is counted in
// Stats.Rejected, logged at most once a minute per gateway (Limiter), and
// left out of the batch; the frame that carried it is still acknowledged
// when its other points are durable, because a device resends an
// unacknowledged frame for ever, and a frame with a point that will never
// be valid (no GPS fix yet, a clock in 2038) would block every later one.
//
// # Concurrency
//
// Stats counters are atomics, safe for concurrent use. A Committer is safe
// for concurrent use: Commit calls from many goroutines are merged by a
// few workers into one engine batch each (up to MaxBatch points), so
// 1,000 connections that each send a small frame cost a few Apply calls
// and fsyncs, not 1,000; a Commit blocks its caller until its points are
// durable. The caller keeps ownership of its slice, which the committer
// only reads until Commit returns.
package gateway

// Package soak proves that a fleetd server's memory stays flat under churn,
// and measures what it takes meanwhile: trucks keep appearing and, once
// they stop reporting, expiring; live-feed subscribers connect, read,
// stall, and vanish without closing. Run drives a server over its public
// HTTP contract while sampling the process (RSS, heap, heap objects,
// goroutines, open file descriptors) and ends with a verdict:
//
//   - after the warm-up, RSS grows by at most MaxRSSGrowth (5%): compared
//     as the median of the last fifth of the samples against the median of
//     the samples just after the warm-up, so one GC's timing cannot decide;
//   - once every subscriber has left, goroutines and open file
//     descriptors return to their baseline from before the first
//     subscriber (within a small slack for the HTTP client's idle
//     connections).
//
// # Load
//
// The load is open-loop: Options.Conns workers, each with one POST of
// Options.Batch updates in flight on its own keep-alive connection, share
// a pacer that offers Options.Rate updates/s for as long as some
// connection is free. A slow answer holds back only its own connection, so
// the offered rate measures the load asked for, not the server's latency
// (one sequential poster's rate is bounded by latency, and on a loaded
// machine measures scheduling delay rather than capacity). When every
// connection is busy the offered rate falls below the target, and the
// report shows it. The report gives, between the first sample after the
// warm-up and the last: updates/s offered and acknowledged (answered 200),
// and the feed's events/s delivered and dropped (from the server's
// /metrics).
//
// # Delivery delay
//
// Beside the load, probesPerSec probe positions a second are posted one
// per POST (as a device would), at random places of the fleet's area; the
// subscribers that keep reading time the probe's event from just before
// its POST started to the read that returned it (see probes). The report
// gives p50, p99 and max after the warm-up, and the probes' own POST round
// trips, the part of the delay spent before the feed.
//
// Subscribers and load run in the caller's process (the soak command's,
// which also runs the server): the figures are those of the whole machine.
// Everything Run starts is bounded in count and time and stops before Run
// returns; its own memory is fixed (histograms, one 32 KiB read buffer per
// reading subscriber, one body per connection). Servers are addressed
// only on loopback.
package soak

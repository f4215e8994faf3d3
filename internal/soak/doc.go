// Package soak proves that a fleetd server's memory stays flat under churn:
// trucks keep appearing and, once they stop reporting, expiring; live-feed
// subscribers connect, read, stall, and vanish without closing. Run drives
// a server over its public HTTP contract while sampling the process (RSS,
// heap, heap objects, goroutines, open file descriptors) and ends with a
// verdict:
//
//   - after the warm-up, RSS grows by at most MaxRSSGrowth (5%): compared
//     as the median of the last fifth of the samples against the median of
//     the samples just after the warm-up, so one GC's timing cannot decide;
//   - once every subscriber has left, goroutines and open file
//     descriptors return to their baseline from before the first
//     subscriber (within a small slack for the HTTP client's idle
//     connections).
//
// Everything Run starts is bounded in count and time and stops before Run
// returns. Servers are addressed only on loopback.
package soak

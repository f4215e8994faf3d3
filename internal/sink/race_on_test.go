//go:build race

package sink

// raceEnabled skips allocation-count assertions: under the race detector
// sync.Pool drops items at random and instrumentation allocates.
const raceEnabled = true

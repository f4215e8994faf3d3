//go:build race

package ingest

// raceEnabled skips allocation-count assertions: the race detector's
// instrumentation allocates on its own.
const raceEnabled = true

package server

import (
	"runtime/debug"
	"sync"
)

// loadGCPercent is the GOGC that Open runs the configuration load under
// when the process runs with less (fleetd serve sets 10 to keep RSS close
// to the live heap). Loading a configuration (alert.New: replaying
// config.log, compiling and indexing every rule) allocates its result in
// one burst, and at GOGC=10 the collector marks the growing heap again at
// every 10% of growth: profiled on `fleetd serve` restarting with 100,000
// rules and 10,000 zones, 70% of the load was garbage collection (mark
// workers and assists), 3.5 s to ready on the shared 2-core box.
const loadGCPercent = 100

// loadGC raises GOGC to loadGCPercent (if lower and on) until the
// function it returns is called. Concurrent Opens (tests) share one
// raise: the first saves the setting and the last restores it.
var loadGC = func() func() func() {
	var mu sync.Mutex
	var n, saved int
	return func() func() {
		mu.Lock()
		if n == 0 {
			saved = debug.SetGCPercent(loadGCPercent)
			if saved < 0 || saved >= loadGCPercent {
				debug.SetGCPercent(saved)
			}
		}
		n++
		mu.Unlock()
		return func() {
			mu.Lock()
			if n--; n == 0 {
				debug.SetGCPercent(saved)
			}
			mu.Unlock()
		}
	}
}()

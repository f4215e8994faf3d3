package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/fleetd/fleetd/internal/bench"
)

func init() {
	register("bench", "measure memory per truck, heap objects, GC cost and updates/s: naive layout vs the engine", runBench)
}

func runBench(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	trucks := fs.Int("trucks", 1_000_000, "fleet size")
	dur := fs.Duration("duration", 2*time.Second, "how long each throughput measurement runs")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of a table")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: fleetd bench [--trucks N] [--duration D] [--json]

Runs in-process and measures, on this machine, what the founding lessons of
fleetd are about: bytes per truck and heap objects for the naive layout (one
heap object per truck in a map) against the engine's pointer-free slabs, the
cost of a full garbage collection with each alive, and updates/s applying
10,000-update batches on 1 core and on all cores. Needs about 1 GiB of memory
per million trucks while it runs.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *trucks < 10_000 {
		fmt.Fprintln(os.Stderr, "fleetd bench: --trucks must be at least 10000")
		return 2
	}
	var progress *os.File
	if !*asJSON {
		progress = os.Stderr
	}
	rep, err := bench.Run(bench.Options{Trucks: *trucks, Duration: *dur, Seed: 1}, progressWriter(progress))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetd bench:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return 1
		}
		return 0
	}
	rep.Print(os.Stdout)
	return 0
}

// progressWriter avoids handing a typed nil *os.File to an io.Writer.
func progressWriter(f *os.File) interface{ Write([]byte) (int, error) } {
	if f == nil {
		return nil
	}
	return f
}

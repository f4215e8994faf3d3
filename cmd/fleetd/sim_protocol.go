package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/fleetd/fleetd/internal/tracker"
)

// simProtocolHelp is the --protocol part of fleetd sim --help.
const simProtocolHelp = `
Device protocols (--protocol teltonika|osmand|mqtt) load a gateway the way
a fleet of trackers does (package tracker): teltonika opens one TCP
connection per truck to --target host:port (fleetd serve --teltonika),
osmand sends GETs to --target http://host:port (--osmand), mqtt publishes
NDJSON at QoS 1 to the broker --target tcp://host:port on topic fleetd/sim
(fleetd serve --mqtt ... --mqtt-topic fleetd/sim). --rate is reports a
second in all (required), --conns the reports in flight at most.
`

// simDevices runs the device-protocol trackers for fleetd sim --protocol.
func simDevices(ctx context.Context, o *simOptions, stdout, stderr io.Writer) int {
	if o.cfg.Target == simDefaultTarget {
		fmt.Fprintf(stderr, "fleetd sim: --protocol %s needs --target (the gateway's address)\n", o.protocol)
		return 2
	}
	if !(o.cfg.Rate > 0) {
		fmt.Fprintf(stderr, "fleetd sim: --protocol %s needs --rate (reports a second in all)\n", o.protocol)
		return 2
	}
	sum, err := tracker.Run(ctx, tracker.Config{Protocol: o.protocol, Target: o.cfg.Target, Trucks: o.cfg.Trucks,
		Rate: o.cfg.Rate, Duration: o.cfg.Duration, Workers: o.cfg.Conns, Seed: o.cfg.Seed, Region: o.cfg.Region})
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(sum)
	} else {
		fmt.Fprintf(stdout, "%s: %d trucks, %d connections, sent %d, acknowledged %d (%.0f/s), errors %d, ack p50 %.2f ms, p99 %.2f ms\n",
			sum.Protocol, sum.Trucks, sum.Connections, sum.Sent, sum.Acked, sum.AckedPerSec, sum.Errors, sum.P50Ms, sum.P99Ms)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fleetd sim: %v\n", err)
		return 1
	}
	return 0
}

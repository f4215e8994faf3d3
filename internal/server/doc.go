// Package server assembles a whole fleetd server from its parts — the
// engine (store, durability, expiry), the alert rules, the live feed, the
// HTTP API, the dashboard and the device gateways (Teltonika, OsmAnd,
// MQTT: package gateway and its siblings) — so that `fleetd serve` and
// `fleetd soak` run exactly the same wiring. It holds no logic of its own beyond the
// glue: which observer sees the engine's changes, which handler serves
// which route.
//
// Lifecycle: Open builds everything (recovering the data directory), the
// caller serves the Server (an http.Handler) on its listener, and Close
// ends the live-feed streams (they never end on their own), then closes
// the engine, which writes its final snapshot. http.Server.Shutdown would
// wait for those streams for ever, so call CloseStreams before it, and
// Close after it.
package server

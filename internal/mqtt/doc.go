// Package mqtt subscribes fleetd to an MQTT broker with Eclipse Paho
// (github.com/eclipse/paho.mqtt.golang, MQTT 3.1.1) and applies the
// positions published on its topics, acknowledging each message only once
// its points are durable (package gateway's contract).
//
// # Session
//
// QoS 1 subscriptions on a persistent session (clean session off, a
// stable client ID, Options.ClientID): while fleetd is down or
// reconnecting, the broker keeps the messages for it, and a message
// received but not acknowledged (fleetd crashed or lost the connection
// before it was durable) is delivered again to the next session. Paho
// reconnects with backoff (1 s, doubling to 10 s) and fleetd subscribes
// again on every connect. Duplicates from redelivery are harmless: a
// point at or before the stored ts does not move the truck.
//
// Messages are acknowledged manually, in the order received: the
// receive handler only queues a message (Options.Queue deep; a full
// queue stops reading from the broker), and one goroutine takes what
// arrived within 2 ms, decodes it, commits all its points in one batch,
// then sends each message's PUBACK. A broker limits the unacknowledged
// messages in flight per client (Mosquitto's max_inflight_messages, 20 by
// default), which bounds the batch: for throughput raise it, or publish
// many NDJSON lines per message.
//
// # Payloads
//
// By topic:
//
//	owntracks/<user>/<device>   an OwnTracks JSON message; the truck ID is
//	                            "<user>:<device>". _type "location" is a
//	                            position: lat, lon (required), tst (Unix s,
//	                            default now), vel (km/h), cog (degrees),
//	                            alt (m, fleet.Altitude), acc (m, kept as
//	                            accuracy) and batt (%, kept as
//	                            battery_level; an acc or batt out of range
//	                            is left out, the position kept); the rest
//	                            is skipped. Other _types (transition,
//	                            waypoint, lwt, card...) are acknowledged and
//	                            ignored
//	any other topic             fleetd's NDJSON, one or more lines as
//	                            POST /v1/positions takes them (package
//	                            ingest), each line with its own id
//
// A message that does not decode, or whose points fail gateway.Check, is
// acknowledged (a broker would otherwise redeliver it for ever), counted
// (Stats.BadFrames, Stats.Rejected) and logged at most once a minute. If
// the engine fails, nothing of the batch is acknowledged and the commit
// is retried every second.
//
// # Concurrency
//
// A Client runs its own goroutines; Close stops them and disconnects,
// leaving what is not yet durable unacknowledged.
package mqtt

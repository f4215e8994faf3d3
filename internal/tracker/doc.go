// Package tracker simulates GPS trackers that speak the device protocols
// fleetd's gateways take — Teltonika over TCP, OsmAnd over HTTP, NDJSON
// over MQTT — to load a server the way a fleet of devices does (fleetd sim
// --protocol). The trucks and their motion are package sim's Fleet.
//
// # Shape of the load
//
//	teltonika  one TCP connection per truck, IMEI 35 followed by the truck
//	           index in 13 digits; each report is a one-record Codec 8
//	           packet (9 satellites; IO elements ignition and movement, on
//	           while moving, and external voltage 24 V), and the latency is
//	           packet written → 4-byte ack read
//	osmand     Workers keep-alive HTTP/1.1 connections, one GET a report,
//	           speed in knots, accuracy=5&batt=80; latency is request → 200.
//	           The client is the package's own (osmand.go: no allocation a
//	           request; Connection: close honoured; a dropped connection
//	           redialled with backoff), not net/http's, which cost more
//	           CPU a request than the gateway serving it. An answer other
//	           than 200 is an error, with its status and body
//	mqtt       Workers publishers at QoS 1 on topic Topic, one NDJSON line
//	           a report with the sim's truck ID (and "ignition", 1 while
//	           moving); latency is publish → the broker's PUBACK (fleetd's
//	           own ack goes to the broker)
//
// Rate reports a second are spread evenly over the trucks (each Teltonika
// truck reports every Trucks/Rate seconds); Workers goroutines each own a
// disjoint range of trucks and send one report at a time, so at most
// Workers reports are in flight.
//
// # Concurrency
//
// Run blocks until the duration ends or ctx is done; it is safe to run
// several at once.
package tracker

// Package teltonika speaks the TCP protocol of Teltonika's FM trackers:
// the IMEI handshake, then AVL data packets in Codec 8, Codec 8 Extended
// or Codec 16, each acknowledged with its record count once its records
// are durable (package gateway's contract).
//
// # Session
//
//	device → 00 0F 33 35 36 ... 33        IMEI: 2-byte length, ASCII digits
//	server → 01                           accepted (00 and close: malformed)
//	device → AVL data packet
//	server → 00 00 00 02                  records received, sent only after
//	                                      the engine made them durable
//	...                                   next packet on the same connection
//
// The truck ID is Options.IDPrefix followed by the IMEI.
//
// # AVL data packet (all integers big-endian)
//
//	+----------+-------------+-------+-------+---------+-------+----------+
//	| preamble | data length | codec | count | records | count | CRC      |
//	| 4 × 00   | 4           | 1     | 1     |         | 1     | 4        |
//	+----------+-------------+-------+-------+---------+-------+----------+
//	             \________ data field: length bytes ________/
//
// codec is 0x08, 0x8E or 0x10; both counts agree (1-255); the CRC is
// CRC-16/IBM of the data field in the low two bytes.
//
// A record:
//
//	time    8  Unix milliseconds
//	prio    1  0 low, 1 high, 2 panic
//	lon     4  1e-7 degree, two's complement
//	lat     4  1e-7 degree, two's complement
//	alt     2  metres
//	angle   2  degrees, 0-360
//	sats    1
//	speed   2  km/h
//	IO part:
//	  Codec 8:   event ID 1, total 1, then for widths 1, 2, 4, 8 bytes:
//	             count 1 and count × (ID 1, value)
//	  Codec 8E:  event ID 2, total 2, then for widths 1, 2, 4, 8 bytes:
//	             count 2 and count × (ID 2, value); then NX: count 2 and
//	             count × (ID 2, length 2, value)
//	  Codec 16:  event ID 2, generation type 1, total 1, then for widths
//	             1, 2, 4, 8 bytes: count 1 and count × (ID 2, value)
//
// IO elements kept (Record.IO), whatever width they come in: ignition
// (239), movement (240), total odometer (16, m), external voltage (66,
// mV), battery voltage (67, mV); all others are skipped by their width.
// fleet's attribute table has only altitude today, so the kept IO
// elements are decoded and tested but not yet carried into the update.
//
// # Faults
//
// Any malformed input — a preamble that is not zero, a length outside
// MinDataLen..MaxDataLen, a CRC mismatch, an unknown codec, counts that
// disagree, records that overrun or underfill the data field, an IMEI
// that is not 1-17 digits — closes that connection, counted in
// Stats.BadFrames and logged (at most one line a minute). A device that
// sends no IMEI within HandshakeTimeout, nothing within IdleTimeout
// between packets, or does not finish a begun packet within FrameTimeout
// is closed and counted in Stats.Timeouts. Records that decode but
// cannot be applied (no GPS fix: lat and lon 0; a time out of range or
// too far ahead) are acknowledged and counted in Stats.Rejected (package
// gateway explains why). If the engine fails, the packet is not
// acknowledged and the connection is closed, so the device resends it.
//
// # Memory per connection
//
// One goroutine per connection, and between packets it holds only its
// stack (a few small arrays: the 8-byte header, the ID), the net.Conn and
// an entry in the server's connection set. The frame buffer, the decoded
// records and the updates come from a sync.Pool for the time of one
// packet, so 100,000 idle devices do not hold 100,000 read buffers; a
// device that begins a packet and stalls holds one until FrameTimeout.
//
// # Concurrency
//
// Decode and the encoders are pure functions. A Server is safe for
// concurrent use; Close closes every connection and waits for them.
package teltonika

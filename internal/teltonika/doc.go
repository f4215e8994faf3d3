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
// IO elements kept (Record.IO), whatever width they come in, and the
// fleet attribute (JSON name) each becomes in the update:
//
//	record field / IO element     unit     attribute
//	altitude                      m        alt
//	satellites                    count    satellites
//	239 ignition                  0/1      ignition
//	240 movement                  0/1      motion
//	 16 total odometer            m        odometer (up to 2,147,483 km)
//	 66 external voltage          mV       ext_voltage (V)
//	 67 battery voltage           mV       battery_voltage (V)
//	113 battery level             %        battery_level (up to 100)
//	182 GNSS HDOP                 0.1      hdop (up to 100.0)
//
// All other elements are skipped by their width. A kept value outside its
// attribute's range is left out of the update; the point is still kept.
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
// On Linux (the default mode) the connections' sockets are kept out of
// Go's netpoller, in an epoll set of the server's own with EPOLLONESHOT.
// An idle connection is then a 128-byte pconn (its phase, deadline,
// 8-byte header and the ID) and a map entry: no goroutine, no buffer.
// When a socket is readable, a goroutine takes the connection (armed →
// busy), reads what is there without blocking, acts on each complete
// handshake or packet, and re-arms it (busy → armed); a sweeper closes
// armed connections past their deadline. The frame buffer, the decoded
// records and the updates come from a sync.Pool for the time of one
// packet, so 100,000 idle devices hold no read buffers. A frame's buffer
// starts at 2 KiB and doubles as its bytes arrive, so a device that
// announces a 64 KiB packet and stalls holds what it sent (at least 2 KiB)
// until FrameTimeout, not what it announced.
//
// With Options.Goroutines (the only mode off Linux) each connection has a
// goroutine blocked in Read: its stack (2-8 KiB, as the runtime sizes
// it) and a net.Conn, a few KiB per idle device.
//
// BenchmarkIdleConnections (9,500 idle connections, the RSS growth of the
// process; the clients are raw sockets outside the Go runtime): about
// 220 bytes per connection with the poller, 3.5-5.8 KiB with goroutines.
// The kernel's socket buffers are not in the process's RSS.
//
// # Concurrency
//
// Decode and the encoders are pure functions. A Server is safe for
// concurrent use; Close closes every connection and waits for them.
package teltonika

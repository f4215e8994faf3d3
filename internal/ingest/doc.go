// Package ingest decodes the body of POST /v1/positions into validated
// position updates: bytes in, updates out, without reflection and without
// allocating per update once a Decoder has warmed up.
//
// # Wire format
//
// An application/x-ndjson body holds one update object per line
// (DecodeNDJSON); an application/json body holds a JSON array of the same
// objects (DecodeArray).
//
//	{"id": "truck-0000042", "lat": 40.7128, "lon": -74.006, "ts": 1764000000, "speed": 52.5, "heading": 90}
//
//	field    JSON type              rule                                      if absent / null
//	-------  ---------------------  ----------------------------------------  ----------------
//	id       string                 1-64 bytes of [A-Za-z0-9_.:-] after       rejected
//	                                unescaping (\u0041 is "A")
//	lat      number                 -90 ≤ lat ≤ 90                            rejected
//	lon      number                 -180 ≤ lon ≤ 180                          rejected
//	ts       number, Unix seconds,  1 ≤ ts ≤ 4294967295 (stored as uint32);   now (the argument)
//	         fraction truncated     a string is parsed by
//	         toward zero; or an     time.Parse(time.RFC3339, ·);
//	         RFC 3339 string        a number in [1e11, 1e14) is milliseconds
//	                                and divided by 1000 (see Device clocks);
//	                                at most Decoder.MaxAhead seconds after
//	                                now when MaxAhead > 0
//	speed    number, km/h           0 ≤ speed ≤ 1000                          0
//	heading  number, degrees        0 ≤ heading < 360                         0
//	alt      number, metres above   -20000 ≤ alt ≤ 100000, kept to 0.1 m      none (Update.Attrs)
//	         sea level
//	ignition 1/0 or true/false      0 ≤ ignition ≤ 1                          none (Update.Attrs)
//	motion   1/0 or true/false      0 ≤ motion ≤ 1                            none (Update.Attrs)
//	odometer number, metres         0 ≤ odometer ≤ 2147483647, whole metres   none (Update.Attrs)
//	ext_voltage, battery_voltage    0 ≤ v ≤ 100, kept to 1 mV                 none (Update.Attrs)
//	         number, volts
//	battery_level  number, %        0 ≤ battery_level ≤ 100, whole percent    none (Update.Attrs)
//	accuracy number, metres         0 ≤ accuracy ≤ 100000, kept to 0.1 m      none (Update.Attrs)
//	hdop     number                 0 ≤ hdop ≤ 100, kept to 0.1               none (Update.Attrs)
//	satellites  number              0 ≤ satellites ≤ 255                      none (Update.Attrs)
//
// alt and any later optional attribute come from package fleet's attribute
// table (name, unit, range); they are judged after the fields above.
//
// Numbers are parsed exactly as strconv.ParseFloat does (bit for bit); a
// magnitude that overflows float64 (1e999) is out of range, never ±Inf.
// NaN and Infinity are not JSON and are syntax errors. ts truncation is
// exact on the decimal token (4294967295.99999999999999999 is accepted).
// For required fields null is a type error ("lat must be a number").
//
// Unknown fields are skipped, whatever their JSON type; their names (after
// unescaping) are collected in Report.Unknown, deduplicated, first-seen
// order, at most MaxUnknown names, each cut to MaxUnknownNameLen bytes plus
// "..." if longer. Values may nest at most MaxDepth levels counting the
// update object as level 1 (the enclosing array of a JSON body does not
// count); deeper nesting rejects the entry. A duplicate key overrides the
// earlier occurrence entirely, including an earlier wrong-typed value: the
// last one wins, as with encoding/json into a map.
//
// # Device clocks
//
// Devices buffer points in dead zones and send them late, reset their
// clocks to 1980 after losing power, jump 1024 weeks at a GPS week
// rollover, run fast, or send milliseconds. The rules for ts are made for
// them:
//
//   - Late is data: any ts in range is accepted however old; whether it moves
//     the truck is the store's business (latest wins by ts).
//   - The future is refused: with MaxAhead > 0 a ts more than MaxAhead
//     seconds after now is rejected ("ts 2026-12-29T16:00:00Z is 400 days
//     ahead of the server clock (max 5m0s): is the device's clock set?") and
//     counted in Report.Future, because a truck whose stored ts is in the
//     future would drop every correct update until that time came.
//   - Milliseconds are converted: a numeric ts in [MinMillis, MaxMillis)
//     cannot be seconds (it would be after MaxTS) and is divided by 1000,
//     truncating; counted in Report.Millis. Microseconds and nanoseconds are
//     out of range, as is 0 (a clock that is not set: omit ts instead, and
//     the server's clock is used).
//
// # Entries and errors
//
// Each NDJSON line stands alone: a valid line is accepted, an invalid one is
// rejected and does not disturb its neighbours. Lines end at '\n'; a
// trailing '\r' (CRLF) is whitespace; a last line without '\n' is a line.
// Lines holding only space, tab or CR are skipped and counted nowhere, but
// still advance the line number. Strings must be valid UTF-8 without raw
// control characters; anything after the object on its line is an error.
//
// In a JSON array each element is judged like a line, and "line" means the
// 1-based element index. An element that is valid JSON but wrong (bad
// field, not an object) is rejected and decoding goes on. An element that
// is not valid JSON (or nests too deep), or garbage between elements, or a
// truncated array, ends decoding: the elements before it stand, and the rest
// of the body is one rejected entry, numbered with the index of the element
// where the fault is (after the last element: last index + 1).
//
// Messages name the fault, e.g.
//
//	lat 91 out of range [-90, 90]
//	missing required field "lon"
//	invalid id "tr uck": must be 1-64 bytes of [A-Za-z0-9_.:-]
//	invalid JSON at column 17: expected ':' after object key, found '='
//	speed must be a number
//	ts "1960-01-01T00:00:00Z" (Unix -315619200) out of range [1, 4294967295]
//
// In NDJSON bodies positions are 1-based byte columns within the line; in
// array bodies they are 0-based byte offsets in the body ("at offset 1234").
// When several fields are wrong, the first in the order id, lat, lon, ts,
// speed, heading is reported. Report.Errors lists the first MaxErrors
// rejections; Report.Rejected counts them all.
//
// # Invariants
//
//   - Every Update returned satisfies all the rules in the table above.
//   - Accepted + Rejected = number of non-blank lines (NDJSON) or of elements
//     judged, plus one for a malformed remainder (array).
//   - len(updates) == Report.Accepted; updates keep body order.
//   - Update.ID aliases the body when the JSON string had no escapes, and
//     otherwise the Decoder's arena. The arena is only appended to during a
//     call (a rejected entry truncates it back to where that entry began),
//     so every returned ID stays valid until the next Decode*/Reset call.
//     The body must not be modified while the results are in use.
//   - Decoding never panics on any input and uses stack proportional to
//     MaxDepth; memory is proportional to the body.
//   - Steady state (a reused Decoder, bodies of similar size, no new unknown
//     names) does not allocate, except for formatting listed error messages
//     and for ts strings with a non-whole-hour UTC offset (time.FixedZone).
//
// # Concurrency
//
// A Decoder is not safe for concurrent use. The returned []Update and
// *Report are owned by the Decoder and overwritten by its next call; keep
// Decoders in a sync.Pool and call Reset before Put so a pooled Decoder
// does not pin the last body in memory.
package ingest

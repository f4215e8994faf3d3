package feed

import (
	"slices"
	"strconv"

	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wire"
)

// The event encoders write exactly the bytes of package wire's encoders
// (wire.AppendString, wire.AppendCoord, wire.AppendSpeed, and strconv for
// integers), so a truck reads the same in the feed as in a query answer;
// TestEncodersMatchWire and FuzzEncodersMatchWire compare them. They use
// integer arithmetic only: a position event is encoded once per subscriber
// that receives it, about 5M times a second with 1,000 subscribers at
// 500,000 updates/s, and strconv.AppendFloat was two thirds of an event's
// encoding time (BenchmarkEncodePosition: 113 ns with wire's encoders).

// digitPairs holds "00" to "99": digitPairs[2*n:2*n+2] is n in two digits.
const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// plainJSON[c] reports whether byte c stands for itself inside a JSON
// string as wire.AppendString writes it: printable ASCII other than '"'
// and '\'.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// extend returns dst lengthened by n bytes, whose content is undefined.
// Writing digits into place spares the encoders a copy (a memmove call)
// per number.
func extend(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		dst = slices.Grow(dst, n)
	}
	return dst[:len(dst)+n]
}

// decimalLen returns the number of decimal digits of v.
func decimalLen(v uint32) int {
	n := 1
	for ; v >= 100; v /= 100 {
		n += 2
	}
	if v >= 10 {
		n++
	}
	return n
}

// putDigits writes v in decimal into all of b, right-aligned, padded with
// zeros on the left; digits that do not fit are lost.
func putDigits(b []byte, v uint32) {
	i := len(b)
	for ; i >= 2; i -= 2 {
		r := 2 * (v % 100)
		v /= 100
		b[i-2], b[i-1] = digitPairs[r], digitPairs[r+1]
	}
	if i == 1 {
		b[0] = byte('0' + v%10)
	}
}

// appendUint appends v in decimal, as strconv.AppendUint does.
func appendUint(dst []byte, v uint32) []byte {
	n := decimalLen(v)
	dst = extend(dst, n)
	putDigits(dst[len(dst)-n:], v)
	return dst
}

// appendCoord appends a fixed-point coordinate (1e-7 degree) as
// wire.AppendCoord does: degrees, then the seven fraction digits with
// trailing zeros removed (and no point when none remain).
func appendCoord(dst []byte, v int32) []byte {
	u := uint32(v)
	if v < 0 {
		dst = append(dst, '-')
		u = -u // the magnitude, math.MinInt32 included
	}
	dst = appendUint(dst, u/1e7)
	f := u % 1e7
	if f == 0 {
		return dst
	}
	n := 7
	for f%10 == 0 {
		f /= 10
		n--
	}
	dst = extend(dst, 1+n)
	b := dst[len(dst)-1-n:]
	b[0] = '.'
	putDigits(b[1:], f)
	return dst
}

// appendSpeed appends a speed in 0.1 km/h as km/h, as wire.AppendSpeed does.
func appendSpeed(dst []byte, s uint16) []byte {
	dst = appendUint(dst, uint32(s/10))
	if d := s % 10; d != 0 {
		dst = append(dst, '.', byte('0'+d))
	}
	return dst
}

// appendJSONString appends s as a JSON string literal: copied at once when
// no byte needs escaping (every valid truck ID), else by wire.AppendString.
func appendJSONString(dst, s []byte) []byte {
	for _, c := range s {
		if !plainJSON[c] {
			return wire.AppendString(dst, s)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// A position event is encoded once per publish, whoever receives it:
// PublishPositions appends a record per matched update — a 2-byte
// little-endian length and the event's JSON after posPrefix, which is the
// same for all — and copies the record into each receiving subscriber's
// ring; delivery writes posPrefix and the payload.
const posPrefix = `{"type":"position","id":`

// Limits of a position record.
const (
	// maxPosPayload is the longest payload: an ID of MaxIDLen bytes, each
	// escaped to at most 6 (\u001f, or \ufffd for invalid UTF-8), quoted,
	// and every number at its longest.
	maxPosPayload = 2 + 6*MaxIDLen + len(`,"lat":-214.7483648,"lon":-214.7483648,"ts":4294967295,"speed":6553.5,"heading":65535}`)
	// posPayloadBudget is the payload space a subscriber's ring allows per
	// event of Buffer: the payload of a position with a 13-byte ID
	// (truck-0000042), 7-decimal coordinates, a 10-digit ts and a 3-digit
	// heading; with its 2-byte length, 96 bytes an event.
	posPayloadBudget = 94
)

// appendPositionRecord appends u's record: its payload's length and
// payload.
func appendPositionRecord(dst []byte, u *store.Update) []byte {
	at := len(dst)
	dst = append(dst, 0, 0)
	dst = appendPositionPayload(dst, u.ID, &u.Position)
	n := len(dst) - at - 2
	dst[at], dst[at+1] = byte(n), byte(n>>8)
	return dst
}

// appendPositionPayload appends
// "id":…,"lat":…,"lon":…,"ts":…,"speed":…,"heading":…} — a position
// event after posPrefix.
func appendPositionPayload(dst, id []byte, p *store.Position) []byte {
	dst = appendJSONString(dst, id)
	dst = append(dst, `,"lat":`...)
	dst = appendCoord(dst, p.Lat)
	dst = append(dst, `,"lon":`...)
	dst = appendCoord(dst, p.Lon)
	dst = append(dst, `,"ts":`...)
	dst = appendUint(dst, p.TS)
	dst = append(dst, `,"speed":`...)
	dst = appendSpeed(dst, p.Speed)
	dst = append(dst, `,"heading":`...)
	dst = appendUint(dst, uint32(p.Heading))
	return append(dst, '}')
}

// appendPosition appends a whole position event
// {"type":"position","id":…,"lat":…,"lon":…,"ts":…,"speed":…,"heading":…}.
func appendPosition(dst, id []byte, p *store.Position) []byte {
	return appendPositionPayload(append(dst, posPrefix...), id, p)
}

// appendCtl appends {"type":"expired","id":…,"ts":…} or
// {"type":"alert","rule":…,"id":…,"state":…,"ts":…,"lat":…,"lon":…}.
func appendCtl(dst []byte, e *ctlEntry) []byte {
	if e.kind == kindExpired {
		dst = append(dst, `{"type":"expired","id":`...)
		dst = appendJSONString(dst, e.id[:e.idLen])
		dst = append(dst, `,"ts":`...)
		dst = appendUint(dst, e.ts)
		return append(dst, '}')
	}
	dst = append(dst, `{"type":"alert","rule":`...)
	dst = appendJSONString(dst, e.rule[:e.ruleLen])
	dst = append(dst, `,"id":`...)
	dst = appendJSONString(dst, e.id[:e.idLen])
	if e.state == stateFiring {
		dst = append(dst, `,"state":"firing","ts":`...)
	} else {
		dst = append(dst, `,"state":"resolved","ts":`...)
	}
	dst = appendUint(dst, e.ts)
	dst = append(dst, `,"lat":`...)
	dst = appendCoord(dst, e.lat)
	dst = append(dst, `,"lon":`...)
	dst = appendCoord(dst, e.lon)
	return append(dst, '}')
}

// appendLag appends {"type":"lag","dropped":n}.
func appendLag(dst []byte, n uint64) []byte {
	dst = append(dst, `{"type":"lag","dropped":`...)
	dst = strconv.AppendUint(dst, n, 10)
	return append(dst, '}')
}

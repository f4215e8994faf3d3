package feed

import (
	"strconv"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/wire"
)

// Events are written with package wire's encoders, so a truck reads the
// same in the feed as in a query answer; wire's number encoders use
// integer arithmetic only, which matters here: a position is encoded
// once per publish, ~500,000 times a second.

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
func appendPositionRecord(dst []byte, u *fleet.Update) []byte {
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
func appendPositionPayload(dst, id []byte, p *fleet.Position) []byte {
	dst = wire.AppendString(dst, id)
	dst = append(dst, `,"lat":`...)
	dst = wire.AppendCoord(dst, p.Lat)
	dst = append(dst, `,"lon":`...)
	dst = wire.AppendCoord(dst, p.Lon)
	dst = append(dst, `,"ts":`...)
	dst = wire.AppendUint(dst, p.TS)
	dst = append(dst, `,"speed":`...)
	dst = wire.AppendSpeed(dst, p.Speed)
	dst = append(dst, `,"heading":`...)
	dst = wire.AppendUint(dst, uint32(p.Heading))
	return append(dst, '}')
}

// appendPosition appends a whole position event
// {"type":"position","id":…,"lat":…,"lon":…,"ts":…,"speed":…,"heading":…}.
func appendPosition(dst, id []byte, p *fleet.Position) []byte {
	return appendPositionPayload(append(dst, posPrefix...), id, p)
}

// appendCtl appends {"type":"expired","id":…,"ts":…} or
// {"type":"alert","rule":…,"id":…,"state":…,"ts":…,"lat":…,"lon":…}.
func appendCtl(dst []byte, e *ctlEntry) []byte {
	if e.kind == kindExpired {
		dst = append(dst, `{"type":"expired","id":`...)
		dst = wire.AppendString(dst, e.id[:e.idLen])
		dst = append(dst, `,"ts":`...)
		dst = wire.AppendUint(dst, e.ts)
		return append(dst, '}')
	}
	dst = append(dst, `{"type":"alert","rule":`...)
	dst = wire.AppendString(dst, e.rule[:e.ruleLen])
	dst = append(dst, `,"id":`...)
	dst = wire.AppendString(dst, e.id[:e.idLen])
	if e.state == stateFiring {
		dst = append(dst, `,"state":"firing","ts":`...)
	} else {
		dst = append(dst, `,"state":"resolved","ts":`...)
	}
	dst = wire.AppendUint(dst, e.ts)
	dst = append(dst, `,"lat":`...)
	dst = wire.AppendCoord(dst, e.lat)
	dst = append(dst, `,"lon":`...)
	dst = wire.AppendCoord(dst, e.lon)
	return append(dst, '}')
}

// appendLag appends {"type":"lag","dropped":n}.
func appendLag(dst []byte, n uint64) []byte {
	dst = append(dst, `{"type":"lag","dropped":`...)
	dst = strconv.AppendUint(dst, n, 10)
	return append(dst, '}')
}

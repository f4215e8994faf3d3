package feed

import (
	"strconv"

	"github.com/fleetd/fleetd/internal/wire"
)

// appendPosition appends
// {"type":"position","id":…,"lat":…,"lon":…,"ts":…,"speed":…,"heading":…}.
func appendPosition(dst []byte, e *posEntry) []byte {
	dst = append(dst, `{"type":"position","id":`...)
	dst = wire.AppendString(dst, e.id[:e.idLen])
	dst = append(dst, `,"lat":`...)
	dst = wire.AppendCoord(dst, e.lat)
	dst = append(dst, `,"lon":`...)
	dst = wire.AppendCoord(dst, e.lon)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendUint(dst, uint64(e.ts), 10)
	dst = append(dst, `,"speed":`...)
	dst = wire.AppendSpeed(dst, e.speed)
	dst = append(dst, `,"heading":`...)
	dst = strconv.AppendUint(dst, uint64(e.heading), 10)
	return append(dst, '}')
}

// appendCtl appends {"type":"expired","id":…,"ts":…} or
// {"type":"alert","rule":…,"id":…,"state":…,"ts":…,"lat":…,"lon":…}.
func appendCtl(dst []byte, e *ctlEntry) []byte {
	if e.kind == kindExpired {
		dst = append(dst, `{"type":"expired","id":`...)
		dst = wire.AppendString(dst, e.id[:e.idLen])
		dst = append(dst, `,"ts":`...)
		dst = strconv.AppendUint(dst, uint64(e.ts), 10)
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
	dst = strconv.AppendUint(dst, uint64(e.ts), 10)
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

package feed

import (
	"strconv"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/geo"
)

// appendString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD (as encoding/json does), so the output is always valid JSON.
func appendString(dst []byte, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// appendFixed appends a fixed-point coordinate (1e-7 degree) as degrees
// with at most 7 decimals: float64(v)/1e7 is the correctly rounded
// quotient, so the shortest round-trip form is exactly the stored decimal.
func appendFixed(dst []byte, v int32) []byte {
	return strconv.AppendFloat(dst, geo.FromFixed(v), 'f', -1, 64)
}

// appendSpeed appends a speed stored in 0.1 km/h as km/h.
func appendSpeed(dst []byte, s uint16) []byte {
	dst = strconv.AppendUint(dst, uint64(s/10), 10)
	if d := s % 10; d != 0 {
		dst = append(dst, '.', byte('0'+d))
	}
	return dst
}

// appendPosition appends
// {"type":"position","id":…,"lat":…,"lon":…,"ts":…,"speed":…,"heading":…}.
func appendPosition(dst []byte, e *posEntry) []byte {
	dst = append(dst, `{"type":"position","id":`...)
	dst = appendString(dst, e.id[:e.idLen])
	dst = append(dst, `,"lat":`...)
	dst = appendFixed(dst, e.lat)
	dst = append(dst, `,"lon":`...)
	dst = appendFixed(dst, e.lon)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendUint(dst, uint64(e.ts), 10)
	dst = append(dst, `,"speed":`...)
	dst = appendSpeed(dst, e.speed)
	dst = append(dst, `,"heading":`...)
	dst = strconv.AppendUint(dst, uint64(e.heading), 10)
	return append(dst, '}')
}

// appendCtl appends {"type":"expired","id":…,"ts":…} or
// {"type":"alert","rule":…,"id":…,"state":…,"ts":…,"lat":…,"lon":…}.
func appendCtl(dst []byte, e *ctlEntry) []byte {
	if e.kind == kindExpired {
		dst = append(dst, `{"type":"expired","id":`...)
		dst = appendString(dst, e.id[:e.idLen])
		dst = append(dst, `,"ts":`...)
		dst = strconv.AppendUint(dst, uint64(e.ts), 10)
		return append(dst, '}')
	}
	dst = append(dst, `{"type":"alert","rule":`...)
	dst = appendString(dst, e.rule[:e.ruleLen])
	dst = append(dst, `,"id":`...)
	dst = appendString(dst, e.id[:e.idLen])
	if e.state == stateFiring {
		dst = append(dst, `,"state":"firing","ts":`...)
	} else {
		dst = append(dst, `,"state":"resolved","ts":`...)
	}
	dst = strconv.AppendUint(dst, uint64(e.ts), 10)
	dst = append(dst, `,"lat":`...)
	dst = appendFixed(dst, e.lat)
	dst = append(dst, `,"lon":`...)
	dst = appendFixed(dst, e.lon)
	return append(dst, '}')
}

// appendLag appends {"type":"lag","dropped":n}.
func appendLag(dst []byte, n uint64) []byte {
	dst = append(dst, `{"type":"lag","dropped":`...)
	dst = strconv.AppendUint(dst, n, 10)
	return append(dst, '}')
}

// appendError appends {"error":msg}.
func appendError(dst []byte, msg string) []byte {
	dst = append(dst, `{"error":`...)
	dst = appendString(dst, []byte(msg))
	return append(dst, '}')
}

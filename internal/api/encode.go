package api

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/ingest"
	"github.com/fleetd/fleetd/internal/store"
)

// appendString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD (as encoding/json does), so the output is always valid JSON.
func appendString[T ~string | ~[]byte](dst []byte, s T) []byte {
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
		// A rune is at most 4 bytes; converting so short a slice does not
		// allocate, and is free when T is a string.
		r, n := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// appendFixed appends a fixed-point coordinate (1e-7 degree) as degrees with
// at most 7 decimals. float64(v)/1e7 is the correctly rounded quotient, so
// the shortest round-trip form is exactly the stored decimal.
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

// appendMetres appends a distance rounded to the millimetre.
func appendMetres(dst []byte, m float64) []byte {
	if math.IsNaN(m) || math.IsInf(m, 0) {
		return append(dst, '0') // the store never produces these
	}
	return strconv.AppendFloat(dst, math.Round(m*1000)/1000, 'f', -1, 64)
}

// appendTruck appends {"id","lat","lon","ts","speed","heading"}.
func appendTruck(dst []byte, id []byte, p *store.Position) []byte {
	return appendHit(dst, id, p, false, 0)
}

// appendHit appends one result object; distance_m only when withDist.
func appendHit(dst []byte, id []byte, p *store.Position, withDist bool, distM float64) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, id)
	dst = append(dst, `,"lat":`...)
	dst = appendFixed(dst, p.Lat)
	dst = append(dst, `,"lon":`...)
	dst = appendFixed(dst, p.Lon)
	if withDist {
		dst = append(dst, `,"distance_m":`...)
		dst = appendMetres(dst, distM)
	}
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendUint(dst, uint64(p.TS), 10)
	dst = append(dst, `,"speed":`...)
	dst = appendSpeed(dst, p.Speed)
	dst = append(dst, `,"heading":`...)
	dst = strconv.AppendUint(dst, uint64(p.Heading), 10)
	return append(dst, '}')
}

// appendReportBody appends the fields of a positions answer shared by the
// 200 and 507 forms, without the enclosing braces:
//
//	"accepted":A,"rejected":R,"errors":[…],"unknown_fields":[…]
func appendReportBody(dst []byte, accepted, rejected int, rep *ingest.Report) []byte {
	dst = append(dst, `"accepted":`...)
	dst = strconv.AppendInt(dst, int64(accepted), 10)
	dst = append(dst, `,"rejected":`...)
	dst = strconv.AppendInt(dst, int64(rejected), 10)
	dst = append(dst, `,"errors":[`...)
	for i, e := range rep.Errors {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"line":`...)
		dst = strconv.AppendInt(dst, int64(e.Line), 10)
		dst = append(dst, `,"error":`...)
		dst = appendString(dst, e.Error)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"unknown_fields":[`...)
	for i, name := range rep.Unknown {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, name)
	}
	return append(dst, ']')
}

// appendError appends {"error":"msg"}.
func appendError(dst []byte, msg string) []byte {
	dst = append(dst, `{"error":`...)
	dst = appendString(dst, msg)
	return append(dst, '}')
}

package ingest

import (
	"math"
	"strconv"
)

// AppendNDJSON appends u as one NDJSON line (with its trailing '\n') that
// DecodeNDJSON decodes back to exactly u:
//
//	{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}
//
// Floats use the shortest representation that round-trips (strconv 'f' -1,
// or 'e' -1 below 1e-6 and from 1e21 up, so a line stays short); speed and
// heading are omitted when zero. NaN and ±Inf, which JSON cannot represent,
// are written as null. ID bytes '"', '\\' and controls are escaped; other
// bytes are copied, so an ID that is not valid UTF-8 yields a line that is
// not valid JSON either. AppendNDJSON does not validate u.
func AppendNDJSON(dst []byte, u *Update) []byte {
	dst = append(dst, `{"id":"`...)
	dst = appendStringBody(dst, u.ID)
	dst = append(dst, `","lat":`...)
	dst = appendFloat(dst, u.Lat)
	dst = append(dst, `,"lon":`...)
	dst = appendFloat(dst, u.Lon)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, u.TS, 10)
	if u.Speed != 0 {
		dst = append(dst, `,"speed":`...)
		dst = appendFloat(dst, u.Speed)
	}
	if u.Heading != 0 {
		dst = append(dst, `,"heading":`...)
		dst = appendFloat(dst, u.Heading)
	}
	return append(dst, "}\n"...)
}

func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.AppendFloat(dst, f, 'e', -1, 64)
	}
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}

func appendStringBody(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

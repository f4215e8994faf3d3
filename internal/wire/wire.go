// Package wire writes the JSON forms of fleetd's values, allocation-free
// into a caller's buffer, for every component that answers clients (the
// HTTP API, the live feed): the same coordinate, speed and string
// encoding everywhere, so a truck reads identically in a query result and
// in a live event.
//
// Invariants: output is always valid JSON (invalid UTF-8 becomes U+FFFD, as
// encoding/json does); coordinates print as degrees with at most 7
// decimals, exactly the stored fixed-point value; speeds as km/h with at
// most one decimal.
package wire

import (
	"strconv"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/geo"
)

// AppendString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD (as encoding/json does), so the output is always valid JSON.
func AppendString[T ~string | ~[]byte](dst []byte, s T) []byte {
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

// AppendCoord appends a fixed-point coordinate (1e-7 degree) as degrees with
// at most 7 decimals. float64(v)/1e7 is the correctly rounded quotient, so
// the shortest round-trip form is exactly the stored decimal.
func AppendCoord(dst []byte, v int32) []byte {
	return strconv.AppendFloat(dst, geo.FromFixed(v), 'f', -1, 64)
}

// AppendSpeed appends a speed stored in 0.1 km/h as km/h.
func AppendSpeed(dst []byte, s uint16) []byte {
	dst = strconv.AppendUint(dst, uint64(s/10), 10)
	if d := s % 10; d != 0 {
		dst = append(dst, '.', byte('0'+d))
	}
	return dst
}

// AppendError appends {"error":"msg"}, the body of every error answer.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, `{"error":`...)
	dst = AppendString(dst, msg)
	return append(dst, '}')
}

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
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/fleet"
)

// The number encoders use integer arithmetic only (no strconv, no floats):
// the live feed encodes millions of positions a second, and
// strconv.AppendFloat was two thirds of an event's encoding time (feed's
// BenchmarkEncodePosition: 113 ns with it, 38 without). Tests compare them
// with strconv on every speed and millions of coordinates.

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
// string as AppendString writes it: printable ASCII other than '"' and '\'.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// extend returns dst lengthened by n bytes, whose content is undefined.
// Writing digits into place spares the encoders a copy per number.
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

// AppendUint appends v in decimal, as strconv.AppendUint does.
func AppendUint(dst []byte, v uint32) []byte {
	n := decimalLen(v)
	dst = extend(dst, n)
	putDigits(dst[len(dst)-n:], v)
	return dst
}

// AppendString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD (as encoding/json does), so the output is always valid JSON. A
// string with nothing to escape (every valid truck ID) is copied at once.
func AppendString[T ~string | ~[]byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		if !plainJSON[s[i]] {
			return appendEscaped(dst, s)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendEscaped is AppendString for strings with bytes to escape.
func appendEscaped[T ~string | ~[]byte](dst []byte, s T) []byte {
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

// AppendCoord appends a fixed-point coordinate (1e-7 degree) as degrees:
// the integer part, then the seven fraction digits with trailing zeros
// removed (and no point when none remain). That is exactly the stored
// decimal, and the shortest form strconv.AppendFloat gives the float64
// geo.FromFixed(v).
func AppendCoord(dst []byte, v int32) []byte {
	u := uint32(v)
	if v < 0 {
		dst = append(dst, '-')
		u = -u // the magnitude, math.MinInt32 included
	}
	dst = AppendUint(dst, u/1e7)
	return appendFraction(dst, u%1e7, 7)
}

// appendFraction appends f, a fraction of digits decimal places, as
// "." and its digits without trailing zeros; nothing when f is 0.
func appendFraction(dst []byte, f uint32, digits int) []byte {
	if f == 0 {
		return dst
	}
	n := digits
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

// AppendMetres appends a distance in metres rounded to the millimetre, as
// strconv.AppendFloat(dst, math.Round(m*1000)/1000, 'f', -1, 64) does
// (the shortest form: trailing zeros and a bare point dropped), in
// integer arithmetic, in under half the time (BenchmarkAppendMetres).
// NaN, infinities and -0, which no distance is, append 0; beyond
// maxFastMetres (no distance on Earth is) the float path is taken.
func AppendMetres(dst []byte, m float64) []byte {
	if math.IsNaN(m) || math.IsInf(m, 0) {
		return append(dst, '0')
	}
	if m < 0 || m >= maxFastMetres {
		return strconv.AppendFloat(dst, math.Round(m*1000)/1000, 'f', -1, 64)
	}
	mm := uint64(math.Round(m * 1000))
	dst = AppendUint(dst, uint32(mm/1000))
	return appendFraction(dst, uint32(mm%1000), 3)
}

// maxFastMetres bounds AppendMetres's integer path: below it the whole
// metres fit a uint32, and a distance's millimetres are exact in a
// float64 and distinct ones print distinctly.
const maxFastMetres = 4e9

// AppendSpeed appends a speed stored in 0.1 km/h as km/h.
func AppendSpeed(dst []byte, s uint16) []byte {
	dst = AppendUint(dst, uint32(s/10))
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

// AppendAttrs appends `,"name":value` for each attribute present in a, in
// attribute order (package fleet's table gives names and units).
func AppendAttrs(dst []byte, a *fleet.Attrs) []byte {
	if a.Mask == 0 {
		return dst
	}
	for k := range fleet.Attr(fleet.NumAttrs) {
		if v, ok := a.Get(k); ok {
			dst = append(dst, ',', '"')
			dst = append(dst, k.Name()...)
			dst = append(dst, '"', ':')
			dst = strconv.AppendFloat(dst, k.Float(v), 'f', -1, 64)
		}
	}
	return dst
}

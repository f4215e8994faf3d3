package ingest

import (
	"math"
	"strconv"
	"unsafe"
)

// pow10 holds the powers of ten that are exactly representable as float64.
var pow10 = [...]float64{
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
}

// scanFloat validates the JSON number at s[i] < len(s) (as scanNumber does) and
// returns the position after it and its value, bit-for-bit what
// strconv.ParseFloat(token, 64) returns: ±Inf when the magnitude overflows,
// ±0 or a subnormal when it underflows.
//
// Fast path (Clinger): when the decimal significand has at most 19 digits,
// is ≤ 2^53 and the decimal exponent e satisfies |e| ≤ 22, both the
// significand and 10^|e| are exact float64 values, so the single IEEE
// multiplication or division rounds the exact decimal value correctly —
// which is what strconv.ParseFloat returns too. Every other token (long
// significands, large exponents) goes to strconv. Realistic GPS
// coordinates (≤ 15 significant digits) always take the fast path.
func (d *Decoder) scanFloat(s []byte, i int) (int, float64) {
	start := i
	neg := false
	if s[i] == '-' {
		neg = true
		i++
	}
	var (
		mant  uint64 // significant digits seen so far, at most 19 of them
		nd    int    // number of digits in mant (leading zeros excluded)
		exp   int    // decimal exponent to apply to mant
		exact = true // false once digits had to be dropped from mant
	)
	switch {
	case i >= len(s):
		return d.syntax(i, "expected digit in number", true), 0
	case s[i] == '0':
		i++
		if i < len(s) && isDigit(s[i]) {
			return d.syntax(i, "leading zero in number", false), 0
		}
	case isDigit(s[i]):
		for ; i < len(s) && isDigit(s[i]); i++ {
			if nd < 19 {
				mant = mant*10 + uint64(s[i]-'0')
				nd++
			} else {
				exact = false
			}
		}
	default:
		return d.syntax(i, "expected digit in number", true), 0
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			return d.syntax(i, "expected digit after decimal point", true), 0
		}
		for ; i < len(s) && isDigit(s[i]); i++ {
			if nd < 19 {
				mant = mant*10 + uint64(s[i]-'0')
				if mant != 0 {
					nd++
				}
				exp--
			} else {
				exact = false
			}
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return d.syntax(i, "expected digit in exponent", true), 0
		}
		e := 0
		for ; i < len(s) && isDigit(s[i]); i++ {
			if e < 1_000_000 { // far beyond any float64 exponent; keeps e from overflowing
				e = e*10 + int(s[i]-'0')
			}
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if exact {
		if mant == 0 {
			if neg {
				return i, math.Copysign(0, -1)
			}
			return i, 0
		}
		if mant <= 1<<53 && exp >= -22 && exp <= 22 {
			f := float64(mant)
			if exp < 0 {
				f /= pow10[-exp]
			} else {
				f *= pow10[exp]
			}
			if neg {
				f = -f
			}
			return i, f
		}
	}
	return i, parseFloatSlow(s[start:i])
}

// parseFloatSlow parses a token already validated as a JSON number.
func parseFloatSlow(tok []byte) float64 {
	// SAFETY: the string view aliases tok only for the duration of the call.
	// strconv.ParseFloat neither retains its argument on success nor lets the
	// caller observe it later: on error the returned *NumError holds a copy,
	// and we discard the error anyway (a validated JSON number can only fail
	// with ErrRange, whose value, ±Inf, is what we want). tok is not modified
	// while the call runs, so the string is immutable for its whole lifetime.
	f, _ := strconv.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), 64)
	return f
}

// plainDigits values the number at s[i] when it is a JSON integer of 1
// to 17 digits without sign, fraction or exponent (and no leading zero),
// returning its end; ok is false for anything else, which the caller
// scans in full.
func plainDigits(s []byte, i int) (n int64, end int, ok bool) {
	var u uint64
	j := i
	for ; j < len(s) && j-i < 18 && isDigit(s[j]); j++ {
		u = u*10 + uint64(s[j]-'0')
	}
	switch {
	case j == i || j-i == 18 || s[i] == '0' && j-i > 1:
		return 0, 0, false
	case j < len(s) && (s[j] == '.' || s[j] == 'e' || s[j] == 'E'):
		return 0, 0, false
	}
	return int64(u), j, true
}

// truncNumber returns the exact value of tok, a token already validated as
// a JSON number, truncated toward zero. ok is false when the truncated
// magnitude is 10^18 or more, which is out of range for any timestamp.
// Unlike a float64 round trip this is exact for every token, e.g.
// 4294967295.9999999999999999 truncates to 4294967295.
func truncNumber(tok []byte) (v int64, ok bool) {
	neg := tok[0] == '-'
	if neg {
		tok = tok[1:]
	}
	// Split the token into integer digits, fraction digits and exponent.
	n := 0
	for n < len(tok) && isDigit(tok[n]) {
		n++
	}
	intPart, rest := tok[:n], tok[n:]
	var frac []byte
	if len(rest) > 0 && rest[0] == '.' {
		n = 1
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		frac, rest = rest[1:n], rest[n:]
	}
	exp := 0
	if len(rest) > 0 { // 'e' or 'E'
		rest = rest[1:]
		eneg := rest[0] == '-'
		if rest[0] == '+' || rest[0] == '-' {
			rest = rest[1:]
		}
		for _, c := range rest {
			if exp < 1_000_000 {
				exp = exp*10 + int(c-'0')
			}
		}
		if eneg {
			exp = -exp
		}
	}
	// The digits intPart‖frac with the decimal point moved to index point.
	nd := len(intPart) + len(frac)
	point := len(intPart) + exp
	digit := func(k int) byte {
		if k < len(intPart) {
			return intPart[k] - '0'
		}
		return frac[k-len(intPart)] - '0'
	}
	var u uint64
	sig := 0 // significant digits accumulated into u
	for k := 0; k < min(point, nd); k++ {
		dg := digit(k)
		if u == 0 && dg == 0 {
			continue
		}
		if sig == 18 {
			return 0, false
		}
		u = u*10 + uint64(dg)
		sig++
	}
	if z := point - nd; z > 0 && u != 0 {
		if sig+z > 18 {
			return 0, false
		}
		for ; z > 0; z-- {
			u *= 10
		}
	}
	v = int64(u) // u < 10^18 < 2^63
	if neg {
		v = -v
	}
	return v, true
}

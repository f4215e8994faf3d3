package ingest

import (
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the JSON lexical layer shared by the object parser and the
// value skipper: whitespace, strings (validation and unescaping), literals and
// number grammar. Every scanning method takes the text s and a position i and
// returns the position after what it consumed, or -1 after recording a syntax
// error in d.err.

// strPlain[c] reports whether byte c can appear in a JSON string without any
// further inspection: printable ASCII other than '"' and '\\'.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipWS returns the position of the first non-whitespace byte at or after i.
// JSON whitespace is space, tab, CR and LF; NDJSON lines never contain LF, so
// the same function serves both framings.
func skipWS(s []byte, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString validates the body of a JSON string whose opening quote is at
// i-1. It returns the index of the closing quote and whether the body holds
// escape sequences (so appendUnescaped must be used to get its bytes), or -1.
// Raw control characters, invalid escapes and invalid UTF-8 are errors.
func (d *Decoder) scanString(s []byte, i int) (end int, esc bool) {
	for {
		for i < len(s) && strPlain[s[i]] {
			i++
		}
		if i >= len(s) {
			return d.syntax(i, "unterminated string", true), false
		}
		switch c := s[i]; {
		case c == '"':
			return i, esc
		case c == '\\':
			esc = true
			if i+1 >= len(s) {
				return d.syntax(i+1, "unterminated string", true), false
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || hex4(s[i+2:i+6]) < 0 {
					return d.syntax(i, `invalid \u escape in string (want 4 hex digits)`, false), false
				}
				i += 6
			default:
				return d.syntax(i+1, "invalid escape in string", true), false
			}
		case c < 0x20:
			return d.syntax(i, "unescaped control character in string", true), false
		default: // c >= 0x80
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				return d.syntax(i, "invalid UTF-8 in string", true), false
			}
			i += size
		}
	}
}

// hex4 returns the value of four hex digits, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// appendUnescaped appends the decoded bytes of raw, a string body already
// validated by scanString. Surrogates follow encoding/json: a valid \uD8xx\uDCxx
// pair becomes one rune, any other surrogate escape becomes U+FFFD.
func appendUnescaped(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		if raw[i] != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		c := raw[i+1]
		i += 2
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = hex4(raw[i+2:])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					i += 6
					r = dec
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
	}
	return dst
}

// scanNumber validates the JSON number grammar
//
//	-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?
//
// starting at s[i], i < len(s), and returns the position after it, or -1.
func (d *Decoder) scanNumber(s []byte, i int) int {
	if s[i] == '-' {
		i++
	}
	switch {
	case i >= len(s):
		return d.syntax(i, "expected digit in number", true)
	case s[i] == '0':
		i++
		if i < len(s) && isDigit(s[i]) {
			return d.syntax(i, "leading zero in number", false)
		}
	case isDigit(s[i]):
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return d.syntax(i, "expected digit in number", true)
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			return d.syntax(i, "expected digit after decimal point", true)
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return d.syntax(i, "expected digit in exponent", true)
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return i
}

// literal consumes the keyword lit ("true", "false" or "null") at s[i].
func (d *Decoder) literal(s []byte, i int, lit string) int {
	for k := 0; k < len(lit); k++ {
		if i+k >= len(s) || s[i+k] != lit[k] {
			return d.syntax(i, "invalid literal (want true, false or null)", false)
		}
	}
	return i + len(lit)
}

// skipValue validates and skips any JSON value at s[i]. depth is the nesting
// depth of the container holding the value (the update object is depth 1);
// an object or array deeper than MaxDepth is an error.
func (d *Decoder) skipValue(s []byte, i, depth int) int {
	if i >= len(s) {
		return d.syntax(i, "expected a value", true)
	}
	switch c := s[i]; c {
	case '"':
		end, _ := d.scanString(s, i+1)
		if end < 0 {
			return -1
		}
		return end + 1
	case '{', '[':
		if depth+1 > MaxDepth {
			return d.tooDeep(i)
		}
		if c == '{' {
			return d.skipObject(s, i, depth+1)
		}
		return d.skipArray(s, i, depth+1)
	case 't':
		return d.literal(s, i, "true")
	case 'f':
		return d.literal(s, i, "false")
	case 'n':
		return d.literal(s, i, "null")
	default:
		if c == '-' || isDigit(c) {
			return d.scanNumber(s, i)
		}
		return d.syntax(i, "expected a value", true)
	}
}

// skipObject skips the object starting with '{' at s[i], which is at depth.
func (d *Decoder) skipObject(s []byte, i, depth int) int {
	i = skipWS(s, i+1)
	if i < len(s) && s[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(s) || s[i] != '"' {
			return d.syntax(i, `expected '"' to start object key`, true)
		}
		end, _ := d.scanString(s, i+1)
		if end < 0 {
			return -1
		}
		i = skipWS(s, end+1)
		if i >= len(s) || s[i] != ':' {
			return d.syntax(i, "expected ':' after object key", true)
		}
		if i = d.skipValue(s, skipWS(s, i+1), depth); i < 0 {
			return -1
		}
		i = skipWS(s, i)
		if i < len(s) && s[i] == ',' {
			i = skipWS(s, i+1)
			continue
		}
		if i < len(s) && s[i] == '}' {
			return i + 1
		}
		return d.syntax(i, "expected ',' or '}' after object value", true)
	}
}

// skipArray skips the array starting with '[' at s[i], which is at depth.
func (d *Decoder) skipArray(s []byte, i, depth int) int {
	i = skipWS(s, i+1)
	if i < len(s) && s[i] == ']' {
		return i + 1
	}
	for {
		if i = d.skipValue(s, i, depth); i < 0 {
			return -1
		}
		i = skipWS(s, i)
		if i < len(s) && s[i] == ',' {
			i = skipWS(s, i+1)
			continue
		}
		if i < len(s) && s[i] == ']' {
			return i + 1
		}
		return d.syntax(i, "expected ',' or ']' after array element", true)
	}
}

package ingest

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
)

const testNow = 1764000000

const good = `{"id":"truck-1","lat":1,"lon":2,"ts":1764000001}`

var goodUpdate = Update{ID: []byte("truck-1"), Lat: 1, Lon: 2, TS: 1764000001}

func sameUpdate(a, b Update) bool {
	return bytes.Equal(a.ID, b.ID) &&
		math.Float64bits(a.Lat) == math.Float64bits(b.Lat) &&
		math.Float64bits(a.Lon) == math.Float64bits(b.Lon) &&
		a.TS == b.TS &&
		math.Float64bits(a.Speed) == math.Float64bits(b.Speed) &&
		math.Float64bits(a.Heading) == math.Float64bits(b.Heading)
}

func fmtUpdate(u Update) string {
	return fmt.Sprintf("{ID:%q Lat:%v Lon:%v TS:%d Speed:%v Heading:%v}", u.ID, u.Lat, u.Lon, u.TS, u.Speed, u.Heading)
}

// TestRejectLine puts each bad line between two good ones and checks that it
// is the only rejection, with the right line number and message.
func TestRejectLine(t *testing.T) {
	deep := func(n int) string {
		return `{"id":"a","lat":1,"lon":2,"x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`
	}
	long := strings.Repeat("a", 65)
	tests := []struct {
		name, line, want string
	}{
		// Ranges.
		{"lat high", `{"id":"a","lat":91,"lon":0}`, `lat 91 out of range [-90, 90]`},
		{"lat low", `{"id":"a","lat":-90.0001,"lon":0}`, `lat -90.0001 out of range [-90, 90]`},
		{"lon high", `{"id":"a","lat":0,"lon":180.5}`, `lon 180.5 out of range [-180, 180]`},
		{"lon low exp", `{"id":"a","lat":0,"lon":-1.81e2}`, `lon -1.81e2 out of range [-180, 180]`},
		{"lat huge exponent", `{"id":"a","lat":1e999,"lon":0}`, `lat 1e999 out of range [-90, 90]`},
		{"lon huge negative", `{"id":"a","lat":0,"lon":-1e999}`, `lon -1e999 out of range [-180, 180]`},
		{"speed negative", `{"id":"a","lat":0,"lon":0,"speed":-1}`, `speed -1 out of range [0, 1000]`},
		{"speed high", `{"id":"a","lat":0,"lon":0,"speed":1000.5}`, `speed 1000.5 out of range [0, 1000]`},
		{"heading 360", `{"id":"a","lat":0,"lon":0,"heading":360}`, `heading 360 out of range [0, 360)`},
		{"heading negative", `{"id":"a","lat":0,"lon":0,"heading":-0.1}`, `heading -0.1 out of range [0, 360)`},
		{"ts zero", `{"id":"a","lat":0,"lon":0,"ts":0}`, `ts 0 out of range [1, 4294967295]: 1970-01-01 is a device clock that is not set; omit ts to use the server's clock`},
		{"ts fraction truncates to zero", `{"id":"a","lat":0,"lon":0,"ts":0.9}`, `ts 0.9 out of range [1, 4294967295]: 1970-01-01 is a device clock that is not set; omit ts to use the server's clock`},
		{"ts negative", `{"id":"a","lat":0,"lon":0,"ts":-5}`, `ts -5 out of range [1, 4294967295]`},
		{"ts 2^32", `{"id":"a","lat":0,"lon":0,"ts":4294967296}`, `ts 4294967296 out of range [1, 4294967295]: want Unix seconds, or milliseconds (100000000000 to 4294967295999)`},
		{"ts huge", `{"id":"a","lat":0,"lon":0,"ts":1e999}`, `ts 1e999 out of range [1, 4294967295]: want Unix seconds, or milliseconds (100000000000 to 4294967295999)`},
		{"ts long token", `{"id":"a","lat":0,"lon":0,"ts":123456789012345678901234567890123456789012345}`,
			`ts 1234567890123456789012345678901234567890... out of range [1, 4294967295]: want Unix seconds, or milliseconds (100000000000 to 4294967295999)`},
		{"ts before 1970", `{"id":"a","lat":0,"lon":0,"ts":"1960-01-01T00:00:00Z"}`,
			`ts "1960-01-01T00:00:00Z" (Unix -315619200) out of range [1, 4294967295]`},
		{"ts after 2106", `{"id":"a","lat":0,"lon":0,"ts":"2107-01-01T00:00:00Z"}`,
			`ts "2107-01-01T00:00:00Z" (Unix 4323283200) out of range [1, 4294967295]`},
		// Required fields and types.
		{"missing lon", `{"id":"a","lat":0}`, `missing required field "lon"`},
		{"missing lat", `{"id":"a","lon":0}`, `missing required field "lat"`},
		{"missing id", `{"lat":0,"lon":0}`, `missing required field "id"`},
		{"empty object", `{}`, `missing required field "id"`},
		{"id number", `{"id":42,"lat":0,"lon":0}`, `id must be a string`},
		{"id null", `{"id":null,"lat":0,"lon":0}`, `id must be a string`},
		{"lat string", `{"id":"a","lat":"40.7","lon":0}`, `lat must be a number`},
		{"lat null", `{"id":"a","lat":null,"lon":0}`, `lat must be a number`},
		{"lon object", `{"id":"a","lat":0,"lon":{"deg":1}}`, `lon must be a number`},
		{"speed string", `{"id":"a","lat":0,"lon":0,"speed":"fast"}`, `speed must be a number`},
		{"heading bool", `{"id":"a","lat":0,"lon":0,"heading":true}`, `heading must be a number`},
		{"ts bool", `{"id":"a","lat":0,"lon":0,"ts":true}`, `ts must be a number or an RFC 3339 string`},
		{"ts array", `{"id":"a","lat":0,"lon":0,"ts":[1]}`, `ts must be a number or an RFC 3339 string`},
		{"ts not a time", `{"id":"a","lat":0,"lon":0,"ts":"yesterday"}`, `invalid ts "yesterday": must be Unix seconds or an RFC 3339 time`},
		{"ts numeric string", `{"id":"a","lat":0,"lon":0,"ts":"1764000000"}`, `invalid ts "1764000000": must be Unix seconds or an RFC 3339 time`},
		{"ts empty string", `{"id":"a","lat":0,"lon":0,"ts":""}`, `invalid ts "": must be Unix seconds or an RFC 3339 time`},
		{"ts bad second", `{"id":"a","lat":0,"lon":0,"ts":"2025-01-01T00:00:60Z"}`, `invalid ts "2025-01-01T00:00:60Z": must be Unix seconds or an RFC 3339 time`},
		{"first bad field wins", `{"id":"a","lat":0,"lon":0,"heading":400,"speed":-1}`, `speed -1 out of range [0, 1000]`},
		{"last duplicate wins (bad)", `{"id":"a","lat":1,"lat":91,"lon":0}`, `lat 91 out of range [-90, 90]`},
		{"last duplicate wins (type)", `{"id":"a","lat":1,"lat":"1","lon":0}`, `lat must be a number`},
		// IDs.
		{"id with space", `{"id":"tr uck","lat":0,"lon":0}`, `invalid id "tr uck": must be 1-64 bytes of [A-Za-z0-9_.:-]`},
		{"id empty", `{"id":"","lat":0,"lon":0}`, `invalid id "": must be 1-64 bytes of [A-Za-z0-9_.:-]`},
		{"id too long", `{"id":"` + long + `","lat":0,"lon":0}`, `invalid id "` + long[:64] + `"... (65 bytes): must be 1-64 bytes of [A-Za-z0-9_.:-]`},
		{"id escaped space", `{"id":"tr\u0020uck","lat":0,"lon":0}`, `invalid id "tr uck": must be 1-64 bytes of [A-Za-z0-9_.:-]`},
		{"id non-ASCII", `{"id":"caf\u00e9","lat":0,"lon":0}`, `invalid id "café": must be 1-64 bytes of [A-Za-z0-9_.:-]`},
		{"id slash", `{"id":"a/b","lat":0,"lon":0}`, `invalid id "a/b": must be 1-64 bytes of [A-Za-z0-9_.:-]`},
		// Malformed JSON.
		{"missing colon", `{"id":"a","lat" 1,"lon":0}`, `invalid JSON at column 17: expected ':' after object key, found '1'`},
		{"NaN", `{"id":"a","lat":NaN,"lon":0}`, `invalid JSON at column 17: expected a value, found 'N'`},
		{"Infinity", `{"id":"a","lat":0,"lon":Infinity}`, `invalid JSON at column 25: expected a value, found 'I'`},
		{"-Infinity", `{"id":"a","lat":0,"lon":-Infinity}`, `invalid JSON at column 26: expected digit in number, found 'I'`},
		{"leading zero", `{"id":"a","lat":01,"lon":0}`, `invalid JSON at column 18: leading zero in number`},
		{"bare decimal point", `{"id":"a","lat":1.,"lon":0}`, `invalid JSON at column 19: expected digit after decimal point, found ','`},
		{"empty exponent", `{"id":"a","lat":1e,"lon":0}`, `invalid JSON at column 19: expected digit in exponent, found ','`},
		{"lone minus", `{"id":"a","lat":-,"lon":0}`, `invalid JSON at column 18: expected digit in number, found ','`},
		{"plus sign", `{"id":"a","lat":+1,"lon":0}`, `invalid JSON at column 17: expected a value, found '+'`},
		{"hex number", `{"id":"a","lat":0x1,"lon":0}`, `invalid JSON at column 18: expected ',' or '}' after object value, found 'x'`},
		{"trailing garbage", `{"id":"a","lat":0,"lon":0} x`, `invalid JSON at column 28: unexpected data after object, found 'x'`},
		{"two objects", `{"id":"a","lat":0,"lon":0}{}`, `invalid JSON at column 27: unexpected data after object, found '{'`},
		{"trailing comma", `{"id":"a","lat":0,"lon":0,}`, `invalid JSON at column 27: expected '"' to start object key, found '}'`},
		{"unquoted key", `{id:"a","lat":0,"lon":0}`, `invalid JSON at column 2: expected '"' to start object key, found 'i'`},
		{"single quotes", `{'id':'a'}`, `invalid JSON at column 2: expected '"' to start object key, found '\''`},
		{"missing value", `{"id":"a","lat":,"lon":0}`, `invalid JSON at column 17: expected a value, found ','`},
		{"raw tab in string", "{\"id\":\"a\tb\",\"lat\":0,\"lon\":0}", `invalid JSON at column 9: unescaped control character in string, found byte 0x09`},
		{"raw NUL in key", "{\"i\x00d\":\"a\",\"lat\":0,\"lon\":0}", `invalid JSON at column 4: unescaped control character in string, found byte 0x00`},
		{"invalid UTF-8 in value", "{\"id\":\"a\",\"lat\":0,\"lon\":0,\"x\":\"\xff\"}", `invalid JSON at column 32: invalid UTF-8 in string, found byte 0xFF`},
		{"invalid UTF-8 in key", "{\"id\":\"a\",\"lat\":0,\"lon\":0,\"\xc3\x28\":1}", `invalid JSON at column 28: invalid UTF-8 in string, found byte 0xC3`},
		{"UTF-8 surrogate bytes", "{\"id\":\"a\",\"lat\":0,\"lon\":0,\"x\":\"\xed\xa0\x80\"}", `invalid JSON at column 32: invalid UTF-8 in string, found byte 0xED`},
		{"invalid escape", `{"id":"a\x","lat":0,"lon":0}`, `invalid JSON at column 10: invalid escape in string, found 'x'`},
		{"short unicode escape", `{"id":"a\u12","lat":0,"lon":0}`, `invalid JSON at column 9: invalid \u escape in string (want 4 hex digits)`},
		{"unterminated string", `{"id":"abc`, `invalid JSON at column 11: unterminated string, found end of line`},
		{"truncated after comma", `{"id":"a","lat":0,`, `invalid JSON at column 19: expected '"' to start object key, found end of line`},
		{"truncated after colon", `{"id":"a","lat":`, `invalid JSON at column 17: expected a value, found end of line`},
		{"truncated after value", `{"id":"a","lat":0`, `invalid JSON at column 18: expected ',' or '}' after object value, found end of line`},
		{"only brace", `{`, `invalid JSON at column 2: expected '"' to start object key, found end of line`},
		{"bad literal", `{"id":"a","lat":0,"lon":0,"x":tru}`, `invalid JSON at column 31: invalid literal (want true, false or null)`},
		{"unclosed nested array", `{"id":"a","lat":0,"lon":0,"x":[1,2}`, `invalid JSON at column 35: expected ',' or ']' after array element, found '}'`},
		{"nested object without colon", `{"id":"a","lat":0,"lon":0,"x":{"y"}}`, `invalid JSON at column 35: expected ':' after object key, found '}'`},
		{"too deep", deep(32), `nesting deeper than 32 levels at column 62`},
		{"too deep object", `{"id":"a","lat":0,"lon":0,"x":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat("}", 40) + `}`, `nesting deeper than 32 levels at column 186`},
		{"BOM", "\xef\xbb\xbf" + good, `invalid JSON at column 1: expected '{' to start an update object, found byte 0xEF`},
		{"form feed is not whitespace", "\f" + good, `invalid JSON at column 1: expected '{' to start an update object, found byte 0x0C`},
		// Not an object.
		{"array line", `[` + good + `]`, `expected a JSON object, found array`},
		{"number line", `42`, `expected a JSON object, found number`},
		{"string line", `"hello"`, `expected a JSON object, found string`},
		{"null line", `null`, `expected a JSON object, found null`},
		{"bool line", `true`, `expected a JSON object, found boolean`},
		{"garbage line", `hello`, `invalid JSON at column 1: expected '{' to start an update object, found 'h'`},
		{"indented garbage", `  =`, `invalid JSON at column 3: expected '{' to start an update object, found '='`},
	}
	var d Decoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, eol := range []string{"\n", "\r\n"} {
				body := good + eol + tt.line + eol + good + eol
				ups, rep := d.DecodeNDJSON([]byte(body), testNow)
				if rep.Accepted != 2 || rep.Rejected != 1 || len(ups) != 2 || len(rep.Errors) != 1 {
					t.Fatalf("eol %q: accepted %d rejected %d updates %d errors %v; want 2, 1, 2, 1", eol, rep.Accepted, rep.Rejected, len(ups), rep.Errors)
				}
				for _, u := range ups {
					if !sameUpdate(u, goodUpdate) {
						t.Errorf("good line decoded as %s", fmtUpdate(u))
					}
				}
				if e := rep.Errors[0]; e.Line != 2 || e.Error != tt.want {
					t.Errorf("eol %q: got line %d %q\nwant line 2 %q", eol, e.Line, e.Error, tt.want)
				}
			}
			// As the last line without newline (a truncated body) it is
			// still exactly one rejected line.
			ups, rep := d.DecodeNDJSON([]byte(good+"\n"+tt.line), testNow)
			if rep.Accepted != 1 || rep.Rejected != 1 || len(ups) != 1 || rep.Errors[0].Line != 2 {
				t.Errorf("as last line: accepted %d rejected %d errors %v", rep.Accepted, rep.Rejected, rep.Errors)
			}
		})
	}
}

// TestAcceptLine checks the decoded values of valid lines.
func TestAcceptLine(t *testing.T) {
	u := func(id string, lat, lon float64, ts int64, speed, heading float64) Update {
		return Update{ID: []byte(id), Lat: lat, Lon: lon, TS: ts, Speed: speed, Heading: heading}
	}
	tests := []struct {
		name, line string
		want       Update
		unknown    []string
	}{
		{"example", `{"id": "truck-0000042", "lat": 40.7128, "lon": -74.006, "ts": 1764000000, "speed": 52.5, "heading": 90}`,
			u("truck-0000042", 40.7128, -74.006, 1764000000, 52.5, 90), nil},
		{"ts defaults to now", `{"id":"a","lat":0,"lon":0}`, u("a", 0, 0, testNow, 0, 0), nil},
		{"null optionals are absent", `{"id":"a","lat":0,"lon":0,"ts":null,"speed":null,"heading":null}`, u("a", 0, 0, testNow, 0, 0), nil},
		{"ts fraction truncated", `{"id":"a","lat":0,"lon":0,"ts":1764000000.9}`, u("a", 0, 0, 1764000000, 0, 0), nil},
		{"ts exponent", `{"id":"a","lat":0,"lon":0,"ts":1.7640000009e9}`, u("a", 0, 0, 1764000000, 0, 0), nil},
		{"ts exact truncation at max", `{"id":"a","lat":0,"lon":0,"ts":4294967295.99999999999999999999}`, u("a", 0, 0, 4294967295, 0, 0), nil},
		{"ts min", `{"id":"a","lat":0,"lon":0,"ts":1}`, u("a", 0, 0, 1, 0, 0), nil},
		{"ts 1.5", `{"id":"a","lat":0,"lon":0,"ts":1.5}`, u("a", 0, 0, 1, 0, 0), nil},
		{"ts 10e-1", `{"id":"a","lat":0,"lon":0,"ts":10e-1}`, u("a", 0, 0, 1, 0, 0), nil},
		{"ts RFC 3339 Z", `{"id":"a","lat":0,"lon":0,"ts":"2025-11-24T16:00:00Z"}`, u("a", 0, 0, 1764000000, 0, 0), nil},
		{"ts RFC 3339 offset", `{"id":"a","lat":0,"lon":0,"ts":"2025-11-24T17:30:00+01:30"}`, u("a", 0, 0, 1764000000, 0, 0), nil},
		{"ts RFC 3339 fraction", `{"id":"a","lat":0,"lon":0,"ts":"2025-11-24T16:00:00.999Z"}`, u("a", 0, 0, 1764000000, 0, 0), nil},
		{"ts RFC 3339 escaped", `{"id":"a","lat":0,"lon":0,"ts":"2025-11-24T16:00:00\u005a"}`, u("a", 0, 0, 1764000000, 0, 0), nil},
		{"boundaries", `{"id":"a","lat":-90,"lon":180,"speed":1000,"heading":359.9999}`, u("a", -90, 180, testNow, 1000, 359.9999), nil},
		{"negative zero", `{"id":"a","lat":-0,"lon":-0.0e5,"speed":-0}`, u("a", math.Copysign(0, -1), math.Copysign(0, -1), testNow, math.Copysign(0, -1), 0), nil},
		{"exponent forms", `{"id":"a","lat":4.07128E1,"lon":-7400.6e-2}`, u("a", 40.7128, -74.006, testNow, 0, 0), nil},
		{"underflow is zero", `{"id":"a","lat":1e-400,"lon":0}`, u("a", 0, 0, testNow, 0, 0), nil},
		{"long mantissa", `{"id":"a","lat":40.71280000000000000000000001,"lon":0}`, u("a", 40.7128, 0, testNow, 0, 0), nil},
		{"id charset", `{"id":"AZaz09_.:-","lat":0,"lon":0}`, u("AZaz09_.:-", 0, 0, testNow, 0, 0), nil},
		{"id 64 bytes", `{"id":"` + strings.Repeat("x", 64) + `","lat":0,"lon":0}`, u(strings.Repeat("x", 64), 0, 0, testNow, 0, 0), nil},
		{"id escapes", `{"id":"truck\u002D1\u005f2","lat":0,"lon":0}`, u("truck-1_2", 0, 0, testNow, 0, 0), nil},
		{"key escapes", `{"\u0069d":"a","l\u0061t":1,"lo\u006e":2}`, u("a", 1, 2, testNow, 0, 0), nil},
		{"whitespace", " \t{ \"id\" :\t\"a\" ,\r\"lat\" : 1 , \"lon\":2 } \t\r", u("a", 1, 2, testNow, 0, 0), nil},
		{"last duplicate wins", `{"id":"bad id","lat":91,"lat":"x","lat":1,"lon":2,"id":"a","speed":5,"speed":null}`, u("a", 1, 2, testNow, 0, 0), nil},
		{"unknown fields of every type", `{"x":{"a":[1,{"b":null}],"c":"\"}"},"id":"a","y":[],"lat":1,"z":"\u00e9\ud83d\ude00","lon":2,"t":true,"f":false,"n":null,"num":-1.5e-3,"x":1}`,
			u("a", 1, 2, testNow, 0, 0), []string{"x", "y", "z", "t", "f", "n", "num"}},
		{"unknown escaped names", `{"id":"a","lat":1,"lon":2,"\u00e9":1,"\ud800":2,"a\"b":3}`, u("a", 1, 2, testNow, 0, 0), []string{"é", "\ufffd", `a"b`}},
		{"nesting at the limit", `{"id":"a","lat":1,"lon":2,"x":` + strings.Repeat("[", 31) + strings.Repeat("]", 31) + `}`, u("a", 1, 2, testNow, 0, 0), []string{"x"}},
		{"DEL and U+FFFD in strings", "{\"id\":\"a\",\"lat\":1,\"lon\":2,\"x\":\"\x7f\xef\xbf\xbd\"}", u("a", 1, 2, testNow, 0, 0), []string{"x"}},
	}
	var d Decoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ups, rep := d.DecodeNDJSON([]byte(tt.line), testNow)
			if rep.Rejected != 0 || rep.Accepted != 1 || len(ups) != 1 {
				t.Fatalf("accepted %d rejected %d errors %v", rep.Accepted, rep.Rejected, rep.Errors)
			}
			if !sameUpdate(ups[0], tt.want) {
				t.Errorf("got  %s\nwant %s", fmtUpdate(ups[0]), fmtUpdate(tt.want))
			}
			if fmt.Sprint(rep.Unknown) != fmt.Sprint(tt.unknown) {
				t.Errorf("unknown %q, want %q", rep.Unknown, tt.unknown)
			}
			// The same object as an array element decodes the same.
			ups, rep = d.DecodeArray([]byte("[\n"+tt.line+"\n]"), testNow)
			if rep.Rejected != 0 || len(ups) != 1 || !sameUpdate(ups[0], tt.want) {
				t.Errorf("as array element: %v %v", rep.Errors, ups)
			}
		})
	}
}

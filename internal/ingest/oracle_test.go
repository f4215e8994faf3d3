package ingest

import (
	"encoding/json"
	"flag"
	"math"
	"regexp"
	"testing"
	"time"
	"unicode/utf8"
)

var seedFlag = flag.Uint64("ingest.seed", 0, "seed for randomized tests (0: time-based)")

// testSeed returns the seed for a randomized test and logs it so that a
// failure can be replayed with -ingest.seed.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -ingest.seed=%d)", s, s)
	return s
}

var oracleID = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// oracle judges one entry (an NDJSON line or an array element) with
// encoding/json and math/big only, independently of the decoder.
// comparable is false for inputs on which encoding/json is deliberately more
// lenient than the contract: invalid UTF-8 (which it replaces) and nesting
// deeper than MaxDepth (it allows 10000 levels), plus ts exponents too large
// to evaluate exactly.
func oracle(entry []byte, now int64) (u Update, valid, comparable bool) {
	if !utf8.Valid(entry) || maxNesting(entry) > MaxDepth {
		return u, false, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(entry, &m); err != nil || m == nil {
		return u, false, true
	}
	isNull := func(raw json.RawMessage) bool { return string(raw) == "null" }
	// id
	raw, ok := m["id"]
	var id string
	if !ok || isNull(raw) || json.Unmarshal(raw, &id) != nil || !oracleID.MatchString(id) {
		return u, false, true
	}
	u.ID = []byte(id)
	// lat, lon: required numbers.
	for _, f := range []struct {
		name     string
		dst      *float64
		min, max float64
	}{{"lat", &u.Lat, -90, 90}, {"lon", &u.Lon, -180, 180}} {
		raw, ok := m[f.name]
		if !ok || isNull(raw) || json.Unmarshal(raw, f.dst) != nil || !(*f.dst >= f.min && *f.dst <= f.max) {
			return u, false, true
		}
	}
	// ts
	u.TS = now
	if raw, ok := m["ts"]; ok && !isNull(raw) {
		switch raw[0] {
		case '"':
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return u, false, true
			}
			tm, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return u, false, true
			}
			u.TS = tm.Unix()
		default:
			var n json.Number
			if json.Unmarshal(raw, &n) != nil {
				return u, false, true
			}
			v, ok := bigTrunc(string(n))
			if !ok {
				return u, false, false
			}
			if !v.IsInt64() {
				return u, false, true
			}
			u.TS = v.Int64()
			if u.TS >= 1e11 && u.TS < 1e14 { // milliseconds
				u.TS /= 1000
			}
		}
	}
	if u.TS < 1 || u.TS > math.MaxUint32 {
		return u, false, true
	}
	// speed, heading: optional numbers.
	for _, f := range []struct {
		name string
		dst  *float64
		ok   func(float64) bool
	}{
		{"speed", &u.Speed, func(v float64) bool { return v >= 0 && v <= 1000 }},
		{"heading", &u.Heading, func(v float64) bool { return v >= 0 && v < 360 }},
	} {
		if raw, ok := m[f.name]; ok && !isNull(raw) {
			if json.Unmarshal(raw, f.dst) != nil || !f.ok(*f.dst) {
				return u, false, true
			}
		}
	}
	return u, true, true
}

// maxNesting returns the deepest bracket nesting outside strings.
func maxNesting(b []byte) int {
	depth, deepest, inStr := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// checkUpdate verifies every validation rule on an accepted update, without
// using the decoder's own helpers.
func checkUpdate(t testing.TB, u Update) {
	t.Helper()
	if !oracleID.Match(u.ID) || !(u.Lat >= -90 && u.Lat <= 90) || !(u.Lon >= -180 && u.Lon <= 180) ||
		u.TS < 1 || u.TS > math.MaxUint32 || !(u.Speed >= 0 && u.Speed <= 1000) || !(u.Heading >= 0 && u.Heading < 360) {
		t.Fatalf("accepted update breaks the rules: %s", fmtUpdate(u))
	}
}

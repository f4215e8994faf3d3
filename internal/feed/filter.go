package feed

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
)

// MaxIDs is the most truck IDs one subscriber may name in ids=.
const MaxIDs = 1000

// Event type bits of match.types.
const (
	typePosition uint8 = 1 << iota
	typeExpired
	typeAlert
	typeLag
	typeAll = typePosition | typeExpired | typeAlert | typeLag
)

// maxHzLimit bounds max_hz; above it the millisecond clock cannot throttle.
const maxHzLimit = 1000

// match is the pointer-free part of a subscriber's filter that publishers
// test. The box is in fixed point with exact edges: minLat is the smallest
// fixed value whose degrees are ≥ the requested minLat, and so on, so that
// inBox(lat, lon) == geo.Box.Contains(FromFixed(lat), FromFixed(lon)).
type match struct {
	minLat, maxLat, minLon, maxLon int32
	hasBox                         bool
	cross                          bool // minLon > maxLon: the box crosses the antimeridian
	hasIDs                         bool
	types                          uint8
	hzMs                           uint32 // max_hz as a minimum interval in ms; 0 = unthrottled
	wide                           bool   // conflated (see Hub.widePeriod); set by subscribe
}

// inBox reports whether the point passes the bbox filter (true without one).
func (m *match) inBox(lat, lon int32) bool {
	if !m.hasBox {
		return true
	}
	if lat < m.minLat || lat > m.maxLat {
		return false
	}
	if m.cross {
		return lon >= m.minLon || lon <= m.maxLon
	}
	return lon >= m.minLon && lon <= m.maxLon
}

// filter is a parsed subscription request.
type filter struct {
	m   match
	box geo.Box  // the requested bbox, when m.hasBox
	ids []string // distinct, in request order; nil without ids=
}

// paramError is a bad query parameter; Msg is what the client is told.
type paramError struct{ Msg string }

func (e *paramError) Error() string { return "feed: " + e.Msg }

func paramErrf(format string, args ...any) error {
	return &paramError{Msg: fmt.Sprintf(format, args...)}
}

// clip shortens a client value quoted back in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// parseFilter parses the subscription query: bbox, ids, types and max_hz,
// each at most once; other parameters are ignored.
func parseFilter(rawQuery string) (filter, error) {
	f := filter{m: match{types: typeAll}}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return f, paramErrf("malformed query string: %v", err)
	}
	for _, name := range [...]string{"bbox", "ids", "types", "max_hz"} {
		vs, ok := q[name]
		if !ok {
			continue
		}
		if len(vs) > 1 {
			return f, paramErrf("query parameter %q given %d times; give it once", name, len(vs))
		}
		v := vs[0]
		switch name {
		case "bbox":
			err = f.parseBBox(v)
		case "ids":
			err = f.parseIDs(v)
		case "types":
			err = f.parseTypes(v)
		case "max_hz":
			err = f.parseMaxHz(v)
		}
		if err != nil {
			return f, err
		}
	}
	return f, nil
}

// parseBBox parses the bbox parameter (see geo.ParseBox); minLon > maxLon
// crosses the antimeridian.
func (f *filter) parseBBox(s string) error {
	b, err := geo.ParseBox(s)
	if err != nil {
		return paramErrf("%s", err)
	}
	v := [4]float64{b.MinLon, b.MinLat, b.MaxLon, b.MaxLat}
	f.box = geo.Box{MinLon: v[0], MinLat: v[1], MaxLon: v[2], MaxLat: v[3]}
	f.m.hasBox = true
	f.m.cross = v[0] > v[2]
	f.m.minLon, f.m.maxLon = ceilFixed(v[0]), floorFixed(v[2])
	f.m.minLat, f.m.maxLat = ceilFixed(v[1]), floorFixed(v[3])
	return nil
}

// ceilFixed returns the smallest fixed-point value whose degrees are ≥ deg.
// deg is within ±180, so the result fits an int32.
func ceilFixed(deg float64) int32 {
	v := int32(math.Ceil(deg * geo.Scale))
	for geo.FromFixed(v-1) >= deg {
		v--
	}
	for geo.FromFixed(v) < deg {
		v++
	}
	return v
}

// floorFixed returns the largest fixed-point value whose degrees are ≤ deg.
func floorFixed(deg float64) int32 {
	v := int32(math.Floor(deg * geo.Scale))
	for geo.FromFixed(v+1) <= deg {
		v++
	}
	for geo.FromFixed(v) > deg {
		v--
	}
	return v
}

func (f *filter) parseIDs(s string) error {
	if s == "" {
		return paramErrf("bad ids: empty list")
	}
	n := strings.Count(s, ",") + 1
	if n > MaxIDs {
		return paramErrf("too many ids: %d (at most %d)", n, MaxIDs)
	}
	seen := make(map[string]struct{}, n)
	f.ids = make([]string, 0, n)
	for id := range strings.SplitSeq(s, ",") {
		if !fleet.ValidID([]byte(id)) {
			return paramErrf("bad ids: %q is not a truck ID (1–%d bytes of A-Z a-z 0-9 _ . : -)", clip(id), MaxIDLen)
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		f.ids = append(f.ids, id)
	}
	f.m.hasIDs = true
	return nil
}

func (f *filter) parseTypes(s string) error {
	var t uint8
	for name := range strings.SplitSeq(s, ",") {
		switch strings.TrimSpace(name) {
		case "position":
			t |= typePosition
		case "expired":
			t |= typeExpired
		case "alert":
			t |= typeAlert
		case "lag":
			t |= typeLag
		default:
			return paramErrf("unknown type %q in types (want position, expired, alert or lag, comma-separated)", clip(name))
		}
	}
	f.m.types = t
	return nil
}

func (f *filter) parseMaxHz(s string) error {
	x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(x) || x <= 0 || x > maxHzLimit {
		return paramErrf("bad max_hz %q: want a number greater than 0 and at most %d (position events per truck per second)", clip(s), maxHzLimit)
	}
	// The interval is rounded up to whole milliseconds so that no
	// one-second window holds more than max_hz events of one truck.
	ms := math.Ceil(1000 / x)
	if ms > math.MaxUint32/2 {
		ms = math.MaxUint32 / 2 // about 24 days; the ms clock wraps at 49
	}
	f.m.hzMs = uint32(ms)
	return nil
}

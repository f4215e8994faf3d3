package api

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/store"
)

// Query limits.
const (
	DefaultK = 10    // nearby's k when absent
	MaxK     = 10000 // largest k nearby accepts

	streamBufSize = 32 << 10 // bufio.Writer between the encoder and the ResponseWriter
	flushEvery    = 1024     // rows between explicit flushes to the client
	retainHits    = MaxK     // pooled hit slices up to this capacity are kept
)

// badRequest is a 400 message about the query.
type badRequest string

func (e badRequest) Error() string { return string(e) }

func badf(format string, args ...any) error { return badRequest(fmt.Sprintf(format, args...)) }

// paramSource is where a handler's query parameters come from: parsed
// url.Values, or the raw query string itself when it needs no unescaping
// (rawQuery), which spares the queries' hot path url.ParseQuery's map and
// strings: 5 of BenchmarkNearby's 9 allocations per request.
type paramSource interface {
	// first returns the first value of name, and whether it is present.
	first(name string) (string, bool)
}

// valuesSource is url.Values as a paramSource.
type valuesSource url.Values

func (v valuesSource) first(name string) (string, bool) {
	vs, ok := v[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// rawQuery is a raw query string without '%', '+' or ';': for such a
// string url.ParseQuery cannot fail and unescapes nothing, so scanning it
// for "name=value" pairs gives the same first values, allocation-free.
type rawQuery string

func (q rawQuery) first(name string) (string, bool) {
	s := string(q)
	for s != "" {
		var kv string
		kv, s, _ = strings.Cut(s, "&")
		if k, v, _ := strings.Cut(kv, "="); k == name && kv != "" {
			return v, true
		}
	}
	return "", false
}

// plainQuery reports whether a raw query can be read as a rawQuery.
func plainQuery(raw string) bool { return !strings.ContainsAny(raw, "%+;") }

// numParam parses a number; present is false when the parameter is
// absent (an empty value counts as present and malformed). NaN and ±Inf
// written as such are refused; a magnitude past float64 (1e999) parses to
// ±Inf, which every range check rejects, quoting raw.
func numParam(q url.Values, name string) (v float64, raw string, present bool, err error) {
	return numParamFrom(valuesSource(q), name)
}

func numParamFrom[P paramSource](q P, name string) (v float64, raw string, present bool, err error) {
	s, ok := q.first(name)
	if !ok {
		return 0, "", false, nil
	}
	v, raw, err = parseNum(name, s)
	return v, raw, true, err
}

func parseNum(name, s string) (float64, string, error) {
	v, err := strconv.ParseFloat(s, 64)
	rangeErr := isRange(err)
	switch {
	case err != nil && !rangeErr:
		return 0, s, badf("%s %q is not a number", name, clip(s))
	case math.IsNaN(v) || math.IsInf(v, 0) && !rangeErr:
		return 0, s, badf("%s %q is not a finite number", name, clip(s))
	}
	return v, s, nil
}

func isRange(err error) bool {
	if err == nil {
		return false // spares the escaping ne below on the common path
	}
	var ne *strconv.NumError
	return errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange)
}

// clip shortens a user-supplied value for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func checkLat(name, raw string, v float64) error {
	if !(v >= -90 && v <= 90) {
		return badf("%s %s out of range [-90, 90]", name, clip(raw))
	}
	return nil
}

func checkLon(name, raw string, v float64) error {
	if !(v >= -180 && v <= 180) {
		return badf("%s %s out of range [-180, 180]", name, clip(raw))
	}
	return nil
}

// point reads the required lat and lon parameters. hint follows a
// "missing" message.
func point(q url.Values, hint string) (lat, lon float64, err error) {
	return pointFrom(valuesSource(q), hint)
}

func pointFrom[P paramSource](q P, hint string) (lat, lon float64, err error) {
	for _, name := range [...]string{"lat", "lon"} {
		v, raw, ok, err := numParamFrom(q, name)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, badf("missing query parameter %q%s", name, hint)
		}
		if name == "lat" {
			lat, err = v, checkLat(name, raw, v)
		} else {
			lon, err = v, checkLon(name, raw, v)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return lat, lon, nil
}

// radiusParam reads radius_m: a positive finite number of metres.
func radiusParam(q url.Values) (float64, bool, error) { return radiusFrom(valuesSource(q)) }

func radiusFrom[P paramSource](q P) (float64, bool, error) {
	v, raw, ok, err := numParamFrom(q, "radius_m")
	if err != nil || !ok {
		return 0, ok, err
	}
	if !(v > 0) || math.IsInf(v, 0) {
		return 0, true, badf("radius_m %s must be a positive, finite number of metres", clip(raw))
	}
	return v, true, nil
}

// intParam parses a whole number in [lo, hi].
func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	return intFrom(valuesSource(q), name, def, lo, hi)
}

func intFrom[P paramSource](q P, name string, def, lo, hi int) (int, error) {
	v, ok := q.first(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil && !isRange(err) {
		return 0, badf("%s %q is not a whole number", name, clip(v))
	}
	if err != nil || n < lo || n > hi {
		return 0, badf("%s %s out of range [%d, %d]", name, clip(v), lo, hi)
	}
	return n, nil
}

// parseQuery parses the raw query; a malformed one is a 400.
func parseQuery(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badf("malformed query string: %v", err)
	}
	return q, nil
}

// streamScratch is the per-request writer of a result stream.
type streamScratch struct {
	bw  *bufio.Writer
	row []byte
}

func (s *Server) getStream(w http.ResponseWriter) *streamScratch {
	sc, ok := s.streamPool.Get().(*streamScratch)
	if !ok {
		sc = &streamScratch{bw: bufio.NewWriterSize(w, streamBufSize), row: make([]byte, 0, 256)}
	} else {
		sc.bw.Reset(w)
	}
	return sc
}

// getBuf returns a small pooled buffer for a one-write answer.
func (s *Server) getBuf() *[]byte {
	if bp, ok := s.bufPool.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, 256)
	return &b
}

func (s *Server) putBuf(bp *[]byte) {
	if cap(*bp) <= 4096 {
		s.bufPool.Put(bp)
	}
}

func (s *Server) putStream(sc *streamScratch) {
	sc.bw.Reset(nil) // drop the ResponseWriter
	if cap(sc.row) > 4096 {
		sc.row = make([]byte, 0, 256)
	}
	s.streamPool.Put(sc)
}

// nearby is GET /v1/nearby?lat=&lon=[&k=][&radius_m=].
func (s *Server) nearby(w http.ResponseWriter, r *http.Request) {
	lat, lon, k, radius, err := nearbyParams(r)
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	hp, _ := s.hitPool.Get().(*[]store.Hit)
	if hp == nil {
		hp = new([]store.Hit)
	}
	hits := s.st.Nearest(lat, lon, k, radius, (*hp)[:0])
	if cap(hits) <= retainHits {
		*hp = hits[:0]
	}
	defer s.hitPool.Put(hp)

	sc := s.getStream(w)
	defer s.putStream(sc)
	setJSON(w)
	w.WriteHeader(http.StatusOK)
	_, _ = sc.bw.WriteString(`{"results":[`)
	for i := range hits {
		row := sc.row[:0]
		if i > 0 {
			row = append(row, ',')
		}
		h := &hits[i]
		row = appendHit(row, h.ID(), &h.Position, true, h.DistM)
		sc.row = row
		if _, err := sc.bw.Write(row); err != nil {
			return // the client went away
		}
	}
	_, _ = sc.bw.WriteString("]}")
	_ = sc.bw.Flush()
}

func nearbyParams(r *http.Request) (lat, lon float64, k int, radius float64, err error) {
	if raw := r.URL.RawQuery; plainQuery(raw) {
		return nearbyFrom(rawQuery(raw))
	}
	q, err := parseQuery(r)
	if err != nil {
		return
	}
	return nearbyFrom(valuesSource(q))
}

func nearbyFrom[P paramSource](q P) (lat, lon float64, k int, radius float64, err error) {
	if lat, lon, err = pointFrom(q, " (nearby takes lat, lon, and optionally k and radius_m)"); err != nil {
		return
	}
	if k, err = intFrom(q, "k", DefaultK, 1, MaxK); err != nil {
		return
	}
	radius, _, err = radiusFrom(q)
	return
}

// withinQuery is a parsed /v1/within request.
type withinQuery struct {
	region store.Region
	circle bool
	limit  int // 0: no limit
}

const withinHint = " (within takes bbox=minLon,minLat,maxLon,maxLat, or lat, lon and radius_m)"

func withinParams(r *http.Request) (withinQuery, error) {
	if raw := r.URL.RawQuery; plainQuery(raw) {
		return withinFrom(rawQuery(raw))
	}
	q, err := parseQuery(r)
	if err != nil {
		return withinQuery{}, err
	}
	return withinFrom(valuesSource(q))
}

func withinFrom[P paramSource](q P) (withinQuery, error) {
	var wq withinQuery
	var err error
	if wq.limit, err = intFrom(q, "limit", 0, 1, math.MaxInt); err != nil {
		return wq, err
	}
	if bbox, ok := q.first("bbox"); ok {
		for _, name := range [...]string{"lat", "lon", "radius_m"} {
			if _, dup := q.first(name); dup {
				return wq, badf("give either bbox or lat, lon and radius_m, not both (found bbox and %s)", name)
			}
		}
		b, err := parseBBox(bbox)
		if err != nil {
			return wq, err
		}
		wq.region = store.BoxRegion(b)
		return wq, nil
	}
	lat, lon, err := pointFrom(q, withinHint)
	if err != nil {
		return wq, err
	}
	radius, ok, err := radiusFrom(q)
	if err != nil {
		return wq, err
	}
	if !ok {
		return wq, badf("missing query parameter \"radius_m\"%s", withinHint)
	}
	wq.region, wq.circle = store.Circle(lat, lon, radius), true
	return wq, nil
}

// parseBBox parses the bbox parameter; see geo.ParseBox.
func parseBBox(s string) (geo.Box, error) {
	b, err := geo.ParseBox(s)
	if err != nil {
		return geo.Box{}, badRequest(err.Error())
	}
	return b, nil
}

// wantsNDJSON reports whether the Accept header asks for
// application/x-ndjson (with a non-zero quality).
func wantsNDJSON(accept string) bool {
	for accept != "" {
		var part string
		part, accept, _ = strings.Cut(accept, ",")
		mt, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(mt), "application/x-ndjson") {
			continue
		}
		q := strings.ReplaceAll(params, " ", "")
		if strings.HasPrefix(q, "q=0") && strings.Trim(q[3:], ".0") == "" {
			continue // q=0, q=0.0…: explicitly not acceptable
		}
		return true
	}
	return false
}

// within is GET /v1/within; it streams, see the package doc.
func (s *Server) within(w http.ResponseWriter, r *http.Request) {
	wq, err := withinParams(r)
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	nd := wantsNDJSON(r.Header.Get("Accept"))
	sc := s.getStream(w)
	defer s.putStream(sc)
	bw := sc.bw
	if nd {
		w.Header()["Content-Type"] = ndjsonType
		w.Header()["X-Content-Type-Options"] = noSniff
	} else {
		setJSON(w)
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if !nd {
		_, _ = bw.WriteString(`{"results":[`)
	}
	n := 0
	for h := range s.st.Within(wq.region) {
		if wq.limit > 0 && n == wq.limit {
			break
		}
		row := sc.row[:0]
		if !nd && n > 0 {
			row = append(row, ',')
		}
		row = appendHit(row, h.ID(), &h.Position, wq.circle, h.DistM)
		if nd {
			row = append(row, '\n')
		}
		sc.row = row
		if _, err := bw.Write(row); err != nil {
			return // the client went away: stop the scan
		}
		n++
		if n%flushEvery == 0 {
			if bw.Flush() != nil || rc.Flush() != nil || r.Context().Err() != nil {
				return
			}
		}
	}
	if !nd {
		row := append(sc.row[:0], `],"count":`...)
		row = strconv.AppendInt(row, int64(n), 10)
		row = append(row, '}')
		sc.row = row
		_, _ = bw.Write(row)
	}
	_ = bw.Flush()
}

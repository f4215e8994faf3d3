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

// numParam parses a number; present is false when the parameter is
// absent (an empty value counts as present and malformed). NaN and ±Inf
// written as such are refused; a magnitude past float64 (1e999) parses to
// ±Inf, which every range check rejects, quoting raw.
func numParam(q url.Values, name string) (v float64, raw string, present bool, err error) {
	vs, ok := q[name]
	if !ok || len(vs) == 0 {
		return 0, "", false, nil
	}
	v, raw, err = parseNum(name, vs[0])
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
	for _, name := range [...]string{"lat", "lon"} {
		v, raw, ok, err := numParam(q, name)
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
func radiusParam(q url.Values) (float64, bool, error) {
	v, raw, ok, err := numParam(q, "radius_m")
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
	vs, ok := q[name]
	if !ok || len(vs) == 0 {
		return def, nil
	}
	n, err := strconv.Atoi(vs[0])
	if err != nil && !isRange(err) {
		return 0, badf("%s %q is not a whole number", name, clip(vs[0]))
	}
	if err != nil || n < lo || n > hi {
		return 0, badf("%s %s out of range [%d, %d]", name, clip(vs[0]), lo, hi)
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
	q, err := parseQuery(r)
	if err != nil {
		return
	}
	if lat, lon, err = point(q, " (nearby takes lat, lon, and optionally k and radius_m)"); err != nil {
		return
	}
	if k, err = intParam(q, "k", DefaultK, 1, MaxK); err != nil {
		return
	}
	radius, _, err = radiusParam(q)
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
	var wq withinQuery
	q, err := parseQuery(r)
	if err != nil {
		return wq, err
	}
	if wq.limit, err = intParam(q, "limit", 0, 1, math.MaxInt); err != nil {
		return wq, err
	}
	if _, ok := q["bbox"]; ok {
		for _, name := range [...]string{"lat", "lon", "radius_m"} {
			if _, dup := q[name]; dup {
				return wq, badf("give either bbox or lat, lon and radius_m, not both (found bbox and %s)", name)
			}
		}
		b, err := parseBBox(q.Get("bbox"))
		if err != nil {
			return wq, err
		}
		wq.region = store.BoxRegion(b)
		return wq, nil
	}
	lat, lon, err := point(q, withinHint)
	if err != nil {
		return wq, err
	}
	radius, ok, err := radiusParam(q)
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

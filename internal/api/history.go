package api

import (
	"bufio"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/trip"
	"github.com/fleetd/fleetd/internal/wire"
)

// History query limits and defaults (see doc.go).
const (
	DefaultHistoryWindow = 24 * time.Hour // trail, trips, export: the last day
	DefaultWithinWindow  = time.Hour      // history/within: the last hour
	DefaultTrailLimit    = 100_000
	MaxTrailLimit        = 10_000_000
	DefaultVisitLimit    = 10_000
	MaxVisitLimit        = 1_000_000
	maxTripsAndStops     = 100_000
)

// incompleteTrailer is the trailer a streamed history answer ends with:
// "true" when a damaged history file left points out of it.
const incompleteTrailer = "Fleetd-Incomplete"

func (s *Server) historyRoutes() []route {
	return []route{
		{"GET", "/v1/trucks/{id}/history", "truck_history", false, s.truckHistory},
		{"GET", "/v1/trucks/{id}/trips", "truck_trips", false, s.truckTrips},
		{"GET", "/v1/history/within", "history_within", false, s.historyWithin},
		{"GET", "/v1/history/export", "history_export", false, s.historyExport},
	}
}

// hist returns the engine's history, or answers 404 when it keeps none.
func (s *Server) hist(w http.ResponseWriter, r *http.Request) *history.History {
	h := s.eng.History()
	if h == nil {
		s.writeError(w, r, http.StatusNotFound, "history is off on this server (it runs with --history=false or without --data)")
	}
	return h
}

// timeParam reads a time given as Unix seconds or RFC 3339.
func timeParam(q url.Values, name string, def int64) (int64, error) {
	vs, ok := q[name]
	if !ok || len(vs) == 0 {
		return def, nil
	}
	v := vs[0]
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > math.MaxUint32 {
			return 0, badf("%s %s out of range [0, %d] (Unix seconds)", name, clip(v), uint32(math.MaxUint32))
		}
		return n, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0, badf("%s %q is neither Unix seconds nor an RFC 3339 time (2026-12-02T14:00:00Z)", name, clip(v))
	}
	if n := t.Unix(); n >= 0 && n <= math.MaxUint32 {
		return n, nil
	}
	return 0, badf("%s %s is outside 1970–2106", name, clip(v))
}

// timeRange reads from and to; to defaults to now, from to window before to.
func timeRange(q url.Values, window time.Duration) (from, to uint32, err error) {
	t, err := timeParam(q, "to", time.Now().Unix())
	if err != nil {
		return 0, 0, err
	}
	f, err := timeParam(q, "from", max(t-int64(window/time.Second), 0))
	if err != nil {
		return 0, 0, err
	}
	if f > t {
		return 0, 0, badf("from %d is after to %d", f, t)
	}
	return uint32(f), uint32(t), nil
}

// appendPoint appends {"ts","lat","lon","speed","heading"} and the point's
// attributes.
func appendPoint(dst []byte, p *history.Point) []byte {
	dst = append(dst, `{"ts":`...)
	dst = strconv.AppendUint(dst, uint64(p.TS), 10)
	return appendPointFields(dst, p)
}

func appendPointFields(dst []byte, p *history.Point) []byte {
	dst = append(dst, `,"lat":`...)
	dst = wire.AppendCoord(dst, p.Lat)
	dst = append(dst, `,"lon":`...)
	dst = wire.AppendCoord(dst, p.Lon)
	dst = append(dst, `,"speed":`...)
	dst = wire.AppendSpeed(dst, p.Speed)
	dst = append(dst, `,"heading":`...)
	dst = strconv.AppendUint(dst, uint64(p.Heading), 10)
	dst = wire.AppendAttrs(dst, &p.Attrs)
	return append(dst, '}')
}

func appendBool(dst []byte, b bool) []byte { return strconv.AppendBool(dst, b) }

// streamStart sets the headers of a streamed history answer.
func streamStart(w http.ResponseWriter, ndjson bool) {
	h := w.Header()
	if ndjson {
		h["Content-Type"] = ndjsonType
		h["X-Content-Type-Options"] = noSniff
	} else {
		setJSON(w)
	}
	h.Set("Trailer", incompleteTrailer)
	w.WriteHeader(http.StatusOK)
}

// truckHistory is GET /v1/trucks/{id}/history.
func (s *Server) truckHistory(w http.ResponseWriter, r *http.Request) {
	h := s.hist(w, r)
	if h == nil {
		return
	}
	id, ok := s.truckID(w, r)
	if !ok {
		return
	}
	q, err := parseQuery(r)
	var from, to uint32
	var limit int
	if err == nil {
		from, to, err = timeRange(q, DefaultHistoryWindow)
	}
	if err == nil {
		limit, err = intParam(q, "limit", DefaultTrailLimit, 1, MaxTrailLimit)
	}
	format := q.Get("format")
	simplify := 0.0
	if err == nil {
		switch format {
		case "", "json", "ndjson", "geojson":
		default:
			err = badf("format %q: want json, ndjson or geojson", clip(format))
		}
	}
	if v, raw, present, perr := numParam(q, "simplify_m"); err == nil && (perr != nil || present) {
		switch {
		case perr != nil:
			err = perr
		case format != "geojson":
			err = badf("simplify_m is for format=geojson")
		case !(v >= 0) || math.IsInf(v, 0):
			err = badf("simplify_m %s must be a non-negative number of metres", clip(raw))
		default:
			simplify = v
		}
	}
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if format == "geojson" {
		s.trailGeoJSON(w, r, h, id, from, to, limit, simplify)
		return
	}
	nd := format == "ndjson" || format == "" && wantsNDJSON(r.Header.Get("Accept"))
	sc := s.getStream(w)
	defer s.putStream(sc)
	streamStart(w, nd)
	bw := sc.bw
	if !nd {
		row := append(sc.row[:0], `{"id":`...)
		row = wire.AppendString(row, id)
		row = append(row, `,"from":`...)
		row = strconv.AppendUint(row, uint64(from), 10)
		row = append(row, `,"to":`...)
		row = strconv.AppendUint(row, uint64(to), 10)
		row = append(row, `,"points":[`...)
		sc.row = row
		_, _ = bw.Write(row)
	}
	n, truncated := 0, false
	rc := http.NewResponseController(w)
	ans, err := h.Walk(id, from, to, func(ps []history.Point) error {
		for i := range ps {
			if n == limit {
				truncated = true
				return errStop
			}
			row := sc.row[:0]
			if !nd && n > 0 {
				row = append(row, ',')
			}
			row = appendPoint(row, &ps[i])
			if nd {
				row = append(row, '\n')
			}
			sc.row = row
			if _, err := bw.Write(row); err != nil {
				return err
			}
			if n++; n%flushEvery == 0 {
				_ = bw.Flush()
				_ = rc.Flush()
			}
		}
		return nil
	})
	if err != nil && err != errStop {
		return // the client went away
	}
	if !nd {
		row := append(sc.row[:0], `],"count":`...)
		row = strconv.AppendInt(row, int64(n), 10)
		row = append(row, `,"truncated":`...)
		row = appendBool(row, truncated)
		row = append(row, `,"incomplete":`...)
		row = appendBool(row, ans.Incomplete)
		row = append(row, '}')
		sc.row = row
		_, _ = bw.Write(row)
	}
	_ = bw.Flush()
	w.Header().Set(incompleteTrailer, strconv.FormatBool(ans.Incomplete))
}

// errStop ends a walk early (a limit reached); never shown to a client.
var errStop = errors.New("api: walk stopped")

// trailGeoJSON answers a trail as a GeoJSON Feature: a LineString (a
// Point for one point, no geometry for none) simplified to simplify
// metres, with the kept points' times in properties.times.
func (s *Server) trailGeoJSON(w http.ResponseWriter, r *http.Request, h *history.History, id []byte, from, to uint32, limit int, simplify float64) {
	var pts []history.Point
	truncated := false
	ans, err := h.Walk(id, from, to, func(ps []history.Point) error {
		if len(pts)+len(ps) > limit {
			pts = append(pts, ps[:limit-len(pts)]...)
			truncated = true
			return errStop
		}
		pts = append(pts, ps...)
		return nil
	})
	if err != nil && err != errStop {
		s.writeError(w, r, http.StatusInternalServerError, "reading history: "+err.Error())
		return
	}
	keep := geo.Simplify(len(pts), func(i int) (float64, float64) { return pts[i].LatDeg(), pts[i].LonDeg() }, simplify, nil)
	b := make([]byte, 0, 64+len(keep)*40)
	b = append(b, `{"type":"Feature","geometry":`...)
	switch len(keep) {
	case 0:
		b = append(b, "null"...)
	case 1:
		b = append(b, `{"type":"Point","coordinates":`...)
		b = appendLonLat(b, &pts[keep[0]])
		b = append(b, '}')
	default:
		b = append(b, `{"type":"LineString","coordinates":[`...)
		for k, i := range keep {
			if k > 0 {
				b = append(b, ',')
			}
			b = appendLonLat(b, &pts[i])
		}
		b = append(b, "]}"...)
	}
	b = append(b, `,"properties":{"id":`...)
	b = wire.AppendString(b, id)
	b = append(b, `,"from":`...)
	b = strconv.AppendUint(b, uint64(from), 10)
	b = append(b, `,"to":`...)
	b = strconv.AppendUint(b, uint64(to), 10)
	b = append(b, `,"points":`...)
	b = strconv.AppendInt(b, int64(len(pts)), 10)
	b = append(b, `,"simplify_m":`...)
	b = strconv.AppendFloat(b, simplify, 'f', -1, 64)
	b = append(b, `,"times":[`...)
	for k, i := range keep {
		if k > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(pts[i].TS), 10)
	}
	b = append(b, `],"truncated":`...)
	b = appendBool(b, truncated)
	b = append(b, `,"incomplete":`...)
	b = appendBool(b, ans.Incomplete)
	b = append(b, "}}"...)
	w.Header()["Content-Type"] = []string{"application/geo+json"}
	w.Header()["X-Content-Type-Options"] = noSniff
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func appendLonLat(dst []byte, p *history.Point) []byte {
	dst = append(dst, '[')
	dst = wire.AppendCoord(dst, p.Lon)
	dst = append(dst, ',')
	dst = wire.AppendCoord(dst, p.Lat)
	return append(dst, ']')
}

// truckTrips is GET /v1/trucks/{id}/trips.
func (s *Server) truckTrips(w http.ResponseWriter, r *http.Request) {
	h := s.hist(w, r)
	if h == nil {
		return
	}
	id, ok := s.truckID(w, r)
	if !ok {
		return
	}
	q, err := parseQuery(r)
	var from, to uint32
	o := trip.Options{Radius: trip.DefaultRadius, MinDuration: trip.DefaultMinDuration}
	if err == nil {
		from, to, err = timeRange(q, DefaultHistoryWindow)
	}
	if v, raw, present, perr := numParam(q, "stop_radius_m"); err == nil && (perr != nil || present) {
		if err = perr; err == nil && !(v > 0 && v <= 10_000) {
			err = badf("stop_radius_m %s out of range (0, 10000] metres", clip(raw))
		}
		o.Radius = v
	}
	var minS int
	if err == nil {
		minS, err = intParam(q, "stop_min_s", int(trip.DefaultMinDuration/time.Second), 1, 7*86400)
		o.MinDuration = time.Duration(minS) * time.Second
	}
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	var trips, stops []byte
	n := 0
	d := trip.New(o, func(st trip.Stop) {
		if n++; n > maxTripsAndStops {
			return
		}
		if len(stops) > 0 {
			stops = append(stops, ',')
		}
		stops = append(stops, `{"start_ts":`...)
		stops = strconv.AppendUint(stops, uint64(st.Start), 10)
		stops = append(stops, `,"end_ts":`...)
		stops = strconv.AppendUint(stops, uint64(st.End), 10)
		stops = append(stops, `,"lat":`...)
		stops = wire.AppendCoord(stops, st.Lat)
		stops = append(stops, `,"lon":`...)
		stops = wire.AppendCoord(stops, st.Lon)
		stops = append(stops, `,"duration_s":`...)
		stops = strconv.AppendUint(stops, uint64(st.End-st.Start), 10)
		stops = append(stops, '}')
	}, func(t trip.Trip) {
		if n++; n > maxTripsAndStops {
			return
		}
		if len(trips) > 0 {
			trips = append(trips, ',')
		}
		trips = append(trips, `{"start_ts":`...)
		trips = strconv.AppendUint(trips, uint64(t.Start), 10)
		trips = append(trips, `,"end_ts":`...)
		trips = strconv.AppendUint(trips, uint64(t.End), 10)
		trips = append(trips, `,"start_lat":`...)
		trips = wire.AppendCoord(trips, t.StartLat)
		trips = append(trips, `,"start_lon":`...)
		trips = wire.AppendCoord(trips, t.StartLon)
		trips = append(trips, `,"end_lat":`...)
		trips = wire.AppendCoord(trips, t.EndLat)
		trips = append(trips, `,"end_lon":`...)
		trips = wire.AppendCoord(trips, t.EndLon)
		trips = append(trips, `,"distance_m":`...)
		trips = strconv.AppendFloat(trips, math.Round(t.DistanceM*10)/10, 'f', -1, 64)
		trips = append(trips, `,"duration_s":`...)
		trips = strconv.AppendUint(trips, uint64(t.End-t.Start), 10)
		trips = append(trips, `,"max_speed":`...)
		trips = wire.AppendSpeed(trips, t.MaxSpeed)
		trips = append(trips, '}')
	})
	ans, err := h.Walk(id, from, to, func(ps []history.Point) error {
		for i := range ps {
			d.Add(ps[i].Position)
		}
		return nil
	})
	if err != nil {
		s.writeError(w, r, http.StatusInternalServerError, "reading history: "+err.Error())
		return
	}
	d.Finish()
	b := make([]byte, 0, len(trips)+len(stops)+256)
	b = append(b, `{"id":`...)
	b = wire.AppendString(b, id)
	b = append(b, `,"from":`...)
	b = strconv.AppendUint(b, uint64(from), 10)
	b = append(b, `,"to":`...)
	b = strconv.AppendUint(b, uint64(to), 10)
	b = append(b, `,"stop_radius_m":`...)
	b = strconv.AppendFloat(b, o.Radius, 'f', -1, 64)
	b = append(b, `,"stop_min_s":`...)
	b = strconv.AppendInt(b, int64(minS), 10)
	b = append(b, `,"trips":[`...)
	b = append(b, trips...)
	b = append(b, `],"stops":[`...)
	b = append(b, stops...)
	b = append(b, `],"truncated":`...)
	b = appendBool(b, n > maxTripsAndStops)
	b = append(b, `,"incomplete":`...)
	b = appendBool(b, ans.Incomplete)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b)
}

// historyWithin is GET /v1/history/within.
func (s *Server) historyWithin(w http.ResponseWriter, r *http.Request) {
	h := s.hist(w, r)
	if h == nil {
		return
	}
	q, err := parseQuery(r)
	var from, to uint32
	var limit int
	var rg history.Region
	if err == nil {
		from, to, err = timeRange(q, DefaultWithinWindow)
	}
	if err == nil {
		limit, err = intParam(q, "limit", DefaultVisitLimit, 1, MaxVisitLimit)
	}
	if err == nil {
		rg, err = historyRegion(q)
	}
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	vs, ans, err := h.Within(rg, from, to)
	if err != nil {
		s.writeError(w, r, http.StatusInternalServerError, "reading history: "+err.Error())
		return
	}
	slices.SortFunc(vs, func(a, b history.Visit) int { return strings.Compare(a.ID, b.ID) })
	count := len(vs)
	vs = vs[:min(len(vs), limit)]
	b := make([]byte, 0, 64+len(vs)*80)
	b = append(b, `{"from":`...)
	b = strconv.AppendUint(b, uint64(from), 10)
	b = append(b, `,"to":`...)
	b = strconv.AppendUint(b, uint64(to), 10)
	b = append(b, `,"results":[`...)
	for i := range vs {
		v := &vs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = wire.AppendString(b, v.ID)
		b = append(b, `,"first_ts":`...)
		b = strconv.AppendUint(b, uint64(v.FirstTS), 10)
		b = append(b, `,"last_ts":`...)
		b = strconv.AppendUint(b, uint64(v.LastTS), 10)
		b = append(b, `,"points":`...)
		b = strconv.AppendInt(b, int64(v.Points), 10)
		b = append(b, '}')
	}
	b = append(b, `],"count":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	b = append(b, `,"incomplete":`...)
	b = appendBool(b, ans.Incomplete)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b)
}

const historyWithinHint = " (history/within takes bbox=minLon,minLat,maxLon,maxLat, or lat, lon and radius_m, and from, to)"

// historyRegion reads bbox, or lat, lon and radius_m.
func historyRegion(q url.Values) (history.Region, error) {
	if _, ok := q["bbox"]; ok {
		for _, name := range [...]string{"lat", "lon", "radius_m"} {
			if _, dup := q[name]; dup {
				return history.Region{}, badf("give either bbox or lat, lon and radius_m, not both (found bbox and %s)", name)
			}
		}
		b, err := parseBBox(q.Get("bbox"))
		if err != nil {
			return history.Region{}, err
		}
		return history.BoxRegion(b), nil
	}
	lat, lon, err := point(q, historyWithinHint)
	if err != nil {
		return history.Region{}, err
	}
	radius, ok, err := radiusParam(q)
	if err != nil {
		return history.Region{}, err
	}
	if !ok {
		return history.Region{}, badf("missing query parameter \"radius_m\"%s", historyWithinHint)
	}
	return history.CircleRegion(lat, lon, radius), nil
}

// historyExport is GET /v1/history/export: every point of the interval,
// streamed.
func (s *Server) historyExport(w http.ResponseWriter, r *http.Request) {
	h := s.hist(w, r)
	if h == nil {
		return
	}
	q, err := parseQuery(r)
	var from, to uint32
	if err == nil {
		from, to, err = timeRange(q, DefaultHistoryWindow)
	}
	format := q.Get("format")
	if err == nil && format != "" && format != "ndjson" && format != "parquet" {
		err = badf("format %q: want ndjson or parquet", clip(format))
	}
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	// What was accepted before the request is in the export: write the
	// buffer, so that the export reads only files.
	if err := s.eng.FlushHistory(); err != nil {
		s.writeError(w, r, http.StatusServiceUnavailable, "could not write history's buffer before the export: "+err.Error())
		return
	}
	if format == "parquet" {
		s.exportParquet(w, h, from, to)
		return
	}
	streamStart(w, true)
	bw := bufio.NewWriterSize(w, 256<<10)
	var row []byte
	ans, err := h.Export(from, to, func(id []byte, ps []history.Point) error {
		for i := range ps {
			row = append(row[:0], `{"id":`...)
			row = wire.AppendString(row, id)
			row = append(row, `,"ts":`...)
			row = strconv.AppendUint(row, uint64(ps[i].TS), 10)
			row = appendPointFields(row, &ps[i])
			row = append(row, '\n')
			if _, err := bw.Write(row); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return // the client went away
	}
	_ = bw.Flush()
	w.Header().Set(incompleteTrailer, strconv.FormatBool(ans.Incomplete))
}

package api

// Zone, rule and alert endpoints (package alert holds the logic):
//
//	PUT    /v1/zones/{name}    GeoJSON Polygon/MultiPolygon (or a Feature of one), at most
//	                           fence.MaxBodyBytes → 200 {"name","vertices","bbox":[minLon,minLat,maxLon,maxLat]};
//	                           400 bad name or GeoJSON (fence's message), 413 too large
//	GET    /v1/zones/{name}    the zone as GeoJSON (Content-Type: application/geo+json); 404 unknown
//	DELETE /v1/zones/{name}    204; 404 unknown; 409 {"error","rules":[…]} while rules name it
//	GET    /v1/zones           {"zones":[{"name","vertices","bbox"}, …]} by name
//	PUT    /v1/rules/{name}    {"when":"<expr>","for":"30s","severity":"warning"} ("for" and
//	                           "severity" optional) → 200 {"name","when","for","severity"};
//	                           400 bad body, name, duration or severity; a compile error is
//	                           400 {"error":"1:9: …","detail":"<source line and carets>","line":1,"col":9}
//	GET    /v1/rules/{name}    the rule; ?disasm=1 adds "disasm": the bytecode listing; 404 unknown
//	DELETE /v1/rules/{name}    204; 404 unknown
//	GET    /v1/rules           {"rules":[rule, …]} by name
//	PUT    /v1/rules           {"rules":[{"name","when","for","severity"}, …]}, at most
//	                           maxRulesBody: every rule stored (created or replaced), all or
//	                           none → 200 {"rules":n,"replaced":m}; errors as for one rule,
//	                           naming the rule; the other rules are kept
//	GET    /v1/alerts          {"count":n,"alerts":[{"rule","id","state":"firing","severity","since","ts","lat","lon"}, …]}
//	                           what fires now, sorted by rule then truck id: the first limit
//	                           (default 1000, at most 10000) of the n that match; ?rule= and
//	                           ?id= filter. Memory per request follows limit, not n.
//
// Without Options.Alerts every one of them answers 404 {"error":"alert
// rules are not enabled"}. A change that cannot be saved answers 503 and
// changes nothing; the rule or zone limit answers 507.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/fleetd/fleetd/internal/wire"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/fence"
	"github.com/fleetd/fleetd/internal/rules"
	"github.com/fleetd/fleetd/internal/store"
)

// Alert list limits.
const (
	DefaultAlerts = 1000  // GET /v1/alerts' limit when absent
	MaxAlerts     = 10000 // the largest limit it takes
)

// alertsQuery reads GET /v1/alerts' parameters.
func alertsQuery(r *http.Request) (alert.FiringQuery, error) {
	q, err := parseQuery(r)
	if err != nil {
		return alert.FiringQuery{}, err
	}
	var fq alert.FiringQuery
	if fq.Limit, err = intParam(q, "limit", DefaultAlerts, 1, MaxAlerts); err != nil {
		return fq, err
	}
	if vs, ok := q["rule"]; ok {
		if fq.Rule = vs[0]; fq.Rule == "" {
			return fq, badf("rule is empty; give a rule name or leave rule out")
		}
	}
	if vs, ok := q["id"]; ok {
		if fq.ID = vs[0]; !store.ValidID([]byte(fq.ID)) {
			return fq, badf("id %q is not a truck ID (1-64 bytes of A-Z a-z 0-9 _ . : -)", clip(fq.ID))
		}
	}
	return fq, nil
}

// maxRuleBody limits a PUT /v1/rules body; a rule's source is at most
// 4096 bytes, escaped JSON at most six times that.
const maxRuleBody = 64 << 10

// maxRulesBody limits a bulk PUT /v1/rules body: alert.MaxRules rules of
// about 100 bytes, with room to spare.
const maxRulesBody = 64 << 20

var geoJSONType = []string{"application/geo+json"}

func (s *Server) alertRoutes() []route {
	return []route{
		{"PUT", "/v1/zones/{name}", "zone_put", false, s.putZone},
		{"GET", "/v1/zones/{name}", "zone_get", false, s.getZone},
		{"DELETE", "/v1/zones/{name}", "zone_delete", false, s.deleteZone},
		{"GET", "/v1/zones", "zones", false, s.listZones},
		{"PUT", "/v1/rules/{name}", "rule_put", false, s.putRule},
		{"GET", "/v1/rules/{name}", "rule_get", false, s.getRule},
		{"DELETE", "/v1/rules/{name}", "rule_delete", false, s.deleteRule},
		{"GET", "/v1/rules", "rules", false, s.listRules},
		{"PUT", "/v1/rules", "rules_put", false, s.putRules},
		{"GET", "/v1/alerts", "alerts", false, s.listAlerts},
	}
}

// alertsEnabled answers 404 when the server has no alert engine.
func (s *Server) alertsEnabled(w http.ResponseWriter, r *http.Request) bool {
	if s.alerts == nil {
		s.writeError(w, r, http.StatusNotFound, "alert rules are not enabled")
		return false
	}
	return true
}

// alertError answers an error from package alert with its status.
func (s *Server) alertError(w http.ResponseWriter, r *http.Request, err error) {
	var inUse *alert.ZoneInUseError
	var rerr *rules.Error
	switch {
	case errors.As(err, &rerr):
		msg := rerr.Error()
		if r.PathValue("name") == "" {
			msg = err.Error() // a bulk PUT: the message names the rule
		}
		b := append(make([]byte, 0, 256), `{"error":`...)
		b = wire.AppendString(b, msg)
		b = append(b, `,"detail":`...)
		b = wire.AppendString(b, rerr.Detail())
		b = append(b, `,"line":`...)
		b = strconv.AppendInt(b, int64(rerr.Line), 10)
		b = append(b, `,"col":`...)
		b = strconv.AppendInt(b, int64(rerr.Col), 10)
		writeJSON(w, http.StatusBadRequest, append(b, '}'))
	case errors.As(err, &inUse):
		b := append(make([]byte, 0, 256), `{"error":`...)
		b = wire.AppendString(b, err.Error())
		b = append(b, `,"rules":[`...)
		for i, name := range inUse.Rules {
			if i > 0 {
				b = append(b, ',')
			}
			b = wire.AppendString(b, name)
		}
		writeJSON(w, http.StatusConflict, append(b, "]}"...))
	case errors.Is(err, fence.ErrTooLarge):
		s.writeError(w, r, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, alert.ErrInvalid):
		s.writeError(w, r, http.StatusBadRequest, err.Error())
	case errors.Is(err, alert.ErrNotFound):
		s.writeError(w, r, http.StatusNotFound, err.Error())
	case errors.Is(err, alert.ErrLimit):
		s.writeError(w, r, http.StatusInsufficientStorage, err.Error())
	case errors.Is(err, alert.ErrPersist):
		s.writeError(w, r, http.StatusServiceUnavailable, err.Error()+"; nothing was changed")
	default:
		s.writeError(w, r, http.StatusInternalServerError, err.Error())
	}
}

// appendZoneInfo appends {"name","vertices","bbox":[minLon,minLat,maxLon,maxLat]}.
func appendZoneInfo(dst []byte, name string, z *fence.Zone) []byte {
	minLat, minLon, maxLat, maxLon := z.Bounds()
	dst = append(dst, `{"name":`...)
	dst = wire.AppendString(dst, name)
	dst = append(dst, `,"vertices":`...)
	dst = strconv.AppendInt(dst, int64(z.NumVertices()), 10)
	dst = append(dst, `,"bbox":[`...)
	for i, v := range [4]float64{minLon, minLat, maxLon, maxLat} {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendFloat(dst, v, 'f', -1, 64)
	}
	return append(dst, "]}"...)
}

// putZone is PUT /v1/zones/{name}. fence.ReadZone reads at most one byte
// past its limit, so an endless body costs no more than that.
func (s *Server) putZone(w http.ResponseWriter, r *http.Request) {
	if !s.alertsEnabled(w, r) {
		return
	}
	name := r.PathValue("name")
	z, err := s.alerts.PutZone(name, r.Body)
	if err != nil {
		s.alertError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, appendZoneInfo(nil, name, z))
}

// getZone is GET /v1/zones/{name}.
func (s *Server) getZone(w http.ResponseWriter, r *http.Request) {
	if !s.alertsEnabled(w, r) {
		return
	}
	name := r.PathValue("name")
	z, ok := s.alerts.GetZone(name)
	if !ok {
		s.writeError(w, r, http.StatusNotFound, fmt.Sprintf("zone %q not found", clip(name)))
		return
	}
	h := w.Header()
	h["Content-Type"] = geoJSONType
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(z.AppendGeoJSON(nil))
}

// deleteZone is DELETE /v1/zones/{name}.
func (s *Server) deleteZone(w http.ResponseWriter, r *http.Request) {
	if !s.alertsEnabled(w, r) {
		return
	}
	if err := s.alerts.DeleteZone(r.PathValue("name")); err != nil {
		s.alertError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listZones is GET /v1/zones.
func (s *Server) listZones(w http.ResponseWriter, r *http.Request) {
	if !s.alertsEnabled(w, r) {
		return
	}
	b := append(make([]byte, 0, 1024), `{"zones":[`...)
	for i, zi := range s.alerts.Zones() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendZoneInfo(b, zi.Name, zi.Zone)
	}
	writeJSON(w, http.StatusOK, append(b, "]}"...))
}

// appendRule appends {"name","when","for","severity"[,"disasm"]}.
func appendRule(dst []byte, rl alert.Rule, disasm bool) []byte {
	dst = append(dst, `{"name":`...)
	dst = wire.AppendString(dst, rl.Name)
	dst = append(dst, `,"when":`...)
	dst = wire.AppendString(dst, rl.When)
	dst = append(dst, `,"for":`...)
	dst = wire.AppendString(dst, rl.For.String())
	dst = append(dst, `,"severity":`...)
	dst = wire.AppendString(dst, rl.Severity)
	if disasm {
		dst = append(dst, `,"disasm":`...)
		dst = wire.AppendString(dst, rl.Program.Disasm())
	}
	return append(dst, '}')
}

// putRule is PUT /v1/rules/{name}.
func (s *Server) putRule(w http.ResponseWriter, r *http.Request) {
	if !s.alertsEnabled(w, r) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRuleBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.writeError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("rule body exceeds %d bytes", maxRuleBody))
			return
		}
		s.writeError(w, r, http.StatusBadRequest, "reading the rule body: "+err.Error())
		return
	}
	var spec alert.RuleSpec
	if err := json.Unmarshal(body, &spec); err != nil {
		msg := err.Error()
		if !errors.Is(err, alert.ErrInvalid) {
			msg = "invalid rule body: " + msg
		}
		s.writeError(w, r, http.StatusBadRequest, msg+` (want {"when": "<expr>", "for": "30s", "severity": "info|warning|critical"})`)
		return
	}
	rl, err := s.alerts.PutRule(r.PathValue("name"), spec)
	if err != nil {
		s.alertError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, appendRule(nil, rl, false))
}

// putRules is PUT /v1/rules: many rules at once, all or none.
func (s *Server) putRules(w http.ResponseWriter, r *http.Request) {
	if !s.alertsEnabled(w, r) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRulesBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.writeError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("rules body exceeds %d bytes", maxRulesBody))
			return
		}
		s.writeError(w, r, http.StatusBadRequest, "reading the rules body: "+err.Error())
		return
	}
	rs, err := alert.DecodeRules(body)
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err.Error()+` (want {"rules": [{"name": "…", "when": "<expr>", "for": "30s", "severity": "info|warning|critical"}, …]})`)
		return
	}
	stored, replaced, err := s.alerts.PutRules(rs)
	if err != nil {
		s.alertError(w, r, err)
		return
	}
	b := append(make([]byte, 0, 64), `{"rules":`...)
	b = strconv.AppendInt(b, int64(len(stored)), 10)
	b = append(b, `,"replaced":`...)
	b = strconv.AppendInt(b, int64(replaced), 10)
	writeJSON(w, http.StatusOK, append(b, '}'))
}

// getRule is GET /v1/rules/{name}[?disasm=1].
func (s *Server) getRule(w http.ResponseWriter, r *http.Request) {
	if !s.alertsEnabled(w, r) {
		return
	}
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	disasm := false
	if v, ok := q["disasm"]; ok && len(v) > 0 {
		if disasm, err = strconv.ParseBool(v[0]); err != nil {
			s.writeError(w, r, http.StatusBadRequest, fmt.Sprintf("disasm %q is not a boolean (use 1 or 0)", clip(v[0])))
			return
		}
	}
	name := r.PathValue("name")
	rl, ok := s.alerts.GetRule(name)
	if !ok {
		s.writeError(w, r, http.StatusNotFound, fmt.Sprintf("rule %q not found", clip(name)))
		return
	}
	writeJSON(w, http.StatusOK, appendRule(make([]byte, 0, 256), rl, disasm))
}

// deleteRule is DELETE /v1/rules/{name}.
func (s *Server) deleteRule(w http.ResponseWriter, r *http.Request) {
	if !s.alertsEnabled(w, r) {
		return
	}
	if err := s.alerts.DeleteRule(r.PathValue("name")); err != nil {
		s.alertError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listRules is GET /v1/rules.
func (s *Server) listRules(w http.ResponseWriter, r *http.Request) {
	if !s.alertsEnabled(w, r) {
		return
	}
	b := append(make([]byte, 0, 1024), `{"rules":[`...)
	for i, rl := range s.alerts.Rules() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRule(b, rl, false)
	}
	writeJSON(w, http.StatusOK, append(b, "]}"...))
}

// listAlerts is GET /v1/alerts.
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	if !s.alertsEnabled(w, r) {
		return
	}
	q, err := alertsQuery(r)
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	as, total := s.alerts.FiringPage(q)
	b := append(make([]byte, 0, 64+128*len(as)), `{"count":`...)
	b = strconv.AppendInt(b, int64(total), 10)
	b = append(b, `,"alerts":[`...)
	for i, a := range as {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"rule":`...)
		b = wire.AppendString(b, a.Rule)
		b = append(b, `,"id":`...)
		b = wire.AppendString(b, a.ID)
		b = append(b, `,"state":`...)
		b = wire.AppendString(b, a.State)
		b = append(b, `,"severity":`...)
		b = wire.AppendString(b, a.Severity)
		b = append(b, `,"since":`...)
		b = strconv.AppendUint(b, uint64(a.Since), 10)
		b = append(b, `,"ts":`...)
		b = strconv.AppendUint(b, uint64(a.TS), 10)
		b = append(b, `,"lat":`...)
		b = wire.AppendCoord(b, a.Lat)
		b = append(b, `,"lon":`...)
		b = wire.AppendCoord(b, a.Lon)
		b = append(b, '}')
	}
	writeJSON(w, http.StatusOK, append(b, "]}"...))
}

package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/fleetd/fleetd/internal/auth"
)

// formBody is auth.FormBody: a 415 message for a POST body that any web
// page can make a browser send (no Content-Type, text/plain, a form).
var formBody = auth.FormBody

// noFormCheck are the routes formBody does not apply to: pprof's symbol
// lookup (admin only), login (which takes only application/json), logout
// (no body; the cookie is SameSite=Strict) and the
// 404/405 answers.
var noFormCheck = map[string]bool{"pprof": true, "login": true, "logout": true, "method_not_allowed": true, "not_found": true}

// scopeOf is the scope a route needs (see auth's doc.go for the table).
func (s *Server) scopeOf(method, name string) auth.Scope {
	switch name {
	case "positions":
		return auth.Ingest
	case "pprof":
		return auth.Admin
	case "method_not_allowed", "not_found":
		return 0 // any valid credential
	}
	if sc, ok := s.scopes[name]; ok {
		return sc
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return auth.Read
	}
	return auth.Admin
}

// authorize checks the request's bearer token, or else its session cookie,
// against the route's scope: false after answering 401 (no or unknown
// credential) or 403 (a scope missing).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, name string) bool {
	var (
		have  auth.Scope
		who   string
		known bool
	)
	if tok := auth.BearerToken(r); tok != "" {
		have, who, known = s.keys.Lookup(tok)
	} else if id := auth.SessionID(r); id != "" && s.sessions != nil {
		have, who, known = s.sessions.Lookup(id)
	}
	if !known {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fleetd"`)
		s.writeError(w, r, http.StatusUnauthorized, "missing or invalid bearer token (Authorization: Bearer <token>) or dashboard session")
		return false
	}
	want := s.scopeOf(r.Method, name)
	if have&want != want {
		s.writeError(w, r, http.StatusForbidden, fmt.Sprintf("token %q has scope %s; %s %s needs %s", who, have, r.Method, r.URL.Path, want))
		return false
	}
	return true
}

func (s *Server) sessionRoutes() []route {
	return []route{
		{"POST", "/v1/login", "login", true, s.login},
		{"POST", "/v1/logout", "logout", true, s.logout},
		{"GET", "/v1/session", "session", true, s.session},
	}
}

// maxLoginBody bounds a POST /v1/login body (a token is at most 512 bytes).
const maxLoginBody = 4 << 10

// login is POST /v1/login {"token":"…"}: a valid token is exchanged for a
// session cookie (HttpOnly, SameSite=Strict, Secure under TLS).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.keys == nil || s.sessions == nil {
		s.writeError(w, r, http.StatusNotFound, "authentication is off on this server: no login needed")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		s.writeError(w, r, http.StatusUnsupportedMediaType, "POST /v1/login takes application/json: {\"token\":\"…\"}")
		return
	}
	var body struct {
		Token string `json:"token"`
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxLoginBody+1))
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	if len(b) > maxLoginBody || json.Unmarshal(b, &body) != nil || body.Token == "" {
		s.writeError(w, r, http.StatusBadRequest, `want {"token":"<bearer token>"}, at most 4 KiB`)
		return
	}
	id, ok := s.sessions.Open(body.Token)
	if !ok {
		s.writeError(w, r, http.StatusUnauthorized, "unknown token")
		return
	}
	http.SetCookie(w, s.sessions.Cookie(r, id))
	w.Header().Set("Cache-Control", "no-store")
	s.sessionAnswer(w, id)
}

// logout is POST /v1/logout: ends the session and clears the cookie.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if s.sessions != nil {
		if id := auth.SessionID(r); id != "" {
			s.sessions.Close(id)
		}
	}
	http.SetCookie(w, auth.ClearCookie(r))
	writeJSON(w, http.StatusOK, []byte(`{"session":false}`))
}

// session is GET /v1/session: whether the server needs a login and whether
// the request's cookie holds a live session (with its name and scopes).
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	if s.keys == nil {
		writeJSON(w, http.StatusOK, []byte(`{"auth":false,"session":false}`))
		return
	}
	id := ""
	if s.sessions != nil {
		id = auth.SessionID(r)
	}
	s.sessionAnswer(w, id)
}

func (s *Server) sessionAnswer(w http.ResponseWriter, id string) {
	out := struct {
		Auth    bool   `json:"auth"`
		Session bool   `json:"session"`
		Name    string `json:"name,omitempty"`
		Scopes  string `json:"scopes,omitempty"`
		TTL     string `json:"ttl,omitempty"` // the lifetime of a session
	}{Auth: true}
	if id != "" {
		if sc, name, ok := s.sessions.Lookup(id); ok {
			out.Session, out.Name, out.Scopes = true, name, sc.String()
			out.TTL = strconv.Itoa(int(s.sessions.TTL()/time.Second)) + "s"
		}
	}
	b, _ := json.Marshal(out)
	writeJSON(w, http.StatusOK, b)
}

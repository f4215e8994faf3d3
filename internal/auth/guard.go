package auth

import (
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
)

// GuardOptions configures a Guard.
type GuardOptions struct {
	// Loopback says the server listens on loopback addresses only: then a
	// request's Host must be a loopback name or address, or in AllowedHosts.
	Loopback bool
	// AllowedHosts are more Host values (names or addresses, without a
	// port; "*" allows any) to serve; when set on a non-loopback server,
	// only these (and loopback) are served.
	AllowedHosts []string
	// AllowedOrigins are origins ("https://ops.example.com") besides the
	// server's own that may send state-changing requests and get CORS.
	AllowedOrigins []string
	// Refused, if set, is called with the status of every refused request
	// (for metrics).
	Refused func(code int)
}

// Guard is http middleware refusing browser-borne attacks (package doc).
type Guard struct {
	o       GuardOptions
	anyHost bool
	hosts   map[string]bool
	origins map[string]bool

	// Refusals counted by answer.
	Misdirected, Forbidden atomic.Int64
}

// NewGuard checks the options and makes a Guard.
func NewGuard(o GuardOptions) (*Guard, error) {
	g := &Guard{o: o, hosts: map[string]bool{}, origins: map[string]bool{}}
	for _, h := range o.AllowedHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "*":
			g.anyHost = true
		case h == "" || strings.ContainsAny(h, "/:@ ") && !strings.HasPrefix(h, "["):
			return nil, fmt.Errorf("auth: allowed host %q: want a name or address without scheme or port", h)
		default:
			g.hosts[strings.Trim(h, "[]")] = true
		}
	}
	for _, or := range o.AllowedOrigins {
		or = strings.ToLower(strings.TrimRight(strings.TrimSpace(or), "/"))
		if !(strings.HasPrefix(or, "http://") || strings.HasPrefix(or, "https://")) || strings.Count(or, "/") != 2 {
			return nil, fmt.Errorf("auth: allowed origin %q: want scheme://host[:port], e.g. https://ops.example.com", or)
		}
		g.origins[or] = true
	}
	return g, nil
}

// Handler wraps next with the checks.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.hostAllowed(r.Host) {
			g.Misdirected.Add(1)
			g.refuse(w, http.StatusMisdirectedRequest, fmt.Sprintf(
				"Host %q is not served here: this server answers to loopback names and addresses (and --allowed-hosts); a DNS-rebinding page cannot read it", r.Host))
			return
		}
		origin := r.Header.Get("Origin")
		allowed := origin != "" && g.origins[strings.ToLower(origin)]
		if allowed {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				g.Forbidden.Add(1)
				g.refuse(w, http.StatusForbidden, fmt.Sprintf("origin %q may not call this server (see --allowed-origins)", origin))
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if origin != "" && !allowed && changesState(r) && !sameOrigin(origin, r) {
			g.Forbidden.Add(1)
			g.refuse(w, http.StatusForbidden, fmt.Sprintf(
				"cross-origin %s from %q refused: only this server's own pages and --allowed-origins may change its state", r.Method, origin))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (g *Guard) refuse(w http.ResponseWriter, code int, msg string) {
	if g.o.Refused != nil {
		g.o.Refused(code)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	_, _ = w.Write(append(b, '\n'))
}

// changesState: anything but a plain read, and a WebSocket upgrade (which
// the browser opens cross-origin without CORS).
func changesState(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	}
	return true
}

// sameOrigin reports whether origin is scheme://Host of the request.
func sameOrigin(origin string, r *http.Request) bool {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return strings.EqualFold(origin, scheme+r.Host)
}

// FormBody returns a 415 message for a POST Content-Type that a cross-site
// page can make a browser send without a CORS preflight (none, text/plain,
// a form type), or "" for any other. The API applies it to its POST routes
// after authentication (so a request without a token still learns 401).
func FormBody(ct string) string {
	if ct == "" {
		return "a POST needs a Content-Type: application/x-ndjson or application/json for /v1/positions (curl: -H 'Content-Type: application/x-ndjson'); a body without one is refused because any web page can send it"
	}
	// Fast path for the API's own types: mime.ParseMediaType allocates a
	// map (one allocation per POST, measured on BenchmarkPositionsHandler).
	// The one refused application/ type is the form type.
	const app, form = "application/", "application/x-www-form-urlencoded"
	if len(ct) > len(app) && strings.EqualFold(ct[:len(app)], app) &&
		!(len(ct) >= len(form) && strings.EqualFold(ct[:len(form)], form)) {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "" // the route reports a malformed Content-Type itself
	}
	switch mt {
	case "text/plain", "application/x-www-form-urlencoded", "multipart/form-data":
		return fmt.Sprintf("Content-Type %q is not accepted on a POST (any web page can send it); use application/x-ndjson or application/json", mt)
	}
	return ""
}

// hostAllowed applies the Host rule of the package doc.
func (g *Guard) hostAllowed(host string) bool {
	if g.anyHost || (!g.o.Loopback && len(g.hosts) == 0) {
		return true
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
	if g.hosts[h] || IsLoopbackHost(h) {
		return true
	}
	return false
}

// IsLoopbackHost reports whether h (no port) is localhost, a name under
// .localhost, or a loopback address.
func IsLoopbackHost(h string) bool {
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// Origins lists the allowed origins (sorted), for logs.
func (g *Guard) Origins() []string {
	out := make([]string, 0, len(g.origins))
	for o := range g.origins {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

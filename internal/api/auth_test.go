package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/store"
)

// TestRouteScopes drives every route with a token of each scope: the
// route's own scope (and all) get past authentication, any other gets 403,
// none or an unknown token 401.
func TestRouteScopes(t *testing.T) {
	keys := auth.NewKeyring([]auth.Token{
		{Secret: "tok-ingest", Scope: auth.Ingest, Name: "dev"},
		{Secret: "tok-read", Scope: auth.Read, Name: "wall"},
		{Secret: "tok-admin", Scope: auth.Admin, Name: "ops"},
		{Secret: "tok-all", Scope: auth.All, Name: "root"},
	})
	f := newFixture(t, Options{Keyring: keys, MetricsPrivate: true}, store.Options{})
	nd := map[string]string{"Content-Type": "application/x-ndjson"}
	for _, tc := range []struct {
		r     req
		scope auth.Scope // 0: any valid token
	}{
		{req{method: "POST", target: "/v1/positions", body: `{"id":"a","lat":1,"lon":1}`, header: nd}, auth.Ingest},
		{req{method: "GET", target: "/v1/trucks/a"}, auth.Read},
		{req{method: "DELETE", target: "/v1/trucks/zz"}, auth.Admin},
		{req{method: "GET", target: "/v1/nearby?lat=1&lon=1"}, auth.Read},
		{req{method: "GET", target: "/v1/within?bbox=0,0,1,1"}, auth.Read},
		{req{method: "GET", target: "/v1/stats"}, auth.Read},
		{req{method: "GET", target: "/metrics"}, auth.Read},
		{req{method: "GET", target: "/debug/pprof/"}, auth.Admin},
		{req{method: "GET", target: "/debug/pprof/cmdline"}, auth.Admin},
		{req{method: "PUT", target: "/v1/zones/z", body: `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}`}, auth.Admin},
		{req{method: "GET", target: "/v1/zones/z"}, auth.Read},
		{req{method: "GET", target: "/v1/zones"}, auth.Read},
		{req{method: "DELETE", target: "/v1/zones/nope"}, auth.Admin},
		{req{method: "PUT", target: "/v1/rules/r", body: `{"when":"speed > 1"}`}, auth.Admin},
		{req{method: "GET", target: "/v1/rules/r"}, auth.Read},
		{req{method: "GET", target: "/v1/rules"}, auth.Read},
		{req{method: "DELETE", target: "/v1/rules/nope"}, auth.Admin},
		{req{method: "GET", target: "/v1/alerts"}, auth.Read},
		{req{method: "GET", target: "/v1/trucks/a/history"}, auth.Read},
		{req{method: "GET", target: "/v1/trucks/a/trips"}, auth.Read},
		{req{method: "GET", target: "/v1/history/within?bbox=0,0,1,1"}, auth.Read},
		{req{method: "GET", target: "/v1/history/export"}, auth.Read},
		{req{method: "GET", target: "/no/such/route"}, 0},
		{req{method: "PUT", target: "/v1/positions"}, 0},
	} {
		for _, tok := range []string{"tok-ingest", "tok-read", "tok-admin", "tok-all"} {
			have, _, _ := keys.Lookup(tok)
			r := tc.r
			r.header = map[string]string{"Authorization": "Bearer " + tok}
			for k, v := range tc.r.header {
				r.header[k] = v
			}
			w := f.do(r)
			if have&tc.scope == tc.scope {
				if w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
					t.Errorf("%s %s with %s: %d %s", r.method, r.target, tok, w.Code, w.Body)
				}
			} else {
				wantError(t, w, http.StatusForbidden, "needs "+tc.scope.String())
			}
		}
		for _, a := range []string{"", "Bearer nope", "Bearer tok-al"} {
			r := tc.r
			r.header = map[string]string{"Authorization": a}
			wantError(t, f.do(r), http.StatusUnauthorized, "bearer token")
		}
	}
	wantJSON(t, f.get("/healthz"), http.StatusOK)
	if w := f.get("/metrics"); w.Code != http.StatusUnauthorized {
		t.Fatalf("MetricsPrivate: /metrics %d without a token", w.Code)
	}
}

func TestLogin(t *testing.T) {
	keys := auth.NewKeyring([]auth.Token{{Secret: "tok-read", Scope: auth.Read, Name: "wall"}})
	f := newFixture(t, Options{Keyring: keys, Sessions: auth.NewSessions(auth.SessionOptions{Keyring: keys})}, store.Options{})
	js := map[string]string{"Content-Type": "application/json"}
	if got := string(wantJSON(t, f.get("/v1/session"), 200)); got != `{"auth":true,"session":false}` {
		t.Fatal(got)
	}
	wantError(t, f.do(req{method: "POST", target: "/v1/login", body: `{"token":"nope"}`, header: js}), 401, "unknown token")
	wantError(t, f.do(req{method: "POST", target: "/v1/login", body: `token=tok-read`, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}), 415, "application/json")
	wantError(t, f.do(req{method: "POST", target: "/v1/login", body: `{"tok`, header: js}), 400, "want")
	w := f.do(req{method: "POST", target: "/v1/login", body: `{"token":"tok-read"}`, header: js})
	wantJSON(t, w, 200)
	sc := w.Header().Get("Set-Cookie")
	if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") || !strings.Contains(sc, "Max-Age=") || strings.Contains(sc, "tok-read") {
		t.Fatalf("Set-Cookie %q", sc)
	}
	cookie := strings.SplitN(sc, ";", 2)[0]
	withCookie := map[string]string{"Cookie": cookie}
	wantJSON(t, f.do(req{method: "GET", target: "/v1/stats", header: withCookie}), 200)
	wantError(t, f.do(req{method: "DELETE", target: "/v1/trucks/a", header: withCookie}), 403, "needs admin")
	if got := string(wantJSON(t, f.do(req{method: "GET", target: "/v1/session", header: withCookie}), 200)); !strings.Contains(got, `"session":true,"name":"wall","scopes":"read"`) {
		t.Fatal(got)
	}
	w = f.do(req{method: "POST", target: "/v1/logout", header: withCookie})
	if wantJSON(t, w, 200); !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout Set-Cookie %q", w.Header().Get("Set-Cookie"))
	}
	wantError(t, f.do(req{method: "GET", target: "/v1/stats", header: withCookie}), 401, "session")
}

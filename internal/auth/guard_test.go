package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	loop, err := NewGuard(GuardOptions{Loopback: true, AllowedHosts: []string{"fleet.lan"}, AllowedOrigins: []string{"https://ops.example.com/"}})
	if err != nil {
		t.Fatal(err)
	}
	open, _ := NewGuard(GuardOptions{})
	type hd = map[string]string
	for _, tc := range []struct {
		g      *Guard
		method string
		host   string
		h      hd
		code   int
		frag   string
	}{
		{loop, "GET", "127.0.0.1:8080", nil, 299, ""},
		{loop, "GET", "localhost:8080", nil, 299, ""},
		{loop, "GET", "[::1]:8080", nil, 299, ""},
		{loop, "GET", "app.localhost", nil, 299, ""},
		{loop, "GET", "fleet.lan:8080", nil, 299, ""},
		{loop, "GET", "evil.example:8080", nil, 421, "DNS-rebinding"},
		{loop, "GET", "127.0.0.1.nip.io:8080", nil, 421, "not served"},
		{loop, "GET", "10.0.0.1:8080", nil, 421, ""},
		{open, "GET", "evil.example:8080", nil, 299, ""},
		// Cross-origin writes.
		{loop, "POST", "127.0.0.1:8080", hd{"Origin": "http://evil.example", "Content-Type": "application/x-ndjson"}, 403, "cross-origin POST"},
		{loop, "DELETE", "127.0.0.1:8080", hd{"Origin": "null"}, 403, ""},
		{loop, "GET", "127.0.0.1:8080", hd{"Origin": "http://evil.example", "Upgrade": "websocket"}, 403, ""},
		{loop, "GET", "127.0.0.1:8080", hd{"Origin": "http://evil.example"}, 299, ""}, // the browser hides the answer
		{loop, "POST", "127.0.0.1:8080", hd{"Origin": "http://127.0.0.1:8080", "Content-Type": "application/json"}, 299, ""},
		{loop, "POST", "127.0.0.1:8080", hd{"Origin": "https://ops.example.com", "Content-Type": "application/json"}, 299, ""},
		{loop, "PUT", "127.0.0.1:8080", hd{"Origin": "HTTPS://OPS.example.com"}, 299, ""},
		// Bodies a form can send.
		{loop, "POST", "127.0.0.1:8080", nil, 299, ""},
		{open, "POST", "x", hd{"Content-Type": "text/plain;charset=UTF-8"}, 299, ""},

		{open, "POST", "x", hd{"Content-Type": "application/x-ndjson"}, 299, ""},
		{open, "PUT", "x", nil, 299, ""}, // never a simple request: preflighted

		// Preflight.
		{loop, "OPTIONS", "127.0.0.1:8080", hd{"Origin": "https://ops.example.com", "Access-Control-Request-Method": "POST"}, 204, ""},
		{loop, "OPTIONS", "127.0.0.1:8080", hd{"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}, 403, "--allowed-origins"},
	} {
		r := httptest.NewRequest(tc.method, "/v1/positions", nil)
		r.Host = tc.host
		for k, v := range tc.h {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		tc.g.Handler(ok).ServeHTTP(w, r)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.frag) {
			t.Errorf("%s %s %v: %d %s; want %d %q", tc.method, tc.host, tc.h, w.Code, w.Body, tc.code, tc.frag)
		}
		if w.Code >= 400 && w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("refusal not JSON")
		}
		allowed := tc.h["Origin"] != "" && strings.EqualFold(tc.h["Origin"], "https://ops.example.com")
		if got := w.Header().Get("Access-Control-Allow-Origin"); (got != "") != allowed || (allowed && got != tc.h["Origin"]) {
			t.Errorf("%v: Access-Control-Allow-Origin %q", tc.h, got)
		}
	}
	if loop.Misdirected.Load() != 3 || loop.Forbidden.Load() != 4 {
		t.Fatalf("counters %d %d", loop.Misdirected.Load(), loop.Forbidden.Load())
	}
}

func TestGuardOptions(t *testing.T) {
	for _, o := range []GuardOptions{
		{AllowedOrigins: []string{"ops.example.com"}},
		{AllowedOrigins: []string{"https://ops.example.com/path"}},
		{AllowedHosts: []string{"http://x"}},
		{AllowedHosts: []string{"x:80"}},
	} {
		if _, err := NewGuard(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestFormBody(t *testing.T) {
	for ct, refused := range map[string]bool{"": true, "text/plain": true, "TEXT/PLAIN; charset=utf-8": true,
		"application/x-www-form-urlencoded": true, "Application/X-WWW-Form-Urlencoded;charset=x": true,
		"multipart/form-data; boundary=x": true, "application/x-ndjson": false, "application/json; charset=utf-8": false,
		"APPLICATION/X-NDJSON": false, "application/geo+json": false, "a b/c": false} {
		if got := FormBody(ct) != ""; got != refused {
			t.Errorf("FormBody(%q) refused=%v, want %v", ct, got, refused)
		}
	}
}

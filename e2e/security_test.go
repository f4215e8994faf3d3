package e2e

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const ndjson = "application/x-ndjson"

// TestSecurityBrowserBorne runs the server with its default flags and
// sends what a stranger's web page can make a browser send: the cross-site
// "simple" POST, a rebinding read, a cross-site WebSocket. None gets in.
func TestSecurityBrowserBorne(t *testing.T) {
	p := start(t)
	self := "http://" + p.addr
	line := `{"id":"truck-0000001","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}`

	// fetch(url, {method:"POST", mode:"no-cors", body: new Blob([...])}):
	// no Content-Type, a foreign Origin.
	p.do("POST", "/v1/positions", line, "Origin", "http://evil.example").wantErr(t, 403, "cross-origin POST")
	// The same with a text/plain body (a form can send that): 403, and
	// without an Origin (a browser that omits it): 415.
	p.do("POST", "/v1/positions", line, "Origin", "http://evil.example", "Content-Type", "text/plain").wantErr(t, 403, "cross-origin")
	p.do("POST", "/v1/positions", line, "Content-Type", "text/plain;charset=UTF-8").wantErr(t, 415, "text/plain")
	p.do("POST", "/v1/positions", line).wantErr(t, 415, "needs a Content-Type")
	p.do("POST", "/v1/positions", line, "Content-Type", "application/x-www-form-urlencoded").wantErr(t, 415, "any web page")
	p.do("DELETE", "/v1/trucks/truck-0000001", "", "Origin", "null").wantErr(t, 403, "cross-origin DELETE")
	p.do("PUT", "/v1/zones/z", `{}`, "Origin", "http://evil.example").wantErr(t, 403, "cross-origin PUT")
	p.do("GET", "/v1/trucks/truck-0000001", "").wantErr(t, 404, "")

	// A preflight from a stranger: refused, no CORS headers.
	r := p.do("OPTIONS", "/v1/positions", "", "Origin", "http://evil.example", "Access-Control-Request-Method", "POST")
	if r.wantErr(t, 403, "--allowed-origins"); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS for a stranger")
	}
	// DNS rebinding: the page's own name pointed at 127.0.0.1.
	for _, host := range []string{"evil.example:" + port(p.addr), "127.0.0.1.nip.io", "evil.example"} {
		rawHost(t, p.addr, "GET", "/v1/within?bbox=-180,-90,180,90", host, 421)
	}
	for _, host := range []string{p.addr, "localhost:" + port(p.addr), "localhost"} {
		rawHost(t, p.addr, "GET", "/v1/stats", host, 200)
	}
	// The live feed's WebSocket from a stranger's page.
	p.do("GET", "/v1/ws", "", "Origin", "http://evil.example", "Connection", "Upgrade", "Upgrade", "websocket",
		"Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==").wantErr(t, 403, "cross-origin GET")

	// The server's own page, and curl (no Origin), still write.
	var a postAnswer
	decode(t, p.do("POST", "/v1/positions", line, "Origin", self, "Content-Type", ndjson).want(t, 200), &a)
	decode(t, p.do("POST", "/v1/positions", line, "Content-Type", "application/x-ndjson; charset=utf-8").want(t, 200), &a)
	if a.Accepted != 1 {
		t.Fatalf("%+v", a)
	}
	metrics := string(p.do("GET", "/metrics", "").body)
	for _, want := range []string{`fleetd_http_refused_total{reason="host"} 3`, `fleetd_http_refused_total{reason="origin"} 6`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestSecurityAllowedOrigins: a named origin writes and gets CORS with a
// correct preflight; --allowed-hosts adds a Host.
func TestSecurityAllowedOrigins(t *testing.T) {
	p := start(t, "--allowed-origins", "https://ops.example.com", "--allowed-hosts", "fleet.lan")
	r := p.do("OPTIONS", "/v1/positions", "", "Origin", "https://ops.example.com", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization,content-type")
	if r.code != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://ops.example.com" ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Authorization") || r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight: %d %v", r.code, r.header)
	}
	r = p.do("POST", "/v1/positions", `{"id":"a","lat":1,"lon":1,"ts":1764000000}`, "Origin", "https://ops.example.com", "Content-Type", ndjson)
	if r.want(t, 200); r.header.Get("Access-Control-Allow-Origin") != "https://ops.example.com" || !strings.Contains(r.header.Get("Vary"), "Origin") {
		t.Fatalf("CORS answer headers %v", r.header)
	}
	p.do("POST", "/v1/positions", `{"id":"a","lat":1,"lon":1}`, "Origin", "https://ops.example.com.evil.example", "Content-Type", ndjson).wantErr(t, 403, "cross-origin")
	rawHost(t, p.addr, "GET", "/v1/stats", "fleet.lan:8080", 200)
	rawHost(t, p.addr, "GET", "/v1/stats", "other.lan", 421)
}

// TestSecurityScopes: a token file with scoped tokens through the real
// binary, the live feed included; SIGHUP reloads it.
func TestSecurityScopes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, file, "# devices post, the wall screen reads, ops administer\ndev-7f3a ingest gateways\nwall-91c2 read wall\nops-55e0 admin,read ops\n")
	p := start(t, "--token-file", file)
	nd := []string{"Content-Type", ndjson}
	body := `{"id":"truck-0000001","lat":1,"lon":1,"ts":1764000000}`
	bearer := func(tok string, h ...string) []string {
		return append([]string{"Authorization", "Bearer " + tok}, h...)
	}

	p.do("POST", "/v1/positions", body, bearer("dev-7f3a", nd...)...).want(t, 200)
	p.do("POST", "/v1/positions", body, bearer("wall-91c2", nd...)...).wantErr(t, 403, `token "wall" has scope read; POST /v1/positions needs ingest`)
	p.do("GET", "/v1/trucks/truck-0000001", "", bearer("wall-91c2")...).want(t, 200)
	p.do("GET", "/v1/trucks/truck-0000001", "", bearer("dev-7f3a")...).wantErr(t, 403, "needs read")
	p.do("GET", "/v1/density?bbox=-180,-90,180,90&zoom=1", "", bearer("dev-7f3a")...).wantErr(t, 403, "needs read")
	p.do("PUT", "/v1/rules/fast", `{"when":"speed > 120"}`, bearer("wall-91c2")...).wantErr(t, 403, "needs admin")
	p.do("PUT", "/v1/rules/fast", `{"when":"speed > 120"}`, bearer("ops-55e0")...).want(t, 200)
	p.do("GET", "/debug/pprof/cmdline", "", bearer("wall-91c2")...).wantErr(t, 403, "needs admin")
	if r := p.do("GET", "/debug/pprof/cmdline", "", bearer("ops-55e0")...); r.code != 200 {
		t.Fatalf("pprof with admin: %d", r.code)
	}
	p.do("DELETE", "/v1/trucks/truck-0000001", "", bearer("wall-91c2")...).wantErr(t, 403, "needs admin")
	p.do("GET", "/v1/stream", "", bearer("dev-7f3a")...).wantErr(t, 403, "needs read")
	p.do("GET", "/v1/stream", "", "Authorization", "").wantErr(t, 401, "bearer token")
	p.do("GET", "/v1/ws", "", bearer("dev-7f3a")...).wantErr(t, 403, "needs read")
	// The read token gets the stream (its first bytes).
	req, _ := http.NewRequest("GET", p.url("/v1/stream"), nil)
	req.Header.Set("Authorization", "Bearer wall-91c2")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream with read: %v %v", res, err)
	}
	res.Body.Close()
	if strings.Contains(p.logText(), "wall-91c2") || strings.Contains(p.logText(), "dev-7f3a") {
		t.Fatal("a token in the log")
	}

	// SIGHUP: the wall token is gone, a new one came; a bad file keeps these.
	writeFile(t, file, "dev-7f3a ingest gateways\nops-55e0 admin,read ops\nkiosk-0d1e read kiosk\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog("token file reloaded")
	p.do("GET", "/v1/stats", "", bearer("wall-91c2")...).wantErr(t, 401, "bearer token")
	p.do("GET", "/v1/stats", "", bearer("kiosk-0d1e")...).want(t, 200)
	writeFile(t, file, "kiosk-0d1e reed\n")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog("token file not reloaded")
	p.do("GET", "/v1/stats", "", bearer("kiosk-0d1e")...).want(t, 200)
	if code := p.stop(sigterm); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestSecurityLogin: the dashboard's way in is a session cookie, not a
// token in the page; /metrics can be made private.
func TestSecurityLogin(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, file, "wall-91c2 read wall\n")
	p := start(t, "--token-file", file, "--metrics-public=false")
	p.do("GET", "/metrics", "").wantErr(t, 401, "bearer token")
	if r := p.do("GET", "/metrics", "", "Authorization", "Bearer wall-91c2"); r.code != 200 {
		t.Fatalf("/metrics with read: %d", r.code)
	}
	// The page itself loads without a token, under a strict CSP.
	page := p.do("GET", "/", "")
	if page.code != 200 || !strings.Contains(page.header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("dashboard: %d %q", page.code, page.header.Get("Content-Security-Policy"))
	}
	p.do("POST", "/v1/login", `{"token":"nope"}`, "Content-Type", "application/json").wantErr(t, 401, "unknown token")
	p.do("POST", "/v1/login", `{"token":"wall-91c2"}`, "Content-Type", "application/json", "Origin", "http://evil.example").wantErr(t, 403, "cross-origin")
	r := p.do("POST", "/v1/login", `{"token":"wall-91c2"}`, "Content-Type", "application/json", "Origin", "http://"+p.addr)
	r.want(t, 200)
	sc := r.header.Get("Set-Cookie")
	if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") || strings.Contains(sc, "Secure") || strings.Contains(sc, "wall-91c2") {
		t.Fatalf("Set-Cookie %q", sc)
	}
	cookie := strings.SplitN(sc, ";", 2)[0]
	p.do("GET", "/v1/within?bbox=-1,-1,1,1", "", "Cookie", cookie).want(t, 200)
	p.do("GET", "/v1/stream", "", "Cookie", cookie, "Origin", "http://evil.example", "Upgrade", "websocket").wantErr(t, 403, "cross-origin")
	p.do("DELETE", "/v1/trucks/x", "", "Cookie", cookie).wantErr(t, 403, "needs admin")
	p.do("POST", "/v1/logout", "", "Cookie", cookie).want(t, 200)
	p.do("GET", "/v1/stats", "", "Cookie", cookie).wantErr(t, 401, "session")
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// rawHost sends a request with a given Host header (net/http would set
// its own) and checks the status.
func rawHost(t *testing.T, addr, method, path, host string, want int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != want {
		t.Fatalf("%s %s Host %q: %d, want %d", method, path, host, res.StatusCode, want)
	}
}

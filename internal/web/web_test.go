package web

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var configRE = regexp.MustCompile(`<script id="fleetd-config" type="application/json">(.*?)</script>`)

func pageConfigOf(t *testing.T, body string) map[string]any {
	t.Helper()
	m := configRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no config script in page:\n%.500s", body)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(m[1]), &cfg); err != nil {
		t.Fatalf("config %q: %v", m[1], err)
	}
	return cfg
}

func TestIndex(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string // the injected JSON, as encoding/json writes it
	}{
		{"defaults", Options{}, `{"basemap_style":"","features":{"stream":false,"zones":false,"alerts":false}}`},
		{"online style and features", Options{BasemapStyle: "https://tiles.example/style.json", Stream: true, Alerts: true},
			`{"basemap_style":"https://tiles.example/style.json","features":{"stream":true,"zones":false,"alerts":true}}`},
		{"hostile style URL cannot end the script", Options{BasemapStyle: `x</script><script>alert(1)</script>&`},
			`{"basemap_style":"x\u003c/script\u003e\u003cscript\u003ealert(1)\u003c/script\u003e\u0026","features":{"stream":false,"zones":false,"alerts":false}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Handler(tc.opts)
			for _, path := range []string{"/", "/index.html"} {
				w := get(t, h, "GET", path)
				if w.Code != 200 {
					t.Fatalf("%s: %d", path, w.Code)
				}
				body := w.Body.String()
				if m := configRE.FindStringSubmatch(body); m == nil || m[1] != tc.want {
					t.Fatalf("%s: config %q, want %q", path, m, tc.want)
				}
				if strings.Count(body, "<script") != 2 {
					t.Fatalf("%s: the page has %d scripts", path, strings.Count(body, "<script"))
				}
				hd := w.Header()
				if hd.Get("Content-Type") != "text/html; charset=utf-8" || hd.Get("Cache-Control") != "no-cache" || hd.Get("ETag") == "" {
					t.Errorf("%s: headers %v", path, hd)
				}
				csp := hd.Get("Content-Security-Policy")
				if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "worker-src 'self' blob:") {
					t.Errorf("%s: CSP %q", path, csp)
				}
				if online := strings.Contains(csp, "connect-src 'self' https: http:"); online != (tc.opts.BasemapStyle != "") {
					t.Errorf("%s: CSP %q with BasemapStyle %q", path, csp, tc.opts.BasemapStyle)
				}
			}
		})
	}
}

// assetRefs lists the local files index.html and the entry script refer to.
func assetRefs(t *testing.T, h http.Handler) []string {
	t.Helper()
	page := get(t, h, "GET", "/").Body.String()
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		p = "/" + strings.TrimPrefix(strings.TrimPrefix(p, "."), "/")
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		if strings.Contains(m[1], "//") {
			t.Errorf("index.html refers to another origin: %s", m[1])
			continue
		}
		add(m[1])
	}
	for _, p := range out {
		if strings.HasSuffix(p, ".js") {
			js := get(t, h, "GET", p).Body.String()
			// Vite writes asset URLs relative to the entry script:
			// new URL(`name-HASH.ext`, import.meta.url).
			for _, m := range regexp.MustCompile("new URL\\(`([A-Za-z0-9_.-]+)`,import\\.meta\\.url\\)").FindAllStringSubmatch(js, -1) {
				add(path.Join(path.Dir(p), m[1]))
			}
		}
	}
	return out
}

func TestAssets(t *testing.T) {
	h := Handler(Options{})
	refs := assetRefs(t, h)
	var kinds []string
	for _, p := range refs {
		kinds = append(kinds, p[strings.LastIndex(p, "."):])
	}
	for _, ext := range []string{".js", ".css", ".mjs", ".json", ".svg"} {
		if !strings.Contains(strings.Join(kinds, " "), ext) {
			t.Errorf("no %s asset referenced (have %v): the bundle is incomplete", ext, refs)
		}
	}
	total := 0
	for _, p := range refs {
		w := get(t, h, "GET", p)
		if w.Code != 200 {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
			continue
		}
		total += w.Body.Len()
		hd := w.Header()
		want := map[string]string{".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".json": "application/json", ".svg": "image/svg+xml"}[p[strings.LastIndex(p, "."):]]
		if hd.Get("Content-Type") != want {
			t.Errorf("%s: Content-Type %q, want %q", p, hd.Get("Content-Type"), want)
		}
		if strings.HasPrefix(p, "/assets/") && hd.Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control %q", p, hd.Get("Cache-Control"))
		}
		if hd.Get("X-Content-Type-Options") != "nosniff" || hd.Get("Content-Encoding") != "" {
			t.Errorf("%s: headers %v", p, hd)
		}
		// Revalidation.
		etag := hd.Get("ETag")
		if w2 := get(t, h, "GET", p, "If-None-Match", etag); w2.Code != http.StatusNotModified || w2.Body.Len() != 0 {
			t.Errorf("%s: If-None-Match %s: %d", p, etag, w2.Code)
		}
		if w2 := get(t, h, "HEAD", p); w2.Code != 200 || w2.Body.Len() != 0 || w2.Header().Get("Content-Length") != hd.Get("Content-Length") {
			t.Errorf("%s: HEAD %d, %d bytes, length %q", p, w2.Code, w2.Body.Len(), w2.Header().Get("Content-Length"))
		}
	}
	// The page must stay light enough to load fast and to keep in git.
	if total > 2_200_000 {
		t.Errorf("the bundle is %d bytes; keep it under ~2 MB", total)
	}
	t.Logf("%d files, %d bytes", len(refs), total)
}

func TestGzip(t *testing.T) {
	h := Handler(Options{})
	for _, p := range assetRefs(t, h) {
		plain := get(t, h, "GET", p)
		w := get(t, h, "GET", p, "Accept-Encoding", "br, gzip;q=0.8")
		if plain.Body.Len() < 1024 || p == "/favicon.svg" {
			continue
		}
		if w.Header().Get("Content-Encoding") != "gzip" || !strings.Contains(w.Header().Get("Vary"), "Accept-Encoding") {
			t.Errorf("%s: not gzipped: %v", p, w.Header())
			continue
		}
		if w.Header().Get("ETag") == plain.Header().Get("ETag") {
			t.Errorf("%s: gzip and identity share ETag %s", p, w.Header().Get("ETag"))
		}
		zr, err := gzip.NewReader(w.Body)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(body, plain.Body.Bytes()) {
			t.Errorf("%s: gzip body differs (%v)", p, err)
		}
		if w.Body.Len() > plain.Body.Len() {
			t.Errorf("%s: gzip larger", p)
		}
		if refused := get(t, h, "GET", p, "Accept-Encoding", "gzip;q=0, *"); refused.Header().Get("Content-Encoding") != "" {
			t.Errorf("%s: gzip sent though refused", p)
		}
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := Handler(Options{})
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/nope", 404, ""},
		{"GET", "/assets/missing.js", 404, ""},
		{"GET", "/assets/../index.html", 404, ""},
		{"GET", "/v1/stream", 404, ""},
		{"POST", "/", 405, "GET, HEAD"},
		{"DELETE", "/favicon.svg", 405, "GET, HEAD"},
	} {
		w := get(t, h, tc.method, tc.path)
		var e struct{ Error string }
		if w.Code != tc.code || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %q", tc.method, tc.path, w.Code, w.Body)
		}
		if w.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: Allow %q", tc.method, tc.path, w.Header().Get("Allow"))
		}
	}
}

func TestInjectConfigErrors(t *testing.T) {
	if _, err := injectConfig([]byte("<html></html>"), pageConfig{}); err == nil || !strings.HasPrefix(err.Error(), "web: ") {
		t.Errorf("missing config: %v", err)
	}
	if _, err := injectConfig([]byte(configOpen+"{}"), pageConfig{}); err == nil {
		t.Error("unclosed config accepted")
	}
}

func TestAcceptsGzip(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"gzip"}, true},
		{[]string{"GZIP"}, true},
		{[]string{"br, gzip;q=0.5"}, true},
		{[]string{"br", "gzip"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.0"}, false},
		{[]string{"*"}, true},
		{[]string{"*;q=0"}, false},
		{[]string{"gzip;q=0, *"}, false},
		{[]string{"identity"}, false},
		{[]string{"x-gzip"}, true},
		{[]string{"gzip;q=abc"}, false},
		{[]string{"gzipx"}, false},
	} {
		if got := acceptsGzip(tc.in); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzAcceptsGzip(f *testing.F) {
	for _, s := range []string{"gzip", "br, gzip;q=0.5", "*;q=0", "gzip;q=NaN", ";;,,=", "gzip;q=1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		low := strings.ToLower(s)
		// Without a gzip or * coding nothing can accept gzip.
		if acceptsGzip([]string{s}) && !strings.Contains(low, "gzip") && !strings.Contains(s, "*") {
			t.Fatalf("%q accepted", s)
		}
		// Adding an explicit refusal of gzip refuses it, unless s names gzip itself.
		if acceptsGzip([]string{s + ", gzip;q=0"}) && !strings.Contains(low, "gzip") {
			t.Fatalf("%q plus gzip;q=0 accepted", s)
		}
	})
}

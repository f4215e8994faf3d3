package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed all:dist
var distFS embed.FS

// Options configures the page Handler serves.
type Options struct {
	// BasemapStyle, if not empty, is the URL of a MapLibre style the map
	// uses instead of the built-in offline outlines (countries and US
	// states). The browser then fetches that style and its tiles itself.
	BasemapStyle string

	// The optional API routes the server mounts. The page requests only
	// the routes named here, so a server without them causes no failed
	// requests (each would be an error in the browser's console); with a
	// route named here but answering 404 the page still falls back.
	//
	// Stream: GET /v1/stream (SSE live feed). Without it the page polls
	// GET /v1/within for the trucks in view.
	Stream bool
	// Zones: GET /v1/zones, drawn as outlines.
	Zones bool
	// Alerts: GET /v1/alerts, listed in the alerts panel.
	Alerts bool
}

// pageConfig is what the page reads from <script id="fleetd-config">.
type pageConfig struct {
	BasemapStyle string `json:"basemap_style"`
	Features     struct {
		Stream bool `json:"stream"`
		Zones  bool `json:"zones"`
		Alerts bool `json:"alerts"`
	} `json:"features"`
}

// configOpen and configClose delimit the config object in index.html.
const (
	configOpen  = `<script id="fleetd-config" type="application/json">`
	configClose = `</script>`
)

// file is one servable file: its bytes, headers, and lazily its gzip form.
type file struct {
	body  []byte
	ctype string
	etag  string // strong, quoted
	cache string // Cache-Control

	gzOnce sync.Once
	gz     []byte // nil: not worth compressing
	gzEtag string
}

func newFile(name string, body []byte, cache string) *file {
	sum := sha256.Sum256(body)
	return &file{
		body:  body,
		ctype: contentType(name),
		etag:  `"` + hex.EncodeToString(sum[:12]) + `"`,
		cache: cache,
	}
}

// gzipped returns the gzip form and its ETag, or nil when the file is not
// worth compressing (an image format, tiny, or no smaller compressed).
func (f *file) gzipped() ([]byte, string) {
	f.gzOnce.Do(func() {
		if len(f.body) < 1024 || !compressible(f.ctype) {
			return
		}
		var b bytes.Buffer
		zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
		if err != nil {
			panic("BUG: web: gzip level rejected: " + err.Error())
		}
		// Writes to a bytes.Buffer cannot fail.
		_, _ = zw.Write(f.body)
		_ = zw.Close()
		if b.Len() < len(f.body)*9/10 {
			f.gz = b.Bytes()
			f.gzEtag = strings.TrimSuffix(f.etag, `"`) + `-gz"`
		}
	})
	return f.gz, f.gzEtag
}

// contentType is by extension, from a fixed table rather than the system's
// MIME database, so the answer does not depend on the machine.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".json":
		return "application/json"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".woff2":
		return "font/woff2"
	case ".pbf":
		return "application/x-protobuf"
	}
	return "application/octet-stream"
}

func compressible(ctype string) bool {
	return strings.HasPrefix(ctype, "text/") || strings.HasPrefix(ctype, "application/json") ||
		strings.HasPrefix(ctype, "image/svg") || strings.HasPrefix(ctype, "application/x-protobuf")
}

// bundle is the embedded dist/ tree, read once per process: every Handler
// shares its files (and their gzip forms). index.html is kept apart since
// each Handler injects its own Options into it.
var bundle struct {
	once  sync.Once
	index []byte
	files map[string]*file // by URL path
}

func loadBundle() {
	bundle.once.Do(func() {
		bundle.files = map[string]*file{}
		err := fs.WalkDir(distFS, "dist", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			body, err := distFS.ReadFile(p)
			if err != nil {
				return err
			}
			url := strings.TrimPrefix(p, "dist")
			switch {
			case url == "/index.html":
				bundle.index = body
			case strings.HasPrefix(url, "/assets/"):
				bundle.files[url] = newFile(url, body, "public, max-age=31536000, immutable")
			default:
				bundle.files[url] = newFile(url, body, "public, max-age=3600")
			}
			return nil
		})
		if err != nil {
			panic("BUG: web: reading the embedded bundle: " + err.Error())
		}
		if bundle.index == nil {
			panic("BUG: web: the embedded bundle has no index.html")
		}
	})
}

// injectConfig returns index with the config object replaced by cfg.
func injectConfig(index []byte, cfg pageConfig) ([]byte, error) {
	i := bytes.Index(index, []byte(configOpen))
	if i < 0 {
		return nil, fmt.Errorf("web: index.html has no %s", configOpen)
	}
	start := i + len(configOpen)
	n := bytes.Index(index[start:], []byte(configClose))
	if n < 0 {
		return nil, fmt.Errorf("web: index.html: config script is not closed")
	}
	// encoding/json escapes <, > and & as \u003c…, so the JSON cannot end
	// the script element whatever the options hold.
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("web: encoding the page config: %w", err)
	}
	out := make([]byte, 0, len(index)+len(js))
	out = append(out, index[:start]...)
	out = append(out, js...)
	out = append(out, index[start+n:]...)
	return out, nil
}

// csp is the page's Content-Security-Policy. Offline, the page may load and
// connect to its own origin only; with an online basemap style, map data
// (style, tiles, sprites, glyphs) may come from any http(s) origin.
func csp(online bool) string {
	connect, img := "'self'", "'self' data: blob:"
	if online {
		connect += " https: http:"
		img += " https: http:"
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; " +
		"img-src " + img + "; connect-src " + connect + "; " +
		"worker-src 'self' blob:; child-src 'self' blob:; font-src 'self'; " +
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

type handler struct {
	index *file
	csp   string
}

// Handler returns the handler that serves the dashboard: mount it at "/"
// (it answers 404 for paths that are not part of the bundle).
func Handler(o Options) http.Handler {
	loadBundle()
	var cfg pageConfig
	cfg.BasemapStyle = o.BasemapStyle
	cfg.Features.Stream = o.Stream
	cfg.Features.Zones = o.Zones
	cfg.Features.Alerts = o.Alerts
	page, err := injectConfig(bundle.index, cfg)
	if err != nil {
		// The committed bundle is built from web/index.html, which has the
		// config element; TestBundle checks it.
		panic("BUG: " + err.Error())
	}
	return &handler{
		index: newFile("/index.html", page, "no-cache"),
		csp:   csp(o.BasemapStyle != ""),
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	var f *file
	if p == "/" || p == "/index.html" {
		f = h.index
	} else {
		f = bundle.files[p]
	}
	if f == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, p))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; allowed: GET, HEAD", r.Method, p))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", f.ctype)
	hd.Set("Cache-Control", f.cache)
	hd.Set("X-Content-Type-Options", "nosniff")
	if f == h.index {
		hd.Set("Content-Security-Policy", h.csp)
		hd.Set("Referrer-Policy", "no-referrer")
	}
	body, etag := f.body, f.etag
	if gz, gzEtag := f.gzipped(); gz != nil {
		hd.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			body, etag = gz, gzEtag
			hd.Set("Content-Encoding", "gzip")
		}
	}
	hd.Set("ETag", etag)
	// ServeContent answers If-None-Match (304), HEAD and Range requests.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether Accept-Encoding values allow gzip: "gzip"
// (or "x-gzip") with a q above 0, or else "*" with a q above 0. An explicit
// gzip;q=0 refuses gzip even if "*" is accepted.
func acceptsGzip(values []string) bool {
	gzipQ, starQ := -1.0, -1.0
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(part, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if name != "gzip" && name != "x-gzip" && name != "*" {
				continue
			}
			q := 1.0
			for param := range strings.SplitSeq(params, ";") {
				k, val, ok := strings.Cut(param, "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
					if err != nil || math.IsNaN(f) { // unreadable: not acceptable
						f = 0
					}
					q = f
				}
			}
			if name == "*" {
				starQ = max(starQ, q)
			} else {
				gzipQ = max(gzipQ, q)
			}
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return starQ > 0
}

// writeError writes {"error": msg} with code.
func writeError(w http.ResponseWriter, code int, msg string) {
	js, err := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	if err != nil {
		panic("BUG: web: encoding an error message: " + err.Error())
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(js, '\n'))
}

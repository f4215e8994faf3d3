package web

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/store"
)

const (
	// MaxDensityCells bounds the cells of one density answer (about 48 KiB
	// in the binary form), whatever the box and zoom.
	MaxDensityCells = 4096
	// DensityCellPx is the smallest on-screen width of a density cell the
	// zoom parameter asks for: finer grids would be noise at that zoom.
	DensityCellPx = 8
	// maxZoom is the largest zoom accepted (MapLibre's own limit is 24).
	maxZoom = 30

	// densityMagic starts the binary form; densityHeader and densityCell
	// are its sizes (see doc.go).
	densityMagic  = "FDN1"
	densityHeader = 24
	densityCell   = 12

	// DensityContentType is the media type of the binary form.
	DensityContentType = "application/x-fleetd-density"
)

// densityQuery is a parsed /v1/density request.
type densityQuery struct {
	box     geo.Box
	zoom    float64
	hasZoom bool
	binary  bool
}

var errDensity = errors.New("density")

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errDensity}, args...)...)
}

// clip shortens a parameter echoed in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}

// parseDensityQuery validates the query string of a density request.
// accept is the request's Accept header.
func parseDensityQuery(raw, accept string) (densityQuery, error) {
	var q densityQuery
	vals, err := parseQuery(raw)
	if err != nil {
		return q, err
	}
	bbox, ok := vals["bbox"]
	if !ok {
		return q, badf("bbox is required: bbox=minLon,minLat,maxLon,maxLat")
	}
	if q.box, err = parseBox(bbox); err != nil {
		return q, err
	}
	if z, ok := vals["zoom"]; ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(z), 64)
		if err != nil || math.IsNaN(f) || f < 0 || f > maxZoom {
			return q, badf("zoom %q must be a number from 0 to %d", clip(z), maxZoom)
		}
		q.zoom, q.hasZoom = f, true
	}
	switch f := vals["format"]; f {
	case "bin":
		q.binary = true
	case "json":
	case "":
		q.binary = strings.Contains(accept, DensityContentType)
	default:
		return q, badf("format %q must be json or bin", clip(f))
	}
	for k := range vals {
		switch k {
		case "bbox", "zoom", "format":
		default:
			return q, badf("unknown parameter %q (density takes bbox, zoom and format)", clip(k))
		}
	}
	return q, nil
}

// parseQuery is url.ParseQuery that rejects repeated parameters (an
// ambiguous request) and keeps one value per name.
func parseQuery(raw string) (map[string]string, error) {
	vals := make(map[string]string, 3)
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, err1 := unescape(k)
		v, err2 := unescape(v)
		if err1 != nil || err2 != nil {
			return nil, badf("malformed query %q", clip(part))
		}
		if _, dup := vals[k]; dup {
			return nil, badf("parameter %q given twice", clip(k))
		}
		vals[k] = v
	}
	return vals, nil
}

// unescape decodes %XX escapes and '+' as in a form-encoded query.
func unescape(s string) (string, error) {
	if !strings.ContainsAny(s, "%+") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b.WriteByte(' ')
		case '%':
			if i+2 >= len(s) {
				return "", errDensity
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi < 0 || lo < 0 {
				return "", errDensity
			}
			b.WriteByte(byte(hi<<4 | lo))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// parseBox parses the bbox parameter; see geo.ParseBox.
func parseBox(s string) (geo.Box, error) {
	b, err := geo.ParseBox(s)
	if err != nil {
		return geo.Box{}, badf("%s", err)
	}
	return b, nil
}

// lonSpan is the box's width in degrees, in [0, 360].
func lonSpan(b geo.Box) float64 {
	if b.MinLon <= b.MaxLon {
		return b.MaxLon - b.MinLon
	}
	return 360 - (b.MinLon - b.MaxLon)
}

// gridCells bounds the number of cells of side d a box of w×h degrees
// touches.
func gridCells(w, h, d float64) float64 {
	return (math.Floor(w/d) + 2) * (math.Floor(h/d) + 2)
}

// densityFactor picks the coarsening factor for a box: the smallest that
// makes a cell DensityCellPx pixels wide at zoom (if given) and keeps the
// grid within MaxDensityCells.
func densityFactor(b geo.Box, cellDeg, zoom float64, hasZoom bool) int {
	f := 1
	if hasZoom {
		degPerPx := 360 / (512 * math.Exp2(zoom))
		f = max(1, int(math.Ceil(DensityCellPx*degPerPx/cellDeg-1e-9)))
	}
	w, h := min(lonSpan(b), 360), min(b.MaxLat-b.MinLat, 180)
	// Start from the square-root estimate, then step up to the exact bound.
	if est := int(math.Sqrt(w * h / (MaxDensityCells * cellDeg * cellDeg))); est > f {
		f = est
	}
	rows, cols := int(math.Round(180/cellDeg)), int(math.Round(360/cellDeg))
	for gridCells(w, h, cellDeg*float64(f)) > MaxDensityCells && (f < rows || f < cols) {
		f++
	}
	return f
}

// snapBox widens b to whole cells of side d on the grid anchored at
// (-90, -180), clamped to the world.
func snapBox(b geo.Box, d float64) geo.Box {
	// Edges are rounded to the store's 1e-7 degree so that float noise
	// (0.1·3 − 90) does not leave them a hair off the grid.
	down := func(v, origin float64) float64 { return round7(origin + math.Floor((v-origin)/d+1e-9)*d) }
	up := func(v, origin float64) float64 { return round7(origin + math.Ceil((v-origin)/d-1e-9)*d) }
	s := geo.Box{
		MinLat: max(-90, down(b.MinLat, -90)),
		MaxLat: min(90, up(b.MaxLat, -90)),
		MinLon: max(-180, down(b.MinLon, -180)),
		MaxLon: min(180, up(b.MaxLon, -180)),
	}
	// A box of zero height or width on a cell edge still gets the cell
	// north or east of that edge.
	if s.MaxLat <= s.MinLat {
		s.MaxLat = min(90, s.MinLat+d)
	}
	if b.MinLon <= b.MaxLon && s.MaxLon <= s.MinLon {
		s.MaxLon = min(180, s.MinLon+d)
	}
	if b.MinLon > b.MaxLon && s.MinLon <= s.MaxLon {
		// An antimeridian box whose snapped edges met: it now covers every
		// longitude.
		s.MinLon, s.MaxLon = -180, 180
	}
	return s
}

// cornerIn reports whether a cell of side d with south-west corner
// (lat, lon) is one of the cells that tile the snapped box s.
func cornerIn(s geo.Box, lat, lon, d float64) bool {
	eps := d * 1e-6
	if lat < s.MinLat-eps || lat > s.MaxLat-eps {
		return false
	}
	if s.MinLon <= s.MaxLon {
		return lon >= s.MinLon-eps && lon <= s.MaxLon-eps
	}
	return lon >= s.MinLon-eps || lon <= s.MaxLon-eps
}

// round7 rounds degrees to the store's 1e-7 resolution, so that corners
// computed as row·cellDeg − 90 print without float noise.
func round7(v float64) float64 { return math.Round(v*1e7) / 1e7 }

type densityScratch struct {
	cells []store.DensityCell
	buf   []byte
}

// densityPool holds scratch for one request; buffers grown past
// maxPooledBuf by an unusual request are dropped rather than kept.
var densityPool = sync.Pool{New: func() any { return new(densityScratch) }}

const maxPooledBuf = 256 << 10

// DensityHandler answers GET /v1/density from the store's index (see the
// package documentation for the parameters and both answer forms).
func DensityHandler(st *store.Store) http.Handler {
	if st == nil {
		panic("BUG: web: DensityHandler with a nil store")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; allowed: GET, HEAD", r.Method, r.URL.Path))
			return
		}
		q, err := parseDensityQuery(r.URL.RawQuery, r.Header.Get("Accept"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		sc := densityPool.Get().(*densityScratch)
		defer func() {
			if cap(sc.buf) <= maxPooledBuf && cap(sc.cells) <= 4*MaxDensityCells {
				densityPool.Put(sc)
			}
		}()
		cellDeg := st.CellDeg()
		factor := densityFactor(q.box, cellDeg, q.zoom, q.hasZoom)
		size := cellDeg * float64(factor)
		snapped := snapBox(q.box, size)
		// store.Density also counts a margin of index cells around the box;
		// the coarse cells outside the snapped box hold only part of their
		// trucks, so they are dropped.
		sc.cells = slices.DeleteFunc(st.Density(snapped, factor, sc.cells[:0]), func(c store.DensityCell) bool {
			return !cornerIn(snapped, c.MinLat, c.MinLon, size)
		})
		slices.SortFunc(sc.cells, func(a, b store.DensityCell) int {
			return cmp.Or(cmp.Compare(a.MinLat, b.MinLat), cmp.Compare(a.MinLon, b.MinLon))
		})
		var ctype string
		if q.binary {
			sc.buf, ctype = appendDensityBinary(sc.buf[:0], size, sc.cells), DensityContentType
		} else {
			sc.buf, ctype = appendDensityJSON(sc.buf[:0], size, factor, sc.cells), "application/json"
		}
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Length", strconv.Itoa(len(sc.buf)))
		ms := float64(time.Since(start).Microseconds()) / 1000
		h.Set("Server-Timing", "density;dur="+strconv.FormatFloat(ms, 'f', 3, 64))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(sc.buf) // a client that went away is no error of ours
		}
	})
}

// appendDensityJSON appends {"cell_deg","factor","total","cells"}.
func appendDensityJSON(dst []byte, size float64, factor int, cells []store.DensityCell) []byte {
	total := 0
	for i := range cells {
		total += cells[i].Count
	}
	dst = append(dst, `{"cell_deg":`...)
	dst = strconv.AppendFloat(dst, round7(size), 'f', -1, 64)
	dst = append(dst, `,"factor":`...)
	dst = strconv.AppendInt(dst, int64(factor), 10)
	dst = append(dst, `,"total":`...)
	dst = strconv.AppendInt(dst, int64(total), 10)
	dst = append(dst, `,"cells":[`...)
	for i := range cells {
		c := &cells[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		dst = strconv.AppendFloat(dst, round7(c.MinLat), 'f', -1, 64)
		dst = append(dst, ',')
		dst = strconv.AppendFloat(dst, round7(c.MinLon), 'f', -1, 64)
		dst = append(dst, ',')
		dst = strconv.AppendInt(dst, int64(c.Count), 10)
		dst = append(dst, ']')
	}
	return append(dst, "]}\n"...)
}

// appendDensityBinary appends the binary form drawn in doc.go.
func appendDensityBinary(dst []byte, size float64, cells []store.DensityCell) []byte {
	total := uint64(0)
	for i := range cells {
		total += uint64(cells[i].Count)
	}
	dst = append(dst, densityMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(cells)))
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(round7(size)))
	dst = binary.LittleEndian.AppendUint64(dst, total)
	for i := range cells {
		c := &cells[i]
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(c.MinLat)))
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(c.MinLon)))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(c.Count))
	}
	return dst
}

package api

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/vfs"
)

// newHistoryFixture is a Server over a durable engine (in memory) that
// keeps history, with small buffers so that tests cross file writes.
func newHistoryFixture(t testing.TB) *fixture {
	t.Helper()
	logBuf := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logBuf, nil))
	eng, err := engine.Open(engine.Options{DataDir: "/data", FS: vfs.NewMem(), Logger: logger,
		History: &history.Options{BufferBytes: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	s, err := New(Options{Engine: eng, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, s: s, eng: eng, log: logBuf}
}

// hpoint is a point as the API shows it, in the store's units.
type hpoint struct {
	ID      string
	TS      uint32
	Lat     int32
	Lon     int32
	Speed   int // 0.1 km/h
	Heading int
}

func (p hpoint) line() string {
	return fmt.Sprintf(`{"id":%q,"ts":%d,"lat":%.7f,"lon":%.7f,"speed":%.1f,"heading":%d}`, p.ID, p.TS,
		geo.FromFixed(p.Lat), geo.FromFixed(p.Lon), float64(p.Speed)/10, p.Heading)
}

// postedFleet posts a few trucks' points — late, resent and out of order
// among them — and returns what history must hold, per truck, in ts order
// without duplicates.
func postedFleet(t *testing.T, f *fixture, r *rand.Rand, now uint32) map[string][]hpoint {
	t.Helper()
	model := map[string][]hpoint{}
	var lines []string
	for i := range 8 {
		id := fmt.Sprintf("truck-%d", i)
		lat, lon := 40+r.Float64(), -74+r.Float64()
		for k := range 150 {
			ts := now - 5*3600 + uint32(k*120) + uint32(r.IntN(60))
			lat, lon = geo.Destination(lat, lon, r.Float64()*360, r.Float64()*500)
			p := hpoint{ID: id, TS: ts, Lat: geo.ToFixed(lat), Lon: geo.ToFixed(lon), Speed: r.IntN(1200), Heading: r.IntN(360)}
			model[id] = append(model[id], p)
			lines = append(lines, p.line())
			if r.IntN(10) == 0 {
				lines = append(lines, p.line()) // a resend
			}
		}
	}
	r.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] }) // out of order, late
	for len(lines) > 0 {
		n := min(len(lines), 1+r.IntN(200))
		w := f.post(strings.Join(lines[:n], "\n")+"\n", "")
		if w.Code != http.StatusOK {
			t.Fatalf("post: %d %s", w.Code, w.Body)
		}
		lines = lines[n:]
	}
	for id, ps := range model {
		slices.SortFunc(ps, func(a, b hpoint) int { return cmp.Compare(a.TS, b.TS) })
		model[id] = ps
	}
	return model
}

type trailAnswer struct {
	ID         string         `json:"id"`
	From       uint32         `json:"from"`
	To         uint32         `json:"to"`
	Points     []trailPointJS `json:"points"`
	Count      int            `json:"count"`
	Truncated  bool           `json:"truncated"`
	Incomplete bool           `json:"incomplete"`
}

type trailPointJS struct {
	ID      string  `json:"id"` // export only
	TS      uint32  `json:"ts"`
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	Speed   float64 `json:"speed"`
	Heading int     `json:"heading"`
}

func (p trailPointJS) point(id string) hpoint {
	return hpoint{ID: id, TS: p.TS, Lat: geo.ToFixed(p.Lat), Lon: geo.ToFixed(p.Lon), Speed: int(math.Round(p.Speed * 10)), Heading: p.Heading}
}

func TestHistoryEndpoints(t *testing.T) {
	r := rand.New(rand.NewPCG(uint64(testSeed(t)), 1))
	f := newHistoryFixture(t)
	now := uint32(time.Now().Unix())
	model := postedFleet(t, f, r, now)
	from := now - 6*3600

	for id, want := range model {
		// JSON
		var a trailAnswer
		if err := json.Unmarshal(wantJSON(t, f.get(fmt.Sprintf("/v1/trucks/%s/history?from=%d", id, from)), 200), &a); err != nil {
			t.Fatal(err)
		}
		got := make([]hpoint, len(a.Points))
		for i, p := range a.Points {
			got[i] = p.point(id)
		}
		if !slices.Equal(got, want) || a.Count != len(want) || a.Truncated || a.Incomplete {
			t.Fatalf("%s: %d points (count %d, truncated %v), want %d", id, len(got), a.Count, a.Truncated, len(want))
		}
		// NDJSON, by Accept and by format, and RFC 3339 times
		rfc := time.Unix(int64(from), 0).UTC().Format(time.RFC3339)
		w := f.do(req{method: "GET", target: "/v1/trucks/" + id + "/history?from=" + rfc, header: map[string]string{"Accept": "application/x-ndjson"}})
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("ndjson: %d %q", w.Code, w.Header().Get("Content-Type"))
		}
		got = got[:0]
		sc := bufio.NewScanner(w.Body)
		for sc.Scan() {
			var p trailPointJS
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
				t.Fatalf("ndjson line %q: %v", sc.Bytes(), err)
			}
			got = append(got, p.point(id))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s ndjson: %d points, want %d", id, len(got), len(want))
		}
		if tr := w.Result().Trailer.Get(incompleteTrailer); tr != "false" {
			t.Fatalf("trailer %s = %q", incompleteTrailer, tr)
		}
		// a window and a limit
		mid := want[len(want)/2].TS
		if err := json.Unmarshal(wantJSON(t, f.get(fmt.Sprintf("/v1/trucks/%s/history?from=%d&to=%d&limit=3", id, mid, now)), 200), &a); err != nil {
			t.Fatal(err)
		}
		if len(a.Points) != 3 || !a.Truncated || a.Points[0].TS < mid {
			t.Fatalf("limit 3 from %d: %+v", mid, a)
		}
		// GeoJSON, unsimplified: every point, as [lon, lat]
		var g struct {
			Type     string
			Geometry struct {
				Type        string
				Coordinates [][2]float64
			}
			Properties struct {
				ID     string
				Times  []uint32
				Points int
			}
		}
		gw := f.get(fmt.Sprintf("/v1/trucks/%s/history?from=%d&format=geojson", id, from))
		if err := json.Unmarshal(gw.Body.Bytes(), &g); err != nil || gw.Header().Get("Content-Type") != "application/geo+json" {
			t.Fatalf("geojson: %v %q", err, gw.Body.String())
		}
		if g.Type != "Feature" || g.Geometry.Type != "LineString" || len(g.Geometry.Coordinates) != len(want) || g.Properties.Points != len(want) {
			t.Fatalf("geojson: %+v", g)
		}
		for i, c := range g.Geometry.Coordinates {
			if geo.ToFixed(c[0]) != want[i].Lon || geo.ToFixed(c[1]) != want[i].Lat || g.Properties.Times[i] != want[i].TS {
				t.Fatalf("geojson point %d: %v at %d, want %+v", i, c, g.Properties.Times[i], want[i])
			}
		}
		// simplified: fewer points, ends kept
		gw = f.get(fmt.Sprintf("/v1/trucks/%s/history?from=%d&format=geojson&simplify_m=300", id, from))
		if err := json.Unmarshal(gw.Body.Bytes(), &g); err != nil {
			t.Fatal(err)
		}
		if n := len(g.Geometry.Coordinates); n >= len(want) || n < 2 || g.Properties.Times[n-1] != want[len(want)-1].TS {
			t.Fatalf("simplified to %d of %d points", n, len(want))
		}
		// trips and stops: a well-formed answer with its settings
		var tr struct {
			Trips      []map[string]float64 `json:"trips"`
			Stops      []map[string]float64 `json:"stops"`
			StopRadius float64              `json:"stop_radius_m"`
			StopMin    int                  `json:"stop_min_s"`
			ID         string               `json:"id"`
			From, To   uint32
			Truncated  bool
			Incomplete bool
		}
		decodeStrict(t, wantJSON(t, f.get(fmt.Sprintf("/v1/trucks/%s/trips?from=%d&stop_radius_m=50&stop_min_s=60", id, from)), 200), &tr)
		if tr.StopRadius != 50 || tr.StopMin != 60 || len(tr.Trips) == 0 {
			t.Fatalf("trips: %+v", tr)
		}
	}

	// history/within against brute force over the model
	for range 20 {
		lat, lon := 40+r.Float64(), -74+r.Float64()
		b := geo.Box{MinLat: lat, MinLon: lon, MaxLat: lat + r.Float64()*0.5, MaxLon: lon + r.Float64()*0.5}
		lo := now - 5*3600 + uint32(r.IntN(4*3600))
		hi := lo + uint32(r.IntN(3*3600))
		var wa struct {
			Results []struct {
				ID      string `json:"id"`
				FirstTS uint32 `json:"first_ts"`
				LastTS  uint32 `json:"last_ts"`
				Points  int    `json:"points"`
			} `json:"results"`
			Count      int  `json:"count"`
			Incomplete bool `json:"incomplete"`
			From, To   uint32
		}
		bbox := fmt.Sprintf("%f,%f,%f,%f", b.MinLon, b.MinLat, b.MaxLon, b.MaxLat)
		target := fmt.Sprintf("/v1/history/within?bbox=%s&from=%d&to=%d", bbox, lo, hi)
		decodeStrict(t, wantJSON(t, f.get(target), 200), &wa)
		pb, err := geo.ParseBox(bbox)
		if err != nil {
			t.Fatal(err)
		}
		rg := history.BoxRegion(pb)
		var ids []string
		for id, ps := range model {
			n, first, last := 0, uint32(0), uint32(0)
			for _, p := range ps {
				if p.TS >= lo && p.TS <= hi && rg.Contains(p.Lat, p.Lon) {
					if n == 0 {
						first = p.TS
					}
					n, last = n+1, p.TS
				}
			}
			if n > 0 {
				ids = append(ids, id)
				k := slices.IndexFunc(wa.Results, func(v struct {
					ID      string `json:"id"`
					FirstTS uint32 `json:"first_ts"`
					LastTS  uint32 `json:"last_ts"`
					Points  int    `json:"points"`
				}) bool {
					return v.ID == id
				})
				if k < 0 || wa.Results[k].FirstTS != first || wa.Results[k].LastTS != last || wa.Results[k].Points != n {
					t.Fatalf("%s: %s inside %d times (%d..%d); answer %+v", target, id, n, first, last, wa.Results)
				}
			}
		}
		if wa.Count != len(ids) || len(wa.Results) != len(ids) {
			t.Fatalf("%s: %d results, want %d", target, wa.Count, len(ids))
		}
	}

	// export: NDJSON and Parquet hold every point exactly once
	all := map[hpoint]int{}
	for _, ps := range model {
		for _, p := range ps {
			all[p]++
		}
	}
	w := f.get(fmt.Sprintf("/v1/history/export?from=%d", from))
	got := map[hpoint]int{}
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		var p trailPointJS
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("export line %q: %v", sc.Bytes(), err)
		}
		got[p.point(p.ID)]++
	}
	if len(got) != len(all) {
		t.Fatalf("export: %d distinct points, want %d", len(got), len(all))
	}
	for p, n := range got {
		if n != 1 || all[p] != 1 {
			t.Fatalf("export: %+v %d times, posted %d", p, n, all[p])
		}
	}
	w = f.get(fmt.Sprintf("/v1/history/export?from=%d&format=parquet", from))
	if w.Code != 200 {
		t.Fatalf("parquet export: %d %s", w.Code, w.Body)
	}
	body := w.Body.Bytes()
	pr := parquet.NewGenericReader[ExportRow](bytes.NewReader(body))
	rows := make([]ExportRow, 1000)
	got = map[hpoint]int{}
	for {
		n, err := pr.Read(rows)
		for _, row := range rows[:n] {
			p := hpoint{ID: row.ID, TS: uint32(row.TS / 1000), Lat: geo.ToFixed(row.Lat), Lon: geo.ToFixed(row.Lon),
				Speed: int(math.Round(float64(row.Speed) * 10)), Heading: int(row.Heading)}
			got[p]++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	pr.Close()
	if len(got) != len(all) {
		t.Fatalf("parquet: %d distinct rows, want %d", len(got), len(all))
	}
	for p, n := range got {
		if n != 1 || all[p] != 1 {
			t.Fatalf("parquet: %+v %d times, posted %d", p, n, all[p])
		}
	}
}

func TestHistoryBadRequests(t *testing.T) {
	f := newHistoryFixture(t)
	for _, c := range []struct{ target, frag string }{
		{"/v1/trucks/a/history?from=10&to=5", "after to"},
		{"/v1/trucks/a/history?from=yesterday", "neither Unix seconds nor an RFC 3339"},
		{"/v1/trucks/a/history?to=-1", "out of range"},
		{"/v1/trucks/a/history?format=kml", "format"},
		{"/v1/trucks/a/history?simplify_m=5", "format=geojson"},
		{"/v1/trucks/a/history?format=geojson&simplify_m=-5", "non-negative"},
		{"/v1/trucks/a/history?limit=0", "limit"},
		{"/v1/trucks/a%20b/history", "invalid truck id"},
		{"/v1/trucks/a/trips?stop_radius_m=0", "stop_radius_m"},
		{"/v1/trucks/a/trips?stop_min_s=x", "stop_min_s"},
		{"/v1/history/within?from=1&to=2", "missing query parameter"},
		{"/v1/history/within?bbox=1,2,3", "bbox"},
		{"/v1/history/within?lat=1&lon=2", "radius_m"},
		{"/v1/history/export?format=csv", "format"},
	} {
		wantError(t, f.get(c.target), http.StatusBadRequest, c.frag)
	}
	// An unknown truck has an empty history, not a 404: trucks expire,
	// their history stays.
	var a trailAnswer
	decodeStrict(t, wantJSON(t, f.get("/v1/trucks/nobody/history"), 200), &a)
	if len(a.Points) != 0 || a.Count != 0 {
		t.Fatalf("unknown truck: %+v", a)
	}
	// Without history: 404 that says why.
	g := newFixture(t, Options{}, store.Options{})
	wantError(t, g.get("/v1/trucks/a/history"), http.StatusNotFound, "history is off")
	wantError(t, g.get("/v1/history/export"), http.StatusNotFound, "history is off")
}

// TestExportRowAttrs: the Parquet export has a column for every
// attribute, named as its JSON field, and a point's attributes come back
// from the file in their JSON units.
func TestExportRowAttrs(t *testing.T) {
	schema := parquet.SchemaOf(ExportRow{})
	p := history.Point{Position: fleet.MakePosition(45, 7, 1_764_000_000, 50, 90)}
	for a := range fleet.Attr(fleet.NumAttrs) {
		if (&ExportRow{}).attr(a) == nil {
			t.Fatalf("ExportRow has no column for %s", a.Name())
		}
		if _, ok := schema.Lookup(a.Name()); !ok {
			t.Fatalf("the Parquet schema has no column %q", a.Name())
		}
		p.Attrs.Set(a, a.Max()-int32(a))
	}
	var buf bytes.Buffer
	pw := parquet.NewGenericWriter[ExportRow](&buf)
	var row ExportRow
	vals := make([]float64, 0, fleet.NumAttrs)
	exportRow(&row, "t1", &p, &vals)
	if _, err := pw.Write([]ExportRow{row}); err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	rows := make([]ExportRow, 1)
	if n, _ := parquet.NewGenericReader[ExportRow](bytes.NewReader(buf.Bytes())).Read(rows); n != 1 {
		t.Fatalf("read %d rows", n)
	}
	for a := range fleet.Attr(fleet.NumAttrs) {
		v, _ := p.Attrs.Get(a)
		if got := *rows[0].attr(a); got == nil || *got != a.Float(v) {
			t.Fatalf("%s: got %v, want %v", a.Name(), got, a.Float(v))
		}
	}
}

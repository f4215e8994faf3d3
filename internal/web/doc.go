// Package web serves fleetd's dashboard: a single-page app built from the
// TypeScript in web/ by Vite into dist/, embedded in the binary, so that
// `fleetd serve` shows it at / with nothing else installed and without
// internet access. It also serves the density endpoint the dashboard draws
// the whole fleet from.
//
// # The bundle
//
// dist/ is committed and reproducible: `npm ci && npm run build` in web/
// rewrites it byte for byte (scripts/check-web fails CI otherwise). Asset
// names carry content hashes; nothing in the bundle fetches from another
// origin (MapLibre's worker, the basemap outlines and the styles are all
// assets; truck labels are HTML, so no glyphs are needed).
//
// Handler serves:
//
//	GET /, /index.html   the page, with Options injected into
//	                     <script id="fleetd-config" type="application/json"> as
//	                     {"basemap_style":"…","features":{"stream":b,"zones":b,"alerts":b}};
//	                     Cache-Control: no-cache
//	                     and a Content-Security-Policy that allows only this
//	                     origin (plus http(s) for map data when BasemapStyle
//	                     names an online style)
//	GET /assets/…        content-hashed files; Cache-Control: immutable, a year
//	GET /favicon.svg     and any other top-level file of dist/; an hour
//	anything else        404 {"error": …}; a known path with a method other
//	                     than GET or HEAD: 405 {"error": …} with Allow
//
// Every file has a strong ETag (SHA-256 of its bytes) and answers
// If-None-Match with 304; compressible files are gzipped once, when first
// needed, and served gzipped to clients that accept it (Vary:
// Accept-Encoding). The embedded files never change while the process
// runs, so the compressed forms are shared by every Handler.
//
// # GET /v1/density
//
//	/v1/density?bbox=minLon,minLat,maxLon,maxLat[&zoom=Z][&format=json|bin]
//
// counts the trucks per grid cell over the box, from the store's spatial
// index (store.Density): the cost depends on the number of index cells in
// the box, never on the number of trucks. A cell is factor×factor index
// cells (CellDeg·factor degrees a side); factor is the smallest that makes
// a cell at least DensityCellPx pixels wide at map zoom Z (MapLibre's zoom:
// the world is 512·2^Z pixels wide) and keeps the answer at most
// MaxDensityCells cells. The box is widened to whole cells, so every cell
// in the answer holds its full count and total is their sum (a little more
// than the box itself holds). minLon > maxLon is a box across the
// antimeridian. Empty cells are omitted; cells are sorted by latitude,
// then longitude.
//
// JSON (the default):
//
//	{"cell_deg":1.5,"factor":3,"total":20000,"cells":[[minLat,minLon,count],…]}
//
// Binary (format=bin, or Accept: application/x-fleetd-density), served as
// application/x-fleetd-density, all little-endian:
//
//	0        4        8              16            24
//	+--------+--------+--------------+-------------+
//	| "FDN1" | n u32  | cell_deg f64 | total u64   |   header, 24 bytes
//	+--------+--------+--------------+-------------+
//	| min_lat f32 | min_lon f32 | count u32 |          n cells, 12 bytes each
//	+-------------+-------------+-----------+
//
// Corners are multiples of cell_deg from (-90, -180), so float32 holds them
// to within a centimetre. Bad parameters answer 400 {"error": "density: …"}.
// Every answer has Cache-Control: no-store and a Server-Timing header
// (density;dur=<ms>) with the time spent in the handler.
//
// # Concurrency
//
// Both handlers are safe for concurrent use and start no goroutines.
// Handler's files are immutable after construction (the lazily built gzip
// forms are published through sync.Once). DensityHandler holds no lock of
// its own: store.Density takes each shard's read lock in turn, so an
// answer is a consistent count per shard, not one snapshot of the whole
// fleet. Per-request scratch (cell slice, output buffer) comes from a
// sync.Pool.
package web

// Package fence holds fleetd's geofences ("zones"): GeoJSON polygons
// compiled into an index that answers point-in-polygon in the time of a
// rectangle test, distances to a zone's boundary, and a registry of named
// zones that the rules VM reads without locking.
//
// # Model
//
// A zone is one or more polygons (a GeoJSON Polygon or MultiPolygon), each
// an exterior ring and any number of holes. Coordinates are degrees on
// WGS84; GeoJSON orders a position [longitude, latitude], every Go API here
// takes (lat, lon). Coordinates are rounded to 1e-12° (0.1 µm) on input,
// so that no arithmetic on them can underflow; inputs with 12 or fewer
// decimals are unchanged.
//
// Geometry is planar in (lon, lat): an edge is the straight segment
// between two positions in the lon/lat plane, as RFC 7946 (§3.1.1)
// prescribes and as every GeoJSON tool draws them. For the zones fleets
// use (a depot, a city, a corridor: up to a few hundred km) the difference
// from a great-circle edge is far below GPS noise.
//
// Inside means the even-odd rule over all rings of all polygons together:
// a point is inside when a ray cast from it towards +longitude crosses an
// odd number of edges. Holes therefore need no special case and ring
// orientation does not matter (RFC 7946 asks parsers not to reject either
// winding). Self-crossing rings and overlapping polygons of a MultiPolygon
// (which RFC 7946 and OGC forbid, but nobody checks on upload) follow the
// same rule: where two polygons overlap, the overlap is outside.
//
// The ray test counts edge a→b when exactly one of its ends lies strictly
// north of the point (the half-open rule, which counts a vertex exactly on
// the ray's latitude once) and its crossing lies strictly east of the
// point. On the boundary that makes south and west edges inside and north
// and east edges outside, like the half-open box [minLon, maxLon) ×
// [minLat, maxLat): zones that share an edge never both contain a point on
// it.
//
// # Validation and limits
//
// Parse accepts a bare Polygon or MultiPolygon or a Feature wrapping one
// and rejects, with an error starting "fence:": other types, rings of
// fewer than 4 positions, unclosed rings (first != last position),
// positions of other than 2 or 3 numbers (an altitude is ignored),
// longitudes outside [-180, 180] or latitudes outside [-90, 90], a polygon
// spanning more than 180° of longitude, and bodies over MaxBodyBytes
// (8 MiB), nested deeper than MaxDepth (32) or with more than MaxVertices
// (100,000) positions; the last three wrap ErrTooLarge.
//
// # The antimeridian
//
// RFC 7946 (§3.1.9) requires a geometry that crosses the antimeridian to
// be split there. A single polygon spanning more than 180° of longitude is
// therefore taken for an unsplit crossing and rejected with a message
// saying to split it. A properly split MultiPolygon, whose parts meet at
// ±180°, is supported: at compile time the parts west of the antimeridian
// are shifted 360° east (the choice of shift that gives the narrowest zone
// is made for any MultiPolygon), and query longitudes are moved by ±360°
// to within 180° of the zone's middle. Such a zone may span at most 180°;
// Bounds then reports minLon > maxLon, as RFC 7946 §5.2 and geo.Box do.
// The same wrapping lets a zone touching 180° answer queries at -180°.
//
// # Index layout
//
// A zone keeps its positions and a uniform grid over its bounding box,
// about two cells per edge (at least 16), as square in degrees as the box
// allows. All of it lives in flat slices of scalars:
//
//	pts    []pt       every ring's positions in order, closing ones included:
//	                  | X = lon float64 | Y = lat float64 |
//	                  an edge is named by the index k of its first position
//	                  (k → k+1); rings[r] and polys[p] delimit rings and polygons
//	cells  []cell     rows × cols cells, row-major from (minLat, minLon), then
//	                  a sentinel, so cell i's lists end where cell i+1's start:
//	                  | edges uint32: bit 31 base parity, bits 0-30 start in edges |
//	                  | togs  uint32: start in togs                             |
//	edges  []uint32   cell i's edges, ascending
//	togs   []float64  cell i's toggle latitudes, ascending
//
// A cell lists every edge that comes within margin (1e-9°, ~0.1 mm) of it.
// Contains finds the point's cell (a multiply and a truncation per axis)
// and computes
//
//	inside = base ⊕ (listed edges the ray crosses) ⊕ (toggles ≤ the point's latitude)
//
// Most cells list nothing and have no toggles: the cell's base parity is
// the answer. A cell
// the boundary passes through tests its few edges with the same predicate
// as the brute-force ray test, so its cost is that of a rectangle.
//
// Why it is exact. Split the brute-force crossing count into listed and
// unlisted edges. An unlisted edge stays at least margin away from every
// point that maps to the cell (rounding in locating a point or an edge is
// below 1e-12°), so whether the ray crosses it is decided by geometry, not
// rounding: edges west of the cell never count, edges east of it count
// exactly when they straddle the ray's latitude y. Let the cell's band run
// from y0 (its south border less margin) to y1. At y0 the count of
// unlisted east edges crossed is the cell's base parity, computed once at
// build time. As y rises from y0, that count changes only where an
// unlisted east edge ends, that is at a vertex inside the band east of the
// cell; where both of a vertex's edges are unlisted and east they change
// together and cancel, so only vertices with one listed and one unlisted
// edge matter. Their latitudes are the cell's toggles. The index therefore
// returns bit for bit what the ray test over every edge returns for every
// point in the bounding box, even points on edges; outside the box both
// say outside (the ray test could differ only within a few units of
// rounding of a box corner). The tests and FuzzContains check exactly
// that, on lattice shapes whose vertices fall on cell borders too.
//
// # Distances
//
// DistanceM is 0 inside and otherwise the distance in metres to the
// nearest edge in a local equirectangular projection: mPerDeg =
// EarthRadiusM·π/180 metres per degree of latitude and mPerDeg·cos(φref)
// per degree of longitude, φref being the mean of the point's latitude and
// that latitude clamped into the zone's latitude range (so for a point
// north of a zone the cosine is taken half-way between the two). Against
// great-circle distances to the same edges (TestDistanceAccuracy) the
// error is 0.002% at the equator and 0.04% at 45° for a 20 km zone and
// points out to 300 km, 0.02% at 60° to 100 km and 0.2% for a 200 km zone
// at 60° to 300 km. It grows with the distance's north-south extent times
// tan(latitude), so it is not meant for thousands of km or polar zones.
//
// The nearest edge is found in a bounding-volume tree over the sequence
// of positions, which follows the boundary and is tight along it:
//
//	tree   []box      heap order from 1: node 1 covers positions 0..N-1 (the
//	                  zone's box); node k covering i..j has children 2k over
//	                  i..m and 2k+1 over m..j, m = (i+j)/2, down to runs of
//	                  at most 8 edges; a box bounds its node's positions:
//	                  | minX | minY | maxX | maxY float64 |
//	stops  []uint64   bit k is set when position k closes its ring
//
// The search descends nearer child first and skips every node whose box is
// no nearer than the best edge so far; a zone far away costs the root box
// and one path down. (A first version walked the grid's cells outwards
// from the point; the tree measured 2-9 times faster on the benchmark
// shapes other than a comb, because along a smooth boundary many cells are
// nearly as near as the nearest edge and each costs all its edges.)
// Near(lat, lon, m) answers Contains || DistanceM <= m and stops at the
// first edge within m, or at the root box when it is further.
//
// # Concurrency
//
// A Zone is immutable once built and safe for concurrent use. A Set is
// safe for concurrent use: readers by ID (Zone, Inside, DistanceM, Near,
// what the rules VM calls per evaluation) load the ID's zone through an
// atomic table and never lock or allocate; readers by name (ZoneID, Get,
// Names, All, Len) and writers (Put, PutMany, Delete, Purge) take the
// Set's mutex. A write stores one zone pointer into the table: O(1),
// amortised over the table's doubling, whatever the number of zones (the
// copy-on-write Set it replaced cloned every zone, name and ID on each
// write: 6.4 ms and 1.3 MB a Put at 10,000 zones against 0.7 µs,
// BenchmarkSetPut). Names and All sort the names when they changed since
// the last call. A reader that loaded the previous zone finishes with it,
// which stays valid; once Put returns, every later read sees the new
// zone. Zones are seen one at a time: a caller that changes several and
// needs readers to see them together holds its own lock around readers
// and writers (alert's evalMu).
//
// IDs are small integers handed out in order. A name keeps its ID for the
// life of the Set: Delete leaves the name bound with no zone, so rules
// compiled against it see no zone (Inside false, DistanceM +Inf) and a
// later Put of the same name brings the same ID back. An ID is reused for
// a different name only after Purge, which the owner calls once no
// compiled rule can still refer to the deleted name.
package fence

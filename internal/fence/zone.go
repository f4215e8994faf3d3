package fence

import (
	"math"
	"unsafe"

	"github.com/fleetd/fleetd/internal/geo"
)

// pt is one position in the zone's planar frame: X is longitude, Y is
// latitude, both in degrees. X may exceed 180 for polygons that were shifted
// east by 360° to keep an antimeridian-crossing zone contiguous (see doc.go).
type pt struct{ X, Y float64 }

// cell is one grid cell of the point-in-polygon index. The cell's edges are
// Zone.edges[c.edges&^baseBit : next.edges&^baseBit] and its toggle
// latitudes Zone.togs[c.togs : next.togs], where next is the following cell
// (the cells slice ends with a sentinel). Bit 31 of edges is the cell's
// base parity. 8 bytes a cell, no pointers.
type cell struct {
	edges uint32
	togs  uint32
}

const baseBit = 1 << 31

// Zone is a compiled, immutable geofence: one or more polygons with holes,
// indexed for constant-time point-in-polygon tests. Build one with Parse,
// ReadZone, NewPolygon or NewMultiPolygon. A Zone is never modified after
// it is built, so it is safe for concurrent use without locks.
//
// Memory: 16 bytes a position, 8 bytes a grid cell (about two an edge), 4
// bytes each time a cell lists an edge, 8 bytes a toggle latitude and 32
// bytes a distance-tree node (one per 4-8 edges): 40-70 bytes a vertex
// for the test shapes. MemBytes reports the total.
type Zone struct {
	multi bool // built from a MultiPolygon (AppendGeoJSON writes one back)

	// Bounding box in the planar frame; maxX exceeds 180 when the zone
	// crosses the antimeridian.
	minX, minY, maxX, maxY float64
	midX                   float64 // (minX+maxX)/2: query longitudes are wrapped to within 180° of it
	minLon, maxLon         float64 // Bounds' longitudes, in [-180, 180], minLon > maxLon when crossing

	pts   []pt     // every ring's positions in order, closing position included
	orig  []pt     // the positions as given, when some polygon was shifted; else nil
	rings []uint32 // ring r is pts[rings[r]:rings[r+1]]; len = rings+1
	polys []uint32 // polygon p is rings[polys[p]:polys[p+1]]; len = polygons+1
	nEdge int      // number of edges = positions - rings

	// Grid over the bounding box; see doc.go "Index layout".
	cols, rows   int
	cellW, cellH float64 // degrees
	invW, invH   float64 // cols/width and rows/height (0 for a zero extent)
	cells        []cell  // rows*cols cells, row-major from (minY, minX), plus a sentinel
	edges        []uint32
	togs         []float64

	// Distance tree; see doc.go "Distances".
	tree  []box    // node k covers the edges of a run of positions; children 2k, 2k+1
	stops []uint64 // bit k: position k ends its ring (no edge k→k+1)
}

// Contains reports whether the point (degrees, WGS84) is inside the zone by
// the even-odd rule over all rings in the planar lon/lat frame: exactly
// what a ray cast east from the point over every edge decides (see
// crosses and doc.go), computed from one grid cell. On the boundary, south
// and west edges are inside and north and east edges outside. NaN
// coordinates are outside.
func (z *Zone) Contains(lat, lon float64) bool {
	if !(lat >= z.minY && lat <= z.maxY) {
		return false
	}
	if !(lon >= z.minX && lon <= z.maxX) {
		lon = z.wrap(lon)
		if !(lon >= z.minX && lon <= z.maxX) {
			return false
		}
	}
	return z.containsXY(lon, lat)
}

// wrap moves x by ±360° to the copy within 180° of the zone's middle, so a
// query at lon -179.9 finds a zone stored as 179…181 (and lon 180 one
// stored as -180…-179).
func (z *Zone) wrap(x float64) float64 {
	if x-z.midX > 180 {
		return x - 360
	}
	if x-z.midX < -180 {
		return x + 360
	}
	return x
}

// containsXY is Contains for a point inside the bounding box.
func (z *Zone) containsXY(x, y float64) bool {
	i := z.cellOf(x, y)
	c, next := z.cells[i], z.cells[i+1]
	in := c.edges >> 31
	es, ee := c.edges&^baseBit, next.edges&^baseBit
	for _, e := range z.edges[es:ee] {
		if crosses(x, y, z.pts[e], z.pts[e+1]) {
			in ^= 1
		}
	}
	for _, h := range z.togs[c.togs:next.togs] {
		if h > y {
			break
		}
		in ^= 1
	}
	return in != 0
}

// cellOf returns the index of the cell holding (x, y), which must lie in
// the bounding box (values a rounding error outside are clamped).
func (z *Zone) cellOf(x, y float64) int {
	return z.rowOf(y)*z.cols + z.colOf(x)
}

func (z *Zone) colOf(x float64) int {
	f := (x - z.minX) * z.invW
	if !(f > 0) {
		return 0
	}
	if f >= float64(z.cols) {
		return z.cols - 1
	}
	return int(f)
}

func (z *Zone) rowOf(y float64) int {
	f := (y - z.minY) * z.invH
	if !(f > 0) {
		return 0
	}
	if f >= float64(z.rows) {
		return z.rows - 1
	}
	return int(f)
}

// crosses reports whether the ray from (px, py) towards +X crosses the edge
// a→b, with the half-open rule that makes vertices exactly at latitude py
// count once: the edge counts iff exactly one end is strictly above py and
// the edge's intersection with the line Y=py lies strictly east of px. It
// compares two products instead of dividing; the products are not fused
// into an FMA (there is no addition), so every caller gets the same answer
// for the same inputs.
func crosses(px, py float64, a, b pt) bool {
	if (a.Y > py) == (b.Y > py) {
		return false
	}
	l := (b.X - a.X) * (py - a.Y)
	r := (px - a.X) * (b.Y - a.Y)
	if b.Y > a.Y {
		return l > r
	}
	return l < r
}

// Bounds returns the zone's bounding box in degrees. When the zone crosses
// the antimeridian (a MultiPolygon split at ±180°, see doc.go), minLon >
// maxLon: the box spans minLon…180 and -180…maxLon, as in RFC 7946 §5.2
// and geo.Box.
func (z *Zone) Bounds() (minLat, minLon, maxLat, maxLon float64) {
	return z.minY, z.minLon, z.maxY, z.maxLon
}

// Box returns Bounds as a geo.Box.
func (z *Zone) Box() geo.Box {
	return geo.Box{MinLat: z.minY, MinLon: z.minLon, MaxLat: z.maxY, MaxLon: z.maxLon}
}

// NumVertices returns the number of vertices: positions not counting each
// ring's closing repeat of its first position, which is also the number of
// edges.
func (z *Zone) NumVertices() int { return z.nEdge }

// NumPolygons returns the number of polygons (1 for a Polygon).
func (z *Zone) NumPolygons() int { return len(z.polys) - 1 }

// NumRings returns the number of rings, exterior rings and holes together.
func (z *Zone) NumRings() int { return len(z.rings) - 1 }

// GridSize returns the index grid's dimensions.
func (z *Zone) GridSize() (rows, cols int) { return z.rows, z.cols }

// MemBytes returns the bytes the zone holds, from its slices' capacities.
func (z *Zone) MemBytes() int {
	return int(unsafe.Sizeof(*z)) +
		(cap(z.pts)+cap(z.orig))*int(unsafe.Sizeof(pt{})) +
		(cap(z.rings)+cap(z.polys)+cap(z.edges))*4 +
		cap(z.cells)*int(unsafe.Sizeof(cell{})) +
		cap(z.togs)*8 +
		cap(z.tree)*int(unsafe.Sizeof(box{})) +
		cap(z.stops)*8
}

// Earth model for DistanceM: the sphere of geo.EarthRadiusM.
const mPerDeg = geo.EarthRadiusM * math.Pi / 180

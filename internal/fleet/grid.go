package fleet

import (
	"fmt"
	"math"

	"github.com/fleetd/fleetd/internal/geo"
)

// Grid is a global lat/lon grid of square cells, the one cell mapping of
// every spatial index (the store's, the live feed's, the alert rules'):
// rows of CellFixed units of latitude from -90, columns of CellFixed
// units of longitude from -180, and a cell's key is row*Cols + col.
// Longitudes 180 and -180 share column 0; latitude 90 is in the last row.
// A Grid is a value and never changes after NewGrid.
type Grid struct {
	CellFixed  int64   // cell side in 1e-7 degree
	CellDeg    float64 // the same in degrees
	Rows, Cols int
}

// NewGrid makes a grid of cellDeg-degree cells; cellDeg must divide 180
// into a whole number of cells at 1e-7 degree resolution.
func NewGrid(cellDeg float64) (Grid, error) {
	f := int64(math.Round(cellDeg * geo.Scale))
	if f <= 0 || cellDeg > 90 || (180*geo.Scale)%f != 0 {
		return Grid{}, fmt.Errorf("cell size %v degrees does not divide 180", cellDeg)
	}
	g := Grid{CellFixed: f, CellDeg: float64(f) / geo.Scale}
	g.Rows = int(180 * geo.Scale / f)
	g.Cols = 2 * g.Rows
	return g, nil
}

// Row maps a latitude to its row, clamped to the grid.
func (g *Grid) Row(lat int32) int {
	r := int((int64(lat) + geo.MaxLatFixed) / g.CellFixed)
	return min(max(r, 0), g.Rows-1)
}

// Col maps a longitude to its column; 180 and -180 share column 0.
func (g *Grid) Col(lon int32) int {
	c := int((int64(lon) + geo.MaxLonFixed) / g.CellFixed)
	if c >= g.Cols {
		c -= g.Cols
	}
	return max(c, 0)
}

// Cell is the key of the cell holding a point.
func (g *Grid) Cell(lat, lon int32) uint32 { return uint32(g.Row(lat)*g.Cols + g.Col(lon)) }

// RowDeg and ColDeg are Row and Col for degrees, as fixed point rounds
// them (so that a point and its stored form share a cell).
func (g *Grid) RowDeg(lat float64) int { return g.Row(geo.ToFixed(lat)) }
func (g *Grid) ColDeg(lon float64) int { return g.Col(geo.ToFixed(lon)) }

// RowBounds returns a row's latitude range in degrees.
func (g *Grid) RowBounds(row int) (float64, float64) {
	lo := float64(int64(row)*g.CellFixed-geo.MaxLatFixed) / geo.Scale
	return lo, lo + g.CellDeg
}

// ColBounds returns a column's longitude range in degrees.
func (g *Grid) ColBounds(col int) (float64, float64) {
	lo := float64(int64(col)*g.CellFixed-geo.MaxLonFixed) / geo.Scale
	return lo, lo + g.CellDeg
}

// CellBox returns a cell's box in degrees.
func (g *Grid) CellBox(key uint32) geo.Box {
	row, col := int(key)/g.Cols, int(key)%g.Cols
	a, b := g.RowBounds(row)
	c, d := g.ColBounds(col)
	return geo.Box{MinLat: a, MinLon: c, MaxLat: b, MaxLon: d}
}

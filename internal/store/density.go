package store

import (
	"github.com/fleetd/fleetd/internal/geo"
)

// DensityCell is the number of trucks in one cell of a density grid.
type DensityCell struct {
	MinLat, MinLon float64 // south-west corner, degrees
	SizeDeg        float64 // the cell's side in degrees
	Count          int
}

// Density counts trucks per cell of a grid whose cells are factor×factor
// index cells (factor ≥ 1; CellDeg()·factor degrees a side), over the cells
// that intersect box. It reads only the index's per-cell counts, never the
// trucks, so a whole-continent view costs a few thousand cell visits
// however large the fleet. Cells with no trucks are omitted; order is
// unspecified.
func (s *Store) Density(box geo.Box, factor int, dst []DensityCell) []DensityCell {
	if factor < 1 {
		factor = 1
	}
	g := &s.geom
	rg := Region{box: box}
	p := s.planFor(&rg)
	counts := make(map[uint32]int)
	for si := range s.shards {
		sh := &s.shards[si]
		sh.mu.RLock()
		gr := &sh.grid
		if p.cells() <= 2*gr.nindex {
			for row := p.rowLo; row <= p.rowHi; row++ {
				for i := 0; i < p.colCount; i++ {
					col := (p.colFrom + i) % g.Cols
					if col < 0 {
						col += g.Cols
					}
					if c := gr.find(uint32(row*g.Cols + col)); c >= 0 {
						counts[coarseKey(g, uint32(row*g.Cols+col), factor)] += int(gr.cells[c].n)
					}
				}
			}
		} else {
			for _, c := range gr.cells {
				if c.class != noClass && p.has(g, c.key) {
					counts[coarseKey(g, c.key, factor)] += int(c.n)
				}
			}
		}
		sh.mu.RUnlock()
	}
	size := g.CellDeg * float64(factor)
	for key, n := range counts {
		row, col := int(key)/g.Cols, int(key)%g.Cols
		dst = append(dst, DensityCell{
			MinLat:  float64(row)*g.CellDeg - 90,
			MinLon:  float64(col)*g.CellDeg - 180,
			SizeDeg: size,
			Count:   n,
		})
	}
	return dst
}

// coarseKey maps an index cell to the key of the first index cell of its
// factor×factor block.
func coarseKey(g *gridGeom, key uint32, factor int) uint32 {
	row, col := int(key)/g.Cols, int(key)%g.Cols
	return uint32((row/factor*factor)*g.Cols + col/factor*factor)
}

// CellDeg returns the spatial index's cell size in degrees.
func (s *Store) CellDeg() float64 { return s.geom.CellDeg }

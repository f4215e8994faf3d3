package store

import (
	"fmt"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
)

// gridGeom is the global lat/lon grid all shards share (fleet.Grid).
type gridGeom = fleet.Grid

func newGridGeom(cellDeg float64) (gridGeom, error) {
	g, err := fleet.NewGrid(cellDeg)
	if err != nil {
		return g, fmt.Errorf("store: %w", err)
	}
	return g, nil
}

// Cell blocks come in size classes growing by 1.5x from 4 slots (4, 6, 9,
// 14, 21, 32, …), so a block is on average about 20% larger than its cell.
const (
	numClasses = 48
	noClass    = 0xFF
)

var classCap = func() (c [numClasses]uint32) {
	c[0] = 4
	for i := 1; i < numClasses; i++ {
		c[i] = min(c[i-1]+(c[i-1]+1)/2, 1<<31)
	}
	return c
}()

// A block entry is a slot (24 bits, see maxSlots) with the truck's
// sub-cell in the top 8 bits: the cell cut into 16 sub-rows by 16
// sub-columns (about 3.5 × 2.7 km for 0.5-degree cells at 40°N), as
// subOf computes it from the record. k-nearest scans a cell's entries and
// reads only the records whose sub-cell meets its search window, instead of
// every record (a random 32-byte read each): BenchmarkNearest10 at 1M
// trucks scans ~290 entries and reads ~40 records a query instead of
// ~420 records (19.1 -> 12.0 µs with the gathered reads of visit;
// BenchmarkWithin5km 17.5 -> 8.0 µs); visit's ring order (query_nearest.go)
// has since brought the records to ~24 a query. The hint costs no byte
// (the top bits were unused) and is exact while the cell is not loose:
// a move that changes sub-cell rewrites the entry, which means scanning the
// cell's block for it, so a cell of more than hintMax trucks in a shard
// stops maintaining hints (loose) until it shrinks to hintMax/2; queries
// then read its records as before. The rewrites cost BenchmarkApply (moves
// of up to 1 km) about 12%: 2.50M -> 2.19M updates/s on one core.
const (
	slotBits = 24
	slotMask = 1<<slotBits - 1
	subBits  = 4 // sub-rows (and sub-columns) per cell: 1<<subBits
	subMax   = 1<<subBits - 1
	hintMax  = 256
)

var _ [1<<slotBits - 1 - maxSlots]struct{} // every slot fits below the hint

// cell is one occupied grid cell of a shard: a block of entries in refs.
type cell struct {
	key   uint32
	off   uint32 // start of the block in grid.refs
	n     uint32 // slots in use
	class uint8  // noClass when the cell is free
	loose bool   // the entries' sub-cell hints are not maintained
}

// grid is a shard's part of the spatial index. Pointer-free apart from its
// few slices; all memory is reused through free lists.
type grid struct {
	geom   *gridGeom
	index  []uint32 // open addressing, power of two: cell number+1, 0 = empty
	nindex int
	cells  []cell
	free   []uint32 // free cell numbers
	refs   []uint32 // all blocks, back to back
	blocks [numClasses][]uint32
	// freeRefs is the capacity of the blocks on the free lists; when it
	// passes a quarter of refs, the arena is compacted instead of grown.
	freeRefs int
	subMul   uint64 // sub-cell scale: offset·subMul>>32 is the sub-row or column
}

func (g *grid) init(geom *gridGeom) {
	g.geom = geom
	g.index = make([]uint32, 16)
	g.subMul = (uint64(1)<<(32+subBits) + uint64(geom.CellFixed) - 1) / uint64(geom.CellFixed)
}

// subIndex maps an offset into a cell (fixed point, along either axis) to
// its sub-row or sub-column. Offsets are clamped to the cell, so it is
// monotonic over all int64s: a window's end points bound the sub-cells of
// every point inside the window.
func (g *grid) subIndex(off int64) uint32 {
	off = min(max(off, 0), g.geom.CellFixed-1)
	return uint32(min(uint64(off)*g.subMul>>32, subMax))
}

// cellOrigin returns the fixed-point latitude and longitude of a cell's
// south-west corner.
func (g *grid) cellOrigin(key uint32) (int64, int64) {
	row, col := int64(key)/int64(g.geom.Cols), int64(key)%int64(g.geom.Cols)
	return row*g.geom.CellFixed - geo.MaxLatFixed, col*g.geom.CellFixed - geo.MaxLonFixed
}

// subOf is the sub-cell hint of a point in cell key, shifted into place.
func (g *grid) subOf(key uint32, lat, lon int32) uint32 {
	la, lo := g.cellOrigin(key)
	dlon := int64(lon) - lo
	if dlon >= 2*geo.MaxLonFixed { // longitude 180 lies in column 0
		dlon -= 2 * geo.MaxLonFixed
	}
	return (g.subIndex(int64(lat)-la)<<subBits | g.subIndex(dlon)) << slotBits
}

// locate returns the cell of a valid point and its sub-cell hint: it is
// (Cell, subOf) with two 32-bit divisions instead of six 64-bit ones, which
// the update path pays on every move.
func (g *grid) locate(lat, lon int32) (key, sub uint32) {
	cf := uint32(g.geom.CellFixed)
	la := uint32(int64(lat) + geo.MaxLatFixed)
	row := la / cf
	rowOff := la - row*cf
	if row >= uint32(g.geom.Rows) { // latitude 90 lies in the last row
		row, rowOff = uint32(g.geom.Rows-1), cf-1
	}
	lo := uint32(int64(lon) + geo.MaxLonFixed)
	col := lo / cf
	colOff := lo - col*cf
	if col >= uint32(g.geom.Cols) { // longitude 180 lies in column 0
		col -= uint32(g.geom.Cols)
	}
	sr := min(uint64(rowOff)*g.subMul>>32, subMax)
	sc := min(uint64(colOff)*g.subMul>>32, subMax)
	return row*uint32(g.geom.Cols) + col, uint32(sr<<subBits|sc) << slotBits
}

// subMask returns the sub-rows (bit i: sub-row i) and sub-columns of cell
// key that can hold a point within latLim of lat and lonLim of lon (the
// short way round), all in fixed point; either is 0 when the cell holds no
// such point.
func (g *grid) subMask(key uint32, lat, lon int32, latLim, lonLim int64) (rows, cols uint32) {
	const all = 1<<(subMax+1) - 1
	la, lo := g.cellOrigin(key)
	rows, cols = all, all
	if latLim < geo.MaxLatFixed {
		d := int64(lat) - la
		if d+latLim < 0 || d-latLim > g.geom.CellFixed { // latitude 90 is at offset CellFixed
			return 0, 0
		}
		rows = bitRange(g.subIndex(d-latLim), g.subIndex(d+latLim))
	}
	if lonLim < geo.MaxLonFixed {
		d := int64(lon) - lo // in (-360°, 360°]
		cols = 0
		for k := int64(-1); k <= 1; k++ {
			a, b := d-lonLim+k*2*geo.MaxLonFixed, d+lonLim+k*2*geo.MaxLonFixed
			if b >= 0 && a < g.geom.CellFixed {
				cols |= bitRange(g.subIndex(a), g.subIndex(b))
			}
		}
	}
	return rows, cols
}

// bitRange is a mask of bits a..b.
func bitRange(a, b uint32) uint32 { return (uint32(2)<<b - 1) &^ (uint32(1)<<a - 1) }

func blockCap(class uint8) uint32 { return classCap[class] }

func (g *grid) slot(key uint32) int {
	return int((uint64(key) * 0x9E3779B97F4A7C15) >> 32 & uint64(len(g.index)-1))
}

// find returns the cell number of key, or -1.
func (g *grid) find(key uint32) int {
	mask := len(g.index) - 1
	for i := g.slot(key); ; i = (i + 1) & mask {
		e := g.index[i]
		if e == 0 {
			return -1
		}
		if g.cells[e-1].key == key {
			return int(e - 1)
		}
	}
}

// members returns the entries of cell key (slot&slotMask is the slot)
// and whether their hints are exact, or nil.
func (g *grid) members(key uint32) ([]uint32, bool) {
	c := g.find(key)
	if c < 0 {
		return nil, false
	}
	cl := &g.cells[c]
	return g.refs[cl.off : cl.off+cl.n], !cl.loose
}

func (g *grid) allocBlock(class uint8) uint32 {
	if fl := g.blocks[class]; len(fl) > 0 {
		off := fl[len(fl)-1]
		g.blocks[class] = fl[:len(fl)-1]
		g.freeRefs -= int(blockCap(class))
		return off
	}
	n := int(blockCap(class))
	if cap(g.refs)-len(g.refs) < n && g.freeRefs > len(g.refs)/4 {
		g.compact(n)
	}
	off := uint32(len(g.refs))
	if cap(g.refs)-len(g.refs) < n {
		grown := make([]uint32, len(g.refs), max(len(g.refs)+n, cap(g.refs)+cap(g.refs)/4, 1024))
		copy(grown, g.refs)
		g.refs = grown
	}
	g.refs = g.refs[:len(g.refs)+n]
	return off
}

func (g *grid) freeBlock(off uint32, class uint8) {
	g.blocks[class] = append(g.blocks[class], off)
	g.freeRefs += int(blockCap(class))
}

// compact rewrites the arena with the live cells' blocks back to back and
// empties the free lists, leaving room for extra more slots. It runs only
// when a quarter of the arena is free blocks, so its cost is amortised over
// the frees that made it necessary.
func (g *grid) compact(extra int) {
	used := 0
	for i := range g.cells {
		if c := &g.cells[i]; c.class != noClass {
			used += int(blockCap(c.class))
		}
	}
	fresh := make([]uint32, 0, used+used/8+extra)
	for i := range g.cells {
		c := &g.cells[i]
		if c.class == noClass {
			continue
		}
		off := len(fresh)
		fresh = append(fresh, g.refs[c.off:c.off+blockCap(c.class)]...)
		c.off = uint32(off)
	}
	g.refs = fresh
	for i := range g.blocks {
		g.blocks[i] = nil
	}
	g.freeRefs = 0
}

// add puts slot into cell key with its hint sub (subOf).
func (g *grid) add(key uint32, slot, sub uint32) {
	c := g.find(key)
	if c < 0 {
		c = g.newCell(key)
	}
	cl := &g.cells[c]
	if cl.n == blockCap(cl.class) {
		g.resize(cl, cl.class+1)
	}
	g.refs[cl.off+cl.n] = slot | sub
	cl.n++
	if cl.n > hintMax {
		cl.loose = true
	}
}

// entry returns the index in refs of slot's entry in cell cl.
func (g *grid) entry(cl *cell, slot uint32) int {
	b := g.refs[cl.off : cl.off+cl.n]
	for i, e := range b {
		if e&slotMask == slot {
			return int(cl.off) + i
		}
	}
	panic("BUG: store: slot missing from its grid cell")
}

// rehint records that slot, staying in cell key, moved to sub-cell sub.
func (g *grid) rehint(key uint32, slot, sub uint32) {
	c := g.find(key)
	if c < 0 {
		panic("BUG: store: moving a slot in a cell that does not exist")
	}
	if cl := &g.cells[c]; !cl.loose {
		g.refs[g.entry(cl, slot)] = slot | sub
	}
}

// remove takes slot out of cell key; the slot must be there. It returns
// the cell number when the cell is loose and small enough to be hinted
// again (the caller recomputes its hints: see shard.hintLocked), or -1.
func (g *grid) remove(key uint32, slot uint32) int {
	c := g.find(key)
	if c < 0 {
		panic("BUG: store: removing a slot from a cell that does not exist")
	}
	cl := &g.cells[c]
	i := g.entry(cl, slot)
	g.refs[i] = g.refs[cl.off+cl.n-1]
	cl.n--
	switch {
	case cl.n == 0:
		g.deleteCell(c)
		return -1
	case cl.class > 1 && cl.n <= blockCap(cl.class-2):
		g.resize(cl, cl.class-1)
	}
	if cl.loose && cl.n <= hintMax/2 {
		return c
	}
	return -1
}

func (g *grid) resize(cl *cell, class uint8) {
	off := g.allocBlock(class)
	copy(g.refs[off:off+cl.n], g.refs[cl.off:cl.off+cl.n])
	g.freeBlock(cl.off, cl.class)
	cl.off, cl.class = off, class
}

func (g *grid) newCell(key uint32) int {
	if (g.nindex+1)*4 > len(g.index)*3 {
		g.growIndex()
	}
	var c int
	if n := len(g.free); n > 0 {
		c = int(g.free[n-1])
		g.free = g.free[:n-1]
	} else {
		c = len(g.cells)
		g.cells = append(g.cells, cell{})
	}
	g.cells[c] = cell{key: key, off: g.allocBlock(0), class: 0}
	mask := len(g.index) - 1
	i := g.slot(key)
	for g.index[i] != 0 {
		i = (i + 1) & mask
	}
	g.index[i] = uint32(c + 1)
	g.nindex++
	return c
}

func (g *grid) deleteCell(c int) {
	cl := &g.cells[c]
	g.freeBlock(cl.off, cl.class)
	mask := len(g.index) - 1
	i := g.slot(cl.key)
	for g.index[i] != uint32(c+1) {
		i = (i + 1) & mask
	}
	// Backward-shift deletion, as in the ID table.
	j := i
	for {
		j = (j + 1) & mask
		e := g.index[j]
		if e == 0 {
			break
		}
		k := g.slot(g.cells[e-1].key)
		if (i <= j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
			g.index[i] = e
			i = j
		}
	}
	g.index[i] = 0
	g.nindex--
	*cl = cell{class: noClass}
	g.free = append(g.free, uint32(c))
}

func (g *grid) growIndex() {
	t := make([]uint32, 2*len(g.index))
	mask := len(t) - 1
	for _, e := range g.index {
		if e == 0 {
			continue
		}
		i := int((uint64(g.cells[e-1].key) * 0x9E3779B97F4A7C15) >> 32 & uint64(mask))
		for t[i] != 0 {
			i = (i + 1) & mask
		}
		t[i] = e
	}
	g.index = t
}

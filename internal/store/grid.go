package store

import (
	"fmt"

	"github.com/fleetd/fleetd/internal/fleet"
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

// cell is one occupied grid cell of a shard: a block of slots in refs.
type cell struct {
	key   uint32
	off   uint32 // start of the block in grid.refs
	n     uint32 // slots in use
	class uint8  // noClass when the cell is free
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
}

func (g *grid) init(geom *gridGeom) {
	g.geom = geom
	g.index = make([]uint32, 16)
}

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

// members returns the slots in cell key, or nil.
func (g *grid) members(key uint32) []uint32 {
	c := g.find(key)
	if c < 0 {
		return nil
	}
	cl := &g.cells[c]
	return g.refs[cl.off : cl.off+cl.n]
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

// add puts slot into cell key.
func (g *grid) add(key uint32, slot uint32) {
	c := g.find(key)
	if c < 0 {
		c = g.newCell(key)
	}
	cl := &g.cells[c]
	if cl.n == blockCap(cl.class) {
		g.resize(cl, cl.class+1)
	}
	g.refs[cl.off+cl.n] = slot
	cl.n++
}

// remove takes slot out of cell key; the slot must be there.
func (g *grid) remove(key uint32, slot uint32) {
	c := g.find(key)
	if c < 0 {
		panic("BUG: store: removing a slot from a cell that does not exist")
	}
	cl := &g.cells[c]
	b := g.refs[cl.off : cl.off+cl.n]
	i := 0
	for i < len(b) && b[i] != slot {
		i++
	}
	if i == len(b) {
		panic("BUG: store: slot missing from its grid cell")
	}
	b[i] = b[len(b)-1]
	cl.n--
	switch {
	case cl.n == 0:
		g.deleteCell(c)
	case cl.class > 1 && cl.n <= blockCap(cl.class-2):
		g.resize(cl, cl.class-1)
	}
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

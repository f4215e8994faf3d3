package store

import (
	"math"
	"math/bits"

	"github.com/fleetd/fleetd/internal/fleet"
)

// attrColumns keeps a shard's optional attributes (package fleet): one
// column per attribute, in chunks parallel to the record chunks, each chunk
// allocated only once a truck in it has sent that attribute. A fleet that
// sends no attributes pays one nil pointer per chunk and attribute (8 bytes
// per 4096 trucks); one that sends altitude pays 4 bytes a truck for it.
// Guarded by the shard's lock.
type attrColumns struct {
	cols [fleet.NumAttrs][]*[chunkSize]int32
	have uint32 // bit k is set iff cols[k] has a chunk: the columns set, get and clear visit
}

// absent marks a slot without the attribute; every attribute's range
// excludes it.
const absent = math.MinInt32

// set stores a's attributes for slot: present ones are written, absent
// ones cleared, since attributes belong to the position they came with.
func (c *attrColumns) set(slot uint32, a *fleet.Attrs) {
	ci, i := slot/chunkSize, slot%chunkSize
	// Only the attributes sent or kept: a fleet sending none pays nothing
	// here whatever NumAttrs is (a loop over all ten was +9% on Apply).
	for m := a.Mask | c.have; m != 0; m &= m - 1 {
		k := fleet.Attr(bits.TrailingZeros32(m))
		col := c.cols[k]
		v, ok := a.Get(k)
		if !ok {
			if int(ci) < len(col) && col[ci] != nil {
				col[ci][i] = absent
			}
			continue
		}
		for int(ci) >= len(col) {
			col = append(col, nil)
		}
		if col[ci] == nil {
			chunk := new([chunkSize]int32)
			for j := range chunk {
				chunk[j] = absent
			}
			col[ci] = chunk
		}
		col[ci][i] = v
		c.cols[k] = col
		c.have |= 1 << k
	}
}

// get fills a with slot's attributes.
func (c *attrColumns) get(slot uint32, a *fleet.Attrs) {
	*a = fleet.Attrs{}
	ci, i := slot/chunkSize, slot%chunkSize
	for m := c.have; m != 0; m &= m - 1 {
		k := fleet.Attr(bits.TrailingZeros32(m))
		if col := c.cols[k]; int(ci) < len(col) && col[ci] != nil && col[ci][i] != absent {
			a.Set(k, col[ci][i])
		}
	}
}

// clear removes slot's attributes (the slot is being freed).
func (c *attrColumns) clear(slot uint32) {
	ci, i := slot/chunkSize, slot%chunkSize
	for m := c.have; m != 0; m &= m - 1 {
		k := bits.TrailingZeros32(m)
		if col := c.cols[k]; int(ci) < len(col) && col[ci] != nil {
			col[ci][i] = absent
		}
	}
}

// bytes is the columns' memory.
func (c *attrColumns) bytes() int64 {
	n := int64(0)
	for _, col := range c.cols {
		n += int64(cap(col)) * 8
		for _, chunk := range col {
			if chunk != nil {
				n += chunkSize * 4
			}
		}
	}
	return n
}

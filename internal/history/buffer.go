package history

import (
	"time"
	"unsafe"

	"github.com/fleetd/fleetd/internal/fleet"
)

// bufPoint is a buffered point: the ID is in the buffer's arena, the
// attributes' values (most points have none) in its attrs.
type bufPoint struct {
	fleet.Position
	idOff   uint32 // in the ID arena: chunk<<idChunkBits | offset
	attrOff uint32 // the first of its attributes' values in attrs, in attribute order
	mask    uint32 // its attributes
	idLen   uint8
}

// pointBytes is what a buffered point costs, for BufferBytes: the point
// (32 bytes: position, ID offset and length, attribute mask and offset),
// and its ID in the arena, counted at 16 bytes (BufferBytes is a budget,
// not an exact figure); attribute values add 4 bytes each. The ID's hash
// is computed by the writer, off the ingest path.
const pointBytes = int(unsafe.Sizeof(bufPoint{})) + 16

// A buffer holds its points and their IDs in fixed-size chunks drawn
// from its History's free chunks (freeChunks) and given back once it is
// written, so that its memory is what it holds: one slice grown by
// appends reallocated and copied past any preset capacity (replay and
// batches too large for an empty buffer go past 2·BufferBytes) and kept the larger
// array and its slack for good (3.4 MB of the 1M-truck sustained run's
// heap, besides two preallocated buffers of 4.2 MB each).
const (
	pointChunk  = 4096 // points a chunk (128 KiB)
	idChunkBits = 16
	idChunk     = 1 << idChunkBits // bytes of IDs a chunk; an ID never straddles two
)

type (
	pointBlock [pointChunk]bufPoint
	idBlock    [idChunk]byte
)

// Sealed is a buffer sealed at a log position, for Write.
type Sealed = buffer

// buffer collects points until it is sealed and written.
type buffer struct {
	pts    []*pointBlock // all full but the last
	n      int           // points
	ids    []*idBlock
	idUsed int // bytes used in the last ID chunk
	attrs  []int32
	start  time.Time // first Add
	covers uint64    // log position it was sealed at
}

// freeChunks is a History's free chunks, guarded by its mu. It keeps at
// most what the active buffer may fill before Reserve holds ingest
// (2·BufferBytes: its points, and their IDs at pointBytes' 16 bytes
// each), and a chunk of each kind more; past that, written buffers'
// chunks are left to the collector.
type freeChunks struct {
	pts       []*pointBlock
	ids       []*idBlock
	keepPts   int
	keepIDs   int
	allocated int64 // chunks made, for tests
}

func newFreeChunks(bufferBytes int) freeChunks {
	pts := 2 * bufferBytes / pointBytes
	return freeChunks{keepPts: pts/pointChunk + 1, keepIDs: pts*16/idChunk + 1}
}

func (c *freeChunks) pointBlock() *pointBlock {
	if n := len(c.pts); n > 0 {
		b := c.pts[n-1]
		c.pts = c.pts[:n-1]
		return b
	}
	c.allocated++
	return new(pointBlock)
}

func (c *freeChunks) idBlock() *idBlock {
	if n := len(c.ids); n > 0 {
		b := c.ids[n-1]
		c.ids = c.ids[:n-1]
		return b
	}
	c.allocated++
	return new(idBlock)
}

// add appends the points of ups to b, a chunk at a time.
func (b *buffer) add(ups []fleet.Update, pool *freeChunks) {
	for len(ups) > 0 {
		if b.n == len(b.pts)*pointChunk {
			b.pts = append(b.pts, pool.pointBlock())
		}
		if len(b.ids) == 0 {
			b.ids = append(b.ids, pool.idBlock())
		}
		blk, k := b.pts[len(b.pts)-1], uint(b.n)%pointChunk
		m := min(uint(len(ups)), pointChunk-k)
		ids, c, used := b.ids[len(b.ids)-1], len(b.ids)-1, b.idUsed
		for i := range ups[:m] {
			u := &ups[i]
			if used+len(u.ID) > idChunk {
				b.ids = append(b.ids, pool.idBlock())
				ids, c, used = b.ids[len(b.ids)-1], len(b.ids)-1, 0
			}
			copy(ids[used:], u.ID)
			blk[k+uint(i)] = bufPoint{Position: u.Position, idOff: uint32(c<<idChunkBits | used),
				idLen: uint8(len(u.ID)), attrOff: uint32(len(b.attrs)), mask: u.Attrs.Mask}
			used += len(u.ID)
			if u.Attrs.Mask != 0 { // most updates have no attribute to look for
				b.addAttrs(&u.Attrs)
			}
		}
		b.n, b.idUsed = b.n+int(m), used
		ups = ups[m:]
	}
}

func (b *buffer) addAttrs(at *fleet.Attrs) {
	for a := range fleet.Attr(fleet.NumAttrs) {
		if v, ok := at.Get(a); ok {
			b.attrs = append(b.attrs, v)
		}
	}
}

// release gives b's chunks back to pool and empties b.
func (b *buffer) release(pool *freeChunks) {
	for _, c := range b.pts {
		if len(pool.pts) < pool.keepPts {
			pool.pts = append(pool.pts, c)
		}
	}
	for _, c := range b.ids {
		if len(pool.ids) < pool.keepIDs {
			pool.ids = append(pool.ids, c)
		}
	}
	clear(b.pts)
	clear(b.ids)
	*b = buffer{pts: b.pts[:0], ids: b.ids[:0], attrs: b.attrs[:0]}
}

// at returns point i.
func (b *buffer) at(i int) *bufPoint { return &b.pts[uint(i)/pointChunk][uint(i)%pointChunk] }

// chunk returns the points of chunk c.
func (b *buffer) chunk(c int) []bufPoint {
	return b.pts[c][:min(pointChunk, b.n-c*pointChunk)]
}

// size is what b holds, in BufferBytes' terms.
func (b *buffer) size() int { return b.n*pointBytes + 4*len(b.attrs) }

func (b *buffer) id(p *bufPoint) []byte {
	off := int(p.idOff & (idChunk - 1))
	return b.ids[p.idOff>>idChunkBits][off : off+int(p.idLen)]
}

// point returns p with its attributes.
func (b *buffer) point(p *bufPoint) Point {
	q := Point{Position: p.Position}
	if p.mask != 0 {
		q.Attrs.Mask = p.mask
		k := p.attrOff
		for a := range fleet.Attr(fleet.NumAttrs) {
			if p.mask&(1<<a) != 0 {
				q.Attrs.Vals[a] = b.attrs[k]
				k++
			}
		}
	}
	return q
}

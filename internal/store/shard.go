package store

import (
	"bytes"
	"encoding/binary"
	"sync"
	"unsafe"
)

// chunkSize is the number of records per slab chunk: 128 KiB of records,
// so a million trucks make a few hundred heap objects, and a shard's spare
// capacity is under one chunk.
const chunkSize = 4096

// maxSlots bounds a shard's slots: a table entry keeps slot+1 in 24 bits.
const maxSlots = 1<<24 - 1

// idInline is the longest ID kept inside the record.
const idInline = 15

// longID marks a record whose ID lives in the shard's long-ID arena; the
// record then holds the arena offset (id[1:5]) and the length (id[5]).
const longID = 0xFF

// record is one truck: 32 bytes, no pointers.
//
// hh packs the heading (whole degrees, 0–359: 9 bits) with the truck's
// last-heard epoch in the top 7 bits (see Store.SetEpoch): the TTL counts
// from when fleetd last heard from a truck, not from its device's clock,
// and keeping that here costs no byte (a separate column would cost 1–4 B
// a truck, 2–9% of the record budget).
type record struct {
	lat, lon int32
	ts       uint32
	speed    uint16
	hh       uint16 // heading | heard<<headingBits
	id       [16]byte
}

const (
	headingBits = 9
	headingMask = 1<<headingBits - 1
	// HeardEpochs is how many last-heard values a record distinguishes:
	// the 16 bits of hh less the heading's 9.
	HeardEpochs = 1 << (16 - headingBits)
)

// recordSize is asserted at compile time: the bytes-per-truck budget in
// doc.go depends on it.
const recordSize = unsafe.Sizeof(record{})

var _ [32 - recordSize]struct{}
var _ [recordSize - 32]struct{}

func (r *record) pos() Position {
	return Position{Lat: r.lat, Lon: r.lon, TS: r.ts, Speed: r.speed, Heading: r.hh & headingMask}
}

// set stores p, heard in epoch (already shifted: see heardBits).
func (r *record) set(p *Position, heard uint16) {
	r.lat, r.lon, r.ts, r.speed, r.hh = p.Lat, p.Lon, p.TS, p.Speed, p.Heading|heard
}

// hear stamps the record as heard in epoch (shifted) without moving it: a
// stale update is still news that the truck is alive.
func (r *record) hear(heard uint16) { r.hh = r.hh&headingMask | heard }

// heardAge is how many epochs ago (mod HeardEpochs) the truck was last
// heard, cur being the current epoch (shifted).
func (r *record) heardAge(cur uint16) uint16 {
	return (cur - r.hh&^headingMask) >> headingBits
}

type shard struct {
	// mu guards every field below. It has a cache line to itself: a
	// query read-locks every shard, and each RLock writes the lock, which
	// would otherwise take the line of the fields the other cores' queries
	// read next (chunks, table, grid) away from them.
	mu sync.RWMutex
	_  [64 - unsafe.Sizeof(sync.RWMutex{})]byte

	st       *Store
	chunks   []*[chunkSize]record
	nslots   uint32   // slots handed out so far (live + free)
	free     []uint32 // free slots, reused LIFO
	live     int
	table    []uint32 // ID dictionary, see doc.go
	longIDs  []byte   // arena for IDs longer than idInline
	longDead int      // bytes of longIDs no record refers to
	grid     grid
	attrs    attrColumns
	touched  uint32 // what touch loaded, summed: a sink, never read

	// Keep hot shards on separate cache lines.
	_ [64]byte
}

func (sh *shard) init(s *Store) {
	sh.st = s
	sh.table = make([]uint32, 64)
	sh.grid.init(&s.geom)
}

func (sh *shard) rec(slot uint32) *record {
	return &sh.chunks[slot/chunkSize][slot%chunkSize]
}

// idOf returns the ID bytes of a live record, aliasing shard memory.
func (sh *shard) idOf(r *record) []byte {
	if n := r.id[0]; n != longID {
		return r.id[1 : 1+n]
	}
	off := binary.LittleEndian.Uint32(r.id[1:5])
	return sh.longIDs[off : off+uint32(r.id[5])]
}

func (sh *shard) appendID(dst []byte, r *record) []byte { return append(dst, sh.idOf(r)...) }

func (sh *shard) idEqual(r *record, id []byte) bool {
	n := r.id[0]
	if n != longID {
		return int(n) == len(id) && string(r.id[1:1+n]) == string(id)
	}
	return bytes.Equal(sh.idOf(r), id)
}

func (sh *shard) setID(r *record, id []byte) {
	if len(id) <= idInline {
		r.id[0] = byte(len(id))
		copy(r.id[1:], id)
		return
	}
	sh.compactLongIDs()
	off := uint32(len(sh.longIDs))
	sh.longIDs = append(sh.longIDs, id...)
	r.id[0] = longID
	binary.LittleEndian.PutUint32(r.id[1:5], off)
	r.id[5] = byte(len(id))
}

// compactLongIDs rewrites the long-ID arena when most of it is dead, so
// churn of long IDs cannot grow it without bound.
func (sh *shard) compactLongIDs() {
	if sh.longDead < 1<<16 || sh.longDead*2 < len(sh.longIDs) {
		return
	}
	fresh := make([]byte, 0, len(sh.longIDs)-sh.longDead+1024)
	for slot := uint32(0); slot < sh.nslots; slot++ {
		r := sh.rec(slot)
		if r.id[0] != longID {
			continue
		}
		id := sh.idOf(r)
		binary.LittleEndian.PutUint32(r.id[1:5], uint32(len(fresh)))
		fresh = append(fresh, id...)
	}
	sh.longIDs, sh.longDead = fresh, 0
}

// fastrange maps a 32-bit hash onto [0, n) without division.
func fastrange(h uint32, n int) int { return int(uint64(h) * uint64(n) >> 32) }

func tagOf(h uint64) uint32 { return uint32(h>>32) & 0xFF }

// homeOf is the table position where the search for hash h starts.
func (sh *shard) homeOf(h uint64) int { return fastrange(uint32(h), len(sh.table)) }

// lookup finds id. It returns the slot and table position when present,
// or the empty table position where id would go.
func (sh *shard) lookup(id []byte, h uint64) (slot uint32, pos int, ok bool) {
	t := sh.table
	tag := tagOf(h)
	i := sh.homeOf(h)
	for {
		e := t[i]
		if e == 0 {
			return 0, i, false
		}
		if e>>24 == tag {
			slot = e&maxSlots - 1
			if sh.idEqual(sh.rec(slot), id) {
				return slot, i, true
			}
		}
		if i++; i == len(t) {
			i = 0
		}
	}
}

// insertLocked stores a new truck and returns its slot. pos is the empty
// table position lookup returned.
func (sh *shard) insertLocked(id []byte, h uint64, pos int, p *Position) (uint32, error) {
	if m := sh.st.maxTrucks.Load(); m > 0 {
		if sh.st.live.Add(1) > m {
			sh.st.live.Add(-1)
			return 0, ErrFull
		}
	} else {
		sh.st.live.Add(1)
	}
	if (sh.live+1)*100 > len(sh.table)*85 {
		sh.growTable(sh.live + 1)
		_, pos, _ = sh.lookup(id, h)
	}
	var slot uint32
	if n := len(sh.free); n > 0 {
		slot = sh.free[n-1]
		sh.free = sh.free[:n-1]
	} else {
		if sh.nslots >= maxSlots {
			sh.st.live.Add(-1)
			return 0, ErrFull
		}
		if sh.nslots%chunkSize == 0 && int(sh.nslots/chunkSize) == len(sh.chunks) {
			sh.chunks = append(sh.chunks, new([chunkSize]record))
		}
		slot = sh.nslots
		sh.nslots++
	}
	r := sh.rec(slot)
	r.set(p, sh.st.heardBits())
	sh.setID(r, id)
	sh.table[pos] = tagOf(h)<<24 | (slot + 1)
	sh.live++
	key, sub := sh.grid.locate(p.Lat, p.Lon)
	sh.grid.add(key, slot, sub)
	return slot, nil
}

// moveLocked updates the grid for the truck in slot moving from (lat, lon)
// to p; the record still holds the old position.
func (sh *shard) moveLocked(slot uint32, lat, lon int32, p *Position) {
	g := &sh.grid
	oldKey, oldSub := g.locate(lat, lon)
	newKey, sub := g.locate(p.Lat, p.Lon)
	switch {
	case oldKey != newKey:
		if c := g.remove(oldKey, slot); c >= 0 {
			sh.hintLocked(c)
		}
		g.add(newKey, slot, sub)
	case oldSub != sub:
		g.rehint(oldKey, slot, sub)
	}
}

// hintLocked recomputes the hints of loose cell c from the records and
// makes it exact again; remove asks for it once the cell has shrunk to
// hintMax/2, so its cost is amortised over the removals since it got loose.
func (sh *shard) hintLocked(c int) {
	g := &sh.grid
	cl := &g.cells[c]
	for i, e := range g.refs[cl.off : cl.off+cl.n] {
		slot := e & slotMask
		r := sh.rec(slot)
		g.refs[int(cl.off)+i] = slot | g.subOf(cl.key, r.lat, r.lon)
	}
	cl.loose = false
}

// removeLocked deletes the truck in slot whose table entry is at pos.
func (sh *shard) removeLocked(slot uint32, pos int) {
	r := sh.rec(slot)
	if c := sh.grid.remove(sh.st.geom.Cell(r.lat, r.lon), slot); c >= 0 {
		sh.hintLocked(c)
	}
	sh.deleteTableAt(pos)
	if r.id[0] == longID {
		sh.longDead += int(r.id[5])
	}
	*r = record{}
	sh.attrs.clear(slot)
	sh.free = append(sh.free, slot)
	sh.live--
	sh.st.live.Add(-1)
}

// deleteTableAt removes the entry at pos by backward-shift deletion, which
// keeps every remaining entry reachable from its home without tombstones.
func (sh *shard) deleteTableAt(i int) {
	t := sh.table
	j := i
	for {
		if j++; j == len(t) {
			j = 0
		}
		e := t[j]
		if e == 0 {
			break
		}
		k := sh.home(e)
		// The entry at j may move to i unless its home lies cyclically in (i, j].
		if (i <= j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
			t[i] = e
			i = j
		}
	}
	t[i] = 0
}

// home is the preferred table position of an entry.
func (sh *shard) home(e uint32) int {
	return sh.homeOf(sh.st.hash(sh.idOf(sh.rec(e&maxSlots - 1))))
}

// growTable rehashes into a table sized for a load of 0.6 at n trucks.
func (sh *shard) growTable(n int) {
	size := max(64, n*100/60)
	t := make([]uint32, size)
	for _, e := range sh.table {
		if e == 0 {
			continue
		}
		i := fastrange(uint32(sh.st.hash(sh.idOf(sh.rec(e&maxSlots-1)))), size)
		for t[i] != 0 {
			if i++; i == size {
				i = 0
			}
		}
		t[i] = e
	}
	sh.table = t
}

package store

import (
	"fmt"
	"unsafe"
)

// Stats is the store's memory, accounted from its own structures' lengths
// and capacities (like pympler.asizeof, but exact for this layout).
type Stats struct {
	Trucks int `json:"trucks"`
	Shards int `json:"shards"`

	Records       int64   `json:"records"`    // record slabs in use (live slots)
	IDs           int64   `json:"ids"`        // ID table and long-ID arena
	Index         int64   `json:"index"`      // grid cells, their index and blocks in use
	FreeLists     int64   `json:"free_lists"` // free slot stacks, free cell and block lists
	Spare         int64   `json:"spare"`      // allocated but unused: free slots, spare chunk and block capacity
	Attrs         int64   `json:"attrs"`      // optional attribute columns (0 for a fleet that sends none)
	Total         int64   `json:"total"`      // the sum of the above
	BytesPerTruck float64 `json:"bytes_per_truck"`
	IndexCells    int     `json:"index_cells"` // occupied grid cells over all shards
}

// Stats measures the store. It read-locks one shard at a time.
func (s *Store) Stats() Stats {
	st := Stats{Shards: len(s.shards)}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		st.Trucks += sh.live
		rec := int64(recordSize)
		st.Records += int64(sh.live) * rec
		st.Spare += (int64(len(sh.chunks))*chunkSize - int64(sh.live)) * rec
		st.Spare += int64(cap(sh.chunks)) * 8
		st.IDs += int64(cap(sh.table))*4 + int64(cap(sh.longIDs))
		st.FreeLists += int64(cap(sh.free)) * 4
		st.Attrs += sh.attrs.bytes()

		g := &sh.grid
		st.IndexCells += g.nindex
		st.Index += int64(cap(g.index))*4 + int64(cap(g.cells))*int64(unsafe.Sizeof(cell{}))
		used := int64(0)
		for _, c := range g.cells {
			if c.class != noClass {
				used += int64(blockCap(c.class))
			}
		}
		st.Index += used * 4
		st.Spare += (int64(cap(g.refs)) - used) * 4 // free blocks and the arena's tail
		st.FreeLists += int64(cap(g.free)) * 4
		for _, b := range g.blocks {
			st.FreeLists += int64(cap(b)) * 4
		}
		sh.mu.RUnlock()
	}
	st.Total = st.Records + st.IDs + st.Index + st.FreeLists + st.Spare + st.Attrs
	if st.Trucks > 0 {
		st.BytesPerTruck = float64(st.Total) / float64(st.Trucks)
	}
	return st
}

// Check verifies the store's invariants (see the package doc). It is slow:
// tests call it after random operations.
func (s *Store) Check() error {
	total := 0
	for si := range s.shards {
		sh := &s.shards[si]
		sh.mu.RLock()
		err := sh.check(si)
		total += sh.live
		sh.mu.RUnlock()
		if err != nil {
			return err
		}
	}
	if n := s.Len(); n != total {
		return fmt.Errorf("store: Len %d, shards hold %d", n, total)
	}
	return nil
}

func (sh *shard) check(si int) error {
	s := sh.st
	isFree := make(map[uint32]bool, len(sh.free))
	for _, f := range sh.free {
		if f >= sh.nslots || isFree[f] {
			return fmt.Errorf("store: shard %d: free list holds bad or repeated slot %d", si, f)
		}
		isFree[f] = true
	}
	inTable := 0
	for pos, e := range sh.table {
		if e == 0 {
			continue
		}
		inTable++
		slot := e&maxSlots - 1
		r := sh.rec(slot)
		if r.id[0] == 0 {
			return fmt.Errorf("store: shard %d: table entry for free slot %d", si, slot)
		}
		id := sh.idOf(r)
		if r.hh&headingMask >= 360 {
			return fmt.Errorf("store: shard %d: %q has heading %d", si, id, r.hh&headingMask)
		}
		h := s.hash(id)
		if s.shardOf(h) != si {
			return fmt.Errorf("store: shard %d holds %q of shard %d", si, id, s.shardOf(h))
		}
		if got, p, ok := sh.lookup(id, h); !ok || got != slot || p != pos {
			return fmt.Errorf("store: shard %d: %q not reachable in the table", si, id)
		}
	}
	live := 0
	members := map[uint32]uint32{}
	for ci, c := range sh.grid.cells {
		if c.class == noClass {
			continue
		}
		if c.n == 0 || c.n > blockCap(c.class) || sh.grid.find(c.key) != ci {
			return fmt.Errorf("store: shard %d: cell %d is inconsistent", si, c.key)
		}
		if c.n > hintMax && !c.loose {
			return fmt.Errorf("store: shard %d: cell %d holds %d trucks and is not loose", si, c.key, c.n)
		}
		for _, e := range sh.grid.refs[c.off : c.off+c.n] {
			slot := e & slotMask
			if _, dup := members[slot]; dup {
				return fmt.Errorf("store: shard %d: slot %d in two cells", si, slot)
			}
			members[slot] = c.key
			if r := sh.rec(slot); !c.loose && e&^slotMask != sh.grid.subOf(c.key, r.lat, r.lon) {
				return fmt.Errorf("store: shard %d: slot %d has sub-cell hint %d, not %d", si, slot, e>>slotBits, sh.grid.subOf(c.key, r.lat, r.lon)>>slotBits)
			}
		}
	}
	for slot := uint32(0); slot < sh.nslots; slot++ {
		r := sh.rec(slot)
		if r.id[0] == 0 {
			if !isFree[slot] {
				return fmt.Errorf("store: shard %d: slot %d is neither live nor free", si, slot)
			}
			continue
		}
		live++
		if isFree[slot] {
			return fmt.Errorf("store: shard %d: live slot %d on the free list", si, slot)
		}
		if key, ok := members[slot]; !ok || key != s.geom.Cell(r.lat, r.lon) {
			return fmt.Errorf("store: shard %d: slot %d not in its grid cell", si, slot)
		}
	}
	if live != sh.live || inTable != live || len(members) != live {
		return fmt.Errorf("store: shard %d: live %d, counted %d, table %d, grid %d", si, sh.live, live, inTable, len(members))
	}
	return nil
}

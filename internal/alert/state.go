package alert

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/fleetd/fleetd/internal/store"
)

// numStripes is the number of independently locked state stripes; a
// truck's stripe is the low bits of its ID hash.
const numStripes = 64

// hashSeed is fixed for the process, so a truck's key is the same in
// every batch, in Removed and in the firing registry.
var hashSeed = maphash.MakeSeed()

// truckKey is the 64-bit key that stands for a truck ID in the state
// tables. Two IDs colliding (probability about n²/2⁶⁵, 3·10⁻⁸ for a
// million trucks with state) would share their rule state.
func truckKey(id []byte) uint64 { return maphash.Bytes(hashSeed, id) }

// pair is one (rule, truck) state: the rule's condition has been true for
// the truck on every update since the update at time since. Only pairs
// whose condition is currently true exist. A firing pair names its
// record in the stripe's firing registry.
//
//	| since uint32 | rec uint32 | slot uint16 | gen uint8 | pad 1 |  = 12 bytes
type pair struct {
	since uint32 // ts of the first update of the current true run
	rec   uint32 // index of its firingRec; 0 = not firing
	slot  uint16 // the rule's slot
	gen   uint8  // the slot's generation when the pair was made
	_     uint8
}

// pairsPerEntry is how many pairs an entry holds inline; a truck with
// more chains overflow entries.
const pairsPerEntry = 4

// entry is one truck's pairs, or an overflow of them. 64 bytes, one cache
// line:
//
//	| key uint64 | next uint32 | n uint8 | pad 3 | pairs [4]pair (48) |
type entry struct {
	key   uint64 // the truck's key (head entries; overflow entries copy it)
	next  uint32 // index of the next overflow entry, 0 = none
	n     uint8  // pairs used
	_     [3]byte
	pairs [pairsPerEntry]pair
}

// firingRec is one firing alert, for Firing() and for resolving it
// without an update: the truck's key and ID (in the stripe's ID arena),
// when it became true, and the update that fired it. idLen == 0 marks a
// free record.
//
//	| key u64 | since u32 | ts u32 | lat i32 | lon i32 | idOff u32 | slot u16 | gen u8 | idLen u8 | = 32 bytes
type firingRec struct {
	key      uint64
	since    uint32
	ts       uint32
	lat, lon int32
	idOff    uint32
	slot     uint16
	gen      uint8
	idLen    uint8
}

// Entry and record sizes, asserted at compile time (the index is out of
// range unless both are as drawn above).
var _ = [1]struct{}{}[(unsafe.Sizeof(entry{})^64)|(unsafe.Sizeof(firingRec{})^32)|(unsafe.Sizeof(pair{})^12)]

// stripe holds the state of the trucks whose key falls in it. All its
// fields are guarded by mu. Slabs are pointer-free and indexed by uint32;
// index 0 is never used so that 0 means "none".
type stripe struct {
	mu struct {
		sync.Mutex
		trucks    map[uint64]uint32 // truck key → head entry index in ents
		ents      []entry           // [0] unused
		free      []uint32          // free entry indices
		pairs     int               // pairs in use
		recs      []firingRec       // [0] unused
		recFree   []uint32          // free record indices
		firing    int               // records in use
		ids       []byte            // truck IDs of the records, appended
		idGarbage int               // bytes of ids no record uses
	}
	// has is a counting filter of the trucks with pairs, read without the
	// lock: counter (key>>6)%filterSize counts them (saturating at 255,
	// after which it never decreases). Zero means the truck has no pairs,
	// so an update that makes no rule true need not take the lock.
	has [filterSize / 4]atomic.Uint32 // four 8-bit counters a word

	_ [64]byte // keep neighbouring stripes' locks off one cache line
}

// filterSize is the number of counters of a stripe's filter: 2^14, so
// 1 MiB for all stripes, and a truck without state passes for one with
// it about (trucks with state / 2^20) of the time.
const filterSize = 1 << 14

func filterSlot(k uint64) (word int, shift uint) {
	i := int(k>>6) % filterSize
	return i / 4, uint(i%4) * 8
}

// mayHave reports whether the truck with key k may have pairs. It takes
// no lock.
func (s *stripe) mayHave(k uint64) bool {
	w, sh := filterSlot(k)
	return s.has[w].Load()>>sh&0xff != 0
}

// countLocked adds d (±1) to the truck's filter counter.
func (s *stripe) countLocked(k uint64, d int) {
	w, sh := filterSlot(k)
	c := s.has[w].Load() >> sh & 0xff
	switch {
	case c == 0xff: // saturated: stays
	case d > 0:
		s.has[w].Add(1 << sh)
	case c > 0:
		s.has[w].Add(^uint32(1<<sh - 1)) // subtract 1<<sh
	default:
		panic("BUG: alert: filter counter below zero")
	}
}

func (s *stripe) initLocked() {
	s.mu.trucks = make(map[uint64]uint32)
	s.mu.ents = make([]entry, 1, 8)
	s.mu.recs = make([]firingRec, 1, 4)
}

// loadLocked appends the pairs of the truck with key k to dst and returns
// its head entry (0: the truck has no pairs).
func (s *stripe) loadLocked(k uint64, dst []pair) ([]pair, uint32) {
	head := s.mu.trucks[k]
	for i := head; i != 0; i = s.mu.ents[i].next {
		e := &s.mu.ents[i]
		dst = append(dst, e.pairs[:e.n]...)
	}
	return dst, head
}

// storeLocked replaces the pairs of the truck with key k, whose head entry
// is head (loadLocked's answer), by ps, reusing its entries; an empty ps
// removes the truck.
func (s *stripe) storeLocked(k uint64, head uint32, ps []pair) {
	had := head != 0
	// Write ps over the existing chain, extending or cutting it.
	prev, cur := uint32(0), head
	for len(ps) > 0 {
		if cur == 0 {
			cur = s.allocLocked(k)
			if prev == 0 {
				s.mu.trucks[k] = cur
				s.countLocked(k, +1)
			} else {
				s.mu.ents[prev].next = cur
			}
		}
		e := &s.mu.ents[cur]
		n := copy(e.pairs[:], ps)
		s.mu.pairs += n - int(e.n)
		e.n = uint8(n)
		ps = ps[n:]
		prev, cur = cur, e.next
	}
	// Free what is left of the chain.
	if prev == 0 {
		if had {
			delete(s.mu.trucks, k)
			s.countLocked(k, -1)
		}
	} else {
		s.mu.ents[prev].next = 0
	}
	for cur != 0 {
		e := &s.mu.ents[cur]
		next := e.next
		s.mu.pairs -= int(e.n)
		*e = entry{}
		s.mu.free = append(s.mu.free, cur)
		cur = next
	}
}

func (s *stripe) allocLocked(k uint64) uint32 {
	var i uint32
	if n := len(s.mu.free); n > 0 {
		i, s.mu.free = s.mu.free[n-1], s.mu.free[:n-1]
	} else {
		i = uint32(len(s.mu.ents))
		s.mu.ents = append(s.mu.ents, entry{})
	}
	s.mu.ents[i] = entry{key: k}
	return i
}

// addFiringLocked records that p fires now, at pos, and sets p.rec.
func (s *stripe) addFiringLocked(k uint64, p *pair, id []byte, pos store.Position) {
	var i uint32
	if n := len(s.mu.recFree); n > 0 {
		i, s.mu.recFree = s.mu.recFree[n-1], s.mu.recFree[:n-1]
	} else {
		i = uint32(len(s.mu.recs))
		s.mu.recs = append(s.mu.recs, firingRec{})
	}
	s.mu.recs[i] = firingRec{key: k, since: p.since, ts: pos.TS, lat: pos.Lat, lon: pos.Lon,
		idOff: uint32(len(s.mu.ids)), slot: p.slot, gen: p.gen, idLen: uint8(len(id))}
	s.mu.ids = append(s.mu.ids, id...)
	s.mu.firing++
	p.rec = i
}

// recID returns a record's truck ID; it is valid until the stripe's lock
// is released.
func (s *stripe) recIDLocked(r *firingRec) []byte {
	return s.mu.ids[r.idOff : r.idOff+uint32(r.idLen)]
}

// dropFiringLocked frees p's firing record (p.rec != 0) and clears p.rec.
func (s *stripe) dropFiringLocked(p *pair) {
	r := &s.mu.recs[p.rec]
	s.mu.idGarbage += int(r.idLen)
	*r = firingRec{}
	s.mu.recFree = append(s.mu.recFree, p.rec)
	s.mu.firing--
	p.rec = 0
	if s.mu.idGarbage > 64<<10 && 2*s.mu.idGarbage > len(s.mu.ids) {
		s.compactIDsLocked()
	}
}

// compactIDsLocked rewrites the ID arena with only the live records' IDs.
func (s *stripe) compactIDsLocked() {
	ids := make([]byte, 0, len(s.mu.ids)-s.mu.idGarbage)
	for i := range s.mu.recs {
		r := &s.mu.recs[i]
		if r.idLen == 0 {
			continue
		}
		off := uint32(len(ids))
		ids = append(ids, s.recIDLocked(r)...)
		r.idOff = off
	}
	s.mu.ids, s.mu.idGarbage = ids, 0
}

// memLocked returns the bytes the stripe's tables hold: slabs by
// capacity, the map estimated at 1.5× its entries' key and value size (Go's
// swiss tables run at most 7/8 full, plus control bytes).
func (s *stripe) memLocked() int64 {
	const truckSlot = 3 * (8 + 4) / 2
	return int64(cap(s.mu.ents))*int64(unsafe.Sizeof(entry{})) +
		int64(cap(s.mu.free)+cap(s.mu.recFree))*4 +
		int64(cap(s.mu.recs))*int64(unsafe.Sizeof(firingRec{})) +
		int64(cap(s.mu.ids)) +
		int64(len(s.mu.trucks)*truckSlot)
}

// compactLocked rebuilds the slabs and the map densely when at least half
// of a large slab is free, so that memory freed by deleting a rule or
// expiring trucks goes back to the heap instead of waiting for reuse (Go
// maps never shrink by themselves).
func (s *stripe) compactLocked() {
	if n := len(s.mu.ents); n > 1024 && 2*len(s.mu.free) > n {
		ents := make([]entry, 1, n-len(s.mu.free))
		trucks := make(map[uint64]uint32, len(s.mu.trucks))
		for k, head := range s.mu.trucks {
			trucks[k] = uint32(len(ents))
			for i := head; i != 0; i = s.mu.ents[i].next {
				e := s.mu.ents[i]
				if e.next != 0 {
					e.next = uint32(len(ents) + 1)
				}
				ents = append(ents, e)
			}
		}
		s.mu.ents, s.mu.free, s.mu.trucks = ents, nil, trucks
	}
	if n := len(s.mu.recs); n > 1024 && 2*len(s.mu.recFree) > n {
		recs := make([]firingRec, 1, s.mu.firing+1)
		for i := 1; i < len(s.mu.ents); i++ {
			e := &s.mu.ents[i]
			for j := range e.pairs[:e.n] {
				if p := &e.pairs[j]; p.rec != 0 {
					recs = append(recs, s.mu.recs[p.rec])
					p.rec = uint32(len(recs) - 1)
				}
			}
		}
		s.mu.recs, s.mu.recFree = recs, nil
		s.compactIDsLocked()
	}
}

// Check walks every stripe and returns an error describing the first
// broken invariant of the state tables (see doc.go), for tests.
func (e *Engine) Check() error {
	for si := range e.stripes {
		s := &e.stripes[si]
		s.mu.Lock()
		err := s.checkLocked(si)
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *stripe) checkLocked(si int) error {
	seen := make(map[uint32]bool)
	recUsed := make(map[uint32]bool)
	pairs := 0
	for k, head := range s.mu.trucks {
		if int(k%numStripes) != si {
			return fmt.Errorf("alert: truck %x in stripe %d", k, si)
		}
		slots := map[uint16]bool{}
		for i := head; i != 0; i = s.mu.ents[i].next {
			if int(i) >= len(s.mu.ents) || seen[i] {
				return fmt.Errorf("alert: stripe %d: entry %d out of range or in two chains", si, i)
			}
			seen[i] = true
			e := &s.mu.ents[i]
			if e.key != k || e.n == 0 || e.n > pairsPerEntry {
				return fmt.Errorf("alert: stripe %d: entry %d has key %x (want %x) and %d pairs", si, i, e.key, k, e.n)
			}
			for _, p := range e.pairs[:e.n] {
				if slots[p.slot] {
					return fmt.Errorf("alert: truck %x has two pairs for slot %d", k, p.slot)
				}
				slots[p.slot] = true
				if p.rec == 0 {
					continue
				}
				if int(p.rec) >= len(s.mu.recs) || recUsed[p.rec] {
					return fmt.Errorf("alert: truck %x slot %d: firing record %d out of range or shared", k, p.slot, p.rec)
				}
				recUsed[p.rec] = true
				r := &s.mu.recs[p.rec]
				if r.key != k || r.slot != p.slot || r.gen != p.gen || r.since != p.since || r.idLen == 0 ||
					int(r.idOff)+int(r.idLen) > len(s.mu.ids) || truckKey(s.recIDLocked(r)) != k {
					return fmt.Errorf("alert: truck %x slot %d: firing record %+v does not match", k, p.slot, *r)
				}
			}
			pairs += int(e.n)
		}
	}
	for k := range s.mu.trucks {
		if !s.mayHave(k) {
			return fmt.Errorf("alert: stripe %d: filter misses truck %x", si, k)
		}
	}
	var counts [filterSize]int
	for k := range s.mu.trucks {
		w, sh := filterSlot(k)
		counts[w*4+int(sh/8)]++
	}
	for i, n := range counts {
		if c := int(s.has[i/4].Load() >> (uint(i%4) * 8) & 0xff); c != n && c != 0xff {
			return fmt.Errorf("alert: stripe %d: filter counter %d is %d, %d trucks", si, i, c, n)
		}
	}
	if pairs != s.mu.pairs {
		return fmt.Errorf("alert: stripe %d counts %d pairs, holds %d", si, s.mu.pairs, pairs)
	}
	if len(seen)+len(s.mu.free)+1 != len(s.mu.ents) {
		return fmt.Errorf("alert: stripe %d: %d entries used + %d free + 1 != %d", si, len(seen), len(s.mu.free), len(s.mu.ents))
	}
	live := 0
	for _, r := range s.mu.recs {
		if r.idLen != 0 {
			live++
		}
	}
	if live != len(recUsed) || live != s.mu.firing || live+len(s.mu.recFree)+1 != len(s.mu.recs) {
		return fmt.Errorf("alert: stripe %d: %d live records, %d firing pairs, count %d, %d free, %d slots",
			si, live, len(recUsed), s.mu.firing, len(s.mu.recFree), len(s.mu.recs))
	}
	return nil
}

package alert

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/fleetd/fleetd/internal/fleet"
)

// numStripes is the number of independently locked state stripes; a
// truck's stripe is the low bits of its ID hash.
const numStripes = 64

// hashSeed is fixed for the process, so a truck's key is the same in
// every batch, in Removed and in the firing registry.
var hashSeed = maphash.MakeSeed()

// truckKey is the 64-bit key that stands for a truck ID in the state
// tables; never 0, which marks a free table slot. Two IDs colliding
// (probability about n²/2⁶⁵, 3·10⁻⁸ for a million trucks with state)
// would share their rule state.
func truckKey(id []byte) uint64 {
	k := maphash.Bytes(hashSeed, id)
	if k == 0 {
		k = numStripes // same stripe
	}
	return k
}

// pair is one (rule, truck) state: the rule's condition has been true for
// the truck on every update since the update at time since. Only pairs
// whose condition is currently true exist. A firing pair names its
// record in the stripe's firing registry.
//
//	| since uint32 | rec uint32 | ref uint32 (slot << 8 | gen) |  = 12 bytes
type pair struct {
	since uint32  // ts of the first update of the current true run
	rec   uint32  // index of its firingRec; 0 = not firing
	ref   ruleRef // the rule's slot and the slot's generation when the pair was made
}

// ruleRef names a rule by its slot (< maxSlots) and the slot's generation.
type ruleRef uint32

// maxSlots bounds rule slots: 24 bits of a ruleRef.
const maxSlots = 1 << 24

func makeRef(slot uint32, gen uint8) ruleRef { return ruleRef(slot<<8 | uint32(gen)) }
func (r ruleRef) slot() uint32               { return uint32(r) >> 8 }
func (r ruleRef) gen() uint8                 { return uint8(r) }

// pairsPerEntry is how many pairs an entry holds inline; a truck with
// more chains overflow entries.
const pairsPerEntry = 4

// entry is one truck's pairs, or an overflow of them. 64 bytes, one cache
// line:
//
//	| key uint64 | next uint32 | n uint8 | pad 3 | pairs [4]pair (48) |
type entry struct {
	key   uint64 // the truck's key (0: a free table slot; overflow entries copy it)
	next  uint32 // index in over of the next overflow entry, 0 = none
	n     uint8  // pairs used
	_     [3]byte
	pairs [pairsPerEntry]pair
}

// firingRec is one firing alert, for Firing() and for resolving it
// without an update: the truck's key and ID (in the stripe's ID arena),
// when it became true, and the update that fired it. key == 0 marks a
// free record. The ID is in the arena at idOff as a length byte and the
// ID's bytes.
//
//	| key u64 | since u32 | ts u32 | lat i32 | lon i32 | idOff u32 | ref u32 | = 32 bytes
type firingRec struct {
	key      uint64
	since    uint32
	ts       uint32
	lat, lon int32
	idOff    uint32
	ref      ruleRef
}

// Entry and record sizes, asserted at compile time (the index is out of
// range unless both are as drawn above).
var _ = [1]struct{}{}[(unsafe.Sizeof(entry{})^64)|(unsafe.Sizeof(firingRec{})^32)|(unsafe.Sizeof(pair{})^12)]

// stripe holds the state of the trucks whose key falls in it. All its
// fields are guarded by mu. Tables and slabs are pointer-free and indexed
// by integers; index 0 of a slab is never used so that 0 means "none".
//
// The trucks are an open-addressing hash table of head entries, so that
// finding a truck's pairs reads one cache line in the common case (a Go
// map from key to entry index read two or three: profiled, the map lookup
// was 10-15% of BenchmarkApplied). Linear probing from home(key), at most
// 3/4 full; a deletion shifts the following entries of its run back
// (no tombstones), so every key lies between its home and the first free
// slot after it.
type stripe struct {
	mu struct {
		sync.Mutex
		tab       []entry     // head entries by key; len 0 or a power of 2
		used      int         // trucks in tab
		over      []entry     // overflow entries; [0] unused
		free      []uint32    // free overflow entries
		pairs     int         // pairs in use
		recs      []firingRec // [0] unused
		recFree   []uint32    // free record indices
		firing    int         // records in use
		ids       []byte      // truck IDs of the records, appended
		idGarbage int         // bytes of ids no record uses
	}
	// tab is mu.tab, published for evalRange to prefetch entries without
	// the lock: it only loads their keys, atomically, and ignores the
	// values; every write of a key in a published table is atomic
	// (setKey). Set with mu held whenever mu.tab changes.
	tab atomic.Pointer[[]entry]
	// has is a counting filter of the trucks with pairs, read without the
	// lock: counter (key>>6)%filterSize counts them (saturating at 255,
	// after which it never decreases). Zero means the truck has no pairs,
	// so an update that makes no rule true need not take the lock.
	has [filterSize / 4]atomic.Uint32 // four 8-bit counters a word

	_ [64]byte // keep neighbouring stripes' locks off one cache line
}

// minTable is the table size a stripe starts with (4 KiB).
const minTable = 64

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

// hasWord loads the filter word holding k's counter, for prefetching.
func (s *stripe) hasWord(k uint64) uint32 {
	w, _ := filterSlot(k)
	return s.has[w].Load()
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
	s.mu.over = make([]entry, 1, 4)
	s.mu.recs = make([]firingRec, 1, 4)
}

// home is where key k's probe starts in a table of 2^bits slots: the high
// bits of the key (the low ones choose the stripe and the filter counter).
func home(k uint64, mask int) int {
	return int(k>>32) & mask
}

// findLocked returns the table index of the truck with key k, or -1.
func (s *stripe) findLocked(k uint64) int {
	tab := s.mu.tab
	mask := len(tab) - 1
	if mask < 0 {
		return -1
	}
	for i := home(k, mask); ; i = (i + 1) & mask {
		switch tab[i].key {
		case k:
			return i
		case 0:
			return -1
		}
	}
}

// insertLocked adds a head entry for k, which is not in the table, and
// returns its index.
func (s *stripe) insertLocked(k uint64) int {
	if 4*(s.mu.used+1) > 3*len(s.mu.tab) {
		s.resizeLocked(max(minTable, 2*len(s.mu.tab)))
	}
	mask := len(s.mu.tab) - 1
	i := home(k, mask)
	for s.mu.tab[i].key != 0 {
		i = (i + 1) & mask
	}
	setKey(&s.mu.tab[i], k) // the free slot's other fields are zero
	s.mu.used++
	return i
}

// setKey sets a table entry's key atomically; see stripe.tab.
func setKey(e *entry, k uint64) { atomic.StoreUint64(&e.key, k) }

// prefetch loads the table entry where the truck with key k would be, so
// that it is in cache when the stripe is locked. It takes no lock.
func (s *stripe) prefetch(k uint64) uint64 {
	tp := s.tab.Load()
	if tp == nil || len(*tp) == 0 {
		return 0
	}
	tab := *tp
	return atomic.LoadUint64(&tab[home(k, len(tab)-1)].key)
}

// deleteLocked frees table slot i, shifting back the entries after it in
// its run that may move closer to their home.
func (s *stripe) deleteLocked(i int) {
	tab := s.mu.tab
	mask := len(tab) - 1
	for j := (i + 1) & mask; tab[j].key != 0; j = (j + 1) & mask {
		// The entry at j may fill the hole at i unless its home lies
		// cyclically in (i, j].
		h := home(tab[j].key, mask)
		if (j-h)&mask >= (j-i)&mask {
			tab[i].next, tab[i].n, tab[i].pairs = tab[j].next, tab[j].n, tab[j].pairs
			setKey(&tab[i], tab[j].key)
			i = j
		}
	}
	tab[i].next, tab[i].n, tab[i].pairs = 0, 0, [pairsPerEntry]pair{}
	setKey(&tab[i], 0)
	s.mu.used--
}

// resizeLocked rebuilds the table with n slots (a power of 2 holding the
// trucks at most 3/4 full; 0 when there are none).
func (s *stripe) resizeLocked(n int) {
	old := s.mu.tab
	var tab []entry // not published until filled: plain writes
	if n > 0 {
		tab = make([]entry, n)
	}
	mask := n - 1
	for j := range old {
		if old[j].key == 0 {
			continue
		}
		i := home(old[j].key, mask)
		for tab[i].key != 0 {
			i = (i + 1) & mask
		}
		tab[i] = old[j]
	}
	s.mu.tab = tab
	s.tab.Store(&tab)
}

// loadLocked appends the pairs of the truck with key k to dst and returns
// its table index (-1: the truck has no pairs).
func (s *stripe) loadLocked(k uint64, dst []pair) ([]pair, int) {
	at := s.findLocked(k)
	if at < 0 {
		return dst, -1
	}
	e := &s.mu.tab[at]
	dst = append(dst, e.pairs[:e.n]...)
	for i := e.next; i != 0; i = s.mu.over[i].next {
		o := &s.mu.over[i]
		dst = append(dst, o.pairs[:o.n]...)
	}
	return dst, at
}

// storeLocked replaces the pairs of the truck with key k, whose table
// index is at (loadLocked's answer, with no insert or delete since), by
// ps, reusing its entries; an empty ps removes the truck.
func (s *stripe) storeLocked(k uint64, at int, ps []pair) {
	if len(ps) == 0 {
		if at >= 0 {
			e := &s.mu.tab[at]
			s.mu.pairs -= int(e.n)
			s.freeOverLocked(e.next)
			s.deleteLocked(at)
			s.countLocked(k, -1)
		}
		return
	}
	if at < 0 {
		at = s.insertLocked(k)
		s.countLocked(k, +1)
	}
	e := &s.mu.tab[at] // stays valid: nothing below resizes tab
	n := copy(e.pairs[:], ps)
	s.mu.pairs += n - int(e.n)
	e.n = uint8(n)
	ps = ps[n:]
	// Write the rest over the overflow chain, extending or cutting it.
	last, cur := uint32(0), e.next // last: the overflow entry written last, 0 = the head
	for len(ps) > 0 {
		if cur == 0 {
			cur = s.allocOverLocked(k)
			if last == 0 {
				e.next = cur
			} else {
				s.mu.over[last].next = cur
			}
		}
		o := &s.mu.over[cur]
		n := copy(o.pairs[:], ps)
		s.mu.pairs += n - int(o.n)
		o.n = uint8(n)
		ps = ps[n:]
		last, cur = cur, o.next
	}
	if last == 0 {
		e.next = 0
	} else {
		s.mu.over[last].next = 0
	}
	s.freeOverLocked(cur)
}

// freeOverLocked frees the overflow chain starting at i.
func (s *stripe) freeOverLocked(i uint32) {
	for i != 0 {
		o := &s.mu.over[i]
		next := o.next
		s.mu.pairs -= int(o.n)
		*o = entry{}
		s.mu.free = append(s.mu.free, i)
		i = next
	}
}

func (s *stripe) allocOverLocked(k uint64) uint32 {
	var i uint32
	if n := len(s.mu.free); n > 0 {
		i, s.mu.free = s.mu.free[n-1], s.mu.free[:n-1]
	} else {
		i = uint32(len(s.mu.over))
		s.mu.over = append(s.mu.over, entry{})
	}
	s.mu.over[i] = entry{key: k}
	return i
}

// eachTruckLocked calls f for each truck in the table with its key and
// index. f may store the truck's pairs (storeLocked), removing it, but
// not add trucks; a truck may then be visited twice.
func (s *stripe) eachTruckLocked(f func(k uint64, at int)) {
	for i := 0; i < len(s.mu.tab); {
		k := s.mu.tab[i].key
		if k == 0 {
			i++
			continue
		}
		f(k, i)
		if s.mu.tab[i].key == k {
			i++
		}
		// Else the truck was removed and another shifted into slot i
		// (or none): look at it again. An entry shifted from the
		// table's start to its end is visited twice.
	}
}

// addFiringLocked records that p fires now, at pos, and sets p.rec.
func (s *stripe) addFiringLocked(k uint64, p *pair, id []byte, pos fleet.Position) {
	var i uint32
	if n := len(s.mu.recFree); n > 0 {
		i, s.mu.recFree = s.mu.recFree[n-1], s.mu.recFree[:n-1]
	} else {
		i = uint32(len(s.mu.recs))
		s.mu.recs = append(s.mu.recs, firingRec{})
	}
	s.mu.recs[i] = firingRec{key: k, since: p.since, ts: pos.TS, lat: pos.Lat, lon: pos.Lon,
		idOff: uint32(len(s.mu.ids)), ref: p.ref}
	s.mu.ids = append(append(s.mu.ids, byte(len(id))), id...)
	s.mu.firing++
	p.rec = i
}

// recID returns a record's truck ID; it is valid until the stripe's lock
// is released.
func (s *stripe) recIDLocked(r *firingRec) []byte {
	n := uint32(s.mu.ids[r.idOff])
	return s.mu.ids[r.idOff+1 : r.idOff+1+n]
}

// dropFiringLocked frees p's firing record (p.rec != 0) and clears p.rec.
func (s *stripe) dropFiringLocked(p *pair) {
	r := &s.mu.recs[p.rec]
	s.mu.idGarbage += 1 + int(s.mu.ids[r.idOff])
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
		if r.key == 0 {
			continue
		}
		off := uint32(len(ids))
		id := s.recIDLocked(r)
		ids = append(append(ids, byte(len(id))), id...)
		r.idOff = off
	}
	s.mu.ids, s.mu.idGarbage = ids, 0
}

// memLocked returns the bytes the stripe's tables hold, by capacity.
func (s *stripe) memLocked() int64 {
	return int64(cap(s.mu.tab)+cap(s.mu.over))*int64(unsafe.Sizeof(entry{})) +
		int64(cap(s.mu.free)+cap(s.mu.recFree))*4 +
		int64(cap(s.mu.recs))*int64(unsafe.Sizeof(firingRec{})) +
		int64(cap(s.mu.ids))
}

// compactLocked gives memory back after a rule is deleted: the table
// shrinks when it is less than 1/8 full, and the overflow and record
// slabs are rebuilt densely when at least half of a large one is free, so
// that memory freed by deleting a rule or expiring trucks goes back to
// the heap instead of waiting for reuse.
func (s *stripe) compactLocked() {
	if n := len(s.mu.tab); n > minTable && 8*s.mu.used < n || n > 0 && s.mu.used == 0 {
		size := 0
		if s.mu.used > 0 {
			size = minTable
			for 4*s.mu.used > 3*size/2 { // at most 3/8 full: room to grow
				size *= 2
			}
		}
		s.resizeLocked(size)
	}
	if n := len(s.mu.over); n > 1024 && 2*len(s.mu.free) > n {
		over := make([]entry, 1, n-len(s.mu.free))
		for i := range s.mu.tab {
			head := &s.mu.tab[i]
			if head.key == 0 || head.next == 0 {
				continue
			}
			j := head.next
			head.next = uint32(len(over))
			for j != 0 {
				o := s.mu.over[j]
				j = o.next
				if j != 0 {
					o.next = uint32(len(over) + 1)
				}
				over = append(over, o)
			}
		}
		s.mu.over, s.mu.free = over, nil
	}
	if n := len(s.mu.recs); n > 1024 && 2*len(s.mu.recFree) > n {
		recs := make([]firingRec, 1, s.mu.firing+1)
		relink := func(ps []pair) {
			for j := range ps {
				if p := &ps[j]; p.rec != 0 {
					recs = append(recs, s.mu.recs[p.rec])
					p.rec = uint32(len(recs) - 1)
				}
			}
		}
		for i := range s.mu.tab {
			if e := &s.mu.tab[i]; e.key != 0 {
				relink(e.pairs[:e.n])
			}
		}
		for i := 1; i < len(s.mu.over); i++ {
			o := &s.mu.over[i]
			relink(o.pairs[:o.n])
		}
		s.mu.recs, s.mu.recFree = recs, nil
		s.compactIDsLocked()
	}
}

// Check walks every stripe and returns an error describing the first
// broken invariant of the state tables (see doc.go), for tests.
func (e *Evaluator) Check() error {
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
	tab := s.mu.tab
	if n := len(tab); n&(n-1) != 0 || 4*s.mu.used > 3*n {
		return fmt.Errorf("alert: stripe %d: table of %d slots holds %d trucks", si, n, s.mu.used)
	}
	if tp := s.tab.Load(); len(tab) > 0 && (tp == nil || len(*tp) != len(tab) || &(*tp)[0] != &tab[0]) {
		return fmt.Errorf("alert: stripe %d: the published table is not the table", si)
	}
	seen := make(map[uint32]bool) // overflow entries in a chain
	recUsed := make(map[uint32]bool)
	pairs, trucks := 0, 0
	for ti := range tab {
		k := tab[ti].key
		if k == 0 {
			continue
		}
		trucks++
		if int(k%numStripes) != si {
			return fmt.Errorf("alert: truck %x in stripe %d", k, si)
		}
		if at := s.findLocked(k); at != ti {
			return fmt.Errorf("alert: stripe %d: truck %x at slot %d is found at %d", si, k, ti, at)
		}
		slots := map[uint32]bool{}
		for e, i := &tab[ti], uint32(0); e != nil; {
			if e.key != k || e.n == 0 || e.n > pairsPerEntry {
				return fmt.Errorf("alert: stripe %d: entry %d/%d has key %x (want %x) and %d pairs", si, ti, i, e.key, k, e.n)
			}
			for _, p := range e.pairs[:e.n] {
				if slots[p.ref.slot()] {
					return fmt.Errorf("alert: truck %x has two pairs for slot %d", k, p.ref.slot())
				}
				slots[p.ref.slot()] = true
				if p.rec == 0 {
					continue
				}
				if int(p.rec) >= len(s.mu.recs) || recUsed[p.rec] {
					return fmt.Errorf("alert: truck %x slot %d: firing record %d out of range or shared", k, p.ref.slot(), p.rec)
				}
				recUsed[p.rec] = true
				r := &s.mu.recs[p.rec]
				if r.key != k || r.ref != p.ref || r.since != p.since || int(r.idOff) >= len(s.mu.ids) ||
					int(r.idOff)+1+int(s.mu.ids[r.idOff]) > len(s.mu.ids) || truckKey(s.recIDLocked(r)) != k {
					return fmt.Errorf("alert: truck %x slot %d: firing record %+v does not match", k, p.ref.slot(), *r)
				}
			}
			pairs += int(e.n)
			if i = e.next; i == 0 {
				break
			}
			if int(i) >= len(s.mu.over) || seen[i] {
				return fmt.Errorf("alert: stripe %d: overflow entry %d out of range or in two chains", si, i)
			}
			seen[i] = true
			e = &s.mu.over[i]
		}
		if !s.mayHave(k) {
			return fmt.Errorf("alert: stripe %d: filter misses truck %x", si, k)
		}
	}
	if trucks != s.mu.used {
		return fmt.Errorf("alert: stripe %d counts %d trucks, holds %d", si, s.mu.used, trucks)
	}
	var counts [filterSize]int
	for ti := range tab {
		if k := tab[ti].key; k != 0 {
			w, sh := filterSlot(k)
			counts[w*4+int(sh/8)]++
		}
	}
	for i, n := range counts {
		if c := int(s.has[i/4].Load() >> (uint(i%4) * 8) & 0xff); c != n && c != 0xff {
			return fmt.Errorf("alert: stripe %d: filter counter %d is %d, %d trucks", si, i, c, n)
		}
	}
	if pairs != s.mu.pairs {
		return fmt.Errorf("alert: stripe %d counts %d pairs, holds %d", si, s.mu.pairs, pairs)
	}
	if len(seen)+len(s.mu.free)+1 != len(s.mu.over) {
		return fmt.Errorf("alert: stripe %d: %d overflow entries used + %d free + 1 != %d", si, len(seen), len(s.mu.free), len(s.mu.over))
	}
	live := 0
	for _, r := range s.mu.recs {
		if r.key != 0 {
			live++
		}
	}
	if live != len(recUsed) || live != s.mu.firing || live+len(s.mu.recFree)+1 != len(s.mu.recs) {
		return fmt.Errorf("alert: stripe %d: %d live records, %d firing pairs, count %d, %d free, %d slots",
			si, live, len(recUsed), s.mu.firing, len(s.mu.recFree), len(s.mu.recs))
	}
	return nil
}

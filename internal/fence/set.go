package fence

import (
	"fmt"
	"iter"
	"math"
	"slices"
	"sync"
	"sync/atomic"
)

// MaxNameLen is the longest zone name, in bytes.
const MaxNameLen = 64

// MaxIDs caps the IDs a Set hands out (live zones and deleted names that
// still hold their ID together).
const MaxIDs = 1 << 20

// CheckName returns an error unless name is 1–64 bytes of [A-Za-z0-9_.:-].
func CheckName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("fence: zone name must be 1-%d bytes, got %d", MaxNameLen, len(name))
	}
	for i := range len(name) {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '_' || c == '.' || c == ':' || c == '-') {
			return fmt.Errorf("fence: zone name %q: byte %d (%q) is not one of [A-Za-z0-9_.:-]", name, i, c)
		}
	}
	return nil
}

// Set is a registry of named zones with small integer IDs, safe for
// concurrent use. Readers by ID (Zone, Inside, DistanceM, Near: what the
// rules VM calls) load the zone through two atomic pointers and never
// lock or allocate; everything by name (ZoneID, Get, Names, All) and the
// writers take a mutex. A write is O(1) (amortised over the table's
// doubling), however many zones there are; Names and All sort the names
// when they changed since the last call. The zero value is an empty Set.
//
// IDs: a name keeps its ID for the life of the Set. Delete leaves the name
// bound to its ID with no zone (a tombstone), so a rule compiled against
// the name sees "no zone" (Inside false, DistanceM +Inf) and a later Put of
// the same name revives the same ID; an ID is never handed to a different
// name while any rule could still hold it. Purge releases a deleted name's
// ID for reuse by new names; call it only when nothing compiled against
// the name remains (for example after every rule has been recompiled since
// the Delete).
type Set struct {
	tab     atomic.Pointer[zoneTable] // zones by ID; nil while empty
	version atomic.Uint64

	// mu serialises writers and guards the name side.
	mu struct {
		sync.Mutex
		ids    map[string]int // bound names (live or deleted) → ID
		names  []string       // by ID; "" for a free ID
		free   []int          // purged IDs, reused first (last in, first out)
		live   int            // names with a zone
		sorted []string       // live names sorted; nil when stale
	}
}

// zoneTable holds the zones by ID. Its length only grows, by replacing the
// table with a copy of twice the length (the writer then stores into the
// new one only); a slot of a table is changed by an atomic store, so a
// reader holding an older table sees each zone as it was at some moment
// since it loaded the table.
type zoneTable struct {
	z []atomic.Pointer[Zone]
}

// zone returns zone id, or nil.
func (s *Set) zone(id int) *Zone {
	t := s.tab.Load()
	if t == nil || uint(id) >= uint(len(t.z)) {
		return nil
	}
	return t.z[id].Load()
}

// storeLocked sets zone id (nil: none), growing the table to hold id.
func (s *Set) storeLocked(id int, z *Zone) {
	t := s.tab.Load()
	if t == nil || id >= len(t.z) {
		n := &zoneTable{z: make([]atomic.Pointer[Zone], max(16, 2*id+1))}
		if t != nil {
			for i := range t.z {
				n.z[i].Store(t.z[i].Load())
			}
		}
		s.tab.Store(n)
		t = n
	}
	old := t.z[id].Swap(z)
	switch {
	case old == nil && z != nil:
		s.mu.live++
		s.mu.sorted = nil
	case old != nil && z == nil:
		s.mu.live--
		s.mu.sorted = nil
	}
	s.version.Add(1)
}

// idLocked returns name's ID, binding a free or new one if the name has
// none; ok is false when MaxIDs are in use.
func (s *Set) idLocked(name string) (id int, ok bool) {
	if id, ok := s.mu.ids[name]; ok {
		return id, true
	}
	if n := len(s.mu.free); n > 0 {
		id, s.mu.free = s.mu.free[n-1], s.mu.free[:n-1]
	} else {
		if len(s.mu.names) >= MaxIDs {
			return -1, false
		}
		id = len(s.mu.names)
		s.mu.names = append(s.mu.names, "")
	}
	if s.mu.ids == nil {
		s.mu.ids = map[string]int{}
	}
	s.mu.ids[name] = id
	s.mu.names[id] = name
	return id, true
}

// Put stores z under name, replacing any zone of that name, and returns the
// name's ID: its old one if the name was ever put and not purged, else a
// purged ID or a new one. It returns -1 and changes nothing if the name
// fails CheckName, z is nil or MaxIDs IDs are in use; an HTTP handler
// checks the name with CheckName first to report why.
func (s *Set) Put(name string, z *Zone) (id int) {
	if z == nil || CheckName(name) != nil {
		return -1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.idLocked(name)
	if !ok {
		return -1
	}
	s.storeLocked(id, z)
	return id
}

// Delete removes the named zone and reports whether there was one. The
// name keeps its ID (see Set).
func (s *Set) Delete(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.mu.ids[name]
	if !ok || s.zone(id) == nil {
		return false
	}
	s.storeLocked(id, nil)
	return true
}

// Purge releases a deleted name's ID for reuse by other names and reports
// whether it did; it does nothing to a name that has a zone. Only call it
// when no compiled rule still refers to the name.
func (s *Set) Purge(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.mu.ids[name]
	if !ok || s.zone(id) != nil {
		return false
	}
	delete(s.mu.ids, name)
	s.mu.names[id] = ""
	s.mu.free = append(s.mu.free, id)
	s.version.Add(1)
	return true
}

// Get returns the named zone.
func (s *Set) Get(name string) (*Zone, bool) {
	id, ok := s.ZoneID(name)
	if !ok {
		return nil, false
	}
	return s.zone(id), true
}

// ZoneID returns the ID of the named zone, for compiling rules; ok is
// false if there is no such zone (never put, or deleted).
func (s *Set) ZoneID(name string) (id int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.mu.ids[name]; ok && s.zone(id) != nil {
		return id, true
	}
	return 0, false
}

// Zone returns the zone with the given ID, or nil.
func (s *Set) Zone(id int) *Zone { return s.zone(id) }

// Inside reports whether the point is inside zone id (Zone.Contains); it
// is false for an unknown or deleted ID.
func (s *Set) Inside(id int, lat, lon float64) bool {
	z := s.zone(id)
	return z != nil && z.Contains(lat, lon)
}

// DistanceM returns zone id's Zone.DistanceM, or +Inf for an unknown or
// deleted ID.
func (s *Set) DistanceM(id int, lat, lon float64) float64 {
	z := s.zone(id)
	if z == nil {
		return math.Inf(1)
	}
	return z.DistanceM(lat, lon)
}

// Near returns zone id's Zone.Near, or false for an unknown or deleted ID.
func (s *Set) Near(id int, lat, lon, m float64) bool {
	z := s.zone(id)
	return z != nil && z.Near(lat, lon, m)
}

// sortedLocked returns the live names, sorted (shared: do not modify).
func (s *Set) sortedLocked() []string {
	if s.mu.sorted == nil {
		names := make([]string, 0, s.mu.live)
		for id, name := range s.mu.names {
			if name != "" && s.zone(id) != nil {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		s.mu.sorted = names
	}
	return s.mu.sorted
}

// Names returns the names of the zones, sorted. The slice is the caller's.
func (s *Set) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sortedLocked())
}

// ZoneNames is Names, for the rules package's ZoneLister.
func (s *Set) ZoneNames() []string { return s.Names() }

// Len returns the number of zones.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.live
}

// All yields the zones with their names in name order, as they were when
// it was called: changes made while iterating are not seen.
func (s *Set) All() iter.Seq2[string, *Zone] {
	s.mu.Lock()
	names := s.sortedLocked()
	zs := make([]*Zone, len(names))
	for i, name := range names {
		zs[i] = s.zone(s.mu.ids[name])
	}
	s.mu.Unlock()
	return func(yield func(string, *Zone) bool) {
		for i, name := range names {
			if !yield(name, zs[i]) {
				return
			}
		}
	}
}

// Version returns a counter that increases with every change (Put, a
// successful Delete or Purge), so a caller can tell that its cached view is
// stale.
func (s *Set) Version() uint64 { return s.version.Load() }

// check verifies the Set's invariants (for tests): every bound name's ID
// maps back to it, free IDs are unbound and have no zone, the live count
// and the sorted cache match the zones.
func (s *Set) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, id := range s.mu.ids {
		if id < 0 || id >= len(s.mu.names) || s.mu.names[id] != name {
			return fmt.Errorf("fence: name %q bound to ID %d, which names %q", name, id, s.mu.names[id])
		}
	}
	live := 0
	for id, name := range s.mu.names {
		z := s.zone(id)
		if name == "" && z != nil {
			return fmt.Errorf("fence: free ID %d has a zone", id)
		}
		if name != "" && s.mu.ids[name] != id {
			return fmt.Errorf("fence: ID %d names %q, bound to %d", id, name, s.mu.ids[name])
		}
		if z != nil {
			live++
		}
	}
	for _, id := range s.mu.free {
		if s.mu.names[id] != "" {
			return fmt.Errorf("fence: free ID %d names %q", id, s.mu.names[id])
		}
	}
	if t := s.tab.Load(); t != nil {
		for id := len(s.mu.names); id < len(t.z); id++ {
			if t.z[id].Load() != nil {
				return fmt.Errorf("fence: unbound ID %d has a zone", id)
			}
		}
	}
	if live != s.mu.live {
		return fmt.Errorf("fence: %d live zones, counted %d", live, s.mu.live)
	}
	if s.mu.sorted != nil && len(s.mu.sorted) != live {
		return fmt.Errorf("fence: sorted cache has %d names, %d live", len(s.mu.sorted), live)
	}
	return nil
}

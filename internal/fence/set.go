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
// concurrent use: readers load an immutable snapshot through one atomic
// pointer and never lock or allocate; writers serialise on a mutex and
// publish a modified copy (copy-on-write, O(zones) a write). The zero
// value is an empty Set.
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
	// mu serialises writers (Put, Delete, Purge); readers do not take it.
	mu  sync.Mutex
	cur atomic.Pointer[setState]
}

// setState is one immutable snapshot of a Set.
type setState struct {
	version uint64
	zones   []*Zone        // by ID; nil for a deleted name or a free ID
	names   []string       // by ID; "" for a free ID
	ids     map[string]int // bound names (live or deleted) → ID
	free    []int          // purged IDs, reused first (last in, first out)
	live    []string       // names with a zone, sorted
}

var emptyState = &setState{ids: map[string]int{}}

func (s *Set) load() *setState {
	if st := s.cur.Load(); st != nil {
		return st
	}
	return emptyState
}

// clone copies st for modification.
func (st *setState) clone() *setState {
	n := &setState{
		version: st.version + 1,
		zones:   slices.Clone(st.zones),
		names:   slices.Clone(st.names),
		ids:     make(map[string]int, len(st.ids)+1),
		free:    slices.Clone(st.free),
	}
	for k, v := range st.ids {
		n.ids[k] = v
	}
	return n
}

// finish recomputes the sorted live names.
func (st *setState) finish() *setState {
	st.live = st.live[:0]
	for id, z := range st.zones {
		if z != nil {
			st.live = append(st.live, st.names[id])
		}
	}
	slices.Sort(st.live)
	return st
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
	old := s.load()
	id, ok := old.ids[name]
	if !ok && len(old.free) == 0 && len(old.zones) >= MaxIDs {
		return -1
	}
	st := old.clone()
	if !ok {
		if n := len(st.free); n > 0 {
			id, st.free = st.free[n-1], st.free[:n-1]
		} else {
			id = len(st.zones)
			st.zones = append(st.zones, nil)
			st.names = append(st.names, "")
		}
		st.ids[name] = id
		st.names[id] = name
	}
	st.zones[id] = z
	s.cur.Store(st.finish())
	return id
}

// Delete removes the named zone and reports whether there was one. The
// name keeps its ID (see Set).
func (s *Set) Delete(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.load()
	id, ok := old.ids[name]
	if !ok || old.zones[id] == nil {
		return false
	}
	st := old.clone()
	st.zones[id] = nil
	s.cur.Store(st.finish())
	return true
}

// Purge releases a deleted name's ID for reuse by other names and reports
// whether it did; it does nothing to a name that has a zone. Only call it
// when no compiled rule still refers to the name.
func (s *Set) Purge(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.load()
	id, ok := old.ids[name]
	if !ok || old.zones[id] != nil {
		return false
	}
	st := old.clone()
	delete(st.ids, name)
	st.names[id] = ""
	st.free = append(st.free, id)
	s.cur.Store(st.finish())
	return true
}

// Get returns the named zone.
func (s *Set) Get(name string) (*Zone, bool) {
	st := s.load()
	if id, ok := st.ids[name]; ok && st.zones[id] != nil {
		return st.zones[id], true
	}
	return nil, false
}

// ZoneID returns the ID of the named zone, for compiling rules; ok is
// false if there is no such zone (never put, or deleted).
func (s *Set) ZoneID(name string) (id int, ok bool) {
	st := s.load()
	if id, ok := st.ids[name]; ok && st.zones[id] != nil {
		return id, true
	}
	return 0, false
}

// Zone returns the zone with the given ID, or nil.
func (s *Set) Zone(id int) *Zone {
	st := s.load()
	if uint(id) >= uint(len(st.zones)) {
		return nil
	}
	return st.zones[id]
}

// Inside reports whether the point is inside zone id (Zone.Contains); it
// is false for an unknown or deleted ID.
func (s *Set) Inside(id int, lat, lon float64) bool {
	st := s.load()
	if uint(id) >= uint(len(st.zones)) || st.zones[id] == nil {
		return false
	}
	return st.zones[id].Contains(lat, lon)
}

// DistanceM returns zone id's Zone.DistanceM, or +Inf for an unknown or
// deleted ID.
func (s *Set) DistanceM(id int, lat, lon float64) float64 {
	st := s.load()
	if uint(id) >= uint(len(st.zones)) || st.zones[id] == nil {
		return math.Inf(1)
	}
	return st.zones[id].DistanceM(lat, lon)
}

// Near returns zone id's Zone.Near, or false for an unknown or deleted ID.
func (s *Set) Near(id int, lat, lon, m float64) bool {
	st := s.load()
	if uint(id) >= uint(len(st.zones)) || st.zones[id] == nil {
		return false
	}
	return st.zones[id].Near(lat, lon, m)
}

// Names returns the names of the zones, sorted. The slice is the caller's.
func (s *Set) Names() []string { return slices.Clone(s.load().live) }

// ZoneNames is Names, for the rules package's ZoneLister.
func (s *Set) ZoneNames() []string { return s.Names() }

// Len returns the number of zones.
func (s *Set) Len() int { return len(s.load().live) }

// All yields the zones with their names in name order, from one snapshot:
// changes made while iterating are not seen.
func (s *Set) All() iter.Seq2[string, *Zone] {
	st := s.load()
	return func(yield func(string, *Zone) bool) {
		for _, name := range st.live {
			if !yield(name, st.zones[st.ids[name]]) {
				return
			}
		}
	}
}

// Version returns a counter that increases with every change (Put, a
// successful Delete or Purge), so a caller can tell that its cached view is
// stale.
func (s *Set) Version() uint64 { return s.load().version }

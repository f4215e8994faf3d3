package fence

// PutMany stores zs[i] under names[i] for every i, as that many Puts
// would (a later name replaces an earlier one that is the same), and
// publishes one new snapshot for all of them: O(zones + len(names)) in
// all, where Puts cost O(zones) each. It returns the names' IDs, or nil
// and changes nothing if the slices differ in length, a name fails
// CheckName, a zone is nil, or MaxIDs IDs would be in use.
func (s *Set) PutMany(names []string, zs []*Zone) []int {
	if len(names) != len(zs) {
		return nil
	}
	for i, name := range names {
		if zs[i] == nil || CheckName(name) != nil {
			return nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.load()
	st := old.clone()
	ids := make([]int, len(names))
	for i, name := range names {
		id, ok := st.ids[name]
		if !ok {
			if n := len(st.free); n > 0 {
				id, st.free = st.free[n-1], st.free[:n-1]
			} else {
				if len(st.zones) >= MaxIDs {
					return nil // st is discarded: nothing changed
				}
				id = len(st.zones)
				st.zones = append(st.zones, nil)
				st.names = append(st.names, "")
			}
			st.ids[name] = id
			st.names[id] = name
		}
		st.zones[id] = zs[i]
		ids[i] = id
	}
	s.cur.Store(st.finish())
	return ids
}

package fence

// PutMany stores zs[i] under names[i] for every i, as that many Puts
// would (a later name replaces an earlier one that is the same), under
// one lock: O(len(names)). Readers by ID may see the zones appear one by
// one; a caller that needs them seen together holds its own lock across
// the call (the alert evaluator loads its configuration before it
// evaluates anything). It returns the names' IDs, or nil and changes
// nothing if the slices differ in length, a name fails CheckName, a zone
// is nil, or MaxIDs IDs would be in use.
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
	// Count the IDs the new names need before binding any.
	need := 0
	seen := make(map[string]struct{}, len(names))
	for _, name := range names {
		if _, ok := s.mu.ids[name]; ok {
			continue
		}
		if _, ok := seen[name]; !ok {
			seen[name] = struct{}{}
			need++
		}
	}
	if need > len(s.mu.free)+MaxIDs-len(s.mu.names) {
		return nil
	}
	ids := make([]int, len(names))
	for i, name := range names {
		id, ok := s.idLocked(name)
		if !ok {
			panic("BUG: fence: PutMany ran out of IDs it counted")
		}
		s.storeLocked(id, zs[i])
		ids[i] = id
	}
	return ids
}

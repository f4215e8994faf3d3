package alert

import "slices"

// Firing lists the alerts firing now, sorted by rule name then truck ID.
// Since is when the condition became true, TS/Lat/Lon the update that
// fired it. It takes each stripe's lock in turn, so it is a consistent
// view of each truck, not of the whole fleet at one instant.
func (e *Engine) Firing() []Alert {
	sn := e.snap.Load()
	var out []Alert
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		for ri := range s.mu.recs {
			rec := &s.mu.recs[ri]
			if rec.idLen == 0 || int(rec.slot) >= len(sn.bySlot) {
				continue
			}
			r := sn.bySlot[rec.slot]
			if r == nil || r.gen != rec.gen {
				continue // its rule is being deleted
			}
			out = append(out, s.recAlertLocked(rec, r.name, severities[r.severity], StateFiring, ""))
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Alert) int {
		if c := cmpString(a.Rule, b.Rule); c != 0 {
			return c
		}
		return cmpString(a.ID, b.ID)
	})
	return out
}

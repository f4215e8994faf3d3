package alert

import (
	"cmp"
	"container/heap"
	"slices"
)

// Firing lists every alert firing now, sorted by rule name then truck ID.
// Since is when the condition became true, TS/Lat/Lon the update that
// fired it. It takes each stripe's lock in turn, so it is a consistent
// view of each truck, not of the whole fleet at one instant. Its result
// grows with the number firing: serve clients through FiringPage.
func (e *Evaluator) Firing() []Alert {
	page, _ := e.FiringPage(FiringQuery{})
	return page
}

// FiringQuery selects firing alerts for FiringPage.
type FiringQuery struct {
	Rule string // only this rule's alerts; "" for every rule
	ID   string // only this truck's alerts; "" for every truck
	// Limit bounds the page: the first Limit matching alerts in Firing's
	// order. 0 means no limit.
	Limit int
}

// FiringPage returns the first q.Limit alerts firing now that match q, in
// Firing's order, and how many match in all. However many alerts fire,
// it holds at most q.Limit of them (a bounded heap over one pass of the
// firing records), so a dashboard polling it costs memory in proportion
// to what it shows. With q.ID it reads only that truck's stripe.
func (e *Evaluator) FiringPage(q FiringQuery) (page []Alert, total int) {
	e.evalMu.RLock()
	defer e.evalMu.RUnlock()
	sn := e.idx
	stripes := e.stripes[:]
	if q.ID != "" {
		k := truckKey([]byte(q.ID))
		stripes = e.stripes[k%numStripes : k%numStripes+1]
	}
	var h firstAlerts
	for i := range stripes {
		s := &stripes[i]
		s.mu.Lock()
		for ri := range s.mu.recs {
			rec := &s.mu.recs[ri]
			if rec.key == 0 || int(rec.ref.slot()) >= len(sn.bySlot) {
				continue
			}
			r := sn.bySlot[rec.ref.slot()]
			if r == nil || r.ref() != rec.ref {
				continue // its rule is being deleted
			}
			if q.Rule != "" && r.name != q.Rule {
				continue
			}
			id := s.recIDLocked(rec)
			if q.ID != "" && string(id) != q.ID {
				continue
			}
			total++
			if q.Limit > 0 && len(h) == q.Limit {
				// Full: keep it only if it sorts before the last kept.
				last := &h[0]
				if c := cmp.Compare(r.name, last.Rule); c > 0 || c == 0 && string(id) >= last.ID {
					continue
				}
				h[0] = s.recAlertLocked(rec, r.name, severities[r.severity], StateFiring, "")
				heap.Fix(&h, 0)
				continue
			}
			a := s.recAlertLocked(rec, r.name, severities[r.severity], StateFiring, "")
			if q.Limit > 0 {
				heap.Push(&h, a)
			} else {
				h = append(h, a)
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(h, compareAlerts)
	return h, total
}

// compareAlerts orders alerts by rule name, then truck ID.
func compareAlerts(a, b Alert) int {
	if c := cmp.Compare(a.Rule, b.Rule); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// firstAlerts is a max-heap in compareAlerts order: the root is the last
// of the alerts kept, the first to give way.
type firstAlerts []Alert

func (h firstAlerts) Len() int           { return len(h) }
func (h firstAlerts) Less(i, j int) bool { return compareAlerts(h[i], h[j]) > 0 }
func (h firstAlerts) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *firstAlerts) Push(x any)        { *h = append(*h, x.(Alert)) }
func (h *firstAlerts) Pop() any {
	old := *h
	a := old[len(old)-1]
	*h = old[:len(old)-1]
	return a
}

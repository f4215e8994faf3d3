package alert

import (
	"runtime"
	"sync"
	"unsafe"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/rules"
	"github.com/fleetd/fleetd/internal/store"
)

// parallelMin is the smallest share of a batch worth a goroutine of its
// own: below it the start-up and join cost more than they save.
const parallelMin = 2048

// scratch is one goroutine's working memory for evaluating updates.
type scratch struct {
	trues []int32 // indices into snapshot.rules of the rules true for the update
	pairs []pair  // a truck's pairs, loaded and rewritten
	out   []Alert // transitions to emit once every lock is released
	ids   []byte  // the current block of idString; never truncated
	evals uint64  // Program.Eval calls
	seen  []uint32
	stamp uint32
}

func (e *Engine) getScratch() *scratch {
	if sc, ok := e.scratch.Get().(*scratch); ok {
		return sc
	}
	return &scratch{}
}

func (e *Engine) putScratch(sc *scratch) {
	clear(sc.out) // drop the strings
	if cap(sc.out) > 1<<14 {
		sc.out = nil
	}
	sc.out = sc.out[:0]
	e.scratch.Put(sc)
}

// Applied evaluates the rules on every update of b that changed the
// store (engine.Observer). With no rules it costs one atomic load. A large
// batch is split over up to GOMAXPROCS goroutines, as the store splits
// its own work, so the rules keep pace with a parallel apply.
func (e *Engine) Applied(b *engine.Batch) {
	if len(e.snap.Load().rules) == 0 {
		return
	}
	e.evalMu.RLock()
	sn := e.snap.Load()
	n := len(b.Updates)
	workers := min(runtime.GOMAXPROCS(0), n/parallelMin)
	var scs []*scratch
	if workers <= 1 {
		sc := e.getScratch()
		e.evalRange(sn, b, 0, n, sc)
		scs = append(scs, sc)
	} else {
		scs = make([]*scratch, workers)
		var wg sync.WaitGroup
		for w := range workers {
			sc := e.getScratch()
			scs[w] = sc
			lo, hi := n*w/workers, n*(w+1)/workers
			wg.Go(func() { e.evalRange(sn, b, lo, hi, sc) })
		}
		wg.Wait()
	}
	e.evalMu.RUnlock()
	for _, sc := range scs {
		e.evals.Add(sc.evals)
		sc.evals = 0
		e.emit(sc.out)
		e.putScratch(sc)
	}
}

// evalRange evaluates b.Updates[lo:hi].
func (e *Engine) evalRange(sn *snapshot, b *engine.Batch, lo, hi int, sc *scratch) {
	var in rules.Input
	var changed int64
	for i := lo; i < hi; i++ {
		if !b.Changed[i] {
			continue
		}
		changed++
		u := &b.Updates[i]
		setState(&in.State, &u.Position)
		in.HasPrev = b.HadPrev[i]
		if in.HasPrev {
			setState(&in.Prev, &b.Prev[i])
		} else {
			in.Prev = rules.State{}
		}
		e.evalUpdate(sn, &in, sc)
		k := truckKey(u.ID)
		s := &e.stripes[k%numStripes]
		if len(sc.trues) == 0 && !s.mayHave(k) {
			continue // nothing true, nothing to resolve
		}
		s.mu.Lock()
		sc.out = e.transitionLocked(sn, s, k, u.ID, u.Position, sc)
		s.mu.Unlock()
	}
	e.updates.Add(changed)
}

// setState converts a stored position into what rules read.
func setState(s *rules.State, p *store.Position) {
	*s = rules.State{Lat: p.LatDeg(), Lon: p.LonDeg(), Speed: p.SpeedKmh(), Heading: float64(p.Heading), TS: int64(p.TS)}
}

// evalUpdate sets sc.trues to the indices of the rules true for in; see
// snapshot for how the candidates are found.
func (e *Engine) evalUpdate(sn *snapshot, in *rules.Input, sc *scratch) {
	zt := sn.zones
	n := uint64(0)
	trues := sc.trues[:0]
	// seen[i] == stamp marks rule i evaluated for this update.
	if len(sc.seen) < len(sn.rules) {
		sc.seen = make([]uint32, len(sn.rules))
	}
	sc.stamp++
	if sc.stamp == 0 {
		clear(sc.seen)
		sc.stamp = 1
	}
	seen, stamp := sc.seen, sc.stamp
	var vals fieldVals
	vals.set(in)
	for _, i := range sn.always {
		n++
		if sn.rules[i].prog.Eval(in, zt) {
			trues = append(trues, i)
		}
	}
	for gi := range sn.groups {
		g := &sn.groups[gi]
		v := vals[g.field]
		consts := sn.groupConst[g.start:g.end]
		idx := sn.groupRule[g.start:g.end]
		for j, c := range consts {
			var ok bool
			switch g.op {
			case opGT:
				ok = v > c
			case opGE:
				ok = v >= c
			case opLT:
				ok = v < c
			case opLE:
				ok = v <= c
			case opEQ:
				if v > c {
					continue // ascending: a later constant may be equal
				}
				ok = v == c
			}
			if !ok {
				break
			}
			ri := idx[j]
			r := sn.rules[ri]
			if r.multi {
				// Listed in several groups: evaluate it once.
				if seen[ri] == stamp {
					continue
				}
				seen[ri] = stamp
			} else if len(r.rest.all) > 0 && !r.rest.holdAll(&vals) {
				continue
			}
			n++
			if r.prog.Eval(in, zt) {
				trues = append(trues, ri)
			}
		}
	}
	for _, i := range sn.cellRulesAt(in.Lat, in.Lon) {
		r := sn.rules[i]
		if !sn.reach[i].contains(in.Lat, in.Lon) || len(r.g.all) > 0 && !r.g.holdAll(&vals) {
			continue
		}
		n++
		if r.prog.Eval(in, zt) {
			trues = append(trues, i)
		}
	}
	sc.evals += n
	sc.trues = trues
}

// transitionLocked applies the rule results in sc.trues to the truck's
// pairs and appends the transitions to sc.out. The caller holds s.mu.
func (e *Engine) transitionLocked(sn *snapshot, s *stripe, k uint64, id []byte, pos store.Position, sc *scratch) []Alert {
	out := sc.out
	ps, head := s.loadLocked(k, sc.pairs[:0])
	if head == 0 && len(sc.trues) == 0 {
		return out
	}
	ts := pos.TS
	kept := ps[:0]
	var fired, resolved int64
	dirty := false // kept differs from ps
	for _, p := range ps {
		var r *liveRule
		if int(p.slot) < len(sn.bySlot) {
			r = sn.bySlot[p.slot]
		}
		if r == nil || r.gen != p.gen {
			// A rule deleted since: freeRule, running now, removes the
			// pair and resolves its alert.
			kept = append(kept, p)
			continue
		}
		t := -1
		for j, ri := range sc.trues {
			if ri >= 0 && sn.rules[ri] == r {
				t = j
				break
			}
		}
		if t < 0 {
			// False now: the run ends.
			dirty = true
			if p.rec != 0 {
				s.dropFiringLocked(&p)
				out = append(out, sc.transition(r, id, StateResolved, p.since, pos))
				resolved++
			}
			continue
		}
		// Still true: fire once it has been true long enough.
		sc.trues[t] = -1
		if p.rec == 0 && ts >= p.since && ts-p.since >= r.forSec {
			dirty = true
			s.addFiringLocked(k, &p, id, pos)
			out = append(out, sc.transition(r, id, StateFiring, p.since, pos))
			fired++
		}
		kept = append(kept, p)
	}
	for _, ri := range sc.trues {
		if ri < 0 {
			continue
		}
		r := sn.rules[ri]
		dirty = true
		p := pair{since: ts, slot: r.slot, gen: r.gen}
		if r.forSec == 0 {
			s.addFiringLocked(k, &p, id, pos)
			out = append(out, sc.transition(r, id, StateFiring, p.since, pos))
			fired++
		}
		kept = append(kept, p)
	}
	if dirty {
		s.storeLocked(k, head, kept)
	}
	sc.pairs = ps[:0]
	if fired != 0 {
		e.fired.Add(uint64(fired))
	}
	if resolved != 0 {
		e.resolved.Add(uint64(resolved))
	}
	if fired != resolved {
		e.firingNow.Add(fired - resolved)
	}
	return out
}

// transition makes an Alert; see idString for its ID.
func (sc *scratch) transition(r *liveRule, id []byte, state string, since uint32, pos store.Position) Alert {
	return Alert{Rule: r.name, ID: sc.idString(id), State: state, Severity: severities[r.severity],
		Since: since, TS: pos.TS, Lat: pos.Lat, Lon: pos.Lon}
}

// idString returns id as a string carved from a block of memory shared by
// the call's transitions, so that a batch that fires thousands of alerts
// allocates a few blocks rather than one string each.
func (sc *scratch) idString(id []byte) string {
	if len(sc.ids)+len(id) > cap(sc.ids) {
		sc.ids = make([]byte, 0, max(idBlock, len(id)))
	}
	off := len(sc.ids)
	sc.ids = append(sc.ids, id...)
	// SAFETY: the bytes at sc.ids[off:off+len(id)] are written once, just
	// above, and never again: later appends go past them, and a full block
	// is replaced by a new one, never reused or reset (sc.ids is not
	// truncated anywhere). So the string is immutable for as long as it is
	// reachable, which is what unsafe.String requires.
	return unsafe.String(&sc.ids[off], len(id))
}

// idBlock is the size of the blocks idString carves IDs from.
const idBlock = 4096

// Removed forgets a deleted or expired truck (engine.Observer): its pairs
// in every rule are freed and each of its firing alerts is resolved, with
// Reason "truck deleted" or "truck expired" and the truck's last position.
func (e *Engine) Removed(id []byte, p store.Position, why engine.Removal) {
	if len(e.snap.Load().rules) == 0 {
		return
	}
	reason := "truck deleted"
	if why == engine.Expired {
		reason = "truck expired"
	}
	e.evalMu.RLock()
	sn := e.snap.Load()
	sc := e.getScratch()
	k := truckKey(id)
	s := &e.stripes[k%numStripes]
	s.mu.Lock()
	ps, head := s.loadLocked(k, sc.pairs[:0])
	var resolved int64
	if head != 0 {
		kept := ps[:0]
		for _, q := range ps {
			var r *liveRule
			if int(q.slot) < len(sn.bySlot) {
				r = sn.bySlot[q.slot]
			}
			if r == nil || r.gen != q.gen {
				kept = append(kept, q) // a deleted rule's: freeRule resolves it
				continue
			}
			if q.rec == 0 {
				continue
			}
			s.dropFiringLocked(&q)
			a := sc.transition(r, id, StateResolved, q.since, p)
			a.Reason = reason
			sc.out = append(sc.out, a)
			resolved++
		}
		s.storeLocked(k, head, kept)
	}
	s.mu.Unlock()
	e.evalMu.RUnlock()
	sc.pairs = ps[:0]
	if resolved != 0 {
		e.resolved.Add(uint64(resolved))
		e.firingNow.Add(-resolved)
	}
	e.emit(sc.out)
	e.putScratch(sc)
}

// emit hands transitions to Options.Emit.
func (e *Engine) emit(as []Alert) {
	if e.opts.Emit == nil {
		return
	}
	for _, a := range as {
		e.opts.Emit(a)
	}
}

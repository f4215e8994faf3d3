package alert

import (
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/rules"
)

// parallelMin is the smallest share of a batch worth a goroutine of its
// own: below it the start-up and join cost more than they save.
const parallelMin = 2048

// scratch is one goroutine's working memory for evaluating updates.
type scratch struct {
	trues []int32 // slots of the rules true for the update
	pairs []pair  // a truck's pairs, loaded and rewritten
	out   []Alert // transitions to emit once every lock is released
	ids   []byte  // the current block of idString; never truncated
	evals uint64  // Program.Eval calls
	// Transitions counted by transitionLocked, added to the Evaluator's
	// counters once per Applied: workers of one batch adding to shared
	// atomics on every transition would pass their cache line back and
	// forth.
	fired, resolved int64
	shed            uint64   // new pairs not tracked: the stripe's share of MaxPairs in use
	touch           uint32   // sink of evalRange's prefetching loads
	mark            []uint32 // by slot: == stamp while true and unclaimed (transitionLocked)

	// Per update (begin): seen[i] == stamp marks rule i tried, tAt[t] ==
	// stamp marks tv[t] as term t's value.
	seen  []uint32
	tAt   []uint32
	tv    []float64
	stamp uint32
}

func (e *Evaluator) getScratch() *scratch {
	if sc, ok := e.scratch.Get().(*scratch); ok {
		return sc
	}
	return &scratch{}
}

func (e *Evaluator) putScratch(sc *scratch) {
	clear(sc.out) // drop the strings
	if cap(sc.out) > 1<<14 {
		sc.out = nil
	}
	sc.out = sc.out[:0]
	e.scratch.Put(sc)
}

// Applied evaluates the rules on every update of b that changed the
// store (fleet.Observer). With no rules it costs one atomic load. A large
// batch is split over up to GOMAXPROCS goroutines, as the store splits
// its own work, so the rules keep pace with a parallel apply.
func (e *Evaluator) Applied(b *fleet.Batch) {
	if e.nRules.Load() == 0 {
		return
	}
	e.evalMu.RLock()
	sn := e.idx
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
	emitted := false
	for _, sc := range scs {
		e.evals.Add(sc.evals)
		if sc.fired != 0 {
			e.fired.Add(uint64(sc.fired))
		}
		if sc.resolved != 0 {
			e.resolved.Add(uint64(sc.resolved))
		}
		if sc.fired != sc.resolved {
			e.firingNow.Add(sc.fired - sc.resolved)
		}
		if sc.shed != 0 {
			e.shedPairs(sc.shed)
		}
		sc.evals, sc.fired, sc.resolved, sc.shed = 0, 0, 0, 0
		emitted = e.emit(sc.out) || emitted
		e.putScratch(sc)
	}
	if emitted {
		e.sync()
	}
}

// evalRange evaluates b.Updates[lo:hi].
//
// It works in chunks of prefetchChunk updates: first it hashes their IDs,
// then loads their filter counters and the table entries where the trucks
// would be (stripe.prefetch; for every truck, not only those whose
// counter is set: a branch on a load that misses would wait for it), then
// evaluates them one by one. The loads of a chunk are independent, so the
// CPU overlaps their cache misses instead of waiting for each in turn
// (profiled before: the counter load was 8% of BenchmarkApplied, the
// table lookup 15%). What is read ahead is only a prefetch: the decision
// reads the counter again, because an earlier update of the same truck in
// the chunk may have given it pairs, and the lookup takes the lock.
func (e *Evaluator) evalRange(sn *ruleIndex, b *fleet.Batch, lo, hi int, sc *scratch) {
	var in rules.Input
	var changed int64
	var keys [prefetchChunk]uint64
	for c := lo; c < hi; c += prefetchChunk {
		end := min(c+prefetchChunk, hi)
		for i := c; i < end; i++ {
			keys[i-c] = 0
			if b.Changed[i] {
				keys[i-c] = truckKey(b.Updates[i].ID)
			}
		}
		// A tight loop, so that all the chunk's loads are in flight at once.
		var touch uint32
		for _, k := range keys[:end-c] {
			s := &e.stripes[k%numStripes]
			touch |= s.hasWord(k) | uint32(s.prefetch(k))
		}
		sc.touch += touch // keep the loads
		for i := c; i < end; i++ {
			if !b.Changed[i] {
				continue
			}
			changed++
			u := &b.Updates[i]
			in.State.Set(&u.Position)
			in.HasPrev = b.HadPrev[i]
			if in.HasPrev {
				in.Prev.Set(&b.Prev[i])
			} else {
				in.Prev = rules.State{}
			}
			e.evalUpdate(sn, &in, sc)
			k := keys[i-c]
			s := &e.stripes[k%numStripes]
			if len(sc.trues) == 0 && !s.mayHave(k) {
				continue // nothing true, nothing to resolve
			}
			s.mu.Lock()
			sc.out = e.transitionLocked(sn, s, k, u.ID, u.Position, sc)
			s.mu.Unlock()
		}
	}
	e.updates.Add(changed)
}

// prefetchChunk is how many updates evalRange looks ahead.
const prefetchChunk = 32

// evalUpdate sets sc.trues to the indices of the rules true for in; see
// ruleIndex for how the candidates are found.
func (e *Evaluator) evalUpdate(sn *ruleIndex, in *rules.Input, sc *scratch) {
	sc.begin(sn, in)
	sc.trues = sc.trues[:0]
	for _, i := range sn.always {
		sc.try(sn, in, i)
	}
	for gi := range sn.heads {
		g := &sn.heads[gi]
		if g.term >= numFast && sc.tAt[g.term] != sc.stamp { // see termVal
			sc.termVal(sn, in, g.term)
		}
		v := sc.tv[g.term]
		// Most groups stop at their first rule: test it without the
		// walk's bookkeeping.
		var enter bool
		switch g.op {
		case rules.GT:
			enter = v > g.first
		case rules.GE, rules.EQ: // EQ ascending: none equal below the first
			enter = v >= g.first
		case rules.LT:
			enter = v < g.first
		case rules.LE:
			enter = v <= g.first
		}
		if !enter {
			continue
		}
		grp := &sn.groups[gi]
		idx := grp.rules
		for j, c := range grp.consts {
			var ok bool
			switch g.op {
			case rules.GT:
				ok = v > c
			case rules.GE:
				ok = v >= c
			case rules.LT:
				ok = v < c
			case rules.LE:
				ok = v <= c
			case rules.EQ:
				if v > c {
					continue // ascending: a later constant may be equal
				}
				ok = v == c
			}
			if !ok {
				break
			}
			ri := idx[j]
			if sn.evals[ri].multi {
				// Listed in several groups: try it once.
				if sc.seen[ri] == sc.stamp {
					continue
				}
				sc.seen[ri] = sc.stamp
			}
			sc.try(sn, in, ri)
		}
	}
	for _, i := range sn.cellRulesAt(in.Lat, in.Lon) {
		if sn.reach[i].contains(in.Lat, in.Lon) {
			sc.try(sn, in, i)
		}
	}
}

// begin readies sc for evaluating the rules of sn on in: a new stamp for
// seen and the term values, and the fast fields' values.
func (sc *scratch) begin(sn *ruleIndex, in *rules.Input) {
	if len(sc.seen) < len(sn.bySlot) {
		sc.seen = make([]uint32, len(sn.bySlot))
	}
	if n := max(len(sn.terms), rules.NumFastFields); len(sc.tAt) < n {
		sc.tAt = make([]uint32, n)
		sc.tv = make([]float64, n)
	}
	sc.stamp++
	if sc.stamp == 0 {
		clear(sc.seen)
		clear(sc.tAt)
		clear(sc.mark)
		sc.stamp = 1
	}
	rules.FastFields(in, (*[rules.NumFastFields]float64)(sc.tv))
}

// The value of term t for the current update is sc.tv[t]: begin sets the
// fast fields' (t < rules.NumFastFields), termVal computes the others on
// first use, marking them with sc.tAt[t] = sc.stamp.
func (sc *scratch) termVal(sn *ruleIndex, in *rules.Input, t uint32) {
	sc.tv[t] = sn.terms[t].Eval(in)
	sc.tAt[t] = sc.stamp
}

// try appends rule i to sc.trues if it is true for the current update,
// given that its key clause (if any) holds: its other clauses are checked
// first, and if they decide (exact), the rule is not evaluated.
func (sc *scratch) try(sn *ruleIndex, in *rules.Input, i int32) {
	ev := &sn.evals[i]
	for _, cl := range sn.clauses[ev.rest0:ev.rest1] {
		one := false
		for k := cl.start; k < cl.end; k++ {
			c := &sn.conds[k]
			if c.term >= numFast && sc.tAt[c.term] != sc.stamp { // see termVal
				sc.termVal(sn, in, c.term)
			}
			if c.holds(sc.tv[c.term]) {
				one = true
				break
			}
		}
		if !one {
			return
		}
	}
	if !ev.exact {
		sc.evals++
		if !ev.prog.Eval(in, sn.zones) {
			return
		}
	}
	sc.trues = append(sc.trues, i)
}

// transitionLocked applies the rule results in sc.trues to the truck's
// pairs and appends the transitions to sc.out. The caller holds s.mu, and
// evaluated the update with sc (evalUpdate) just before.
//
// Pairs and trues are matched by rule index in O(pairs + trues): mark
// holds the current stamp for each rule true now, cleared once a pair
// claims it. In the steady state, where the truck's rules stay true and
// already fire, nothing is written.
func (e *Evaluator) transitionLocked(sn *ruleIndex, s *stripe, k uint64, id []byte, pos fleet.Position, sc *scratch) []Alert {
	out := sc.out
	ps, at := s.loadLocked(k, sc.pairs[:0])
	if at < 0 && len(sc.trues) == 0 {
		return out
	}
	if len(sc.mark) < len(sn.bySlot) {
		sc.mark = make([]uint32, len(sn.bySlot))
	}
	stamp := sc.stamp
	for _, ri := range sc.trues {
		sc.mark[ri] = stamp
	}
	ts := pos.TS
	kept := ps[:0]
	var fired, resolved int64
	dirty := false // kept differs from ps
	for _, p := range ps {
		ri := sn.ruleOf(p)
		if ri < 0 {
			// A rule deleted since: freeRule, running now, removes the
			// pair and resolves its alert.
			kept = append(kept, p)
			continue
		}
		r := sn.bySlot[ri]
		if sc.mark[ri] != stamp {
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
		sc.mark[ri] = 0
		if p.rec == 0 && ts >= p.since && ts-p.since >= r.forSec {
			dirty = true
			s.addFiringLocked(k, &p, id, pos)
			out = append(out, sc.transition(r, id, StateFiring, p.since, pos))
			fired++
		}
		kept = append(kept, p)
	}
	room := e.stripePairs - s.mu.pairs + len(ps) - len(kept)
	for _, ri := range sc.trues {
		if sc.mark[ri] != stamp {
			continue // an existing pair's
		}
		if room <= 0 {
			sc.shed++
			continue
		}
		room--
		r := sn.bySlot[ri]
		dirty = true
		p := pair{since: ts, ref: r.ref()}
		if r.forSec == 0 {
			s.addFiringLocked(k, &p, id, pos)
			out = append(out, sc.transition(r, id, StateFiring, p.since, pos))
			fired++
		}
		kept = append(kept, p)
	}
	if dirty {
		s.storeLocked(k, at, kept)
	}
	sc.pairs = ps[:0]
	sc.fired += fired
	sc.resolved += resolved
	return out
}

// transition makes an Alert; see idString for its ID.
func (sc *scratch) transition(r *liveRule, id []byte, state string, since uint32, pos fleet.Position) Alert {
	return Alert{Rule: r.name, ID: sc.idString(id), State: state, Severity: severities[r.severity],
		Since: since, TS: pos.TS, Lat: pos.Lat, Lon: pos.Lon, Zone: r.zone}
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

// Removed forgets a deleted or expired truck (fleet.Observer): its pairs
// in every rule are freed and each of its firing alerts is resolved, with
// Reason "truck deleted" or "truck expired" and the truck's last position.
func (e *Evaluator) Removed(id []byte, p fleet.Position, why fleet.Removal) {
	if e.nRules.Load() == 0 {
		return
	}
	reason := "truck deleted"
	if why == fleet.Expired {
		reason = "truck expired"
	}
	e.evalMu.RLock()
	sn := e.idx
	sc := e.getScratch()
	k := truckKey(id)
	s := &e.stripes[k%numStripes]
	s.mu.Lock()
	ps, at := s.loadLocked(k, sc.pairs[:0])
	var resolved int64
	if at >= 0 {
		kept := ps[:0]
		for _, q := range ps {
			ri := sn.ruleOf(q)
			if ri < 0 {
				kept = append(kept, q) // a deleted rule's: freeRule resolves it
				continue
			}
			r := sn.bySlot[ri]
			if q.rec == 0 {
				continue
			}
			s.dropFiringLocked(&q)
			a := sc.transition(r, id, StateResolved, q.since, p)
			a.Reason = reason
			sc.out = append(sc.out, a)
			resolved++
		}
		s.storeLocked(k, at, kept)
	}
	s.mu.Unlock()
	e.evalMu.RUnlock()
	sc.pairs = ps[:0]
	if resolved != 0 {
		e.resolved.Add(uint64(resolved))
		e.firingNow.Add(-resolved)
	}
	// An expiry answers no one (the sweep would wait for an fsync a
	// truck); a client's DELETE is answered after its events are durable.
	if e.emit(sc.out) && why != fleet.Expired {
		e.sync()
	}
	e.putScratch(sc)
}

// shedPairs counts n rule results not tracked for want of room and logs
// it at most once a minute.
func (e *Evaluator) shedPairs(n uint64) {
	total := e.pairsShed.Add(n)
	now := time.Now().UnixNano()
	last := e.shedLog.Load()
	if now-last >= int64(time.Minute) && e.shedLog.CompareAndSwap(last, now) {
		e.opts.Logger.Warn("alert: rule state full: rules true for trucks are not tracked (they neither fire nor resolve until room frees); check for rules true for most of the fleet, or raise the limit",
			"max_pairs", e.opts.MaxPairs, "shed_total", total)
	}
}

// emit hands transitions to Options.Emit; it reports whether there were
// any (then the caller calls sync once they are all emitted).
func (e *Evaluator) emit(as []Alert) bool {
	if e.opts.Emit == nil || len(as) == 0 {
		return false
	}
	for _, a := range as {
		e.opts.Emit(a)
	}
	return true
}

// sync calls Options.Sync after a call emitted transitions.
func (e *Evaluator) sync() {
	if e.opts.Sync != nil {
		e.opts.Sync()
	}
}

// numFast is rules.NumFastFields as a term index.
const numFast = uint32(rules.NumFastFields)

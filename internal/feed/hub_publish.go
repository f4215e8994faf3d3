package feed

import (
	"hash/maphash"
	"math"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/fleet"
)

// pubScratch is one PublishPositions call's working memory, pooled.
type pubScratch struct {
	pairs  []uint64 // slot<<32 | update index, in update order
	enc    []byte   // position records of the matched updates
	at     []uint32 // by update index: offset of its record in enc, if matched
	count  []uint32 // per slot, then per-slot end offsets into order
	order  []uint32 // update indices grouped by slot, in update order
	hashes []uint64 // ID hashes by update index, when some subscriber uses max_hz
}

// PublishPositions queues each update for every subscriber whose filter
// passes it. It never blocks on subscribers: it takes each matched
// subscriber's lock once for the whole batch, only to copy events into its
// ring. ups may be reused by the caller as soon as it returns. With no
// subscriber it costs one atomic load.
func (h *Hub) PublishPositions(ups []fleet.Update) {
	sn := h.snap.Load()
	if sn == nil || len(ups) == 0 {
		return
	}
	h.published.Add(uint64(len(ups)))
	if sn.cellStart == nil && len(sn.every) == 0 && sn.byID == nil {
		return // nobody to send to
	}
	if sn.cellStart == nil && len(sn.everyPos) == 0 && sn.byID == nil && len(sn.classes) == 0 {
		return // nobody wants positions
	}
	sc, _ := h.scratch.Get().(*pubScratch)
	if sc == nil {
		sc = new(pubScratch)
	}
	if len(sn.classes) > 0 {
		// Wide subscribers: once per batch, whatever their number.
		h.publishWide(sn, ups, sc)
	}
	pairs := sc.pairs[:0]
	var invalid uint64
	matched := 0 // updates with at least one pair
	for i := range ups {
		u := &ups[i]
		if n := len(u.ID); n == 0 || n > MaxIDLen {
			invalid++
			continue
		}
		key := uint64(i)
		before := len(pairs)
		if sn.cellStart != nil {
			for _, sl := range sn.gridSubs(u.Lat, u.Lon) {
				if m := &sn.filt[sl]; m.types&typePosition != 0 && m.inBox(u.Lat, u.Lon) {
					pairs = append(pairs, uint64(sl)<<32|key)
				}
			}
		}
		for _, sl := range sn.everyPos {
			if m := &sn.filt[sl]; m.inBox(u.Lat, u.Lon) {
				pairs = append(pairs, uint64(sl)<<32|key)
			}
		}
		if sn.byID != nil {
			for _, sl := range sn.byID[string(u.ID)] {
				if m := &sn.filt[sl]; m.types&typePosition != 0 && m.inBox(u.Lat, u.Lon) {
					pairs = append(pairs, uint64(sl)<<32|key)
				}
			}
		}
		if len(pairs) > before {
			matched++
		}
	}
	if invalid != 0 {
		h.invalid.Add(invalid)
	}
	sc.pairs = pairs
	if len(pairs) == 0 {
		h.scratch.Put(sc)
		return
	}
	// Encode each matched update once, whoever receives it; pairs are in
	// update order.
	at := growTo(sc.at, len(ups))
	enc := sc.enc[:0]
	if want := matched * (2 + posPayloadBudget); cap(enc) < want {
		enc = make([]byte, 0, want+want/4) // rather than doubling up to it
	}
	last := uint32(math.MaxUint32)
	for _, p := range pairs {
		if i := uint32(p); i != last {
			at[i] = uint32(len(enc))
			enc = appendPositionRecord(enc, &ups[i])
			last = i
		}
	}
	sc.at, sc.enc = at, enc
	if sn.anyHz {
		sc.hashes = growTo(sc.hashes, len(ups))
		for i := range ups {
			sc.hashes[i] = maphash.Bytes(h.seed, ups[i].ID)
		}
	}
	// Group by subscriber, keeping update order (a counting sort).
	ns := len(sn.subs)
	count := growTo(sc.count, ns+1)
	clear(count)
	for _, p := range pairs {
		count[p>>32+1]++
	}
	for k := 1; k <= ns; k++ {
		count[k] += count[k-1]
	}
	order := growTo(sc.order, len(pairs))
	for _, p := range pairs {
		sl := p >> 32
		order[count[sl]] = uint32(p)
		count[sl]++
	}
	// count[sl] is now the end of slot sl's run.
	nowMs := uint32(0)
	if sn.anyHz {
		nowMs = uint32(h.clock() / 1e6)
	}
	begin := uint32(0)
	for sl := range ns {
		end := count[sl]
		if end > begin {
			sn.subs[sl].pushPositions(enc, at, order[begin:end], sc.hashes, nowMs, h.clock)
		}
		begin = end
	}
	sc.count, sc.order = count, order
	h.scratch.Put(sc)
}

// growTo returns s resliced to n, reallocated if its capacity is short.
func growTo[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}

// PublishExpired tells subscribers that a truck was removed (expired or
// deleted) at its last position (lat, lon): the event reaches subscribers
// that want expired events, whose bbox holds that position and whose ids
// (if any) name the truck, as the truck's positions did.
func (h *Hub) PublishExpired(id []byte, lat, lon int32, ts uint32) {
	sn := h.snap.Load()
	if sn == nil {
		return
	}
	h.published.Add(1)
	if len(id) == 0 || len(id) > MaxIDLen {
		h.invalid.Add(1)
		return
	}
	var ev ctlEntry
	ev.kind, ev.ts = kindExpired, ts
	ev.idLen = uint8(copy(ev.id[:], id))
	if len(sn.classes) > 0 {
		hash := maphash.Bytes(h.seed, id)
		for _, c := range sn.classes {
			c.remove(hash)
		}
	}
	h.route(sn, &ev, typeExpired, string(id), lat, lon)
}

// PublishAlert queues an alert for subscribers that want alerts and whose
// bbox holds (a.Lat, a.Lon) and whose ids (if any) name a.ID. An alert
// with an empty or over-long ID or a State other than "firing" or
// "resolved" is counted as Invalid and dropped.
func (h *Hub) PublishAlert(a alert.Alert) {
	sn := h.snap.Load()
	if sn == nil {
		return
	}
	h.published.Add(1)
	var state uint8
	switch a.State {
	case alert.StateFiring:
		state = stateFiring
	case alert.StateResolved:
		state = stateResolved
	}
	if state == 0 || len(a.ID) == 0 || len(a.ID) > MaxIDLen {
		h.invalid.Add(1)
		return
	}
	ev := ctlEntry{kind: kindAlert, state: state, ts: a.TS, lat: a.Lat, lon: a.Lon}
	ev.idLen = uint8(copy(ev.id[:], a.ID))
	ev.ruleLen = uint8(copy(ev.rule[:], cutUTF8(a.Rule, MaxRuleLen)))
	h.route(sn, &ev, typeAlert, a.ID, a.Lat, a.Lon)
}

// route queues a control event of type typ about truck id at (lat, lon)
// for the subscribers whose filters pass it, found as positions are: the
// cell's list, the everywhere list and the subscribers naming id.
func (h *Hub) route(sn *snapshot, ev *ctlEntry, typ uint8, id string, lat, lon int32) {
	if sn.cellStart != nil {
		for _, sl := range sn.gridSubs(lat, lon) {
			if m := &sn.filt[sl]; m.types&typ != 0 && m.inBox(lat, lon) {
				sn.subs[sl].pushCtl(ev, h.clock)
			}
		}
	}
	for _, sl := range sn.every {
		if m := &sn.filt[sl]; m.types&typ != 0 && m.inBox(lat, lon) {
			sn.subs[sl].pushCtl(ev, h.clock)
		}
	}
	if sn.byID != nil {
		for _, sl := range sn.byID[id] {
			if m := &sn.filt[sl]; m.types&typ != 0 && m.inBox(lat, lon) {
				sn.subs[sl].pushCtl(ev, h.clock)
			}
		}
	}
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// end inside a UTF-8 sequence.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i > n-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

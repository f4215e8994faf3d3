package alert

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/fleetd/fleetd/internal/fence"
	"github.com/fleetd/fleetd/internal/rules"
)

// CheckRuleName returns an ErrInvalid error unless name is 1–64 bytes of
// [A-Za-z0-9_.:-].
func CheckRuleName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return invalidf("alert: rule name must be 1-%d bytes, got %d", MaxNameLen, len(name))
	}
	for i := range len(name) {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '_' || c == '.' || c == ':' || c == '-') {
			return invalidf("alert: rule name %q: byte %d (%q) is not one of [A-Za-z0-9_.:-]", name, i, c)
		}
	}
	return nil
}

// ZoneInfo describes a stored zone.
type ZoneInfo struct {
	Name string
	Zone *fence.Zone
}

// PutZone parses a GeoJSON Polygon or MultiPolygon (or a Feature of one)
// from body and stores it under name, replacing any zone of that name
// (rules that name it see the new shape from the next batch on). Errors
// wrap ErrInvalid for a bad name or GeoJSON (the message is fence's),
// fence.ErrTooLarge for a body over fence's limits, ErrPersist when saving
// failed (nothing changed).
func (e *Evaluator) PutZone(name string, body io.Reader) (*fence.Zone, error) {
	if err := fence.CheckName(name); err != nil {
		return nil, &inputError{err}
	}
	z, err := fence.ReadZone(body)
	if err != nil {
		if errors.Is(err, fence.ErrTooLarge) {
			return nil, fmt.Errorf("alert: zone %q: %w", name, err)
		}
		return nil, &inputError{fmt.Errorf("alert: zone %q: %w", name, err)}
	}
	e.cfg.Lock()
	defer e.cfg.Unlock()
	if err := e.putZoneLocked(name, z, true); err != nil {
		return nil, err
	}
	return z, nil
}

// putZoneLocked stores z, saving first when save is set.
func (e *Evaluator) putZoneLocked(name string, z *fence.Zone, save bool) error {
	js := z.AppendGeoJSON(nil)
	if _, ok := e.zones.ZoneID(name); !ok && e.zones.Len() >= fence.MaxIDs {
		return fmt.Errorf("alert: zone %q: %w: %d zones", name, ErrLimit, fence.MaxIDs)
	}
	if save {
		old, had := e.cfg.zoneJSON[name]
		e.cfg.zoneJSON[name] = js
		if err := e.saveLocked(); err != nil {
			if had {
				e.cfg.zoneJSON[name] = old
			} else {
				delete(e.cfg.zoneJSON, name)
			}
			e.undoSaveLocked(err)
			return err
		}
	} else {
		e.cfg.zoneJSON[name] = js
	}
	// The zone and the index built over it change together for batches.
	e.evalMu.Lock()
	if e.zones.Put(name, z) < 0 {
		e.evalMu.Unlock()
		panic("BUG: alert: fence.Set refused a checked zone")
	}
	e.rebuildLocked()
	e.evalMu.Unlock()
	return nil
}

// GetZone returns the named zone.
func (e *Evaluator) GetZone(name string) (*fence.Zone, bool) { return e.zones.Get(name) }

// Zones lists the zones by name.
func (e *Evaluator) Zones() []ZoneInfo {
	var zs []ZoneInfo
	for name, z := range e.zones.All() {
		zs = append(zs, ZoneInfo{Name: name, Zone: z})
	}
	return zs
}

// DeleteZone removes the named zone. It returns an error wrapping
// ErrNotFound for an unknown zone and a *ZoneInUseError (errors.Is
// ErrInUse) while rules name it.
func (e *Evaluator) DeleteZone(name string) error {
	e.cfg.Lock()
	defer e.cfg.Unlock()
	id, ok := e.zones.ZoneID(name)
	if !ok {
		return fmt.Errorf("alert: zone %q: %w", name, ErrNotFound)
	}
	var users []string
	for _, r := range e.cfg.rules {
		if slices.Contains(r.prog.Zones(), id) {
			users = append(users, r.name)
		}
	}
	if len(users) > 0 {
		sort.Strings(users)
		return &ZoneInUseError{Zone: name, Rules: users}
	}
	old := e.cfg.zoneJSON[name]
	delete(e.cfg.zoneJSON, name)
	if err := e.saveLocked(); err != nil {
		e.cfg.zoneJSON[name] = old
		e.undoSaveLocked(err)
		return err
	}
	e.evalMu.Lock()
	e.zones.Delete(name)
	// No compiled rule refers to the name (checked above; the cache
	// re-resolves names on every hit), so its ID may go to another name.
	e.zones.Purge(name)
	e.rebuildLocked()
	e.evalMu.Unlock()
	return nil
}

// PutRule compiles spec and stores it under name, replacing any rule of
// that name: the old rule's state is freed and its firing alerts are
// resolved (Reason "rule replaced"); the new rule starts with no state.
// A compile error is a *rules.Error (wrapped; use errors.As) that also
// matches ErrInvalid; other errors wrap ErrInvalid (name, severity, for),
// ErrLimit or ErrPersist.
func (e *Evaluator) PutRule(name string, spec RuleSpec) (Rule, error) {
	spec, sev, err := checkSpec(name, spec)
	if err != nil {
		return Rule{}, err
	}
	e.cfg.Lock()
	r, old, err := e.putRuleLocked(name, spec, sev, true)
	e.cfg.Unlock()
	if err != nil {
		return Rule{}, err
	}
	if old != nil {
		e.freeRule(old, "rule replaced")
	}
	return Rule{Name: r.name, RuleSpec: r.spec, Program: r.prog}, nil
}

// checkSpec validates a rule's name and spec and defaults its severity.
func checkSpec(name string, spec RuleSpec) (RuleSpec, uint8, error) {
	if err := CheckRuleName(name); err != nil {
		return spec, 0, err
	}
	if spec.Severity == "" {
		spec.Severity = defaultSeverity
	}
	sev := slices.Index(severities[:], spec.Severity)
	if sev < 0 {
		return spec, 0, invalidf("alert: rule %q: severity %q is not one of info, warning, critical", name, spec.Severity)
	}
	if spec.For < 0 || spec.For > MaxFor {
		return spec, 0, invalidf("alert: rule %q: \"for\" %v is outside [0s, %v]", name, spec.For, MaxFor)
	}
	return spec, uint8(sev), nil
}

// putRuleLocked compiles and installs a rule; the caller frees old's state
// (after unlocking cfg) with freeRule.
func (e *Evaluator) putRuleLocked(name string, spec RuleSpec, sev uint8, save bool) (r, old *liveRule, err error) {
	prog, err := e.cache.Compile(spec.When, &e.zones)
	if err != nil {
		var rerr *rules.Error
		if errors.As(err, &rerr) {
			return nil, nil, &inputError{fmt.Errorf("alert: rule %q: %w", name, rerr)}
		}
		return nil, nil, fmt.Errorf("alert: rule %q: %w", name, err)
	}
	old = e.cfg.rules[name]
	if old == nil && len(e.cfg.rules) >= MaxRules {
		return nil, nil, fmt.Errorf("alert: rule %q: %w: %d rules", name, ErrLimit, MaxRules)
	}
	r = newLiveRule(name, spec, prog, sev)
	r.slot, r.gen = e.allocSlotLocked()
	e.cfg.rules[name] = r
	if save {
		if err := e.saveLocked(); err != nil {
			e.releaseSlotLocked(r.slot)
			if old != nil {
				e.cfg.rules[name] = old
			} else {
				delete(e.cfg.rules, name)
			}
			e.undoSaveLocked(err)
			return nil, nil, err
		}
	}
	e.evalMu.Lock()
	e.rebuildLocked()
	e.evalMu.Unlock()
	return r, old, nil
}

// GetRule returns the named rule.
func (e *Evaluator) GetRule(name string) (Rule, bool) {
	sn := e.snap.Load()
	i, ok := slices.BinarySearchFunc(sn.rules, name, func(r *liveRule, n string) int {
		switch {
		case r.name < n:
			return -1
		case r.name > n:
			return 1
		}
		return 0
	})
	if !ok {
		return Rule{}, false
	}
	r := sn.rules[i]
	return Rule{Name: r.name, RuleSpec: r.spec, Program: r.prog}, true
}

// Rules lists the rules by name.
func (e *Evaluator) Rules() []Rule {
	sn := e.snap.Load()
	rs := make([]Rule, len(sn.rules))
	for i, r := range sn.rules {
		rs[i] = Rule{Name: r.name, RuleSpec: r.spec, Program: r.prog}
	}
	return rs
}

// DeleteRule removes the named rule, frees its state and resolves its
// firing alerts (Reason "rule deleted"). It returns an error wrapping
// ErrNotFound for an unknown rule.
func (e *Evaluator) DeleteRule(name string) error {
	e.cfg.Lock()
	r, ok := e.cfg.rules[name]
	if !ok {
		e.cfg.Unlock()
		return fmt.Errorf("alert: rule %q: %w", name, ErrNotFound)
	}
	delete(e.cfg.rules, name)
	if err := e.saveLocked(); err != nil {
		e.cfg.rules[name] = r
		e.undoSaveLocked(err)
		e.cfg.Unlock()
		return err
	}
	e.evalMu.Lock()
	e.rebuildLocked()
	e.evalMu.Unlock()
	e.cfg.Unlock()
	e.freeRule(r, "rule deleted")
	return nil
}

// freeRule removes a rule's pairs and firing records from every stripe
// and emits a resolve for each of its firing alerts; then its slot may be
// reused. The rule is already out of the snapshot, and evalMu was taken
// since, so no batch can add state for it any more.
func (e *Evaluator) freeRule(r *liveRule, reason string) {
	var out []Alert
	sev := severities[r.severity]
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		out = s.sweepRuleLocked(r, reason, sev, out)
		s.compactLocked()
		s.mu.Unlock()
	}
	e.cfg.Lock()
	e.releaseSlotLocked(r.slot)
	e.cfg.Unlock()
	e.resolved.Add(uint64(len(out)))
	e.firingNow.Add(-int64(len(out)))
	e.emit(out)
}

// sweepRuleLocked drops r's pairs and firing records, appending a resolve
// for each firing one to out.
func (s *stripe) sweepRuleLocked(r *liveRule, reason, sev string, out []Alert) []Alert {
	var buf [2 * pairsPerEntry]pair
	s.eachTruckLocked(func(k uint64, at int) {
		ps, _ := s.loadLocked(k, buf[:0])
		kept := ps[:0]
		for _, p := range ps {
			if p.slot == r.slot && p.gen == r.gen {
				if p.rec != 0 {
					out = append(out, s.recAlertLocked(&s.mu.recs[p.rec], r.name, sev, StateResolved, reason))
					s.dropFiringLocked(&p)
				}
				continue
			}
			kept = append(kept, p)
		}
		if len(kept) != len(ps) {
			s.storeLocked(k, at, kept)
		}
	})
	return out
}

// recAlertLocked makes an Alert from a firing record.
func (s *stripe) recAlertLocked(rec *firingRec, rule, sev, state, reason string) Alert {
	return Alert{Rule: rule, ID: string(s.recIDLocked(rec)), State: state, Severity: sev,
		Since: rec.since, TS: rec.ts, Lat: rec.lat, Lon: rec.lon, Reason: reason}
}

// allocSlotLocked hands out a free slot with its next generation.
func (e *Evaluator) allocSlotLocked() (uint16, uint8) {
	var slot uint16
	if n := len(e.cfg.free); n > 0 {
		slot, e.cfg.free = e.cfg.free[n-1], e.cfg.free[:n-1]
	} else {
		if len(e.cfg.gens) >= 1<<16 {
			panic("BUG: alert: out of rule slots below MaxRules")
		}
		slot = uint16(len(e.cfg.gens))
		e.cfg.gens = append(e.cfg.gens, 0)
	}
	e.cfg.gens[slot]++
	return slot, e.cfg.gens[slot]
}

func (e *Evaluator) releaseSlotLocked(slot uint16) { e.cfg.free = append(e.cfg.free, slot) }

// rebuildLocked publishes a snapshot of the current rules and zones. The
// caller holds cfg and evalMu.
func (e *Evaluator) rebuildLocked() {
	rs := make([]*liveRule, 0, len(e.cfg.rules))
	for _, r := range e.cfg.rules {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *liveRule) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	if len(rs) == 0 {
		e.snap.Store(emptySnapshot)
		return
	}
	e.snap.Store(buildSnapshot(rs, &e.zones, len(e.cfg.gens)))
}

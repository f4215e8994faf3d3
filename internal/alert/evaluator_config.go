package alert

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

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
	js := z.AppendGeoJSON(nil)
	if _, ok := e.zones.ZoneID(name); !ok && e.zones.Len() >= fence.MaxIDs {
		return nil, fmt.Errorf("alert: zone %q: %w: %d zones", name, ErrLimit, fence.MaxIDs)
	}
	if err := e.appendLocked(&configOp{Op: opZone, Name: name, Geometry: js}); err != nil {
		return nil, err
	}
	e.cfg.zoneJSON[name] = js
	// The zone and the reach of the rules it guards change together for
	// batches.
	e.evalMu.Lock()
	id := e.zones.Put(name, z)
	if id < 0 {
		e.evalMu.Unlock()
		panic("BUG: alert: fence.Set refused a checked zone")
	}
	e.idx.rezone(id)
	e.evalMu.Unlock()
	return z, nil
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
	if e.cfg.zoneUse[id] > 0 {
		// Only a refusal lists the users, so only a refusal scans.
		var users []string
		for _, r := range e.cfg.rules {
			if slices.Contains(r.prog.Zones(), id) {
				users = append(users, r.name)
			}
		}
		sort.Strings(users)
		return &ZoneInUseError{Zone: name, Rules: users}
	}
	if err := e.appendLocked(&configOp{Op: opDeleteZone, Name: name}); err != nil {
		return err
	}
	delete(e.cfg.zoneJSON, name)
	e.evalMu.Lock()
	e.zones.Delete(name)
	// No compiled rule refers to the name (checked above; the cache
	// re-resolves names on every hit), so its ID may go to another name.
	e.zones.Purge(name)
	e.evalMu.Unlock()
	return nil
}

// countZoneUseLocked adds d to the use count of each zone r names. The
// caller holds cfg.
func (e *Evaluator) countZoneUseLocked(r *liveRule, d int) {
	for _, id := range r.prog.Zones() {
		if e.cfg.zoneUse[id] += d; e.cfg.zoneUse[id] == 0 {
			delete(e.cfg.zoneUse, id)
		}
	}
}

// NamedRule is a rule given by name, for PutRules.
type NamedRule struct {
	Name string
	RuleSpec
}

// PutRule compiles spec and stores it under name, replacing any rule of
// that name: the old rule's state is freed and its firing alerts are
// resolved (Reason "rule replaced"); the new rule starts with no state.
// A compile error is a *rules.Error (wrapped; use errors.As) that also
// matches ErrInvalid; other errors wrap ErrInvalid (name, severity, for),
// ErrLimit or ErrPersist.
func (e *Evaluator) PutRule(name string, spec RuleSpec) (Rule, error) {
	rs, _, err := e.PutRules([]NamedRule{{Name: name, RuleSpec: spec}})
	if err != nil {
		return Rule{}, err
	}
	return rs[0], nil
}

// PutRules stores every rule of rs as PutRule does, all or none: if one
// fails to check or compile, or the change cannot be saved, nothing
// changes and the error names the rule. Names must be distinct. It
// returns the stored rules, in rs's order, and how many replaced a rule
// of the same name. Its cost is O(len(rs)) (plus what each rule's groups
// and cells hold), whatever the number of rules already stored, and one
// append to the change log.
func (e *Evaluator) PutRules(rs []NamedRule) ([]Rule, int, error) {
	lives := make([]*liveRule, len(rs))
	seen := make(map[string]bool, len(rs))
	for i := range rs {
		spec, sev, err := checkSpec(rs[i].Name, rs[i].RuleSpec)
		if err != nil {
			return nil, 0, err
		}
		if seen[rs[i].Name] {
			return nil, 0, invalidf("alert: rule %q appears twice", rs[i].Name)
		}
		seen[rs[i].Name] = true
		lives[i] = &liveRule{name: rs[i].Name, spec: spec, severity: sev}
	}
	e.cfg.Lock()
	olds, err := e.putRulesLocked(lives, true)
	e.cfg.Unlock()
	if err != nil {
		return nil, 0, err
	}
	if len(olds) > 0 {
		e.freeRules(olds, "rule replaced")
	}
	out := make([]Rule, len(lives))
	for i, r := range lives {
		out[i] = Rule{Name: r.name, RuleSpec: r.spec, Program: r.prog}
	}
	return out, len(olds), nil
}

// putRulesLocked compiles and installs rules whose name, spec and
// severity are set (checkSpec), logging them first when save is set; the
// caller frees the replaced rules' state (after unlocking cfg) with
// freeRules.
func (e *Evaluator) putRulesLocked(rs []*liveRule, save bool) (olds []*liveRule, err error) {
	added := 0
	for i, r := range rs {
		prog, err := e.cache.Compile(r.spec.When, &e.zones)
		if err != nil {
			var rerr *rules.Error
			if errors.As(err, &rerr) {
				return nil, &inputError{fmt.Errorf("alert: rule %q: %w", r.name, rerr)}
			}
			return nil, fmt.Errorf("alert: rule %q: %w", r.name, err)
		}
		rs[i] = newLiveRule(r.name, r.spec, prog, r.severity)
		if e.cfg.rules[r.name] == nil {
			added++
		}
	}
	if len(e.cfg.rules)+added > MaxRules {
		return nil, fmt.Errorf("alert: %w: %d rules, adding %d", ErrLimit, len(e.cfg.rules), added)
	}
	if save {
		op := &configOp{Op: opRules, Rules: make([]configRule, len(rs))}
		for i, r := range rs {
			op.Rules[i] = configRule{Name: r.name, ruleSpecJSON: r.spec.json()}
		}
		if err := e.appendLocked(op); err != nil {
			return nil, err
		}
	}
	for _, r := range rs {
		r.slot, r.gen = e.allocSlotLocked()
		if old := e.cfg.rules[r.name]; old != nil {
			olds = append(olds, old)
			e.countZoneUseLocked(old, -1)
		}
		e.cfg.rules[r.name] = r
		e.countZoneUseLocked(r, +1)
	}
	e.evalMu.Lock()
	// Many rules at once (a bulk PUT, a load) are indexed in one pass,
	// sorting each group once, rather than each inserted in (or removed
	// from) its place: O(rules) rather than O(rs × group).
	if len(rs) > 64 && len(rs) > e.idx.n/4 {
		e.idx.replace(olds, rs)
	} else {
		for _, old := range olds {
			e.idx.remove(old)
		}
		for _, r := range rs {
			e.idx.add(r, true)
		}
	}
	e.publishLocked(rs)
	e.evalMu.Unlock()
	return olds, nil
}

// publishLocked brings the lock-free views (nRules, nZoned, byName) up to
// date with idx after rules in rs were stored or deleted. The caller holds
// cfg and evalMu.
func (e *Evaluator) publishLocked(rs []*liveRule) {
	e.nRules.Store(int64(e.idx.n))
	e.nZoned.Store(int64(e.idx.zoned))
	for _, r := range rs {
		if cur := e.cfg.rules[r.name]; cur != nil {
			e.byName.Store(r.name, cur)
		} else {
			e.byName.Delete(r.name)
		}
	}
}

// GetRule returns the named rule.
func (e *Evaluator) GetRule(name string) (Rule, bool) {
	v, ok := e.byName.Load(name)
	if !ok {
		return Rule{}, false
	}
	r := v.(*liveRule)
	return Rule{Name: r.name, RuleSpec: r.spec, Program: r.prog}, true
}

// Rules lists the rules by name.
func (e *Evaluator) Rules() []Rule {
	var rs []Rule
	e.byName.Range(func(_, v any) bool {
		r := v.(*liveRule)
		rs = append(rs, Rule{Name: r.name, RuleSpec: r.spec, Program: r.prog})
		return true
	})
	slices.SortFunc(rs, func(a, b Rule) int { return cmp.Compare(a.Name, b.Name) })
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
	if err := e.appendLocked(&configOp{Op: opDeleteRule, Name: name}); err != nil {
		e.cfg.Unlock()
		return err
	}
	delete(e.cfg.rules, name)
	e.countZoneUseLocked(r, -1)
	e.evalMu.Lock()
	e.idx.remove(r)
	e.publishLocked([]*liveRule{r})
	e.evalMu.Unlock()
	e.cfg.Unlock()
	e.freeRules([]*liveRule{r}, "rule deleted")
	return nil
}

// freeRules removes the rules' pairs and firing records from every stripe
// and emits a resolve for each of their firing alerts; then their slots
// may be reused. The rules are already out of the index, and evalMu was
// taken since, so no batch can add state for them any more. One pass over
// the stripes serves them all.
func (e *Evaluator) freeRules(rs []*liveRule, reason string) {
	var out []Alert
	gone := make(map[ruleRef]*liveRule, len(rs))
	for _, r := range rs {
		gone[r.ref()] = r
	}
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		out = s.sweepRulesLocked(gone, reason, out)
		s.compactLocked()
		s.mu.Unlock()
	}
	e.cfg.Lock()
	for _, r := range rs {
		e.releaseSlotLocked(r.slot)
	}
	e.cfg.Unlock()
	e.resolved.Add(uint64(len(out)))
	e.firingNow.Add(-int64(len(out)))
	if e.emit(out) {
		e.sync()
	}
}

// sweepRulesLocked drops the pairs and firing records of the rules in
// gone, appending a resolve for each firing one to out.
func (s *stripe) sweepRulesLocked(gone map[ruleRef]*liveRule, reason string, out []Alert) []Alert {
	if s.mu.pairs == 0 {
		return out
	}
	var buf [2 * pairsPerEntry]pair
	s.eachTruckLocked(func(k uint64, at int) {
		ps, _ := s.loadLocked(k, buf[:0])
		kept := ps[:0]
		for _, p := range ps {
			if r := gone[p.ref]; r != nil {
				if p.rec != 0 {
					a := s.recAlertLocked(&s.mu.recs[p.rec], r.name, severities[r.severity], StateResolved, reason)
					a.Zone = r.zone
					out = append(out, a)
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
func (e *Evaluator) allocSlotLocked() (uint32, uint8) {
	var slot uint32
	if n := len(e.cfg.free); n > 0 {
		slot, e.cfg.free = e.cfg.free[n-1], e.cfg.free[:n-1]
	} else {
		if len(e.cfg.gens) >= maxSlots {
			panic("BUG: alert: out of rule slots below MaxRules")
		}
		slot = uint32(len(e.cfg.gens))
		e.cfg.gens = append(e.cfg.gens, 0)
	}
	e.cfg.gens[slot]++
	return slot, e.cfg.gens[slot]
}

func (e *Evaluator) releaseSlotLocked(slot uint32) { e.cfg.free = append(e.cfg.free, slot) }

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

// namedRuleJSON is one rule of a bulk body.
type namedRuleJSON struct {
	Name string `json:"name"`
	ruleSpecJSON
}

// DecodeRules reads a bulk body, {"rules": [{"name": "speeding", "when":
// "speed > 90", "for": "30s", "severity": "warning"}, …]}, refusing
// unknown fields, bad durations and trailing data with ErrInvalid. The
// rules are checked and compiled by PutRules.
func DecodeRules(data []byte) ([]NamedRule, error) {
	var doc struct {
		Rules []namedRuleJSON `json:"rules"`
	}
	if err := strictUnmarshal(data, &doc); err != nil {
		return nil, invalidf("alert: rules: %v", err)
	}
	if doc.Rules == nil {
		return nil, invalidf(`alert: rules: no "rules" array`)
	}
	rs := make([]NamedRule, len(doc.Rules))
	for i, j := range doc.Rules {
		rs[i] = NamedRule{Name: j.Name, RuleSpec: RuleSpec{When: j.When, Severity: j.Severity}}
		if j.For != "" {
			d, err := time.ParseDuration(j.For)
			if err != nil {
				return nil, invalidf("alert: rule %q: \"for\": %v", j.Name, err)
			}
			rs[i].For = d
		}
	}
	return rs, nil
}

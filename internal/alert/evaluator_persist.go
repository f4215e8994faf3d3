package alert

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fleetd/fleetd/internal/fence"
	"github.com/fleetd/fleetd/internal/vfs"
)

// Files in Options.Dir.
const (
	// LogFile is the change log of the zones and rules; see doc.go.
	LogFile = "config.log"
	// ConfigFile is the configuration document of earlier versions: New
	// imports it into a new change log, then removes it.
	ConfigFile = "config.json"
)

const configVersion = 1

// Compaction: the log is rewritten with only the current configuration
// once it is larger than twice what it was after the last rewrite, plus
// compactSlack, so that rewrites cost O(1) amortised per change.
const compactSlack = 1 << 20

// rulesPerRecord is how many rules a compacted log puts in one record.
const rulesPerRecord = 4096

// configDoc is the document of ConfigFile.
type configDoc struct {
	Version int          `json:"version"`
	Zones   []configZone `json:"zones"`
	Rules   []configRule `json:"rules"`
}

type configZone struct {
	Name     string          `json:"name"`
	Geometry json.RawMessage `json:"geometry"`
}

type configRule struct {
	Name string `json:"name"`
	ruleSpecJSON
}

// configOp is one record of the change log.
type configOp struct {
	Op       string          `json:"op"`
	Name     string          `json:"name,omitempty"`
	Geometry json.RawMessage `json:"geometry,omitempty"`
	Rules    []configRule    `json:"rules,omitempty"`
}

// Change log operations.
const (
	opZone       = "zone"  // put zone Name with Geometry
	opDeleteZone = "-zone" // delete zone Name
	opRules      = "rules" // put every rule of Rules
	opDeleteRule = "-rule" // delete rule Name
)

// changeLog is the open change log. Guarded by Evaluator.cfg.
type changeLog struct {
	f     vfs.File // nil until load, or after a failed rewrite
	size  int64    // valid bytes: the next record goes here
	base  int64    // size after the last rewrite
	dirty bool     // a failed append may have left bytes past size: rewrite first
	buf   []byte   // the record being appended
}

func (s RuleSpec) json() ruleSpecJSON {
	return ruleSpecJSON{When: s.When, For: s.For.String(), Severity: s.Severity}
}

func (e *Evaluator) logPath() string { return filepath.Join(e.opts.Dir, LogFile) }

// appendLocked makes one change durable before it takes effect: op is
// appended to the change log as one record and the log fsynced. Without
// a Dir it does nothing. A log that has grown past its compaction
// threshold, or that a failed append left dirty, is rewritten first.
// Errors wrap ErrPersist; the change must then not be made.
func (e *Evaluator) appendLocked(op *configOp) error {
	if e.opts.Dir == "" {
		return nil
	}
	l := &e.cfg.log
	if l.f == nil || l.dirty || l.size > 2*l.base+compactSlack {
		if err := e.rewriteLocked(); err != nil {
			return err
		}
	}
	payload, err := json.Marshal(op)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPersist, err)
	}
	if len(payload) > maxRecord {
		return fmt.Errorf("%w: a change of %d bytes is over the log's limit of %d", ErrPersist, len(payload), maxRecord)
	}
	l.buf = appendRecord(l.buf[:0], payload)
	if cap(l.buf) > 1<<20 {
		defer func() { l.buf = nil }()
	}
	_, err = l.f.WriteAt(l.buf, l.size)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		// Some of the record may be on disk: cut it off, and rewrite the
		// log before the next append in case that did not work either.
		l.dirty = true
		if l.f.Truncate(l.size) == nil && l.f.Sync() == nil {
			l.dirty = false
		}
		return fmt.Errorf("%w: appending to %s: %w", ErrPersist, e.logPath(), err)
	}
	l.size += int64(len(l.buf))
	return nil
}

// rewriteLocked replaces the change log with one that holds only the
// current configuration (zones sorted by name, then the rules in records
// of rulesPerRecord): written to a temporary file, fsynced, renamed over
// the log and the directory fsynced, so a crash leaves the old log or the
// new one, which say the same. Errors wrap ErrPersist.
func (e *Evaluator) rewriteLocked() error {
	l := &e.cfg.log
	data := []byte(logMagic)
	names := make([]string, 0, len(e.cfg.zoneJSON))
	for name := range e.cfg.zoneJSON {
		names = append(names, name)
	}
	slices.Sort(names)
	var buf []byte
	for _, name := range names {
		var err error
		if buf, err = json.Marshal(&configOp{Op: opZone, Name: name, Geometry: e.cfg.zoneJSON[name]}); err != nil {
			return fmt.Errorf("%w: %v", ErrPersist, err)
		}
		data = appendRecord(data, buf)
	}
	rs := make([]configRule, 0, len(e.cfg.rules))
	for _, r := range e.cfg.rules {
		rs = append(rs, configRule{Name: r.name, ruleSpecJSON: r.spec.json()})
	}
	slices.SortFunc(rs, func(a, b configRule) int { return cmp.Compare(a.Name, b.Name) })
	for len(rs) > 0 {
		n := min(len(rs), rulesPerRecord)
		var err error
		if buf, err = json.Marshal(&configOp{Op: opRules, Rules: rs[:n]}); err != nil {
			return fmt.Errorf("%w: %v", ErrPersist, err)
		}
		data = appendRecord(data, buf)
		rs = rs[n:]
	}
	fsys, path := e.opts.FS, e.logPath()
	tmp := path + ".tmp"
	if err := vfs.WriteFile(fsys, tmp, data); err != nil {
		return fmt.Errorf("%w: writing %s: %w", ErrPersist, tmp, err)
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: renaming %s: %w", ErrPersist, tmp, err)
	}
	// From here the file at path is the new log, whatever fails next.
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
	l.dirty = true
	if err := fsys.SyncDir(e.opts.Dir); err != nil {
		return fmt.Errorf("%w: syncing %s: %w", ErrPersist, e.opts.Dir, err)
	}
	f, err := fsys.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: opening %s: %w", ErrPersist, path, err)
	}
	l.f, l.size, l.base, l.dirty = f, int64(len(data)), int64(len(data)), false
	return nil
}

// Close closes the change log. The Evaluator must not be changed after.
func (e *Evaluator) Close() error {
	e.cfg.Lock()
	defer e.cfg.Unlock()
	if f := e.cfg.log.f; f != nil {
		e.cfg.log.f = nil
		return f.Close()
	}
	return nil
}

// load creates Dir if needed and installs the saved configuration: the
// change log, or else an earlier version's ConfigFile, which it imports
// into a new log and then removes. Every error names the file.
func (e *Evaluator) load() error {
	fsys, path := e.opts.FS, e.logPath()
	if err := fsys.MkdirAll(e.opts.Dir, 0o755); err != nil {
		return fmt.Errorf("alert: creating %s: %w", e.opts.Dir, err)
	}
	if err := vfs.SyncParent(fsys, e.opts.Dir); err != nil {
		return fmt.Errorf("alert: syncing the parent of %s: %w", e.opts.Dir, err)
	}
	start := time.Now()
	e.cfg.Lock()
	defer e.cfg.Unlock()
	data, err := vfs.ReadFile(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
		return e.importLocked()
	}
	if err != nil {
		return fmt.Errorf("alert: reading %s: %w", path, err)
	}
	payloads, good, torn, err := logRecords(data)
	if err != nil {
		return fmt.Errorf("alert: %s: %w", path, err)
	}
	zones, rules, err := replay(payloads)
	if err != nil {
		return fmt.Errorf("alert: %s: %w", path, err)
	}
	if err := e.installLocked(path, zones, rules); err != nil {
		return err
	}
	f, err := fsys.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("alert: opening %s: %w", path, err)
	}
	l := &e.cfg.log
	l.f, l.size, l.base = f, int64(good), int64(good)
	l.dirty = good < len(logMagic) // empty, or a torn header: rewrite it first
	if torn {
		// The end of the log is an append cut short by a crash, never
		// acknowledged: cut it off so the next append follows the last
		// whole record.
		e.opts.Logger.Warn("alert: the change log ends in a torn record (a crash during a change that was not acknowledged); cutting it off",
			"file", path, "valid_bytes", good, "cut_bytes", len(data)-good)
		if l.dirty {
			// Rewritten before the next append.
		} else if err := f.Truncate(int64(good)); err != nil || f.Sync() != nil {
			l.dirty = true
		}
	}
	// An import that crashed after writing the log leaves ConfigFile.
	if err := fsys.Remove(filepath.Join(e.opts.Dir, ConfigFile)); err == nil {
		_ = fsys.SyncDir(e.opts.Dir)
	}
	e.opts.Logger.Info("alert configuration loaded", "file", path, "zones", len(zones), "rules", len(rules),
		"records", len(payloads), "bytes", good, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// replay applies the log's records in order and returns the zones and
// rules they leave, each in name order.
func replay(payloads [][]byte) ([]configZone, []configRule, error) {
	zones := map[string]json.RawMessage{}
	rules := map[string]configRule{}
	for i, p := range payloads {
		var op configOp
		if err := strictUnmarshal(p, &op); err != nil {
			return nil, nil, fmt.Errorf("record %d: %w", i, err)
		}
		switch op.Op {
		case opZone:
			zones[op.Name] = op.Geometry
		case opDeleteZone:
			if _, ok := zones[op.Name]; !ok {
				return nil, nil, fmt.Errorf("record %d deletes zone %q, which does not exist", i, op.Name)
			}
			delete(zones, op.Name)
		case opRules:
			for _, r := range op.Rules {
				rules[r.Name] = r
			}
		case opDeleteRule:
			if _, ok := rules[op.Name]; !ok {
				return nil, nil, fmt.Errorf("record %d deletes rule %q, which does not exist", i, op.Name)
			}
			delete(rules, op.Name)
		default:
			return nil, nil, fmt.Errorf("record %d: unknown operation %q", i, op.Op)
		}
	}
	zs := make([]configZone, 0, len(zones))
	for name, g := range zones {
		zs = append(zs, configZone{Name: name, Geometry: g})
	}
	slices.SortFunc(zs, func(a, b configZone) int { return cmp.Compare(a.Name, b.Name) })
	rs := make([]configRule, 0, len(rules))
	for _, r := range rules {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b configRule) int { return cmp.Compare(a.Name, b.Name) })
	return zs, rs, nil
}

// importLocked loads an earlier version's ConfigFile, if any, writes the
// change log and removes ConfigFile. With neither file it writes an empty
// log.
func (e *Evaluator) importLocked() error {
	fsys, path := e.opts.FS, filepath.Join(e.opts.Dir, ConfigFile)
	data, err := vfs.ReadFile(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := e.rewriteLocked(); err != nil {
			return fmt.Errorf("alert: creating %s: %w", e.logPath(), err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("alert: reading %s: %w", path, err)
	}
	var doc configDoc
	if err := strictUnmarshal(data, &doc); err != nil {
		return fmt.Errorf("alert: %s is corrupt: %w", path, err)
	}
	if doc.Version != configVersion {
		return fmt.Errorf("alert: %s: unsupported version %d (want %d)", path, doc.Version, configVersion)
	}
	seenZ, seenR := map[string]bool{}, map[string]bool{}
	for _, zc := range doc.Zones {
		if seenZ[zc.Name] {
			return fmt.Errorf("alert: %s: zone %q appears twice", path, zc.Name)
		}
		seenZ[zc.Name] = true
	}
	for _, rc := range doc.Rules {
		if seenR[rc.Name] {
			return fmt.Errorf("alert: %s: rule %q appears twice", path, rc.Name)
		}
		seenR[rc.Name] = true
	}
	if err := e.installLocked(path, doc.Zones, doc.Rules); err != nil {
		return err
	}
	if err := e.rewriteLocked(); err != nil {
		return fmt.Errorf("alert: importing %s into %s: %w", path, e.logPath(), err)
	}
	if err := fsys.Remove(path); err != nil {
		return fmt.Errorf("alert: removing %s after importing it: %w", path, err)
	}
	if err := fsys.SyncDir(e.opts.Dir); err != nil {
		return fmt.Errorf("alert: syncing %s: %w", e.opts.Dir, err)
	}
	e.opts.Logger.Info("alert configuration imported", "from", path, "to", e.logPath(), "zones", len(doc.Zones), "rules", len(doc.Rules))
	return nil
}

// installLocked parses the zones, compiles the rules and indexes them all
// at once. Errors name file.
func (e *Evaluator) installLocked(file string, zones []configZone, rules []configRule) error {
	names := make([]string, len(zones))
	zs := make([]*fence.Zone, len(zones))
	for i, zc := range zones {
		if err := fence.CheckName(zc.Name); err != nil {
			return fmt.Errorf("alert: %s: %w", file, err)
		}
		z, err := fence.Parse(zc.Geometry)
		if err != nil {
			return fmt.Errorf("alert: %s: zone %q: %w", file, zc.Name, err)
		}
		names[i], zs[i] = zc.Name, z
	}
	if len(zones) > 0 && e.zones.PutMany(names, zs) == nil {
		return fmt.Errorf("alert: %s: %w: %d zones", file, ErrLimit, len(zones))
	}
	for i, name := range names {
		e.cfg.zoneJSON[name] = zs[i].AppendGeoJSON(nil)
	}
	lives := make([]*liveRule, len(rules))
	for i, rc := range rules {
		spec := RuleSpec{When: rc.When, Severity: rc.Severity}
		if rc.For != "" {
			var err error
			if spec.For, err = time.ParseDuration(rc.For); err != nil {
				return fmt.Errorf("alert: %s: rule %q: \"for\": %w", file, rc.Name, err)
			}
		}
		spec, sev, err := checkSpec(rc.Name, spec)
		if err != nil {
			return fmt.Errorf("alert: %s: %w", file, err)
		}
		lives[i] = &liveRule{name: rc.Name, spec: spec, severity: sev}
	}
	if len(lives) > 0 {
		if _, err := e.putRulesLocked(lives, false); err != nil {
			return fmt.Errorf("alert: %s: %w", file, err)
		}
	}
	return nil
}

// strictUnmarshal decodes one JSON value, refusing unknown fields and
// trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

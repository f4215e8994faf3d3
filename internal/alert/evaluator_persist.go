package alert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"time"

	"github.com/fleetd/fleetd/internal/fence"
	"github.com/fleetd/fleetd/internal/vfs"
)

// ConfigFile is the name of the saved configuration in Options.Dir.
const ConfigFile = "config.json"

const configVersion = 1

// configDoc is the saved configuration; see doc.go.
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

func (e *Evaluator) configPath() string { return filepath.Join(e.opts.Dir, ConfigFile) }

// saveLocked writes the configuration in cfg atomically: a temporary file
// is written and fsynced, renamed over config.json, and the directory
// fsynced. Without a Dir it does nothing. Errors wrap ErrPersist.
func (e *Evaluator) saveLocked() error {
	if e.opts.Dir == "" {
		return nil
	}
	doc := configDoc{Version: configVersion, Zones: []configZone{}, Rules: []configRule{}}
	for name, js := range e.cfg.zoneJSON {
		doc.Zones = append(doc.Zones, configZone{Name: name, Geometry: js})
	}
	slices.SortFunc(doc.Zones, func(a, b configZone) int { return cmpString(a.Name, b.Name) })
	for _, r := range e.cfg.rules {
		doc.Rules = append(doc.Rules, configRule{Name: r.name,
			ruleSpecJSON: ruleSpecJSON{When: r.spec.When, For: r.spec.For.String(), Severity: r.spec.Severity}})
	}
	slices.SortFunc(doc.Rules, func(a, b configRule) int { return cmpString(a.Name, b.Name) })
	data, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPersist, err)
	}
	data = append(data, '\n')
	fsys, path := e.opts.FS, e.configPath()
	tmp := path + ".tmp"
	if err := vfs.WriteFile(fsys, tmp, data); err != nil {
		return fmt.Errorf("%w: writing %s: %w", ErrPersist, tmp, err)
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: renaming %s: %w", ErrPersist, tmp, err)
	}
	if err := fsys.SyncDir(e.opts.Dir); err != nil {
		return &renamedError{fmt.Errorf("%w: syncing %s: %w", ErrPersist, e.opts.Dir, err)}
	}
	return nil
}

// renamedError is a save that failed after the new file replaced the old
// one: the new configuration is in place but perhaps not durable.
type renamedError struct{ error }

func (e *renamedError) Unwrap() error { return e.error }

// undoSaveLocked is called after a failed save, once cfg is restored to
// what it was: if the failed save had already replaced the file, the
// restored configuration is written again so that disk and memory agree.
func (e *Evaluator) undoSaveLocked(err error) {
	var re *renamedError
	if !errors.As(err, &re) {
		return
	}
	if err2 := e.saveLocked(); err2 != nil {
		e.opts.Logger.Error("could not restore the alert configuration file after a failed save; "+
			"it may hold the change that was refused until the next successful save", "file", e.configPath(), "err", err2)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// load creates Dir if needed and installs the saved configuration, if
// any. Every error names the file.
func (e *Evaluator) load() error {
	fsys, path := e.opts.FS, e.configPath()
	if err := fsys.MkdirAll(e.opts.Dir, 0o755); err != nil {
		return fmt.Errorf("alert: creating %s: %w", e.opts.Dir, err)
	}
	if err := vfs.SyncParent(fsys, e.opts.Dir); err != nil {
		return fmt.Errorf("alert: syncing the parent of %s: %w", e.opts.Dir, err)
	}
	data, err := vfs.ReadFile(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
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
	e.cfg.Lock()
	defer e.cfg.Unlock()
	for _, zc := range doc.Zones {
		if _, dup := e.cfg.zoneJSON[zc.Name]; dup {
			return fmt.Errorf("alert: %s: zone %q appears twice", path, zc.Name)
		}
		if err := fence.CheckName(zc.Name); err != nil {
			return fmt.Errorf("alert: %s: %w", path, err)
		}
		z, err := fence.Parse(zc.Geometry)
		if err != nil {
			return fmt.Errorf("alert: %s: zone %q: %w", path, zc.Name, err)
		}
		if err := e.putZoneLocked(zc.Name, z, false); err != nil {
			return fmt.Errorf("alert: %s: %w", path, err)
		}
	}
	for _, rc := range doc.Rules {
		if _, dup := e.cfg.rules[rc.Name]; dup {
			return fmt.Errorf("alert: %s: rule %q appears twice", path, rc.Name)
		}
		spec := RuleSpec{When: rc.When, Severity: rc.Severity}
		if rc.For != "" {
			if spec.For, err = time.ParseDuration(rc.For); err != nil {
				return fmt.Errorf("alert: %s: rule %q: \"for\": %w", path, rc.Name, err)
			}
		}
		spec, sev, err := checkSpec(rc.Name, spec)
		if err != nil {
			return fmt.Errorf("alert: %s: %w", path, err)
		}
		if _, _, err := e.putRuleLocked(rc.Name, spec, sev, false); err != nil {
			return fmt.Errorf("alert: %s: %w", path, err)
		}
	}
	e.opts.Logger.Info("alert configuration loaded", "file", path, "zones", len(doc.Zones), "rules", len(doc.Rules))
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

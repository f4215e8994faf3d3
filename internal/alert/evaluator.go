package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/fence"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/rules"
	"github.com/fleetd/fleetd/internal/vfs"
)

// Limits.
const (
	// MaxRules caps the number of rules.
	MaxRules = 100_000
	// MaxNameLen is the longest rule name, in bytes.
	MaxNameLen = 64
	// MaxFor is the longest "for" duration.
	MaxFor = 365 * 24 * time.Hour
	// cacheSize is the compiled-program cache's capacity.
	cacheSize = 4096
)

// Errors the API maps to statuses. Each is wrapped with a message naming
// what was wrong; test with errors.Is.
var (
	// ErrInvalid marks bad input: a name, severity, duration, GeoJSON or
	// rule source (rule compile errors are also *rules.Error).
	ErrInvalid = errors.New("alert: invalid input")
	// ErrNotFound is returned for an unknown rule or zone.
	ErrNotFound = errors.New("alert: not found")
	// ErrInUse is returned by DeleteZone while rules name the zone; the
	// error is a *ZoneInUseError.
	ErrInUse = errors.New("alert: zone in use")
	// ErrLimit is returned when MaxRules rules exist, or the zone registry
	// is full.
	ErrLimit = errors.New("alert: limit reached")
	// ErrPersist wraps a failure to save the configuration; nothing was
	// changed.
	ErrPersist = errors.New("alert: could not save the configuration")
)

// inputError is an ErrInvalid with its own message.
type inputError struct{ err error }

func (e *inputError) Error() string          { return e.err.Error() }
func (e *inputError) Unwrap() []error        { return []error{e.err, ErrInvalid} }
func invalidf(format string, a ...any) error { return &inputError{fmt.Errorf(format, a...)} }

// ZoneInUseError is DeleteZone's refusal: Rules name the zone.
type ZoneInUseError struct {
	Zone  string
	Rules []string // sorted
}

func (e *ZoneInUseError) Error() string {
	return fmt.Sprintf("alert: zone %q is used by rules %q; delete or change them first", e.Zone, e.Rules)
}

func (e *ZoneInUseError) Is(target error) bool { return target == ErrInUse }

// Severities, in order.
var severities = [...]string{"info", "warning", "critical"}

const defaultSeverity = "warning"

// RuleSpec is what a client gives for a rule. In JSON:
//
//	{"when": "speed > 90", "for": "30s", "severity": "warning"}
//
// "for" is a Go duration string ("30s", "1m30s"; absent or "" means 0);
// severity is "info", "warning" (the default) or "critical".
type RuleSpec struct {
	When     string
	For      time.Duration
	Severity string
}

type ruleSpecJSON struct {
	When     string `json:"when"`
	For      string `json:"for"`
	Severity string `json:"severity"`
}

// MarshalJSON writes the spec with "for" as a duration string.
func (s RuleSpec) MarshalJSON() ([]byte, error) {
	return json.Marshal(ruleSpecJSON{When: s.When, For: s.For.String(), Severity: s.Severity})
}

// UnmarshalJSON reads the spec, refusing unknown fields and bad
// durations with ErrInvalid.
func (s *RuleSpec) UnmarshalJSON(data []byte) error {
	var j ruleSpecJSON
	if err := strictUnmarshal(data, &j); err != nil {
		return invalidf("alert: rule: %v", err)
	}
	*s = RuleSpec{When: j.When, Severity: j.Severity}
	if j.For != "" {
		d, err := time.ParseDuration(j.For)
		if err != nil {
			return invalidf("alert: rule: \"for\": %v", err)
		}
		s.For = d
	}
	return nil
}

// Rule is a stored rule.
type Rule struct {
	Name string
	RuleSpec
	Program *rules.Program
}

// Alert is one transition of a rule for a truck, or (from Firing) an
// alert firing now.
type Alert struct {
	Rule     string
	ID       string // truck ID
	State    string // "firing" or "resolved"
	Severity string
	// Since is when the condition became true (the first update of the
	// run); TS, Lat and Lon are the update that made the transition. For a
	// resolve by Removed they are the truck's last position, for one by
	// DeleteRule the position it fired at.
	Since, TS uint32
	Lat, Lon  int32 // 1e-7 degree
	// Reason is empty for a transition caused by an update, else why the
	// alert was resolved without one: "truck deleted", "truck expired",
	// "rule deleted" or "rule replaced".
	Reason string
	// Zone is set for a rule whose whole condition is inside("zone"):
	// its firing is the truck entering the zone and its resolve by an
	// update (Reason "") the truck leaving it (package sink's
	// zone.entered and zone.left).
	Zone string
}

// Alert states.
const (
	StateFiring   = "firing"
	StateResolved = "resolved"
)

// Options configures an Evaluator.
type Options struct {
	// FS is the filesystem for Dir (default vfs.Default).
	FS vfs.FS
	// Dir holds the configuration (zones and rules) as config.json; ""
	// keeps it in memory only.
	Dir string
	// Logger receives load and save messages (default slog.Default()).
	Logger *slog.Logger
	// Emit is called for each transition, outside every lock, from the
	// goroutine that called Applied, Removed or DeleteRule/PutRule; it must
	// be safe for concurrent use. nil drops them (Firing still lists
	// what is firing).
	Emit func(a Alert)
	// Sync, when set, is called once after a call of Applied, Removed
	// (of a deleted truck, not an expired one: no one waits for an
	// expiry), DeleteRule or PutRule emitted transitions, on the same
	// goroutine, before that call returns (never when it emitted none). The server
	// makes the sinks' outboxes durable there (sink.Dispatcher.Sync), so
	// that the acknowledgement of an update covers the events it caused.
	Sync func()
	// MaxPairs bounds the (rule, truck) pairs whose condition is true
	// (pending or firing), DefaultMaxPairs if 0: a rule that becomes true
	// for a truck while the truck's stripe holds its share
	// (MaxPairs/64) is not tracked for that update, counted in
	// Stats.PairsShed and logged. Rules that are true for most of a large
	// fleet at once (a misconfiguration) then cost bounded memory.
	MaxPairs int
}

// DefaultMaxPairs is Options.MaxPairs's default: 4 Mi pairs. A firing
// pair of a truck with one costs ~150 bytes of heap with its table entry,
// firing record, truck ID and the tables' growth room (measured: 247k
// pairs, +38 MB in BenchmarkServeIngestRules10k), fewer per pair for
// trucks with several: at most ~600 MB when full. A fleet's rules are
// typically true for a few trucks each.
const DefaultMaxPairs = 4 << 20

// Evaluator holds the zones and rules, evaluates the rules on every applied
// update (it is an fleet.Observer) and keeps per-(rule, truck) state.
// It is safe for concurrent use and starts no goroutines of its own
// beyond the short-lived workers of one large Applied call.
type Evaluator struct {
	opts  Options
	zones fence.Set
	cache *rules.Cache

	// idx is the evaluation state, read by Applied, Removed and
	// FiringPage holding evalMu shared and changed in place by writers
	// holding it exclusively (and cfg), only for the change itself, so a
	// batch never mixes two configurations and, once a change returns, no
	// batch still uses the old one.
	idx    *ruleIndex
	evalMu sync.RWMutex
	// nRules is idx.n, for the lock-free "no rules" test of Applied and
	// Removed; byName maps a rule's name to its *liveRule, for GetRule and
	// Rules without a lock. Both change with idx.
	nRules, nZoned atomic.Int64
	byName         sync.Map

	// cfg serialises writers: zones and rules changes, and the change log.
	cfg struct {
		sync.Mutex
		rules    map[string]*liveRule
		zoneUse  map[int]int       // zone ID → how many rules name it (DeleteZone's check)
		zoneJSON map[string][]byte // name → the zone's GeoJSON, for compaction
		gens     []uint8           // slot → generation of its last rule
		free     []uint32          // free slots
		log      changeLog         // the change log in Dir, if any
	}

	stripes [numStripes]stripe

	evals, fired, resolved atomic.Uint64
	pairsShed              atomic.Uint64
	stripePairs            int          // Options.MaxPairs / numStripes
	shedLog                atomic.Int64 // Unix nanoseconds of the last shedding log line
	firingNow, updates     atomic.Int64

	scratch sync.Pool // *scratch
}

var _ fleet.Observer = (*Evaluator)(nil)

// New builds an Evaluator and loads the configuration saved in o.Dir.
func New(o Options) (*Evaluator, error) {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxPairs <= 0 {
		o.MaxPairs = DefaultMaxPairs
	}
	e := &Evaluator{opts: o, cache: rules.NewCache(cacheSize), stripePairs: max(1, o.MaxPairs/numStripes)}
	e.idx = newRuleIndex(&e.zones)
	e.cfg.rules = map[string]*liveRule{}
	e.cfg.zoneJSON = map[string][]byte{}
	e.cfg.zoneUse = map[int]int{}
	for i := range e.stripes {
		e.stripes[i].mu.Lock()
		e.stripes[i].initLocked()
		e.stripes[i].mu.Unlock()
	}
	if o.Dir != "" {
		if err := e.load(); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Stats are the engine's figures.
type Stats struct {
	Rules, Zones int
	ZoneRules    int    // rules with a zone guard (indexed by the grid)
	Updates      uint64 // changed updates seen by Applied
	Evaluations  uint64 // rule evaluations (Program.Eval calls)
	Fired        uint64 // firing transitions
	Resolved     uint64 // resolved transitions
	FiringNow    int64
	StateEntries int64  // (rule, truck) pairs whose condition is true now
	StateTrucks  int64  // trucks with at least one pair
	StateBytes   int64  // memory of the state tables and the firing registry
	PairsShed    uint64 // rules found true but not tracked: Options.MaxPairs reached
	Cache        rules.CacheStats
}

// Stats returns the engine's figures; it takes each stripe's lock briefly.
func (e *Evaluator) Stats() Stats {
	st := Stats{
		Rules:       int(e.nRules.Load()),
		ZoneRules:   int(e.nZoned.Load()),
		Zones:       e.zones.Len(),
		Updates:     uint64(e.updates.Load()),
		Evaluations: e.evals.Load(),
		Fired:       e.fired.Load(),
		Resolved:    e.resolved.Load(),
		FiringNow:   e.firingNow.Load(),
		PairsShed:   e.pairsShed.Load(),
		Cache:       e.cache.Stats(),
	}
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		st.StateEntries += int64(s.mu.pairs)
		st.StateTrucks += int64(s.mu.used)
		st.StateBytes += s.memLocked()
		s.mu.Unlock()
	}
	return st
}

// forSeconds rounds a duration up to whole seconds (timestamps are
// seconds, so "for 1.5s" means 2 s between updates).
func forSeconds(d time.Duration) uint32 {
	return uint32(min((d+time.Second-1)/time.Second, math.MaxUint32))
}

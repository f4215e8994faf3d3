package alert

import (
	"flag"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/vfs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var seedFlag = flag.Uint64("seed", 0, "seed of the randomized tests (0: from the clock); each test logs the seed it used")

// testSeed returns the seed for a randomized test and logs it for replay.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	return seed
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder collects emitted alerts.
type recorder struct {
	mu sync.Mutex
	as []Alert
}

func (r *recorder) emit(a Alert) {
	r.mu.Lock()
	r.as = append(r.as, a)
	r.mu.Unlock()
}

// take returns and forgets what was emitted, as "state rule id reason" lines.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range r.as {
		s := a.State + " " + a.Rule + " " + a.ID
		if a.Reason != "" {
			s += " (" + a.Reason + ")"
		}
		out = append(out, s)
	}
	r.as = nil
	slices.Sort(out)
	return out
}

func (r *recorder) alerts() []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	as := r.as
	r.as = nil
	return as
}

// rig is an alert Evaluator observing a real in-memory fleet engine.
type rig struct {
	t   testing.TB
	al  *Evaluator
	eng *engine.Engine
	rec *recorder
	fs  *vfs.MemFS
	now time.Time
}

func newRig(t testing.TB, o engine.Options) *rig {
	t.Helper()
	return newRigWith(t, o, Options{})
}

// newRigWith is newRig with the Evaluator's options ao (its FS, Dir,
// Logger and Emit are the rig's).
func newRigWith(t testing.TB, o engine.Options, ao Options) *rig {
	t.Helper()
	g := &rig{t: t, rec: &recorder{}, fs: vfs.NewMem(), now: time.Unix(1_764_000_000, 0)}
	ao.FS, ao.Dir, ao.Logger, ao.Emit = g.fs, "cfg", quiet, g.rec.emit
	al, err := New(ao)
	if err != nil {
		t.Fatal(err)
	}
	g.al = al
	o.Observers = []fleet.Observer{al}
	o.Logger = quiet
	if o.Now == nil {
		o.Now = func() time.Time { return g.now }
	}
	if o.SweepEvery == 0 {
		o.SweepEvery = time.Hour
	}
	eng, err := engine.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	g.eng = eng
	return g
}

// move applies one update: truck id at (lat, lon) with speed, ts = base + dt.
func (g *rig) move(id string, dt int64, lat, lon, speed float64) {
	g.t.Helper()
	p := fleet.MakePosition(lat, lon, 1_764_000_000+dt, speed, 90)
	if _, err := g.eng.Apply([]fleet.Update{{ID: []byte(id), Position: p}}); err != nil {
		g.t.Fatal(err)
	}
}

func (g *rig) zone(name, geojson string) {
	g.t.Helper()
	if _, err := g.al.PutZone(name, strings.NewReader(geojson)); err != nil {
		g.t.Fatal(err)
	}
}

func (g *rig) rule(name, when string, forDur time.Duration) {
	g.t.Helper()
	if _, err := g.al.PutRule(name, RuleSpec{When: when, For: forDur}); err != nil {
		g.t.Fatalf("PutRule(%q, %q): %v", name, when, err)
	}
}

// want checks the alerts emitted since the last call.
func (g *rig) want(step string, want ...string) {
	g.t.Helper()
	got := g.rec.take()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		g.t.Fatalf("%s: emitted\n\t%q\nwant\n\t%q", step, got, want)
	}
	if err := g.al.Check(); err != nil {
		g.t.Fatalf("%s: %v", step, err)
	}
}

// rect is a GeoJSON Polygon for a lat/lon rectangle.
func rect(minLat, minLon, maxLat, maxLon float64) string {
	return fmtRect(minLat, minLon, maxLat, maxLon)
}

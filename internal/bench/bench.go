package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/store"
)

// Options configures a run.
type Options struct {
	Trucks   int           // fleet size (default 1,000,000)
	Duration time.Duration // per throughput measurement (default 2s)
	Seed     uint64
}

// Layout is what one layout costs.
type Layout struct {
	BytesPerTruck  float64 `json:"bytes_per_truck"`
	HeapObjects    int64   `json:"heap_objects"`
	GCCycleMs      float64 `json:"gc_cycle_ms"`     // median wall time of a forced full collection
	GCPauseMaxMs   float64 `json:"gc_pause_max_ms"` // longest stop-the-world pause seen in those cycles
	UpdatesPerSec1 float64 `json:"updates_per_sec_1_core"`
	UpdatesPerSecN float64 `json:"updates_per_sec_all_cores"`
}

// Report is the result of Run.
type Report struct {
	Trucks int    `json:"trucks"`
	Cores  int    `json:"cores"`
	Naive  Layout `json:"naive"`
	Engine Layout `json:"engine"`
	// EngineStats is the engine's own accounting by component.
	EngineStats store.Stats `json:"engine_stats"`
}

// fleet is the benchmark fleet: IDs truck-0000000… uniformly over the
// continental US, plus a second position set a short drive away, so that
// alternating passes move every truck.
type fleet struct {
	a, b []store.Update
}

func makeFleet(n int, seed uint64) fleet {
	r := rand.New(rand.NewPCG(seed, 1))
	f := fleet{a: make([]store.Update, n), b: make([]store.Update, n)}
	ids := make([]byte, 0, n*13)
	for i := range n {
		start := len(ids)
		ids = fmt.Appendf(ids, "truck-%07d", i)
		id := ids[start:len(ids):len(ids)]
		lat, lon := 25+r.Float64()*24, -124+r.Float64()*57
		f.a[i] = store.Update{ID: id, Position: store.MakePosition(lat, lon, 1_764_000_000, r.Float64()*110, float64(r.IntN(360)))}
		lat2, lon2 := geo.Destination(lat, lon, r.Float64()*360, r.Float64()*1000)
		f.b[i] = store.Update{ID: id, Position: store.MakePosition(lat2, lon2, 1_764_000_000, r.Float64()*110, float64(r.IntN(360)))}
	}
	// Updates arrive in random truck order.
	r.Shuffle(n, func(i, j int) { f.a[i], f.a[j] = f.a[j], f.a[i] })
	r.Shuffle(n, func(i, j int) { f.b[i], f.b[j] = f.b[j], f.b[i] })
	return f
}

func settle() runtime.MemStats {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms
}

// applier is what a layout offers the throughput loop.
type applier interface{ apply([]store.Update) }

type engineLayout struct{ s *store.Store }

func (e engineLayout) apply(b []store.Update) { e.s.Apply(b) }

// naiveLayout is the obvious design: the map behind one mutex, which is
// what a GIL amounts to.
type naiveLayout struct {
	mu sync.Mutex
	m  *store.Naive
}

func (n *naiveLayout) apply(b []store.Update) {
	n.mu.Lock()
	n.m.Apply(b)
	n.mu.Unlock()
}

// Run measures both layouts and returns the report. It takes a few times
// Duration plus the time to build the fleets; progress, if not nil, gets a
// line per step.
func Run(o Options, progress io.Writer) (Report, error) {
	if o.Trucks <= 0 {
		o.Trucks = 1_000_000
	}
	if o.Duration <= 0 {
		o.Duration = 2 * time.Second
	}
	say := func(format string, a ...any) {
		if progress != nil {
			fmt.Fprintf(progress, format+"\n", a...)
		}
	}
	cores := runtime.GOMAXPROCS(0)
	rep := Report{Trucks: o.Trucks, Cores: cores}
	say("building a fleet of %d trucks", o.Trucks)
	f := makeFleet(o.Trucks, o.Seed)

	say("naive layout: map[string]*Truck behind one mutex")
	base := settle()
	nv := &naiveLayout{m: store.NewNaive()}
	nv.apply(f.a)
	rep.Naive = measureLayout(base, nv, f, o.Duration, cores)
	runtime.KeepAlive(nv)
	nv = nil

	say("engine layout: sharded pointer-free slabs")
	base = settle()
	s, err := store.New(store.Options{})
	if err != nil {
		return rep, err
	}
	s.Apply(f.a)
	rep.Engine = measureLayout(base, engineLayout{s}, f, o.Duration, cores)
	rep.EngineStats = s.Stats()
	runtime.KeepAlive(s)
	return rep, nil
}

func measureLayout(base runtime.MemStats, l applier, f fleet, d time.Duration, cores int) Layout {
	var out Layout
	after := settle()
	n := float64(len(f.a))
	out.BytesPerTruck = (float64(after.HeapAlloc) - float64(base.HeapAlloc)) / n
	out.HeapObjects = int64(after.HeapObjects) - int64(base.HeapObjects)
	out.GCCycleMs, out.GCPauseMaxMs = gcCost()
	prev := runtime.GOMAXPROCS(1)
	out.UpdatesPerSec1 = throughput(l, f, d, 1)
	runtime.GOMAXPROCS(prev)
	out.UpdatesPerSecN = throughput(l, f, d, cores)
	return out
}

// gcCost forces a few full collections and returns the median cycle's wall
// time and the longest stop-the-world pause among them.
func gcCost() (cycleMs, pauseMaxMs float64) {
	const cycles = 5
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	times := make([]float64, cycles)
	for i := range times {
		t := time.Now()
		runtime.GC()
		times[i] = float64(time.Since(t)) / 1e6
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	for i := before.NumGC; i < after.NumGC; i++ {
		p := float64(after.PauseNs[(i+255)%256]) / 1e6
		pauseMaxMs = max(pauseMaxMs, p)
	}
	slices.Sort(times)
	return times[cycles/2], pauseMaxMs
}

// throughput applies 10,000-update batches from `workers` goroutines for d,
// alternating position sets so every update moves its truck.
func throughput(l applier, f fleet, d time.Duration, workers int) float64 {
	const batch = 10_000
	var done atomic.Int64
	var next atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	nb := int64(len(f.a) / batch)
	if nb == 0 {
		nb = 1
	}
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				k := next.Add(1) - 1
				set := f.a
				if (k/nb)%2 == 1 {
					set = f.b
				}
				lo := int(k%nb) * batch
				hi := min(lo+batch, len(set))
				l.apply(set[lo:hi])
				done.Add(int64(hi - lo))
			}
		})
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds()
}

// Print writes the report as a table.
func (r Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "fleet of %d trucks, %d cores\t\t\t\t\n", r.Trucks, r.Cores)
	fmt.Fprintf(tw, "\tnaive map[string]*Truck\tfleetd engine\tratio\t\n")
	row := func(name, unit string, a, b float64, prec int) {
		ratio := "-"
		if a > 0 && b > 0 {
			ratio = fmt.Sprintf("%.1fx", max(a/b, b/a))
		}
		fmt.Fprintf(tw, "%s\t%.*f %s\t%.*f %s\t%s\t\n", name, prec, a, unit, prec, b, unit, ratio)
	}
	row("memory per truck", "B", r.Naive.BytesPerTruck, r.Engine.BytesPerTruck, 1)
	row("heap objects", "", float64(r.Naive.HeapObjects), float64(r.Engine.HeapObjects), 0)
	row("full GC cycle", "ms", r.Naive.GCCycleMs, r.Engine.GCCycleMs, 2)
	row("longest GC pause", "ms", r.Naive.GCPauseMaxMs, r.Engine.GCPauseMaxMs, 3)
	row("updates/s, 1 core", "", r.Naive.UpdatesPerSec1, r.Engine.UpdatesPerSec1, 0)
	row(fmt.Sprintf("updates/s, %d cores", r.Cores), "", r.Naive.UpdatesPerSecN, r.Engine.UpdatesPerSecN, 0)
	sp := func(l Layout) float64 {
		if l.UpdatesPerSec1 == 0 {
			return 0
		}
		return l.UpdatesPerSecN / l.UpdatesPerSec1
	}
	fmt.Fprintf(tw, "speedup 1 → %d cores\t%.2fx\t%.2fx\t\t\n", r.Cores, sp(r.Naive), sp(r.Engine))
	tw.Flush()
	st := r.EngineStats
	fmt.Fprintf(w, "\nengine memory by component (from its own structures):\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, c := range []struct {
		name string
		v    int64
	}{{"records", st.Records}, {"ID dictionary", st.IDs}, {"spatial index", st.Index}, {"free lists", st.FreeLists}, {"spare capacity", st.Spare}, {"total", st.Total}} {
		fmt.Fprintf(tw, "  %s\t%.1f MB\t%.1f B/truck\t\n", c.name, float64(c.v)/1e6, float64(c.v)/float64(max(st.Trucks, 1)))
	}
	tw.Flush()
}

package store

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/fleetd/fleetd/internal/geo"
)

// The benchmark fleet: IDs truck-0000000… spread uniformly over the
// continental US, as the core-engine issue specifies.
const benchTrucks = 1_000_000

func usPoint(r *rand.Rand) (float64, float64) {
	return 25 + r.Float64()*24, -124 + r.Float64()*57
}

func benchUpdates(n int, seed uint64) []Update {
	r := rand.New(rand.NewPCG(seed, 3))
	u := make([]Update, n)
	for i := range u {
		lat, lon := usPoint(r)
		u[i] = Update{ID: fmt.Appendf(nil, "truck-%07d", i), Position: MakePosition(lat, lon, 1_764_000_000, r.Float64()*110, float64(r.IntN(360)))}
	}
	return u
}

var (
	benchOnce  sync.Once
	benchStore *Store
	benchFleet []Update
)

func loadBench(b *testing.B) (*Store, []Update) {
	benchOnce.Do(func() {
		benchFleet = benchUpdates(benchTrucks, 1)
		benchStore = mustNew(b, Options{})
		benchStore.Apply(benchFleet)
	})
	return benchStore, benchFleet
}

func heapNow() runtime.MemStats {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms
}

// BenchmarkMemory measures what 1M trucks cost on the heap, engine vs the
// obvious map[string]*Truck, side by side.
func BenchmarkMemory(b *testing.B) {
	updates := benchUpdates(benchTrucks, 2)
	b.Run("engine", func(b *testing.B) {
		b.ReportAllocs()
		var st Stats
		var bytes, objects float64
		for i := 0; i < b.N; i++ {
			before := heapNow()
			s := mustNew(b, Options{})
			s.Apply(updates)
			after := heapNow()
			bytes = float64(after.HeapAlloc - before.HeapAlloc)
			objects = float64(after.HeapObjects) - float64(before.HeapObjects)
			st = s.Stats()
			runtime.KeepAlive(s)
		}
		b.ReportMetric(bytes/benchTrucks, "bytes/truck")
		b.ReportMetric(objects, "heap-objects")
		b.ReportMetric(st.BytesPerTruck, "stats-bytes/truck")
	})
	b.Run("naive-map", func(b *testing.B) {
		b.ReportAllocs()
		var bytes, objects float64
		for i := 0; i < b.N; i++ {
			before := heapNow()
			m := NewNaive()
			m.Apply(updates)
			after := heapNow()
			bytes = float64(after.HeapAlloc - before.HeapAlloc)
			objects = float64(after.HeapObjects) - float64(before.HeapObjects)
			runtime.KeepAlive(m)
		}
		b.ReportMetric(bytes/benchTrucks, "bytes/truck")
		b.ReportMetric(objects, "heap-objects")
	})
}

// moveSets returns two position sets of the fleet a small move (up to
// ~1 km) apart, each in random truck order: passes alternate between them
// so every update moves its truck, and some cross into a new cell.
func moveSets(fleet []Update, seed uint64) [2][]Update {
	r := rand.New(rand.NewPCG(seed, seed))
	var sets [2][]Update
	for k := range sets {
		sets[k] = make([]Update, len(fleet))
		for i, j := range r.Perm(len(fleet)) {
			u := fleet[j]
			if k == 1 {
				lat, lon := geo.Destination(u.LatDeg(), u.LonDeg(), r.Float64()*360, r.Float64()*1000)
				u.Position = MakePosition(lat, lon, int64(u.TS), r.Float64()*110, float64(r.IntN(360)))
			}
			sets[k][i] = u
		}
	}
	return sets
}

// BenchmarkApply moves every truck of the 1M fleet by up to ~1 km, in
// random truck order, in batches of 10,000: one op is one batch. Run it with
// -cpu 1,2 for the per-core speedup.
func BenchmarkApply(b *testing.B) {
	s, fleet := loadBench(b)
	sets := moveSets(fleet, 9)
	const batch = 10_000
	b.ReportAllocs()
	b.ResetTimer()
	off, pass := 0, 0
	for i := 0; i < b.N; i++ {
		if off+batch > len(fleet) {
			off, pass = 0, pass+1
		}
		s.Apply(sets[pass%2][off : off+batch])
		off += batch
	}
	b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkApplyConcurrent is BenchmarkApply with batches arriving from
// several goroutines at once, as they do from a server's connections: one
// op is one 10,000-update batch. Run with -cpu 1,2.
func BenchmarkApplyConcurrent(b *testing.B) {
	s, fleet := loadBench(b)
	sets := moveSets(fleet, 10)
	const batch = 10_000
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := int(next.Add(1) - 1)
			off := (k * batch) % len(fleet)
			s.Apply(sets[(k*batch/len(fleet))%2][off : off+batch])
		}
	})
	b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkApplyAppliers is a cluster node's apply: eight goroutines (its
// partition appliers) each applying 4,096-update batches, more goroutines
// than cores. cpu-ns/update is the process's CPU time (user+system) per
// update, which counts workers spinning at barriers that throughput
// alone would hide.
func BenchmarkApplyAppliers(b *testing.B) {
	s, fleet := loadBench(b)
	sets := moveSets(fleet, 11)
	const batch, appliers = 4096, 8
	var next atomic.Int64
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range appliers {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= b.N {
					return
				}
				off := (k * batch) % (len(fleet) - batch)
				s.Apply(sets[(k*batch/len(fleet))%2][off : off+batch])
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	n := float64(b.N) * batch
	b.ReportMetric(float64(cpuTime(b)-cpu0)/n, "cpu-ns/update")
	b.ReportMetric(n/b.Elapsed().Seconds(), "updates/s")
}

// cpuTime is the process's user and system CPU time so far, in ns.
func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func BenchmarkNearest10(b *testing.B) {
	s, _ := loadBench(b)
	r := rand.New(rand.NewPCG(5, 5))
	dst := make([]Hit, 0, 10)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lat, lon := usPoint(r)
		dst = s.Nearest(lat, lon, 10, 0, dst[:0])
	}
}

func BenchmarkWithin5km(b *testing.B) {
	s, _ := loadBench(b)
	r := rand.New(rand.NewPCG(6, 6))
	b.ReportAllocs()
	b.ResetTimer()
	hits := 0
	for i := 0; i < b.N; i++ {
		lat, lon := usPoint(r)
		for range s.Within(Circle(lat, lon, 5000)) {
			hits++
		}
	}
	b.ReportMetric(float64(hits)/float64(b.N), "hits/op")
}

func BenchmarkGet(b *testing.B) {
	s, fleet := loadBench(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Get(fleet[i%len(fleet)].ID)
	}
}

// BenchmarkNearest10Parallel runs BenchmarkNearest10's queries from every
// P at once, at several shard counts: a query read-locks every shard, so
// the locks' cache lines move between cores on each query, a cost the
// single-goroutine benchmark does not see.
func BenchmarkNearest10Parallel(b *testing.B) {
	_, fleet := loadBench(b)
	for _, n := range []int{2, 4, 8} {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) {
			s := mustNew(b, Options{Shards: n})
			s.Apply(fleet)
			var seed atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(seed.Add(1), 5))
				dst := make([]Hit, 0, 10)
				for pb.Next() {
					lat, lon := usPoint(r)
					dst = s.Nearest(lat, lon, 10, 0, dst[:0])
				}
			})
		})
	}
}

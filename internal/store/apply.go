package store

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// applyScratch is the per-batch working memory of Apply, pooled.
type applyScratch struct {
	hashes  []uint64
	order   []int32 // batch indexes grouped by shard
	starts  []int32 // shard i's group is order[starts[i]:starts[i+1]]
	counts  []int32 // per worker, per shard
	results []Result
	run     applyRun
}

// Apply stores a batch of updates: new trucks are inserted, known trucks
// move unless the update is older than what is stored. The batch is grouped
// by shard and the groups are applied in parallel, each under its shard's
// lock. Apply makes no allocations in steady state.
func (s *Store) Apply(batch []Update) Result {
	return s.ApplyFunc(batch, nil)
}

// ApplyFunc is Apply with a hook: fn, if not nil, is called for every
// update that changed the store, with its index in batch and the truck's
// previous position (ok is false for a new truck). It runs under the
// shard's write lock, on one of Apply's goroutines, so it must be quick
// and safe for concurrent use (calls never share an index).
func (s *Store) ApplyFunc(batch []Update, fn func(i int, prev Position, ok bool)) Result {
	sc, _ := s.scratch.Get().(*applyScratch)
	if sc == nil {
		sc = &applyScratch{}
	}
	defer s.scratch.Put(sc)

	nsh := len(s.shards)
	busy := s.applying.Add(1)
	defer s.applying.Add(-1)
	workers := s.parallelism(len(batch), busy)
	if cap(sc.hashes) < len(batch) {
		sc.hashes = make([]uint64, len(batch))
		sc.order = make([]int32, len(batch))
	}
	if len(sc.results) != nsh || len(sc.counts) < workers*nsh {
		sc.starts = make([]int32, nsh+1)
		sc.results = make([]Result, nsh)
		sc.counts = make([]int32, max(workers, runtime.GOMAXPROCS(0))*nsh)
	}
	b := &sc.run
	*b = applyRun{s: s, batch: batch, fn: fn, sc: sc, workers: workers,
		hashes: sc.hashes[:len(batch)], order: sc.order[:len(batch)]}
	defer func() { b.batch, b.fn = nil, nil }()
	clear(sc.results)
	if workers <= 1 {
		b.run(0)
	} else {
		// One goroutine per extra core for the whole batch: the phases
		// meet at spinning barriers rather than new goroutines, since
		// waking a parked core costs as much as applying hundreds of
		// updates.
		var wg sync.WaitGroup
		for w := 1; w < workers; w++ {
			wg.Go(func() { b.run(w) })
		}
		b.run(0)
		wg.Wait()
	}
	var total Result
	for i := range sc.results {
		total.Add(sc.results[i])
	}
	return total
}

// applyRun is one ApplyFunc call shared by its workers.
type applyRun struct {
	s       *Store
	batch   []Update
	fn      func(int, Position, bool)
	sc      *applyScratch
	workers int
	hashes  []uint64
	order   []int32
	counted atomic.Int32 // workers done with phase 1
	placed  atomic.Int32 // workers done with phase 2
	next    atomic.Int32 // next shard to apply in phase 3
}

// run is worker w's part. Phase 1 hashes its contiguous chunk of the batch
// and counts updates per shard; phase 2 places its chunk's indexes into
// order (a counting sort: shard by shard, and within a shard in batch
// order, since chunks are ascending); phase 3 applies whole shards,
// claimed one at a time.
func (b *applyRun) run(w int) {
	s, sc, nsh := b.s, b.sc, len(b.s.shards)
	per := (len(b.batch) + b.workers - 1) / b.workers
	lo, hi := min(w*per, len(b.batch)), min((w+1)*per, len(b.batch))
	cnt := sc.counts[w*nsh : (w+1)*nsh]
	clear(cnt)
	for i := lo; i < hi; i++ {
		h := s.hash(b.batch[i].ID)
		b.hashes[i] = h
		cnt[s.shardOf(h)]++
	}
	spinUntil(&b.counted, b.workers)

	// Where worker w's updates for shard k go: after every shard before k,
	// and after the earlier workers' updates for shard k.
	var cursor [256]int32
	pos := int32(0)
	for k := 0; k < nsh; k++ {
		cursor[k] = pos
		for v := 0; v < b.workers; v++ {
			c := sc.counts[v*nsh+k]
			if v < w {
				cursor[k] += c
			}
			pos += c
		}
		if w == 0 {
			sc.starts[k+1] = pos
		}
	}
	for i := lo; i < hi; i++ {
		k := s.shardOf(b.hashes[i])
		b.order[cursor[k]] = int32(i)
		cursor[k]++
	}
	spinUntil(&b.placed, b.workers)

	for {
		k := int(b.next.Add(1) - 1)
		if k >= nsh {
			return
		}
		if from, to := sc.starts[k], sc.starts[k+1]; from < to {
			sc.results[k] = s.shards[k].apply(b.batch, b.hashes, b.order[from:to], b.fn)
		}
	}
}

// spinUntil counts the caller in at a barrier and waits, yielding, for
// all n workers to arrive. The waits are microseconds: every worker is
// already running.
func spinUntil(c *atomic.Int32, n int) {
	c.Add(1)
	for c.Load() < int32(n) {
		runtime.Gosched()
	}
}

// apply runs one shard's group of a batch under its write lock.
func (sh *shard) apply(batch []Update, hashes []uint64, idx []int32, fn func(int, Position, bool)) Result {
	var res Result
	heard := sh.st.heardBits()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for k, i := range idx {
		if k%touchAhead == 0 {
			sh.touch(batch, hashes, idx[k:min(k+touchAhead, len(idx))])
		}
		u := &batch[i]
		if len(u.ID) == 0 || len(u.ID) > MaxIDLen || !validPosition(u) {
			res.Invalid++
			continue
		}
		h := hashes[i]
		slot, pos, ok := sh.lookup(u.ID, h)
		if !ok {
			slot, err := sh.insertLocked(u.ID, h, pos, &u.Position)
			if err != nil {
				res.Refused++
				continue
			}
			sh.attrs.set(slot, &u.Attrs)
			res.Inserted++
			if fn != nil {
				fn(int(i), Position{}, false)
			}
			continue
		}
		r := sh.rec(slot)
		if u.TS < r.ts {
			r.hear(heard)
			res.Stale++
			continue
		}
		prev := r.pos()
		if r.lat != u.Lat || r.lon != u.Lon {
			sh.moveLocked(slot, r.lat, r.lon, &u.Position)
		}
		r.set(&u.Position, heard)
		sh.attrs.set(slot, &u.Attrs)
		res.Updated++
		if fn != nil {
			fn(int(i), prev, true)
		}
	}
	return res
}

// touchAhead is how many updates touch takes at a time.
const touchAhead = 16

// touch loads the table entries the updates of idx hash to and their
// IDs' first bytes, then the records those entries point to, so that
// apply finds them in cache. At a million trucks each is a cache miss
// (the table is megabytes, the records tens), and apply's own loop, long
// and dependent on each load, took them one at a time: the table probe
// was 14% of the server's CPU in the sustained ingest run. Here the loads
// of 16 updates are independent and in flight together
// (BenchmarkApply, AMD EPYC 2-vCPU VM, 3 alternated runs: 2.06M → 3.49M
// updates/s on one core; BenchmarkApplyAppliers 445 → 298 CPU ns an
// update). What it loads is a hint only: an insert that grows the
// table, a collision or a wrong tag merely misses the cache.
func (sh *shard) touch(batch []Update, hashes []uint64, idx []int32) {
	var ents [touchAhead]uint32
	sum := uint32(0)
	for j, i := range idx {
		ents[j] = sh.table[sh.homeOf(hashes[i])]
		if id := batch[i].ID; len(id) > 0 { // IDs decoded one by one may lie anywhere
			sum += uint32(id[0])
		}
	}
	for j, i := range idx {
		if e := ents[j]; e != 0 && e>>24 == tagOf(hashes[i]) {
			sum += uint32(sh.rec(e&maxSlots - 1).id[0])
		}
	}
	sh.touched += sum // kept, so that the loads are too
}

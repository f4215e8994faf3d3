package store

import (
	"sync"
	"sync/atomic"
)

// applyScratch is the per-batch working memory of Apply, pooled.
type applyScratch struct {
	hashes  []uint64
	order   []int32 // batch indexes grouped by shard
	starts  []int32 // shard i's group is order[starts[i]:starts[i+1]]
	results []Result
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
	if cap(sc.hashes) < len(batch) {
		sc.hashes = make([]uint64, len(batch))
		sc.order = make([]int32, len(batch))
	}
	hashes, order := sc.hashes[:len(batch)], sc.order[:len(batch)]
	if len(sc.starts) != nsh+1 {
		sc.starts = make([]int32, nsh+1)
		sc.results = make([]Result, nsh)
	}
	starts := sc.starts
	clear(starts)
	workers := s.parallelism(len(batch))
	// Counting sort by shard: hash (in parallel for big batches), count,
	// place. Hashing is the costly part; the rest is a few ns an update.
	if workers > 1 {
		var wg sync.WaitGroup
		per := (len(batch) + workers - 1) / workers
		for w := 0; w < workers; w++ {
			lo, hi := w*per, min((w+1)*per, len(batch))
			wg.Go(func() {
				for i := lo; i < hi; i++ {
					hashes[i] = s.hash(batch[i].ID)
				}
			})
		}
		wg.Wait()
	} else {
		for i := range batch {
			hashes[i] = s.hash(batch[i].ID)
		}
	}
	for i := range batch {
		starts[s.shardOf(hashes[i])+1]++
	}
	for i := 1; i <= nsh; i++ {
		starts[i] += starts[i-1]
	}
	var cursor [256]int32
	copy(cursor[:nsh], starts[:nsh])
	for i := range batch {
		sh := s.shardOf(hashes[i])
		order[cursor[sh]] = int32(i)
		cursor[sh]++
	}

	results := sc.results
	clear(results)
	if workers <= 1 {
		for i := 0; i < nsh; i++ {
			if starts[i] < starts[i+1] {
				results[i] = s.shards[i].apply(batch, hashes, order[starts[i]:starts[i+1]], fn)
			}
		}
	} else {
		var nextShard atomic.Int32
		var wg sync.WaitGroup
		work := func() {
			for {
				i := int(nextShard.Add(1) - 1)
				if i >= nsh {
					return
				}
				if starts[i] < starts[i+1] {
					results[i] = s.shards[i].apply(batch, hashes, order[starts[i]:starts[i+1]], fn)
				}
			}
		}
		for w := 1; w < workers; w++ {
			wg.Go(work)
		}
		work()
		wg.Wait()
	}
	var total Result
	for i := range results {
		total.add(results[i])
	}
	return total
}

// apply runs one shard's group of a batch under its write lock.
func (sh *shard) apply(batch []Update, hashes []uint64, idx []int32, fn func(int, Position, bool)) Result {
	var res Result
	g := &sh.st.geom
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, i := range idx {
		u := &batch[i]
		if len(u.ID) == 0 || len(u.ID) > MaxIDLen || !validPosition(&u.Position) {
			res.Invalid++
			continue
		}
		h := hashes[i]
		slot, pos, ok := sh.lookup(u.ID, h)
		if !ok {
			if _, err := sh.insertLocked(u.ID, h, pos, &u.Position); err != nil {
				res.Refused++
				continue
			}
			res.Inserted++
			if fn != nil {
				fn(int(i), Position{}, false)
			}
			continue
		}
		r := sh.rec(slot)
		if u.TS < r.ts {
			res.Stale++
			continue
		}
		prev := r.pos()
		if oldKey, newKey := g.cellOf(r.lat, r.lon), g.cellOf(u.Lat, u.Lon); oldKey != newKey {
			sh.grid.remove(oldKey, slot)
			sh.grid.add(newKey, slot)
		}
		r.set(&u.Position)
		res.Updated++
		if fn != nil {
			fn(int(i), prev, true)
		}
	}
	return res
}

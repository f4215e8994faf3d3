package rules

import (
	"container/list"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

// Cache shares compiled Programs between rules with the same condition
// and skips recompiling them, as CPython's .pyc files skip recompiling
// unchanged modules. It is bounded (least recently used entries are
// evicted beyond its capacity) and safe for concurrent use.
//
// An entry is keyed by a hash of the source and remembers the zone IDs
// its zone names resolved to. A lookup is a hit only if the source is the
// same and every zone name still resolves to the same ID through the
// resolver passed in; so a renamed, removed or re-created zone forces a
// recompile and a stale Program is never returned. Errors are not cached.
type Cache struct {
	seed     maphash.Seed
	capacity int

	hits, misses, evictions atomic.Uint64

	mu struct {
		sync.Mutex
		entries map[uint64]*list.Element // hash of source → element of lru
		lru     list.List                // *cacheEntry, most recently used first
	}
}

type cacheEntry struct {
	key  uint64
	prog *Program // immutable; prog.src is the source
}

// CacheStats is a snapshot of a Cache's counters.
type CacheStats struct {
	Hits, Misses, Evictions uint64
	Len, Capacity           int
}

// NewCache returns a cache holding at most capacity programs (at least 1).
func NewCache(capacity int) *Cache {
	c := &Cache{seed: maphash.MakeSeed(), capacity: max(capacity, 1)}
	c.mu.entries = make(map[uint64]*list.Element)
	return c
}

func (c *Cache) key(src string) uint64 { return maphash.String(c.seed, src) }

// Get returns the cached program for src if there is one and its zone
// names still resolve to the same IDs through zones.
func (c *Cache) Get(src string, zones ZoneResolver) (*Program, bool) {
	k := c.key(src)
	c.mu.Lock()
	var p *Program
	if el, ok := c.mu.entries[k]; ok {
		c.mu.lru.MoveToFront(el)
		p = el.Value.(*cacheEntry).prog
	}
	c.mu.Unlock()
	// The resolver is called outside the lock: it is someone else's code.
	if p == nil || p.src != src || !p.zonesMatch(zones) {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return p, true
}

// Compile returns the cached program for src or compiles, caches and
// returns it. Concurrent calls for the same new source may both compile;
// they then return the same Program if the zones resolved alike.
func (c *Cache) Compile(src string, zones ZoneResolver) (*Program, error) {
	if p, ok := c.Get(src, zones); ok {
		return p, nil
	}
	p, err := Compile(src, zones)
	if err != nil {
		return nil, err
	}
	k := c.key(src)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.mu.entries[k]; ok {
		e := el.Value.(*cacheEntry)
		c.mu.lru.MoveToFront(el)
		if e.prog.src == src && slices.Equal(e.prog.zoneIDs, p.zoneIDs) && slices.Equal(e.prog.zoneNames, p.zoneNames) {
			return e.prog, nil // compiled concurrently by another caller
		}
		e.prog = p // stale zones, or a hash collision: replace
		return p, nil
	}
	c.mu.entries[k] = c.mu.lru.PushFront(&cacheEntry{key: k, prog: p})
	for c.mu.lru.Len() > c.capacity {
		c.evictLocked()
	}
	return p, nil
}

func (c *Cache) evictLocked() {
	el := c.mu.lru.Back()
	c.mu.lru.Remove(el)
	delete(c.mu.entries, el.Value.(*cacheEntry).key)
	c.evictions.Add(1)
}

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	n := c.mu.lru.Len()
	c.mu.Unlock()
	return CacheStats{
		Hits:      c.hits.Load(),
		Misses:    c.misses.Load(),
		Evictions: c.evictions.Load(),
		Len:       n,
		Capacity:  c.capacity,
	}
}

// zonesMatch reports whether every zone name p uses resolves through
// zones to the ID p was compiled with.
func (p *Program) zonesMatch(zones ZoneResolver) bool {
	if len(p.zoneNames) == 0 {
		return true
	}
	if zones == nil {
		return false
	}
	for i, name := range p.zoneNames {
		if id, ok := zones.ZoneID(name); !ok || id != p.zoneIDs[i] {
			return false
		}
	}
	return true
}

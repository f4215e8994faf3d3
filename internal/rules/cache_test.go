package rules

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestCacheHitMiss(t *testing.T) {
	c := NewCache(10)
	z := testZones()
	p1, err := c.Compile(`speed > 90 && !inside("depot-7")`, z)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.Compile(`speed > 90 && !inside("depot-7")`, z)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Error("same source compiled twice: want one shared Program")
	}
	if p, ok := c.Get(`speed > 90 && !inside("depot-7")`, z); !ok || p != p1 {
		t.Error("Get missed a cached program")
	}
	if _, ok := c.Get("speed > 91", z); ok {
		t.Error("Get hit an uncached source")
	}
	// The same condition spelled differently is a different source.
	if p3, _ := c.Compile(`speed>90 && !inside("depot-7")`, z); p3 == p1 {
		t.Error("different source text shared a Program")
	}
	want := CacheStats{Hits: 2, Misses: 3, Len: 2, Capacity: 10}
	if got := c.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestCacheErrorsNotCached(t *testing.T) {
	c := NewCache(10)
	for i := 0; i < 2; i++ {
		_, err := c.Compile("speed > sped", nil)
		var e *Error
		if !errors.As(err, &e) || e.Col != 9 {
			t.Fatalf("Compile error = %v, want the compile error", err)
		}
	}
	if s := c.Stats(); s.Len != 0 || s.Misses != 2 {
		t.Errorf("Stats() = %+v, want nothing cached and 2 misses", s)
	}
}

// A zone whose name now resolves to another ID (re-created) or to none
// (removed) makes the cached program stale.
func TestCacheZoneChanges(t *testing.T) {
	c := NewCache(10)
	src := `inside("a") || near("b", 10)`
	zones := mapZones{"a": 1, "b": 2}
	p1, err := c.Compile(src, zones)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := c.Get(src, mapZones{"a": 1, "b": 2, "c": 3}); !ok || p != p1 {
		t.Error("an unrelated new zone invalidated the program")
	}
	if _, ok := c.Get(src, mapZones{"a": 1, "b": 5}); ok {
		t.Error("hit with zone b re-created under another ID")
	}
	if _, ok := c.Get(src, mapZones{"a": 1}); ok {
		t.Error("hit with zone b removed")
	}
	if _, ok := c.Get(src, nil); ok {
		t.Error("hit with no resolver")
	}
	p2, err := c.Compile(src, mapZones{"a": 1, "b": 5})
	if err != nil {
		t.Fatal(err)
	}
	if p2 == p1 || p2.Zones()[1] != 5 {
		t.Errorf("recompile kept the stale program: zones %v", p2.Zones())
	}
	if _, err := c.Compile(src, mapZones{"a": 1}); err == nil {
		t.Error("compiled against a resolver without zone b")
	}
	// A rule without zones is valid under any resolver.
	if _, err := c.Compile("speed > 1", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("speed > 1", mapZones{}); !ok {
		t.Error("zone-free rule missed")
	}
}

func TestCacheLRU(t *testing.T) {
	c := NewCache(3)
	src := func(i int) string { return fmt.Sprintf("speed > %d", i) }
	for i := 0; i < 3; i++ {
		if _, err := c.Compile(src(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	c.Get(src(0), nil) // 0 is now the most recently used; 1 the least
	if _, err := c.Compile(src(3), nil); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true, true} {
		if _, ok := c.Get(src(i), nil); ok != want {
			t.Errorf("after eviction, Get(%q) hit = %v, want %v", src(i), ok, want)
		}
	}
	if s := c.Stats(); s.Len != 3 || s.Evictions != 1 {
		t.Errorf("Stats() = %+v, want 3 entries, 1 eviction", s)
	}
	if NewCache(0).Stats().Capacity != 1 {
		t.Error("capacity below 1 not raised to 1")
	}
}

// Concurrent Compile, Get and Eval of shared programs; run with -race.
func TestCacheConcurrent(t *testing.T) {
	c := NewCache(8)
	z := testZones()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := berlin()
			for i := 0; i < 300; i++ {
				src := fmt.Sprintf(`speed > %d || inside("yard")`, (i*7+g)%12)
				p, err := c.Compile(src, z)
				if err != nil {
					t.Error(err)
					return
				}
				if p.Source() != src {
					t.Errorf("Compile(%q) returned the program for %q", src, p.Source())
					return
				}
				p.Eval(&in, z)
			}
		}()
	}
	wg.Wait()
	s := c.Stats()
	if s.Len > 8 || s.Hits+s.Misses != 8*300 {
		t.Errorf("Stats() = %+v: want at most 8 entries and one lookup per Compile", s)
	}
}

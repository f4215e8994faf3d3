package store

import (
	"math"
	"runtime"
	"testing"
)

// TestStatsMatchesHeap checks the store's own accounting against the Go
// heap: the bytes Stats reports must be within 10% of what the heap grew by,
// and the store must hold a few hundred heap objects, not one per truck.
func TestStatsMatchesHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 300k-truck store")
	}
	const n = 300_000
	updates := benchUpdates(n, 11)
	before := heapNow()
	s := mustNew(t, Options{})
	s.Apply(updates)
	// Churn: delete and re-add a tenth so free lists and compaction are
	// part of the picture.
	for i := 0; i < n/10; i++ {
		s.Delete(updates[i*10].ID)
	}
	s.Apply(updates)
	after := heapNow()
	st := s.Stats()
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	objects := float64(after.HeapObjects) - float64(before.HeapObjects)
	t.Logf("heap grew %.1f MB, Stats total %.1f MB (%.1f bytes/truck), %v objects; %+v",
		heap/1e6, float64(st.Total)/1e6, st.BytesPerTruck, objects, st)
	if diff := math.Abs(heap-float64(st.Total)) / heap; diff > 0.10 {
		t.Errorf("Stats total %d differs from heap growth %.0f by %.1f%%", st.Total, heap, diff*100)
	}
	if objects > 10_000 {
		t.Errorf("store holds %v heap objects for %d trucks", objects, n)
	}
	if st.Trucks != s.Len() || s.Len() != n {
		t.Errorf("Stats.Trucks %d, Len %d, want %d", st.Trucks, s.Len(), n)
	}
	runtime.KeepAlive(s)
	runtime.KeepAlive(updates)
}

package feed

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestEntrySizes pins the sizes the package documentation's memory bounds
// are computed from.
func TestEntrySizes(t *testing.T) {
	if got := unsafe.Sizeof(posEntry{}); got != 84 {
		t.Errorf("posEntry is %d bytes, doc.go says 84", got)
	}
	if got := unsafe.Sizeof(ctlEntry{}); got != 216 {
		t.Errorf("ctlEntry is %d bytes, doc.go says 216", got)
	}
	if got := unsafe.Sizeof(hzSlot{}); got != 8 {
		t.Errorf("hzSlot is %d bytes, doc.go says 8", got)
	}
}

// TestRingModel drives a ring with random pushes and copy-outs and
// compares it with a plain slice that drops its oldest past the limit.
func TestRingModel(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	for _, limit := range []int{1, 2, 8, 64, 256} {
		r := ring[int]{buf: make([]int, min(4, limit))}
		var model []int
		next, dropped, modelDropped := 0, 0, 0
		for step := 0; step < 5000; step++ {
			if rng.IntN(3) != 0 {
				e, d := r.push(limit)
				*e = next
				if d {
					dropped++
				}
				model = append(model, next)
				if len(model) > limit {
					model = model[1:]
					modelDropped++
				}
				next++
			} else {
				n := rng.IntN(r.len() + 1)
				out := make([]int, n)
				r.copyOut(out, n)
				for i, v := range out {
					if v != model[i] {
						t.Fatalf("limit %d step %d: copyOut[%d] = %d, want %d", limit, step, i, v, model[i])
					}
				}
				model = model[n:]
			}
			if r.len() != len(model) || dropped != modelDropped || len(r.buf) > limit {
				t.Fatalf("limit %d step %d: len %d (model %d), dropped %d (model %d), cap %d",
					limit, step, r.len(), len(model), dropped, modelDropped, len(r.buf))
			}
		}
	}
}

package feed

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestEntrySizes pins the sizes the package documentation's memory bounds
// are computed from.
func TestEntrySizes(t *testing.T) {
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

// TestPosRingModel drives a position ring with random payloads, pushes
// and takes under random event and byte limits, and compares it with a
// slice of payloads that drops its oldest while the next would pass a
// limit.
func TestPosRingModel(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	for round := range 200 {
		maxEvents := 1 << rng.IntN(8)
		maxBytes := maxPosPayload + rng.IntN(4000)
		r := posRing{lens: make([]uint16, min(1<<rng.IntN(4), maxEvents)), buf: make([]byte, min(64+rng.IntN(600), maxBytes))}
		var model [][]byte
		size := 0
		next, dropped, modelDropped := 0, 0, 0
		for step := 0; step < 300; step++ {
			if rng.IntN(3) != 0 {
				n := rng.IntN(maxPosPayload + 1)
				if rng.IntN(4) != 0 {
					n = rng.IntN(120)
				}
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(next + i)
				}
				next++
				dropped += r.push(p, maxEvents, maxBytes)
				for len(model) >= maxEvents || size+len(p) > maxBytes {
					size -= len(model[0])
					model = model[1:]
					modelDropped++
				}
				model = append(model, p)
				size += len(p)
			} else {
				budget := rng.IntN(2 * maxPosPayload)
				req := rng.IntN(r.len() + 1)
				events, n := r.span(req, budget)
				buf, lens := make([]byte, n), make([]uint16, events)
				first := r.head
				r.copyOut(buf, lens, events, n)
				if r.head != first+uint64(events) {
					t.Fatalf("round %d step %d: head %d after taking %d from %d", round, step, r.head, events, first)
				}
				want := 0
				for i, m := range model[:events] {
					want += len(m)
					if int(lens[i]) != len(m) {
						t.Fatalf("round %d step %d: length %d of event %d, want %d", round, step, lens[i], i, len(m))
					}
				}
				if !bytes.Equal(buf, bytes.Join(model[:events], nil)) || n != want {
					t.Fatalf("round %d step %d: took %d events, %d bytes: wrong payloads", round, step, events, n)
				}
				if events < req && want+len(model[events]) <= budget {
					t.Fatalf("round %d step %d: took %d of %d events though the next fits", round, step, events, req)
				}
				model = model[events:]
				size -= want
			}
			if r.len() != len(model) || r.used != size || dropped != modelDropped || len(r.buf) > maxBytes || len(r.lens) > maxEvents {
				t.Fatalf("round %d step %d (limits %d events, %d bytes): len %d (model %d), used %d (model %d), dropped %d (model %d), cap %d/%d",
					round, step, maxEvents, maxBytes, r.len(), len(model), r.used, size, dropped, modelDropped, len(r.lens), len(r.buf))
			}
		}
	}
}

package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/wal"
)

// TestGatherModel checks the applier's gather (its single pass for
// messages of updates only, DecodeMessage for the others) against a model
// built from DecodeMessage alone: over random streams of valid messages,
// messages with deletes, messages larger than applyMaxUpdates and
// malformed ones (a byte flipped or cut, an ID of another partition, a
// position out of range), the updates and deletes reach the engine in
// the same order, a malformed message is refused (and only those) and
// leaves nothing behind, and no Apply exceeds applyMaxUpdates. It would
// fail if the single pass kept part of a refused message, reordered
// updates around a delete, or took a message DecodeMessage refuses.
func TestGatherModel(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 3))
	const parts = 4
	const part = 2
	// ids of partition part, and one of another partition.
	var ids, other [][]byte
	for i := 0; len(ids) < 50 || len(other) < 1; i++ {
		id := fmt.Appendf(nil, "truck-%05d", i)
		if Partition(id, parts) == part {
			ids = append(ids, id)
		} else {
			other = append(other, id)
		}
	}
	rounds := 200
	if testing.Short() {
		rounds = 40
	}
	for round := range rounds {
		var msgs [][]byte
		for range 1 + r.IntN(12) {
			n := 1 + r.IntN(300)
			if r.IntN(15) == 0 {
				n = applyMaxUpdates - 100 + r.IntN(300) // around the cap
			}
			es := make([]wal.Entry, n)
			for i := range es {
				es[i] = wal.Entry{ID: ids[r.IntN(len(ids))], Lat: r.Int32N(1000), Lon: r.Int32N(1000),
					TS: 1764000000 + uint32(r.IntN(5)), Speed: uint16(r.IntN(10)), Heading: uint16(r.IntN(360))}
				if r.IntN(200) == 0 {
					es[i] = wal.Entry{ID: es[i].ID, Kind: wal.KindDelete}
				}
			}
			switch r.IntN(12) {
			case 0:
				es[r.IntN(n)].ID = other[0]
			case 1:
				es[r.IntN(n)].Lat = 1 << 30 // out of range
			}
			idx := make([]int32, n)
			for i := range idx {
				idx[i] = int32(i)
			}
			m := AppendMessage(nil, part, es, idx)
			switch r.IntN(12) {
			case 0:
				m[r.IntN(len(m))] ^= byte(1 + r.IntN(255))
			case 1:
				m = m[:r.IntN(len(m))]
			}
			msgs = append(msgs, m)
		}

		// The model: every entry of each message DecodeMessage accepts, in order.
		var want []string
		var wantBad []bool
		for _, m := range msgs {
			var es []string
			err := DecodeMessage(m, part, parts, func(e *wal.Entry) { es = append(es, op(e)) })
			wantBad = append(wantBad, err != nil)
			if err == nil {
				want = append(want, es...)
			}
		}

		var got []string
		var b applyBatch
		flush := func() {
			if len(b.ups) > applyMaxUpdates {
				t.Fatalf("round %d: an Apply of %d updates", round, len(b.ups))
			}
			var ups []string
			for i := range b.ups {
				e := wal.Entry{}
				e.SetUpdate(&b.ups[i])
				ups = append(ups, op(&e))
			}
			// What flush hands the engine: records holding exactly these
			// updates, in order.
			if rs := b.records(); rs != nil {
				var recs []string
				for k, rec := range rs {
					c := 0
					if err := wal.DecodeUpdates(rec, func(e *wal.Entry) { recs = append(recs, op(e)); c++ }); err != nil || c != b.recs[k].n {
						t.Fatalf("round %d: record %d: %d updates of %d: %v", round, k, c, b.recs[k].n, err)
					}
				}
				if !slices.Equal(recs, ups) {
					t.Fatalf("round %d: the records hold %d updates, the batch %d; first difference at %d", round, len(recs), len(ups), firstDiff(recs, ups))
				}
			} else if !b.plain && len(b.ups) > 0 {
				t.Fatalf("round %d: %d updates of the single pass without records", round, len(b.ups))
			}
			got = append(got, ups...)
			b.reset()
		}
		for i, m := range msgs {
			before := len(b.ups)
			err := b.gather(m, part, parts, flush, func(id []byte) {
				got = append(got, op(&wal.Entry{ID: id, Kind: wal.KindDelete}))
			})
			if (err != nil) != wantBad[i] {
				t.Fatalf("round %d message %d: gather %v, DecodeMessage refused: %v", round, i, err, wantBad[i])
			}
			if err != nil && len(b.ups) > before {
				t.Fatalf("round %d message %d: a refused message left %d updates", round, i, len(b.ups)-before)
			}
			if r.IntN(3) == 0 {
				flush()
			}
		}
		flush()
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: %d operations, want %d; first difference at %d", round, len(got), len(want), firstDiff(got, want))
		}
	}
}

func op(e *wal.Entry) string {
	if e.Kind == wal.KindDelete {
		return "D " + string(e.ID)
	}
	return fmt.Sprintf("U %s %d %d %d %d %d", e.ID, e.Lat, e.Lon, e.TS, e.Speed, e.Heading)
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

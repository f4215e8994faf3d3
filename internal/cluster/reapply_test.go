package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wal"
)

// applyMessages applies msgs (of partition 0 of 1) to eng the way a
// node's applier does.
func applyMessages(t *testing.T, eng *engine.Engine, msgs [][]byte) {
	t.Helper()
	var b applyBatch
	flush := func() {
		if len(b.ups) > 0 { // as Node.flush
			var err error
			if rs := b.records(); rs != nil {
				_, err = eng.ApplyEncoded(b.ups, rs)
			} else {
				_, err = eng.Apply(b.ups)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		b.reset()
	}
	for _, m := range msgs {
		if err := b.gather(m, 0, 1, flush, func(id []byte) {
			if _, err := eng.Delete(id); err != nil {
				t.Fatal(err)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if rand.IntN(3) == 0 { // the applier gathers a varying number of messages per Apply
			flush()
		}
	}
	flush()
}

// TestReapplySuffix checks the claim the positions file rests on: after a
// crash, a node holds the effect of messages 1..k (k at least its saved
// position s) and re-applies s+1..N in order; the fleet it reaches must be
// the one of applying 1..N once, ties included (equal ts, different
// positions: the last applied wins), deletes included, and history must
// hold no point twice. It would fail if re-application skipped messages
// or applied them out of order.
func TestReapplySuffix(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	base := uint32(time.Now().Unix()) - 1800
	for round := range 20 {
		const trucks = 30
		var msgs [][]byte
		for range 10 + r.IntN(30) {
			var es []wal.Entry
			for range 1 + r.IntN(40) {
				id := fmt.Appendf(nil, "t%02d", r.IntN(trucks))
				if r.IntN(25) == 0 {
					es = append(es, wal.Entry{ID: id, Kind: wal.KindDelete})
					continue
				}
				// Few distinct timestamps: many ties.
				es = append(es, wal.Entry{ID: id, Lat: r.Int32N(1000), Lon: r.Int32N(1000), TS: base + uint32(r.IntN(4)),
					Speed: uint16(r.IntN(10)), Heading: uint16(r.IntN(4))})
			}
			idx := make([]int32, len(es))
			for i := range idx {
				idx[i] = int32(i)
			}
			msgs = append(msgs, AppendMessage(nil, 0, es, idx))
		}
		n := len(msgs)
		k := 1 + r.IntN(n)
		s := r.IntN(k + 1)
		open := func(dir string) *engine.Engine {
			e, err := engine.Open(engine.Options{DataDir: dir, History: &history.Options{}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			return e
		}
		once, twice := open(t.TempDir()), open(t.TempDir())
		applyMessages(t, once, msgs)
		applyMessages(t, twice, msgs[:k])
		applyMessages(t, twice, msgs[s:])
		if a, b := once.Store().Len(), twice.Store().Len(); a != b {
			t.Fatalf("round %d (N=%d k=%d s=%d): %d trucks once, %d after re-applying", round, n, k, s, a, b)
		}
		for i := range trucks {
			id := fmt.Appendf(nil, "t%02d", i)
			pa, oka := once.Store().Get(id)
			pb, okb := twice.Store().Get(id)
			if oka != okb || pa != pb {
				t.Fatalf("round %d (N=%d k=%d s=%d): %s is %+v/%v once, %+v/%v after re-applying", round, n, k, s, id, pa, oka, pb, okb)
			}
			ta := trail(t, once, id, base)
			tb := trail(t, twice, id, base)
			if !slices.Equal(ta, tb) {
				t.Fatalf("round %d (N=%d k=%d s=%d): %s's history has %d points once, %d after re-applying:\n%v\n%v", round, n, k, s, id, len(ta), len(tb), ta, tb)
			}
		}
	}
}

func trail(t *testing.T, e *engine.Engine, id []byte, base uint32) []store.Position {
	t.Helper()
	ps, _, err := e.History().Trail(id, base-10, base+10, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]store.Position, len(ps))
	for i, p := range ps {
		out[i] = p.Position
	}
	return out
}

package history

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/fleetd/fleetd/internal/fleet"
)

// TestColumnSizes checks columnSizes and appendColumn against a plain
// encoder of both encodings, over random columns: runs of every length
// (past a one-byte count too), values of every varint size, and the
// empty column.
func TestColumnSizes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	asRuns := 0
	for i := range 20000 {
		var us []uint64
		for len(us) < i%300 {
			v := r.Uint64() >> r.IntN(64)
			n := 1 + r.IntN(1+r.IntN(200))
			if i%2 == 1 { // few runs, mostly small values
				v, n = v%300, 1+r.IntN(8)/7
			}
			for range n {
				us = append(us, v)
			}
		}
		var plain, runs []byte
		for k, u := range us {
			plain = binary.AppendUvarint(plain, u)
			if k == 0 || u != us[k-1] {
				n := 1
				for k+n < len(us) && us[k+n] == u {
					n++
				}
				runs = binary.AppendUvarint(binary.AppendUvarint(runs, u), uint64(n-1))
			}
		}
		p, q := columnSizes(us)
		if p != len(plain) || q != len(runs) {
			t.Fatalf("column %v: sizes %d and %d, the encodings take %d and %d", us, p, q, len(plain), len(runs))
		}
		pre := []byte{7} // appended after what dst holds
		if got := appendColumn(pre, us, false, p); !bytes.Equal(got[1:], plain) || got[0] != 7 {
			t.Fatalf("column %v as varints: % x, want % x", us, got[1:], plain)
		}
		if got := appendColumn(pre[:1:1], us, true, q); !bytes.Equal(got[1:], runs) || got[0] != 7 {
			t.Fatalf("column %v as runs: % x, want % x", us, got[1:], runs)
		}
		if q < p {
			asRuns++
		}
	}
	if asRuns < 1000 || asRuns > 19000 { // both encodings win often
		t.Fatalf("%d of 20000 columns smaller as runs", asRuns)
	}
}

// BenchmarkAppendColumns encodes one grouped block as a first merge of a
// filling hour writes them at a million trucks: groupPoints points of
// trucks with 13 each, driving (speed, heading and position changing
// from point to point). One op is one block.
func BenchmarkAppendColumns(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	ps := make([]Point, groupPoints)
	var ends []int
	for i := range ps {
		k := i % 13
		if k == 0 && i > 0 {
			ends = append(ends, i)
		}
		speed := 300 + r.IntN(400)
		ps[i].Position = fleet.MakePosition(40+float64(i/13)/100+float64(k)*0.0002, -100+float64(k)*0.0003, 1_764_000_000+int64(k), float64(speed)/10, float64(90+r.IntN(3)))
	}
	ends = append(ends, len(ps))
	var dst []byte
	b.ReportAllocs()
	for b.Loop() {
		dst = appendColumns(dst[:0], ps, ends, layoutGrouped)
	}
	b.ReportMetric(float64(len(dst))/float64(len(ps)), "B/point")
}

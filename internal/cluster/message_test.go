package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/wal"
)

// randomEntries makes n updates of trucks drawn from ids, some repeated.
func randomEntries(r *rand.Rand, n, ids int) []wal.Entry {
	es := make([]wal.Entry, n)
	for i := range es {
		es[i] = wal.Entry{
			ID:      fmt.Appendf(nil, "truck-%07d", r.IntN(ids)),
			Lat:     r.Int32N(1800000000) - 900000000,
			Lon:     r.Int32N(2000000000) - 1000000000,
			TS:      1764000000 + r.Uint32N(3600),
			Speed:   uint16(r.IntN(2000)),
			Heading: uint16(r.IntN(360)),
		}
	}
	return es
}

func TestMessageRoundTrip(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 1))
	const parts = 8
	for round := range 50 {
		es := randomEntries(r, 1+r.IntN(500), 1+r.IntN(200))
		idx := make([][]int32, parts)
		for i := range es {
			p := Partition(es[i].ID, parts)
			idx[p] = append(idx[p], int32(i))
		}
		for p := range parts {
			want := make([]wal.Entry, 0, len(idx[p]))
			for _, i := range idx[p] {
				want = append(want, es[i])
			}
			msg := AppendMessage(nil, p, es, idx[p])
			var got []wal.Entry
			err := DecodeMessage(msg, p, parts, func(e *wal.Entry) {
				c := *e
				c.ID = append([]byte(nil), e.ID...)
				got = append(got, c)
			})
			if len(want) == 0 {
				if err != nil {
					t.Fatalf("round %d: empty message: %v", round, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("round %d partition %d: %v", round, p, err)
			}
			// Sorted by ID, stable: each truck's updates keep their order.
			if len(got) != len(want) {
				t.Fatalf("round %d: %d entries, want %d", round, len(got), len(want))
			}
			byID := map[string][]wal.Entry{}
			for _, e := range want {
				byID[string(e.ID)] = append(byID[string(e.ID)], e)
			}
			for i, e := range got {
				if i > 0 && string(got[i-1].ID) > string(e.ID) {
					t.Fatalf("round %d: not sorted by ID at %d", round, i)
				}
				w := byID[string(e.ID)]
				if len(w) == 0 || fmt.Sprint(w[0]) != fmt.Sprint(e) {
					t.Fatalf("round %d: entry %d = %+v, want %+v", round, i, e, w)
				}
				byID[string(e.ID)] = w[1:]
			}
			if err := DecodeMessage(msg, (p+1)%parts, parts, func(*wal.Entry) {}); !errors.Is(err, ErrMalformed) {
				t.Fatalf("decoding partition %d's message as %d: %v, want ErrMalformed", p, (p+1)%parts, err)
			}
		}
	}
}

func TestMessageRejects(t *testing.T) {
	good := AppendMessage(nil, 0, []wal.Entry{{ID: []byte("a"), Lat: 1, Lon: 2, TS: 3}}, []int32{0})
	// partition of "a" among 1 is 0
	if err := DecodeMessage(good, 0, 1, func(*wal.Entry) {}); err != nil {
		t.Fatal(err)
	}
	badLat := AppendMessage(nil, 0, []wal.Entry{{ID: []byte("a"), Lat: 900000001, TS: 3}}, []int32{0})
	expire := AppendMessage(nil, 0, []wal.Entry{{ID: []byte("a"), TS: 3, Kind: wal.KindExpire}}, []int32{0})
	for name, msg := range map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{9}, good[1:]...),
		"truncated":   good[:len(good)-1],
		"trailing":    append(append([]byte(nil), good...), 0),
		"latitude":    badLat,
		"expire kind": expire,
	} {
		n := 0
		err := DecodeMessage(msg, 0, 1, func(*wal.Entry) { n++ })
		if !errors.Is(err, ErrMalformed) || n != 0 {
			t.Errorf("%s: err %v after %d entries, want ErrMalformed and none", name, err, n)
		}
	}
}

func FuzzDecodeMessage(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	es := randomEntries(r, 20, 5)
	var idx []int32
	for i := range es {
		if Partition(es[i].ID, 4) == 1 {
			idx = append(idx, int32(i))
		}
	}
	f.Add(AppendMessage(nil, 1, es, idx))
	f.Add([]byte{1, 1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		var got []wal.Entry
		err := DecodeMessage(msg, 1, 4, func(e *wal.Entry) {
			c := *e
			c.ID = append([]byte(nil), e.ID...)
			got = append(got, c)
		})
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if len(got) > 0 {
				t.Fatalf("%d entries delivered from a malformed message", len(got))
			}
			return
		}
		// A valid message re-encodes to one that decodes the same.
		idx := make([]int32, len(got))
		for i := range idx {
			idx[i] = int32(i)
		}
		again := AppendMessage(nil, 1, got, idx)
		var got2 []wal.Entry
		if err := DecodeMessage(again, 1, 4, func(e *wal.Entry) {
			c := *e
			c.ID = append([]byte(nil), e.ID...)
			got2 = append(got2, c)
		}); err != nil {
			t.Fatalf("re-encoded message: %v", err)
		}
		if len(got2) != len(got) {
			t.Fatalf("re-encoded %d entries, decoded %d", len(got), len(got2))
		}
	})
}

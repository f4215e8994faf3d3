package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// cloneEntry copies e so that it survives the decoder's next step.
func cloneEntry(e *Entry) Entry {
	c := *e
	c.ID = slices.Clone(e.ID)
	if c.ID == nil {
		c.ID = []byte{}
	}
	return c
}

func decodeAll(t testing.TB, payload []byte) []Entry {
	t.Helper()
	var out []Entry
	if err := DecodeUpdates(payload, func(e *Entry) { out = append(out, cloneEntry(e)) }); err != nil {
		t.Fatalf("DecodeUpdates: %v", err)
	}
	return out
}

func entriesEqual(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool {
		return bytes.Equal(x.ID, y.ID) && x.Lat == y.Lat && x.Lon == y.Lon && x.TS == y.TS &&
			x.Speed == y.Speed && x.Heading == y.Heading && x.Kind == y.Kind
	})
}

// normalize zeroes the fields that non-update kinds do not carry.
func normalize(es []Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		if e.ID == nil {
			e.ID = []byte{}
		}
		if e.Kind != KindUpdate {
			e = Entry{ID: e.ID, Kind: e.Kind, TS: e.TS}
		}
		out[i] = e
	}
	return out
}

func truckID(n int) []byte { return fmt.Appendf(nil, "truck-%07d", n) }

func randomEntries(rng *rand.Rand, n int) []Entry {
	es := make([]Entry, n)
	base := uint32(1_700_000_000 + rng.IntN(1000))
	for i := range es {
		es[i] = Entry{
			ID:      truckID(rng.IntN(1_000_000)),
			Lat:     int32(rng.IntN(1_800_000_001) - 900_000_000),
			Lon:     int32(rng.Int64N(3_600_000_001) - 1_800_000_000),
			TS:      base + uint32(rng.IntN(30)),
			Speed:   uint16(rng.IntN(1300)),
			Heading: uint16(rng.IntN(360)),
		}
		if rng.IntN(4) == 0 {
			es[i].Attrs.Set(fleet.Altitude, int32(rng.IntN(int(fleet.Altitude.Max()-fleet.Altitude.Min()+1)))+fleet.Altitude.Min())
		}
		switch rng.IntN(20) {
		case 0:
			es[i] = Entry{ID: es[i].ID, Kind: KindDelete, TS: es[i].TS}
		case 1:
			es[i] = Entry{ID: es[i].ID, Kind: KindExpire, TS: es[i].TS}
		}
	}
	return es
}

func TestUpdatesRoundTripTable(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
	}{
		{"empty", nil},
		{"one", []Entry{{ID: []byte("truck-0000001"), Lat: 407_127_760, Lon: -740_059_740, TS: 1_700_000_000, Speed: 523, Heading: 271}}},
		{"extremes", []Entry{
			{ID: []byte("a"), Lat: math.MinInt32, Lon: math.MaxInt32, TS: math.MaxUint32, Speed: math.MaxUint16, Heading: math.MaxUint16},
			{ID: []byte("b"), Lat: math.MaxInt32, Lon: math.MinInt32, TS: 0},
		}},
		{"empty and shared IDs", []Entry{{ID: nil}, {ID: []byte("x")}, {ID: []byte("x")}, {ID: []byte("xy")}, {ID: []byte("")}, {ID: []byte("x")}}},
		{"deletes and expires", []Entry{
			{ID: []byte("truck-1"), Kind: KindDelete},
			{ID: []byte("truck-2"), Kind: KindExpire},
			{ID: []byte("truck-22"), Lat: 1, Lon: 2, TS: 5, Speed: 3, Heading: 4},
		}},
		{"binary ID", []Entry{{ID: []byte{0, 0xff, 0x80, 0}, TS: 9}}},
		{"long ID", []Entry{{ID: bytes.Repeat([]byte("z"), 1000)}, {ID: bytes.Repeat([]byte("z"), 999)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := AppendUpdates([]byte("prefix"), tt.entries)
			if !bytes.HasPrefix(enc, []byte("prefix")) {
				t.Fatal("AppendUpdates clobbered dst")
			}
			got := decodeAll(t, enc[len("prefix"):])
			if want := normalize(tt.entries); !entriesEqual(got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
			if n, err := CountUpdates(enc[len("prefix"):]); err != nil || n != len(tt.entries) {
				t.Fatalf("CountUpdates = %d, %v", n, err)
			}
		})
	}
}

func TestUpdatesRoundTripRandom(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	var d UpdateDecoder
	for iter := range 200 {
		es := randomEntries(rng, rng.IntN(300))
		if iter%2 == 0 {
			slices.SortFunc(es, func(a, b Entry) int { return bytes.Compare(a.ID, b.ID) })
		}
		enc := AppendUpdates(nil, es)
		if err := d.Reset(enc); err != nil {
			t.Fatal(err)
		}
		var got []Entry
		for d.Next() {
			got = append(got, cloneEntry(d.Entry()))
		}
		if d.Err() != nil {
			t.Fatalf("iter %d: %v", iter, d.Err())
		}
		if !entriesEqual(got, normalize(es)) {
			t.Fatalf("iter %d: round trip mismatch", iter)
		}
	}
}

// TestUpdatesSize checks the on-disk budget: at most 32 bytes per update
// including the record header, for IDs like truck-0123456 in random order.
func TestUpdatesSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{100, 10_000} {
		es := randomEntries(rng, n)
		for i := range es {
			es[i].Kind = KindUpdate
		}
		size := headerSize + len(AppendUpdates(nil, es))
		per := float64(size) / float64(n)
		t.Logf("%d updates: %d bytes, %.2f bytes/update", n, size, per)
		if per > 32 {
			t.Fatalf("%.2f bytes per update exceeds the 32-byte budget", per)
		}
	}
}

func TestDecodeUpdatesMalformed(t *testing.T) {
	valid := AppendUpdates(nil, []Entry{
		{ID: []byte("truck-1"), Lat: 1, Lon: 2, TS: 100, Speed: 3, Heading: 4},
		{ID: []byte("truck-2"), Kind: KindDelete},
	})
	tests := []struct {
		name    string
		payload []byte
		want    string
	}{
		{"empty", nil, "empty batch"},
		{"version", []byte{2, 0, 0}, "unknown version 2"},
		{"count overflow", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "bad entry count"},
		{"count too large", []byte{1, 100, 0}, "exceeds batch size"},
		{"base too large", []byte{1, 0, 0x80, 0x80, 0x80, 0x80, 0x10}, "bad base timestamp"},
		{"missing entry", []byte{1, 1, 0}, "bad entry header"},
		{"attributes cut off", []byte{1, 1, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, "bad attribute mask"},
		{"attribute mask 0", []byte{1, 1, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, "bad attribute mask"},
		{"unknown attribute", binary.AppendUvarint([]byte{1, 1, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 1<<fleet.NumAttrs), "bad attribute mask"},
		{"altitude out of range", []byte{1, 1, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}, "bad alt"},
		{"shared too long", []byte{1, 1, 0, 1 << 2, 0}, "shared prefix 1 longer"},
		{"suffix past end", []byte{1, 1, 0, 1, 5, 'a'}, "ID suffix runs past the end"},
		{"position past end", []byte{1, 1, 0, 0, 1, 'a', 1, 2, 3}, "position runs past the end"},
		{"ts overflow", append([]byte{1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0}, 2, 0, 0), "bad timestamp delta"},
		{"speed overflow", []byte{1, 1, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x04, 0}, "bad speed"},
		{"heading overflow", []byte{1, 1, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x04}, "bad heading"},
		{"trailing", append(slices.Clone(valid), 0), "1 trailing bytes"},
		{"truncated", valid[:len(valid)-1], "bad timestamp"},
		{"truncated ID", valid[:len(valid)-2], "ID suffix runs past the end"},
		{"delete ts overflow", []byte{1, 1, 0, 1, 1, 'a', 0x80, 0x80, 0x80, 0x80, 0x10}, "bad timestamp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := DecodeUpdates(tt.payload, func(*Entry) {})
			if !errors.Is(err, ErrMalformed) || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("err = %v, want ErrMalformed containing %q", err, tt.want)
			}
		})
	}
}

func TestAppendUpdatesInvalidKindPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("no panic for invalid kind")
		}
	}()
	AppendUpdates(nil, []Entry{{Kind: 7}})
}

func TestDecodeUpdatesNoAllocs(t *testing.T) {
	enc := AppendUpdates(nil, randomEntries(rand.New(rand.NewPCG(3, 4)), 1000))
	n := 0
	fn := func(e *Entry) { n += len(e.ID) }
	DecodeUpdates(enc, fn) // warm the pool and the ID buffer
	if a := testing.AllocsPerRun(50, func() { DecodeUpdates(enc, fn) }); a > 0 {
		t.Fatalf("DecodeUpdates allocates %.1f times per batch", a)
	}
}

func FuzzDecodeUpdates(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 3, 20} {
		f.Add(AppendUpdates(nil, randomEntries(rng, n)))
	}
	f.Add([]byte{1, 1, 0, 3, 0})
	f.Add([]byte{1, 2, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 1})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var got []Entry
		err := DecodeUpdates(payload, func(e *Entry) {
			if e.Kind >= numKinds {
				t.Fatalf("decoded invalid kind %d", e.Kind)
			}
			got = append(got, cloneEntry(e))
		})
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// A valid batch re-encodes to one that decodes to the same entries
		// (the encoder may choose a different shared prefix or base).
		again := decodeAll(t, AppendUpdates(nil, got))
		if !entriesEqual(again, normalize(got)) {
			t.Fatalf("re-encoding changed the entries")
		}
	})
}

func BenchmarkAppendUpdates(b *testing.B) {
	es := randomEntries(rand.New(rand.NewPCG(7, 8)), 10_000)
	buf := AppendUpdates(nil, es)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		buf = AppendUpdates(buf[:0], es)
	}
	b.ReportMetric(float64(b.N)*float64(len(es))/b.Elapsed().Seconds(), "updates/s")
	b.ReportMetric(float64(len(buf))/float64(len(es)), "bytes/update")
}

func BenchmarkDecodeUpdates(b *testing.B) {
	es := randomEntries(rand.New(rand.NewPCG(7, 8)), 10_000)
	buf := AppendUpdates(nil, es)
	var sum int64
	fn := func(e *Entry) { sum += int64(e.Lat) }
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if err := DecodeUpdates(buf, fn); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*float64(len(es))/b.Elapsed().Seconds(), "updates/s")
}

package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/wal"
)

// snapshotOf encodes entries as a snapshot object of parts partitions.
func snapshotOf(created int64, seqs []uint64, es []wal.Entry) []byte {
	b := appendSnapshotHeader(nil, created, seqs)
	byPart := map[int][]int32{}
	for i := range es {
		p := Partition(es[i].ID, len(seqs))
		byPart[p] = append(byPart[p], int32(i))
	}
	for p := range len(seqs) {
		if idx := byPart[p]; len(idx) > 0 {
			msg := AppendMessage(nil, p, es, idx)
			b = binary.AppendUvarint(b, uint64(len(msg)))
			b = append(b, msg...)
		}
	}
	return b
}

func TestSnapshotRoundTrip(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 1))
	seqs := []uint64{5, 0, 1 << 40, 7}
	var es []wal.Entry
	for i := range 1000 {
		es = append(es, wal.Entry{ID: fmt.Appendf(nil, "truck-%05d", i), Lat: int32(r.IntN(1.8e9) - 9e8), Lon: int32(r.IntN(3.6e9) - 1.8e9),
			TS: uint32(1.7e9 + r.IntN(1e6)), Speed: uint16(r.IntN(3000)), Heading: uint16(r.IntN(360))})
	}
	b := snapshotOf(42, seqs, es)
	var got []string
	created, gs, err := decodeSnapshot(b, func(p int, msg []byte) error {
		return DecodeMessage(msg, p, len(seqs), func(e *wal.Entry) {
			got = append(got, fmt.Sprintf("%s %d %d %d %d %d", e.ID, e.Lat, e.Lon, e.TS, e.Speed, e.Heading))
		})
	})
	if err != nil || created != 42 || !slices.Equal(gs, seqs) {
		t.Fatalf("decode: %v created %d seqs %v", err, created, gs)
	}
	var want []string
	for _, e := range es {
		want = append(want, fmt.Sprintf("%s %d %d %d %d %d", e.ID, e.Lat, e.Lon, e.TS, e.Speed, e.Heading))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("entries differ: %d decoded, %d written", len(got), len(want))
	}
	// Every truncation is an error, never a panic or a silent success
	// (except at a chunk boundary, where the object is a smaller valid one).
	for i := range len(b) - 1 {
		_, _, err := decodeSnapshot(b[:i], func(p int, msg []byte) error {
			return DecodeMessage(msg, p, len(seqs), func(*wal.Entry) {})
		})
		if err == nil && i < 13+1+8*len(seqs) {
			t.Fatalf("a header cut at %d decoded", i)
		}
	}
}

func TestSnapshotRejects(t *testing.T) {
	good := snapshotOf(1, []uint64{1, 2}, []wal.Entry{{ID: []byte("a"), TS: 1}})
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("FLCX"), good[4:]...),
		"version":   append(append([]byte("FLCS"), 9), good[5:]...),
		"no parts":  appendSnapshotHeader(nil, 1, nil),
		"truncated": good[:len(good)-1],
		"chunk len": append(slices.Clone(good), 0xff, 0xff, 0x03),
	} {
		if _, _, err := decodeSnapshot(b, func(p int, msg []byte) error { return nil }); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(snapshotOf(1, []uint64{1, 2, 3}, []wal.Entry{{ID: []byte("truck-1"), TS: 1}, {ID: []byte("truck-2"), TS: 2}}))
	f.Add([]byte("FLCS\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, seqs, err := decodeSnapshot(b, func(p int, msg []byte) error {
			return DecodeMessage(msg, p, 3, func(*wal.Entry) {})
		})
		if err == nil && (len(seqs) == 0 || !bytes.HasPrefix(b, snapshotMagic)) {
			t.Fatalf("accepted %q", b)
		}
	})
}

func TestConfigKey(t *testing.T) {
	for _, tc := range []struct {
		k    Kind
		name string
	}{{KindZone, "depot:paris"}, {KindRule, "a"}, {KindSink, "ops.hook-1_x"}} {
		key := configKey(tc.k, tc.name)
		k, name, ok := parseConfigKey(key)
		if !ok || k != tc.k || name != tc.name {
			t.Fatalf("%s: %v %q %v", key, k, name, ok)
		}
	}
	for _, key := range []string{"", "zone", "zone.", "fence.YQ", "rule.!!"} {
		if _, _, ok := parseConfigKey(key); ok {
			t.Fatalf("%q parsed", key)
		}
	}
}

func FuzzParseConfigKey(f *testing.F) {
	f.Add("zone.ZGVwb3Q")
	f.Fuzz(func(t *testing.T, key string) {
		k, name, ok := parseConfigKey(key)
		if ok && configKey(k, name) != key {
			t.Fatalf("%q parses as %s %q, whose key is %q", key, k, name, configKey(k, name))
		}
	})
}

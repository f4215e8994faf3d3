package cluster

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/fleetd/fleetd/internal/vfs"
)

func TestPositionsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "positions-fleetd")
	p, err := loadPositions(vfs.Default, path)
	if err != nil || p.seqs != nil {
		t.Fatalf("missing file: %v %v", p, err)
	}
	want := positions{created: 1764000000123456789, seqs: []uint64{0, 1, 1 << 40, 7}}
	if _, err := savePositions(vfs.Default, path, want, nil); err != nil {
		t.Fatal(err)
	}
	got, err := loadPositions(vfs.Default, path)
	if err != nil || got.created != want.created || len(got.seqs) != 4 || got.seqs[2] != 1<<40 || got.seqs[3] != 7 {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	b := appendPositions(nil, want)
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0x10
		if _, err := decodePositions(c); !errors.Is(err, errBadPositions) {
			t.Fatalf("bit flip at byte %d: %v, want errBadPositions", i, err)
		}
	}
	if _, err := decodePositions(b[:len(b)-1]); !errors.Is(err, errBadPositions) {
		t.Fatalf("truncated: %v", err)
	}
}

func FuzzDecodePositions(f *testing.F) {
	f.Add(appendPositions(nil, positions{created: 5, seqs: []uint64{1, 2, 3}}))
	f.Add([]byte("FLCP"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePositions(b)
		if err != nil {
			if !errors.Is(err, errBadPositions) {
				t.Fatalf("error %v does not wrap errBadPositions", err)
			}
			return
		}
		again := appendPositions(nil, p)
		if string(again) != string(b) {
			t.Fatalf("valid input does not re-encode to itself")
		}
	})
}

package cluster

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
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
	want := positions{created: 1764000000123456789, walNext: 1 << 33, seqs: []uint64{0, 1, 1 << 40, 7}}
	if _, err := savePositions(vfs.Default, path, want, nil); err != nil {
		t.Fatal(err)
	}
	got, err := loadPositions(vfs.Default, path)
	if err != nil || got.created != want.created || got.walNext != want.walNext || len(got.seqs) != 4 || got.seqs[2] != 1<<40 || got.seqs[3] != 7 {
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

// TestPositionsVersion1 reads a file written before walNext (version 1):
// its positions, with walNext 0 (no check against the local log).
func TestPositionsVersion1(t *testing.T) {
	b := []byte("FLCP\x01")
	b = binary.LittleEndian.AppendUint64(b, 42)
	b = binary.AppendUvarint(b, 2)
	b = binary.LittleEndian.AppendUint64(b, 9)
	b = binary.LittleEndian.AppendUint64(b, 11)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	p, err := decodePositions(b)
	if err != nil || p.created != 42 || p.walNext != 0 || len(p.seqs) != 2 || p.seqs[0] != 9 || p.seqs[1] != 11 {
		t.Fatalf("version 1: %+v %v", p, err)
	}
}

func FuzzDecodePositions(f *testing.F) {
	f.Add(appendPositions(nil, positions{created: 5, walNext: 77, seqs: []uint64{1, 2, 3}}))
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
		if b[4] == positionsVersion && string(again) != string(b) {
			t.Fatalf("valid input does not re-encode to itself")
		}
		q, err := decodePositions(again)
		if err != nil || q.created != p.created || q.walNext != p.walNext || !slicesEqual(q.seqs, p.seqs) {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", p, q, err)
		}
	})
}

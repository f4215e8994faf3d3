package snapshot

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fleetd/fleetd/internal/wal"
)

// File layout constants; see doc.go for the drawing.
const (
	headerSize  = 36
	trailerSize = 36
	blockHeader = 8 // CRC-32C (4) + length (4)
	version     = 1

	// blockEntries is how many entries a block holds at most: ~90 KiB of
	// payload, so the writer's memory is constant and small.
	blockEntries = 4096
	// maxBlock bounds a block's payload when reading untrusted files.
	maxBlock = 64 << 20
)

var (
	headerMagic  = [8]byte{'F', 'L', 'E', 'E', 'T', 'S', 'N', 'P'}
	trailerMagic = [8]byte{'F', 'L', 'E', 'E', 'T', 'E', 'N', 'D'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

type header struct {
	lsn   wal.LSN
	count uint64
}

func (h header) encode() [headerSize]byte {
	var b [headerSize]byte
	copy(b[0:8], headerMagic[:])
	binary.LittleEndian.PutUint32(b[8:12], version)
	binary.LittleEndian.PutUint32(b[12:16], 0) // flags, reserved
	binary.LittleEndian.PutUint64(b[16:24], uint64(h.lsn))
	binary.LittleEndian.PutUint64(b[24:32], h.count)
	binary.LittleEndian.PutUint32(b[32:36], crc32.Checksum(b[:32], castagnoli))
	return b
}

func decodeHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("short header (%d bytes)", len(b))
	}
	if [8]byte(b[0:8]) != headerMagic {
		return header{}, fmt.Errorf("bad magic %q", b[0:8])
	}
	if got, want := binary.LittleEndian.Uint32(b[32:36]), crc32.Checksum(b[:32], castagnoli); got != want {
		return header{}, fmt.Errorf("header checksum mismatch (stored %#08x, computed %#08x)", got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:12]); v != version {
		return header{}, fmt.Errorf("unsupported version %d", v)
	}
	return header{lsn: wal.LSN(binary.LittleEndian.Uint64(b[16:24])), count: binary.LittleEndian.Uint64(b[24:32])}, nil
}

type trailer struct {
	count     uint64
	lsn       wal.LSN
	blocksCRC uint32 // CRC-32C of every byte between header and trailer
	blocks    uint32
}

func (t trailer) encode() [trailerSize]byte {
	var b [trailerSize]byte
	copy(b[0:8], trailerMagic[:])
	binary.LittleEndian.PutUint64(b[8:16], t.count)
	binary.LittleEndian.PutUint64(b[16:24], uint64(t.lsn))
	binary.LittleEndian.PutUint32(b[24:28], t.blocksCRC)
	binary.LittleEndian.PutUint32(b[28:32], t.blocks)
	binary.LittleEndian.PutUint32(b[32:36], crc32.Checksum(b[:32], castagnoli))
	return b
}

func decodeTrailer(b []byte) (trailer, error) {
	if len(b) < trailerSize {
		return trailer{}, fmt.Errorf("short trailer (%d bytes)", len(b))
	}
	if [8]byte(b[0:8]) != trailerMagic {
		return trailer{}, fmt.Errorf("bad trailer magic %q (truncated file?)", b[0:8])
	}
	if got, want := binary.LittleEndian.Uint32(b[32:36]), crc32.Checksum(b[:32], castagnoli); got != want {
		return trailer{}, fmt.Errorf("trailer checksum mismatch (stored %#08x, computed %#08x)", got, want)
	}
	return trailer{
		count:     binary.LittleEndian.Uint64(b[8:16]),
		lsn:       wal.LSN(binary.LittleEndian.Uint64(b[16:24])),
		blocksCRC: binary.LittleEndian.Uint32(b[24:28]),
		blocks:    binary.LittleEndian.Uint32(b[28:32]),
	}, nil
}

// blockCRC is the checksum stored in a block header: CRC-32C over the
// length field and the payload.
func blockCRC(lenField []byte, payload []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, lenField), castagnoli, payload)
}

// File names: snap-<20-digit LSN>.fsnap, and a .tmp suffix while written.
const (
	namePrefix = "snap-"
	nameSuffix = ".fsnap"
	tmpSuffix  = ".tmp"
)

// FileName returns the name of the snapshot covering lsn.
func FileName(lsn wal.LSN) string {
	return fmt.Sprintf("%s%020d%s", namePrefix, uint64(lsn), nameSuffix)
}

// parseName returns the LSN in a snapshot (or, with tmp, temp) file name.
func parseName(name string, tmp bool) (wal.LSN, bool) {
	name = filepath.Base(name)
	if tmp {
		if !strings.HasSuffix(name, tmpSuffix) {
			return 0, false
		}
		name = strings.TrimSuffix(name, tmpSuffix)
	}
	if len(name) != len(namePrefix)+20+len(nameSuffix) || !strings.HasPrefix(name, namePrefix) || !strings.HasSuffix(name, nameSuffix) {
		return 0, false
	}
	v, err := strconv.ParseUint(name[len(namePrefix):len(namePrefix)+20], 10, 64)
	if err != nil {
		return 0, false
	}
	return wal.LSN(v), true
}

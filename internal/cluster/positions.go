package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/fleetd/fleetd/internal/vfs"
)

// positions is what the positions file records: the stream it belongs to
// (its creation time, so that a recreated stream is noticed) and, per
// partition, the last stream sequence whose updates the engine has made
// durable.
type positions struct {
	created int64 // the stream's creation time, Unix nanoseconds
	// walNext is the engine's next log sequence number when seqs were
	// taken (0: unknown, a version 1 file or no local log): every
	// update applied up to seqs is in a log record below it, so a log
	// recovered with a lower next LSN lost records seqs counts.
	walNext uint64
	seqs    []uint64
}

const (
	positionsMagic   = "FLCP"
	positionsVersion = 2 // 1: without walNext, still read
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendPositions encodes p (layout in doc.go).
func appendPositions(dst []byte, p positions) []byte {
	start := len(dst)
	dst = append(dst, positionsMagic...)
	dst = append(dst, positionsVersion)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(p.created))
	dst = binary.LittleEndian.AppendUint64(dst, p.walNext)
	dst = binary.AppendUvarint(dst, uint64(len(p.seqs)))
	for _, s := range p.seqs {
		dst = binary.LittleEndian.AppendUint64(dst, s)
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], crcTable))
}

// errBadPositions is wrapped by every error decodePositions returns.
var errBadPositions = errors.New("cluster: corrupt positions file")

// decodePositions reads what appendPositions wrote.
func decodePositions(b []byte) (positions, error) {
	var p positions
	if len(b) < len(positionsMagic)+1+8+1+4 {
		return p, fmt.Errorf("%w: %d bytes", errBadPositions, len(b))
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return p, fmt.Errorf("%w: checksum mismatch", errBadPositions)
	}
	if string(body[:4]) != positionsMagic || body[4] < 1 || body[4] > positionsVersion {
		return p, fmt.Errorf("%w: unknown magic or version", errBadPositions)
	}
	p.created = int64(binary.LittleEndian.Uint64(body[5:]))
	at := 13
	if body[4] >= 2 {
		if len(body) < at+8+1 {
			return p, fmt.Errorf("%w: %d bytes", errBadPositions, len(b))
		}
		p.walNext = binary.LittleEndian.Uint64(body[at:])
		at += 8
	}
	n, k := binary.Uvarint(body[at:])
	if k <= 0 || n > maxPartitions || uint64(len(body)-at-k) != n*8 {
		return p, fmt.Errorf("%w: bad partition count", errBadPositions)
	}
	rest := body[at+k:]
	p.seqs = make([]uint64, n)
	for i := range p.seqs {
		p.seqs[i] = binary.LittleEndian.Uint64(rest[i*8:])
	}
	return p, nil
}

// loadPositions reads the positions file at path; a missing file is the
// zero positions (nothing applied), not an error.
func loadPositions(fsys vfs.FS, path string) (positions, error) {
	f, err := fsys.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return positions{}, nil
	}
	if err != nil {
		return positions{}, fmt.Errorf("cluster: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return positions{}, fmt.Errorf("cluster: reading %s: %w", path, err)
	}
	p, err := decodePositions(b)
	if err != nil {
		return p, fmt.Errorf("%w (%s)", err, path)
	}
	return p, nil
}

// savePositions replaces the positions file durably: a temporary file,
// fsynced, renamed over the old one, and the directory fsynced.
func savePositions(fsys vfs.FS, path string, p positions, buf []byte) ([]byte, error) {
	buf = appendPositions(buf[:0], p)
	tmp := path + ".tmp"
	f, err := fsys.Create(tmp)
	if err != nil {
		return buf, fmt.Errorf("cluster: positions: %w", err)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err == nil {
		err = fsys.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		return buf, fmt.Errorf("cluster: saving positions: %w", err)
	}
	return buf, nil
}

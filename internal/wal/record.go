package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strconv"
	"strings"
)

// Record layout; see doc.go.
const (
	headerSize = 9 // CRC-32C (4) + length (4) + type (1)

	// MaxPayload is the largest record payload. Keeping it far below
	// 4 GiB lets recovery reject most garbage lengths cheaply.
	MaxPayload = 16 << 20

	// TypeUpdates is the record type of an update batch (AppendUpdates).
	// Type 0 is invalid so that zero-filled space never parses as a record.
	TypeUpdates byte = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// LSN is a log sequence number: the 1-based ordinal of a record in the
// log. Consecutive records have consecutive LSNs, across segments. 0
// means "no record".
type LSN uint64

// recordHeader fills hdr for a record of type typ holding payload.
func recordHeader(hdr *[headerSize]byte, typ byte, payload []byte) {
	binary.LittleEndian.PutUint32(hdr[4:8], uint32(len(payload)))
	hdr[8] = typ
	crc := crc32.Update(0, castagnoli, hdr[4:9])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(hdr[0:4], crc)
}

// appendRecord appends one encoded record to dst.
func appendRecord(dst []byte, typ byte, payload []byte) []byte {
	var hdr [headerSize]byte
	recordHeader(&hdr, typ, payload)
	dst = append(dst, hdr[:]...)
	return append(dst, payload...)
}

// CorruptError reports a record that fails validation anywhere except
// the torn tail of the last segment.
type CorruptError struct {
	File   string // path of the segment file
	Offset int64  // byte offset of the first bad record in File
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt log: %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// parseRecord decodes the record at data[off:]. ok is false with a reason
// if it is incomplete or fails validation.
func parseRecord(data []byte, off int) (typ byte, payload []byte, reason string) {
	rest := data[off:]
	if len(rest) < headerSize {
		return 0, nil, fmt.Sprintf("partial header (%d of %d bytes)", len(rest), headerSize)
	}
	n := binary.LittleEndian.Uint32(rest[4:8])
	typ = rest[8]
	if typ == 0 {
		return 0, nil, "invalid record type 0"
	}
	if n > MaxPayload {
		return 0, nil, fmt.Sprintf("length %d exceeds MaxPayload", n)
	}
	if uint64(n) > uint64(len(rest)-headerSize) {
		return 0, nil, fmt.Sprintf("record of %d bytes runs past end of file (%d bytes left)", n, len(rest)-headerSize)
	}
	payload = rest[headerSize : headerSize+int(n)]
	crc := crc32.Update(crc32.Update(0, castagnoli, rest[4:9]), castagnoli, payload)
	if want := binary.LittleEndian.Uint32(rest[0:4]); crc != want {
		return 0, nil, fmt.Sprintf("checksum mismatch (stored %#08x, computed %#08x)", want, crc)
	}
	return typ, payload, ""
}

// scanSegment walks the records of one segment's bytes, calling fn (if
// not nil) for each valid record before the first bad one. It returns
// the number of valid records, the offset just past the last of them and
// a *CorruptError for the first bad record (nil if the data ends cleanly
// on a record boundary). An error from fn stops the scan and is returned
// as err.
func scanSegment(path string, data []byte, fn func(off int, typ byte, payload []byte) error) (n int, end int, bad *CorruptError, err error) {
	off := 0
	for off < len(data) {
		typ, payload, reason := parseRecord(data, off)
		if reason != "" {
			return n, off, &CorruptError{File: path, Offset: int64(off), Reason: reason}, nil
		}
		if fn != nil {
			if err := fn(off, typ, payload); err != nil {
				return n, off, nil, err
			}
		}
		n++
		off += headerSize + len(payload)
	}
	return n, off, nil, nil
}

// resyncBudget bounds the bytes checksummed while looking for a valid
// record after a bad one. A genuine torn tail is at most the unsynced
// writes at the moment of a crash; a larger remainder is treated as
// corruption (see isTornTail).
const resyncBudget = 256 << 20

// isTornTail decides whether a bad record at data[off:] in the LAST
// segment is a torn tail (safe to truncate) rather than corruption in the
// middle of the log. It is a torn tail when
//   - the rest of the file is zero, or the bad header is all zero (space
//     the filesystem allocated but the crash left unwritten), or
//   - no complete, checksum-valid record starts anywhere after off.
//
// A valid record after the bad one means the bad bytes lie inside data
// that was written completely, so truncating could drop acknowledged
// records: that is reported as corruption (Repair cuts deliberately). If
// the search exceeds resyncBudget it also answers "corruption": refusing
// to open is safe, silently dropping records is not.
func isTornTail(data []byte, off int) (tail bool, why string) {
	rest := data[off:]
	if allZero(rest[:min(len(rest), headerSize)]) {
		return true, "zero-filled tail"
	}
	budget := resyncBudget
	for c := off + 1; c+headerSize <= len(data); c++ {
		r := data[c:]
		n := binary.LittleEndian.Uint32(r[4:8])
		if r[8] == 0 || n > MaxPayload || uint64(n) > uint64(len(r)-headerSize) {
			continue
		}
		if budget -= int(n) + headerSize; budget < 0 {
			return false, fmt.Sprintf("gave up looking for a valid record after %d bytes of checksums", resyncBudget)
		}
		if _, _, reason := parseRecord(data, c); reason == "" {
			return false, fmt.Sprintf("a valid record follows at offset %d", c)
		}
	}
	return true, "no valid record follows"
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Segment file names: wal-<20-digit first LSN>.log.
const (
	segPrefix = "wal-"
	segSuffix = ".log"
)

func segmentName(first LSN) string {
	return fmt.Sprintf("%s%020d%s", segPrefix, uint64(first), segSuffix)
}

// parseSegmentName returns the first LSN encoded in a segment file name.
func parseSegmentName(name string) (LSN, bool) {
	name = filepath.Base(name)
	if len(name) != len(segPrefix)+20+len(segSuffix) || !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
		return 0, false
	}
	v, err := strconv.ParseUint(name[len(segPrefix):len(segPrefix)+20], 10, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return LSN(v), true
}

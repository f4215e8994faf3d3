package alert

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The change log's framing; see doc.go (Persistence) for the layout.
const (
	// logMagic opens every change log.
	logMagic = "FLEETCFG\x00\x00\x00\x01"
	// recHeader is a record's header: CRC-32C and length.
	recHeader = 8
	// maxRecord bounds a record's payload: a bulk PUT of MaxRules rules,
	// or a zone at fence's size limit, is well below it.
	maxRecord = 256 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends one framed record holding payload to dst.
func appendRecord(dst, payload []byte) []byte {
	var h [recHeader]byte
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	crc := crc32.Update(crc32.Checksum(h[4:], crcTable), crcTable, payload)
	binary.LittleEndian.PutUint32(h[:4], crc)
	return append(append(dst, h[:]...), payload...)
}

// errLogCorrupt marks a change log that cannot be read to its end: a
// record fails its checksum, or has an impossible length, and is followed
// by more data (so it is not a write cut short by a crash).
var errLogCorrupt = errors.New("corrupt change log")

// logRecords splits a change log into its records' payloads. A last
// record cut short, or one whose checksum fails and which runs to the end
// of data (a torn append: the crash came before its fsync returned, so it
// was never acknowledged), ends the log: good is then the length of the
// valid prefix, where the next append belongs, and torn is true. Any
// other damage is an error wrapping errLogCorrupt with the offset. The
// payloads alias data.
func logRecords(data []byte) (payloads [][]byte, good int, torn bool, err error) {
	if len(data) < len(logMagic) {
		if string(data) == logMagic[:len(data)] {
			return nil, 0, len(data) > 0, nil // the header itself was torn
		}
		return nil, 0, false, fmt.Errorf("%w: bad header", errLogCorrupt)
	}
	if string(data[:len(logMagic)]) != logMagic {
		return nil, 0, false, fmt.Errorf("%w: bad header", errLogCorrupt)
	}
	off := len(logMagic)
	for off < len(data) {
		rest := data[off:]
		if len(rest) < recHeader {
			return payloads, off, true, nil
		}
		n := binary.LittleEndian.Uint32(rest[4:recHeader])
		if uint64(len(rest)-recHeader) < uint64(n) {
			return payloads, off, true, nil
		}
		body := rest[recHeader : recHeader+int(n)]
		crc := crc32.Update(crc32.Checksum(rest[4:recHeader], crcTable), crcTable, body)
		if crc != binary.LittleEndian.Uint32(rest[:4]) {
			if recHeader+int(n) == len(rest) {
				return payloads, off, true, nil
			}
			return payloads, off, false, fmt.Errorf("%w: record at offset %d fails its checksum", errLogCorrupt, off)
		}
		payloads = append(payloads, body)
		off += recHeader + int(n)
	}
	return payloads, off, false, nil
}

package teltonika

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Codec IDs of the AVL data packets this package decodes.
const (
	Codec8         = 0x08
	Codec8Extended = 0x8E
	Codec16        = 0x10
)

// IO element IDs kept in Record.IO (Teltonika's FMB AVL ID list); every
// other element is skipped by its width.
const (
	IOIgnition       = 239 // 1 byte, 0/1
	IOMovement       = 240 // 1 byte, 0/1
	IOTotalOdometer  = 16  // 4 bytes, metres
	IOExtVoltage     = 66  // 2 bytes, mV
	IOBatteryVoltage = 67  // 2 bytes, mV
	IOBatteryLevel   = 113 // 1 byte, %
	IOHDOP           = 182 // 2 bytes, 0.1 (GNSS HDOP)
)

// Bits of IO.Mask.
const (
	HasIgnition uint8 = 1 << iota
	HasMovement
	HasOdometer
	HasExtVoltage
	HasBatteryVoltage
	HasBatteryLevel
	HasHDOP
)

// IO holds the IO elements a record carried that fleetd keeps.
type IO struct {
	Mask           uint8 // Has* bits
	Ignition       bool
	Movement       bool
	Odometer       uint32 // metres
	ExtVoltage     uint16 // mV
	BatteryVoltage uint16 // mV
	BatteryLevel   uint8  // %
	HDOP           uint16 // 0.1
}

// Record is one AVL record as the device sent it.
type Record struct {
	TimeMs     int64 // Unix milliseconds
	Priority   uint8 // 0 low, 1 high, 2 panic
	Lon, Lat   int32 // 1e-7 degree, two's complement
	Altitude   int16 // metres
	Angle      uint16
	Satellites uint8
	Speed      uint16 // km/h
	EventID    uint16 // the IO element that caused the record, 0 if none
	Generation uint8  // Codec 16 only: generation type
	IO         IO
}

// Frame sizes. A frame is header (preamble and data length), data, CRC.
const (
	HeaderLen = 8
	CRCLen    = 4
	// MinDataLen is the shortest data field: codec, count, one record's
	// fixed part (24 bytes) and an empty Codec 8 IO part (event ID, total
	// and four counts: 6 bytes), count.
	MinDataLen = 1 + 1 + 24 + 6 + 1
	// DefaultMaxDataLen bounds the data field length a device may
	// announce; FM devices send at most 1280-byte packets by default, and
	// Codec 8 Extended packets with beacon (NX) elements stay well under.
	DefaultMaxDataLen = 64 << 10
)

// Errors of Decode and ParseHeader; each returned error wraps one.
var (
	ErrPreamble  = errors.New("teltonika: preamble is not 4 zero bytes")
	ErrLength    = errors.New("teltonika: bad data length")
	ErrCRC       = errors.New("teltonika: CRC mismatch")
	ErrCodec     = errors.New("teltonika: unsupported codec")
	ErrCount     = errors.New("teltonika: record counts disagree")
	ErrTruncated = errors.New("teltonika: record runs past the data field")
)

// ParseHeader reads a frame's first 8 bytes and returns the data field
// length, which must be from MinDataLen to maxData.
func ParseHeader(h []byte, maxData int) (int, error) {
	if len(h) < HeaderLen {
		return 0, fmt.Errorf("%w: %d header bytes", ErrLength, len(h))
	}
	if binary.BigEndian.Uint32(h) != 0 {
		return 0, fmt.Errorf("%w (% x)", ErrPreamble, h[:4])
	}
	n := binary.BigEndian.Uint32(h[4:])
	if n < MinDataLen || uint64(n) > uint64(maxData) {
		return 0, fmt.Errorf("%w: %d bytes, want %d to %d", ErrLength, n, MinDataLen, maxData)
	}
	return int(n), nil
}

// Decode decodes a whole frame (header, data, CRC), appending its records
// to dst. It checks the preamble, the length against the frame, the CRC,
// the codec, that both record counts agree and that the records fill the
// data field exactly. On error dst is returned as it came.
func Decode(frame []byte, dst []Record, maxData int) (codec byte, recs []Record, err error) {
	n, err := ParseHeader(frame, maxData)
	if err != nil {
		return 0, dst, err
	}
	if len(frame) != HeaderLen+n+CRCLen {
		return 0, dst, fmt.Errorf("%w: header says %d data bytes, frame has %d", ErrLength, n, len(frame)-HeaderLen-CRCLen)
	}
	data := frame[HeaderLen : HeaderLen+n]
	crc := frame[HeaderLen+n:]
	want := binary.BigEndian.Uint32(crc)
	if got := CRC16(data); uint32(got) != want {
		return 0, dst, fmt.Errorf("%w: computed %04x, frame says %08x", ErrCRC, got, want)
	}
	return DecodeData(data, dst)
}

// DecodeData decodes a data field whose CRC has been checked: codec ID,
// count, records, count.
func DecodeData(data []byte, dst []Record) (codec byte, recs []Record, err error) {
	if len(data) < 3 {
		return 0, dst, fmt.Errorf("%w: %d data bytes", ErrLength, len(data))
	}
	codec = data[0]
	if codec != Codec8 && codec != Codec8Extended && codec != Codec16 {
		return codec, dst, fmt.Errorf("%w 0x%02x (want 0x08, 0x8E or 0x10)", ErrCodec, codec)
	}
	count := int(data[1])
	if last := int(data[len(data)-1]); last != count || count == 0 {
		return codec, dst, fmt.Errorf("%w: %d at the start, %d at the end", ErrCount, count, last)
	}
	d := decoder{b: data[2 : len(data)-1]}
	start := len(dst)
	for i := range count {
		var r Record
		if !d.record(codec, &r) {
			return codec, dst[:start], fmt.Errorf("%w: record %d of %d at data offset %d", ErrTruncated, i+1, count, 2+d.off)
		}
		dst = append(dst, r)
	}
	if d.off != len(d.b) {
		return codec, dst[:start], fmt.Errorf("%w: %d bytes after record %d", ErrCount, len(d.b)-d.off, count)
	}
	return codec, dst, nil
}

// decoder reads big-endian fields; once a read runs past the end, ok is
// false and every later read returns 0.
type decoder struct {
	b   []byte
	off int
	bad bool
}

func (d *decoder) need(n int) bool {
	if d.bad || n > len(d.b)-d.off {
		d.bad = true
		return false
	}
	return true
}

func (d *decoder) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) u16() uint16 {
	if !d.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(d.b[d.off:])
	d.off += 2
	return v
}

func (d *decoder) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *decoder) u64() uint64 {
	if !d.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

// uN reads an n-byte (1, 2, 4 or 8) unsigned value.
func (d *decoder) uN(n int) uint64 {
	switch n {
	case 1:
		return uint64(d.u8())
	case 2:
		return uint64(d.u16())
	case 4:
		return uint64(d.u32())
	}
	return d.u64()
}

func (d *decoder) skip(n int) {
	if d.need(n) {
		d.off += n
	}
}

// record reads one AVL record (doc.go draws the layouts).
func (d *decoder) record(codec byte, r *Record) bool {
	r.TimeMs = int64(d.u64())
	r.Priority = d.u8()
	r.Lon = int32(d.u32())
	r.Lat = int32(d.u32())
	r.Altitude = int16(d.u16())
	r.Angle = d.u16()
	r.Satellites = d.u8()
	r.Speed = d.u16()
	wide := codec == Codec8Extended // 2-byte counts
	switch codec {
	case Codec8:
		r.EventID = uint16(d.u8())
	default:
		r.EventID = d.u16()
	}
	if codec == Codec16 {
		r.Generation = d.u8()
	}
	count := func() int {
		if wide {
			return int(d.u16())
		}
		return int(d.u8())
	}
	id := func() uint16 {
		if codec == Codec8 {
			return uint16(d.u8())
		}
		return d.u16()
	}
	count() // the total, not needed: each width says its own count
	for _, width := range [4]int{1, 2, 4, 8} {
		n := count()
		for range n {
			if d.bad {
				return false
			}
			k := id()
			r.IO.keep(k, d.uN(width))
		}
	}
	if wide {
		n := count()
		for range n {
			if d.bad {
				return false
			}
			k := id()
			l := int(d.u16())
			if l <= 8 && d.need(l) {
				var v uint64
				for _, c := range d.b[d.off : d.off+l] {
					v = v<<8 | uint64(c)
				}
				r.IO.keep(k, v)
			}
			d.skip(l)
		}
	}
	return !d.bad
}

// keep stores the elements fleetd keeps, whatever width they came in.
func (io *IO) keep(id uint16, v uint64) {
	switch id {
	case IOIgnition:
		io.Mask |= HasIgnition
		io.Ignition = v != 0
	case IOMovement:
		io.Mask |= HasMovement
		io.Movement = v != 0
	case IOTotalOdometer:
		io.Mask |= HasOdometer
		io.Odometer = uint32(min(v, 1<<32-1))
	case IOExtVoltage:
		io.Mask |= HasExtVoltage
		io.ExtVoltage = uint16(min(v, 1<<16-1))
	case IOBatteryVoltage:
		io.Mask |= HasBatteryVoltage
		io.BatteryVoltage = uint16(min(v, 1<<16-1))
	case IOBatteryLevel:
		io.Mask |= HasBatteryLevel
		io.BatteryLevel = uint8(min(v, 1<<8-1))
	case IOHDOP:
		io.Mask |= HasHDOP
		io.HDOP = uint16(min(v, 1<<16-1))
	}
}

// CRC16 is CRC-16/IBM (also called ARC: polynomial 0x8005 reflected as
// 0xA001, initial value 0, no final XOR), as Teltonika computes it over
// the data field.
func CRC16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc>>8 ^ crcTable[byte(crc)^c]
	}
	return crc
}

// crcTable[i] is the CRC of the byte i: a byte at a time rather than a
// bit (8 times fewer steps).
var crcTable = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
		t[i] = crc
	}
	return t
}()

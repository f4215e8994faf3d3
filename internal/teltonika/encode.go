package teltonika

import (
	"encoding/binary"
	"fmt"
)

// AppendIMEI appends the handshake a device opens with: the length (2
// bytes) and the IMEI's ASCII digits.
func AppendIMEI(dst []byte, imei string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(imei)))
	return append(dst, imei...)
}

// AppendFrame appends a whole AVL data packet of recs in codec, with each
// kept IO element of r.IO in its usual width (ignition, movement and
// battery level 1 byte, voltages and HDOP 2, odometer 4), as a device sends it. It is what fleetd
// sim and the tests send; len(recs) must be 1 to 255.
func AppendFrame(dst []byte, codec byte, recs []Record) []byte {
	if len(recs) == 0 || len(recs) > 255 {
		panic(fmt.Sprintf("BUG: teltonika: AppendFrame of %d records", len(recs)))
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	data := len(dst)
	dst = append(dst, codec, byte(len(recs)))
	for i := range recs {
		dst = appendRecord(dst, codec, &recs[i])
	}
	dst = append(dst, byte(len(recs)))
	binary.BigEndian.PutUint32(dst[start+4:], uint32(len(dst)-data))
	return binary.BigEndian.AppendUint32(dst, uint32(CRC16(dst[data:])))
}

type ioElem struct {
	id    uint16
	width int
	v     uint64
}

func appendRecord(b []byte, codec byte, r *Record) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(r.TimeMs))
	b = append(b, r.Priority)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Lon))
	b = binary.BigEndian.AppendUint32(b, uint32(r.Lat))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Altitude))
	b = binary.BigEndian.AppendUint16(b, r.Angle)
	b = append(b, r.Satellites)
	b = binary.BigEndian.AppendUint16(b, r.Speed)
	var els [7]ioElem
	n := 0
	add := func(has uint8, id uint16, width int, v uint64) {
		if r.IO.Mask&has != 0 {
			els[n] = ioElem{id, width, v}
			n++
		}
	}
	add(HasIgnition, IOIgnition, 1, b2u(r.IO.Ignition))
	add(HasMovement, IOMovement, 1, b2u(r.IO.Movement))
	add(HasBatteryLevel, IOBatteryLevel, 1, uint64(r.IO.BatteryLevel))
	add(HasExtVoltage, IOExtVoltage, 2, uint64(r.IO.ExtVoltage))
	add(HasBatteryVoltage, IOBatteryVoltage, 2, uint64(r.IO.BatteryVoltage))
	add(HasHDOP, IOHDOP, 2, uint64(r.IO.HDOP))
	add(HasOdometer, IOTotalOdometer, 4, uint64(r.IO.Odometer))
	wide := codec == Codec8Extended
	putN := func(v int) []byte {
		if wide {
			return binary.BigEndian.AppendUint16(b, uint16(v))
		}
		return append(b, byte(v))
	}
	if codec == Codec8 {
		b = append(b, byte(r.EventID))
	} else {
		b = binary.BigEndian.AppendUint16(b, r.EventID)
	}
	if codec == Codec16 {
		b = append(b, r.Generation)
	}
	b = putN(n)
	for _, w := range [4]int{1, 2, 4, 8} {
		c := 0
		for _, e := range els[:n] {
			if e.width == w {
				c++
			}
		}
		b = putN(c)
		for _, e := range els[:n] {
			if e.width != w {
				continue
			}
			if codec == Codec8 {
				b = append(b, byte(e.id))
			} else {
				b = binary.BigEndian.AppendUint16(b, e.id)
			}
			for i := w - 1; i >= 0; i-- {
				b = append(b, byte(e.v>>(8*i)))
			}
		}
	}
	if wide {
		b = putN(0) // no NX elements
	}
	return b
}

func b2u(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

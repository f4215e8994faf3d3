package teltonika

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/fleet"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The examples of Teltonika's codec documentation ("Codec" page of the
// Teltonika wiki), each decoded by hand below: the comment under each
// frame splits it field by field.
var vendorFrames = []struct {
	name  string
	hex   string
	codec byte
	want  []Record
}{
	{
		name: "codec 8, example 1",
		// 00000000 preamble | 00000036 data length 54 | 08 codec | 01 records
		// 0000016B40D8EA30 time 1560161086000 ms | 01 priority
		// 00000000 lon | 00000000 lat | 0000 alt | 0000 angle | 00 sat | 0000 speed
		// 01 event IO | 05 total | 02 N1: 15=03 01=01 | 01 N2: 42=5E0F
		// 01 N4: F1=0000601A | 01 N8: 4E=0000000000000000
		// 01 records | 0000C7CF CRC
		hex:   "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF",
		codec: Codec8,
		want: []Record{{TimeMs: 1560161086000, Priority: 1, EventID: 1,
			IO: IO{Mask: HasExtVoltage, ExtVoltage: 0x5E0F}}},
	},
	{
		name: "codec 8, example 2",
		// 00000000 | 00000028 (40) | 08 | 01 | 0000016B40D9AD80 (1560161136000) | 01
		// 15 zero bytes of GPS | 01 event | 03 total | 02 N1: 15=03 01=01
		// 01 N2: 42=5E10 | 00 N4 | 00 N8 | 01 | 0000F22A
		hex:   "000000000000002808010000016B40D9AD80010000000000000000000000000000000103021503010101425E100000010000F22A",
		codec: Codec8,
		want: []Record{{TimeMs: 1560161136000, Priority: 1, EventID: 1,
			IO: IO{Mask: HasExtVoltage, ExtVoltage: 0x5E10}}},
	},
	{
		name: "codec 8, example 3 (two records)",
		// 00000000 | 00000043 (67) | 08 | 02
		// 0000016B40D57B48 (1560160861000) | 01 | 15 zero bytes | 01 event | 01 total | 01 N1: 01=00 | 00 | 00 | 00
		// 0000016B40D5C198 (1560160879000) | 01 | 15 zero bytes | 01 event | 01 total | 01 N1: 01=01 | 00 | 00 | 00
		// 02 | 0000252C
		hex:   "000000000000004308020000016B40D57B480100000000000000000000000000000001010101000000000000016B40D5C198010000000000000000000000000000000101010101000000020000252C",
		codec: Codec8,
		want: []Record{
			{TimeMs: 1560160861000, Priority: 1, EventID: 1},
			{TimeMs: 1560160879000, Priority: 1, EventID: 1},
		},
	},
	{
		name: "codec 8 extended",
		// 00000000 | 0000004A (74) | 8E | 01 | 0000016B412CEE00 (1560166592000) | 01
		// 15 zero bytes of GPS | 0001 event IO | 0005 total
		// 0001 N1: 0001=01 | 0001 N2: 0011=001D | 0001 N4: 0010=015E2C88 (odometer 22949000 m)
		// 0002 N8: 000B=000000003544C87A 000E=000000001DD7E06A | 0000 NX
		// 01 | 00002994
		hex:   "000000000000004A8E010000016B412CEE000100000000000000000000000000000000010005000100010100010011001D00010010015E2C880002000B000000003544C87A000E000000001DD7E06A00000100002994",
		codec: Codec8Extended,
		want: []Record{{TimeMs: 1560166592000, Priority: 1, EventID: 1,
			IO: IO{Mask: HasOdometer, Odometer: 22949000}}},
	},
	{
		name: "codec 16 (two records)",
		// 00000000 | 0000005F (95) | 10 | 02
		// 0000016BDBC78330 (1562760414000) | 00 | 15 zero bytes | 000B event IO | 05 generation
		// 04 total | 02 N1: 0001=00 0003=00 | 02 N2: 000B=0027 0042=563A | 00 N4 | 00 N8
		// 0000016BDBC78718 (1562760415000) | 00 | 15 zero bytes | 000B | 05
		// 04 | 02 N1: 0001=00 0003=00 | 02 N2: 000B=0026 0042=563A | 00 | 00
		// 02 | 00005FB3
		hex:   "000000000000005F10020000016BDBC7833000000000000000000000000000000000000B05040200010000030002000B00270042563A00000000016BDBC7871800000000000000000000000000000000000B05040200010000030002000B00260042563A00000200005FB3",
		codec: Codec16,
		want: []Record{
			{TimeMs: 1562760414000, EventID: 11, Generation: 5, IO: IO{Mask: HasExtVoltage, ExtVoltage: 22074}},
			{TimeMs: 1562760415000, EventID: 11, Generation: 5, IO: IO{Mask: HasExtVoltage, ExtVoltage: 22074}},
		},
	},
}

func TestVendorFrames(t *testing.T) {
	for _, tt := range vendorFrames {
		t.Run(tt.name, func(t *testing.T) {
			b := unhex(t, tt.hex)
			codec, recs, err := Decode(b, nil, DefaultMaxDataLen)
			if err != nil {
				t.Fatal(err)
			}
			if codec != tt.codec || !reflect.DeepEqual(recs, tt.want) {
				t.Fatalf("codec %#x, records\n%+v\nwant\n%+v", codec, recs, tt.want)
			}
			n, err := ParseHeader(b, DefaultMaxDataLen)
			if err != nil || n != len(b)-HeaderLen-CRCLen {
				t.Fatalf("ParseHeader = %d, %v", n, err)
			}
			// Every single-bit flip in the data field or CRC is caught.
			for i := HeaderLen; i < len(b); i++ {
				c := append([]byte(nil), b...)
				c[i] ^= 1 << (i % 8)
				if _, _, err := Decode(c, nil, DefaultMaxDataLen); err == nil {
					t.Fatalf("flip at byte %d accepted", i)
				}
			}
		})
	}
}

// TestHandBuiltCodec8 decodes a frame written byte by byte here (not with
// AppendFrame), with a real position: negative longitude, altitude,
// angle, speed, and every kept IO element in its usual width.
func TestHandBuiltCodec8(t *testing.T) {
	data := unhex(t, ""+
		"08 01"+
		"00000193 5A3C1B00"+ // time: 0x1935A3C1B00 ms
		"01"+ // priority
		"D3E4A9A8"+ // lon: 2^32 - 0xD3E4A9A8 = 739989080 → -73.9989080°
		"1846A9E0"+ // lat: 0x1846A9E0 = 407284192 → 40.7284192°
		"0012"+ // altitude 18 m
		"015E"+ // angle 350
		"0B"+ // 11 satellites
		"0058"+ // speed 88 km/h
		"EF"+ // event IO 239 (ignition)
		"07"+ // 7 elements
		"03 EF01 F000 715F"+ // N1: ignition on, movement off, battery level 95 %
		"03 4230D4 430FA0 B6000C"+ // N2: external voltage 12500 mV, battery 4000 mV, HDOP 1.2
		"01 10 0001E240"+ // N4: odometer 123456 m
		"00"+ // N8
		"01")
	frame := binary.BigEndian.AppendUint32(make([]byte, 4), uint32(len(data)))
	frame = append(frame, data...)
	frame = binary.BigEndian.AppendUint32(frame, uint32(CRC16(data)))
	_, recs, err := Decode(frame, nil, DefaultMaxDataLen)
	if err != nil {
		t.Fatal(err)
	}
	want := Record{TimeMs: 0x1935A3C1B00, Priority: 1, Lon: -739989080, Lat: 407284192, Altitude: 18, Angle: 350,
		Satellites: 11, Speed: 88, EventID: 239,
		IO: IO{Mask: HasIgnition | HasMovement | HasExtVoltage | HasBatteryVoltage | HasOdometer | HasBatteryLevel | HasHDOP,
			Ignition: true, ExtVoltage: 12500, BatteryVoltage: 4000, Odometer: 123456, BatteryLevel: 95, HDOP: 12}}
	if len(recs) != 1 || recs[0] != want {
		t.Fatalf("got %+v\nwant %+v", recs, want)
	}
	if got := AppendFrame(nil, Codec8, recs); string(got) != string(frame) {
		t.Fatalf("AppendFrame:\n% x\nwant\n% x", got, frame)
	}
	u, err := MakeUpdate([]byte("356307042441013"), &recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if u.LatDeg() != 40.7284192 || u.LonDeg() != -73.998908 || u.Speed != 880 || u.Heading != 350 || u.TS != 0x1935A3C1B00/1000 {
		t.Fatalf("update %+v", u)
	}
	var wantAttrs fleet.Attrs
	for a, v := range map[fleet.Attr]int32{fleet.Altitude: 180, fleet.Satellites: 11, fleet.Ignition: 1, fleet.Motion: 0,
		fleet.Odometer: 123456, fleet.ExtVoltage: 12500, fleet.BatteryVoltage: 4000, fleet.BatteryLevel: 95, fleet.HDOP: 12} {
		wantAttrs.Set(a, v)
	}
	if u.Attrs != wantAttrs {
		t.Fatalf("attributes %+v, want %+v", u.Attrs, wantAttrs)
	}
}

// TestHandBuiltCodec8ExtendedNX: 8E with a kept element in an unusual
// width (odometer as 8 bytes), an unknown NX element skipped by its
// length, and a kept one in NX.
func TestHandBuiltCodec8ExtendedNX(t *testing.T) {
	data := unhex(t, ""+
		"8E 01"+
		"0000019300000000 00"+
		"00000064 000000C8 0000 0000 00 0000"+ // lon 100, lat 200 (1e-7°)
		"0000 0004"+ // event none, 4 elements
		"0000 0000 0000"+ // N1, N2, N4 none
		"0001 0010 00000000000003E8"+ // N8: odometer 1000 m
		"0002 0385 0005 0102030405 00F0 0001 01"+ // NX: ID 901 (5 bytes, skipped), movement (1 byte)
		"01")
	frame := binary.BigEndian.AppendUint32(make([]byte, 4), uint32(len(data)))
	frame = append(frame, data...)
	frame = binary.BigEndian.AppendUint32(frame, uint32(CRC16(data)))
	_, recs, err := Decode(frame, nil, DefaultMaxDataLen)
	if err != nil {
		t.Fatal(err)
	}
	want := Record{TimeMs: 0x19300000000, Lon: 100, Lat: 200, IO: IO{Mask: HasOdometer | HasMovement, Odometer: 1000, Movement: true}}
	if len(recs) != 1 || recs[0] != want {
		t.Fatalf("got %+v\nwant %+v", recs, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	good := unhex(t, vendorFrames[0].hex)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	withCRC := func(b []byte) []byte {
		n := len(b) - CRCLen
		binary.BigEndian.PutUint32(b[n:], uint32(CRC16(b[HeaderLen:n])))
		return b
	}
	for _, tt := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"preamble", mod(func(b []byte) []byte { b[0] = 1; return b }), ErrPreamble},
		{"short header", good[:5], ErrLength},
		{"length too small", mod(func(b []byte) []byte { b[7] = 3; return b }), ErrLength},
		{"length past frame", mod(func(b []byte) []byte { b[7]++; return b }), ErrLength},
		{"length too large", mod(func(b []byte) []byte { b[5] = 0xFF; return b }), ErrLength},
		{"crc", mod(func(b []byte) []byte { b[len(b)-1] ^= 0xFF; return b }), ErrCRC},
		{"crc high bytes", mod(func(b []byte) []byte { b[len(b)-4] = 1; return b }), ErrCRC},
		{"codec", mod(func(b []byte) []byte { b[8] = 0x0C; return withCRC(b) }), ErrCodec},
		{"counts disagree", mod(func(b []byte) []byte { b[len(b)-5] = 2; return withCRC(b) }), ErrCount},
		{"zero records", mod(func(b []byte) []byte { b[9] = 0; b[len(b)-5] = 0; return withCRC(b) }), ErrCount},
		{"two announced, one sent", mod(func(b []byte) []byte { b[9] = 2; b[len(b)-5] = 2; return withCRC(b) }), ErrTruncated},
		{"N1 count overruns", mod(func(b []byte) []byte { b[8+2+24+2] = 200; return withCRC(b) }), ErrTruncated},
	} {
		_, recs, err := Decode(tt.frame, nil, DefaultMaxDataLen)
		if !errors.Is(err, tt.want) || len(recs) != 0 {
			t.Errorf("%s: %v (%d records), want %v", tt.name, err, len(recs), tt.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "teltonika: ") {
			t.Errorf("%s: error %q lacks the package prefix", tt.name, err)
		}
	}
	// Trailing bytes inside the data field: a record that ends early.
	data := unhex(t, "08 01 0000019300000000 00 00000064 000000C8 0000 0000 00 0000 00 00 00 00 00 00 FF 01")
	frame := binary.BigEndian.AppendUint32(make([]byte, 4), uint32(len(data)))
	frame = binary.BigEndian.AppendUint32(append(frame, data...), uint32(CRC16(data)))
	if _, _, err := Decode(frame, nil, DefaultMaxDataLen); !errors.Is(err, ErrCount) {
		t.Errorf("trailing byte: %v", err)
	}
}

// TestRoundTrip: random records through AppendFrame and Decode in every
// codec come back equal.
func TestRoundTrip(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	for range 2000 {
		codec := []byte{Codec8, Codec8Extended, Codec16}[r.IntN(3)]
		recs := make([]Record, 1+r.IntN(50))
		for i := range recs {
			recs[i] = randRecord(r, codec)
		}
		frame := AppendFrame(nil, codec, recs)
		c, got, err := Decode(frame, nil, DefaultMaxDataLen)
		if err != nil || c != codec || !reflect.DeepEqual(got, recs) {
			t.Fatalf("codec %#x: %v\n got %+v\nwant %+v", codec, err, got, recs)
		}
	}
}

func randRecord(r *rand.Rand, codec byte) Record {
	rec := Record{
		TimeMs: 1_700_000_000_000 + r.Int64N(1e11), Priority: uint8(r.IntN(3)),
		Lon: int32(r.Int64N(3_600_000_001) - 1_800_000_000), Lat: int32(r.Int64N(1_800_000_001) - 900_000_000),
		Altitude: int16(r.IntN(9000) - 400), Angle: uint16(r.IntN(360)), Satellites: uint8(r.IntN(20)),
		Speed: uint16(r.IntN(200)), EventID: uint16(r.IntN(256)),
	}
	if codec == Codec16 {
		rec.Generation = uint8(r.IntN(8))
	}
	io := &rec.IO
	io.Mask = uint8(r.IntN(128))
	if io.Mask&HasIgnition != 0 {
		io.Ignition = r.IntN(2) == 1
	}
	if io.Mask&HasMovement != 0 {
		io.Movement = r.IntN(2) == 1
	}
	if io.Mask&HasOdometer != 0 {
		io.Odometer = r.Uint32()
	}
	if io.Mask&HasExtVoltage != 0 {
		io.ExtVoltage = uint16(r.IntN(30000))
	}
	if io.Mask&HasBatteryVoltage != 0 {
		io.BatteryVoltage = uint16(r.IntN(5000))
	}
	if io.Mask&HasBatteryLevel != 0 {
		io.BatteryLevel = uint8(r.IntN(101))
	}
	if io.Mask&HasHDOP != 0 {
		io.HDOP = uint16(r.IntN(500))
	}
	return rec
}

func TestMakeUpdate(t *testing.T) {
	base := Record{TimeMs: 1764000000999, Lat: 1, Lon: 2, Angle: 360, Speed: 1000, Altitude: -5}
	u, err := MakeUpdate([]byte("x"), &base)
	if err != nil || u.TS != 1764000000 || u.Heading != 0 || u.Speed != 10000 || u.Attrs.Vals[0] != -50 {
		t.Fatalf("%+v %v", u, err)
	}
	for _, tt := range []struct {
		name string
		f    func(r *Record)
	}{
		{"no fix", func(r *Record) { r.Lat, r.Lon = 0, 0 }},
		{"time 0", func(r *Record) { r.TimeMs = 0 }},
		{"time after 2106", func(r *Record) { r.TimeMs = (1 << 32) * 1000 }},
		{"angle", func(r *Record) { r.Angle = 361 }},
	} {
		r := base
		tt.f(&r)
		if _, err := MakeUpdate([]byte("x"), &r); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	r := base
	r.Speed = 1001
	if u, _ := MakeUpdate([]byte("x"), &r); u.Position.Valid() {
		t.Error("1001 km/h is valid")
	}
	// IO values past an attribute's range are left out, the others kept.
	r = base
	r.IO = IO{Mask: HasOdometer | HasHDOP | HasBatteryLevel | HasExtVoltage | HasMovement,
		Odometer: 1 << 31, HDOP: 1001, BatteryLevel: 101, ExtVoltage: 65535, Movement: true}
	u, err = MakeUpdate([]byte("x"), &r)
	if err != nil || !u.Attrs.Valid() {
		t.Fatalf("%+v %v", u.Attrs, err)
	}
	for a, want := range map[fleet.Attr]int32{fleet.ExtVoltage: 65535, fleet.Motion: 1, fleet.Satellites: 0} {
		if v, ok := u.Attrs.Get(a); !ok || v != want {
			t.Errorf("%s: %d %v, want %d", a.Name(), v, ok, want)
		}
	}
	for _, a := range []fleet.Attr{fleet.Odometer, fleet.HDOP, fleet.BatteryLevel, fleet.Ignition, fleet.BatteryVoltage} {
		if u.Attrs.Has(a) {
			t.Errorf("%s kept", a.Name())
		}
	}
}

func TestCRC16(t *testing.T) {
	// The CRC-16/ARC check value (CRC catalogue): "123456789" → 0xBB3D.
	if got := CRC16([]byte("123456789")); got != 0xBB3D {
		t.Fatalf("CRC16 = %04x", got)
	}
}

package teltonika

import (
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzDecode: any bytes decode or fail with one of the package's errors,
// never panic, never return more records than the count byte allows, and
// a frame that decodes re-encodes to a frame that decodes to the same
// kept fields.
func FuzzDecode(f *testing.F) {
	for _, v := range vendorFrames {
		f.Add(unhex(f, v.hex))
	}
	f.Add(AppendFrame(nil, Codec8Extended, []Record{{TimeMs: 1, Lat: 1, Lon: 1, IO: IO{Mask: 127}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		codec, recs, err := Decode(b, nil, DefaultMaxDataLen)
		if err != nil {
			for _, e := range []error{ErrPreamble, ErrLength, ErrCRC, ErrCodec, ErrCount, ErrTruncated} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("error %v wraps none of the package's", err)
		}
		if len(recs) == 0 || len(recs) > 255 {
			t.Fatalf("%d records", len(recs))
		}
		_, again, err := Decode(AppendFrame(nil, codec, recs), nil, DefaultMaxDataLen)
		if err != nil || len(again) != len(recs) {
			t.Fatalf("re-encoded: %v", err)
		}
		for i := range recs {
			if again[i] != recs[i] {
				t.Fatalf("record %d: %+v, re-encoded %+v", i, recs[i], again[i])
			}
		}
	})
}

// FuzzDecodeData skips the CRC (which random bytes almost never pass) to
// reach the record parser, and makes an update of every record.
func FuzzDecodeData(f *testing.F) {
	for _, v := range vendorFrames {
		b := unhex(f, v.hex)
		f.Add(b[HeaderLen : len(b)-CRCLen])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, recs, err := DecodeData(data, nil)
		if err == nil && (len(recs) != int(data[1]) || len(recs) == 0) {
			t.Fatalf("%d records, count byte %d", len(recs), data[1])
		}
		// Wrapped in a frame with a correct CRC, it decodes the same way.
		frame := binary.BigEndian.AppendUint32(make([]byte, 4), uint32(len(data)))
		frame = binary.BigEndian.AppendUint32(append(frame, data...), uint32(CRC16(data)))
		_, recs2, err2 := Decode(frame, nil, DefaultMaxDataLen)
		if len(data) >= MinDataLen && (err == nil) != (err2 == nil) {
			t.Fatalf("DecodeData %v, Decode %v", err, err2)
		}
		if err == nil && err2 == nil && len(recs2) != len(recs) {
			t.Fatal("record counts differ")
		}
		// Every record makes an update whose attributes are in range, or
		// a clear error.
		for i := range recs {
			u, err := MakeUpdate([]byte("x"), &recs[i])
			if err == nil && (!u.Attrs.Valid() || u.Heading >= 360) {
				t.Fatalf("record %+v: update %+v", recs[i], u)
			}
		}
	})
}

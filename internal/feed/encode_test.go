package feed

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/wire"
)

func TestEncode(t *testing.T) {
	alert := func(rule, id string, state uint8) ctlEntry {
		e := ctlEntry{kind: kindAlert, state: state, ts: 1764000000, lat: 407128000, lon: -740060000}
		e.idLen = uint8(copy(e.id[:], id))
		e.ruleLen = uint8(copy(e.rule[:], rule))
		return e
	}
	expired := ctlEntry{kind: kindExpired, ts: 1764000300}
	expired.idLen = uint8(copy(expired.id[:], "truck-0000042"))
	pos := func(id string, lat, lon int32, ts uint32, speed, heading uint16) func([]byte) []byte {
		p := fleet.Position{Lat: lat, Lon: lon, TS: ts, Speed: speed, Heading: heading}
		return func(b []byte) []byte { return appendPosition(b, []byte(id), &p) }
	}
	ctl := func(e ctlEntry) func([]byte) []byte {
		return func(b []byte) []byte { return appendCtl(b, &e) }
	}
	tests := []struct {
		name string
		enc  func([]byte) []byte
		want string
	}{
		{"position", pos("truck-0000042", 407128000, -740060000, 1764000000, 525, 90),
			`{"type":"position","id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}`},
		{"position extremes", pos("a", -900000000, 1800000000, 0, 65535, 359),
			`{"type":"position","id":"a","lat":-90,"lon":180,"ts":0,"speed":6553.5,"heading":359}`},
		{"position 7 decimals", pos("b", 1, -1, 4294967295, 10, 0),
			`{"type":"position","id":"b","lat":0.0000001,"lon":-0.0000001,"ts":4294967295,"speed":1,"heading":0}`},
		{"position escaped ID", pos("a\"\x01\xff", 1234567890, -1234567890, 7, 3, 7),
			`{"type":"position","id":"a\"\u0001\ufffd","lat":123.456789,"lon":-123.456789,"ts":7,"speed":0.3,"heading":7}`},
		{"expired", ctl(expired), `{"type":"expired","id":"truck-0000042","ts":1764000300}`},
		{"alert firing", ctl(alert("speeding", "t1", stateFiring)),
			`{"type":"alert","rule":"speeding","id":"t1","state":"firing","ts":1764000000,"lat":40.7128,"lon":-74.006}`},
		{"alert resolved, escaped rule", ctl(alert("a \"b\"\n\\", "t1", stateResolved)),
			`{"type":"alert","rule":"a \"b\"\n\\","id":"t1","state":"resolved","ts":1764000000,"lat":40.7128,"lon":-74.006}`},
		{"lag", func(b []byte) []byte { return appendLag(b, 1234) }, `{"type":"lag","dropped":1234}`},
		{"lag past 32 bits", func(b []byte) []byte { return appendLag(b, 1<<40) }, `{"type":"lag","dropped":1099511627776}`},
		{"error", func(b []byte) []byte { return wire.AppendError(b, "bad \x01") }, `{"error":"bad \u0001"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(tt.enc([]byte("prefix:")))
			if got != "prefix:"+tt.want {
				t.Errorf("got  %s\nwant prefix:%s", got, tt.want)
			}
			if !json.Valid([]byte(tt.want)) {
				t.Errorf("want is not valid JSON: %s", tt.want)
			}
		})
	}
}

// wirePosition is the reference encoding of a position event, built from
// package wire's encoders and strconv.
func wirePosition(id []byte, p *fleet.Position) []byte {
	b := append([]byte(posPrefix), wire.AppendString(nil, id)...)
	b = append(b, `,"lat":`...)
	b = wire.AppendCoord(b, p.Lat)
	b = append(b, `,"lon":`...)
	b = wire.AppendCoord(b, p.Lon)
	b = append(b, `,"ts":`...)
	b = strconv.AppendUint(b, uint64(p.TS), 10)
	b = append(b, `,"speed":`...)
	b = wire.AppendSpeed(b, p.Speed)
	b = append(b, `,"heading":`...)
	b = strconv.AppendUint(b, uint64(p.Heading), 10)
	return append(b, '}')
}

// FuzzEncodersMatchWire checks that any position encodes exactly as
// package wire would, as valid JSON, and within the record limits.
func FuzzEncodersMatchWire(f *testing.F) {
	f.Add([]byte("truck-0000042"), int32(407128000), int32(-740060000), uint32(1764000000), uint16(525), uint16(90))
	f.Add([]byte("a\"\\\x00\x7f\xff"), int32(math.MinInt32), int32(math.MaxInt32), uint32(math.MaxUint32), uint16(65535), uint16(65535))
	f.Add([]byte("é"), int32(-1), int32(10), uint32(0), uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, id []byte, lat, lon int32, ts uint32, speed, heading uint16) {
		p := fleet.Position{Lat: lat, Lon: lon, TS: ts, Speed: speed, Heading: heading}
		got, want := appendPosition(nil, id, &p), wirePosition(id, &p)
		if !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
		if !json.Valid(got) {
			t.Fatalf("invalid JSON %s", got)
		}
		if len(id) > MaxIDLen {
			return
		}
		rec := appendPositionRecord([]byte("x"), &fleet.Update{ID: id, Position: p})[1:]
		n := int(rec[0]) | int(rec[1])<<8
		if n != len(rec)-2 || n > maxPosPayload || !bytes.Equal(append([]byte(posPrefix), rec[2:]...), got) {
			t.Fatalf("record %q (length %d, limit %d) for %s", rec, n, maxPosPayload, got)
		}
	})
}

// TestPositionPayloadLimits pins maxPosPayload to the longest payload
// there is, and posPayloadBudget to the payload of a typical position.
func TestPositionPayloadLimits(t *testing.T) {
	worst := fleet.Position{Lat: math.MinInt32, Lon: math.MinInt32, TS: math.MaxUint32, Speed: 65535, Heading: 65535}
	if got := len(appendPositionPayload(nil, bytes.Repeat([]byte{1}, MaxIDLen), &worst)); got != maxPosPayload {
		t.Errorf("worst payload is %d bytes, maxPosPayload %d", got, maxPosPayload)
	}
	typical := fleet.Position{Lat: 407128123, Lon: -740061234, TS: 1764000000, Speed: 525, Heading: 270}
	if got := len(appendPositionPayload(nil, []byte("truck-0000042"), &typical)); got != posPayloadBudget {
		t.Errorf("typical payload is %d bytes, posPayloadBudget %d", got, posPayloadBudget)
	}
}

func TestCutUTF8(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"}, // é is 2 bytes
		{"aé", 3, "aé"},
		{"a😀", 4, "a"},
		{strings.Repeat("x", 200), MaxRuleLen, strings.Repeat("x", MaxRuleLen)},
	}
	for _, tt := range tests {
		if got := cutUTF8(tt.s, tt.n); got != tt.want {
			t.Errorf("cutUTF8(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

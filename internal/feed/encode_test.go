package feed

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/wire"
)

func posEntryOf(id string, lat, lon int32, ts uint32, speed, heading uint16) posEntry {
	e := posEntry{lat: lat, lon: lon, ts: ts, speed: speed, heading: heading}
	e.idLen = uint8(copy(e.id[:], id))
	return e
}

func TestEncode(t *testing.T) {
	alert := func(rule, id string, state uint8) ctlEntry {
		e := ctlEntry{kind: kindAlert, state: state, ts: 1764000000, lat: 407128000, lon: -740060000}
		e.idLen = uint8(copy(e.id[:], id))
		e.ruleLen = uint8(copy(e.rule[:], rule))
		return e
	}
	expired := ctlEntry{kind: kindExpired, ts: 1764000300}
	expired.idLen = uint8(copy(expired.id[:], "truck-0000042"))
	pos := func(e posEntry) func([]byte) []byte {
		return func(b []byte) []byte { return appendPosition(b, &e) }
	}
	ctl := func(e ctlEntry) func([]byte) []byte {
		return func(b []byte) []byte { return appendCtl(b, &e) }
	}
	tests := []struct {
		name string
		enc  func([]byte) []byte
		want string
	}{
		{"position", pos(posEntryOf("truck-0000042", 407128000, -740060000, 1764000000, 525, 90)),
			`{"type":"position","id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}`},
		{"position extremes", pos(posEntryOf("a", -900000000, 1800000000, 0, 65535, 359)),
			`{"type":"position","id":"a","lat":-90,"lon":180,"ts":0,"speed":6553.5,"heading":359}`},
		{"position 7 decimals", pos(posEntryOf("b", 1, -1, 4294967295, 10, 0)),
			`{"type":"position","id":"b","lat":0.0000001,"lon":-0.0000001,"ts":4294967295,"speed":1,"heading":0}`},
		{"expired", ctl(expired), `{"type":"expired","id":"truck-0000042","ts":1764000300}`},
		{"alert firing", ctl(alert("speeding", "t1", stateFiring)),
			`{"type":"alert","rule":"speeding","id":"t1","state":"firing","ts":1764000000,"lat":40.7128,"lon":-74.006}`},
		{"alert resolved, escaped rule", ctl(alert("a \"b\"\n\\", "t1", stateResolved)),
			`{"type":"alert","rule":"a \"b\"\n\\","id":"t1","state":"resolved","ts":1764000000,"lat":40.7128,"lon":-74.006}`},
		{"lag", func(b []byte) []byte { return appendLag(b, 1234) }, `{"type":"lag","dropped":1234}`},
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

// FuzzAppendString checks that any bytes become valid JSON that decodes
// back to the input (invalid UTF-8 aside, which becomes U+FFFD).

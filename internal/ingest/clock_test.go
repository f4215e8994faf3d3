package ingest

import (
	"fmt"
	"testing"
)

// TestDeviceClocks covers what real devices send as ts: late points (data,
// however old), clocks reset to 1980 or 2000, milliseconds, and clocks
// ahead of the server's.
func TestDeviceClocks(t *testing.T) {
	const now = 1764000000 // 2025-11-24T16:00:00Z
	line := func(ts string) string { return `{"id":"a","lat":1,"lon":2,"ts":` + ts + "}\n" }
	tests := []struct {
		name   string
		ts     string
		want   int64  // accepted with this ts, or
		reject string // rejected with this message
		millis bool
	}{
		{name: "now", ts: "1764000000", want: now},
		{name: "3 hours late", ts: fmt.Sprint(now - 3*3600), want: now - 3*3600},
		{name: "9 days late", ts: fmt.Sprint(now - 9*86400), want: now - 9*86400},
		{name: "clock reset to 1980", ts: "315532800", want: 315532800},
		{name: "GPS week rollover, 1024 weeks back", ts: fmt.Sprint(now - 1024*7*86400), want: now - 1024*7*86400},
		{name: "ahead within the skew", ts: fmt.Sprint(now + 300), want: now + 300},
		{name: "ahead past the skew", ts: fmt.Sprint(now + 301),
			reject: "ts 2025-11-24T16:05:01Z is 5m1s ahead of the server clock (max 5m0s): is the device's clock set?"},
		{name: "400 days ahead", ts: fmt.Sprint(now + 400*86400),
			reject: "ts 2026-12-29T16:00:00Z is 400 days ahead of the server clock (max 5m0s): is the device's clock set?"},
		{name: "RFC 3339 ahead", ts: `"2027-01-01T00:00:00Z"`,
			reject: "ts 2027-01-01T00:00:00Z is 402 days ahead of the server clock (max 5m0s): is the device's clock set?"},
		{name: "milliseconds", ts: "1764000000123", want: now, millis: true},
		{name: "milliseconds with a fraction", ts: "1764000000999.9", want: now, millis: true},
		{name: "milliseconds ahead", ts: fmt.Sprint((now + 3600) * 1000),
			reject: "ts 2025-11-24T17:00:00Z is 1h0m0s ahead of the server clock (max 5m0s): is the device's clock set?"},
		{name: "microseconds", ts: "1764000000000000",
			reject: "ts 1764000000000000 out of range [1, 4294967295]: want Unix seconds, or milliseconds (100000000000 to 4294967295999)"},
		{name: "zero", ts: "0",
			reject: "ts 0 out of range [1, 4294967295]: 1970-01-01 is a device clock that is not set; omit ts to use the server's clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decoder{MaxAhead: 300}
			ups, rep := d.DecodeNDJSON([]byte(line(tt.ts)), now)
			if tt.reject != "" {
				if len(ups) != 0 || rep.Rejected != 1 || len(rep.Errors) != 1 || rep.Errors[0].Error != tt.reject {
					t.Fatalf("got %v %+v, want the rejection %q", ups, rep, tt.reject)
				}
				if future := rep.Future == 1; future != (tt.reject[len(tt.reject)-1] == '?') {
					t.Fatalf("Future = %d for %q", rep.Future, tt.reject)
				}
				return
			}
			if len(ups) != 1 || ups[0].TS != tt.want {
				t.Fatalf("got %v %+v, want ts %d", ups, rep, tt.want)
			}
			if want := map[bool]int{false: 0, true: 1}[tt.millis]; rep.Millis != want {
				t.Fatalf("Millis = %d, want %d", rep.Millis, want)
			}
		})
	}
}

// TestNoClockLimit: a Decoder's zero MaxAhead takes any ts in range.
func TestNoClockLimit(t *testing.T) {
	var d Decoder
	ups, rep := d.DecodeNDJSON([]byte(`{"id":"a","lat":1,"lon":2,"ts":4294967295}`), 1764000000)
	if len(ups) != 1 || rep.Future != 0 {
		t.Fatalf("got %v %+v", ups, rep)
	}
}

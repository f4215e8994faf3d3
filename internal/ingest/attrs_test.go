package ingest

import (
	"testing"

	"github.com/fleetd/fleetd/internal/fleet"
)

// TestAttributes: optional attributes (package fleet's table) are decoded
// to fixed point when present and in range, and judged after the position
// fields when not.
func TestAttributes(t *testing.T) {
	alt := func(v int32) (a fleet.Attrs) { a.Set(fleet.Altitude, v); return a }
	tests := []struct {
		line   string
		want   fleet.Attrs
		reject string
	}{
		{`{"id":"a","lat":1,"lon":2}`, fleet.Attrs{}, ""},
		{`{"id":"a","lat":1,"lon":2,"alt":null}`, fleet.Attrs{}, ""},
		{`{"id":"a","lat":1,"lon":2,"alt":123.45}`, alt(1235), ""},
		{`{"id":"a","lat":1,"lon":2,"alt":-430.5}`, alt(-4305), ""}, // the Dead Sea shore
		{`{"id":"a","lat":1,"lon":2,"alt":1e3,"alt":8848}`, alt(88480), ""},
		{`{"id":"a","lat":1,"lon":2,"alt":"high"}`, fleet.Attrs{}, "alt must be a number"},
		{`{"id":"a","lat":1,"lon":2,"alt":100001}`, fleet.Attrs{}, "alt 100001 out of range [-20000, 100000]"},
		{`{"id":"a","lat":1,"lon":2,"alt":1e999}`, fleet.Attrs{}, "alt 1e999 out of range [-20000, 100000]"},
		{`{"id":"a","lat":91,"lon":2,"alt":"x"}`, fleet.Attrs{}, "lat 91 out of range [-90, 90]"},
		// Flags as devices send them: true/false or 1/0.
		{`{"id":"a","lat":1,"lon":2,"ignition":true,"motion":false}`, attrs(fleet.Ignition, 1, fleet.Motion, 0), ""},
		{`{"id":"a","lat":1,"lon":2,"ignition":1}`, attrs(fleet.Ignition, 1), ""},
		{`{"id":"a","lat":1,"lon":2,"ignition":truthy}`, fleet.Attrs{}, "invalid JSON at column 38: invalid literal (want true, false or null)"},
		{`{"id":"a","lat":1,"lon":2,"ignition":"on"}`, fleet.Attrs{}, "ignition must be a number"},
		{`{"id":"a","lat":1,"lon":2,"alt":true}`, fleet.Attrs{}, "alt must be a number"},
	}
	for _, tt := range tests {
		var d Decoder
		ups, rep := d.DecodeNDJSON([]byte(tt.line), 1764000000)
		if tt.reject != "" {
			if len(ups) != 0 || len(rep.Errors) != 1 || rep.Errors[0].Error != tt.reject {
				t.Errorf("%s: got %v %+v, want rejection %q", tt.line, ups, rep, tt.reject)
			}
			continue
		}
		if len(ups) != 1 || ups[0].Attrs != tt.want || len(rep.Unknown) != 0 {
			t.Errorf("%s: got %+v %+v, want attrs %+v", tt.line, ups, rep, tt.want)
		}
	}
}

// attrs builds Attrs from (attribute, value) pairs.
func attrs(kv ...any) fleet.Attrs {
	var a fleet.Attrs
	for i := 0; i < len(kv); i += 2 {
		a.Set(kv[i].(fleet.Attr), int32(kv[i+1].(int)))
	}
	return a
}

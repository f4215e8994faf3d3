package ingest

import (
	"fmt"
	"strings"
	"testing"
)

// TestLineNumbers checks blank-line handling, CRLF and physical line numbers.
func TestLineNumbers(t *testing.T) {
	body := "\n" + // 1 blank
		good + "\r\n" + // 2
		"   \t\r\n" + // 3 blank
		`{"id":"a","lat":91,"lon":0}` + "\n" + // 4 bad
		"\r\n" + // 5 blank
		good + "\n" + // 6
		`{"id":"a","lat":0}` // 7 bad, no trailing newline
	var d Decoder
	ups, rep := d.DecodeNDJSON([]byte(body), testNow)
	if rep.Accepted != 2 || rep.Rejected != 2 || len(ups) != 2 {
		t.Fatalf("accepted %d rejected %d", rep.Accepted, rep.Rejected)
	}
	want := []LineError{{4, "lat 91 out of range [-90, 90]"}, {7, `missing required field "lon"`}}
	if fmt.Sprint(rep.Errors) != fmt.Sprint(want) {
		t.Errorf("errors %v, want %v", rep.Errors, want)
	}
	for _, body := range []string{"", "\n", "\r\n\r\n", " \t \n\n  "} {
		ups, rep := d.DecodeNDJSON([]byte(body), testNow)
		if len(ups) != 0 || rep.Accepted != 0 || rep.Rejected != 0 || len(rep.Errors) != 0 {
			t.Errorf("blank body %q: %+v", body, rep)
		}
	}
}

func TestMaxErrors(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 250; i++ {
		if i%2 == 0 {
			b.WriteString(good + "\n")
		} else {
			fmt.Fprintf(&b, `{"id":"a","lat":%d,"lon":0}`+"\n", 100+i)
		}
	}
	var d Decoder
	ups, rep := d.DecodeNDJSON([]byte(b.String()), testNow)
	if len(ups) != 125 || rep.Accepted != 125 || rep.Rejected != 125 || len(rep.Errors) != MaxErrors {
		t.Fatalf("updates %d accepted %d rejected %d errors %d", len(ups), rep.Accepted, rep.Rejected, len(rep.Errors))
	}
	for k, e := range rep.Errors {
		line := 2 * (k + 1)
		if want := fmt.Sprintf("lat %d out of range [-90, 90]", 100+line-1); e.Line != line || e.Error != want {
			t.Fatalf("error %d: %v, want line %d %q", k, e, line, want)
		}
	}
}

func TestUnknownNames(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 30; i++ {
		// Each name twice, in different lines, some in rejected lines.
		fmt.Fprintf(&b, `{"id":"a","lat":0,"lon":0,"f%02d":1,"f%02d":2}`+"\n", i, i/2)
		fmt.Fprintf(&b, `{"f%02d":[],"lat":0,"lon":0}`+"\n", i)
	}
	var d Decoder
	_, rep := d.DecodeNDJSON([]byte(b.String()), testNow)
	if rep.Accepted != 30 || rep.Rejected != 30 {
		t.Fatalf("accepted %d rejected %d", rep.Accepted, rep.Rejected)
	}
	if len(rep.Unknown) != MaxUnknown {
		t.Fatalf("unknown %q", rep.Unknown)
	}
	for i, n := range rep.Unknown {
		if want := fmt.Sprintf("f%02d", i); n != want {
			t.Errorf("unknown[%d] = %q, want %q", i, n, want)
		}
	}

	long := strings.Repeat("é", 40) // 80 bytes; cut at a rune boundary
	line := `{"id":"a","lat":0,"lon":0,"` + long + `":1,"` + long + `x":2}`
	_, rep = d.DecodeNDJSON([]byte(line), testNow)
	if want := strings.Repeat("é", 32) + "..."; len(rep.Unknown) != 1 || rep.Unknown[0] != want {
		t.Errorf("long unknown names %q, want [%q]", rep.Unknown, want)
	}
}

func TestNowOutOfRange(t *testing.T) {
	var d Decoder
	for _, now := range []int64{0, -1, MaxTS + 1} {
		_, rep := d.DecodeNDJSON([]byte(`{"id":"a","lat":0,"lon":0}`+"\n"+good), now)
		want := fmt.Sprintf("ts missing and the server time %d is out of range [1, 4294967295]", now)
		if rep.Accepted != 1 || rep.Rejected != 1 || rep.Errors[0].Error != want {
			t.Errorf("now %d: %+v", now, rep)
		}
	}
}

// TestArray covers the JSON-array framing: per-element judgement and the
// single rejected remainder of a malformed array.
func TestArray(t *testing.T) {
	bad := `{"id":"a","lat":91,"lon":0}`
	tests := []struct {
		name, body     string
		accepted       int
		wantErrs       []LineError
		wantUnknownLen int
	}{
		{"empty array", ` [ ] `, 0, nil, 0},
		{"pretty", "[\n  " + good + ",\r\n  " + good + "\n]\n", 2, nil, 0},
		{"bad element continues", "[" + good + "," + bad + "," + good + "]", 2,
			[]LineError{{2, "lat 91 out of range [-90, 90]"}}, 0},
		{"non-object elements", "[1," + good + `,"x",null,[[]],{"id":"b","lat":1,"lon":1}]`, 2,
			[]LineError{{1, "expected a JSON object, found number"}, {3, "expected a JSON object, found string"},
				{4, "expected a JSON object, found null"}, {5, "expected a JSON object, found array"}}, 0},
		{"empty body", "  \n", 0, []LineError{{1, "invalid JSON at offset 3: empty body, expected a JSON array"}}, 0},
		{"not an array", good, 0, []LineError{{1, "invalid JSON at offset 0: expected '[' to start a JSON array, found '{'"}}, 0},
		{"malformed element ends the array", "[" + good + `,{"id" 1},` + good + "]", 1,
			[]LineError{{2, "invalid JSON at offset 56: expected ':' after object key, found '1'"}}, 0},
		{"malformed non-object element", "[" + good + `,[1,,` + good + "]", 1,
			[]LineError{{2, "invalid JSON at offset 53: expected a value, found ','"}}, 0},
		{"truncated", "[" + good + "," + good, 2,
			[]LineError{{3, "invalid JSON at offset 98: expected ',' or ']' after array element, found end of input"}}, 0},
		{"truncated inside element", "[" + good + `,{"id":"a","la`, 1,
			[]LineError{{2, "invalid JSON at offset 63: unterminated string, found end of input"}}, 0},
		{"only bracket", "[", 0, []LineError{{1, "invalid JSON at offset 1: expected a value, found end of input"}}, 0},
		{"garbage between elements", "[" + good + " x " + good + "]", 1,
			[]LineError{{2, "invalid JSON at offset 50: expected ',' or ']' after array element, found 'x'"}}, 0},
		{"double comma", "[" + good + ",," + good + "]", 1,
			[]LineError{{2, "invalid JSON at offset 50: expected a value, found ','"}}, 0},
		{"trailing comma", "[" + good + ",]", 1,
			[]LineError{{2, "invalid JSON at offset 50: expected a value, found ']'"}}, 0},
		{"data after array", "[" + good + "] []", 1,
			[]LineError{{2, "invalid JSON at offset 51: unexpected data after array, found '['"}}, 0},
		{"NDJSON sent as array", good + "\n" + good, 0,
			[]LineError{{1, "invalid JSON at offset 0: expected '[' to start a JSON array, found '{'"}}, 0},
		{"too deep element", "[" + good + `,{"x":` + strings.Repeat("[", 40), 1,
			[]LineError{{2, "nesting deeper than 32 levels at offset 86"}}, 1},
		{"deep non-object element at the limit", "[" + strings.Repeat("[", 32) + strings.Repeat("]", 32) + "," + good + "]", 1,
			[]LineError{{1, "expected a JSON object, found array"}}, 0},
	}
	var d Decoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ups, rep := d.DecodeArray([]byte(tt.body), testNow)
			if rep.Accepted != tt.accepted || len(ups) != tt.accepted || rep.Rejected != len(tt.wantErrs) {
				t.Errorf("accepted %d (updates %d) rejected %d; want %d, %d", rep.Accepted, len(ups), rep.Rejected, tt.accepted, len(tt.wantErrs))
			}
			if fmt.Sprint(rep.Errors) != fmt.Sprint(tt.wantErrs) {
				t.Errorf("errors\n got %v\nwant %v", rep.Errors, tt.wantErrs)
			}
			for _, u := range ups {
				if string(u.ID) != "truck-1" && string(u.ID) != "b" {
					t.Errorf("unexpected update %s", fmtUpdate(u))
				}
			}
			if len(rep.Unknown) != tt.wantUnknownLen {
				t.Errorf("unknown %q", rep.Unknown)
			}
		})
	}
}

// TestIDAliasing checks the aliasing rule of Update.ID: plain IDs point into
// the body, escaped IDs into the arena, and all of them stay intact while
// the arena grows and rejected lines roll it back.
func TestIDAliasing(t *testing.T) {
	var b strings.Builder
	var want []string
	for i := 0; i < 2000; i++ {
		id := fmt.Sprintf("truck-%05d", i)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, `{"id":"%s","lat":0,"lon":0}`+"\n", id)
			want = append(want, id)
		case 1:
			fmt.Fprintf(&b, `{"id":"truck\u002d%05d","lat":0,"lon":0}`+"\n", i)
			want = append(want, id)
		case 2: // rejected after its escaped id went to the arena
			fmt.Fprintf(&b, `{"id":"truck\u002d%05d","lat":100,"lon":0}`+"\n", i)
		case 3: // rejected by a syntax error after its id
			fmt.Fprintf(&b, `{"id":"truck\u002d%05d","lat":0,"lon":0}}`+"\n", i)
		}
	}
	body := []byte(b.String())
	var d Decoder
	ups, rep := d.DecodeNDJSON(body, testNow)
	if len(ups) != len(want) || rep.Rejected != 1000 {
		t.Fatalf("accepted %d rejected %d", len(ups), rep.Rejected)
	}
	for i, u := range ups {
		if string(u.ID) != want[i] {
			t.Fatalf("update %d: id %q, want %q", i, u.ID, want[i])
		}
		if cap(u.ID) != len(u.ID) && i%2 == 1 {
			t.Fatalf("escaped id %q has spare capacity %d", u.ID, cap(u.ID))
		}
	}
	if len(d.arena) != 500*len("truck-00000") {
		t.Errorf("arena holds %d bytes; rejected lines were not rolled back", len(d.arena))
	}
	if &ups[0].ID[0] != &body[7] {
		t.Error("plain id does not alias the body")
	}
}

func TestReset(t *testing.T) {
	var d Decoder
	body := []byte(strings.Repeat(good+"\n", retainUpdates+1) + `{"x":1}`)
	ups, rep := d.DecodeNDJSON(body, testNow)
	if len(ups) != retainUpdates+1 || rep.Rejected != 1 || len(rep.Unknown) != 1 {
		t.Fatalf("accepted %d rejected %d", len(ups), rep.Rejected)
	}
	d.Reset()
	if d.updates != nil || len(d.report.Errors) != 0 || len(d.report.Unknown) != 0 || d.obj.id != nil {
		t.Errorf("Reset kept state: %d updates, report %+v", cap(d.updates), d.report)
	}
	for _, le := range d.report.Errors[:cap(d.report.Errors)] {
		if le.Error != "" {
			t.Error("Reset kept an error message")
		}
	}
	ups, rep = d.DecodeNDJSON([]byte(good), testNow)
	if len(ups) != 1 || !sameUpdate(ups[0], goodUpdate) || rep.Rejected != 0 || len(rep.Unknown) != 0 {
		t.Errorf("after Reset: %v %+v", ups, rep)
	}
	// Small decoders keep their buffers and drop references into the body.
	d.Reset()
	if cap(d.updates) == 0 || d.updates[:1][0].ID != nil {
		t.Errorf("Reset of a small decoder: cap %d", cap(d.updates))
	}
}

// TestZeroAllocs checks the steady-state allocation contract, including
// escaped IDs and recurring unknown fields.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	body := benchBody(1000, 1)
	body = append(body, `{"id":"truck\u002d1","lat":1,"lon":2,"ts":"2025-11-24T16:00:00Z","extra":{"a":[1,2,"x"]}}`+"\n"...)
	var d Decoder
	d.DecodeNDJSON(body, testNow)
	d.DecodeArray(ndjsonToArray(body), testNow)
	arr := ndjsonToArray(body)
	if n := testing.AllocsPerRun(20, func() { d.DecodeNDJSON(body, testNow) }); n != 0 {
		t.Errorf("DecodeNDJSON: %v allocs per body, want 0", n)
	}
	if n := testing.AllocsPerRun(20, func() { d.DecodeArray(arr, testNow) }); n != 0 {
		t.Errorf("DecodeArray: %v allocs per body, want 0", n)
	}
	// Rejections beyond MaxErrors are counted without formatting a message.
	allocs := func(lines int) float64 {
		bad := []byte(strings.Repeat(`{"id":"a","lat":100,"lon":0}`+"\n", lines))
		d.DecodeNDJSON(bad, testNow)
		return testing.AllocsPerRun(5, func() { d.DecodeNDJSON(bad, testNow) })
	}
	if n1, n10 := allocs(MaxErrors), allocs(10*MaxErrors); n1 != n10 {
		t.Errorf("%v allocs for %d rejected lines but %v for %d", n1, MaxErrors, n10, 10*MaxErrors)
	}
}

func TestSinkGetsWhatTheSliceWould(t *testing.T) {
	body := []byte("{\"id\":\"a\",\"lat\":1,\"lon\":2}\nbad\n{\"id\":\"b\",\"lat\":3,\"lon\":4,\"ts\":5}\n")
	var plain Decoder
	want, _ := plain.DecodeNDJSON(body, 100)
	var got []Update
	sunk := Decoder{Sink: func(u *Update) {
		c := *u
		c.ID = append([]byte(nil), u.ID...)
		got = append(got, c)
	}}
	none, rep := sunk.DecodeNDJSON(body, 100)
	if len(none) != 0 || rep.Accepted != 2 || rep.Rejected != 1 || len(got) != 2 {
		t.Fatalf("with a sink: returned %d, report %+v, sunk %d", len(none), rep, len(got))
	}
	for i := range want {
		if string(got[i].ID) != string(want[i].ID) || got[i].Lat != want[i].Lat || got[i].TS != want[i].TS {
			t.Fatalf("sunk %+v, want %+v", got[i], want[i])
		}
	}
}

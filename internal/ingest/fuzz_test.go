package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzSeeds are entries covering every rule, valid and invalid.
func fuzzSeeds() []string {
	seeds := []string{
		good,
		`{"id": "truck-0000042", "lat": 40.7128, "lon": -74.006, "ts": 1764000000, "speed": 52.5, "heading": 90}`,
		`{"id":"a","lat":91,"lon":0}`, `{"id":"tr uck","lat":0,"lon":0}`, `{"id":"a","lat":0}`,
		`{"id":"a","lat" 1,"lon":0}`, `{"id":"a","lat":NaN,"lon":0}`, `{"id":"a","lat":1e999,"lon":0}`,
		`{"id":"a","lat":0,"lon":0,"ts":"2025-11-24T16:00:00+01:00"}`, `{"id":"a","lat":0,"lon":0,"ts":4294967295.5}`,
		`{"id":"a","lat":0,"lon":0,"ts":0.5}`, `{"id":"a","lat":0,"lon":0,"speed":"fast","heading":360}`,
		`{"id":"a\u0041","lat":0,"lon":0,"x":{"y":[1,{"z":null}],"w":"\ud83d\ude00"}}`,
		`{"id":"a","lat":0,"lon":0,"x":` + strings.Repeat("[", 33) + strings.Repeat("]", 33) + `}`,
		"{\"id\":\"a\xff\",\"lat\":0,\"lon\":0}", `{"id":"a","lat":0,"lon":0} x`, `{"id":"a","lat":0,`,
		`[1,2]`, `null`, `{"id":"a","id":"b","lat":"x","lat":1,"lon":0}`,
	}
	r := rand.New(rand.NewPCG(1, 1))
	g := &gen{r: r}
	for i := 0; i < 5; i++ {
		u := randomUpdate(r)
		s, _ := g.update(&u)
		seeds = append(seeds, s)
	}
	return seeds
}

func FuzzDecodeNDJSON(f *testing.F) {
	seeds := fuzzSeeds()
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(strings.Join(seeds, "\n")))
	f.Add([]byte(strings.Join(seeds[:6], "\r\n\r\n  \n")))
	f.Add(benchBody(5, 1))
	f.Fuzz(func(t *testing.T, body []byte) {
		var d Decoder
		ups, rep := d.DecodeNDJSON(body, testNow)
		checkReport(t, ups, rep)

		lines := bytes.Split(body, []byte("\n"))
		nonBlank := 0
		errs := rep.Errors
		var perLine []Update
		for k, line := range lines {
			if len(bytes.Trim(line, " \t\r")) == 0 {
				if len(errs) > 0 && errs[0].Line == k+1 {
					t.Fatalf("blank line %d rejected: %v", k+1, errs[0])
				}
				continue
			}
			nonBlank++
			// Each line alone gets exactly one verdict, the same as in
			// the whole body.
			var d1 Decoder
			u1, r1 := d1.DecodeNDJSON(line, testNow)
			if r1.Accepted+r1.Rejected != 1 {
				t.Fatalf("line %d %q: accepted %d rejected %d", k+1, line, r1.Accepted, r1.Rejected)
			}
			if r1.Rejected == 1 && len(errs) > 0 {
				if errs[0].Line != k+1 || errs[0].Error != r1.Errors[0].Error {
					t.Fatalf("line %d alone: %v; in the body: %v", k+1, r1.Errors[0], errs[0])
				}
				errs = errs[1:]
			}
			perLine = append(perLine, u1...)
			// encoding/json agrees wherever it is comparable.
			want, valid, comparable := oracle(line, testNow)
			if !comparable {
				continue
			}
			if valid != (r1.Accepted == 1) {
				t.Fatalf("line %d %q: decoder accepted=%v, encoding/json valid=%v (decoder: %v)", k+1, line, r1.Accepted == 1, valid, r1.Errors)
			}
			if valid && !sameUpdate(u1[0], want) {
				t.Fatalf("line %d %q:\n got %s\nwant %s", k+1, line, fmtUpdate(u1[0]), fmtUpdate(want))
			}
		}
		if rep.Accepted+rep.Rejected != nonBlank {
			t.Fatalf("accepted %d + rejected %d != %d non-blank lines", rep.Accepted, rep.Rejected, nonBlank)
		}
		if len(errs) != 0 {
			t.Fatalf("errors for lines that were accepted alone: %v", errs)
		}
		if len(perLine) != len(ups) {
			t.Fatalf("%d updates line by line, %d in the body", len(perLine), len(ups))
		}
		for i := range ups {
			if !sameUpdate(ups[i], perLine[i]) {
				t.Fatalf("update %d: %s in the body, %s alone", i, fmtUpdate(ups[i]), fmtUpdate(perLine[i]))
			}
		}
		checkPieces(t, body, ups, rep)
	})
}

// checkPieces decodes body again in pieces split at random line ends
// (BeginNDJSON, DecodeLines, Report), copying each update out through
// Sink and then scribbling over the piece, as a streaming reader reuses
// its buffer: the updates and the report must equal the whole body's.
func checkPieces(t *testing.T, body []byte, ups []Update, rep *Report) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(len(body)), 5))
	var got []Update
	var d Decoder
	d.Sink = func(u *Update) {
		c := *u
		c.ID = bytes.Clone(u.ID)
		got = append(got, c)
	}
	d.BeginNDJSON(testNow)
	for rest := body; len(rest) > 0; {
		n := len(rest)
		if r.IntN(2) == 0 {
			if i := bytes.IndexByte(rest[:r.IntN(len(rest))+1], '\n'); i >= 0 {
				n = i + 1
			}
		}
		piece := bytes.Clone(rest[:n])
		d.DecodeLines(piece)
		for i := range piece {
			piece[i] = 'x'
		}
		rest = rest[n:]
	}
	prep := d.Report()
	if prep.Accepted != rep.Accepted || prep.Rejected != rep.Rejected ||
		fmt.Sprint(prep.Errors) != fmt.Sprint(rep.Errors) || fmt.Sprint(prep.Unknown) != fmt.Sprint(rep.Unknown) {
		t.Fatalf("in pieces: %+v\nwhole: %+v", *prep, *rep)
	}
	if len(got) != len(ups) {
		t.Fatalf("%d updates in pieces, %d whole", len(got), len(ups))
	}
	for i := range ups {
		if !sameUpdate(ups[i], got[i]) {
			t.Fatalf("update %d: %s whole, %s in pieces", i, fmtUpdate(ups[i]), fmtUpdate(got[i]))
		}
	}
}

func FuzzDecodeArray(f *testing.F) {
	seeds := fuzzSeeds()
	for _, s := range seeds {
		f.Add([]byte("[" + s + "]"))
	}
	f.Add([]byte("[\n" + strings.Join(seeds, ",\n") + "\n]"))
	f.Add(ndjsonToArray(benchBody(5, 1)))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[` + good + `,`))
	f.Add([]byte(`[` + good + `] x`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var d Decoder
		ups, rep := d.DecodeArray(body, testNow)
		checkReport(t, ups, rep)
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		if len(trimmed) == 0 || trimmed[0] != '[' {
			if rep.Accepted != 0 || rep.Rejected != 1 {
				t.Fatalf("not an array: accepted %d rejected %d", rep.Accepted, rep.Rejected)
			}
			return
		}
		if !utf8.Valid(body) || maxNesting(body) > MaxDepth+1 {
			return // encoding/json is more lenient here; see oracle
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(body, &elems); err != nil {
			if rep.Rejected == 0 {
				t.Fatalf("malformed array (%v) but nothing rejected", err)
			}
			return
		}
		if rep.Accepted+rep.Rejected != len(elems) {
			t.Fatalf("well-formed array of %d elements: accepted %d rejected %d (%v)", len(elems), rep.Accepted, rep.Rejected, rep.Errors)
		}
		if rep.Rejected > MaxErrors {
			return // not every rejected index is known
		}
		rejected := map[int]bool{}
		for _, e := range rep.Errors {
			rejected[e.Line] = true
		}
		next := 0
		for k, elem := range elems {
			// The element, compacted onto one line, gets the same verdict
			// from DecodeNDJSON.
			var line bytes.Buffer
			if err := json.Compact(&line, elem); err != nil {
				t.Fatal(err)
			}
			var d1 Decoder
			u1, r1 := d1.DecodeNDJSON(line.Bytes(), testNow)
			if r1.Rejected != 0 != rejected[k+1] {
				t.Fatalf("element %d %s: rejected in array %v, as a line %v", k+1, elem, rejected[k+1], r1.Errors)
			}
			want, valid, comparable := oracle(elem, testNow)
			if comparable && valid == rejected[k+1] {
				t.Fatalf("element %d %s: decoder rejected=%v, encoding/json valid=%v", k+1, elem, rejected[k+1], valid)
			}
			if rejected[k+1] {
				continue
			}
			if !sameUpdate(ups[next], u1[0]) || (comparable && !sameUpdate(ups[next], want)) {
				t.Fatalf("element %d %s: got %s, as a line %s, encoding/json %s", k+1, elem, fmtUpdate(ups[next]), fmtUpdate(u1[0]), fmtUpdate(want))
			}
			next++
		}
	})
}

// checkReport checks the invariants every result must satisfy.
func checkReport(t *testing.T, ups []Update, rep *Report) {
	t.Helper()
	if len(ups) != rep.Accepted {
		t.Fatalf("%d updates, Accepted %d", len(ups), rep.Accepted)
	}
	if len(rep.Errors) != min(rep.Rejected, MaxErrors) {
		t.Fatalf("%d errors listed for %d rejections", len(rep.Errors), rep.Rejected)
	}
	for i, e := range rep.Errors {
		if e.Line < 1 || (i > 0 && e.Line <= rep.Errors[i-1].Line) || e.Error == "" || !utf8.ValidString(e.Error) {
			t.Fatalf("bad error list %v", rep.Errors)
		}
	}
	if len(rep.Unknown) > MaxUnknown {
		t.Fatalf("%d unknown names", len(rep.Unknown))
	}
	seen := map[string]bool{}
	for _, n := range rep.Unknown {
		if seen[n] || !utf8.ValidString(n) || len(n) > MaxUnknownNameLen+3 {
			t.Fatalf("bad unknown names %q", rep.Unknown)
		}
		seen[n] = true
	}
	for _, u := range ups {
		checkUpdate(t, u)
	}
}

package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/ingest"
	"github.com/fleetd/fleetd/internal/store"
)

var fuzzContentTypes = [...]string{"", "application/x-ndjson", "application/json", "application/x-ndjson; charset=utf-8"}

// FuzzPositions posts arbitrary bodies through the handler: the answer is
// always a 200 with valid JSON that agrees with the decoder run directly
// on the same bytes, and every accepted truck is then in the store.
func FuzzPositions(f *testing.F) {
	for _, s := range []string{
		`{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}`,
		"{\"id\":\"a\",\"lat\":1,\"lon\":1}\n{\"id\":\"b\",\"lat\":NaN,\"lon\":1}\n{\"id\":\"c\",\"lat\":1e999,\"lon\":1}\n{\"id\":\"d\",\"lat\":1,\"lo",
		`[{"id":"a","lat":1,"lon":1},{"id":"b","lat":91,"lon":0},"x"]`,
		`{"id":"a","lat":1,"lon":1,"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
		"{\"id\":\"\xff\xfe\",\"lat\":1,\"lon\":1}\r\n\r\n{\"\\u0041\":1}",
		`{"id":"a","lat":-0,"lon":180,"ts":"2025-11-24T16:00:00+05:30","heading":359.99}`,
		"\x00\x01\x02",
		"",
	} {
		for ct := range fuzzContentTypes {
			f.Add([]byte(s), uint8(ct))
		}
	}
	fx := newFixture(f, Options{}, store.Options{})
	dec := ingest.Decoder{MaxAhead: int64(DefaultMaxClockSkew / time.Second)}
	f.Fuzz(func(t *testing.T, body []byte, ct uint8) {
		ctype := fuzzContentTypes[int(ct)%len(fuzzContentTypes)]
		r := httptest.NewRequest("POST", "/v1/positions", bytes.NewReader(body))
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		w := httptest.NewRecorder()
		before := time.Now().Unix()
		fx.s.ServeHTTP(w, r)
		if ctype == "" { // a body any web page can send: refused, nothing applied
			wantError(t, w, http.StatusUnsupportedMediaType, "needs a Content-Type")
			return
		}
		if w.Code != http.StatusOK {
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body.String())
		}
		var got postResp
		decodeStrict(t, wantJSON(t, w, http.StatusOK), &got)

		// The decoder on its own, on the same bytes.
		var us []ingest.Update
		var rep *ingest.Report
		if strings.HasPrefix(ctype, "application/json") {
			us, rep = dec.DecodeArray(body, before)
		} else {
			us, rep = dec.DecodeNDJSON(body, before)
		}
		if got.Accepted != rep.Accepted || got.Rejected != rep.Rejected || got.Refused != 0 || got.Error != "" {
			t.Fatalf("answer %+v, decoder %d accepted %d rejected", got, rep.Accepted, rep.Rejected)
		}
		if len(got.Errors) != min(got.Rejected, ingest.MaxErrors) || len(got.Errors) != len(rep.Errors) {
			t.Fatalf("%d errors listed for %d rejected", len(got.Errors), got.Rejected)
		}
		for i, e := range rep.Errors {
			if got.Errors[i] != e {
				t.Fatalf("error %d: %+v, decoder %+v", i, got.Errors[i], e)
			}
		}
		if !slices.Equal(got.Unknown, rep.Unknown) {
			t.Fatalf("unknown %q, decoder %q", got.Unknown, rep.Unknown)
		}
		if !strings.HasPrefix(ctype, "application/json") && got.Accepted+got.Rejected > bytes.Count(body, []byte("\n"))+1 {
			t.Fatalf("%d entries from %d lines", got.Accepted+got.Rejected, bytes.Count(body, []byte("\n"))+1)
		}
		for i := range us {
			if _, ok := fx.eng.Store().Get(us[i].ID); !ok {
				t.Fatalf("accepted %q is not in the store", us[i].ID)
			}
		}
	})
}

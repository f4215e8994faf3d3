package ingest

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/fleet"
)

func TestReadAll(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 513, 100000} {
		src := strings.Repeat("x", n)
		for _, hint := range []int64{-1, int64(n)} {
			got, err := readAll(strings.NewReader(src), make([]byte, 0, 512), hint)
			if err != nil || string(got) != src {
				t.Fatalf("n=%d hint=%d: %d bytes, %v", n, hint, len(got), err)
			}
			if hint >= 0 && cap(got) > max(n+1, 512) {
				t.Fatalf("n=%d: buffer grew to %d with a known length", n, cap(got))
			}
		}
	}
}

// randReader returns its bytes in reads of random sizes, 1 byte to 100 KiB.
type randReader struct {
	r    *rand.Rand
	data []byte
}

func (rr *randReader) Read(p []byte) (int, error) {
	if len(rr.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(rr.data), 1+rr.r.IntN(100<<10))
	copy(p, rr.data[:n])
	rr.data = rr.data[n:]
	return n, nil
}

// TestBatchNDJSONInPieces: a body read a piece at a time, in reads of any
// size, with lines longer than a piece, gives the updates and the report
// that decoding it whole gives, and the updates' IDs survive the reuse of
// the piece buffer and of the Batch.
func TestBatchNDJSONInPieces(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 3))
	var batch Batch
	for round := range 20 {
		var b strings.Builder
		for i := range 3000 + r.IntN(3000) {
			switch r.IntN(50) {
			case 0:
				fmt.Fprintf(&b, `{"id":"long-%d","lat":1,"lon":2,"pad":"%s"}`, i, strings.Repeat("p", r.IntN(3*ReadPiece)))
			case 1:
				b.WriteString(`{"id":"bad","lat":91,"lon":0}`)
			case 2:
				b.WriteString("  ")
			case 3:
				fmt.Fprintf(&b, `{"id":"alt-%d","lat":1,"lon":2,"alt":%d}`, i, r.IntN(9000))
			default:
				fmt.Fprintf(&b, `{"id":"truck-%07d","lat":%.5f,"lon":%.5f,"ts":%d}`, r.IntN(1e6), r.Float64()*90, r.Float64()*180, 1764000000+i)
			}
			if r.IntN(10) == 0 {
				b.WriteByte('\r')
			}
			b.WriteByte('\n')
		}
		if round%2 == 1 {
			b.WriteString(`{"id":"last-no-newline","lat":3,"lon":4}`)
		}
		body := b.String()

		var whole Decoder
		want, wantRep := whole.DecodeNDJSON([]byte(body), 1764000000)

		rep, err := batch.ReadNDJSON(&randReader{r: r, data: []byte(body)}, 1764000000)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(*rep) != fmt.Sprint(*wantRep) {
			t.Fatalf("round %d (seed %d): report\n got %+v\nwant %+v", round, seed, *rep, *wantRep)
		}
		if len(batch.Updates) != len(want) {
			t.Fatalf("round %d: %d updates, want %d", round, len(batch.Updates), len(want))
		}
		for i, u := range want {
			p := fleet.MakePosition(u.Lat, u.Lon, u.TS, u.Speed, u.Heading)
			if got := batch.Updates[i]; string(got.ID) != string(u.ID) || got.Position != p || got.Attrs != u.Attrs {
				t.Fatalf("round %d update %d: %s %+v, want %s %+v", round, i, got.ID, got, u.ID, p)
			}
		}
		if cap(batch.body) > ReadPiece && !strings.Contains(body, "long-") {
			t.Fatalf("piece buffer grew to %d without a long line", cap(batch.body))
		}
		batch.Reset()
	}
}

// TestBatchArray: a JSON array body gives the updates the decoder gives.
func TestBatchArray(t *testing.T) {
	var b Batch
	body := `[{"id":"a","lat":1,"lon":2,"ts":1764000000,"alt":12.5},{"id":"b","lat":91,"lon":0},{"id":"c","lat":-1,"lon":-2}]`
	rep, err := b.ReadArray(strings.NewReader(body), int64(len(body)), 1764000000)
	if err != nil || rep.Accepted != 2 || rep.Rejected != 1 || len(b.Updates) != 2 {
		t.Fatalf("%+v %v %+v", rep, err, b.Updates)
	}
	if alt, ok := b.Updates[0].Attrs.Get(fleet.Altitude); !ok || alt != 125 || string(b.Updates[1].ID) != "c" {
		t.Fatalf("%+v", b.Updates)
	}
}

package sink

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/vfs"
)

// streamingID is the ID as fleetd computed it before appendStableID
// (sha256.New, one Write a field): the model the stack-buffer form must
// match byte for byte, since receivers deduplicate by ID across versions.
func streamingID(e *Event) string {
	h := sha256.New()
	var n [4]byte
	for _, s := range []string{e.Kind, e.Rule, e.Truck, e.Reason} {
		binary.LittleEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var t [8]byte
	binary.LittleEndian.PutUint32(t[:], e.Since)
	binary.LittleEndian.PutUint32(t[4:], e.TS)
	h.Write(t[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func TestStableIDModel(t *testing.T) {
	// IDs written by earlier fleetd (golden: they must never change).
	a := alert.Alert{Rule: "speeding", ID: "truck-0000042", State: alert.StateFiring, Severity: "warning",
		Since: 1764000000, TS: 1764000042, Lat: 407128000, Lon: -740060000}
	if got := eventFromAlert(a).ID; got != "1367dfe565455c0fe74c079987285032" {
		t.Fatalf("alert ID %s", got)
	}
	if got := (&Event{Kind: KindExpired, Truck: "t-9", TS: 77, Reason: "truck expired"}).stableID(); got != "e66239552f426b7d8771c1044a060cc9" {
		t.Fatalf("expiry ID %s", got)
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	str := func() string {
		const chars = "ab\"\\\n<é\xff"
		n := r.IntN(12)
		if r.IntN(20) == 0 {
			n = r.IntN(400) // past appendStableID's 256-byte stack buffer
		}
		var b strings.Builder
		for range n {
			b.WriteByte(chars[r.IntN(len(chars))])
		}
		return b.String()
	}
	for range 3000 {
		e := Event{Kind: kinds[r.IntN(len(kinds))], Truck: str(), Rule: str(), Zone: str(), Severity: str(), TS: r.Uint32(),
			Since: r.Uint32() % 3, Lat: float64(r.Int32N(1800000000)-900000000) / 1e7, Reason: str()}
		want := streamingID(&e)
		if got := e.stableID(); got != want {
			t.Fatalf("stableID %s, streaming %s for %+v", got, want, e)
		}
		direct := e.appendJSONStableID([]byte("x"))
		e.ID = want
		if full := e.appendJSON([]byte("x")); string(direct) != string(full) {
			t.Fatalf("appendJSONStableID\n%s\nappendJSON\n%s", direct, full)
		}
		h := fnv.New64a()
		h.Write([]byte(e.Truck))
		if truckKey(e.Truck) != h.Sum64() {
			t.Fatalf("truckKey(%q) %x, FNV-1a %x", e.Truck, truckKey(e.Truck), h.Sum64())
		}
	}
}

// TestEmitAllocs: Emit encodes an event of usual size without
// allocating (a regression here costs ingest GC work at GOGC=10).
func TestEmitAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("instrumented build")
	}
	d, err := New(Options{FS: vfs.NewMem(), Dir: "s", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Put("s", Config{Type: TypeWebhook, URL: "http://127.0.0.1:1/hook"}); err != nil {
		t.Fatal(err)
	}
	a := benchAlert(1)
	if n := testing.AllocsPerRun(1000, func() { d.Emit(a) }); n != 0 {
		t.Fatalf("Emit: %v allocations an event", n)
	}
}

// TestAppendFixed7 compares appendFixed7 with strconv's shortest
// formatting of geo.FromFixed over the edges and random values of the
// whole int32 range.
func TestAppendFixed7(t *testing.T) {
	vals := []int32{0, 1, -1, 9, -9, 10, 99, 1e6, 1e7, -1e7, 1e7 + 1, 123456789, -900000000, 900000000,
		-1800000000, 1800000000, math.MaxInt32, math.MinInt32, math.MinInt32 + 1}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	for range 1_000_000 {
		v := int32(r.Uint32())
		if r.IntN(4) == 0 {
			v = int32(r.IntN(2000)-1000) * int32(1+r.IntN(1e6)) // many trailing zeros
		}
		vals = append(vals, v)
	}
	for _, v := range vals {
		want := strconv.AppendFloat([]byte("x"), geo.FromFixed(v), 'f', -1, 64)
		if got := appendFixed7([]byte("x"), v); string(got) != string(want) {
			t.Fatalf("appendFixed7(%d) %s, strconv %s", v, got, want)
		}
	}
	// An event from an alert writes the same JSON as one whose
	// coordinates are only floats.
	a := benchAlert(7)
	a.Lat, a.Lon = -337000001, 1512093000
	e := alertEvent(&a)
	f := e
	f.fixed = false
	if g, w := e.appendJSONStableID(nil), f.appendJSONStableID(nil); string(g) != string(w) {
		t.Fatalf("fixed\n%s\nfloat\n%s", g, w)
	}
}

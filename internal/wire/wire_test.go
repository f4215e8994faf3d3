package wire

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/geo"
)

func TestAppendString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"abc", `"abc"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"\n\r\t\x00\x1f\x7f", `"\n\r\t\u0000\u001f\u007f"`},
		{"é€😀", `"é€😀"`},
		{"a\xffb", `"a\ufffdb"`},
		{"\xc3", `"\ufffd"`},
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`}, // a surrogate is not valid UTF-8
	} {
		if got := string(AppendString(nil, tc.in)); got != tc.want {
			t.Errorf("AppendString(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if got := string(AppendString(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("AppendString([]byte %q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "truck-1", "\"\\\n\r\t\x00\x1f\x7f", "é😀", "\xff\xfe", "a\xc3"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		out := AppendString(nil, s)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q for %q", out, s)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if want := strings.ToValidUTF8(string(s), "\uFFFD"); utf8.Valid(s) && back != want {
			t.Fatalf("round trip %q → %q", s, back)
		}
	})
}

func TestAppendCoordSpeed(t *testing.T) {
	for _, tc := range []struct {
		v    int32
		want string
	}{{407128000, "40.7128"}, {-740060000, "-74.006"}, {0, "0"}, {1, "0.0000001"}, {-1800000000, "-180"}} {
		if got := string(AppendCoord(nil, tc.v)); got != tc.want {
			t.Errorf("AppendCoord(%d) = %s, want %s", tc.v, got, tc.want)
		}
	}
	for _, tc := range []struct {
		v    uint16
		want string
	}{{525, "52.5"}, {0, "0"}, {10000, "1000"}, {7, "0.7"}} {
		if got := string(AppendSpeed(nil, tc.v)); got != tc.want {
			t.Errorf("AppendSpeed(%d) = %s, want %s", tc.v, got, tc.want)
		}
	}
	if got := string(AppendError(nil, "bad \"x\"")); got != `{"error":"bad \"x\""}` {
		t.Errorf("AppendError = %s", got)
	}
}

// TestNumbersMatchStrconv compares the integer-only encoders with strconv
// (the float forms are what they replace): every speed, edge values and
// seeded random values.
func TestNumbersMatchStrconv(t *testing.T) {
	for s := range 1 << 16 {
		want := strconv.AppendFloat(nil, float64(s)/10, 'f', -1, 64)
		if got := AppendSpeed(nil, uint16(s)); !bytes.Equal(got, want) {
			t.Fatalf("AppendSpeed(%d) = %s, strconv says %s", s, got, want)
		}
	}
	coords := []int32{0, 1, -1, 9, 10, 99, 100, 9999999, 1e7, -1e7, 10000001, 12345670, 100000000, -100000000,
		900000000, -900000000, 1800000000, -1800000000, 1799999999, math.MaxInt32, math.MinInt32, math.MinInt32 + 1}
	uints := []uint32{0, 1, 9, 10, 99, 100, 101, 999, 1000, 99999, 100000, 1e9 - 1, 1e9, 1764000000, math.MaxUint32}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for range 200_000 {
		v := rng.Uint32()
		coords = append(coords, int32(v), int32(v)/int32(1+rng.IntN(1e7)), int32(v%1e7)*int32(rng.IntN(3)-1))
		uints = append(uints, v, v>>rng.IntN(32))
	}
	for _, v := range coords {
		want := strconv.AppendFloat(nil, geo.FromFixed(v), 'f', -1, 64)
		if got := AppendCoord(nil, v); !bytes.Equal(got, want) {
			t.Fatalf("AppendCoord(%d) = %s, strconv says %s (seed %d)", v, got, want, seed)
		}
	}
	for _, v := range uints {
		if got, want := AppendUint(nil, v), strconv.AppendUint(nil, uint64(v), 10); !bytes.Equal(got, want) {
			t.Fatalf("AppendUint(%d) = %s, strconv says %s (seed %d)", v, got, want, seed)
		}
	}
}

func FuzzAppendCoord(f *testing.F) {
	for _, v := range []int32{0, 1, -1, 407128000, math.MinInt32, math.MaxInt32} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v int32) {
		want := strconv.AppendFloat([]byte("x"), geo.FromFixed(v), 'f', -1, 64)
		if got := AppendCoord([]byte("x"), v); !bytes.Equal(got, want) {
			t.Fatalf("AppendCoord(%d) = %s, strconv says %s", v, got, want)
		}
	})
}

// TestStringFastPath: a string with nothing to escape, copied at once,
// encodes as the escaping loop would.
func TestStringFastPath(t *testing.T) {
	for c := range 256 {
		s := []byte{'a', byte(c), 'z'}
		if got, want := AppendString(nil, s), appendEscaped(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("byte %#x: %q, escaping loop says %q", c, got, want)
		}
	}
}

// metresRef is what AppendMetres must print: the float path it replaces.
func metresRef(m float64) string {
	if math.IsNaN(m) || math.IsInf(m, 0) || m == 0 {
		return "0" // -0 too, which the float path prints as -0
	}
	return strconv.FormatFloat(math.Round(m*1000)/1000, 'f', -1, 64)
}

// TestAppendMetres compares the integer path with the float one over
// random distances at every scale up to and past maxFastMetres, the
// millimetre rounding's halves, and the edges.
func TestAppendMetres(t *testing.T) {
	vs := []float64{0, math.Copysign(0, -1), 0.0004, 0.0005, 0.0015, 0.001, 0.01, 0.1, 0.999, 0.9995, 1, 9.9999,
		999.9995, 12.345, 111.19492664455873, 20037508.342789244, maxFastMetres - 0.001, maxFastMetres,
		math.Nextafter(maxFastMetres, 0), 1e15, -1, -0.0004, math.MaxFloat64, math.SmallestNonzeroFloat64,
		math.NaN(), math.Inf(1), math.Inf(-1)}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		scale := math.Pow(10, float64(rng.IntN(16))-3)
		vs = append(vs, rng.Float64()*scale, float64(rng.Int64N(5e12))/1000, (float64(rng.Int64N(1e9))+0.5)/1000)
	}
	for _, v := range vs {
		if got, want := string(AppendMetres([]byte("x"), v)), "x"+metresRef(v); got != want {
			t.Fatalf("AppendMetres(%v) = %s, want %s", v, got, want)
		}
	}
}

// BenchmarkAppendMetres: the distances of query answers (up to 50 km).
func BenchmarkAppendMetres(b *testing.B) {
	vs := make([]float64, 1024)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range vs {
		vs[i] = rng.Float64() * 50_000
	}
	for _, bc := range []struct {
		name string
		f    func([]byte, float64) []byte
	}{{"integer", AppendMetres}, {"float", func(dst []byte, m float64) []byte {
		return strconv.AppendFloat(dst, math.Round(m*1000)/1000, 'f', -1, 64)
	}}} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 64)
			for i := 0; b.Loop(); i++ {
				buf = bc.f(buf[:0], vs[i&1023])
			}
		})
	}
}

package ingest

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// jsonNumber is the JSON number grammar (RFC 8259 §6).
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// checkFloat checks that scanFloat accepts exactly the JSON numbers and
// returns bit-for-bit what strconv.ParseFloat returns.
func checkFloat(t testing.TB, s string) {
	t.Helper()
	if s == "" {
		return // callers guarantee a first byte
	}
	var d Decoder
	end, got := d.scanFloat([]byte(s), 0)
	end2 := d.scanNumber([]byte(s), 0)
	if end != end2 {
		t.Fatalf("%q: scanFloat ends at %d, scanNumber at %d", s, end, end2)
	}
	if !jsonNumber.MatchString(s) {
		if end == len(s) {
			t.Fatalf("%q: accepted as a whole, but it is not a JSON number", s)
		}
		return
	}
	if end != len(s) {
		t.Fatalf("%q: JSON number not consumed (end %d, error %q)", s, end, d.err.msg)
	}
	want, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(want, 0) {
		t.Fatalf("%q: strconv: %v", s, err)
	}
	if math.Float64bits(got) != math.Float64bits(want) {
		t.Fatalf("%q: got %v (%#x), strconv %v (%#x)", s, got, math.Float64bits(got), want, math.Float64bits(want))
	}
}

func TestScanFloatTable(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "0.0", "-0.0", "0e0", "-0e-999", "0e999999999999999999", "1", "-1", "9", "10", "40.7128", "-74.006",
		"0.1", "0.2", "0.3", "1e22", "1e23", "-1e22", "1e-22", "1e-23", "123456789e-22", "9007199254740992",
		"9007199254740993", "9007199254740993e-5", "18014398509481984", "9999999999999999999", "10000000000000000000",
		"12345678901234567890123", "0.000000000000000000000000000001", "1.0000000000000000000000001",
		"4.9e-324", "2.4703282292062327e-324", "2.4703282292062328e-324", "2.2250738585072011e-308",
		"2.2250738585072012e-308", "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308",
		"1e308", "1e309", "-1e999", "1e-400", "1E+2", "1e+0022", "0.00000000000000000000001234567", "5e-324",
		"179.99999999999997", "89.99999999999999", "359.99999999999994", "3.4028236692093846346e38",
		// Not numbers (or not wholly).
		"", "-", "+1", "01", "-01", "1.", ".5", "1e", "1e+", "1.e5", "0x10", "1_000", "Infinity", "NaN", "--1", "1.5.5", "1e5e5",
	} {
		checkFloat(t, s)
	}
}

// TestScanFloatRandom compares against strconv on random decimal strings,
// dense around the fast path's boundaries (19 digits, 2^53, |exp| = 22).
func TestScanFloatRandom(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < 200_000; i++ {
		checkFloat(t, randomNumber(r))
	}
}

func randomNumber(r *rand.Rand) string {
	var b strings.Builder
	if r.IntN(2) == 0 {
		b.WriteByte('-')
	}
	digits := func(n int, lead bool) {
		for k := 0; k < n; k++ {
			c := byte('0' + r.IntN(10))
			if lead && k == 0 && n > 1 && c == '0' {
				c = '1' + byte(r.IntN(9))
			}
			b.WriteByte(c)
		}
	}
	switch r.IntN(4) {
	case 0:
		b.WriteString("0")
	case 1: // around 2^53
		fmt.Fprint(&b, (uint64(1)<<53)-8+uint64(r.IntN(16)))
	default:
		digits(1+r.IntN(20), true)
	}
	if r.IntN(3) > 0 {
		b.WriteByte('.')
		digits(1+r.IntN(20), false)
	}
	if r.IntN(2) == 0 {
		b.WriteByte("eE"[r.IntN(2)])
		if r.IntN(2) == 0 {
			b.WriteByte("+-"[r.IntN(2)])
		}
		fmt.Fprint(&b, r.IntN(30))
		if r.IntN(20) == 0 {
			fmt.Fprint(&b, r.IntN(100))
		}
	}
	return b.String()
}

// bigTrunc is the reference for truncNumber: exact rational arithmetic.
// ok is false when the exponent is too large to evaluate cheaply.
func bigTrunc(tok string) (v *big.Int, ok bool) {
	if i := strings.IndexAny(tok, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(tok[i+1:], "+"))
		if err != nil || e > 10000 || e < -10000 {
			return nil, false
		}
	}
	r, ok := new(big.Rat).SetString(tok)
	if !ok {
		panic("bad token " + tok)
	}
	return new(big.Int).Quo(r.Num(), r.Denom()), true
}

func checkTrunc(t testing.TB, tok string) {
	t.Helper()
	want, ok := bigTrunc(tok)
	if !ok {
		return
	}
	got, inRange := truncNumber([]byte(tok))
	limit := big.NewInt(1e18)
	if abs := new(big.Int).Abs(want); abs.Cmp(limit) >= 0 {
		if inRange {
			t.Fatalf("truncNumber(%q) = %d, want overflow (%v)", tok, got, want)
		}
		return
	}
	if !inRange || got != want.Int64() {
		t.Fatalf("truncNumber(%q) = %d, %v; want %v", tok, got, inRange, want)
	}
}

func TestTruncNumber(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "1", "1.5", "-1.5", "0.9", "-0.9", "1764000000", "1764000000.999", "1.7640000009e9", "17640000009e-1",
		"4294967295.99999999999999999999", "4294967296", "1e9", "1e17", "1e18", "999999999999999999", "1000000000000000000",
		"0.0000001e7", "0.00000012e7", "123e-2", "123e-3", "123e-4", "0e999999", "1e999999", "-1e999999", "1e-999999",
		"99999999999999999999999e-5", "100000000000000000000000000000e-12",
	} {
		checkTrunc(t, s)
	}
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := 0; i < 100_000; i++ {
		checkTrunc(t, randomNumber(r))
	}
}

func FuzzScanNumber(f *testing.F) {
	for _, s := range []string{"0", "-1.5e3", "9007199254740993", "1e400", "4294967295.9999", "01", "1.", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkFloat(t, s)
		if jsonNumber.MatchString(s) {
			checkTrunc(t, s)
		}
	})
}

// TestPlainDigits checks parseTS's fast path against the full one: where
// plainDigits takes a token (followed by what may follow a number, or by
// bytes that may not), it ends where scanNumber does with truncNumber's
// value; it declines every token with a sign, fraction, exponent or
// leading zero, and those of 18 digits or more.
func TestPlainDigits(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 3))
	toks := []string{"0", "7", "1764000000", "1764000000000", "99999999999999999", "999999999999999999", "00", "01", "-1", "1.5", "1e3", "1E3", "0.5"}
	for range 20_000 {
		toks = append(toks[:13], randomNumber(r))
		for _, tok := range toks {
			for _, tail := range []string{"", ",", "}", " ", "x", "-", "+"} {
				s := []byte(tok + tail)
				n, end, ok := plainDigits(s, 0)
				plain := jsonNumber.MatchString(tok) && strings.Trim(tok, "0123456789") == "" && len(tok) < 18 && (tok == "0" || tok[0] != '0')
				if ok != plain {
					t.Fatalf("plainDigits(%q) ok = %v, want %v", s, ok, plain)
				}
				if !ok {
					continue
				}
				var d Decoder
				want, _ := truncNumber([]byte(tok))
				if wantEnd := d.scanNumber(s, 0); end != wantEnd || n != want {
					t.Fatalf("plainDigits(%q) = %d, %d; want %d, %d", s, n, end, want, wantEnd)
				}
			}
		}
	}
}

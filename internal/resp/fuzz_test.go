package resp

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		args []string // nil: no command
		n    int
		err  string
	}{
		{"", nil, 0, ""},
		{"*", nil, 0, ""},
		{"*2\r\n$3\r\nGET\r\n", nil, 0, ""},
		{"*2\r\n$3\r\nGET\r\n$1\r\nx", nil, 0, ""},
		{"*2\r\n$3\r\nGET\r\n$1\r\nx\r\n", []string{"GET", "x"}, 20, ""},
		{"*2\r\n$3\r\nGET\r\n$0\r\n\r\nPING", []string{"GET", ""}, 19, ""},
		{"*0\r\n", []string{}, 4, ""},
		{"*-1\r\n", []string{}, 5, ""},
		{"PING\r\n", []string{"PING"}, 6, ""},
		{"  get  fleet\tx \n", []string{"get", "fleet", "x"}, 16, ""},
		{"\r\n", []string{}, 2, ""},
		{"PING", nil, 0, ""},
		{"*x\r\n", nil, 0, "invalid multibulk length"},
		{"*-2\r\n", nil, 0, "invalid multibulk length"},
		{"*1025\r\n", nil, 0, "invalid multibulk length"},
		{"*1\r\n:1\r\n", nil, 0, "expected '$', got ':'"},
		{"*1\r\n$-1\r\n", nil, 0, "invalid bulk length"},
		{"*1\r\n$65537\r\n", nil, 0, "invalid bulk length"},
		{"*1\r\n$1\r\nab\r\n", nil, 0, "bulk string not followed by CRLF"},
		{"*1\n", nil, 0, "invalid multibulk length"},
		{"*99999999999999999999999", nil, 0, "invalid multibulk length"},
	} {
		args, n, err := Parse([]byte(tc.in), nil)
		if tc.err != "" {
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || n != tc.n {
			t.Errorf("%q: n %d err %v, want n %d", tc.in, n, err, tc.n)
			continue
		}
		if tc.args != nil {
			got := make([]string, len(args))
			for i, a := range args {
				got[i] = string(a)
			}
			if !slices.Equal(got, tc.args) {
				t.Errorf("%q: %q, want %q", tc.in, got, tc.args)
			}
		}
	}
	if _, _, err := Parse([]byte(strings.Repeat("x", MaxInline+1)), nil); !errors.Is(err, ErrProtocol) {
		t.Errorf("long inline: %v", err)
	}
}

// FuzzParse: Parse never panics, never reads past b, and agrees with
// itself: a complete command re-encoded parses to the same arguments,
// and every proper prefix of a complete command is incomplete, not an
// error.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"*3\r\n$3\r\nSET\r\n$5\r\nfleet\r\n$1\r\nx\r\n", "PING\r\n", "*0\r\n", "*-1\r\n",
		"*1\r\n$0\r\n\r\n", "get fleet x\n", "*2\r\n$3\r\nGET\r\n$-1\r\n", "\r\n", "*1\r\n$1\r\nab",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		args, n, err := Parse(b, nil)
		if err != nil {
			if !errors.Is(err, ErrProtocol) || n != 0 {
				t.Fatalf("error %v with n %d", err, n)
			}
			return
		}
		if n < 0 || n > len(b) {
			t.Fatalf("n %d of %d bytes", n, len(b))
		}
		if n == 0 {
			return
		}
		for _, a := range args {
			if len(a) > MaxBulk {
				t.Fatalf("argument of %d bytes", len(a))
			}
		}
		for k := 0; k < n; k++ {
			if _, m, err := Parse(b[:k], nil); m != 0 || err != nil && b[0] == '*' {
				t.Fatalf("prefix %d of a %d-byte command: n %d err %v", k, n, m, err)
			}
		}
		again, m, err := Parse(encode(toStrings(args)...), nil)
		if err != nil || m == 0 || len(again) != len(args) {
			t.Fatalf("re-encoded: %d args, n %d, err %v; had %q", len(again), m, err, args)
		}
		for i := range args {
			if !bytes.Equal(again[i], args[i]) {
				t.Fatalf("re-encoded arg %d: %q, want %q", i, again[i], args[i])
			}
		}
	})
}

func toStrings(args [][]byte) []string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = string(a)
	}
	return s
}

// FuzzCommand runs arbitrary arguments (the fuzz input split on spaces)
// as a command: never a panic, always exactly one well-formed reply, and
// the connection still serves.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{
		"SET fleet a FIELD speed 10 POINT 1 2 1764000000", "GET fleet a WITHFIELDS POINT", "DEL fleet a",
		"NEARBY fleet LIMIT 3 CURSOR 1 DISTANCE POINTS POINT 1 2 5000", "WITHIN fleet COUNT BOUNDS 0 0 3 3",
		"WITHIN fleet CIRCLE 1 2 1e9", "SCAN fleet LIMIT 1 IDS", "STATS fleet", "SERVER", "INFO", "OUTPUT json",
		"PING x", "AUTH a b", "NEARBY fleet POINT 1e400 2", "SET fleet a POINT -0 -180 99999999999999",
	} {
		f.Add(s)
	}
	eng, err := engine.Open(engine.Options{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	defer eng.Close()
	s, err := New(Options{Engine: eng, Logger: quiet, Now: func() time.Time { return fixedNow }})
	if err != nil {
		f.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	f.Fuzz(func(t *testing.T, cmd string) {
		args := bytes.Fields([]byte(cmd))
		if len(args) == 0 {
			return
		}
		if len(args) >= 2 && len(args[1]) > 0 && args[1][0] == 'f' {
			args[1] = []byte("fleet") // reach past the key check more often
		}
		c := newConn(s, a)
		c.exec(args)
		c.applyPending()
		if c.json { // JSON replies: one bulk string of valid JSON
			c.json = false
		}
		br := bufio.NewReader(bytes.NewReader(c.out))
		if _, err := readReply(br); err != nil {
			t.Fatalf("%q: reply %q: %v", cmd, c.out, err)
		}
		if br.Buffered() != 0 {
			t.Fatalf("%q: more than one reply: %q", cmd, c.out)
		}
		c.out = c.out[:0]
		c.exec([][]byte{[]byte("PING")})
		if string(c.out) != "+PONG\r\n" && !c.quit {
			t.Fatalf("%q: then PING: %q", cmd, c.out)
		}
	})
}

// FuzzFastFloat: whatever fastFloat accepts, it parses exactly as
// strconv.ParseFloat does.
func FuzzFastFloat(f *testing.F) {
	for _, s := range []string{"40.7128", "-74.006", "0", "-0", "180", "1.", ".5", "123456789012345", "1234567890123456", "-0.0000001", "9.99999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := fastFloat([]byte(s))
		if !ok {
			return
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || v != want || math.Signbit(v) != math.Signbit(want) {
			t.Fatalf("fastFloat(%q) = %v; ParseFloat: %v, %v", s, v, want, err)
		}
	})
}

// FuzzFastInt: whatever fastInt accepts, it parses as strconv.ParseInt
// does.
func FuzzFastInt(f *testing.F) {
	for _, s := range []string{"0", "1733212800", "1733212800123", "999999999999999999", "1000000000000000000", "-5", "+5", "1e3", "", "12a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := fastInt([]byte(s))
		if !ok {
			return
		}
		want, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v != want {
			t.Fatalf("fastInt(%q) = %v; ParseInt: %v, %v", s, v, want, err)
		}
	})
}

package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
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

package cluster

import (
	"errors"
	"testing"
)

func TestParseToken(t *testing.T) {
	for _, c := range []struct {
		in, want string
		err      bool
	}{
		{"", "", false},
		{"3:1042", "3:1042", false},
		{"7:1045,3:1042", "3:1042,7:1045", false},
		{"3:10,3:12,3:11", "3:12", false},
		{"0:1,1:2,7:3", "0:1,1:2,7:3", false},
		{"8:1", "", true},  // partition out of range
		{"3:0", "", true},  // no sequence 0
		{"3", "", true},    // no colon
		{"3:x", "", true},  // not a number
		{"-1:5", "", true}, // negative
		{"3:5,", "", true}, // empty item
		{" 3:5", "", true}, // spaces
		{"3:18446744073709551616", "", true},
	} {
		tok, err := ParseToken(c.in, 8)
		if c.err {
			if !errors.Is(err, ErrBadToken) {
				t.Errorf("ParseToken(%q) = %v, %v; want ErrBadToken", c.in, tok, err)
			}
			continue
		}
		if err != nil || tok.String() != c.want {
			t.Errorf("ParseToken(%q) = %q, %v; want %q", c.in, tok.String(), err, c.want)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("3:1042,7:1045")
	f.Add("0:1")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s, 16)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("error %v does not wrap ErrBadToken", err)
			}
			return
		}
		again, err := ParseToken(tok.String(), 16)
		if err != nil || again.String() != tok.String() {
			t.Fatalf("%q → %q → %q, %v", s, tok.String(), again.String(), err)
		}
		for i := 1; i < len(tok); i++ {
			if tok[i-1].Partition >= tok[i].Partition {
				t.Fatalf("%q: marks not sorted by partition: %v", s, tok)
			}
		}
	})
}

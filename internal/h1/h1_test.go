package h1

import "testing"

func TestIsToken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"GET", true}, {"Content-Length", true}, {"x-a_b.c~1!#$%&'*+^`|", true},
		{"", false}, {"Host ", false}, {"a:b", false}, {"a b", false}, {"a\tb", false},
		{"(x)", false}, {"a/b", false}, {"é", false}, {"\x00", false}, {"a\"", false},
	} {
		if got := IsToken([]byte(tc.in)); got != tc.want {
			t.Errorf("IsToken(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

package alert

import "testing"

func TestInsideZone(t *testing.T) {
	for _, tc := range []struct{ when, zone string }{
		{`inside("yard-3")`, "yard-3"},
		{`  inside ( "yard 3" ) `, "yard 3"},
		{`inside("a\"b")`, `a"b`},
		{`inside("yard") && speed > 5`, ""},
		{`!inside("yard")`, ""},
		{`near("yard", 100)`, ""},
		{`(inside("yard"))`, ""},
		{`inside("a") || inside("b")`, ""},
		{`speed > 5`, ""},
		{`inside("bad\q")`, ""},
	} {
		if got := insideZone(tc.when); got != tc.zone {
			t.Errorf("insideZone(%q) = %q, want %q", tc.when, got, tc.zone)
		}
	}
}

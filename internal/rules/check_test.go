package rules

import (
	"errors"
	"testing"
)

func TestCheckErrors(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		// Unknown names, with suggestions by edit distance.
		{"speed > sped", `1:9: unknown field "sped" (did you mean "speed"?)`},
		{"sped > 1", `1:1: unknown field "sped" (did you mean "speed"?)`},
		{"Speed > 1", `1:1: unknown field "Speed" (did you mean "speed"?)`},
		{"prev.sped > 1", `1:1: unknown field "prev.sped" (did you mean "prev.speed"?)`},
		{"heding < 1", `1:1: unknown field "heding" (did you mean "heading"?)`},
		{"altitude > 1", `1:1: unknown field "altitude"`},
		{"x > 1", `1:1: unknown field "x"`},
		{"foo.bar > 1", `1:1: unknown field "foo.bar"`},
		{"prev > 1", `1:1: prev needs a field: prev.speed, prev.heading, prev.lat, prev.lon or prev.ts`},
		{"inside", `1:1: inside is a function; call it as inside(...)`},
		{"insde(\"depot-7\")", `1:1: unknown function "insde" (did you mean "inside"?)`},
		{"sqrt(speed) > 1", `1:1: unknown function "sqrt"`},
		{"speed(1) > 1", `1:1: speed is a field, not a function`},
		{"prev.speed() > 1", `1:1: prev.speed is a field, not a function`},
		// Argument counts and types.
		{"abs() > 1", `1:1: abs expects 1 argument, got 0`},
		{"abs(1, 2) > 1", `1:1: abs expects 1 argument, got 2`},
		{`near("yard") `, `1:1: near expects 2 arguments, got 1`},
		{"hour(ts) > 1", `1:1: hour expects no arguments, got 1`},
		{"speed > 1 && min(speed) > 1", `1:14: min expects 2 arguments, got 1`},
		{"abs(true) > 1", `1:5: abs: argument 1 must be a number, got bool`},
		{"max(1, speed > 2) > 1", `1:8: max: argument 2 must be a number, got bool`},
		{`distance_m(52.5, "yard") < 1`, `1:18: distance_m: argument 2 must be a number, got a string; zone names are only allowed as argument 1 of inside and near`},
		{`near("yard", true)`, `1:14: near: argument 2 must be a number, got bool`},
		{"inside(speed)", `1:8: inside: argument 1 must be a zone name in double quotes`},
		{"inside(yard)", `1:8: inside: argument 1 must be a zone name in double quotes`},
		// Zones.
		{`inside("depot-8")`, `1:8: unknown zone "depot-8" (did you mean "depot-7"?)`},
		{`speed > 1 && near("harbour", 100)`, `1:19: unknown zone "harbour"`},
		{`near("yard", -5)`, `1:14: near: radius must be a finite number >= 0, got -5`},
		{`near("yard", 1 / 0)`, `1:14: near: radius must be a finite number >= 0, got +Inf`},
		{`near("yard", 0 / 0)`, `1:14: near: radius must be a finite number >= 0, got NaN`},
		// Operators on the wrong types.
		{"true + 1 > 0", `1:1: operator + needs numbers, got bool`},
		{"speed * (dt > 1) > 0", `1:10: operator * needs numbers, got bool`},
		{`"yard" + 1 > 0`, `1:1: operator + needs numbers, got string`},
		{"-inside(\"yard\")", `1:2: operator - needs a number, got bool`},
		{"!speed", `1:2: operator ! needs a bool, got number`},
		{"speed && true", `1:1: operator && needs bools, got number`},
		{"true || dt", `1:9: operator || needs bools, got number`},
		{"true < false", `1:1: operator < needs numbers, got bool`},
		{"speed > 1 > 0", `1:1: operator > needs numbers, got bool`},
		{"speed == true", `1:1: cannot compare number with bool`},
		{"(dt < 1) != 5", `1:1: cannot compare bool with number`},
		{`"a" == "b"`, `1:1: operator == cannot compare strings; zone names are only allowed as arguments of inside and near`},
		// The rule's type.
		{"speed", `1:1: rule must be a bool expression, got number`},
		{"speed + 1", `1:1: rule must be a bool expression, got number`},
		{`"yard"`, `1:1: rule must be a bool expression, got string`},
		{"\n  abs(dt)", `2:3: rule must be a bool expression, got number`},
	}
	for _, tt := range tests {
		_, err := Compile(tt.src, testZones())
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("Compile(%q) error = %v, want *Error", tt.src, err)
			continue
		}
		if got := e.Error(); got != tt.want {
			t.Errorf("Compile(%q) error\n got %s\nwant %s", tt.src, got, tt.want)
		}
	}
}

// The error span is the offending text: an operand, a call, a name.
func TestCheckErrorSpans(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"speed > sped", "sped"},
		{"abs(1, 2) > 1", "abs(1, 2)"},
		{"abs(true) > 1", "true"},
		{"sqrt(speed) > 1", "sqrt"},
		{"speed == (dt < 1)", "speed == (dt < 1)"},
		{`inside("depot-8")`, `"depot-8"`},
		{"speed + 1", "speed + 1"},
		{"!(speed + 1)", "speed + 1"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.src, testZones())
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Compile(%q) error = %v, want *Error", tt.src, err)
		}
		if got := tt.src[e.Offset:e.End]; got != tt.want {
			t.Errorf("Compile(%q) error span = %q, want %q", tt.src, got, tt.want)
		}
	}
}

func TestCheckZones(t *testing.T) {
	// A resolver without ZoneLister gets no suggestion; a nil resolver
	// knows no zones.
	_, err := Compile(`inside("depot-8")`, mapZones{"depot-7": 1})
	if err == nil || err.Error() != `1:8: unknown zone "depot-8"` {
		t.Errorf("mapZones: %v", err)
	}
	_, err = Compile(`inside("depot-7")`, nil)
	if err == nil || err.Error() != `1:8: unknown zone "depot-7"` {
		t.Errorf("nil resolver: %v", err)
	}
	p, err := Compile(`inside("depot-7") || inside("b") || near("depot-7", 5)`, mapZones{"depot-7": 1, "b": 42})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Zones(); len(got) != 2 || got[0] != 1 || got[1] != 42 {
		t.Errorf("Zones() = %v, want [1 42]", got)
	}
}

func TestCheckTypes(t *testing.T) {
	tests := []struct {
		src  string
		want typ
	}{
		{"1", tyNumber}, {"true", tyBool}, {`"a"`, tyString}, {"speed", tyNumber},
		{"-speed", tyNumber}, {"!true", tyBool}, {"1 + 2", tyNumber}, {"1 < 2", tyBool},
		{"true == false", tyBool}, {"1 != 2", tyBool}, {"true && false", tyBool},
		{`inside("yard")`, tyBool}, {`near("yard", 1)`, tyBool}, {"distance_m(1, 2)", tyNumber},
		{"abs(1)", tyNumber}, {"min(1, 2)", tyNumber}, {"max(1, 2)", tyNumber}, {"hour()", tyNumber},
	}
	for _, tt := range tests {
		e, err := parseAndCheck(tt.src, testZones())
		if err != nil {
			t.Errorf("parseAndCheck(%q): %v", tt.src, err)
			continue
		}
		if e.typ != tt.want {
			t.Errorf("type of %q = %v, want %v", tt.src, e.typ, tt.want)
		}
	}
}

package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunRules(t *testing.T) {
	tests := []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"check", "speed > 90"}, 0, "ok\n", ""},
		{[]string{"check", `speed > 90 && !inside("depot-7")`, "--zone", "depot-7"}, 0, "ok\n", ""},
		{[]string{"check", "--zone", "depot-7", `inside("depot-7")`}, 0, "ok\n", ""},
		{[]string{"check", "speed > sped"}, 1, "", "1:9: unknown field \"sped\" (did you mean \"speed\"?)\n  speed > sped\n          ^^^^\n"},
		{[]string{"check", "--", "-speed < -5"}, 0, "ok\n", ""},
		{[]string{"check"}, 2, "", "want one rule"},
		{[]string{"check", "a", "b"}, 2, "", "got 2 arguments"},
		{[]string{"check", `inside("x")`}, 1, "", "--zone NAME"},
		{[]string{"disasm", "speed > 90 && heading < 180 && dt < 60"}, 0, "AND_GT_FIELD_CONST   speed, 90, return false", ""},
		{[]string{"disasm", `near("b", 100)`, "--zone", "a", "--zone", "b"}, 0, `; zone guard: true only within 100 m of zone "b" (id 2)`, ""},
		{[]string{"--help"}, 0, "prev.speed - speed > 30 && dt < 3", ""},
		{[]string{"check", "-h"}, 0, `speed > 90 && !inside("depot-7")`, ""},
		{[]string{}, 2, "", "want a command"},
		{[]string{"run"}, 2, "", `unknown command "run"`},
		{[]string{"check", "--nope"}, 2, "", "flag provided but not defined"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := runRulesTo(tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) || (tt.stdout == "" && out.Len() > 0) {
			t.Errorf("rules %q = %d\nstdout %q\nstderr %q\nwant %d, stdout containing %q, stderr containing %q", tt.args, code, out.String(), errb.String(), tt.code, tt.stdout, tt.stderr)
		}
	}
}

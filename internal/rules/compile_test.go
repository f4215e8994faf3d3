package rules

import (
	"strings"
	"testing"
)

// The compare families are laid out in the same order, which the code
// generator relies on (cmpOpcode(op) - opLT + opLTFC).
func TestOpcodeTable(t *testing.T) {
	for op := opcode(1); op < numOpcodes; op++ {
		if opInfos[op].name == "" {
			t.Errorf("opcode %d has no name", op)
		}
	}
	for i, cmp := range []string{"LT", "LE", "GT", "GE", "EQ", "NE"} {
		k := opcode(i)
		for _, c := range []struct {
			op   opcode
			name string
		}{
			{opLT + k, cmp}, {opLTC + k, cmp + "_CONST"}, {opLTFC + k, cmp + "_FIELD_CONST"},
			{opAndLTFC + k, "AND_" + cmp + "_FIELD_CONST"}, {opOrLTFC + k, "OR_" + cmp + "_FIELD_CONST"},
			{opAndLTC + k, "AND_" + cmp + "_CONST"}, {opOrLTC + k, "OR_" + cmp + "_CONST"},
		} {
			if c.op.String() != c.name {
				t.Errorf("opcode %d is %s, want %s", c.op, c.op, c.name)
			}
		}
	}
	if opcode(200).String() != "INVALID" {
		t.Error("out-of-range opcode has a name")
	}
}

// loadField agrees with the documented semantics for every field, with
// and without a previous state.
func TestLoadField(t *testing.T) {
	for _, hasPrev := range []bool{true, false} {
		in := berlin()
		in.HasPrev = hasPrev
		for f, name := range fieldNames {
			got, want := loadField(&in, byte(f)), astField(name, &in)
			if got != want {
				t.Errorf("HasPrev %v: loadField(%s) = %v, want %v", hasPrev, name, got, want)
			}
			if v, ok := fastField(&in, byte(f)); ok != isFastField(fieldID(f)) || ok && v != want {
				t.Errorf("HasPrev %v: fastField(%s) = %v, %v", hasPrev, name, v, ok)
			}
		}
	}
}

// verify rejects each kind of broken program.
func TestVerify(t *testing.T) {
	good := func() *Program {
		p, err := Compile(`!inside("yard") || speed > 90 && !inside("depot-7") && prev.speed - speed > 30`, testZones())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := good().verify(); err != nil {
		t.Fatalf("good program: %v", err)
	}
	// at returns the offset of the first instruction op in p.
	at := func(p *Program, op opcode) int {
		for _, l := range p.lines {
			if opcode(p.code[l.off]) == op {
				return l.off
			}
		}
		t.Fatalf("no %v in\n%s", op, p.Disasm())
		return 0
	}
	tests := []struct {
		name   string
		mutate func(p *Program)
		want   string
	}{
		{"bad opcode", func(p *Program) { p.code[0] = 0 }, "bad opcode"},
		{"opcode out of range", func(p *Program) { p.code[0] = byte(numOpcodes) }, "bad opcode"},
		{"no RETURN", func(p *Program) { p.code = p.code[:len(p.code)-1] }, "RETURN"},
		{"truncated", func(p *Program) { p.code = []byte{byte(opLoadConst)} }, "truncated"},
		{"bad constant", func(p *Program) { p.consts = p.consts[:0] }, "bad"},
		{"bad zone", func(p *Program) { p.zoneIDs = nil }, "bad zone"},
		{"slow field fused", func(p *Program) { p.code[at(p, opAndGTFC)+1] = byte(fMovedM) }, "bad operands"},
		{"backward jump", func(p *Program) {
			j := at(p, opJumpIfTrueOrPop)
			setJumpTarget(p.code, j, j-2)
		}, "backward or not to an instruction"},
		{"jump into an instruction", func(p *Program) {
			setJumpTarget(p.code, at(p, opJumpIfTrueOrPop), at(p, opAndGTFC)+1)
		}, "backward or not to an instruction"},
		{"jump past the end", func(p *Program) { setJumpTarget(p.code, at(p, opJumpIfTrueOrPop), 500) }, "backward or not to an instruction"},
		{"stack bound", func(p *Program) { p.maxStack = 0 }, "above bound"},
		{"underflow", func(p *Program) { p.code = []byte{byte(opAdd), byte(opReturn)} }, "pops 2 of 0"},
		{"depth at RETURN", func(p *Program) { p.code = []byte{byte(opLoadTrue), byte(opLoadTrue), byte(opReturn)} }, "RETURN at 2 with depth 2"},
		{"merge mismatch", func(p *Program) {
			// LOAD_TRUE; JUMP_IF_TRUE_OR_POP 7; LOAD_TRUE; LOAD_TRUE; RETURN
			p.code = []byte{byte(opLoadTrue), byte(opJumpIfTrueOrPop), 6, 0, byte(opLoadTrue), byte(opLoadTrue), byte(opReturn)}
			p.maxStack = 4
		}, "meet"},
		{"unreachable", func(p *Program) {
			p.code = []byte{byte(opLoadTrue), byte(opReturn), byte(opReturn)}
		}, "RETURN at 1"},
		{"jump-return depth", func(p *Program) {
			// LOAD_TRUE; LOAD_TRUE; JUMP_IF_TRUE_OR_POP return; RETURN
			p.code = []byte{byte(opLoadTrue), byte(opLoadTrue), byte(opJumpIfTrueOrPop), 0, 0, byte(opReturn)}
			p.maxStack = 4
		}, "jump-return at 2 with depth 2"},
	}
	for _, tt := range tests {
		p := good()
		tt.mutate(p)
		err := p.verify()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: verify() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestCompileLimits(t *testing.T) {
	// 300 distinct constants do not fit a one-byte index.
	var b strings.Builder
	b.WriteString("speed")
	for i := 0; i < 300; i++ {
		b.WriteString(" + " + formatNum(float64(i)+0.5) + " * dt")
	}
	_, err := Compile(b.String()+" > 0", nil)
	if err == nil || !strings.Contains(err.Error(), "more than 256 distinct constants") {
		t.Errorf("300 constants: %v", err)
	}
	// Repeated constants share one pool entry.
	p, err := Compile("speed > 1 && heading > 1 && dt > 1 && lat > 1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.consts) != 1 {
		t.Errorf("%d constants, want 1", len(p.consts))
	}
	// -0 and 0 stay apart.
	p, err = Compile("1 / speed > 0 || 1 / speed > -0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.consts) != 3 {
		t.Errorf("consts %v, want 1, 0, -0", p.consts)
	}
}

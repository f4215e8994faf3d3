package rules

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Disasm returns the program's bytecode, one instruction per line, like
// Python's dis:
//
//	>>  13  RETURN
//	     0  GT_FIELD_CONST       speed, 90            speed > 90
//
// Columns: ">>" marks a jump target; the byte offset; the opcode; its
// operands resolved (field names, constant values, "to N" for jumps, zone
// names with their IDs); the source text the instruction came from, with
// runs of white space collapsed and long text cut with "...". The first
// line is a header with the program's sizes. The layout is pinned by the
// golden files in testdata/disasm.
func (p *Program) Disasm() string {
	targets := map[int]bool{}
	for _, l := range p.lines {
		if opInfos[p.code[l.off]].arg == argJump {
			targets[jumpTarget(p.code, l.off)] = true
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "; %d bytes, %d constants, %d zones, max stack %d\n", len(p.code), len(p.consts), len(p.zoneIDs), p.maxStack)
	for _, l := range p.lines {
		op := opcode(p.code[l.off])
		mark := "  "
		if targets[l.off] {
			mark = ">>"
		}
		src := ""
		if l.pos >= 0 {
			src = sourceText(p.src[l.pos:l.end])
		}
		line := fmt.Sprintf("%s %4d  %-20s %-20s %s", mark, l.off, op, p.operandText(l.off), src)
		b.WriteString(strings.TrimRight(line, " "))
		b.WriteByte('\n')
	}
	return b.String()
}

func (p *Program) operandText(off int) string {
	c := p.code
	switch opInfos[c[off]].arg {
	case argField:
		return fieldNames[c[off+1]]
	case argConst:
		return formatNum(p.consts[c[off+1]])
	case argFieldConst:
		return fieldNames[c[off+1]] + ", " + formatNum(p.consts[c[off+2]])
	case argJump:
		return fmt.Sprintf("to %d", jumpTarget(c, off))
	case argZone:
		i := c[off+1]
		return fmt.Sprintf("%q (id %d)", p.zoneNames[i], p.zoneIDs[i])
	}
	return ""
}

// sourceText collapses white space and cuts long text for a listing.
func sourceText(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const maxLen = 40
	if len(s) > maxLen {
		cut := maxLen - 3
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

package rules

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Disasm returns the program's bytecode, one instruction per line, like
// Python's dis. For speed > 120 && dt < 5 || moved_m > 5000:
//
//	; 16 bytes, 3 constants, 0 zones, max stack 1
//	      0  AND_GT_FIELD_CONST   speed, 120, to 8           speed > 120
//	      5  LT_FIELD_CONST       dt, 5                      dt < 5
//	>>    8  JUMP_IF_TRUE_OR_POP  return true                ||
//	     11  LOAD_FIELD           moved_m                    moved_m
//	     13  GT_CONST             5000                       moved_m > 5000
//	     15  RETURN
//
// The first line gives the program's sizes. Then, for each instruction:
// ">>" if it is a jump target; its byte offset; the opcode; the operands
// resolved (field names, constant values, "to N" or "return <value>" for
// jumps, zone names with their IDs); and the source text it came from,
// white space collapsed and cut with "..." past 40 bytes. The layout is
// pinned by the golden files in testdata/disasm.
func (p *Program) Disasm() string {
	targets := map[int]bool{}
	for _, l := range p.lines {
		if opcode(p.code[l.off]).isJump() && jumpTarget(p.code, l.off) != 0 {
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
		line := fmt.Sprintf("%s %4d  %-20s %-26s %s", mark, l.off, op, p.operandText(l.off), src)
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
		return jumpText(c, off)
	case argConstJump:
		return formatNum(p.consts[c[off+1]]) + ", " + jumpText(c, off)
	case argFieldConstJump:
		return fieldNames[c[off+1]] + ", " + formatNum(p.consts[c[off+2]]) + ", " + jumpText(c, off)
	case argZone:
		i := c[off+1]
		return fmt.Sprintf("%q (id %d)", p.zoneNames[i], p.zoneIDs[i])
	}
	return ""
}

// jumpText is "to N", or "return false"/"return true" for a jump that
// returns its value (target 0).
func jumpText(code []byte, off int) string {
	if t := jumpTarget(code, off); t != 0 {
		return fmt.Sprintf("to %d", t)
	}
	return fmt.Sprintf("return %v", opcode(code[off]).jumpValue())
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

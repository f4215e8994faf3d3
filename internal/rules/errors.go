package rules

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Error is a compile error in a rule: a message and the byte span of the
// offending source text.
//
// Error() is the one-line form "line:col: message", like go/scanner; the
// position takes the place of a package prefix, and callers that store
// rules add their own context ("rule 17: 1:9: ..."). Detail() and the %+v
// verb add the source line with a caret under the offending text:
//
//	1:9: unknown field "sped" (did you mean "speed"?)
//	  speed > sped
//	          ^^^^
type Error struct {
	Msg       string
	Line, Col int // 1-based; Col counts bytes
	Offset    int // byte offset of the offending text, 0 <= Offset <= len(source)
	End       int // byte offset just past it, Offset <= End <= len(source)
	src       string
}

func newError(src string, pos, end int, format string, args ...any) *Error {
	if pos < 0 || pos > len(src) || end < pos || end > len(src) {
		panic(fmt.Sprintf("BUG: rules: error span [%d,%d) outside source of %d bytes", pos, end, len(src)))
	}
	line := 1 + strings.Count(src[:pos], "\n")
	col := pos - (strings.LastIndexByte(src[:pos], '\n') + 1) + 1
	return &Error{
		Msg:    fmt.Sprintf(format, args...),
		Line:   line,
		Col:    col,
		Offset: pos,
		End:    end,
		src:    src,
	}
}

// Error returns "line:col: message".
func (e *Error) Error() string {
	return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
}

// Detail returns the error followed by the offending source line, indented
// by two spaces, and a line of carets under the offending text.
func (e *Error) Detail() string {
	lineStart := strings.LastIndexByte(e.src[:e.Offset], '\n') + 1
	lineEnd := len(e.src)
	if i := strings.IndexByte(e.src[e.Offset:], '\n'); i >= 0 {
		lineEnd = e.Offset + i
	}
	line := e.src[lineStart:lineEnd]
	var b strings.Builder
	b.WriteString(e.Error())
	b.WriteString("\n  ")
	b.WriteString(strings.TrimRight(line, "\r"))
	b.WriteString("\n  ")
	// One column per rune so that the carets line up with multi-byte
	// characters; tabs are copied so that they expand the same way.
	for _, r := range e.src[lineStart:e.Offset] {
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
	}
	end := min(e.End, lineEnd)
	n := utf8.RuneCountInString(e.src[e.Offset:max(end, e.Offset)])
	b.WriteString(strings.Repeat("^", max(n, 1)))
	return b.String()
}

// Format implements fmt.Formatter: %+v prints Detail, %v and %s print
// Error, %q prints Error quoted.
func (e *Error) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('+'):
		fmt.Fprint(f, e.Detail())
	case verb == 'q':
		fmt.Fprintf(f, "%q", e.Error())
	default:
		fmt.Fprint(f, e.Error())
	}
}

package resp

import (
	"bytes"
	"errors"
	"fmt"
)

// Protocol limits (see the package doc).
const (
	MaxArgs    = 1024     // arguments of one command
	MaxBulk    = 64 << 10 // bytes of one argument
	MaxInline  = 64 << 10 // bytes of one inline command line
	MaxCommand = 1 << 20  // bytes of one command as sent (what the read buffer may grow to)
)

// ErrProtocol wraps every framing error: the connection cannot be
// resynchronised after one, so the server answers it and closes.
var ErrProtocol = errors.New("resp: protocol error")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// Parse reads one command from the front of b: a RESP array of bulk
// strings (what clients send) or an inline command (a line of words, what
// a person types into telnet). It appends the arguments to args[:0], each
// aliasing b, and returns them with the number of bytes used. n == 0 and no
// error means b holds no complete command yet. A command with no arguments
// (an empty array, a blank line) comes back as n > 0 and len(args) == 0.
func Parse(b []byte, args [][]byte) (_ [][]byte, n int, err error) {
	args = args[:0]
	if len(b) == 0 {
		return args, 0, nil
	}
	if b[0] != '*' {
		return parseInline(b, args)
	}
	count, i, err := parseLen(b, 1, MaxArgs, "multibulk length")
	if err != nil || i == 0 {
		return args, 0, err
	}
	if count <= 0 { // *0 and *-1: nothing to do
		return args, i, nil
	}
	for range count {
		if i >= len(b) {
			return args, 0, nil
		}
		if b[i] != '$' {
			return args, 0, protoErr("expected '$', got %q", b[i])
		}
		size, j, err := parseLen(b, i+1, MaxBulk, "bulk length")
		if err != nil || j == 0 {
			return args, 0, err
		}
		if size < 0 {
			return args, 0, protoErr("invalid bulk length")
		}
		end := j + size
		if end+2 > len(b) {
			return args, 0, nil
		}
		if b[end] != '\r' || b[end+1] != '\n' {
			return args, 0, protoErr("bulk string not followed by CRLF")
		}
		args = append(args, b[j:end:end])
		i = end + 2
	}
	return args, i, nil
}

// parseLen reads the decimal after a '*' or '$' at b[i:] up to CRLF. It
// returns the value and the index after the CRLF, or next == 0 when the
// line is incomplete. Values above limit are errors; -1 is allowed (null).
func parseLen(b []byte, i, limit int, what string) (v, next int, err error) {
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + int(b[i]-'0')
		if v > limit {
			return 0, 0, protoErr("invalid %s", what)
		}
	}
	if i < len(b) && b[i] != '\r' {
		return 0, 0, protoErr("invalid %s", what)
	}
	if i+1 >= len(b) {
		if i-start > 20 {
			return 0, 0, protoErr("invalid %s", what)
		}
		return 0, 0, nil
	}
	if i == start || b[i] != '\r' || b[i+1] != '\n' || neg && v != 1 {
		return 0, 0, protoErr("invalid %s", what)
	}
	if neg {
		v = -1
	}
	return v, i + 2, nil
}

// parseInline splits one line (ended by LF, an optional CR before it
// dropped) on spaces and tabs. Quotes have no meaning.
func parseInline(b []byte, args [][]byte) ([][]byte, int, error) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		if len(b) > MaxInline {
			return args, 0, protoErr("too big inline request")
		}
		return args, 0, nil
	}
	if nl > MaxInline {
		return args, 0, protoErr("too big inline request")
	}
	line := b[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	for len(line) > 0 {
		i := 0
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		line = line[i:]
		j := 0
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		if j > 0 {
			if len(args) == MaxArgs {
				return args[:0], 0, protoErr("too many arguments in inline request")
			}
			args = append(args, line[:j:j])
		}
		line = line[j:]
	}
	return args, nl + 1, nil
}

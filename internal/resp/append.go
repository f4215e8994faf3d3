package resp

import (
	"strconv"
	"strings"
)

// The Append* functions write RESP2 values into a caller's buffer.

// AppendSimple appends a simple string (+OK). s must not hold CR or LF.
func AppendSimple(dst []byte, s string) []byte {
	dst = append(dst, '+')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendError appends an error reply. msg's line breaks become spaces (a
// RESP error is one line); a message that does not start with one of the
// error codes clients act on (ERR, NOAUTH, NOPERM, WRONGPASS) gets "ERR ".
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	if !hasCode(msg) {
		dst = append(dst, "ERR "...)
	}
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

func hasCode(msg string) bool {
	for _, code := range [...]string{"ERR ", "NOAUTH ", "NOPERM ", "WRONGPASS "} {
		if strings.HasPrefix(msg, code) {
			return true
		}
	}
	return false
}

// AppendInt appends an integer reply.
func AppendInt(dst []byte, v int64) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, '\r', '\n')
}

// AppendBulk appends a bulk string.
func AppendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendBulkString is AppendBulk of a string.
func AppendBulkString(dst []byte, s string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendNull appends the null bulk string ($-1), redis-cli's (nil).
func AppendNull(dst []byte) []byte { return append(dst, "$-1\r\n"...) }

// AppendArray appends the header of an array of n values; the values follow.
func AppendArray(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

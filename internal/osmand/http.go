package osmand

import (
	"bytes"
	"strconv"

	"github.com/fleetd/fleetd/internal/h1"
)

// The HTTP/1.1 request parser of the gateway's own server (doc.go, "HTTP"):
// pure functions over a connection's read buffer, which return spans of
// it and never allocate on the path a valid request takes.

// Limits of a request's framing.
const (
	// maxHead bounds the request line and headers (net/http's
	// DefaultMaxHeaderBytes is 1 MiB; the gateway used 16 KiB).
	maxHead = 16 << 10
	// maxChunkLine bounds a chunk-size line, extensions included
	// (net/http's is 4096).
	maxChunkLine = 4096
	// maxTrailer bounds a chunked body's trailer section.
	maxTrailer = 4096
)

// httpError is a request the server answers with code and closes the
// connection after: the framing cannot be trusted past it.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(msg string) *httpError { return &httpError{400, "osmand: http: " + msg} }

var (
	errHeadTooLarge = &httpError{431, "osmand: http: request line and headers larger than " + strconv.Itoa(maxHead) + " bytes"}
	errVersion      = &httpError{505, "osmand: http: unsupported HTTP version (want HTTP/1.0 or HTTP/1.1)"}
	errTE           = &httpError{501, "osmand: http: unsupported Transfer-Encoding (only chunked)"}
	errExpect       = &httpError{417, "osmand: http: unsupported Expect (only 100-continue)"}
)

// httpHead is a parsed request line and the headers the gateway reads,
// as spans of the buffer given to parseHead.
type httpHead struct {
	method      []byte
	target      []byte
	minor       byte   // HTTP/1.minor: 0 or 1
	ctype       []byte // Content-Type, nil if none
	length      int64  // Content-Length; 0 if none or chunked
	chunked     bool   // Transfer-Encoding: chunked
	close       bool   // the connection ends after this request
	continue100 bool   // Expect: 100-continue
	size        int    // bytes of the head: leading blank lines, request line, headers and the blank line
}

// headEnd returns the length of the head at the start of b (through the
// blank line that ends it), or 0 if b does not hold a whole one yet.
// Blank lines before the request line are skipped (RFC 9112, 2.2). from
// is where a previous call on a shorter b may resume (headScanFrom), so
// that a head arriving a byte at a time is not rescanned from its start.
func headEnd(b []byte, from int) int {
	s := 0
	for s < len(b) && (b[s] == '\r' || b[s] == '\n') {
		s++
	}
	i := max(s, from)
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		// i is past a '\n': a '\n' or "\r\n" next is the blank line.
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// headScanFrom is where headEnd may resume on a longer buffer after
// returning 0 on b: 2 bytes back, so that a blank line split between two
// reads ("\n" | "\r\n") is still seen.
func headScanFrom(b []byte) int { return max(0, len(b)-2) }

// parseHead parses the head b[:n], n from headEnd, as net/http's server
// does for what devices send, with these differences: obs-fold header
// lines, a Transfer-Encoding together with a Content-Length, and more than
// one Transfer-Encoding header are refused (400) rather than interpreted.
func parseHead(b []byte) (h httpHead, err *httpError) {
	h.size = len(b)
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	line, i := nextLine(b, i)
	// Request line: method SP target SP version.
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return h, badRequest("malformed request line")
	}
	h.method = line[:sp]
	if !h1.IsToken(h.method) {
		return h, badRequest("invalid method")
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return h, badRequest("malformed request line")
	}
	h.target, rest = rest[:sp], rest[sp+1:]
	if !validTarget(h.target) {
		return h, badRequest("invalid request target")
	}
	major, minor, ok := parseVersion(rest)
	switch {
	case !ok:
		return h, badRequest("malformed HTTP version")
	case major != 1:
		return h, errVersion
	}
	h.minor = byte(min(minor, 1))
	keepAlive, closeConn := false, false
	hosts, lengths, tes := 0, 0, 0
	var expect []byte
	for {
		line, i = nextLine(b, i)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return h, badRequest("obsolete line folding in headers")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !h1.IsToken(line[:colon]) {
			return h, badRequest("malformed header line")
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !validValue(value) {
			return h, badRequest("invalid header value")
		}
		switch {
		case equalFold(name, "host"):
			hosts++
		case equalFold(name, "content-length"):
			n, ok := parseLength(value)
			if !ok {
				return h, badRequest("invalid Content-Length")
			}
			if lengths > 0 && n != h.length {
				return h, badRequest("conflicting Content-Length headers")
			}
			h.length = n
			lengths++
		case equalFold(name, "transfer-encoding"):
			tes++
			if !equalFold(value, "chunked") {
				if h.minor >= 1 {
					return h, errTE
				}
			}
		case equalFold(name, "connection"):
			forTokens(value, func(t []byte) {
				switch {
				case equalFold(t, "close"):
					closeConn = true
				case equalFold(t, "keep-alive"):
					keepAlive = true
				}
			})
		case equalFold(name, "content-type"):
			if h.ctype == nil {
				h.ctype = value
			}
		case equalFold(name, "expect"):
			expect = value
		}
	}
	if h.minor >= 1 {
		// net/http requires one Host in HTTP/1.1 and ignores
		// Transfer-Encoding in HTTP/1.0.
		switch {
		case hosts == 0:
			return h, badRequest("missing required Host header")
		case hosts > 1:
			return h, badRequest("too many Host headers")
		case tes > 1:
			return h, badRequest("more than one Transfer-Encoding header")
		case tes == 1 && lengths > 0:
			return h, badRequest("both Transfer-Encoding and Content-Length")
		}
		h.chunked = tes == 1
		if h.chunked {
			h.length = 0
		}
	}
	if expect != nil {
		if !equalFold(expect, "100-continue") || h.minor == 0 {
			return h, errExpect
		}
		h.continue100 = h.chunked || h.length > 0
	}
	h.close = closeConn || h.minor == 0 && !keepAlive
	return h, nil
}

// nextLine returns the line starting at b[i] without its CRLF or LF, and
// where the next one starts.
func nextLine(b []byte, i int) ([]byte, int) {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		return b[i:], len(b)
	}
	line := b[i : i+j]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, i + j + 1
}

// parseVersion parses HTTP/major.minor (one digit each, as RFC 9112
// has it).
func parseVersion(v []byte) (major, minor int, ok bool) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

// parseLength parses a Content-Length: digits only, as net/http.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validTarget: origin-form (/path?query), absolute-form (scheme:...) or
// "*", without control characters (net/http's url.ParseRequestURI).
func validTarget(t []byte) bool {
	for _, c := range t {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	switch {
	case t[0] == '/':
		return true
	case len(t) == 1 && t[0] == '*':
		return true
	}
	// absolute-form: a scheme (a letter, then letters, digits, + - .) and
	// a colon.
	for i, c := range t {
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && (isDigit(c) || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return true
		default:
			return false
		}
	}
	return false
}

// query returns the target's query (after the first '?'), or "".
func query(target []byte) []byte {
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		return target[q+1:]
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// validValue: no control characters but HTAB (obs-text is allowed), as
// net/http's httpguts.ValidHeaderFieldValue.
func validValue(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// equalFold compares b with the lower-case ASCII s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// forTokens calls f with each comma-separated element of v, trimmed.
func forTokens(v []byte, f func([]byte)) {
	for len(v) > 0 {
		t := v
		if c := bytes.IndexByte(v, ','); c >= 0 {
			t, v = v[:c], v[c+1:]
		} else {
			v = nil
		}
		if t = trimOWS(t); len(t) > 0 {
			f(t)
		}
	}
}

// chunked is the state of a chunked body being decoded.
type chunked struct {
	at      int  // offset, in the body's raw bytes, of the next chunk-size line (or trailer line)
	last    bool // the last chunk was read: at is in the trailers
	trailer int  // trailer bytes read
}

// errNeedMore is decodeChunked's "not all there yet".
var errNeedMore = &httpError{0, "need more"}

// decodeChunked decodes the chunks of raw (the body's bytes as received
// so far) from st.at on, appending their data to dst, until the body is
// complete (nil), more bytes are needed (errNeedMore; call again with raw
// grown, st and dst as returned) or it is malformed or larger than
// maxBody (an error to answer). Lines must end in CRLF, as net/http
// requires of chunked encoding.
func decodeChunked(raw []byte, st *chunked, dst []byte, maxBody int64) ([]byte, *httpError) {
	for {
		j := bytes.IndexByte(raw[st.at:], '\n')
		if j < 0 {
			if len(raw)-st.at > maxChunkLine {
				return dst, badRequest("chunk line too long")
			}
			return dst, errNeedMore
		}
		line := raw[st.at : st.at+j+1]
		if len(line) > maxChunkLine {
			return dst, badRequest("chunk line too long")
		}
		if cr := bytes.IndexByte(line, '\r'); len(line) < 2 || cr != len(line)-2 {
			return dst, badRequest("malformed chunked encoding (a line not ended by CRLF)")
		}
		line = line[:len(line)-2]
		if st.last {
			// A trailer line, or the blank line that ends the body.
			st.at += j + 1
			if len(line) == 0 {
				return dst, nil
			}
			if st.trailer += j + 1; st.trailer > maxTrailer {
				return dst, &httpError{431, "osmand: http: trailer larger than " + strconv.Itoa(maxTrailer) + " bytes"}
			}
			continue
		}
		size, ok := parseHex(trimOWS(cutSemi(line)))
		if !ok {
			return dst, badRequest("malformed chunk size")
		}
		if size > uint64(maxBody)-uint64(len(dst)) || int64(len(dst)) > maxBody {
			return dst, bodyTooLarge(maxBody)
		}
		if size == 0 {
			st.last = true
			st.at += j + 1
			continue
		}
		start := st.at + j + 1
		end := start + int(size)
		if end+2 > len(raw) {
			return dst, errNeedMore
		}
		if raw[end] != '\r' || raw[end+1] != '\n' {
			return dst, badRequest("malformed chunked encoding (chunk data not followed by CRLF)")
		}
		dst = append(dst, raw[start:end]...)
		st.at = end + 2
	}
}

func bodyTooLarge(max int64) *httpError {
	return &httpError{413, "osmand: body larger than " + strconv.FormatInt(max, 10) + " bytes"}
}

func cutSemi(b []byte) []byte {
	if i := bytes.IndexByte(b, ';'); i >= 0 {
		return b[:i]
	}
	return b
}

// parseHex parses a chunk size: 1 to 16 hex digits.
func parseHex(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		d := unhex(c)
		if d < 0 {
			return 0, false
		}
		n = n<<4 | uint64(d)
	}
	return n, true
}

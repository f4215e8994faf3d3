package frontdoor

import (
	"bytes"
	"net/http"
	"net/textproto"

	"github.com/fleetd/fleetd/internal/h1"
)

// head is a request head the front door serves, as spans of the read
// buffer (valid until the buffer moves) and the fields it needs.
type head struct {
	method, target []byte
	minor          int  // HTTP/1.minor, 0 or 1
	close          bool // the connection ends after this answer
	size           int  // bytes of the head, through its blank line
}

// maxHeaders bounds the header lines of a head served here.
const maxHeaders = 64

// headEnd returns the length of the head at the start of b, through the
// CRLF CRLF that ends it, or 0 if b does not hold a whole one yet; -1
// if the head is not one the front door frames (a line ending in a bare
// LF, or leading blank lines).
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j
		if i == 0 || b[i-1] != '\r' || i == 1 {
			return -1
		}
		if i >= 3 && b[i-2] == '\n' && b[i-3] == '\r' {
			return i + 1
		}
		i++
	}
}

// parseHead parses b[:n] (n from headEnd) into h and hdr, and reports
// whether the front door may serve it (doc.go); when false, net/http
// gets the request as it came. The Host value goes to host, not hdr (as
// net/http does). hdr holds the last request's headers on entry: a value
// that repeats one of them (a client sends the same headers each time)
// reuses its string instead of allocating one, and so does host when it
// equals lastHost.
func parseHead(b []byte, h *head, hdr http.Header, lastHost string) (host string, ok bool) {
	for k, vs := range hdr {
		hdr[k] = vs[:0] // the strings stay behind len, for reuse
	}
	defer func() {
		for k, vs := range hdr {
			if len(vs) == 0 {
				delete(hdr, k)
			}
		}
	}()
	*h = head{size: len(b)}
	line, rest, _ := bytes.Cut(b[:len(b)-2], []byte("\r\n"))
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 {
		return "", false
	}
	if string(method) != http.MethodGet && string(method) != http.MethodHead {
		return "", false
	}
	switch string(version) {
	case "HTTP/1.1":
		h.minor = 1
	case "HTTP/1.0":
	default:
		return "", false
	}
	if !plainTarget(target) {
		return "", false
	}
	h.method, h.target = method, target
	hosts, keepAlive, n := 0, false, 0
	for len(rest) > 0 {
		if n++; n > maxHeaders {
			return "", false
		}
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found || !h1.IsToken(name) {
			return "", false // obs-fold (a line starting with a space) included
		}
		value = bytes.Trim(value, " \t")
		if !plainValue(value) {
			return "", false
		}
		key := canonicalKey(name)
		switch key {
		case "Content-Length":
			// Some clients say a GET has an empty body; any other length,
			// or a second header, is a body net/http frames.
			if string(value) != "0" || len(hdr[key]) > 0 {
				return "", false
			}
		case "Transfer-Encoding", "Upgrade", "Expect", "Trailer":
			return "", false
		case "Host":
			if hosts++; hosts > 1 {
				return "", false
			}
			if host = lastHost; host != string(value) {
				host = string(value)
			}
			continue
		case "Connection":
			for _, tok := range bytes.Split(value, []byte(",")) {
				tok = bytes.Trim(tok, " \t")
				switch {
				case bytes.EqualFold(tok, []byte("close")):
					h.close = true
				case bytes.EqualFold(tok, []byte("keep-alive")):
					keepAlive = true
				}
			}
		}
		vs := hdr[key]
		var v string
		if i := len(vs); i < cap(vs) && vs[:i+1][i] == string(value) {
			v = vs[:i+1][i]
		} else {
			v = string(value)
		}
		hdr[key] = append(vs, v)
	}
	if h.minor == 1 && hosts != 1 {
		return "", false // net/http answers 400
	}
	if h.minor == 0 && !keepAlive {
		h.close = true
	}
	return host, true
}

// plainTarget: an origin-form target of visible ASCII with no escapes
// (which ServeMux would decode) and no dot segments (which it would
// redirect), so that its path is matched as net/http would match it.
func plainTarget(t []byte) bool {
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	path, _, _ := bytes.Cut(t, []byte("?"))
	if bytes.Contains(path, []byte("//")) || bytes.Contains(path, []byte("/.")) || bytes.IndexByte(path, '%') >= 0 {
		return false
	}
	for _, c := range t {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// plainValue: a field value of visible ASCII, spaces and tabs (no
// control bytes, no obs-text, which net/http would also take but the
// front door leaves to it).
func plainValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// commonKeys are the header names clients send most, canonical: looked
// up without allocating a string for the name.
var commonKeys = []string{"Host", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language", "Authorization",
	"Connection", "Cookie", "Origin", "Referer", "Cache-Control", "Content-Length", "Transfer-Encoding", "Upgrade",
	"Expect", "Trailer", "Pragma", "If-None-Match", "If-Modified-Since", "X-Forwarded-For", "Sec-Fetch-Mode",
	"Sec-Fetch-Site", "Sec-Fetch-Dest"}

func canonicalKey(name []byte) string {
	for _, k := range commonKeys {
		if len(k) == len(name) && bytes.EqualFold(name, []byte(k)) {
			return k
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

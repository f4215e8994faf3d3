// Package h1 holds the byte-level rules of HTTP/1.1 syntax (RFC 9110,
// RFC 9112) that fleetd's own HTTP servers share: the OsmAnd gateway's
// parser and the API's front door. Its functions are pure, work on the
// bytes of a read buffer and never allocate.
package h1

// IsToken reports whether b is an RFC 9110 token (a method, a header
// name): one or more of the token characters.
func IsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

// tokenChar: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-"
// / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.
var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

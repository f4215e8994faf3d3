package frontdoor

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"slices"
	"testing"
)

// FuzzParseHead checks the front door's framing against net/http's: a
// head the front door takes must be one http.ReadRequest reads the same
// way (method, target, version, Host, every header value, no body) and
// ends where net/http's does, so the two servers can never disagree on
// where the next request starts.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET /v1/nearby?lat=1&lon=2 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: x\r\n\r\n",
		"HEAD /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"GET /v1/trucks/t1 HTTP/1.1\r\nhost: a\r\nAuthorization: Bearer k\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, Upgrade\r\nUpgrade: h2c\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	hdr := http.Header{}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := headEnd(b)
		if n <= 0 {
			return
		}
		var h head
		host, ok := parseHead(b[:n], &h, hdr, "127.0.0.1:8080")
		if !ok {
			return
		}
		br := bufio.NewReader(bytes.NewReader(b))
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("front door takes %q, net/http refuses it: %v", b[:n], err)
		}
		if req.ContentLength != 0 || len(req.TransferEncoding) != 0 {
			t.Fatalf("%q: net/http sees a body (length %d, TE %v)", b[:n], req.ContentLength, req.TransferEncoding)
		}
		if rest, _ := io.ReadAll(br); !bytes.Equal(rest, b[n:]) {
			t.Fatalf("%q: net/http's head ends %d bytes in, the front door's %d", b, len(b)-len(rest), n)
		}
		if req.Method != string(h.method) || req.RequestURI != string(h.target) || req.ProtoMinor != h.minor || req.Host != host {
			t.Fatalf("%q: net/http reads %s %s 1.%d host %q; the front door %s %s 1.%d host %q",
				b[:n], req.Method, req.RequestURI, req.ProtoMinor, req.Host, h.method, h.target, h.minor, host)
		}
		if req.Close != h.close {
			t.Fatalf("%q: net/http's Close %v, the front door's %v", b[:n], req.Close, h.close)
		}
		if _, ok := hdr["Host"]; ok {
			t.Fatalf("%q: Host left in the headers", b[:n])
		}
		if len(hdr) != len(req.Header) {
			t.Fatalf("%q: %d headers to net/http, %d to the front door", b[:n], len(req.Header), len(hdr))
		}
		for k, vs := range hdr {
			if !slices.Equal(req.Header[k], vs) {
				t.Fatalf("%q: header %s is %q to net/http, %q to the front door", b[:n], k, req.Header[k], vs)
			}
		}
	})
}

// Package frontdoor is the HTTP server in front of fleetd's API: it
// answers the hot read queries (GET /v1/nearby, /v1/within,
// /v1/trucks/{id}, /healthz) on its own HTTP/1.1 connection loop, and
// hands every other connection to net/http.
//
// Why. net/http spends more on a small GET than fleetd's query does: a
// goroutine-side background read per request (a read that finds the
// socket empty, and a deadline change to stop it), header maps cloned
// and sorted, a chunk writer, two buffers. On the 2-vCPU VM of the issue
// 17 runs a bare net/http "hello" costs 34–40 µs of server CPU a request
// at 4 clients, a RESP PING 19–23 (BenchmarkQueryCPU). The front door's
// loop is the RESP server's: one read per request, one write per answer.
//
// What it serves, and the invariant that keeps it safe: only requests it
// can frame without doubt, and the very same http.Handler net/http runs
// (so authentication, the Host and Origin guard, metrics, the access
// log, errors and readiness are the API's own, not copies). A request is
// served here when, and only when:
//
//   - its head is a request line "GET|HEAD SP origin-form SP HTTP/1.1|1.0"
//     and header lines "name: value", each ending in CRLF, within
//     MaxHead bytes, with no obs-fold, no control bytes, one Host;
//   - it has no body (no Transfer-Encoding, no Content-Length other than
//     one "0") and no Upgrade or Expect, so the next request starts right
//     after its head: nothing can be smuggled between the two servers;
//   - its path is one of Paths (no percent-escapes, no dot segments).
//
// Anything else — another method or path, a body, a malformed or
// unusual head, a head too long, TLS — goes to net/http with every byte
// read so far, and that connection stays with net/http: from the first
// request the front door does not take, net/http owns the rest of it,
// and answers (or refuses) exactly as it always did.
//
// Answers are HTTP/1.1 with the handler's headers, a Date, and a
// Content-Length when the body fits the connection's buffer (BodyBuffer);
// past it, or once the handler flushes, the body is sent chunked, so a
// large /v1/within streams in constant memory as under net/http.
// Pipelined requests are answered in order. A connection closes after an
// answer when the client asked (Connection: close, or HTTP/1.0 without
// keep-alive), on a read or write error, after IdleTimeout without a
// request, or after ReadHeaderTimeout inside one.
//
// Concurrency: one goroutine per connection; Shutdown stops accepting,
// closes idle connections, waits for busy ones to finish their answer,
// and shuts net/http down with the same context.
package frontdoor

// Package auth decides who may do what on a fleetd server: scoped bearer
// tokens (Keyring), dashboard sessions held in an HttpOnly cookie
// (Sessions), and the browser-borne-request checks every route gets
// (Guard: Host, Origin, CORS).
//
// # Token file
//
// A token file is UTF-8 text, one token per line:
//
//	# comment (a line whose first non-blank byte is '#'), blank lines ignored
//	<token>                          all scopes (the single-token file of old)
//	<token> <scope>[,<scope>…] [name]
//
// A token is 1 to 512 visible ASCII bytes (0x21–0x7e) and must not start
// with '#'. Scopes are ingest, read, admin (or all); they are independent:
// admin does not imply read. The optional name (visible ASCII, at most 64
// bytes, default "line-N") is what logs and /v1/session show; a token is
// never logged. The same token twice, a name twice, an unknown scope, or a
// file without a token is an error, reported with its line number, and
// leaves the keyring as it was.
//
// Scopes:
//
//	ingest  POST /v1/positions (and device gateways)
//	read    GET queries, /v1/stats, the live feed (/v1/stream, /v1/ws),
//	        /v1/density, GET zones/rules/alerts, the dashboard's data
//	admin   zones, rules, DELETE /v1/trucks/{id}, /debug/pprof/
//
// # Invariants
//
//   - Lookup compares the SHA-256 of the presented token with every
//     token's in constant time and without an early exit, so the answer's
//     timing does not depend on how much of a token matched or which one.
//   - A Keyring swaps its whole table atomically (Load/Reload): a request
//     sees the old table or the new one, never a mix. A reload that fails
//     keeps the old table.
//   - A session records the SHA-256 of the token it was opened with, not
//     its scopes: every use looks the token up again, so removing a token
//     from the file (and SIGHUP) ends its sessions at once.
//   - Sessions are bounded (Options.MaxSessions); past the bound the
//     oldest session is dropped (counted in Sessions.Evicted) and logged.
//     A session ID is 32 random bytes; only its SHA-256 is kept.
//
// # Browser-borne requests (Guard)
//
// A page on any web site can make a browser send "simple" requests (GET,
// POST with a form or text/plain body, no custom headers) to a fleetd on
// the user's machine or LAN, and a DNS-rebinding page can even read the
// answers. Guard refuses, before any route runs:
//
//   - 421 Misdirected Request: a server on loopback asked with a Host that
//     is neither a loopback name or address nor in AllowedHosts (DNS
//     rebinding). A server on other interfaces checks Host only when
//     AllowedHosts is set.
//   - 403: a state-changing request (any method but GET, HEAD, OPTIONS, or
//     a WebSocket upgrade) whose Origin is present and is neither the
//     server's own origin (scheme://Host of the request) nor in
//     AllowedOrigins.
//
// and FormBody names the third rule, which the API applies to its POST
// routes after authentication:
//
//   - 415: a POST without a Content-Type, or with one a cross-site form can
//     send without a preflight (text/plain, application/x-www-form-urlencoded,
//     multipart/form-data).
//
// Origins in AllowedOrigins get CORS: Access-Control-Allow-Origin echoes
// the origin (never "*"), credentials are not allowed (such clients send a
// bearer token), and a preflight (OPTIONS with Access-Control-Request-Method)
// is answered 204 with the allowed methods and headers. A preflight from
// any other origin is 403.
//
// # Concurrency
//
// Keyring, Sessions and Guard are safe for concurrent use; none starts a
// goroutine. Keyring.Lookup and Guard take no lock (an atomic pointer);
// Sessions take one mutex per call.
package auth

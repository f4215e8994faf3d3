// Package resp is fleetd's second front door: a server speaking the Redis
// protocol (RESP2) with the Tile38 commands that cover the same ground as
// the HTTP contract v1, so that redis-cli, Tile38 clients and any Redis
// client library can track a fleet. It holds no engine logic: SETs go
// through engine.Apply and DELs through engine.Delete, exactly as HTTP's
// writes, and queries read the engine's store.
//
// # Commands
//
// One collection, its name Options.Collection (default "fleet"); any other
// key is an error ("key not found: this server has one collection …").
//
//	SET fleet <id> [FIELD <name> <value>]… POINT <lat> <lon> [<ts>]   +OK once durable
//	GET fleet <id> [WITHFIELDS] [OBJECT|POINT]     GeoJSON bulk | [lat lon] | (nil)
//	DEL fleet <id>                                 :1 deleted (durably) | :0 unknown
//	NEARBY fleet [CURSOR n] [LIMIT n] [DISTANCE] [NOFIELDS]
//	       [OBJECTS|POINTS|IDS|COUNT] POINT <lat> <lon> [<meters>]     nearest first
//	WITHIN fleet [CURSOR n] [LIMIT n] [DISTANCE] [NOFIELDS] [OBJECTS|POINTS|IDS|COUNT]
//	       BOUNDS <minlat> <minlon> <maxlat> <maxlon> | CIRCLE <lat> <lon> <meters>
//	SCAN fleet [CURSOR n] [LIMIT n] [NOFIELDS] [OBJECTS|POINTS|IDS|COUNT]
//	STATS fleet                  [[in_memory_size n num_objects n num_points n num_strings 0]]
//	SERVER                       /v1/stats's figures as a flat name/value array
//	INFO [section]               the same as Redis INFO text ("# fleetd", name:value lines)
//	PING [msg], ECHO msg, AUTH [user] <token>, OUTPUT [json|resp], QUIT
//
// Search replies have Tile38's shapes: [cursor, [item…]] with an item per
// truck, [id, geojson] (OBJECTS, the default), [id, [lat, lon]] (POINTS)
// or id (IDS), and the distance in metres (millimetre-rounded, as HTTP's
// distance_m) appended to each item with DISTANCE; COUNT is an integer.
// The cursor is the offset of the next page, 0 when there is none. LIMIT
// defaults to 100 (Tile38's default); NEARBY's CURSOR+LIMIT is at most
// 10000 (HTTP's largest k), WITHIN's and SCAN's LIMIT at most 100000 (a
// reply is built whole, as RESP needs its length first). COUNT counts
// every match, CURSOR and LIMIT aside. WITHIN and SCAN list trucks in
// store order, which updates may change between pages.
//
// OUTPUT json switches the connection to Tile38's JSON replies, each a
// bulk string: {"ok":true,…,"elapsed":"12.3µs"}, errors
// {"ok":false,"err":"…"}; objects as {"id","object"[,"distance"]},
// points {"id","point":{"lat","lon"}}, ids as strings, with "count" and
// "cursor". GET answers "object" or "point" (and "fields" with
// WITHFIELDS); an unknown id is {"ok":false,"err":"id not found"}.
//
// Differences from Tile38, which clients may notice:
//   - POINT's third value is the ts (Unix seconds, or milliseconds from
//     1e11, converted), not z: the HTTP contract's rules apply, a missing
//     ts is the server's clock, one more than --max-clock-skew ahead is
//     refused, a late one is accepted (and not applied if older than the
//     stored position). FIELD takes speed (km/h), heading (degrees) and
//     the optional attributes by their JSON names (alt, ignition,
//     odometer, ... as in fleet.Attr); other field names are refused.
//   - Not supported, each refused with an error naming it: SET's EX, NX,
//     XX, OBJECT, BOUNDS, HASH, STRING; GET's BOUNDS and HASH; the search
//     options MATCH, WHERE, WHEREIN, WHEREEVAL, WHEREEVALSHA, SPARSE,
//     FENCE, DETECT, COMMANDS, CLIP, ASC, DESC, BUFFER, NODWELL, ROAM; the
//     outputs BOUNDS and HASHES; the areas OBJECT, GET, TILE, QUADKEY,
//     HASH, SECTOR (and NEARBY ROAM); and every other Tile38 or Redis
//     command (HELLO included: clients fall back to RESP2). Searches never
//     return fields (NOFIELDS is accepted and changes nothing); GET
//     WITHFIELDS returns ts, speed, heading and the attributes present.
//   - IDs follow fleetd's rule (1-64 bytes of [A-Za-z0-9_.:-]).
//
// # Authentication
//
// With a keyring (--token-file) every command but PING, ECHO, AUTH, OUTPUT and
// QUIT needs AUTH with a token holding the command's scope, the scopes of
// the HTTP routes that do the same: SET ingest; GET, NEARBY, WITHIN, SCAN,
// STATS, SERVER, INFO read; DEL admin. Without AUTH: "NOAUTH …"; a token
// lacking the scope: "NOPERM token "name" has scopes …; SET needs ingest";
// an unknown token: "WRONGPASS invalid token", and after 8 on one
// connection it is closed. The token is looked up again at every read, so
// a token removed from the file (and SIGHUP) loses its access at once.
//
// # Pipelining, batching and durability
//
// A connection reads what the socket has (its buffer doubles from 4 KiB up
// to 256 KiB while reads fill it, and is dropped back once the pipeline
// drains), runs every complete command in it in order, and writes the
// replies in one write. Consecutive SETs are collected and applied as
// one engine batch when anything else comes, or at the end of the read:
// pipelined SETs cost one Engine.Apply (one WAL append, one shared fsync)
// per read instead of one per SET. A SET's +OK is written only after that
// Apply returned nil, so an acknowledgement means durable under the fsync
// policy; if it fails, every SET of the batch gets the error and none was
// applied. Replies keep the commands' order, and a command reads the SETs
// sent before it.
//
// # Wire format and limits
//
// Requests are RESP arrays of bulk strings, or inline commands (one line
// of words separated by spaces or tabs; no quoting). Limits: MaxArgs
// arguments, MaxBulk bytes an argument, MaxInline bytes an inline line,
// MaxCommand bytes a command. A framing error (or a command past the
// limits) is answered "ERR Protocol error: …" and the connection closed,
// as Redis does: the stream cannot be resynchronised. Bad arguments to a
// command are answered an error and the connection goes on.
//
// # Concurrency and memory
//
// One goroutine per connection, at most Options.MaxConns (default 1024)
// at once; past that a connection gets "ERR max number of clients
// reached" and is closed (counted, logged at most once a minute). A
// connection owns its buffers: the read buffer (4 KiB, up to 256 KiB while
// pipelining, up to MaxCommand for one long command and then dropped),
// the reply buffer (dropped after use past 1 MiB) and its hit slice;
// nothing is pooled across connections. A write that does not complete in
// 30 s (up to 31: the deadline is renewed once a second, not per reply)
// closes the connection. Close stops the listeners and connections
// and waits for their goroutines; call it before closing the engine.
//
// # Cost
//
// A round trip costs the server what any Go server on net.Conn pays, and
// PING costs no more: BenchmarkRoundTripFloor (each server in a child
// process, 4 clients, the three in turns; shared 2-core box, -benchtime
// 100000x -count 3, load 2.8-3.3) measured a bare Go TCP echo loop at
// 8.3-8.7 µs of server CPU a round trip, the same loop writing 1,000 bytes
// at 8.1-8.6, and this package's PING at 8.2-8.5 (PING minus echo -0.2 to
// 0). Most of it is the kernel's loopback read and write and the
// runtime's netpoll wake-ups, and on this box it moves between about 4 and
// 9 µs with the machine's state (run one after the other, not in turns,
// echo measured 6.1-8.3 and PING 3.9-8.6 over two runs). A NEARBY LIMIT
// 10 at 1M trucks costs that plus 6-10 µs, the store's search 3.5-5 of them:
// e2e BenchmarkQueryCPU/resp/knn10/clients=4 measured 10.5-20.5 µs over
// the session's runs (resp/ping 4-10), median 19.75 in 6 runs of
// -test.benchtime 20000x at load 2.4-5.7.
package resp

package resp

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/ingest"
	"github.com/fleetd/fleetd/internal/wire"
)

// exec runs one command. Every SET but a valid, allowed one, and every
// other command, first applies the pending SETs, so that replies keep
// the order of the commands and a read sees the writes sent before it.
func (c *conn) exec(args [][]byte) {
	var nb [8]byte
	name := lower(nb[:0], args[0])
	if string(name) != "set" {
		c.applyPending()
	}
	var t0 time.Time
	if c.json {
		t0 = time.Now()
	}
	switch string(name) {
	case "set":
		if c.allowed(auth.Ingest, "SET", t0) {
			c.set(args, t0)
		}
	case "get":
		if c.allowed(auth.Read, "GET", t0) {
			c.get(args, t0)
		}
	case "del":
		if c.allowed(auth.Admin, "DEL", t0) {
			c.del(args, t0)
		}
	case "nearby":
		if c.allowed(auth.Read, "NEARBY", t0) {
			c.search(cmdNearby, args, t0)
		}
	case "within":
		if c.allowed(auth.Read, "WITHIN", t0) {
			c.search(cmdWithin, args, t0)
		}
	case "scan":
		if c.allowed(auth.Read, "SCAN", t0) {
			c.search(cmdScan, args, t0)
		}
	case "stats":
		if c.allowed(auth.Read, "STATS", t0) {
			c.keyStats(args, t0)
		}
	case "server":
		if c.allowed(auth.Read, "SERVER", t0) {
			c.server(args, t0)
		}
	case "info":
		if c.allowed(auth.Read, "INFO", t0) {
			c.info(args, t0)
		}
	case "ping":
		c.ping(args, t0)
	case "echo":
		if len(args) != 2 {
			c.arity("echo", t0)
		} else {
			c.out = AppendBulk(c.out, args[1]) // redis-cli --pipe ends with an ECHO
		}
	case "auth":
		c.auth(args, t0)
	case "output":
		c.output(args, t0)
	case "quit":
		c.ok(t0)
		c.quit = true
	default:
		c.fail(fmt.Sprintf("unknown command '%s'", clip(args[0])), t0)
	}
}

// lower appends b lower-cased to dst if it fits dst's capacity; a longer
// b appends nothing (no command name is that long).
func lower(dst, b []byte) []byte {
	if len(b) > cap(dst) {
		return dst
	}
	for _, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// is reports whether b is the keyword kw (upper case), ignoring case.
func is(b []byte, kw string) bool {
	if len(b) != len(kw) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != kw[i] {
			return false
		}
	}
	return true
}

// clip is b as text for an error message, at most 64 bytes.
func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// str views b as a string for the strconv parsers.
//
// SAFETY: the parsers do not keep their argument (a NumError holds a copy
// since Go 1.20, and callers drop the error anyway), and b is not modified
// during the call.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// allowed checks the connection's scope for a command and answers the
// refusal if it lacks it.
func (c *conn) allowed(want auth.Scope, cmd string, t0 time.Time) bool {
	if c.scope&want == want {
		return true
	}
	c.applyPending()
	if c.token == "" {
		c.fail("NOAUTH Authentication required: send AUTH <token> first", t0)
		return false
	}
	c.fail(fmt.Sprintf("NOPERM token %q has scopes %s; %s needs %s", c.name, c.scope, cmd, want), t0)
	return false
}

func (c *conn) arity(cmd string, t0 time.Time) {
	c.fail(fmt.Sprintf("wrong number of arguments for '%s' command", cmd), t0)
}

// checkKey answers an error for any key but the collection.
func (c *conn) checkKey(key []byte, t0 time.Time) bool {
	if string(key) == c.s.key {
		return true
	}
	c.fail(fmt.Sprintf("key not found: this server has one collection, %q (not %q)", c.s.key, clip(key)), t0)
	return false
}

// Replies in both output modes. JSON replies are bulk strings, as
// Tile38 sends them.

func (c *conn) ok(t0 time.Time) {
	if !c.json {
		c.out = append(c.out, "+OK\r\n"...)
		return
	}
	c.tmp = append(c.tmp[:0], `{"ok":true`...)
	c.endJSON(t0)
}

func (c *conn) fail(msg string, t0 time.Time) {
	if !c.json {
		c.out = AppendError(c.out, msg)
		return
	}
	c.tmp = append(c.tmp[:0], `{"ok":false,"err":`...)
	c.tmp = wire.AppendString(c.tmp, msg)
	c.endJSON(t0)
}

// endJSON closes the JSON reply in c.tmp with the elapsed time and
// appends it to the replies.
func (c *conn) endJSON(t0 time.Time) {
	c.tmp = append(c.tmp, `,"elapsed":"`...)
	c.tmp = append(c.tmp, time.Since(t0).String()...)
	c.tmp = append(c.tmp, `"}`...)
	c.out = AppendBulk(c.out, c.tmp)
}

func (c *conn) ping(args [][]byte, t0 time.Time) {
	switch {
	case len(args) > 2:
		c.arity("ping", t0)
	case c.json:
		c.tmp = append(c.tmp[:0], `{"ok":true,"ping":"pong"`...)
		c.endJSON(t0)
	case len(args) == 2:
		c.out = AppendBulk(c.out, args[1])
	default:
		c.out = append(c.out, "+PONG\r\n"...)
	}
}

// auth is AUTH <token> or AUTH <user> <token> (the user is ignored: a
// token names itself).
func (c *conn) auth(args [][]byte, t0 time.Time) {
	if len(args) != 2 && len(args) != 3 {
		c.arity("auth", t0)
		return
	}
	if c.s.keys == nil {
		c.fail("AUTH called, but this server runs without tokens (no --token-file)", t0)
		return
	}
	tok := args[len(args)-1]
	scope, name, ok := c.s.keys.Lookup(str(tok))
	if !ok {
		c.authFails++
		c.s.counters.authFailures.Add(1)
		c.s.warn("auth", "resp: AUTH with an unknown token", "remote", c.nc.RemoteAddr().String(), "failures_total", c.s.counters.authFailures.Load())
		c.token, c.scope, c.name = "", 0, ""
		c.fail("WRONGPASS invalid token", t0)
		if c.authFails >= maxAuthFails {
			c.quit = true
		}
		return
	}
	c.token, c.scope, c.name, c.authFails = string(tok), scope, name, 0
	c.ok(t0)
}

func (c *conn) output(args [][]byte, t0 time.Time) {
	switch {
	case len(args) == 1 && c.json:
		c.tmp = append(c.tmp[:0], `{"ok":true,"output":"json"`...)
		c.endJSON(t0)
	case len(args) == 1:
		c.out = AppendBulkString(c.out, "resp")
	case len(args) != 2:
		c.arity("output", t0)
	case is(args[1], "JSON"):
		c.json = true
		c.ok(time.Now()) // t0 was not taken in RESP mode
	case is(args[1], "RESP"):
		c.json = false
		c.ok(t0)
	default:
		c.fail(fmt.Sprintf("invalid OUTPUT %q: want json or resp", clip(args[1])), t0)
	}
}

// pow10 holds the powers of ten that are exact in a float64.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// fastFloat parses [-]digits[.digits] with at most 15 digits in all: the
// mantissa and the power of ten are then exact float64s, so one division
// is correctly rounded and gives strconv.ParseFloat's result (its own
// exact fast path). Coordinates in SETs are such numbers; ParseFloat was
// 22% of a pipelined SET's server CPU (BenchmarkRESPIngest profile).
func fastFloat(b []byte) (float64, bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		i, neg = 1, true
	}
	var m uint64
	digits, frac, dot := 0, 0, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			m = m*10 + uint64(c-'0')
			digits++
			if dot {
				frac++
			}
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
	}
	if digits == 0 || digits > 15 || dot && frac == 0 {
		return 0, false
	}
	v := float64(m) / pow10[frac]
	if neg {
		v = -v
	}
	return v, true
}

// parseFloat parses a finite number for an error message naming what.
func parseFloat(b []byte, what string) (float64, string) {
	if v, ok := fastFloat(b); ok {
		return v, ""
	}
	v, err := strconv.ParseFloat(str(b), 64)
	var ne *strconv.NumError
	if err != nil && !(errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange)) {
		return 0, fmt.Sprintf("%s %q is not a number", what, clip(b))
	}
	if math.IsNaN(v) || math.IsInf(v, 0) && err == nil {
		return 0, fmt.Sprintf("%s %q is not a finite number", what, clip(b))
	}
	return v, "" // ±Inf from an overflow fails every range check
}

// parseLatLon parses and checks a point.
func parseLatLon(latb, lonb []byte) (lat, lon float64, msg string) {
	if lat, msg = parseFloat(latb, "lat"); msg != "" {
		return
	}
	if !(lat >= -90 && lat <= 90) {
		return 0, 0, fmt.Sprintf("lat %s out of range [-90, 90]", clip(latb))
	}
	if lon, msg = parseFloat(lonb, "lon"); msg != "" {
		return
	}
	if !(lon >= -180 && lon <= 180) {
		return 0, 0, fmt.Sprintf("lon %s out of range [-180, 180]", clip(lonb))
	}
	return lat, lon, ""
}

// parseMeters parses a positive, finite radius.
func parseMeters(b []byte) (float64, string) {
	m, msg := parseFloat(b, "meters")
	if msg == "" && !(m > 0 && !math.IsInf(m, 0)) {
		msg = fmt.Sprintf("meters %s must be a positive, finite number", clip(b))
	}
	return m, msg
}

// parseCount parses a whole number in [lo, hi].
func parseCount(b []byte, what string, lo, hi int) (int, string) {
	n, err := strconv.Atoi(str(b))
	if err != nil || n < lo || n > hi {
		return 0, fmt.Sprintf("%s %q: want a whole number from %d to %d", what, clip(b), lo, hi)
	}
	return n, ""
}

// set is SET key id [FIELD name value]… POINT lat lon [ts]. A valid SET
// joins the pending batch; its reply comes once the batch is applied.
func (c *conn) set(args [][]byte, t0 time.Time) {
	if msg := c.parseSet(args); msg != "" {
		c.applyPending()
		c.fail(msg, t0)
		return
	}
	if len(c.pending) == 1 {
		c.started = t0
	}
}

// parseSet appends the SET's update to c.pending, or returns why not.
func (c *conn) parseSet(args [][]byte) string {
	if len(args) < 3 {
		return "wrong number of arguments for 'set' command"
	}
	if string(args[1]) != c.s.key {
		return fmt.Sprintf("key not found: this server has one collection, %q (not %q)", c.s.key, clip(args[1]))
	}
	id := args[2]
	if !fleet.ValidID(id) {
		return fmt.Sprintf("invalid id %q: must be 1-%d bytes of [A-Za-z0-9_.:-]", clip(id), fleet.MaxIDLen)
	}
	var (
		speed, heading float64
		attrs          fleet.Attrs
		point          = false
		lat, lon       float64
		ts             int64
		millis         bool
	)
	for i := 3; i < len(args); {
		a := args[i]
		switch {
		case is(a, "FIELD"):
			if i+2 >= len(args) {
				return "SET FIELD needs a name and a value"
			}
			name := args[i+1]
			v, msg := parseFloat(args[i+2], "FIELD "+clip(name))
			if msg != "" {
				return msg
			}
			switch {
			case is(name, "SPEED"):
				if !(v >= 0 && v <= ingest.MaxSpeed) {
					return fmt.Sprintf("FIELD speed %s out of range [0, %d] km/h", clip(args[i+2]), ingest.MaxSpeed)
				}
				speed = v
			case is(name, "HEADING"):
				if !(v >= 0 && v < 360) {
					return fmt.Sprintf("FIELD heading %s out of range [0, 360) degrees", clip(args[i+2]))
				}
				heading = v
			default:
				at, ok := fleet.AttrByName(name)
				if !ok {
					return fmt.Sprintf("FIELD %q is not one fleetd keeps: speed, heading, %s", clip(name), attrNames())
				}
				x, ok := at.Fixed(v)
				if !ok {
					return fmt.Sprintf("FIELD %s %s out of range", at.Name(), clip(args[i+2]))
				}
				attrs.Set(at, x)
			}
			i += 3
		case is(a, "POINT"):
			rest := len(args) - i - 1
			if rest != 2 && rest != 3 {
				return "SET POINT takes lat lon [ts] and ends the command"
			}
			var msg string
			if lat, lon, msg = parseLatLon(args[i+1], args[i+2]); msg != "" {
				return msg
			}
			if c.now == 0 {
				c.now = c.s.now().Unix() // once per read
			}
			now := c.now
			ts = now
			if rest == 3 {
				if ts, millis, msg = c.parseTS(args[i+3], now); msg != "" {
					return msg
				}
			}
			point = true
			i = len(args)
		case is(a, "EX"), is(a, "NX"), is(a, "XX"), is(a, "OBJECT"), is(a, "BOUNDS"), is(a, "HASH"), is(a, "STRING"):
			return fmt.Sprintf("SET option %s is not supported by fleetd: use SET key id [FIELD name value]... POINT lat lon [ts]", clip(a))
		default:
			return fmt.Sprintf("SET: unexpected %q: use SET key id [FIELD name value]... POINT lat lon [ts]", clip(a))
		}
	}
	if !point {
		return "SET needs POINT lat lon [ts]: fleetd stores points only"
	}
	if millis {
		c.s.counters.millis.Add(1)
	}
	u := fleet.Update{ID: id, Position: fleet.MakePosition(lat, lon, ts, speed, heading), Attrs: attrs}
	if !u.Position.Valid() {
		return "BUG: resp: position out of range after the checks" // every field was checked above
	}
	c.pending = append(c.pending, u)
	return ""
}

func attrNames() string {
	s := ""
	for a := range fleet.Attr(fleet.NumAttrs) {
		if s != "" {
			s += ", "
		}
		s += a.Name()
	}
	return s
}

// parseTS reads POINT's third value: Unix seconds, or milliseconds from
// 1e11 (converted), at most MaxClockSkew ahead of now, as HTTP's ts.
func (c *conn) parseTS(b []byte, now int64) (ts int64, millis bool, msg string) {
	ts, ok := fastInt(b)
	var err error
	if !ok {
		ts, err = strconv.ParseInt(str(b), 10, 64)
	}
	if err != nil {
		return 0, false, fmt.Sprintf("ts %q is not a whole number of Unix seconds (fleetd reads POINT's third value as the ts, not as z)", clip(b))
	}
	if ts >= ingest.MinMillis && ts < ingest.MaxMillis {
		ts, millis = ts/1000, true
	}
	if ts < ingest.MinTS || ts > ingest.MaxTS {
		return 0, false, fmt.Sprintf("ts %s out of range [%d, %d]", clip(b), ingest.MinTS, int64(ingest.MaxTS))
	}
	if c.s.maxAhead > 0 && ts-now > c.s.maxAhead {
		c.s.counters.future.Add(1)
		return 0, false, fmt.Sprintf("ts %s is %v ahead of the server clock (max %v)",
			time.Unix(ts, 0).UTC().Format(time.RFC3339), time.Duration(ts-now)*time.Second, time.Duration(c.s.maxAhead)*time.Second)
	}
	return ts, millis, ""
}

// fastInt parses 1 to 18 ASCII digits (no sign), as every real ts is; ok
// false for anything else, which strconv.ParseInt then judges. ParseInt
// was 5% of a pipelined SET's server CPU (BenchmarkRESPIngest profile).
func fastInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, d := range b {
		d -= '0'
		if d > 9 {
			return 0, false
		}
		v = v*10 + int64(d)
	}
	return v, true
}

// applyPending applies the pending SETs as one engine batch and answers
// each: +OK once the batch is durable, or the error.
func (c *conn) applyPending() {
	n := len(c.pending)
	if n == 0 {
		return
	}
	t0 := c.started
	res, err := c.s.eng.Apply(c.pending)
	c.s.counters.batches.Add(1)
	switch {
	case errors.Is(err, engine.ErrClosed):
		for range n {
			c.fail("the server is shutting down; not applied", t0)
		}
	case err != nil:
		msg := "could not apply durably; not applied: " + err.Error()
		for range n {
			c.fail(msg, t0)
		}
	case res.Refused > 0:
		// The store does not say which were refused: new trucks past
		// the memory cap. Those are the ones it does not hold now.
		c.s.counters.sets.Add(int64(n - res.Refused))
		for i := range c.pending {
			if _, ok := c.s.st.Get(c.pending[i].ID); ok {
				c.ok(t0)
			} else {
				c.fail("new truck refused: the server is at its memory limit (known trucks keep updating)", t0)
			}
		}
	default:
		c.s.counters.sets.Add(int64(n))
		if !c.json {
			for range n {
				c.out = append(c.out, "+OK\r\n"...)
			}
		} else {
			for range n {
				c.ok(t0)
			}
		}
	}
	clear(c.pending)          // drop the IDs' references to the read buffer
	c.pending = c.pending[:0] // at most one read buffer's SETs: dropped with it when the pipeline drains
}

// get is GET key id [WITHFIELDS] [OBJECT|POINT].
func (c *conn) get(args [][]byte, t0 time.Time) {
	if len(args) < 3 || len(args) > 5 {
		c.arity("get", t0)
		return
	}
	if !c.checkKey(args[1], t0) {
		return
	}
	withFields, asPoint := false, false
	for _, a := range args[3:] {
		switch {
		case is(a, "WITHFIELDS"):
			withFields = true
		case is(a, "POINT"):
			asPoint = true
		case is(a, "OBJECT"):
		case is(a, "BOUNDS"), is(a, "HASH"):
			c.fail(fmt.Sprintf("GET %s is not supported by fleetd: use OBJECT or POINT", clip(a)), t0)
			return
		default:
			c.fail(fmt.Sprintf("GET: unexpected %q: use GET key id [WITHFIELDS] [OBJECT|POINT]", clip(a)), t0)
			return
		}
	}
	id := args[2]
	var attrs fleet.Attrs
	var p fleet.Position
	found := fleet.ValidID(id)
	if found {
		p, found = c.s.st.GetAttrs(id, &attrs)
	}
	if !found {
		if c.json {
			c.fail("id not found", t0)
		} else {
			c.out = AppendNull(c.out)
		}
		return
	}
	if c.json {
		t := append(c.tmp[:0], `{"ok":true,`...)
		if asPoint {
			t = append(t, `"point":`...)
			t = appendJSONPoint(t, &p)
		} else {
			t = append(t, `"object":`...)
			t = appendGeoJSON(t, &p)
		}
		if withFields {
			t = append(t, `,"fields":{"ts":`...)
			t = strconv.AppendUint(t, uint64(p.TS), 10)
			t = append(t, `,"speed":`...)
			t = wire.AppendSpeed(t, p.Speed)
			t = append(t, `,"heading":`...)
			t = strconv.AppendUint(t, uint64(p.Heading), 10)
			t = append(wire.AppendAttrs(t, &attrs), '}')
		}
		c.tmp = t
		c.endJSON(t0)
		return
	}
	if withFields {
		c.out = AppendArray(c.out, 2)
	}
	if asPoint {
		c.out = c.appendRESPPoint(c.out, &p)
	} else {
		c.tmp = appendGeoJSON(c.tmp[:0], &p)
		c.out = AppendBulk(c.out, c.tmp)
	}
	if withFields {
		n := 3
		for a := range fleet.Attr(fleet.NumAttrs) {
			if attrs.Has(a) {
				n++
			}
		}
		c.out = AppendArray(c.out, 2*n)
		c.out = AppendBulkString(c.out, "ts")
		c.out = c.bulkNumber(c.out, strconv.AppendUint(c.tmp[:0], uint64(p.TS), 10))
		c.out = AppendBulkString(c.out, "speed")
		c.out = c.bulkNumber(c.out, wire.AppendSpeed(c.tmp[:0], p.Speed))
		c.out = AppendBulkString(c.out, "heading")
		c.out = c.bulkNumber(c.out, strconv.AppendUint(c.tmp[:0], uint64(p.Heading), 10))
		for a := range fleet.Attr(fleet.NumAttrs) {
			if v, ok := attrs.Get(a); ok {
				c.out = AppendBulkString(c.out, a.Name())
				c.out = c.bulkNumber(c.out, strconv.AppendFloat(c.tmp[:0], a.Float(v), 'f', -1, 64))
			}
		}
	}
}

// bulkNumber appends b (built in c.tmp) as a bulk string.
func (c *conn) bulkNumber(dst, b []byte) []byte {
	c.tmp = b
	return AppendBulk(dst, b)
}

// del is DEL key id: :1 when the truck existed (and its removal is
// durable), :0 when not.
func (c *conn) del(args [][]byte, t0 time.Time) {
	if len(args) != 3 {
		c.arity("del", t0)
		return
	}
	if !c.checkKey(args[1], t0) {
		return
	}
	id := args[2]
	found := false
	if fleet.ValidID(id) {
		var err error
		found, err = c.s.eng.Delete(id)
		switch {
		case errors.Is(err, engine.ErrClosed):
			c.fail("the server is shutting down; not deleted", t0)
			return
		case err != nil:
			c.fail("could not delete durably; not deleted: "+err.Error(), t0)
			return
		}
	}
	switch {
	case !c.json && found:
		c.out = AppendInt(c.out, 1)
	case !c.json:
		c.out = AppendInt(c.out, 0)
	case found:
		c.ok(t0)
	default:
		c.fail("id not found", t0)
	}
}

// appendGeoJSON appends {"type":"Point","coordinates":[lon,lat]}.
func appendGeoJSON(dst []byte, p *fleet.Position) []byte {
	dst = append(dst, `{"type":"Point","coordinates":[`...)
	dst = wire.AppendCoord(dst, p.Lon)
	dst = append(dst, ',')
	dst = wire.AppendCoord(dst, p.Lat)
	return append(dst, "]}"...)
}

// appendJSONPoint appends {"lat":…,"lon":…}.
func appendJSONPoint(dst []byte, p *fleet.Position) []byte {
	dst = append(dst, `{"lat":`...)
	dst = wire.AppendCoord(dst, p.Lat)
	dst = append(dst, `,"lon":`...)
	dst = wire.AppendCoord(dst, p.Lon)
	return append(dst, '}')
}

// appendRESPPoint appends the array [lat, lon] of bulk strings.
func (c *conn) appendRESPPoint(dst []byte, p *fleet.Position) []byte {
	dst = AppendArray(dst, 2)
	c.tmp = wire.AppendCoord(c.tmp[:0], p.Lat)
	dst = AppendBulk(dst, c.tmp)
	c.tmp = wire.AppendCoord(c.tmp[:0], p.Lon)
	return AppendBulk(dst, c.tmp)
}

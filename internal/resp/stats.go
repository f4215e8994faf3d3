package resp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// keyStats is STATS key [key…]: per key, Tile38's figures.
func (c *conn) keyStats(args [][]byte, t0 time.Time) {
	if len(args) < 2 {
		c.arity("stats", t0)
		return
	}
	for _, k := range args[1:] {
		if !c.checkKey(k, t0) {
			return
		}
	}
	st := c.s.st.Stats()
	figures := [...]struct {
		name string
		v    int64
	}{
		{"in_memory_size", st.Total},
		{"num_objects", int64(st.Trucks)},
		{"num_points", int64(st.Trucks)},
		{"num_strings", 0},
	}
	if c.json {
		t := append(c.tmp[:0], `{"ok":true,"stats":[`...)
		for i := range args[1:] {
			if i > 0 {
				t = append(t, ',')
			}
			t = append(t, '{')
			for j, f := range figures {
				if j > 0 {
					t = append(t, ',')
				}
				t = strconv.AppendQuote(t, f.name)
				t = append(t, ':')
				t = strconv.AppendInt(t, f.v, 10)
			}
			t = append(t, '}')
		}
		c.tmp = append(t, ']')
		c.endJSON(t0)
		return
	}
	c.out = AppendArray(c.out, len(args)-1)
	for range args[1:] {
		c.out = AppendArray(c.out, 2*len(figures))
		for _, f := range figures {
			c.out = AppendBulkString(c.out, f.name)
			c.out = AppendInt(c.out, f.v)
		}
	}
}

// statsJSON is the server-wide figures: /v1/stats's object (or the
// engine's own) with this server's counters added as "resp".
func (c *conn) statsJSON() []byte {
	var b []byte
	if c.s.stats != nil {
		b = c.s.stats()
	} else {
		es := c.s.eng.Stats()
		var err error
		b, err = json.Marshal(map[string]any{
			"trucks": es.Store.Trucks, "updates_total": es.UpdatesTotal, "updates_per_sec": es.UpdatesPerSec,
			"uptime_s": es.Uptime.Seconds(), "memory": map[string]any{"store": es.Store.Total, "bytes_per_truck": es.Store.BytesPerTruck},
		})
		if err != nil {
			panic("BUG: resp: marshalling engine stats: " + err.Error())
		}
	}
	b = bytes.TrimSpace(b)
	if len(b) < 2 || b[len(b)-1] != '}' {
		return b
	}
	rs := c.s.Stats()
	extra := fmt.Sprintf(`"resp":{"connections":%d,"connections_accepted":%d,"connections_refused":%d,"commands":%d,"sets":%d,"set_batches":%d,"protocol_errors":%d,"auth_failures":%d,"rejected_future_total":%d,"ts_milliseconds_total":%d}`,
		rs.Connections, rs.Accepted, rs.Refused, rs.Commands, rs.Sets, rs.Batches, rs.ProtocolErrors, rs.AuthFailures, rs.FutureTS, rs.MillisTS)
	out := append([]byte(nil), b[:len(b)-1]...)
	if len(b) > 2 {
		out = append(out, ',')
	}
	out = append(out, extra...)
	return append(out, '}')
}

// server is SERVER: the figures of /v1/stats. JSON: {"ok":true,"stats":{…}};
// RESP: a flat array of name, value pairs (nested names joined by '.').
func (c *conn) server(args [][]byte, t0 time.Time) {
	if len(args) > 2 { // SERVER [EXT] in Tile38: the same here
		c.arity("server", t0)
		return
	}
	b := c.statsJSON()
	if c.json {
		t := append(c.tmp[:0], `{"ok":true,"stats":`...)
		c.tmp = append(t, b...)
		c.endJSON(t0)
		return
	}
	kvs := flatten(b)
	c.out = AppendArray(c.out, 2*len(kvs))
	for _, kv := range kvs {
		c.out = AppendBulkString(c.out, kv[0])
		c.out = AppendBulkString(c.out, kv[1])
	}
}

// info is INFO [section]: the same figures as Redis-style text,
// "name:value" lines under "# fleetd".
func (c *conn) info(args [][]byte, t0 time.Time) {
	if len(args) > 2 {
		c.arity("info", t0)
		return
	}
	kvs := flatten(c.statsJSON())
	if c.json {
		t := append(c.tmp[:0], `{"ok":true,"info":{`...)
		for i, kv := range kvs {
			if i > 0 {
				t = append(t, ',')
			}
			t = strconv.AppendQuote(t, kv[0])
			t = append(t, ':')
			t = append(t, kv[1]...) // numbers and booleans as they were; strings are re-quoted by flatten
		}
		c.tmp = append(t, '}')
		c.endJSON(t0)
		return
	}
	t := append(c.tmp[:0], "# fleetd\r\n"...)
	for _, kv := range kvs {
		t = append(t, kv[0]...)
		t = append(t, ':')
		v := kv[1]
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		t = append(t, v...)
		t = append(t, '\r', '\n')
	}
	c.tmp = t
	c.out = AppendBulk(c.out, t)
}

// flatten turns a JSON object into name, value pairs in order: nested
// objects' names joined with '.', other values as JSON text (strings
// quoted). Malformed input yields what was read before the fault.
func flatten(b []byte) [][2]string {
	d := json.NewDecoder(bytes.NewReader(b))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out [][2]string
	for d.More() {
		t, err := d.Token()
		if err != nil {
			break
		}
		name, _ := t.(string)
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			break
		}
		if len(raw) > 0 && raw[0] == '{' {
			for _, kv := range flatten(raw) {
				out = append(out, [2]string{name + "." + kv[0], kv[1]})
			}
			continue
		}
		out = append(out, [2]string{name, string(raw)})
	}
	return out
}

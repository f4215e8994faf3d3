package ingest

import (
	"bytes"
	"math"
	"unsafe"

	"github.com/fleetd/fleetd/internal/fleet"
)

// Limits of the POST /v1/positions contract; see doc.go.
const (
	MaxErrors         = 100            // rejected lines listed in Report.Errors (all are counted)
	MaxUnknown        = 20             // distinct unknown field names kept in Report.Unknown
	MaxUnknownNameLen = 64             // longer unknown names are cut to this many bytes plus "..."
	MaxDepth          = 32             // nesting limit counted from the update object (depth 1)
	MaxIDLen          = 64             // bytes in an ID
	MinTS             = 1              // smallest accepted ts (Unix seconds)
	MaxTS             = math.MaxUint32 // largest accepted ts; positions are stored as uint32 seconds
	MaxSpeed          = 1000           // km/h

	// A numeric ts in [MinMillis, MaxMillis) cannot be Unix seconds (it
	// would be after the year 5138, past MaxTS) and is what phones and
	// trackers send as milliseconds (1973 to 5138): it is divided by 1000,
	// truncating.
	MinMillis = 100_000_000_000
	MaxMillis = 100_000_000_000_000
)

// Update is one validated position update: 72 bytes, the ID slice header
// being its only pointer. It is transient decode output; the engine copies
// what it keeps into its own pointer-free columns.
//
// ID aliases either the body passed to Decode* (when the JSON string had no
// escapes) or the Decoder's scratch arena; it is valid only until the next
// Decode*/Reset call on the same Decoder and must be copied to be kept.
type Update struct {
	ID      []byte
	Lat     float64     // degrees, [-90, 90]
	Lon     float64     // degrees, [-180, 180]
	TS      int64       // Unix seconds, [MinTS, MaxTS]; the decoder's now if absent
	Speed   float64     // km/h, [0, MaxSpeed]; 0 if absent
	Heading float64     // degrees, [0, 360); 0 if absent
	Attrs   fleet.Attrs // optional attributes present in the object, in range
}

// LineError says why one line (NDJSON) or element (JSON array) was rejected.
// Line is 1-based: the physical line number in an NDJSON body, counting blank
// lines, or the element index in a JSON array.
type LineError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// Report summarises one decoded body.
type Report struct {
	Accepted int         `json:"accepted"`
	Rejected int         `json:"rejected"`
	Future   int         `json:"-"`                        // of Rejected: ts more than MaxAhead ahead of now
	Millis   int         `json:"-"`                        // of Accepted: ts given in milliseconds, converted
	Errors   []LineError `json:"errors,omitempty"`         // the first MaxErrors rejections
	Unknown  []string    `json:"unknown_fields,omitempty"` // unknown field names, first-seen order, at most MaxUnknown
}

// Decoder decodes position bodies. The zero value is ready to use. A Decoder
// is not safe for concurrent use; keep one per goroutine or in a sync.Pool.
// The slices it returns are owned by it and overwritten by the next call.
type Decoder struct {
	// MaxAhead, when > 0, is how many seconds a ts may be ahead of the
	// decoder's now; later ones are rejected (a device whose clock runs
	// ahead would otherwise freeze its truck: latest wins by ts). Zero
	// means no limit.
	MaxAhead int64

	// Sink, when set, receives each accepted update in body order instead
	// of the returned slice collecting it (that slice then stays empty):
	// for callers that convert every update anyway and need not hold two
	// copies of a large batch. *u is valid during the call; u.ID follows
	// the same aliasing rule as returned updates.
	Sink func(u *Update)
	sunk Update // the update handed to Sink

	updates []Update
	report  Report
	arena   []byte   // unescaped IDs of this call's updates
	keyBuf  []byte   // unescaped object key
	tsBuf   []byte   // unescaped ts string
	nameBuf []byte   // shortened unknown field name
	names   []string // unknown names allocated by earlier calls, reused so a recurring name costs nothing
	now     int64
	line    int  // NDJSON: lines consumed so far
	array   bool // decoding a JSON array: positions in messages are body offsets
	obj     object
	err     syntaxError
}

// Retention limits for Reset: a pooled Decoder that once decoded a huge body
// gives its big buffers back to the garbage collector.
const (
	retainUpdates = 1 << 20 / int(unsafe.Sizeof(Update{})) // 1 MiB: 16384 updates of 64 B
	retainArena   = 1 << 16                                // bytes of escaped IDs
	retainNames   = 256                                    // interned unknown names
)

// DecodeNDJSON decodes an application/x-ndjson body: one update object per
// line. now is the default ts. It never fails as a whole; per-line problems
// are in the Report. The results are valid until the next call on d.
func (d *Decoder) DecodeNDJSON(body []byte, now int64) ([]Update, *Report) {
	d.BeginNDJSON(now)
	d.DecodeLines(body)
	return d.updates, &d.report
}

// BeginNDJSON starts an NDJSON body that arrives in pieces, for callers
// that read a large body a piece at a time rather than holding all of it:
// BeginNDJSON, then DecodeLines for each piece in order, then Report.
// DecodeNDJSON(body) is the same as one piece holding the whole body.
func (d *Decoder) BeginNDJSON(now int64) {
	d.begin(now, false)
	d.line = 0
}

// DecodeLines decodes the next piece of the body started by BeginNDJSON.
// Every piece but the last must end with '\n', so that no line is split
// between two pieces; line numbers in the report continue from the
// previous piece. IDs of updates from a piece (in the returned slice or
// handed to Sink) may alias that piece, so a caller that reuses the
// piece's memory must copy them first.
func (d *Decoder) DecodeLines(body []byte) {
	for len(body) > 0 {
		d.line++
		line := d.line
		var s []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			s, body = body[:i], body[i+1:]
		} else {
			s, body = body, nil
		}
		if n := len(s); n > 0 && s[n-1] == '\r' {
			s = s[:n-1] // CRLF; also keeps messages about truncated lines the same
		}
		i := skipWS(s, 0)
		if i == len(s) {
			continue // blank line: skipped, not counted
		}
		if s[i] != '{' {
			d.rejectNotObject(s, i, line)
			continue
		}
		if end := d.decodeObject(s, i, line); end >= 0 {
			if end = skipWS(s, end); end != len(s) {
				d.arena = d.arena[:d.obj.mark]
				d.syntax(end, "unexpected data after object", true)
				d.rejectSyntax(s, line)
				continue
			}
			d.finish(s, line)
		}
	}
}

// Report is the report of the body decoded since BeginNDJSON, valid
// until the next call on d.
func (d *Decoder) Report() *Report { return &d.report }

// DecodeArray decodes an application/json body: a JSON array of update
// objects. Each element is judged like an NDJSON line. If the array itself is
// malformed, the elements before the fault stand and the rest of the body is
// one rejected entry. The results are valid until the next call on d.
func (d *Decoder) DecodeArray(body []byte, now int64) ([]Update, *Report) {
	d.begin(now, true)
	s := body
	i := skipWS(s, 0)
	if i == len(s) {
		d.syntax(i, "empty body, expected a JSON array", false)
		d.rejectSyntax(s, 1)
		return d.updates, &d.report
	}
	if s[i] != '[' {
		d.syntax(i, "expected '[' to start a JSON array", true)
		d.rejectSyntax(s, 1)
		return d.updates, &d.report
	}
	n := 0 // elements judged so far
	if i = skipWS(s, i+1); i < len(s) && s[i] == ']' {
		i++
	} else {
		for {
			n++
			switch {
			case i < len(s) && s[i] == '{':
				if i = d.decodeObject(s, i, n); i < 0 {
					return d.updates, &d.report // rejected: the rest of the body is this entry
				}
				d.finish(s, n)
			default:
				end := d.skipValue(s, i, 0)
				if end < 0 {
					d.rejectSyntax(s, n)
					return d.updates, &d.report
				}
				d.rejectNotObject(s, i, n)
				i = end
			}
			i = skipWS(s, i)
			if i < len(s) && s[i] == ',' {
				i = skipWS(s, i+1)
				continue
			}
			if i < len(s) && s[i] == ']' {
				i++
				break
			}
			d.syntax(i, "expected ',' or ']' after array element", true)
			d.rejectSyntax(s, n+1)
			return d.updates, &d.report
		}
	}
	if i = skipWS(s, i); i != len(s) {
		d.syntax(i, "unexpected data after array", true)
		d.rejectSyntax(s, n+1)
	}
	return d.updates, &d.report
}

// Reset drops every reference the Decoder holds into the last body, and gives
// back buffers grown by unusually large bodies. Call it before putting a
// Decoder back into a pool. Results of earlier calls become invalid.
func (d *Decoder) Reset() {
	clear(d.updates[:cap(d.updates)])
	d.updates = d.updates[:0]
	if cap(d.updates) > retainUpdates {
		d.updates = nil
	}
	clear(d.report.Errors[:cap(d.report.Errors)])
	d.report = Report{Errors: d.report.Errors[:0], Unknown: d.report.Unknown[:0]}
	clear(d.report.Unknown[:cap(d.report.Unknown)])
	if cap(d.arena) > retainArena {
		d.arena = nil
	}
	d.arena = d.arena[:0]
	d.obj = object{}
	d.err = syntaxError{}
}

func (d *Decoder) begin(now int64, array bool) {
	d.updates = d.updates[:0]
	d.report = Report{Errors: d.report.Errors[:0], Unknown: d.report.Unknown[:0]}
	d.arena = d.arena[:0]
	d.now = now
	d.array = array
}

// noteUnknown records the name of an unknown field.
func (d *Decoder) noteUnknown(key []byte) {
	name := key
	if len(name) > MaxUnknownNameLen {
		n := MaxUnknownNameLen
		for n > 0 && name[n]&0xC0 == 0x80 { // back up to a rune start
			n--
		}
		d.nameBuf = append(append(d.nameBuf[:0], name[:n]...), "..."...)
		name = d.nameBuf
	}
	u := d.report.Unknown
	for _, s := range u {
		if s == string(name) {
			return
		}
	}
	if len(u) >= MaxUnknown {
		return
	}
	d.report.Unknown = append(u, d.intern(name))
}

// intern returns name as a string, reusing one allocated by an earlier call.
func (d *Decoder) intern(name []byte) string {
	for _, s := range d.names {
		if s == string(name) {
			return s
		}
	}
	s := string(name)
	if len(d.names) < retainNames {
		d.names = append(d.names, s)
	}
	return s
}

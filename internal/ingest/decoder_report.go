package ingest

import (
	"fmt"
	"strconv"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// syntaxError is the first lexical or structural fault in an entry. msg is
// a constant so that recording an error never allocates; the message is
// only formatted when the rejection is listed in Report.Errors.
type syntaxError struct {
	pos   int    // offset in the text being decoded (line or body)
	msg   string // what was expected or what is wrong
	found bool   // append what was found at pos
	deep  bool   // nesting limit exceeded rather than malformed JSON
}

// syntax records a syntax error at pos and returns -1 for the caller to
// propagate.
func (d *Decoder) syntax(pos int, msg string, found bool) int {
	d.err = syntaxError{pos: pos, msg: msg, found: found}
	return -1
}

func (d *Decoder) tooDeep(pos int) int {
	d.err = syntaxError{pos: pos, deep: true}
	return -1
}

// reason classifies a field-level rejection.
type reason uint8

const (
	rMissing reason = iota // required field absent
	rType                  // wrong JSON type (or null for a required field)
	rRange                 // value outside its range
	rInvalid               // id charset/length, or ts string not RFC 3339
	rNow                   // ts absent and the decoder's now is out of range
	rFuture                // ts further ahead of now than MaxAhead
)

// listing reports whether the next rejection's message will be kept.
func (d *Decoder) listing() bool { return len(d.report.Errors) < MaxErrors }

func (d *Decoder) reject(line int, msg string) {
	d.report.Errors = append(d.report.Errors, LineError{Line: line, Error: msg})
}

// rejectSyntax rejects line with the recorded syntax error; s is the text
// d.err.pos refers to.
func (d *Decoder) rejectSyntax(s []byte, line int) {
	d.report.Rejected++
	if !d.listing() {
		return
	}
	e := &d.err
	where := fmt.Sprintf("column %d", e.pos+1)
	if d.array {
		where = fmt.Sprintf("offset %d", e.pos)
	}
	var msg string
	switch {
	case e.deep:
		msg = fmt.Sprintf("nesting deeper than %d levels at %s", MaxDepth, where)
	case e.found:
		msg = fmt.Sprintf("invalid JSON at %s: %s, found %s", where, e.msg, d.describe(s, e.pos))
	default:
		msg = fmt.Sprintf("invalid JSON at %s: %s", where, e.msg)
	}
	d.reject(line, msg)
}

// describe names what is at s[pos] for a syntax error message.
func (d *Decoder) describe(s []byte, pos int) string {
	switch {
	case pos >= len(s) && d.array:
		return "end of input"
	case pos >= len(s):
		return "end of line"
	case s[pos] > ' ' && s[pos] < 0x7f:
		return strconv.QuoteRune(rune(s[pos]))
	case s[pos] == ' ':
		return "space"
	default:
		return fmt.Sprintf("byte 0x%02X", s[pos])
	}
}

// rejectNotObject rejects line whose value at s[i] is not an object.
func (d *Decoder) rejectNotObject(s []byte, i, line int) {
	var kind string
	switch c := s[i]; {
	case c == '[':
		kind = "array"
	case c == '"':
		kind = "string"
	case c == '-' || isDigit(c):
		kind = "number"
	case c == 't' || c == 'f':
		kind = "boolean"
	case c == 'n':
		kind = "null"
	default:
		d.syntax(i, "expected '{' to start an update object", true)
		d.rejectSyntax(s, line)
		return
	}
	d.report.Rejected++
	if d.listing() {
		d.reject(line, "expected a JSON object, found "+kind)
	}
}

// rangeText is the accepted range of each numeric field, as printed.
var rangeText = func() (r [numFields]string) {
	copy(r[:], []string{
		fLat:     "[-90, 90]",
		fLon:     "[-180, 180]",
		fTS:      "[1, 4294967295]",
		fSpeed:   "[0, 1000]",
		fHeading: "[0, 360)",
	})
	for a := range fleet.Attr(fleet.NumAttrs) {
		r[fAttr+field(a)] = fmt.Sprintf("[%g, %g]", a.Float(a.Min()), a.Float(a.Max()))
	}
	return r
}()

// rejectField rejects line for reason why about field f of d.obj.
func (d *Decoder) rejectField(s []byte, line int, f field, why reason) {
	d.arena = d.arena[:d.obj.mark]
	d.report.Rejected++
	if !d.listing() {
		return
	}
	v := &d.obj.vals[f]
	name := fieldName[f]
	var msg string
	switch why {
	case rMissing:
		msg = fmt.Sprintf("missing required field %q", name)
	case rType:
		switch f {
		case fID:
			msg = "id must be a string"
		case fTS:
			msg = "ts must be a number or an RFC 3339 string"
		default:
			msg = name + " must be a number"
		}
	case rRange:
		tok := token(s[v.start:v.end])
		switch {
		case f == fTS && s[v.start] == '"':
			msg = fmt.Sprintf("ts %s (Unix %d) out of range %s", tok, v.i, rangeText[f])
		case f == fTS && !v.overflow && v.i == 0:
			msg = fmt.Sprintf("ts %s out of range %s: 1970-01-01 is a device clock that is not set; omit ts to use the server's clock", tok, rangeText[f])
		case f == fTS && (v.overflow || v.i > MaxTS):
			msg = fmt.Sprintf("ts %s out of range %s: want Unix seconds, or milliseconds (%d to %d)", tok, rangeText[f], int64(MinMillis), int64(MaxTS)*1000+999)
		default:
			msg = fmt.Sprintf("%s %s out of range %s", name, tok, rangeText[f])
		}
	case rInvalid:
		if f == fID {
			id := d.obj.id
			if len(id) > MaxIDLen {
				msg = fmt.Sprintf("invalid id %q... (%d bytes): must be 1-%d bytes of [A-Za-z0-9_.:-]", id[:MaxIDLen], len(id), MaxIDLen)
			} else {
				msg = fmt.Sprintf("invalid id %q: must be 1-%d bytes of [A-Za-z0-9_.:-]", id, MaxIDLen)
			}
		} else {
			msg = fmt.Sprintf("invalid ts %s: must be Unix seconds or an RFC 3339 time", token(s[v.start:v.end]))
		}
	case rFuture:
		ahead := time.Duration(v.i-d.now) * time.Second
		msg = fmt.Sprintf("ts %s is %s ahead of the server clock (max %v): is the device's clock set?",
			time.Unix(v.i, 0).UTC().Format(time.RFC3339), aheadText(ahead), time.Duration(d.MaxAhead)*time.Second)
	case rNow:
		msg = fmt.Sprintf("ts missing and the server time %d is out of range %s", d.now, rangeText[fTS])
	}
	d.reject(line, msg)
}

// token returns a raw JSON token for a message, shortened if long.
func token(b []byte) string {
	const max = 40
	if len(b) > max {
		n := max
		for n > 0 && b[n]&0xC0 == 0x80 {
			n--
		}
		return string(b[:n]) + "..."
	}
	return string(b)
}

// aheadText prints how far a ts is ahead: whole days from two days on
// ("400 days"), otherwise a duration to the second ("1h2m3s").
func aheadText(d time.Duration) string {
	if d >= 48*time.Hour {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + " days"
	}
	return d.Round(time.Second).String()
}

package sink

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/geo"
)

// Event is what a sink delivers, as JSON (see doc.go, Events).
type Event struct {
	ID       string  `json:"id"`
	Kind     string  `json:"kind"`
	Truck    string  `json:"truck"`
	Rule     string  `json:"rule,omitempty"`
	Zone     string  `json:"zone,omitempty"` // zone.entered, zone.left (and a resolve of such a rule for another reason)
	Severity string  `json:"severity,omitempty"`
	TS       uint32  `json:"ts"`
	Since    uint32  `json:"since,omitempty"`
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	Reason   string  `json:"reason,omitempty"`

	// lat7, lon7 are Lat and Lon in 1e-7 degrees when fixed is set
	// (an event made from an alert or a position): appendJSON then
	// writes them without float formatting.
	lat7, lon7 int32
	fixed      bool
}

// alertKind is the event kind of an alert transition: a rule whose whole
// condition is inside("zone") fires as zone.entered and resolves, when an
// update takes the truck out, as zone.left; a resolve for another reason
// (truck deleted or expired, rule deleted or replaced) is alert.resolved,
// since the truck did not leave.
func alertKind(a *alert.Alert) string {
	switch {
	case a.State != alert.StateResolved && a.Zone != "":
		return KindEntered
	case a.State != alert.StateResolved:
		return KindFired
	case a.Zone != "" && a.Reason == "":
		return KindLeft
	}
	return KindResolved
}

// eventFromAlert is the event of an alert transition.
func eventFromAlert(a alert.Alert) Event {
	e := alertEvent(&a)
	e.ID = e.stableID()
	return e
}

// alertEvent is the event of an alert transition without its ID.
func alertEvent(a *alert.Alert) Event {
	return Event{Kind: alertKind(a), Truck: a.ID, Rule: a.Rule, Zone: a.Zone, Severity: a.Severity, TS: a.TS, Since: a.Since,
		Lat: geo.FromFixed(a.Lat), Lon: geo.FromFixed(a.Lon), Reason: a.Reason, lat7: a.Lat, lon7: a.Lon, fixed: true}
}

// stableID derives the event's ID from what identifies the transition
// (kind, rule, truck, since, ts, reason), so the same transition has the
// same ID wherever and whenever it is computed: 32 hex digits of a
// SHA-256.
func (e *Event) stableID() string {
	var id [idLen]byte
	return string(e.appendStableID(id[:0]))
}

// idLen is the length of an event ID: 128 bits in hex.
const idLen = 32

// appendStableID appends the event's stable ID (stableID) to dst. The
// hashed bytes are, for each of kind, rule, truck and reason, its
// length (u32, little-endian) and its bytes, then since and ts (u32
// each): gathered in a stack buffer and hashed at once (sha256.Sum256),
// without the hasher, the string slice and the hex string that
// sha256.New, a loop of Writes and hex.EncodeToString made (with the
// JSON buffer, Emit allocated twice an event before: TestEmitAllocs).
// TestStableIDModel checks the bytes against that streaming form.
func (e *Event) appendStableID(dst []byte) []byte {
	var arr [256]byte
	b := arr[:0]
	for _, s := range [...]string{e.Kind, e.Rule, e.Truck, e.Reason} {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = binary.LittleEndian.AppendUint32(b, e.Since)
	b = binary.LittleEndian.AppendUint32(b, e.TS)
	sum := sha256.Sum256(b)
	return hex.AppendEncode(dst, sum[:idLen/2])
}

// appendJSON appends the event as one JSON object. It writes the same
// bytes as encoding/json (TestEventJSON) without reflection.
func (e *Event) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, e.ID...)
	return e.appendJSONRest(dst)
}

// appendJSONStableID is appendJSON with the ID computed (stableID) and
// written in place, e.ID unused: Emit's form, which never makes the ID
// a string.
func (e *Event) appendJSONStableID(dst []byte) []byte {
	dst = append(dst, `{"id":"`...)
	dst = e.appendStableID(dst)
	return e.appendJSONRest(dst)
}

// appendJSONRest appends what follows the ID's digits.
func (e *Event) appendJSONRest(dst []byte) []byte {
	dst = append(dst, `","kind":"`...)
	dst = append(dst, e.Kind...)
	dst = append(dst, `","truck":`...)
	dst = appendString(dst, e.Truck)
	if e.Rule != "" {
		dst = append(dst, `,"rule":`...)
		dst = appendString(dst, e.Rule)
	}
	if e.Zone != "" {
		dst = append(dst, `,"zone":`...)
		dst = appendString(dst, e.Zone)
	}
	if e.Severity != "" {
		dst = append(dst, `,"severity":`...)
		dst = appendString(dst, e.Severity)
	}
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendUint(dst, uint64(e.TS), 10)
	if e.Since != 0 {
		dst = append(dst, `,"since":`...)
		dst = strconv.AppendUint(dst, uint64(e.Since), 10)
	}
	dst = append(dst, `,"lat":`...)
	if e.fixed {
		dst = appendFixed7(dst, e.lat7)
	} else {
		dst = strconv.AppendFloat(dst, e.Lat, 'f', -1, 64)
	}
	dst = append(dst, `,"lon":`...)
	if e.fixed {
		dst = appendFixed7(dst, e.lon7)
	} else {
		dst = strconv.AppendFloat(dst, e.Lon, 'f', -1, 64)
	}
	if e.Reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = appendString(dst, e.Reason)
	}
	return append(dst, '}')
}

// appendFixed7 appends v/1e7 in decimal, trailing zeros trimmed: the
// bytes strconv.AppendFloat(dst, geo.FromFixed(v), 'f', -1, 64) writes
// (geo.FromFixed divides by 1e7, correctly rounded, and a decimal of at
// most 10 significant digits is the shortest that reads back as that
// float64: no other of as few digits lies within its half ulp), without
// the shortest-float search, which was ~1.5% of the server's CPU with a
// dead sink (BenchmarkServeIngestSinkDead's profile). TestAppendFixed7.
func appendFixed7(dst []byte, v int32) []byte {
	u := int64(v)
	if u < 0 {
		dst = append(dst, '-')
		u = -u
	}
	dst = strconv.AppendInt(dst, u/1e7, 10)
	frac := u % 1e7
	if frac == 0 {
		return dst
	}
	var b [8]byte
	b[0] = '.'
	for i := 7; i >= 1; i-- {
		b[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := len(b)
	for b[n-1] == '0' {
		n--
	}
	return append(dst, b[:n]...)
}

// appendString appends s as a JSON string (invalid UTF-8 as U+FFFD, as
// encoding/json does; <, > and & escaped likewise).
func appendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// truckKey is the outbox ordering key of a truck: FNV-1a, stable across
// restarts (a key kept on disk must pick the same lane after one).
// Written out (hash/fnv's is the same function) so that no hasher is
// made an event.
func truckKey(id string) uint64 {
	const offset64, prime64 = 14695981039346656037, 1099511628211
	h := uint64(offset64)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= prime64
	}
	return h
}

// parseEvent decodes an event from an outbox record (for the dead-letter
// list and the senders' headers).
func parseEvent(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("sink: bad event in the outbox: %w", err)
	}
	if e.ID == "" || e.Kind == "" {
		return Event{}, errors.New("sink: bad event in the outbox: no id or kind")
	}
	return e, nil
}

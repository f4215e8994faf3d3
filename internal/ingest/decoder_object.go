package ingest

import (
	"bytes"
	"time"
	"unsafe"

	"github.com/fleetd/fleetd/internal/fleet"
)

// field identifies a known key of the update object.
type field uint8

const (
	fUnknown field = iota
	fID
	fLat
	fLon
	fTS
	fSpeed
	fHeading
	fAttr     // fAttr+a is optional attribute a (package fleet), a number
	numFields = fAttr + fleet.NumAttrs
)

var fieldName = func() (n [numFields]string) {
	copy(n[:], []string{fID: "id", fLat: "lat", fLon: "lon", fTS: "ts", fSpeed: "speed", fHeading: "heading"})
	for a := range fleet.Attr(fleet.NumAttrs) {
		n[fAttr+field(a)] = a.Name()
	}
	return n
}()

func fieldOf(key []byte) field {
	switch len(key) {
	case 2:
		if string(key) == "id" {
			return fID
		}
		if string(key) == "ts" {
			return fTS
		}
	case 3:
		if string(key) == "lat" {
			return fLat
		}
		if string(key) == "lon" {
			return fLon
		}
	case 5:
		if string(key) == "speed" {
			return fSpeed
		}
	case 7:
		if string(key) == "heading" {
			return fHeading
		}
	}
	if a, ok := fleet.AttrByName(key); ok {
		return fAttr + field(a)
	}
	return fUnknown
}

// state is what the last occurrence of a key left behind. Judgement is
// deferred to the end of the object because the last duplicate key wins.
type state uint8

const (
	stAbsent  state = iota // key not seen
	stSet                  // a value of the right type
	stNull                 // null: absent for optional fields, a type error for required ones
	stType                 // a value of the wrong JSON type
	stInvalid              // ts only: a string that is not RFC 3339
)

// value is the last occurrence of one known field. start:end is the raw
// token in the text, quoted in error messages.
type value struct {
	st         state
	overflow   bool // ts only: |value| ≥ 10^18
	start, end int
	f          float64
	i          int64 // ts, Unix seconds
}

// object is the parse state of the current update object.
type object struct {
	mark int    // len(d.arena) before this object; rejection truncates back to it
	id   []byte // unescaped id when vals[fID].st == stSet
	vals [numFields]value
}

// decodeObject parses the update object starting at s[i] == '{' and returns
// the position after its '}'. On a syntax error it rejects the entry itself,
// rolls back what the object added to the arena, and returns -1.
func (d *Decoder) decodeObject(s []byte, i, line int) int {
	if i = d.parseObject(s, i); i < 0 {
		d.arena = d.arena[:d.obj.mark]
		d.rejectSyntax(s, line)
	}
	return i
}

func (d *Decoder) parseObject(s []byte, i int) int {
	o := &d.obj
	*o = object{mark: len(d.arena)}
	i = skipWS(s, i+1)
	if i < len(s) && s[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(s) || s[i] != '"' {
			return d.syntax(i, `expected '"' to start object key`, true)
		}
		ke, esc := d.scanString(s, i+1)
		if ke < 0 {
			return -1
		}
		key := s[i+1 : ke]
		if esc {
			d.keyBuf = appendUnescaped(d.keyBuf[:0], key)
			key = d.keyBuf
		}
		i = skipWS(s, ke+1)
		if i >= len(s) || s[i] != ':' {
			return d.syntax(i, "expected ':' after object key", true)
		}
		if i = skipWS(s, i+1); i >= len(s) {
			return d.syntax(i, "expected a value", true)
		}
		f := fieldOf(key)
		switch f {
		case fUnknown:
			d.noteUnknown(key)
			i = d.skipValue(s, i, 1)
		case fID:
			i = d.parseID(s, i)
		case fTS:
			i = d.parseTS(s, i)
		default:
			if c := s[i]; (c == 't' || c == 'f') && isFlag(f) {
				i = d.parseBool(s, i, &o.vals[f])
			} else {
				i = d.parseFloat(s, i, &o.vals[f])
			}
		}
		if i < 0 {
			return -1
		}
		i = skipWS(s, i)
		if i < len(s) && s[i] == ',' {
			i = skipWS(s, i+1)
			continue
		}
		if i < len(s) && s[i] == '}' {
			return i + 1
		}
		return d.syntax(i, "expected ',' or '}' after object value", true)
	}
}

// parseBool reads true or false as 1 or 0, for a flag attribute (one
// whose range is 0-1: ignition, motion), which devices send as either.
func (d *Decoder) parseBool(s []byte, i int, v *value) int {
	switch {
	case bytes.HasPrefix(s[i:], []byte("true")):
		*v = value{st: stSet, start: i, end: i + 4, f: 1}
		return i + 4
	case bytes.HasPrefix(s[i:], []byte("false")):
		*v = value{st: stSet, start: i, end: i + 5, f: 0}
		return i + 5
	}
	return d.parseOther(s, i, v)
}

// isFlag reports whether f is a flag attribute's field.
func isFlag(f field) bool {
	if f < fAttr || f >= fAttr+field(fleet.NumAttrs) {
		return false
	}
	a := fleet.Attr(f - fAttr)
	return a.Min() == 0 && a.Max() == 1
}

// parseOther records a value of the wrong type (or null) for v and skips it.
func (d *Decoder) parseOther(s []byte, i int, v *value) int {
	v.start = i
	v.st = stType
	if s[i] == 'n' {
		v.st = stNull
	}
	v.end = d.skipValue(s, i, 1)
	return v.end
}

func (d *Decoder) parseID(s []byte, i int) int {
	o := &d.obj
	v := &o.vals[fID]
	if s[i] != '"' {
		o.id = nil
		return d.parseOther(s, i, v)
	}
	end, esc := d.scanString(s, i+1)
	if end < 0 {
		return -1
	}
	*v = value{st: stSet, start: i, end: end + 1}
	o.id = s[i+1 : end]
	if esc {
		// Unescaped IDs go to the arena, which is only appended to during a
		// call, so IDs of earlier updates stay valid even if it is reallocated.
		start := len(d.arena)
		d.arena = appendUnescaped(d.arena, o.id)
		o.id = d.arena[start:len(d.arena):len(d.arena)]
	}
	return end + 1
}

func (d *Decoder) parseFloat(s []byte, i int, v *value) int {
	if c := s[i]; c != '-' && !isDigit(c) {
		return d.parseOther(s, i, v)
	}
	end, f := d.scanFloat(s, i)
	*v = value{st: stSet, start: i, end: end, f: f}
	return end
}

func (d *Decoder) parseTS(s []byte, i int) int {
	v := &d.obj.vals[fTS]
	switch c := s[i]; {
	case c == '-' || isDigit(c):
		// Whole seconds or milliseconds, digits only, are valued as they
		// are scanned: validating the token and then valuing it in
		// truncNumber (fractions, exponents) was a sixth of decoding
		// (BenchmarkDecodeNDJSON).
		if n, end, ok := plainDigits(s, i); ok {
			*v = value{st: stSet, start: i, end: end, i: n}
			return end
		}
		end := d.scanNumber(s, i)
		if end < 0 {
			return -1
		}
		n, ok := truncNumber(s[i:end])
		*v = value{st: stSet, start: i, end: end, i: n, overflow: !ok}
		return end
	case c == '"':
		end, esc := d.scanString(s, i+1)
		if end < 0 {
			return -1
		}
		*v = value{st: stInvalid, start: i, end: end + 1}
		raw := s[i+1 : end]
		if esc {
			d.tsBuf = appendUnescaped(d.tsBuf[:0], raw)
			raw = d.tsBuf
		}
		if len(raw) == 0 {
			return end + 1
		}
		// SAFETY: the string view of raw lives only during time.Parse, and
		// raw is not modified meanwhile. Of the result we keep only the
		// int64 from Unix(), and the error (which copies its input anyway)
		// is dropped, so nothing can observe the bytes through the string
		// after they are reused.
		t, err := time.Parse(time.RFC3339, unsafe.String(unsafe.SliceData(raw), len(raw)))
		if err == nil {
			v.st, v.i = stSet, t.Unix()
		}
		return end + 1
	default:
		return d.parseOther(s, i, v)
	}
}

// finish judges the parsed object against the field rules and accepts it or
// rejects it as line. s is the text the value positions refer to.
func (d *Decoder) finish(s []byte, line int) {
	o := &d.obj
	vs := &o.vals
	var u Update
	// Fields are judged in a fixed order; the first problem is reported.
	switch vs[fID].st {
	case stAbsent:
		d.rejectField(s, line, fID, rMissing)
		return
	case stNull, stType:
		d.rejectField(s, line, fID, rType)
		return
	}
	if !validID(o.id) {
		d.rejectField(s, line, fID, rInvalid)
		return
	}
	u.ID = o.id
	for _, f := range [...]field{fLat, fLon} {
		switch v := &vs[f]; v.st {
		case stAbsent:
			d.rejectField(s, line, f, rMissing)
			return
		case stNull, stType:
			d.rejectField(s, line, f, rType)
			return
		}
	}
	u.Lat, u.Lon = vs[fLat].f, vs[fLon].f
	if !(u.Lat >= -90 && u.Lat <= 90) {
		d.rejectField(s, line, fLat, rRange)
		return
	}
	if !(u.Lon >= -180 && u.Lon <= 180) {
		d.rejectField(s, line, fLon, rRange)
		return
	}
	switch v := &vs[fTS]; v.st {
	case stAbsent, stNull:
		if d.now < MinTS || d.now > MaxTS {
			d.rejectField(s, line, fTS, rNow)
			return
		}
		u.TS = d.now
	case stType:
		d.rejectField(s, line, fTS, rType)
		return
	case stInvalid:
		d.rejectField(s, line, fTS, rInvalid)
		return
	default:
		ts := v.i
		millis := !v.overflow && ts >= MinMillis && ts < MaxMillis && s[v.start] != '"'
		if millis {
			ts /= 1000
		}
		if v.overflow || ts < MinTS || ts > MaxTS {
			d.rejectField(s, line, fTS, rRange)
			return
		}
		if d.MaxAhead > 0 && ts-d.now > d.MaxAhead {
			d.obj.vals[fTS].i = ts
			d.report.Future++
			d.rejectField(s, line, fTS, rFuture)
			return
		}
		if millis {
			d.report.Millis++
		}
		u.TS = ts
	}
	for _, f := range [...]field{fSpeed, fHeading} {
		if vs[f].st == stType {
			d.rejectField(s, line, f, rType)
			return
		}
	}
	if v := &vs[fSpeed]; v.st == stSet {
		if !(v.f >= 0 && v.f <= MaxSpeed) {
			d.rejectField(s, line, fSpeed, rRange)
			return
		}
		u.Speed = v.f
	}
	if v := &vs[fHeading]; v.st == stSet {
		if !(v.f >= 0 && v.f < 360) {
			d.rejectField(s, line, fHeading, rRange)
			return
		}
		u.Heading = v.f
	}
	for a := range fleet.Attr(fleet.NumAttrs) {
		switch v := &vs[fAttr+field(a)]; v.st {
		case stType:
			d.rejectField(s, line, fAttr+field(a), rType)
			return
		case stSet:
			x, ok := a.Fixed(v.f)
			if !ok {
				d.rejectField(s, line, fAttr+field(a), rRange)
				return
			}
			u.Attrs.Set(a, x)
		}
	}
	if d.Sink != nil {
		d.sunk = u // a field, so that u itself does not escape
		d.Sink(&d.sunk)
	} else {
		d.updates = append(d.updates, u)
	}
	d.report.Accepted++
}

func validID(id []byte) bool { return fleet.ValidID(id) }

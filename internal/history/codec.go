package history

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/fleetd/fleetd/internal/fleet"
)

// Point is one stored point of a truck's history: a position and the
// attributes its device sent with it.
type Point struct {
	fleet.Position
	Attrs fleet.Attrs
}

// comparePoints orders points by ts, then by every other field, so that
// equal points are adjacent.
func comparePoints(a, b *Point) int {
	if c := cmp.Compare(a.TS, b.TS); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Lat, b.Lat), cmp.Compare(a.Lon, b.Lon), cmp.Compare(a.Speed, b.Speed),
		cmp.Compare(a.Heading, b.Heading), cmp.Compare(a.Attrs.Mask, b.Attrs.Mask), slices.Compare(a.Attrs.Vals[:], b.Attrs.Vals[:]))
}

// sortPoints sorts ps by ts and drops exact duplicates (resends, replayed
// log records), returning the shortened slice. Points usually arrive in
// order (a truck's runs follow each other in time): then it only checks.
func sortPoints(ps []Point) []Point {
	sorted := true
	for i := 1; i < len(ps); i++ {
		if ps[i].TS < ps[i-1].TS || ps[i].TS == ps[i-1].TS && comparePoints(&ps[i], &ps[i-1]) < 0 {
			sorted = false
			break
		}
	}
	if !sorted {
		slices.SortFunc(ps, func(a, b Point) int { return comparePoints(&a, &b) })
	}
	return slices.CompactFunc(ps, func(a, b Point) bool { return a.TS == b.TS && comparePoints(&a, &b) == 0 })
}

// comparePositions is comparePoints for points without attributes.
func comparePositions(a, b *fleet.Position) int {
	if c := cmp.Compare(a.TS, b.TS); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Lat, b.Lat), cmp.Compare(a.Lon, b.Lon), cmp.Compare(a.Speed, b.Speed), cmp.Compare(a.Heading, b.Heading))
}

// sortPositions is sortPoints for points without attributes: the order
// and the duplicates dropped are the same.
func sortPositions(ps []fleet.Position) []fleet.Position {
	sorted := true
	for i := 1; i < len(ps); i++ {
		if ps[i].TS < ps[i-1].TS || ps[i].TS == ps[i-1].TS && comparePositions(&ps[i], &ps[i-1]) < 0 {
			sorted = false
			break
		}
	}
	if !sorted {
		slices.SortFunc(ps, func(a, b fleet.Position) int { return comparePositions(&a, &b) })
	}
	return slices.Compact(ps)
}

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("history: corrupt data")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// The five position columns, in order; a block's header says which of
// them are run-length encoded (bits 0-4) above the attribute mask.
const (
	colTS = iota
	colSpeed
	colHeading
	colLat
	colLon
	numCols
)

// colScratch holds the varints of a block's position columns while
// appendColumns chooses their encoding.
var colScratch = sync.Pool{New: func() any { return new([numCols][]uint64) }}

// layout is how a block's points are encoded.
type layout uint8

const (
	// layoutLegacy: the columns of a version 1 run's one truck, as fleetd
	// wrote them before version 2 (read, and written by tests only).
	layoutLegacy layout = iota
	// layoutSolo: the columns of a version 3 run's one truck.
	layoutSolo
	// layoutGrouped: the columns of a version 2 block's trucks.
	layoutGrouped
	// layoutRaw: a version 2 block's points as fixed-width records, for
	// the runs a flush writes: about as small as columns when trucks have
	// a point or two each (their coordinates and times do not delta
	// well), and several times cheaper to write and read.
	layoutRaw
)

// rawPointSize is a layoutRaw point's bytes: ts, lat, lon, speed, heading.
const rawPointSize = 16

// appendRawPositions is appendColumns of points without attributes in
// layoutRaw: the header, then the fixed-width records.
func appendRawPositions(dst []byte, ps []fleet.Position) []byte {
	dst = binary.AppendUvarint(dst, 1<<numCols)
	dst = slices.Grow(dst, len(ps)*rawPointSize)
	for i := range ps {
		p := &ps[i]
		dst = binary.LittleEndian.AppendUint32(dst, p.TS)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(p.Lat))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(p.Lon))
		dst = binary.LittleEndian.AppendUint16(dst, p.Speed)
		dst = binary.LittleEndian.AppendUint16(dst, p.Heading)
	}
	return dst
}

// appendColumns appends the column encoding of a block's points (see
// doc.go): the trucks' points one after another, truck k's ending at
// ends[k], each truck's sorted without duplicates. A header with the
// union of their attribute masks and which columns are run-length
// encoded, then the columns. The legacy layout (version 1) predicts a
// truck's second coordinate from its first as a delta, and has plain
// attribute columns; later ones start every truck's coordinates afresh,
// and run-length encode attributes too.
func appendColumns(dst []byte, ps []Point, ends []int, l layout) []byte {
	var mask uint32
	for i := range ps {
		mask |= ps[i].Attrs.Mask
	}
	cols := colScratch.Get().(*[numCols][]uint64)
	defer colScratch.Put(cols)
	if l == layoutRaw {
		dst = binary.AppendUvarint(dst, uint64(mask)<<(numCols+1)|1<<numCols)
		for i := range ps {
			p := &ps[i]
			dst = binary.LittleEndian.AppendUint32(dst, p.TS)
			dst = binary.LittleEndian.AppendUint32(dst, uint32(p.Lat))
			dst = binary.LittleEndian.AppendUint32(dst, uint32(p.Lon))
			dst = binary.LittleEndian.AppendUint16(dst, p.Speed)
			dst = binary.LittleEndian.AppendUint16(dst, p.Heading)
		}
		return appendAttrs(dst, ps, mask, cols[0][:0])
	}
	legacy := l == layoutLegacy
	for c := range cols {
		cols[c] = cols[c][:0]
	}
	// ts: a delta from the truck's previous point, or for a truck's first
	// (but the block's first) a signed delta from the previous truck's
	// first: trucks of one block report at about the same times.
	var prevTS, firstTS uint32
	start := 0
	for k, end := range ends {
		for i := start; i < end; i++ {
			ts := ps[i].TS
			switch {
			case i > start:
				cols[colTS] = append(cols[colTS], uint64(ts-prevTS))
			case k == 0:
				cols[colTS] = append(cols[colTS], uint64(ts))
				firstTS = ts
			default:
				cols[colTS] = append(cols[colTS], zigzag(int64(ts)-int64(firstTS)))
				firstTS = ts
			}
			prevTS = ts
		}
		start = end
	}
	var prevSpeed, prevHeading int64
	for i := range ps {
		p := &ps[i]
		cols[colSpeed] = append(cols[colSpeed], zigzag(int64(p.Speed)-prevSpeed))
		cols[colHeading] = append(cols[colHeading], zigzag(int64(p.Heading)-prevHeading))
		prevSpeed, prevHeading = int64(p.Speed), int64(p.Heading)
	}
	for c := range 2 {
		var first int64 // the previous truck's first coordinate
		start := 0
		for _, end := range ends {
			t := ps[start:end]
			prev, prevD := first, int64(0)
			for i := range t {
				v := int64(t[i].Lat)
				if c == 1 {
					v = int64(t[i].Lon)
				}
				d := v - prev
				cols[colLat+c] = append(cols[colLat+c], zigzag(d-predict(t, i, prevD)))
				prev, prevD = v, d
				if i == 0 {
					first = v
					if !legacy {
						prevD = 0
					}
				}
			}
			start = end
		}
	}
	var rle uint64
	var size [numCols]int
	for c := range cols {
		plain, runs := columnSizes(cols[c])
		size[c] = plain
		if runs < plain {
			rle, size[c] = rle|1<<c, runs
		}
	}
	if legacy {
		dst = binary.AppendUvarint(dst, uint64(mask)<<numCols|rle)
	} else {
		dst = binary.AppendUvarint(dst, uint64(mask)<<(numCols+1)|rle)
	}
	for c := range cols {
		dst = appendColumn(dst, cols[c], rle&(1<<c) != 0, size[c])
	}
	if legacy {
		return appendLegacyAttrs(dst, ps, mask)
	}
	return appendAttrs(dst, ps, mask, cols[0][:0])
}

// appendAttrs appends the attribute columns of ps: for each attribute in
// mask, a header byte (bit 0: every point has it, bit 1: its values are
// runs), a presence bit a point unless every point has it, then the
// values present as deltas, plain or as runs, whichever is smaller: an
// attribute that does not change (ignition on, a steady voltage) costs a
// few bytes a block. vals is scratch.
func appendAttrs(dst []byte, ps []Point, mask uint32, vals []uint64) []byte {
	for a := range fleet.Attr(fleet.NumAttrs) {
		if mask&(1<<a) == 0 {
			continue
		}
		vals = vals[:0]
		var prev int64
		for i := range ps {
			if v, ok := ps[i].Attrs.Get(a); ok {
				vals = append(vals, zigzag(int64(v)-prev))
				prev = int64(v)
			}
		}
		full := len(vals) == len(ps)
		plain, runs := columnSizes(vals)
		rle := runs < plain
		head := byte(0)
		if full {
			head |= 1
		}
		if rle {
			head |= 2
		}
		dst = append(dst, head)
		if !full {
			bits := len(dst)
			dst = append(dst, make([]byte, (len(ps)+7)/8)...)
			for i := range ps {
				if ps[i].Attrs.Has(a) {
					dst[bits+i/8] |= 1 << (i % 8)
				}
			}
		}
		dst = appendColumn(dst, vals, rle, min(plain, runs))
	}
	return dst
}

// appendLegacyAttrs appends version 1's attribute columns: for each
// attribute in mask, a presence bit a point, then the values present as
// plain deltas.
func appendLegacyAttrs(dst []byte, ps []Point, mask uint32) []byte {
	for a := range fleet.Attr(fleet.NumAttrs) {
		if mask&(1<<a) == 0 {
			continue
		}
		bits := len(dst)
		dst = append(dst, make([]byte, (len(ps)+7)/8)...)
		var prev int64
		for i := range ps {
			if v, ok := ps[i].Attrs.Get(a); ok {
				dst[bits+i/8] |= 1 << (i % 8)
				dst = binary.AppendUvarint(dst, zigzag(int64(v)-prev))
				prev = int64(v)
			}
		}
	}
	return dst
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// columnSizes returns the bytes of us as plain varints and as runs,
// (value, length-1) pairs, counted in one pass without a branch on the
// values: a block's columns are sized to choose their encoding, and two
// passes, one nested, were 8 % of a first merge's CPU (with the append
// below, BenchmarkAppendColumns: 9,285 → 7,450 ns a block, medians of 4).
func columnSizes(us []uint64) (plain, runs int) {
	if len(us) == 0 {
		return 0, 0
	}
	prev := us[0]
	plain = uvarintLen(prev)
	runs = plain
	n := 0 // the current run's length-1
	for _, u := range us[1:] {
		l := uvarintLen(u)
		plain += l
		same := 0
		if u == prev {
			same = 1
		}
		runs += (1 - same) * (uvarintLen(uint64(n)) + l) // a new run: the last one's length, and u
		n = (n + 1) * same
		prev = u
	}
	return plain, runs + uvarintLen(uint64(n))
}

// appendColumn appends us as varints, or as runs of equal ones: size
// bytes, what columnSizes says that encoding takes.
func appendColumn(dst []byte, us []uint64, rle bool, size int) []byte {
	dst = slices.Grow(dst, size)
	b := dst[len(dst) : len(dst)+size]
	k := 0
	if !rle {
		for _, u := range us {
			k += binary.PutUvarint(b[k:], u)
		}
		return dst[:len(dst)+size]
	}
	for i := 0; i < len(us); {
		j := i + 1
		for j < len(us) && us[j] == us[i] {
			j++
		}
		k += binary.PutUvarint(b[k:], us[i])
		k += binary.PutUvarint(b[k:], uint64(j-i-1))
		i = j
	}
	return dst[:len(dst)+size]
}

// columnReader reads varints from a block's columns.
type columnReader struct {
	b   []byte
	err error
}

func (r *columnReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = corrupt("bad %s", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// column reads one column's n varints, plain or as runs.
type column struct {
	rle  bool
	what string
	v    uint64
	left int // of the current run
	rest int // values not read yet, runs included
}

func (c *column) next(r *columnReader) uint64 {
	if !c.rle {
		return r.uvarint(c.what)
	}
	if c.left == 0 {
		c.v = r.uvarint(c.what)
		run := r.uvarint(c.what)
		if run >= uint64(c.rest) {
			if r.err == nil {
				r.err = corrupt("a run of %d %s values past the column's end", run+1, c.what)
			}
			return 0
		}
		c.left = int(run) + 1
	}
	c.left--
	c.rest--
	return c.v
}

// maxBlockPoints bounds a block's point count (a truck's hour), so that
// a damaged or hostile count cannot make the decoder allocate without
// bound (runs let a few bytes stand for many points).
const maxBlockPoints = 1 << 20

// decodeRawPositions decodes a block as decodeColumns does when it is raw
// without attributes (what flushes write, and the first merges of a
// filling hour), into positions: ok is false, and nothing decoded, when
// it is not. The checks are decodeColumns'.
func decodeRawPositions(dst []fleet.Position, src []byte, ends []int) (_ []fleet.Position, ok bool, err error) {
	head, n := binary.Uvarint(src)
	if n <= 0 || head != 1<<numCols {
		return dst, false, nil
	}
	total := 0
	if len(ends) > 0 {
		total = ends[len(ends)-1]
	}
	if total <= 0 || total > maxBlockPoints {
		return dst, true, corrupt("%d points in a block", total)
	}
	start := 0
	for _, end := range ends {
		if end <= start || end > total {
			return dst, true, corrupt("bad truck ends in a block")
		}
		start = end
	}
	b := src[n:]
	if len(b) != total*rawPointSize {
		return dst, true, corrupt("%d raw points in %d bytes", total, len(src))
	}
	base := len(dst)
	dst = slices.Grow(dst, total)[:base+total]
	ps := dst[base:]
	le := binary.LittleEndian
	for i := range ps {
		r := b[i*rawPointSize : (i+1)*rawPointSize]
		ps[i] = fleet.Position{TS: le.Uint32(r), Lat: int32(le.Uint32(r[4:])), Lon: int32(le.Uint32(r[8:])),
			Speed: le.Uint16(r[12:]), Heading: le.Uint16(r[14:])}
		if !ps[i].Valid() || ps[i].TS == 0 {
			return dst[:base], true, corrupt("invalid position %+v", ps[i])
		}
	}
	start = 0
	for _, end := range ends {
		for i := start + 1; i < end; i++ {
			if ps[i].TS < ps[i-1].TS {
				return dst[:base], true, corrupt("raw points out of order")
			}
		}
		start = end
	}
	return dst, true, nil
}

// decodeColumns decodes the points of a block's trucks from the columns
// in src (as appendColumns wrote them, truck k's ending at ends[k]) and
// appends them to dst.
func decodeColumns(dst []Point, src []byte, ends []int, legacy bool) ([]Point, error) {
	n := 0
	if len(ends) > 0 {
		n = ends[len(ends)-1]
	}
	if n <= 0 || n > maxBlockPoints {
		return dst, corrupt("%d points in a block", n)
	}
	for k, end := range ends {
		if k > 0 && end <= ends[k-1] || end <= 0 || end > n {
			return dst, corrupt("bad truck ends in a block")
		}
	}
	r := columnReader{b: src}
	head := r.uvarint("block header")
	mask, raw := head>>numCols, false
	if !legacy {
		mask, raw = head>>(numCols+1), head&(1<<numCols) != 0
	}
	if mask>>fleet.NumAttrs != 0 || r.err != nil {
		return dst, corrupt("unknown attributes %#x", mask)
	}
	if raw {
		if head&(1<<numCols-1) != 0 || len(r.b) < n*rawPointSize {
			return dst, corrupt("%d raw points in %d bytes", n, len(src))
		}
		base := len(dst)
		dst = slices.Grow(dst, n)[:base+n]
		ps := dst[base:]
		le := binary.LittleEndian
		for i := range ps {
			b := r.b[i*rawPointSize:]
			ps[i] = Point{Position: fleet.Position{TS: le.Uint32(b), Lat: int32(le.Uint32(b[4:])), Lon: int32(le.Uint32(b[8:])),
				Speed: le.Uint16(b[12:]), Heading: le.Uint16(b[14:])}}
		}
		r.b = r.b[n*rawPointSize:]
		start := 0
		for _, end := range ends { // each truck's in ts order, as columns are by construction
			for i := start + 1; i < end; i++ {
				if ps[i].TS < ps[i-1].TS {
					return dst[:base], corrupt("raw points out of order")
				}
			}
			start = end
		}
		return finishPoints(dst, base, &r, mask, false)
	}
	// A plain column takes at least a byte a point, runs two bytes: check
	// before allocating the points.
	least := 0
	for c := range numCols {
		if head&(1<<c) != 0 {
			least += 2
		} else {
			least += n
		}
	}
	if len(r.b) < least {
		return dst, corrupt("%d points in %d bytes", n, len(src))
	}
	col := func(c int, what string) column {
		return column{rle: head&(1<<c) != 0, what: what, rest: n}
	}
	base := len(dst)
	dst = slices.Grow(dst, n)[:base+n]
	ps := dst[base:]
	clear(ps)
	tsc := col(colTS, "ts")
	var ts, firstTS int64
	start := 0
	for k, end := range ends {
		for i := start; i < end; i++ {
			u := tsc.next(&r)
			if u > 1<<33 { // a delta of a uint32 ts, zigzagged or not
				return dst[:base], corrupt("ts out of range")
			}
			switch {
			case i > start:
				ts += int64(u)
			case k == 0:
				ts = int64(u)
				firstTS = ts
			default:
				ts = firstTS + unzigzag(u)
				firstTS = ts
			}
			if ts <= 0 || ts > math.MaxUint32 {
				return dst[:base], corrupt("ts out of range")
			}
			ps[i].TS = uint32(ts)
		}
		start = end
	}
	var speed, heading int64
	sc, hc := col(colSpeed, "speed"), col(colHeading, "heading")
	for i := range ps {
		speed += unzigzag(sc.next(&r))
		if speed < 0 || speed > math.MaxUint16 {
			return dst[:base], corrupt("speed out of range")
		}
		ps[i].Speed = uint16(speed)
	}
	for i := range ps {
		heading += unzigzag(hc.next(&r))
		if heading < 0 || heading > math.MaxUint16 {
			return dst[:base], corrupt("heading out of range")
		}
		ps[i].Heading = uint16(heading)
	}
	for c := range 2 {
		cc := col(colLat+c, "coordinate")
		var first int64
		start := 0
		for _, end := range ends {
			t := ps[start:end]
			prev, prevD := first, int64(0)
			for i := range t {
				d := predict(t, i, prevD) + unzigzag(cc.next(&r))
				v := prev + d
				if v < math.MinInt32 || v > math.MaxInt32 {
					return dst[:base], corrupt("coordinate out of range")
				}
				if c == 0 {
					t[i].Lat = int32(v)
				} else {
					t[i].Lon = int32(v)
				}
				prev, prevD = v, d
				if i == 0 {
					first = v
					if !legacy {
						prevD = 0
					}
				}
			}
			start = end
		}
	}
	return finishPoints(dst, base, &r, mask, legacy)
}

// finishPoints decodes the attribute columns of the points dst[base:]
// from r (as appendAttrs wrote them, or appendLegacyAttrs) and checks that
// the block ends there and every point is valid.
func finishPoints(dst []Point, base int, r *columnReader, mask uint64, legacy bool) ([]Point, error) {
	ps := dst[base:]
	n := len(ps)
	nb := (n + 7) / 8
	for a := range fleet.Attr(fleet.NumAttrs) {
		if mask&(1<<a) == 0 || r.err != nil {
			continue
		}
		full, rle := false, false
		if !legacy {
			if len(r.b) == 0 || r.b[0] > 3 {
				return dst[:base], corrupt("bad %s column header", a.Name())
			}
			full, rle = r.b[0]&1 != 0, r.b[0]&2 != 0
			r.b = r.b[1:]
		}
		var bits []byte
		present := n
		if !full {
			if len(r.b) < nb {
				return dst[:base], corrupt("attribute bits cut off")
			}
			bits = r.b[:nb]
			r.b = r.b[nb:]
			present = 0
			for i := range n {
				if bits[i/8]&(1<<(i%8)) != 0 {
					present++
				}
			}
		}
		col := column{rle: rle, what: a.Name(), rest: present}
		var v int64
		for i := range ps {
			if full || bits[i/8]&(1<<(i%8)) != 0 {
				v += unzigzag(col.next(r))
				if v < int64(a.Min()) || v > int64(a.Max()) {
					return dst[:base], corrupt("%s out of range", a.Name())
				}
				ps[i].Attrs.Set(a, int32(v))
			}
		}
	}
	if r.err != nil {
		return dst[:base], r.err
	}
	if len(r.b) != 0 {
		return dst[:base], corrupt("%d bytes after the columns", len(r.b))
	}
	for i := range ps {
		if !ps[i].Position.Valid() || ps[i].TS == 0 {
			return dst[:base], corrupt("invalid position %+v", ps[i].Position)
		}
	}
	return dst, nil
}

// predict is the coordinate delta expected for point i from the previous
// delta: distance scales with speed and time, so the previous delta is
// scaled by (speed·dt) now over (speed·dt) then; a parked truck is
// expected to stay. On the simulator's fleet this halves the bytes of a
// moving truck's coordinates against plain deltas of deltas (1.0 against
// 1.8 bytes each). Integer arithmetic only: the format must decode the
// same everywhere. Speeds and times are decoded before coordinates.
func predict(ps []Point, i int, prevD int64) int64 {
	if i < 2 {
		return prevD
	}
	sCur, sPrev := int64(ps[i].Speed), int64(ps[i-1].Speed)
	dtCur, dtPrev := int64(ps[i].TS-ps[i-1].TS), int64(ps[i-1].TS-ps[i-2].TS)
	if sCur == 0 {
		return 0
	}
	if sPrev == 0 || dtPrev == 0 || dtCur > 86400 || dtPrev > 86400 {
		return prevD
	}
	// For real trucks the product is far from 2^63 (|prevD| of a 30 s
	// step is under 2^24, speed·dt under 2^27); corrupt or extreme input
	// may wrap, which is defined in Go and the same when encoding and
	// decoding, so the format stays lossless either way.
	return prevD * (sCur * dtCur) / (sPrev * dtPrev)
}

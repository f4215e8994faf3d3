package history

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

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

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("history: corrupt data")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// appendColumns appends the column encoding of ps (sorted, without
// duplicates; see doc.go), starting with the union of their attribute
// masks.
func appendColumns(dst []byte, ps []Point) []byte {
	var mask uint32
	for i := range ps {
		mask |= ps[i].Attrs.Mask
	}
	dst = binary.AppendUvarint(dst, uint64(mask))
	prevTS := uint32(0)
	for i := range ps {
		dst = binary.AppendUvarint(dst, uint64(ps[i].TS-prevTS))
		prevTS = ps[i].TS
	}
	var prevSpeed, prevHeading int64
	for i := range ps {
		dst = binary.AppendUvarint(dst, zigzag(int64(ps[i].Speed)-prevSpeed))
		prevSpeed = int64(ps[i].Speed)
	}
	for i := range ps {
		dst = binary.AppendUvarint(dst, zigzag(int64(ps[i].Heading)-prevHeading))
		prevHeading = int64(ps[i].Heading)
	}
	for c := range 2 {
		var prev, prevD int64
		for i := range ps {
			v := int64(ps[i].Lat)
			if c == 1 {
				v = int64(ps[i].Lon)
			}
			d := v - prev
			dst = binary.AppendUvarint(dst, zigzag(d-predict(ps, i, prevD)))
			prev, prevD = v, d
		}
	}
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

// decodeColumns decodes n points from the columns in src (as appendColumns
// wrote them) and appends them to dst.
func decodeColumns(dst []Point, src []byte, n int) ([]Point, error) {
	// Each point takes at least five bytes (one per column).
	if n < 0 || n > len(src)/5 {
		return dst, corrupt("%d points in %d bytes", n, len(src))
	}
	r := columnReader{b: src}
	mask := r.uvarint("attribute mask")
	if mask>>fleet.NumAttrs != 0 {
		return dst, corrupt("unknown attributes %#x", mask)
	}
	base := len(dst)
	dst = slices.Grow(dst, n)[:base+n]
	ps := dst[base:]
	clear(ps)
	ts := uint64(0)
	for i := range ps {
		ts += r.uvarint("ts")
		if ts > math.MaxUint32 {
			return dst[:base], corrupt("ts past 2106")
		}
		ps[i].TS = uint32(ts)
	}
	var speed, heading int64
	for i := range ps {
		speed += unzigzag(r.uvarint("speed"))
		if speed < 0 || speed > math.MaxUint16 {
			return dst[:base], corrupt("speed out of range")
		}
		ps[i].Speed = uint16(speed)
	}
	for i := range ps {
		heading += unzigzag(r.uvarint("heading"))
		if heading < 0 || heading > math.MaxUint16 {
			return dst[:base], corrupt("heading out of range")
		}
		ps[i].Heading = uint16(heading)
	}
	for c := range 2 {
		var prev, prevD int64
		for i := range ps {
			d := predict(ps, i, prevD) + unzigzag(r.uvarint("coordinate"))
			v := prev + d
			if v < math.MinInt32 || v > math.MaxInt32 {
				return dst[:base], corrupt("coordinate out of range")
			}
			if c == 0 {
				ps[i].Lat = int32(v)
			} else {
				ps[i].Lon = int32(v)
			}
			prev, prevD = v, d
		}
	}
	for a := range fleet.Attr(fleet.NumAttrs) {
		if mask&(1<<a) == 0 || r.err != nil {
			continue
		}
		nb := (n + 7) / 8
		if len(r.b) < nb {
			return dst[:base], corrupt("attribute bits cut off")
		}
		bits := r.b[:nb]
		r.b = r.b[nb:]
		var v int64
		for i := range ps {
			if bits[i/8]&(1<<(i%8)) != 0 {
				v += unzigzag(r.uvarint(a.Name()))
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

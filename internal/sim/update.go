package sim

import (
	"math"
	"strconv"

	"github.com/fleetd/fleetd/internal/geo"
)

// Update is one simulated position report.
//
// The truck is identified by its index rather than a string so that a batch
// is a flat, pointer-free slice; its wire ID is "truck-" followed by the
// index zero-padded to the fleet's ID width (see AppendID).
type Update struct {
	Truck   uint32  // truck index
	Lat     float64 // WGS84 degrees, [-90, 90]
	Lon     float64 // WGS84 degrees, [-180, 180)
	TS      int64   // unix seconds
	Speed   float64 // km/h, >= 0
	Heading float64 // degrees clockwise from north, [0, 360)
}

// IDPrefix starts every simulated truck ID.
const IDPrefix = "truck-"

// minIDWidth is the number of digits of IDs in fleets of up to 10,000,000.
const minIDWidth = 7

// IDWidth returns the number of digits in the IDs of a fleet of n trucks:
// 7, or more when n-1 has more digits.
func IDWidth(n int) int {
	w := 1
	for x := n - 1; x >= 10; x /= 10 {
		w++
	}
	return max(w, minIDWidth)
}

// AppendID appends the wire ID of truck i, e.g. "truck-0000042" for width 7.
func AppendID(dst []byte, i uint32, width int) []byte {
	dst = append(dst, IDPrefix...)
	var buf [10]byte // uint32 has at most 10 digits
	p := len(buf)
	for x := i; ; x /= 10 {
		p--
		buf[p] = byte('0' + x%10)
		if x < 10 {
			break
		}
	}
	for n := len(buf) - p; n < width; n++ {
		dst = append(dst, '0')
	}
	return append(dst, buf[p:]...)
}

// AppendNDJSON appends the batch as NDJSON, one line per update:
//
//	{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}
//
// lat and lon are rounded to 7 decimals with trailing zeros dropped, speed to
// 1 decimal, heading to an integer in [0, 360). Non-finite numbers (which the
// Fleet never produces) are written as 0 to keep the output valid JSON.
// It does not allocate when dst has room.
func AppendNDJSON(dst []byte, batch []Update, idWidth int) []byte {
	for i := range batch {
		dst = batch[i].AppendJSON(dst, idWidth)
		dst = append(dst, '\n')
	}
	return dst
}

// AppendJSON appends u as one JSON object (no newline); see AppendNDJSON.
func (u *Update) AppendJSON(dst []byte, idWidth int) []byte {
	dst = append(dst, `{"id":"`...)
	dst = AppendID(dst, u.Truck, idWidth)
	dst = append(dst, `","lat":`...)
	dst = appendFixed(dst, u.Lat, 7)
	dst = append(dst, `,"lon":`...)
	dst = appendFixed(dst, u.Lon, 7)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, u.TS, 10)
	dst = append(dst, `,"speed":`...)
	dst = appendDecimal1(dst, u.Speed)
	dst = append(dst, `,"heading":`...)
	dst = appendHeading(dst, u.Heading)
	return append(dst, '}')
}

var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7}

// fixedLimit bounds the magnitude formatted through int64 arithmetic:
// 1e11 × 1e7 stays well inside int64.
const fixedLimit = 1e11

// appendFixed appends v rounded to prec (<= 7) decimals, without trailing
// fractional zeros or a trailing point.
func appendFixed(dst []byte, v float64, prec int) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, '0')
	}
	if math.Abs(v) >= fixedLimit {
		return strconv.AppendFloat(dst, v, 'f', prec, 64)
	}
	scale := int64(pow10[prec])
	n := int64(math.Round(v * pow10[prec]))
	if n < 0 {
		dst = append(dst, '-')
		n = -n
	}
	dst = strconv.AppendUint(dst, uint64(n/scale), 10)
	frac := n % scale
	if frac == 0 {
		return dst
	}
	var buf [7]byte
	for i := prec - 1; i >= 0; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	end := prec
	for buf[end-1] == '0' {
		end--
	}
	dst = append(dst, '.')
	return append(dst, buf[:end]...)
}

// appendDecimal1 appends v with exactly one decimal ("52.5", "60.0").
func appendDecimal1(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, '0')
	}
	if math.Abs(v) >= fixedLimit {
		return strconv.AppendFloat(dst, v, 'f', 1, 64)
	}
	n := int64(math.Round(v * 10))
	if n < 0 {
		dst = append(dst, '-')
		n = -n
	}
	dst = strconv.AppendUint(dst, uint64(n/10), 10)
	return append(dst, '.', byte('0'+n%10))
}

// appendHeading appends the heading rounded to an integer in [0, 360).
func appendHeading(dst []byte, h float64) []byte {
	if math.IsNaN(h) || math.IsInf(h, 0) {
		return append(dst, '0')
	}
	n := int64(math.Round(geo.NormDeg(h)))
	if n >= 360 {
		n -= 360
	}
	return strconv.AppendInt(dst, n, 10)
}

package store

import (
	"math"

	"github.com/fleetd/fleetd/internal/geo"
)

const rad = math.Pi / 180

// pruneSlack keeps box pruning conservative against rounding: a cell is
// skipped only when its exact distance clearly exceeds the bound.
const pruneSlack = 1 - 1e-12

// Hit is one query result: a truck, its position and, for distance queries,
// its distance from the query point.
type Hit struct {
	Position
	DistM float64
	idLen uint8
	id    [MaxIDLen]byte
}

// ID returns the truck's ID; the slice aliases the Hit.
func (h *Hit) ID() []byte { return h.id[:h.idLen] }

func (h *Hit) setID(id []byte) { h.idLen = uint8(copy(h.id[:], id)) }

// point is a query point with what every distance test needs precomputed.
type point struct {
	lat, lon   float64 // degrees
	p          float64 // latitude in radians
	sinP, cosP float64
	flat, flon int32 // fixed point
}

func newPoint(lat, lon float64) point {
	s, c := math.Sincos(lat * rad)
	return point{lat: lat, lon: lon, p: lat * rad, sinP: s, cosP: c, flat: geo.ToFixed(lat), flon: geo.ToFixed(lon)}
}

// hav is the haversine between the query point and a stored record. It
// needs two sines and a square root: with s = sin(Δφ/2),
// cos φ2 = cos φ·(1-2s²) - sin φ·2s·√(1-s²). Both sines are of half the
// coordinate differences, tiny for every truck a k-nearest search gets
// this far with, so they take sinSmall's polynomial (math.Sin was 6% of
// BenchmarkNearest10's profile).
func (q *point) hav(lat, lon int32) float64 {
	dp := geo.FromFixed(lat)*rad - q.p
	sp := sinSmall(dp / 2)
	sp2 := sp * sp
	cos2 := q.cosP*(1-2*sp2) - q.sinP*2*sp*math.Sqrt(1-sp2)
	dl := geo.FromFixed(lon) - q.lon
	if dl > 180 {
		dl -= 360
	} else if dl < -180 {
		dl += 360
	}
	sl := sinSmall(dl * rad / 2)
	h := sp2 + q.cosP*cos2*sl*sl
	return min(max(h, 0), 1)
}

// sinSmallMax bounds the arguments sinSmall takes its polynomial for.
const sinSmallMax = 1.0 / 64

// sinSmall is math.Sin, by its Taylor polynomial to x⁷ when |x| ≤ 1/64
// (the first term left out, x⁹/9!, is below 1e-20 of x there: the
// polynomial is as accurate as math.Sin's own), and math.Sin beyond.
func sinSmall(x float64) float64 {
	if math.Abs(x) > sinSmallMax {
		return math.Sin(x)
	}
	x2 := x * x
	return x + x*x2*(-1.0/6+x2*(1.0/120-x2*(1.0/5040)))
}

// havToM is geo.HavToM, 2R·asin(√h), with the arcsine by its Taylor
// polynomial to x¹¹ for √h ≤ 1/64 (up to ~200 km; the first term left
// out, 231x¹³/13312, is below 1e-23 of x there): k-nearest converts every
// hit, and math.Asin's division and arctangent were 5% of
// BenchmarkNearest10.
func havToM(h float64) float64 {
	x := math.Sqrt(h)
	if !(x <= sinSmallMax) {
		return geo.HavToM(h)
	}
	x2 := x * x
	a := x + x*x2*(1.0/6+x2*(3.0/40+x2*(15.0/336+x2*(105.0/3456+x2*(945.0/42240)))))
	return 2 * geo.EarthRadiusM * a
}

// asinUpper is an upper bound on asin(x) for 0 ≤ x < 1 that is tight for
// small x: asin x ≤ tan(asin x) = x/√(1-x²), which exceeds asin x by about
// x³/3 — a few parts in 1e9 of the windows below for 10 km — so the
// windows need no inverse trigonometry for short ranges.
func asinUpper(x float64) float64 {
	if x > 0.1 {
		return math.Asin(x)
	}
	return x / math.Sqrt(1-x*x)
}

// lonDiff is the absolute longitude difference in fixed point, the short
// way round.
func lonDiff(a, b int32) int64 {
	d := int64(a) - int64(b)
	if d < 0 {
		d = -d
	}
	if d > geo.MaxLonFixed {
		d = 2*geo.MaxLonFixed - d
	}
	return d
}

// latLimit returns the latitude difference, in fixed-point units, beyond
// which a truck is farther than hav h: distance ≥ |Δφ|. It may exceed the
// exact limit (a looser window), never fall short of it.
func latLimit(h float64) int64 {
	if h >= 1 {
		return math.MaxInt64
	}
	a := 2 * asinUpper(math.Sqrt(h)) // radians
	return int64(a/rad*geo.Scale) + 2
}

// lonLimit returns the longitude difference, in fixed-point units, beyond
// which a truck that passed the latitude filter latLim is farther than hav
// h: h ≥ cos φ·cos φ2·sin²(Δλ/2), and cos φ2 is at least its value at the
// edge of the latitude window. That cosine is bounded from below without
// trigonometry: with b the window's half-height in radians,
// cos(|φ|+b) = cos φ·cos b - |sin φ|·sin b ≥ cos φ·(1-b²/2) - |sin φ|·b.
// Like latLimit it may only err wide (k-nearest recomputes both each time
// its bound shrinks by a fifth: 4 times a query at 1M trucks, which cost
// ~7% of BenchmarkNearest10 with math.Cos and two math.Asin).
func (q *point) lonLimit(h float64, latLim int64) int64 {
	if h >= 1 || latLim == math.MaxInt64 {
		return math.MaxInt64
	}
	if math.Abs(q.lat)+float64(latLim)/geo.Scale >= 90 {
		return math.MaxInt64
	}
	b := float64(latLim) / geo.Scale * rad
	c := q.cosP * (q.cosP*(1-b*b/2) - math.Abs(q.sinP)*b)
	if c <= 0 || h >= c {
		return math.MaxInt64
	}
	return int64(2*asinUpper(math.Sqrt(h/c))/rad*geo.Scale) + 2
}

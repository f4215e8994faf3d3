package geo

import "math"

// Box is a latitude/longitude rectangle in degrees. MinLon > MaxLon means the
// box crosses the antimeridian (it spans MinLon…180 and -180…MaxLon).
type Box struct {
	MinLat, MinLon, MaxLat, MaxLon float64
}

// Contains reports whether the point lies in the box (edges included).
func (b Box) Contains(lat, lon float64) bool {
	if lat < b.MinLat || lat > b.MaxLat {
		return false
	}
	if b.MinLon <= b.MaxLon {
		return lon >= b.MinLon && lon <= b.MaxLon
	}
	return lon >= b.MinLon || lon <= b.MaxLon
}

// lonGap is the smallest longitude difference in degrees, in [0, 180], from
// lon to the box's longitude range.
func (b Box) lonGap(lon float64) float64 {
	if b.MinLon <= b.MaxLon {
		if lon >= b.MinLon && lon <= b.MaxLon {
			return 0
		}
	} else if lon >= b.MinLon || lon <= b.MaxLon {
		return 0
	}
	return math.Min(wrapDiff(lon, b.MinLon), wrapDiff(lon, b.MaxLon))
}

// wrapDiff is |a-b| in degrees measured the short way round, in [0, 180].
func wrapDiff(a, b float64) float64 {
	d := math.Abs(a - b)
	if d > 180 {
		d = 360 - d
	}
	return d
}

// BoxMinHav returns the haversine of the smallest central angle from the
// point (lat, lon) to any point in the box.
//
// For a fixed latitude φ the distance grows with |Δλ|, so the nearest point
// of the box lies on the meridian at the box longitude closest to the point
// (Δλ* below). Along that meridian cos d = A·cos(φ - φ0) with
// φ0 = atan2(sin φP, cos φP cos Δλ*), so on [MinLat, MaxLat] the minimum is
// at φ0 if it lies inside, else at one of the two ends.
func BoxMinHav(lat, lon float64, b Box) float64 {
	if b.Contains(lat, lon) {
		return 0
	}
	dl := b.lonGap(lon) * rad
	p := lat * rad
	sinP, cosP := math.Sincos(p)
	sl := math.Sin(dl / 2)
	sl2 := sl * sl
	best := math.Inf(1)
	try := func(q float64) {
		// The haversine form keeps full precision at short range.
		sp := math.Sin((q - p) / 2)
		h := sp*sp + cosP*math.Cos(q)*sl2
		if h < best {
			best = h
		}
	}
	lo, hi := b.MinLat*rad, b.MaxLat*rad
	try(lo)
	try(hi)
	if p0 := math.Atan2(sinP, cosP*math.Cos(dl)); p0 > lo && p0 < hi {
		try(p0)
	}
	if best < 0 {
		best = 0
	}
	if best > 1 {
		best = 1
	}
	return best
}

// MeridianMinAngle returns the smallest central angle (radians) from a point
// at latitude latRad to the half-meridian dLonRad away in longitude
// (0 ≤ dLonRad ≤ π), poles included.
func MeridianMinAngle(latRad, dLonRad float64) float64 {
	if dLonRad >= math.Pi/2 {
		return math.Pi/2 - math.Abs(latRad)
	}
	s := math.Cos(latRad) * math.Sin(dLonRad)
	if s > 1 {
		s = 1
	}
	return math.Asin(s)
}

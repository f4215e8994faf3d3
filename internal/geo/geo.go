package geo

import "math"

// EarthRadiusM is the radius of the sphere fleetd measures on, in metres.
const EarthRadiusM = 6371008.8

// Scale is the number of fixed-point units per degree.
const Scale = 1e7

const (
	// MaxLatFixed and MaxLonFixed bound valid fixed-point coordinates.
	MaxLatFixed = 90 * Scale
	MaxLonFixed = 180 * Scale

	rad = math.Pi / 180
)

// ToFixed converts degrees to fixed point, rounding to nearest. The caller
// validates the range; values outside int32 saturate.
func ToFixed(deg float64) int32 {
	v := math.Round(deg * Scale)
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	if v < math.MinInt32 {
		return math.MinInt32
	}
	return int32(v)
}

// FromFixed converts fixed point to degrees.
func FromFixed(v int32) float64 { return float64(v) / Scale }

// ValidLatLon reports whether lat and lon (degrees) are finite and in range.
func ValidLatLon(lat, lon float64) bool {
	return lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}

// Hav returns the haversine of the central angle between two points given
// in degrees.
func Hav(lat1, lon1, lat2, lon2 float64) float64 {
	p1, p2 := lat1*rad, lat2*rad
	return havRad(p1, p2, math.Cos(p1), math.Cos(p2), (lon2-lon1)*rad)
}

// havRad is Hav over radians with the latitudes' cosines precomputed.
func havRad(p1, p2, cos1, cos2, dLon float64) float64 {
	sp := math.Sin((p2 - p1) / 2)
	sl := math.Sin(dLon / 2)
	h := sp*sp + cos1*cos2*sl*sl
	if h > 1 {
		return 1
	}
	if h < 0 {
		return 0
	}
	return h
}

// HavToM converts a haversine value to metres.
func HavToM(h float64) float64 { return 2 * EarthRadiusM * math.Asin(math.Sqrt(h)) }

// MToHav converts metres to a haversine value; distances past half the
// circumference give 1.
func MToHav(m float64) float64 {
	if m <= 0 {
		return 0
	}
	a := m / EarthRadiusM
	if a >= math.Pi {
		return 1
	}
	s := math.Sin(a / 2)
	return s * s
}

// DistanceM is the great-circle distance in metres between two points in
// degrees.
func DistanceM(lat1, lon1, lat2, lon2 float64) float64 {
	return HavToM(Hav(lat1, lon1, lat2, lon2))
}

// Bearing is the initial bearing in degrees [0, 360) from point 1 to point 2.
func Bearing(lat1, lon1, lat2, lon2 float64) float64 {
	p1, p2 := lat1*rad, lat2*rad
	dl := (lon2 - lon1) * rad
	y := math.Sin(dl) * math.Cos(p2)
	x := math.Cos(p1)*math.Sin(p2) - math.Sin(p1)*math.Cos(p2)*math.Cos(dl)
	b := math.Atan2(y, x) / rad
	if b < 0 {
		b += 360
	}
	if b >= 360 {
		b -= 360
	}
	return b
}

// Destination returns the point reached from (lat, lon) after distM metres
// on the initial bearing bearingDeg.
func Destination(lat, lon, bearingDeg, distM float64) (float64, float64) {
	p1, l1, b := lat*rad, lon*rad, bearingDeg*rad
	d := distM / EarthRadiusM
	p2 := math.Asin(math.Sin(p1)*math.Cos(d) + math.Cos(p1)*math.Sin(d)*math.Cos(b))
	l2 := l1 + math.Atan2(math.Sin(b)*math.Sin(d)*math.Cos(p1), math.Cos(d)-math.Sin(p1)*math.Sin(p2))
	return p2 / rad, NormLon(l2 / rad)
}

// DestinationHeading is Destination that also returns the direction of
// travel on arrival (the forward azimuth of the great circle at the
// destination, degrees in [0, 360)), from the trigonometric values already
// at hand: tan α₂ = sin θ cos φ₁ / (cos δ cos φ₁ cos θ − sin φ₁ sin δ).
// The simulator moves its trucks with it.
func DestinationHeading(lat, lon, bearingDeg, distM float64) (lat2, lon2, heading float64) {
	δ := distM / EarthRadiusM
	sφ1, cφ1 := math.Sincos(lat * rad)
	sθ, cθ := math.Sincos(bearingDeg * rad)
	sδ, cδ := math.Sincos(δ)
	sφ2 := max(-1, min(1, sφ1*cδ+cφ1*sδ*cθ))
	φ2 := math.Asin(sφ2)
	λ2 := lon*rad + math.Atan2(sθ*sδ*cφ1, cδ-sφ1*sφ2)
	α2 := math.Atan2(sθ*cφ1, cδ*cφ1*cθ-sφ1*sδ)
	return φ2 / rad, NormLon(λ2 / rad), NormDeg(α2 / rad)
}

// NormDeg maps an angle in degrees to [0, 360).
func NormDeg(d float64) float64 {
	d = math.Mod(d, 360)
	if d < 0 {
		d += 360
	}
	if d >= 360 { // -tiny + 360 rounds to 360
		d = 0
	}
	return d
}

// NormLon wraps a longitude in degrees into [-180, 180).
func NormLon(lon float64) float64 {
	if lon >= -180 && lon < 180 {
		return lon
	}
	lon = math.Mod(lon+180, 360)
	if lon < 0 {
		lon += 360
	}
	return lon - 180
}

package sim

import "math"

// Spherical-earth helpers. The package keeps its own copies (instead of
// importing internal/geo) so that the simulator has no dependency on the
// engine it loads; the formulas are the standard ones, see
// http://www.movable-type.co.uk/scripts/latlong.html.

const (
	earthRadiusKm = 6371.0088 // IUGG mean radius
	degToRad      = math.Pi / 180
	radToDeg      = 180 / math.Pi
)

// haversineKm returns the great-circle distance between two points given in
// degrees.
func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	φ1, φ2 := lat1*degToRad, lat2*degToRad
	dφ := φ2 - φ1
	dλ := (lon2 - lon1) * degToRad
	s1 := math.Sin(dφ / 2)
	s2 := math.Sin(dλ / 2)
	h := s1*s1 + math.Cos(φ1)*math.Cos(φ2)*s2*s2
	if h > 1 {
		h = 1
	}
	return 2 * earthRadiusKm * math.Asin(math.Sqrt(h))
}

// bearingDeg returns the initial bearing (forward azimuth) of the great
// circle from point 1 to point 2, in degrees clockwise from north, in
// [0, 360). Coincident points give 0.
func bearingDeg(lat1, lon1, lat2, lon2 float64) float64 {
	sφ1, cφ1 := math.Sincos(lat1 * degToRad)
	sφ2, cφ2 := math.Sincos(lat2 * degToRad)
	sdλ, cdλ := math.Sincos((lon2 - lon1) * degToRad)
	y := sdλ * cφ2
	x := cφ1*sφ2 - sφ1*cφ2*cdλ
	return normDeg(math.Atan2(y, x) * radToDeg)
}

// destination returns the point reached by travelling distKm from (lat, lon)
// along the great circle with initial bearing brgDeg. The longitude is
// normalised to [-180, 180).
func destination(lat, lon, brgDeg, distKm float64) (float64, float64) {
	lat2, lon2, _ := destinationHeading(lat, lon, brgDeg, distKm)
	return lat2, lon2
}

// destinationHeading is destination that also returns the direction of
// travel on arrival (the forward azimuth of the great circle at the
// destination, degrees in [0, 360)), from the trigonometric values already
// at hand: tan α₂ = sin θ cos φ₁ / (cos δ cos φ₁ cos θ − sin φ₁ sin δ).
func destinationHeading(lat, lon, brgDeg, distKm float64) (lat2, lon2, heading float64) {
	δ := distKm / earthRadiusKm
	sφ1, cφ1 := math.Sincos(lat * degToRad)
	sθ, cθ := math.Sincos(brgDeg * degToRad)
	sδ, cδ := math.Sincos(δ)
	sφ2 := sφ1*cδ + cφ1*sδ*cθ
	if sφ2 > 1 {
		sφ2 = 1
	} else if sφ2 < -1 {
		sφ2 = -1
	}
	φ2 := math.Asin(sφ2)
	λ2 := lon*degToRad + math.Atan2(sθ*sδ*cφ1, cδ-sφ1*sφ2)
	α2 := math.Atan2(sθ*cφ1, cδ*cφ1*cθ-sφ1*sδ)
	return φ2 * radToDeg, normLon(λ2 * radToDeg), normDeg(α2 * radToDeg)
}

// normDeg maps an angle in degrees to [0, 360).
func normDeg(d float64) float64 {
	d = math.Mod(d, 360)
	if d < 0 {
		d += 360
	}
	if d >= 360 { // -tiny + 360 rounds to 360
		d = 0
	}
	return d
}

// normLon maps a longitude in degrees to [-180, 180).
func normLon(lon float64) float64 {
	if lon >= -180 && lon < 180 {
		return lon
	}
	lon = math.Mod(lon+180, 360)
	if lon < 0 {
		lon += 360
	}
	return lon - 180
}

// Package geo holds fleetd's spherical geometry: fixed-point coordinates,
// haversine distances and exact minimum distances from a point to a
// latitude/longitude box.
//
// The Earth is a sphere of radius EarthRadiusM (6,371,008.8 m, the IUGG mean
// radius). Every distance in fleetd is a great-circle distance on that
// sphere; nothing here projects.
//
// Invariants:
//   - Fixed-point coordinates are int32 in units of 1e-7 degree (about 1.1 cm
//     of latitude). ToFixed rounds to nearest, so FromFixed(ToFixed(x)) is
//     within 5e-8 degree of x for every x in [-180, 180].
//   - Hav returns the haversine of the central angle, h = sin²(Δφ/2) +
//     cos φ1 cos φ2 sin²(Δλ/2), clamped to [0, 1]. h is monotonic in the
//     distance, so queries compare h values and convert to metres once.
//   - BoxMinHav is exact (up to rounding), not merely a lower bound: it is
//     the smallest h from the point to any point of the box, boxes may cross
//     the antimeridian and touch the poles.
//
// All functions are pure and safe for concurrent use.
package geo

import { describe, expect, it } from 'vitest';
import { fmtDuration, parseTrail, parseTrips, positionAt, trailPath, tripsPath } from './trail';

const feature = (coords: [number, number][], times: number[]) => ({
  type: 'Feature',
  geometry: coords.length === 1 ? { type: 'Point', coordinates: coords[0] } : coords.length ? { type: 'LineString', coordinates: coords } : null,
  properties: { id: 't1', times, points: times.length + 3 },
});

describe('trail', () => {
  it('builds the requests for a window', () => {
    expect(trailPath('a b', 3600, 1000000.7)).toBe('/v1/trucks/a%20b/history?format=geojson&simplify_m=10&from=996400&to=1000000');
    expect(tripsPath('x', 60, 120)).toBe('/v1/trucks/x/trips?from=60&to=120');
  });

  it('parses a LineString, a Point and no geometry, and refuses malformed ones', () => {
    const t = parseTrail(feature([[1, 2], [3, 4]], [10, 20]));
    expect(t).toEqual({ id: 't1', coords: [[1, 2], [3, 4]], times: [10, 20], points: 5 });
    expect(parseTrail(feature([[1, 2]], [10]))?.coords).toEqual([[1, 2]]);
    expect(parseTrail(feature([], []))?.coords).toEqual([]);
    expect(parseTrail(feature([[1, 2], [3, 4]], [10]))).toBeNull(); // times do not match
    expect(parseTrail({ type: 'FeatureCollection' })).toBeNull();
    expect(parseTrail(null)).toBeNull();
  });

  it('interpolates the position at a time, clamped to the ends', () => {
    const t = parseTrail(feature([[0, 0], [10, 20], [10, 20]], [100, 200, 300]))!;
    expect(positionAt(t, 50)).toEqual([0, 0]);
    expect(positionAt(t, 150)).toEqual([5, 10]);
    expect(positionAt(t, 250)).toEqual([10, 20]);
    expect(positionAt(t, 400)).toEqual([10, 20]);
    expect(positionAt(parseTrail(feature([], []))!, 1)).toBeNull();
    // across the antimeridian the short way
    const w = parseTrail(feature([[179, 0], [-179, 0]], [0, 10]))!;
    expect(positionAt(w, 5)![0]).toBeCloseTo(180, 9);
  });

  it('parses trips and stops', () => {
    const r = parseTrips({
      trips: [{ start_ts: 1, end_ts: 5, distance_m: 1200.5, max_speed: 60, start_lat: 0, start_lon: 0, end_lat: 1, end_lon: 1 }],
      stops: [{ start_ts: 5, end_ts: 400, lat: 1, lon: 1, duration_s: 395 }],
    });
    expect(r).toEqual({ trips: [{ start: 1, end: 5, distanceM: 1200.5, maxSpeed: 60 }], stops: [{ start: 5, end: 400, lat: 1, lon: 1 }] });
    expect(parseTrips({ trips: [{}], stops: [] })).toBeNull();
    expect(parseTrips({})).toBeNull();
  });

  it('formats durations', () => {
    expect(fmtDuration(40)).toBe('40 s');
    expect(fmtDuration(720)).toBe('12 min');
    expect(fmtDuration(3900)).toBe('1 h 05 min');
  });
});

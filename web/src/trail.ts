// A selected truck's recent past, from fleetd's history: its trail (GET
// /v1/trucks/{id}/history?format=geojson, simplified for drawing), a time
// slider that plays it back, and its trips and stops (GET .../trips).

/** Trail is a truck's path: [lon, lat] positions and their Unix times. */
export interface Trail {
  id: string;
  coords: [number, number][];
  times: number[];
  points: number; // stored points in the window, before simplification
}

export interface Stop {
  start: number;
  end: number;
  lat: number;
  lon: number;
}

export interface Trip {
  start: number;
  end: number;
  distanceM: number;
  maxSpeed: number;
}

/** TRAIL_WINDOWS are the windows the panel offers, in seconds. */
export const TRAIL_WINDOWS = [3600, 6 * 3600, 24 * 3600];

/** trailPath is the history request for the last window seconds before now. */
export function trailPath(id: string, window: number, now: number, simplifyM = 10): string {
  const to = Math.floor(now);
  return `/v1/trucks/${encodeURIComponent(id)}/history?format=geojson&simplify_m=${simplifyM}&from=${to - window}&to=${to}`;
}

/** tripsPath is the trips request for the same window. */
export function tripsPath(id: string, window: number, now: number): string {
  const to = Math.floor(now);
  return `/v1/trucks/${encodeURIComponent(id)}/trips?from=${to - window}&to=${to}`;
}

const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** parseTrail reads a history GeoJSON Feature; null when it is not one. */
export function parseTrail(v: unknown): Trail | null {
  const f = v as { type?: string; geometry?: { type?: string; coordinates?: unknown } | null; properties?: Record<string, unknown> };
  if (!f || f.type !== 'Feature' || !f.properties || typeof f.properties.id !== 'string') return null;
  const times = f.properties.times;
  if (!Array.isArray(times) || !times.every(num)) return null;
  let coords: [number, number][] = [];
  const g = f.geometry;
  if (g && g.type === 'LineString' && Array.isArray(g.coordinates)) coords = g.coordinates as [number, number][];
  else if (g && g.type === 'Point' && Array.isArray(g.coordinates)) coords = [g.coordinates as [number, number]];
  else if (g) return null;
  if (coords.length !== times.length || !coords.every((c) => Array.isArray(c) && num(c[0]) && num(c[1]))) return null;
  return { id: f.properties.id, coords, times: times as number[], points: num(f.properties.points) ? f.properties.points : times.length };
}

/** parseTrips reads a trips answer. */
export function parseTrips(v: unknown): { trips: Trip[]; stops: Stop[] } | null {
  const r = v as { trips?: unknown; stops?: unknown };
  if (!r || !Array.isArray(r.trips) || !Array.isArray(r.stops)) return null;
  const trips: Trip[] = [];
  for (const t of r.trips as Record<string, unknown>[]) {
    if (!num(t.start_ts) || !num(t.end_ts) || !num(t.distance_m) || !num(t.max_speed)) return null;
    trips.push({ start: t.start_ts, end: t.end_ts, distanceM: t.distance_m, maxSpeed: t.max_speed });
  }
  const stops: Stop[] = [];
  for (const s of r.stops as Record<string, unknown>[]) {
    if (!num(s.start_ts) || !num(s.end_ts) || !num(s.lat) || !num(s.lon)) return null;
    stops.push({ start: s.start_ts, end: s.end_ts, lat: s.lat, lon: s.lon });
  }
  return { trips, stops };
}

/**
 * positionAt is where the trail puts the truck at time t: linear between
 * the two points around t, the first or last point outside the trail.
 * null for an empty trail.
 */
export function positionAt(tr: Trail, t: number): [number, number] | null {
  const n = tr.times.length;
  if (n === 0) return null;
  if (t <= tr.times[0]) return tr.coords[0];
  if (t >= tr.times[n - 1]) return tr.coords[n - 1];
  let lo = 0;
  let hi = n - 1; // times[lo] <= t < times[hi]
  while (hi - lo > 1) {
    const m = (lo + hi) >> 1;
    if (tr.times[m] <= t) lo = m;
    else hi = m;
  }
  const [t0, t1] = [tr.times[lo], tr.times[hi]];
  const f = t1 === t0 ? 0 : (t - t0) / (t1 - t0);
  const [a, b] = [tr.coords[lo], tr.coords[hi]];
  let dLon = b[0] - a[0];
  if (dLon > 180) dLon -= 360; // the short way across the antimeridian
  if (dLon < -180) dLon += 360;
  let lon = a[0] + f * dLon;
  if (lon > 180) lon -= 360;
  if (lon < -180) lon += 360;
  return [lon, a[1] + f * (b[1] - a[1])];
}

/** fmtDuration writes seconds as "1 h 05 min", "12 min", "40 s". */
export function fmtDuration(s: number): string {
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

// The density grid from GET /v1/density: decoding its two wire forms and
// turning it into map features. Pure functions; unit-tested.
//
// Binary form (Content-Type application/x-fleetd-density), little-endian,
// as internal/web/doc.go draws it:
//
//	0       4        8             16             24
//	| "FDN1" | n u32 | cell_deg f64 | total u64    |
//	then n × | min_lat f32 | min_lon f32 | count u32 |   (12 bytes each)

import type { Feature, FeatureCollection, Polygon } from 'geojson';
import { nearLon } from './geo';

/** A decoded density grid: cell i has south-west corner (lat[i], lon[i]),
 * side cellDeg degrees, and count[i] trucks. */
export interface DensityGrid {
  cellDeg: number;
  total: number;
  lat: Float64Array;
  lon: Float64Array;
  count: Uint32Array;
}

export const DENSITY_MAGIC = 'FDN1';
const HEADER = 24;
const CELL = 12;

/** decodeDensity parses the binary form; it throws on a malformed buffer
 * rather than drawing garbage. */
export function decodeDensity(buf: ArrayBuffer): DensityGrid {
  if (buf.byteLength < HEADER) throw new Error(`density: ${buf.byteLength}-byte answer is shorter than its header`);
  const dv = new DataView(buf);
  const magic = String.fromCharCode(dv.getUint8(0), dv.getUint8(1), dv.getUint8(2), dv.getUint8(3));
  if (magic !== DENSITY_MAGIC) throw new Error(`density: bad magic ${JSON.stringify(magic)}`);
  const n = dv.getUint32(4, true);
  const cellDeg = dv.getFloat64(8, true);
  const total = Number(dv.getBigUint64(16, true));
  if (buf.byteLength !== HEADER + n * CELL) {
    throw new Error(`density: ${n} cells need ${HEADER + n * CELL} bytes, got ${buf.byteLength}`);
  }
  if (!(cellDeg > 0)) throw new Error(`density: cell size ${cellDeg}`);
  const g: DensityGrid = { cellDeg, total, lat: new Float64Array(n), lon: new Float64Array(n), count: new Uint32Array(n) };
  for (let i = 0, o = HEADER; i < n; i++, o += CELL) {
    g.lat[i] = dv.getFloat32(o, true);
    g.lon[i] = dv.getFloat32(o + 4, true);
    g.count[i] = dv.getUint32(o + 8, true);
  }
  return g;
}

/** parseDensityJSON accepts the JSON form {"cell_deg", "total", "cells":
 * [[minLat, minLon, count], …]}. */
export function parseDensityJSON(j: unknown): DensityGrid {
  const o = j as { cell_deg?: unknown; total?: unknown; cells?: unknown };
  if (typeof o !== 'object' || o === null || typeof o.cell_deg !== 'number' || !Array.isArray(o.cells)) {
    throw new Error('density: JSON answer lacks cell_deg or cells');
  }
  const cells = o.cells as unknown[];
  const n = cells.length;
  const g: DensityGrid = { cellDeg: o.cell_deg, total: 0, lat: new Float64Array(n), lon: new Float64Array(n), count: new Uint32Array(n) };
  for (let i = 0; i < n; i++) {
    const c = cells[i] as number[];
    if (!Array.isArray(c) || c.length < 3) throw new Error(`density: cell ${i} is not [minLat, minLon, count]`);
    g.lat[i] = c[0];
    g.lon[i] = c[1];
    g.count[i] = c[2];
    g.total += c[2];
  }
  if (typeof o.total === 'number') g.total = o.total;
  return g;
}

/** MERC_LAT is the latitude where Web Mercator ends; cells are clipped to it. */
export const MERC_LAT = 85.0511;

/** densityFeatures returns one square per cell, its longitudes moved to the
 * world copy centred on refLon, with properties count and t: the count on a
 * log scale from the smallest cell in view (0) to the largest (1), which
 * the style maps to colour. min and max are those two counts. */
export function densityFeatures(g: DensityGrid, refLon: number): FeatureCollection<Polygon> & { min: number; max: number } {
  let max = 0;
  let min = Infinity;
  for (let i = 0; i < g.count.length; i++) {
    if (g.count[i] > max) max = g.count[i];
    if (g.count[i] < min) min = g.count[i];
  }
  const lmin = Math.log(Math.max(1, min));
  const span = Math.log(Math.max(1, max)) - lmin;
  const d = g.cellDeg;
  const features: Feature<Polygon>[] = [];
  for (let i = 0; i < g.count.length; i++) {
    const s = Math.max(-MERC_LAT, g.lat[i]);
    const n = Math.min(MERC_LAT, g.lat[i] + d);
    if (s >= n) continue;
    const w = nearLon(g.lon[i] + d / 2, refLon) - d / 2;
    const e = w + d;
    const c = g.count[i];
    features.push({
      type: 'Feature',
      properties: { count: c, t: span > 0 ? (Math.log(Math.max(1, c)) - lmin) / span : 1 },
      geometry: { type: 'Polygon', coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] },
    });
  }
  return { type: 'FeatureCollection', features, min: max > 0 ? min : 0, max };
}

/** densityAt returns the count of the cell containing (lat, lon), 0 if none. */
export function densityAt(g: DensityGrid, lat: number, lon: number): number {
  for (let i = 0; i < g.count.length; i++) {
    if (lat < g.lat[i] || lat >= g.lat[i] + g.cellDeg) continue;
    const dl = (((lon - g.lon[i]) % 360) + 360) % 360;
    if (dl < g.cellDeg) return g.count[i];
  }
  return 0;
}

/** fleetBounds returns the box [west, south, east, north] holding the
 * central frac of the trucks in each direction (weighted quantiles of the
 * cell coordinates, so a few far-away trucks do not zoom the first view
 * out to the whole world), or null for an empty grid. */
export function fleetBounds(g: DensityGrid, frac = 0.98): [number, number, number, number] | null {
  const n = g.count.length;
  if (n === 0 || g.total <= 0) return null;
  const tail = (1 - frac) / 2;
  const quantiles = (coord: Float64Array): [number, number] => {
    const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => coord[a] - coord[b]);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += g.count[i];
    let acc = 0;
    let lo = coord[idx[0]];
    let hi = coord[idx[n - 1]];
    let loSet = false;
    for (const i of idx) {
      acc += g.count[i];
      if (!loSet && acc > tail * sum) {
        lo = coord[i];
        loSet = true;
      }
      if (acc >= (1 - tail) * sum) {
        hi = coord[i];
        break;
      }
    }
    return [lo, hi + g.cellDeg];
  };
  const [south, north] = quantiles(g.lat);
  const [west, east] = quantiles(g.lon);
  return [west, Math.max(-MERC_LAT, south), Math.min(180, east), Math.min(MERC_LAT, north)];
}

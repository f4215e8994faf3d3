// Viewport arithmetic: turning what the map shows into the bbox the API
// takes, and API coordinates back into the map's (possibly wrapped) world
// copy. Pure functions; unit-tested.

/** A viewport as MapLibre reports it: longitudes may run past ±180 when the
 * map shows more than one copy of the world or is panned across the
 * antimeridian. */
export interface Bounds {
  west: number;
  south: number;
  east: number;
  north: number;
}

/** An API bbox: minLon > maxLon means it crosses the antimeridian. */
export interface BBox {
  minLon: number;
  minLat: number;
  maxLon: number;
  maxLat: number;
}

/** wrapLon maps any longitude into [-180, 180). */
export function wrapLon(lon: number): number {
  const w = ((((lon + 180) % 360) + 360) % 360) - 180;
  return w === 180 ? -180 : w;
}

const clampLat = (lat: number) => Math.max(-90, Math.min(90, lat));

/** toBBox converts a viewport into an API bbox: the whole longitude range
 * when the view spans 360° or more, else its longitudes wrapped into
 * [-180, 180] (minLon > maxLon when it crosses the antimeridian). */
export function toBBox(b: Bounds): BBox {
  const minLat = clampLat(Math.min(b.south, b.north));
  const maxLat = clampLat(Math.max(b.south, b.north));
  if (b.east - b.west >= 360) return { minLon: -180, minLat, maxLon: 180, maxLat };
  let minLon = wrapLon(b.west);
  let maxLon = wrapLon(b.east);
  if (maxLon === -180 && b.east > b.west) maxLon = 180; // east edge exactly on the antimeridian
  if (minLon === maxLon && b.east > b.west) return { minLon: -180, minLat, maxLon: 180, maxLat };
  return { minLon, minLat, maxLon, maxLat };
}

/** bboxParam renders a bbox as the query value "minLon,minLat,maxLon,maxLat"
 * with at most 6 decimals (about 10 cm). */
export function bboxParam(b: BBox): string {
  const f = (v: number) => String(Math.round(v * 1e6) / 1e6);
  return `${f(b.minLon)},${f(b.minLat)},${f(b.maxLon)},${f(b.maxLat)}`;
}

/** bboxContains reports whether the point lies in the bbox, edges included. */
export function bboxContains(b: BBox, lat: number, lon: number): boolean {
  if (lat < b.minLat || lat > b.maxLat) return false;
  if (b.minLon <= b.maxLon) return lon >= b.minLon && lon <= b.maxLon;
  return lon >= b.minLon || lon <= b.maxLon;
}

/** bboxCovers reports whether outer contains the whole of inner (both
 * possibly crossing the antimeridian). */
export function bboxCovers(outer: BBox, inner: BBox): boolean {
  if (inner.minLat < outer.minLat || inner.maxLat > outer.maxLat) return false;
  const span = (b: BBox) => (b.minLon <= b.maxLon ? b.maxLon - b.minLon : 360 - (b.minLon - b.maxLon));
  if (span(outer) >= 360) return true;
  if (span(inner) > span(outer)) return false;
  const off = (((inner.minLon - outer.minLon) % 360) + 360) % 360;
  return off + span(inner) <= span(outer) + 1e-9;
}

/** padBBox grows a bbox by frac of its size on every side (clamped to the
 * world), so small pans stay inside what was fetched. */
export function padBBox(b: BBox, frac: number): BBox {
  const w = b.minLon <= b.maxLon ? b.maxLon - b.minLon : 360 - (b.minLon - b.maxLon);
  const h = b.maxLat - b.minLat;
  const minLat = clampLat(b.minLat - h * frac);
  const maxLat = clampLat(b.maxLat + h * frac);
  if (w * (1 + 2 * frac) >= 360) return { minLon: -180, minLat, maxLon: 180, maxLat };
  let minLon = b.minLon - w * frac;
  let maxLon = b.maxLon + w * frac;
  if (minLon < -180 || maxLon > 180 || b.minLon > b.maxLon) {
    minLon = wrapLon(minLon);
    maxLon = wrapLon(maxLon);
    if (maxLon === -180) maxLon = 180;
  }
  return { minLon, minLat, maxLon, maxLat };
}

/** nearLon returns lon shifted by a multiple of 360 so that it lies in
 * [ref - 180, ref + 180): the copy of the world the viewport centred on ref
 * shows. */
export function nearLon(lon: number, ref: number): number {
  return lon + 360 * Math.round((ref - lon) / 360);
}

// The trucks the page shows one by one when zoomed in: the latest known
// state of each truck in (or near) the viewport, fed by the live stream or
// by polling /v1/within, and drawn as map features. Pure logic; unit-tested.

import type { Feature, FeatureCollection, Point } from 'geojson';
import { bboxContains, nearLon, type BBox } from './geo';

/** A truck as the API reports it (GET /v1/trucks/{id}, /v1/within hits,
 * stream position events). speed in km/h, heading in degrees, ts in Unix s. */
export interface Truck {
  id: string;
  lat: number;
  lon: number;
  ts: number;
  speed: number;
  heading: number;
}

/** parseTruck validates one truck object from the API; null if it is not
 * one (the page never draws a half-understood record). */
export function parseTruck(o: unknown): Truck | null {
  if (typeof o !== 'object' || o === null) return null;
  const r = o as Record<string, unknown>;
  const { id, lat, lon } = r;
  if (typeof id !== 'string' || id === '' || typeof lat !== 'number' || typeof lon !== 'number') return null;
  if (!(lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180)) return null;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  return { id, lat, lon, ts: num(r.ts), speed: num(r.speed), heading: num(r.heading) };
}

/** Speed colour ramp, km/h → colour; shared by the map style and the legend. */
export const SPEED_STOPS: [number, string][] = [
  [0, '#8a94a6'],
  [5, '#4cc9f0'],
  [40, '#4ade80'],
  [80, '#facc15'],
  [110, '#fb923c'],
  [130, '#f43f5e'],
];

/** TruckSet holds the latest state of the trucks in view. Updates are
 * coalesced: any number of them between two draws cost one draw (the
 * dirty flag), which is how the page downsamples a fast feed. */
export class TruckSet {
  private m = new Map<string, Truck>();
  /** dirty is set by any change and cleared by features(). */
  dirty = false;

  get size(): number {
    return this.m.size;
  }

  get(id: string): Truck | undefined {
    return this.m.get(id);
  }

  /** upsert applies one report, latest wins by ts (an older report is
   * ignored, as the server's store does). It reports whether anything
   * changed. */
  upsert(t: Truck): boolean {
    const old = this.m.get(t.id);
    if (old) {
      if (t.ts < old.ts) return false;
      if (old.lat === t.lat && old.lon === t.lon && old.speed === t.speed && old.heading === t.heading && old.ts === t.ts) return false;
    }
    this.m.set(t.id, t);
    this.dirty = true;
    return true;
  }

  /** remove drops a truck (deleted or expired on the server). */
  remove(id: string): void {
    if (this.m.delete(id)) this.dirty = true;
  }

  /** replace makes the set exactly the given snapshot of a region (a poll
   * of /v1/within): trucks in the snapshot are upserted, trucks outside it
   * but inside region are dropped (they left or were deleted), and trucks
   * outside region are dropped too. */
  replace(list: Truck[], region: BBox): void {
    const seen = new Set<string>();
    for (const t of list) {
      seen.add(t.id);
      this.upsert(t);
    }
    for (const id of this.m.keys()) {
      if (!seen.has(id)) {
        this.m.delete(id);
        this.dirty = true;
      }
    }
    this.retain(region);
  }

  /** retain drops the trucks outside region. */
  retain(region: BBox): void {
    for (const [id, t] of this.m) {
      if (!bboxContains(region, t.lat, t.lon)) {
        this.m.delete(id);
        this.dirty = true;
      }
    }
  }

  clear(): void {
    if (this.m.size > 0) this.dirty = true;
    this.m.clear();
  }

  /** features returns the trucks as points in the world copy centred on
   * refLon, with the properties the style reads (id, speed, heading), and
   * clears dirty. */
  features(refLon: number): FeatureCollection<Point> {
    const features: Feature<Point>[] = [];
    for (const t of this.m.values()) {
      features.push({
        type: 'Feature',
        properties: { id: t.id, speed: t.speed, heading: t.heading },
        geometry: { type: 'Point', coordinates: [nearLon(t.lon, refLon), t.lat] },
      });
    }
    this.dirty = false;
    return { type: 'FeatureCollection', features };
  }

  values(): IterableIterator<Truck> {
    return this.m.values();
  }
}

// The live feed's events, alerts and zones as the page understands them.
// Stream events are internal/feed's: {"type":"position",…truck},
// {"type":"expired","id"}, {"type":"alert","rule","id","state",…} and
// {"type":"lag","dropped"}. The stream (GET /v1/stream), alerts (GET /v1/alerts) and zones
// (GET /v1/zones) land on the server after the dashboard, so these parsers
// accept the documented shapes and a few obvious variants, and ignore
// anything else rather than fail. Pure logic; unit-tested.

import type { Feature, FeatureCollection, MultiPolygon, Polygon, Position } from 'geojson';
import type { SSEEvent } from './sse';
import { parseTruck, type Truck } from './trucks';

/** An alert on one truck: firing until a resolving event arrives. */
export interface Alert {
  rule: string;
  id: string; // truck ID
  firing: boolean;
  since: number; // Unix s
  message: string;
}

export type FeedEvent =
  | { kind: 'position'; truck: Truck }
  | { kind: 'delete'; id: string }
  | { kind: 'alert'; alert: Alert }
  /** the server dropped events for this client: what it shows may be stale */
  | { kind: 'lag'; dropped: number };

const str = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');

/** parseAlert reads an alert object: {"rule","id","state":"firing"|"resolved",
 * "since"|"ts","message"}; "truck"/"truck_id" may name the truck, "name"
 * the rule, and "firing": bool the state. */
export function parseAlert(o: unknown): Alert | null {
  if (typeof o !== 'object' || o === null) return null;
  const r = o as Record<string, unknown>;
  const rule = str(r.rule ?? r.name ?? r.alert);
  const id = str(r.truck ?? r.truck_id ?? r.id);
  if (rule === '' || id === '') return null;
  let firing = true;
  if (typeof r.firing === 'boolean') firing = r.firing;
  const state = str(r.state ?? r.status).toLowerCase();
  if (state === 'resolved' || state === 'cleared' || state === 'ok' || state === 'inactive') firing = false;
  if (str(r.type) === 'alert_resolved') firing = false;
  const since = typeof r.since === 'number' ? r.since : typeof r.ts === 'number' ? r.ts : 0;
  return { rule, id, firing, since, message: str(r.message ?? r.text ?? r.description) };
}

/** parseFeedEvent reads one stream event; null for events the page does
 * not use (heartbeats, unknown types) or cannot read. */
export function parseFeedEvent(ev: SSEEvent): FeedEvent | null {
  let o: unknown;
  try {
    o = JSON.parse(ev.data);
  } catch {
    return null;
  }
  if (typeof o !== 'object' || o === null) return null;
  const r = o as Record<string, unknown>;
  const type = str(r.type) || ev.event;
  switch (type) {
    case 'position': {
      const t = parseTruck(r);
      return t ? { kind: 'position', truck: t } : null;
    }
    case 'delete':
    case 'deleted':
    case 'expire':
    case 'expired':
      return typeof r.id === 'string' ? { kind: 'delete', id: r.id } : null;
    case 'lag':
      return { kind: 'lag', dropped: typeof r.dropped === 'number' ? r.dropped : 0 };
    case 'alert':
    case 'alert_firing':
    case 'alert_resolved': {
      const a = parseAlert(r);
      return a ? { kind: 'alert', alert: a } : null;
    }
  }
  return null;
}

/** AlertBook keeps the alerts the page knows about: firing ones, and the
 * most recently resolved ones for the panel's history. */
export class AlertBook {
  private firing = new Map<string, Alert>();
  private recent: Alert[] = [];
  /** version increases on every change, so views redraw only when needed. */
  version = 0;
  /** total is how many fire on the server, as its last answer said, kept
   * current by the stream's transitions. */
  total = 0;

  /** keepFiring bounds the firing alerts kept: a fleet with 100,000 firing
   * must not cost the page 100,000 entries. Past it, new firing alerts from
   * the stream are counted in total but not kept. */
  constructor(
    private readonly keepResolved = 50,
    private readonly keepFiring = 2000,
  ) {}

  private key(a: Alert) {
    return `${a.rule}\u0000${a.id}`;
  }

  apply(a: Alert): void {
    const k = this.key(a);
    if (a.firing) {
      if (!this.firing.has(k)) {
        this.total++;
        if (this.firing.size >= this.keepFiring) {
          this.version++;
          return;
        }
      }
      this.firing.set(k, a);
    } else if (this.firing.delete(k)) {
      this.total = Math.max(this.total - 1, this.firing.size);
      this.recent.unshift(a);
      if (this.recent.length > this.keepResolved) this.recent.length = this.keepResolved;
    } else if (this.total > this.firing.size) {
      this.total--; // one of those counted but not kept
    } else {
      return;
    }
    this.version++;
  }

  /** replaceFiring makes the firing set exactly list (a GET /v1/alerts
   * answer), of total firing on the server (its count; list's length when
   * absent). */
  replaceFiring(list: Alert[], total?: number): void {
    this.firing.clear();
    for (const a of list) if (a.firing && this.firing.size < this.keepFiring) this.firing.set(this.key(a), a);
    this.total = Math.max(total ?? 0, this.firing.size);
    this.version++;
  }

  /** firingFor lists the alerts firing on one truck, by rule name. */
  firingFor(id: string): Alert[] {
    return [...this.firing.values()].filter((a) => a.id === id).sort((a, b) => (a.rule < b.rule ? -1 : a.rule > b.rule ? 1 : 0));
  }

  /** list returns firing alerts, newest first, then recently resolved ones. */
  list(): { firing: Alert[]; resolved: Alert[] } {
    return { firing: [...this.firing.values()].sort((a, b) => b.since - a.since || (a.id < b.id ? -1 : 1)), resolved: this.recent };
  }
}

/** alertCount reads the count of a GET /v1/alerts answer
 * ({"count": n, "alerts": […]}), undefined where it has none. */
export function alertCount(j: unknown): number | undefined {
  const c = typeof j === 'object' && j !== null ? (j as { count?: unknown }).count : undefined;
  return typeof c === 'number' && Number.isFinite(c) && c >= 0 ? c : undefined;
}

/** parseAlerts reads a GET /v1/alerts answer: {"alerts": [alert, …]} or a
 * bare array. */
export function parseAlerts(j: unknown): Alert[] {
  const arr = Array.isArray(j) ? j : typeof j === 'object' && j !== null && Array.isArray((j as { alerts?: unknown }).alerts) ? (j as { alerts: unknown[] }).alerts : [];
  return arr.map(parseAlert).filter((a): a is Alert => a !== null);
}

type Zone = Feature<Polygon | MultiPolygon, { name: string }>;

/** circle approximates a circle of radius m metres as a 64-gon. */
export function circle(lat: number, lon: number, m: number): Polygon {
  const ring: Position[] = [];
  const dLat = (m / 6371008.8) * (180 / Math.PI);
  const dLon = dLat / Math.max(0.01, Math.cos((lat * Math.PI) / 180));
  for (let i = 0; i <= 64; i++) {
    const a = (i % 64) * ((2 * Math.PI) / 64);
    ring.push([lon + dLon * Math.sin(a), lat + dLat * Math.cos(a)]);
  }
  return { type: 'Polygon', coordinates: [ring] };
}

/** parseZones reads a GET /v1/zones answer into outlines. Accepted: a
 * GeoJSON FeatureCollection; or {"zones": [zone, …]} (or a bare array)
 * where a zone has a "name" (or "id") and one of: "geometry" (GeoJSON
 * Polygon or MultiPolygon), "polygon"/"points" (a ring of [lon, lat]
 * pairs in GeoJSON order, or of {"lat","lon"} objects), or
 * "lat","lon","radius_m" (a circle). Zones it cannot read are skipped. */
export function parseZones(j: unknown): FeatureCollection<Polygon | MultiPolygon, { name: string }> {
  const out: Zone[] = [];
  const o = j as Record<string, unknown> | null;
  let list: unknown[] = [];
  if (Array.isArray(j)) list = j;
  else if (o && typeof o === 'object') {
    if (o.type === 'FeatureCollection' && Array.isArray(o.features)) list = o.features as unknown[];
    else if (Array.isArray(o.zones)) list = o.zones as unknown[];
  }
  for (const z of list) {
    if (typeof z !== 'object' || z === null) continue;
    const r = z as Record<string, unknown>;
    const props = (typeof r.properties === 'object' && r.properties !== null ? r.properties : {}) as Record<string, unknown>;
    const name = str(r.name ?? r.id ?? props.name ?? props.id);
    const g = zoneGeometry(r);
    if (g) out.push({ type: 'Feature', properties: { name }, geometry: g });
  }
  return { type: 'FeatureCollection', features: out };
}

function ring(v: unknown): Position[] | null {
  if (!Array.isArray(v) || v.length < 3) return null;
  const pts: Position[] = [];
  for (const p of v) {
    if (Array.isArray(p) && typeof p[0] === 'number' && typeof p[1] === 'number') pts.push([p[0], p[1]]);
    else if (typeof p === 'object' && p !== null && typeof (p as { lat?: unknown }).lat === 'number' && typeof (p as { lon?: unknown }).lon === 'number') {
      pts.push([(p as { lon: number }).lon, (p as { lat: number }).lat]);
    } else return null;
  }
  const [f, l] = [pts[0], pts[pts.length - 1]];
  if (f[0] !== l[0] || f[1] !== l[1]) pts.push([f[0], f[1]]);
  return pts;
}

function zoneGeometry(r: Record<string, unknown>): Polygon | MultiPolygon | null {
  const g = r.geometry as { type?: unknown; coordinates?: unknown } | undefined;
  if (g && (g.type === 'Polygon' || g.type === 'MultiPolygon') && Array.isArray(g.coordinates)) return g as Polygon | MultiPolygon;
  const pts = ring(r.polygon ?? r.points);
  if (pts) return { type: 'Polygon', coordinates: [pts] };
  if (typeof r.lat === 'number' && typeof r.lon === 'number' && typeof r.radius_m === 'number' && r.radius_m > 0) {
    return circle(r.lat, r.lon, r.radius_m);
  }
  return null;
}

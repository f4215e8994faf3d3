// The dashboard: a MapLibre map of the fleet with a density layer when
// zoomed out and individual trucks when zoomed in, a details panel for the
// selected truck, a search box, zones, alerts and the server's vital signs.
//
// Data flow (all from fleetd's own API, same origin, nothing else):
//
//	every view change and every 2 s   GET /v1/density  → density layer, and the
//	                                   mode: trucks when the view holds ≤ TRUCK_LIMIT
//	in trucks mode                     LiveFeed: /v1/within snapshot, then /v1/stream
//	                                   (or /v1/within polling) → TruckSet → trucks layer,
//	                                   redrawn at most every FLUSH_MS
//	every second                       GET /v1/stats → vital signs
//	selected truck, every second       GET /v1/trucks/{id} → details
//	selected truck, every 15 s         GET /v1/trucks/{id}/history (GeoJSON) and /trips
//	                                   → its trail, the playback slider, trips and stops
//	with the server's zones / alerts   GET /v1/zones, GET /v1/alerts
//
// window.__fleetd exposes the map and a few figures for the browser test
// (scripts/browser-test) and for debugging from the console.

import * as maplibregl from 'maplibre-gl';
import type { GeoJSONSource, MapGeoJSONFeature } from 'maplibre-gl';
import workerUrl from 'maplibre-gl/dist/maplibre-gl-worker.mjs?url';
import basemapUrl from '../generated/basemap.json?url';
import { Api, HttpError, isAbort } from './api';
import { arrowSDF } from './arrow';
import { BASEMAP_ATTRIBUTION, basemapGeoJSON, offlineStyle, type BasemapData } from './basemap';
import { drawSpark } from './chart';
import type { Config } from './config';
import { decodeDensity, densityFeatures, fleetBounds, type DensityGrid } from './density';
import { AlertBook, alertCount, parseAlerts, parseZones } from './events';
import { LiveFeed, type FeedStatus } from './feed';
import { fmtAge, fmtBytes, fmtCount, fmtHeading, fmtMs, fmtRate } from './format';
import { bboxContains, bboxParam, padBBox, toBBox, type BBox } from './geo';
import { parseTruck, SPEED_STOPS, TruckSet, type Truck } from './trucks';
import { fmtDuration, parseTrail, parseTrips, positionAt, trailPath, tripsPath, type Stop, type Trail, type Trip } from './trail';
import { History, parseStats, type Charted, type Vitals } from './vitals';
import { parseSinks, sinkSummary, type SinkRow } from './sinks';

/** Show trucks one by one when the view holds at most this many. */
export const TRUCK_LIMIT = 3000;
/** From this zoom on, always show trucks, never density cells. */
const TRUCKS_ZOOM = 10;
/** Redraw moved trucks at most this often (coalescing the feed). */
const FLUSH_MS = 250;
const DENSITY_MS = 2000;
const STATS_MS = 1000;
/** ALERTS_PAGE is how many firing alerts the panel asks for. */
const ALERTS_PAGE = 500;
const DETAILS_MS = 1000;
/** Refresh the selected truck's trail this often. */
const TRAIL_MS = 15000;
/** A playback of the whole trail lasts this long. */
const PLAY_MS = 10000;
/** Truck ID labels (HTML, no glyphs needed) from this zoom, for at most LABEL_MAX trucks. */
const LABEL_ZOOM = 12;
const LABEL_MAX = 120;
const CHART_WINDOW_MS = 5 * 60 * 1000;

const DENSITY_RAMP: [number, string][] = [
  [0, '#1e40af'],
  [0.35, '#0ea5e9'],
  [0.7, '#facc15'],
  [1, '#ef4444'],
];

type Mode = 'starting' | 'density' | 'trucks';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

function rampCSS(stops: [number, string][], max: number): string {
  return `linear-gradient(to right, ${stops.map(([v, c]) => `${c} ${(v / max) * 100}%`).join(', ')})`;
}

export class App {
  readonly map: maplibregl.Map;
  readonly api = new Api();
  readonly trucks = new TruckSet();
  readonly alerts = new AlertBook();
  readonly history = new History(300);
  private feed: LiveFeed;
  mode: Mode = 'starting';
  grid: DensityGrid | null = null;
  /** the parameters of the last density request, for the browser test */
  lastDensity = { bbox: '', zoom: 0 };
  firstDrawMs = 0;
  private densityRange: [number, number] = [0, 0];
  private truncated = false;
  selected: Truck | null = null;
  private selectedID: string | null = null;
  private refreshCtl: AbortController | null = null;
  private refreshTimer = 0;
  private refreshKey = '';
  private labels = new Map<string, maplibregl.Marker>();
  private feedStatus: { s: FeedStatus; detail: string } = { s: 'off', detail: '' };
  private alertsShown = -1;
  private loaded: Promise<void>;

  constructor(private readonly cfg: Config) {
    maplibregl.setWorkerUrl(workerUrl);
    this.api.onUnauthorized = () => ($('token').hidden = false);
    const offline = cfg.basemapStyle === '';
    this.map = new maplibregl.Map({
      container: 'map',
      style: offline ? offlineStyle(null, BASEMAP_ATTRIBUTION) : cfg.basemapStyle,
      center: [-97, 39],
      zoom: 3.3,
      hash: true,
      dragRotate: false,
      pitchWithRotate: false,
      touchPitch: false,
      maxPitch: 0,
      attributionControl: { compact: true },
      validateStyle: false,
      fadeDuration: 0,
    });
    this.map.touchZoomRotate.disableRotation();
    this.map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'bottom-right');
    this.map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-right');
    let fellBack = false;
    this.map.on('error', (e) => {
      // MapLibre logs errors nobody listens for; here they go to the status line.
      this.setMode(this.mode, `map error: ${e.error?.message ?? 'unknown'}`);
      console.warn('fleetd: map error', e.error);
      if (!offline && !fellBack && !this.map.isStyleLoaded()) {
        // The online style cannot be had (no network, bad URL): fall back
        // to the offline outlines rather than show nothing.
        fellBack = true;
        this.map.setStyle(offlineStyle(null, BASEMAP_ATTRIBUTION));
        this.map.once('style.load', () => this.loadBasemap().catch((err) => console.warn('fleetd: basemap', err)));
      }
    });
    this.feed = new LiveFeed(this.api, cfg.stream, {
      snapshot: (list, region, truncated) => {
        this.trucks.replace(list, region);
        this.truncated = truncated;
        this.modeLine();
      },
      position: (t) => {
        this.trucks.upsert(t);
        if (t.id === this.selectedID) this.showDetails(t);
      },
      remove: (id) => this.trucks.remove(id),
      alert: (a) => this.alerts.apply(a),
      status: (s, detail) => {
        this.feedStatus = { s, detail };
        this.modeLine();
      },
    }, { limit: TRUCK_LIMIT, pollMs: 1500, maxHz: 1 });

    this.loaded = new Promise((resolve) =>
      this.map.once('load', () => {
        performance.mark('fleetd:map-load');
        resolve();
      }),
    );
    const basemap = offline ? this.loadBasemap() : Promise.resolve();
    const firstView = window.location.hash ? Promise.resolve(null) : this.fleetExtent();
    this.loaded.then(() => {
      this.addLayers();
      this.bindMap();
      firstView.then((b) => {
        if (b) this.map.fitBounds(b, { padding: { top: 60, bottom: 40, left: 20, right: 320 }, animate: false, maxZoom: 9 });
        this.refresh();
      });
      basemap.catch((e) => console.warn('fleetd: basemap', e));
    });
    this.bindUI();
    this.legend();
    this.statsLoop();
    if (cfg.zones) this.zonesLoop();
    if (cfg.alerts) this.alertsLoop();
    this.renderAlerts();
    window.setInterval(() => this.flush(), FLUSH_MS);
    window.setInterval(() => this.tickDetails(), 1000);
  }

  // ---- map setup ----

  private async loadBasemap(): Promise<void> {
    const r = await fetch(basemapUrl);
    if (!r.ok) throw new Error(`basemap: ${r.status}`);
    const d = (await r.json()) as BasemapData;
    const g = basemapGeoJSON(d);
    await this.loaded;
    const set = (id: string, data: GeoJSON.GeoJSON) => this.map.getSource<GeoJSONSource>(id)?.setData(data);
    set('base-land', g.land);
    set('base-coast', g.coast);
    set('base-borders', g.borders);
    set('base-states', g.states);
    performance.mark('fleetd:basemap');
  }

  /** fleetExtent asks for the whole world's density at zoom 1 and returns
   * where the bulk of the fleet is, for the first view. */
  private async fleetExtent(): Promise<[number, number, number, number] | null> {
    try {
      const g = decodeDensity(await this.api.bytes('/v1/density?bbox=-180,-90,180,90&zoom=1&format=bin'));
      return fleetBounds(g, 0.98);
    } catch (e) {
      if (!isAbort(e)) this.setMode(this.mode, `density: ${e instanceof Error ? e.message : e}`);
      return null;
    }
  }

  private addLayers(): void {
    const m = this.map;
    const empty: GeoJSON.FeatureCollection = { type: 'FeatureCollection', features: [] };
    m.addImage('truck-arrow', arrowSDF(48, 8), { sdf: true, pixelRatio: 2 });
    m.addSource('zones', { type: 'geojson', data: empty });
    m.addSource('density', { type: 'geojson', data: empty, buffer: 0, tolerance: 0 });
    m.addSource('trucks', { type: 'geojson', data: empty, buffer: 16 });
    m.addSource('selected', { type: 'geojson', data: empty });
    m.addSource('trail', { type: 'geojson', data: empty });
    m.addSource('trail-head', { type: 'geojson', data: empty });
    m.addLayer({ id: 'zones-fill', type: 'fill', source: 'zones', paint: { 'fill-color': '#a78bfa', 'fill-opacity': 0.08 } });
    m.addLayer({ id: 'zones-line', type: 'line', source: 'zones', paint: { 'line-color': '#a78bfa', 'line-width': 1.5, 'line-dasharray': [3, 2] } });
    m.addLayer({
      id: 'density',
      type: 'fill',
      source: 'density',
      paint: {
        'fill-color': ['interpolate', ['linear'], ['get', 't'], ...DENSITY_RAMP.flat()] as unknown as maplibregl.ExpressionSpecification,
        'fill-opacity': 0.78,
        'fill-antialias': false,
      },
    });
    m.addLayer({
      id: 'trail',
      type: 'line',
      source: 'trail',
      filter: ['==', ['geometry-type'], 'LineString'],
      layout: { 'line-join': 'round', 'line-cap': 'round' },
      paint: { 'line-color': '#38bdf8', 'line-width': 3, 'line-opacity': 0.85 },
    });
    m.addLayer({
      id: 'trail-stops',
      type: 'circle',
      source: 'trail',
      filter: ['==', ['geometry-type'], 'Point'],
      paint: { 'circle-radius': 6, 'circle-color': '#f59e0b', 'circle-stroke-color': '#0b1220', 'circle-stroke-width': 1.5 },
    });
    m.addLayer({
      id: 'trail-head',
      type: 'circle',
      source: 'trail-head',
      paint: { 'circle-radius': 7, 'circle-color': '#38bdf8', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2 },
    });
    m.addLayer({
      id: 'selected',
      type: 'circle',
      source: 'selected',
      paint: { 'circle-radius': 16, 'circle-color': 'rgba(0,0,0,0)', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2 },
    });
    m.addLayer({
      id: 'trucks',
      type: 'symbol',
      source: 'trucks',
      layout: {
        'icon-image': 'truck-arrow',
        'icon-rotate': ['get', 'heading'],
        'icon-rotation-alignment': 'map',
        'icon-allow-overlap': true,
        'icon-ignore-placement': true,
        'icon-size': ['interpolate', ['linear'], ['zoom'], 4, 0.45, 10, 0.8, 14, 1.1],
      },
      paint: {
        'icon-color': ['interpolate', ['linear'], ['get', 'speed'], ...SPEED_STOPS.flat()] as unknown as maplibregl.ExpressionSpecification,
        'icon-halo-color': 'rgba(5, 10, 20, 0.9)',
        'icon-halo-width': 1.2,
      },
    });
  }

  private bindMap(): void {
    const m = this.map;
    let debounce = 0;
    m.on('moveend', () => {
      window.clearTimeout(debounce);
      debounce = window.setTimeout(() => this.refresh(), 120);
      this.trucks.dirty = true; // the world copy in view may have changed
    });
    m.on('click', (e) => this.onClick(e.point));
    m.on('mouseenter', 'trucks', () => (m.getCanvas().style.cursor = 'pointer'));
    m.on('mouseleave', 'trucks', () => (m.getCanvas().style.cursor = ''));
    m.on('mouseenter', 'density', () => (m.getCanvas().style.cursor = 'zoom-in'));
    m.on('mouseleave', 'density', () => (m.getCanvas().style.cursor = ''));
  }

  // ---- what the map shows ----

  private viewBBox(): BBox {
    const b = this.map.getBounds();
    return toBBox({ west: b.getWest(), south: b.getSouth(), east: b.getEast(), north: b.getNorth() });
  }

  /** refresh fetches the density for the view and picks the mode. */
  async refresh(): Promise<void> {
    window.clearTimeout(this.refreshTimer);
    this.refreshTimer = window.setTimeout(() => this.refresh(), DENSITY_MS);
    if (document.hidden && this.mode !== 'starting') return;
    const view = this.viewBBox();
    const zoom = Math.round(this.map.getZoom() * 100) / 100;
    const bbox = bboxParam(view);
    const key = `${bbox}@${zoom}`;
    // A request for this very view is under way (a moveend right after a
    // direct call): let it finish rather than start over.
    if (this.refreshCtl && !this.refreshCtl.signal.aborted && this.refreshKey === key) return;
    this.refreshCtl?.abort();
    const ctl = new AbortController();
    this.refreshCtl = ctl;
    this.refreshKey = key;
    let g: DensityGrid;
    try {
      g = decodeDensity(await this.api.bytes(`/v1/density?bbox=${bbox}&zoom=${zoom}&format=bin`, ctl.signal));
    } catch (e) {
      if (this.refreshCtl === ctl) this.refreshCtl = null;
      if (!isAbort(e)) this.setMode(this.mode, `density: ${e instanceof Error ? e.message : e}`);
      return;
    }
    if (ctl.signal.aborted) return;
    this.refreshCtl = null;
    if (this.firstDrawMs === 0) performance.mark('fleetd:density');
    this.grid = g;
    this.lastDensity = { bbox, zoom };
    const center = this.map.getCenter().lng;
    // Zoomed in this far the view is smaller than a density cell: show the
    // trucks themselves (the first TRUCK_LIMIT of them if there are more).
    const closeUp = zoom >= TRUCKS_ZOOM;
    if (g.total <= TRUCK_LIMIT || closeUp) {
      this.map.getSource<GeoJSONSource>('density')?.setData({ type: 'FeatureCollection', features: [] });
      this.feed.setRegion(closeUp && g.total > TRUCK_LIMIT ? view : padBBox(view, 0.15));
      this.setMode('trucks');
    } else {
      this.feed.setRegion(null);
      this.trucks.clear();
      this.trucks.dirty = true;
      const fc = densityFeatures(g, center);
      this.map.getSource<GeoJSONSource>('density')?.setData(fc);
      this.densityRange = [fc.min, fc.max];
      this.setMode('density');
      this.legend();
    }
    this.flush();
    if (this.firstDrawMs === 0) {
      this.map.once('idle', () => {
        if (this.firstDrawMs === 0) {
          this.firstDrawMs = performance.now();
          performance.mark('fleetd:first-draw');
          document.body.dataset.firstDraw = String(Math.round(this.firstDrawMs));
        }
      });
      this.map.triggerRepaint();
    }
  }

  private setMode(mode: Mode, note = ''): void {
    if (mode !== this.mode) {
      this.mode = mode;
      document.body.dataset.mode = mode;
      this.legend();
    }
    this.modeLine(note);
  }

  private modeLine(note = ''): void {
    const el = $('mode');
    const g = this.grid;
    let s = '';
    if (this.mode === 'density' && g) {
      s = `Density · ${g.cellDeg}° cells · ${fmtCount(g.total)} trucks in view`;
    } else if (this.mode === 'trucks') {
      const f = this.feedStatus;
      const how = f.s === 'live' ? 'live' : f.s === 'polling' ? `polling ${f.detail}` : f.s === 'reconnecting' ? `reconnecting (${f.detail})` : f.s;
      const view = this.viewBBox();
      let n = 0;
      for (const t of this.trucks.values()) if (bboxContains(view, t.lat, t.lon)) n++;
      s = `Trucks · ${fmtCount(n)} in view${this.truncated ? ` (the first ${fmtCount(TRUCK_LIMIT)}: zoom in for all)` : ''} · ${how}`;
    } else {
      s = 'Loading…';
    }
    el.textContent = note ? `${s} · ${note}` : s;
    el.classList.toggle('error', note !== '');
  }

  /** flush redraws the trucks if any moved since the last draw. */
  private flush(): void {
    if (!this.trucks.dirty) return;
    const src = this.map.getSource<GeoJSONSource>('trucks');
    if (!src) return;
    // Outside trucks mode the set is empty: this draws nothing, once.
    src.setData(this.trucks.features(this.map.getCenter().lng));
    this.updateLabels();
    if (this.selected) this.markSelected(this.trucks.get(this.selected.id) ?? this.selected);
  }

  private updateLabels(): void {
    const want = new Map<string, Truck>();
    if (this.mode === 'trucks' && this.map.getZoom() >= LABEL_ZOOM) {
      const view = this.viewBBox();
      for (const t of this.trucks.values()) {
        if (bboxContains(view, t.lat, t.lon)) want.set(t.id, t);
        if (want.size > LABEL_MAX) break;
      }
      if (want.size > LABEL_MAX) want.clear();
    }
    // The selected truck keeps its label whenever trucks are drawn.
    const sel = this.selected && (this.trucks.get(this.selected.id) ?? this.selected);
    if (sel && this.mode === 'trucks') want.set(sel.id, sel);
    for (const [id, mk] of this.labels) {
      if (!want.has(id)) {
        mk.remove();
        this.labels.delete(id);
      }
    }
    for (const [id, t] of want) {
      let mk = this.labels.get(id);
      if (!mk) {
        const el = document.createElement('div');
        el.className = 'truck-label';
        el.textContent = id;
        mk = new maplibregl.Marker({ element: el, anchor: 'top', offset: [0, 12] });
        mk.setLngLat([t.lon, t.lat]).addTo(this.map);
        this.labels.set(id, mk);
      } else {
        mk.setLngLat([t.lon, t.lat]);
      }
    }
  }

  private onClick(p: maplibregl.Point): void {
    const m = this.map;
    const r = 10;
    const box: [maplibregl.PointLike, maplibregl.PointLike] = [[p.x - r, p.y - r], [p.x + r, p.y + r]];
    const hits = m.getLayer('trucks') ? m.queryRenderedFeatures(box, { layers: ['trucks'] }) : [];
    if (hits.length > 0) {
      let best: MapGeoJSONFeature = hits[0];
      let bestD = Infinity;
      for (const f of hits) {
        const c = (f.geometry as GeoJSON.Point).coordinates;
        const q = m.project([c[0], c[1]]);
        const d = Math.hypot(q.x - p.x, q.y - p.y);
        if (d < bestD) [best, bestD] = [f, d];
      }
      this.select(String(best.properties.id));
      return;
    }
    if (this.mode === 'density' && m.getLayer('density')) {
      const cells = m.queryRenderedFeatures([p.x, p.y], { layers: ['density'] });
      if (cells.length > 0) {
        const ring = (cells[0].geometry as GeoJSON.Polygon).coordinates[0];
        m.fitBounds([ring[0] as [number, number], ring[2] as [number, number]], { padding: 40, maxZoom: Math.max(m.getZoom() + 2, 6) });
        return;
      }
    }
    this.select(null);
  }

  // ---- the selected truck ----

  /** select opens the details of a truck (null closes them). */
  select(id: string | null, known?: Truck): void {
    this.selectedID = id;
    this.selected = null;
    $('details').hidden = id === null;
    $('details-msg').textContent = '';
    this.markSelected(null);
    this.clearTrail();
    if (id === null) return;
    $('details-id').textContent = id;
    const t = known ?? this.trucks.get(id);
    if (t) this.showDetails(t);
    this.fetchDetails();
    this.fetchTrail();
  }

  // ---- the selected truck's trail, trips and stops ----

  /** trail of the selected truck, with its trips and stops (browser test) */
  trail: Trail | null = null;
  trips: Trip[] = [];
  stops: Stop[] = [];
  trailWindow = 3600;
  private lastTrailFetch = 0;
  private playing = 0; // the playback's interval timer, 0 when stopped

  private clearTrail(): void {
    this.stopPlay();
    this.trail = null;
    this.trips = [];
    this.stops = [];
    this.map.getSource<GeoJSONSource>('trail')?.setData({ type: 'FeatureCollection', features: [] });
    this.map.getSource<GeoJSONSource>('trail-head')?.setData({ type: 'FeatureCollection', features: [] });
    const slider = $<HTMLInputElement>('trail-slider');
    slider.min = slider.max = slider.value = '0';
    slider.disabled = true;
    $('trail-time').textContent = '';
    $('trail-summary').textContent = '';
    $('trail-summary').dataset.value = '0';
    $('trail-stops').replaceChildren();
  }

  private async fetchTrail(): Promise<void> {
    const id = this.selectedID;
    if (!id) return;
    this.lastTrailFetch = performance.now();
    const now = Date.now() / 1000;
    try {
      const [g, tr] = await Promise.all([this.api.json(trailPath(id, this.trailWindow, now)), this.api.json(tripsPath(id, this.trailWindow, now))]);
      if (id !== this.selectedID) return;
      const trail = parseTrail(g);
      const ts = parseTrips(tr);
      if (!trail || !ts) throw new Error('unexpected answer');
      this.showTrail(trail, ts.trips, ts.stops);
      $('trail-msg').textContent = '';
    } catch (e) {
      if (id !== this.selectedID) return;
      $('trail-msg').textContent = e instanceof HttpError && e.status === 404 ? 'no history on this server' : `trail: ${e instanceof Error ? e.message : e}`;
    }
  }

  private showTrail(trail: Trail, trips: Trip[], stops: Stop[]): void {
    const slider = $<HTMLInputElement>('trail-slider');
    const atEnd = !this.trail || Number(slider.value) >= Number(slider.max);
    this.trail = trail;
    this.trips = trips;
    this.stops = stops;
    const features: GeoJSON.Feature[] = [];
    if (trail.coords.length >= 2) features.push({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: trail.coords } });
    for (const s of stops) features.push({ type: 'Feature', properties: { start: s.start, end: s.end }, geometry: { type: 'Point', coordinates: [s.lon, s.lat] } });
    this.map.getSource<GeoJSONSource>('trail')?.setData({ type: 'FeatureCollection', features });
    const n = trail.times.length;
    slider.disabled = n < 2;
    if (n > 0) {
      slider.min = String(trail.times[0]);
      slider.max = String(trail.times[n - 1]);
      if (atEnd) slider.value = slider.max;
    }
    this.moveHead();
    const km = trips.reduce((sum, t) => sum + t.distanceM, 0) / 1000;
    const sum = $('trail-summary');
    sum.textContent = `${fmtCount(trail.points)} points · ${trips.length} trip${trips.length === 1 ? '' : 's'}, ${km.toFixed(1)} km · ${stops.length} stop${stops.length === 1 ? '' : 's'}`;
    sum.dataset.value = String(trail.points);
    const list = $('trail-stops');
    list.replaceChildren();
    for (const s of stops.slice(-5).reverse()) {
      const li = document.createElement('li');
      const hm = (t: number) => new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      li.textContent = `stopped ${hm(s.start)}–${hm(s.end)} (${fmtDuration(s.end - s.start)})`;
      list.append(li);
    }
  }

  /** moveHead puts the playback marker where the slider's time says. */
  private moveHead(): void {
    const src = this.map.getSource<GeoJSONSource>('trail-head');
    const slider = $<HTMLInputElement>('trail-slider');
    const at = Number(slider.value);
    const p = this.trail && positionAt(this.trail, at);
    src?.setData({ type: 'FeatureCollection', features: p ? [{ type: 'Feature', properties: { t: at }, geometry: { type: 'Point', coordinates: p } }] : [] });
    const el = $('trail-time');
    el.textContent = p ? new Date(at * 1000).toLocaleTimeString() : '';
    el.dataset.value = p ? `${at},${p[1]},${p[0]}` : '';
  }

  private togglePlay(): void {
    if (this.playing) {
      this.stopPlay();
      return;
    }
    const slider = $<HTMLInputElement>('trail-slider');
    if (!this.trail || slider.disabled) return;
    const [lo, hi] = [Number(slider.min), Number(slider.max)];
    if (Number(slider.value) >= hi) slider.value = String(lo);
    const step = Math.max(1, (hi - lo) / (PLAY_MS / 50));
    $('trail-play').textContent = '⏸';
    this.playing = window.setInterval(() => {
      const v = Math.min(hi, Number(slider.value) + step);
      slider.value = String(v);
      this.moveHead();
      if (v >= hi) this.stopPlay();
    }, 50);
  }

  private stopPlay(): void {
    window.clearInterval(this.playing);
    this.playing = 0;
    $('trail-play').textContent = '▶';
  }

  private async fetchDetails(): Promise<void> {
    const id = this.selectedID;
    if (!id) return;
    try {
      const t = parseTruck(await this.api.json(`/v1/trucks/${encodeURIComponent(id)}`));
      if (t && t.id === this.selectedID) {
        this.trucks.upsert(t);
        if (!this.selected || t.ts >= this.selected.ts) this.showDetails(t);
      }
    } catch (e) {
      if (id !== this.selectedID) return;
      $('details-msg').textContent = e instanceof HttpError && e.status === 404 ? 'This truck is no longer tracked.' : `Could not refresh: ${e instanceof Error ? e.message : e}`;
    }
  }

  private lastDetailsFetch = 0;
  private tickDetails(): void {
    if (!this.selectedID) return;
    if (performance.now() - this.lastTrailFetch >= TRAIL_MS && !document.hidden && !this.playing) this.fetchTrail();
    if (this.selected) this.renderAge(this.selected);
    const now = performance.now();
    if (now - this.lastDetailsFetch >= DETAILS_MS && !document.hidden) {
      this.lastDetailsFetch = now;
      this.fetchDetails();
    }
  }

  private showDetails(t: Truck): void {
    if (this.selected && t.ts < this.selected.ts) return;
    this.selected = t;
    const set = (field: string, text: string, value: string | number) => {
      const el = document.querySelector<HTMLElement>(`#details [data-field="${field}"]`)!;
      el.textContent = text;
      el.dataset.value = String(value);
    };
    set('id', t.id, t.id);
    set('speed', `${t.speed.toFixed(1)} km/h`, t.speed);
    set('heading', fmtHeading(t.heading), t.heading);
    set('position', `${t.lat.toFixed(5)}, ${t.lon.toFixed(5)}`, `${t.lat},${t.lon}`);
    this.renderAge(t);
    const firing = this.alerts.firingFor(t.id);
    const al = document.querySelector<HTMLElement>('#details [data-field="alerts"]')!;
    al.replaceChildren();
    al.dataset.value = String(firing.length);
    if (firing.length === 0) al.textContent = 'none firing';
    for (const a of firing) {
      const s = document.createElement('span');
      s.className = 'alert';
      s.textContent = a.message ? `${a.rule}: ${a.message}` : a.rule;
      al.append(s);
    }
    this.markSelected(t);
  }

  private renderAge(t: Truck): void {
    const el = document.querySelector<HTMLElement>('#details [data-field="age"]')!;
    const age = Date.now() / 1000 - t.ts;
    el.textContent = t.ts > 0 ? `${fmtAge(age)} ago` : 'unknown';
    el.title = t.ts > 0 ? new Date(t.ts * 1000).toISOString() : '';
    el.dataset.value = String(t.ts);
  }

  private markSelected(t: Truck | null): void {
    const src = this.map.getSource<GeoJSONSource>('selected');
    if (!src) return;
    src.setData({
      type: 'FeatureCollection',
      features: t ? [{ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: [t.lon, t.lat] } }] : [],
    });
  }

  /** find looks a truck up by ID and flies there. */
  async find(id: string): Promise<boolean> {
    const msg = $('search-msg');
    msg.classList.remove('error');
    id = id.trim();
    if (id === '') return false;
    msg.textContent = 'Searching…';
    try {
      const t = parseTruck(await this.api.json(`/v1/trucks/${encodeURIComponent(id)}`));
      if (!t) throw new Error('unreadable answer');
      msg.textContent = '';
      this.trucks.upsert(t);
      this.select(t.id, t);
      this.map.flyTo({ center: [t.lon, t.lat], zoom: Math.max(this.map.getZoom(), 12), speed: 2.5, essential: true });
      return true;
    } catch (e) {
      msg.classList.add('error');
      msg.textContent = e instanceof HttpError && e.status === 404 ? `No truck “${id}”` : `Search failed: ${e instanceof Error ? e.message : e}`;
      return false;
    }
  }

  // ---- panels ----

  private bindUI(): void {
    $('search').addEventListener('submit', (e) => {
      e.preventDefault();
      this.find($<HTMLInputElement>('search-input').value);
    });
    $('details-close').addEventListener('click', () => this.select(null));
    $('trail-slider').addEventListener('input', () => {
      this.stopPlay();
      this.moveHead();
    });
    $('trail-play').addEventListener('click', () => this.togglePlay());
    $('trail-window').addEventListener('change', (e) => {
      this.trailWindow = Number((e.target as HTMLSelectElement).value);
      this.fetchTrail();
    });
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = $<HTMLInputElement>('token-input');
      const token = input.value.trim();
      input.value = ''; // the token lives only in the HttpOnly cookie the server sets
      this.api.login(token).then(
        () => window.location.reload(),
        (err: unknown) => ($('token-msg').textContent = err instanceof Error ? err.message : String(err)),
      );
    });
    $('logout').addEventListener('click', () => {
      void this.api.logout().then(() => window.location.reload());
    });
    this.api.session().then(
      (s) => ($('logout').hidden = !s.session),
      () => {
        /* an older server without /v1/session: no logout button */
      },
    );
    $('alerts-list').addEventListener('click', (e) => {
      const b = (e.target as HTMLElement).closest('button');
      if (b?.dataset.id) this.find(b.dataset.id);
    });
  }

  private legend(): void {
    const el = $('legend');
    const maxSpeed = SPEED_STOPS[SPEED_STOPS.length - 1][0];
    el.innerHTML = '';
    const speed = document.createElement('span');
    speed.className = this.mode === 'trucks' ? '' : 'inactive';
    speed.innerHTML = `Speed 0<span class="ramp"></span>${maxSpeed}+ km/h`;
    (speed.querySelector('.ramp') as HTMLElement).style.background = rampCSS(SPEED_STOPS, maxSpeed);
    const dens = document.createElement('span');
    dens.className = this.mode === 'density' ? '' : 'inactive';
    const [lo, hi] = this.densityRange;
    dens.innerHTML = `Trucks per cell <span class="lo"></span><span class="ramp"></span><span class="hi"></span>`;
    (dens.querySelector('.lo') as HTMLElement).textContent = hi > 0 ? fmtCount(lo) : 'few';
    (dens.querySelector('.hi') as HTMLElement).textContent = hi > 0 ? fmtCount(hi) : 'many';
    (dens.querySelector('.ramp') as HTMLElement).style.background = rampCSS(DENSITY_RAMP, 1);
    el.append(speed, dens);
  }

  private static readonly ROWS: { key: Charted; label: string; color: string; zero: boolean; fmt: (v: Vitals) => string; sub?: (v: Vitals) => string }[] = [
    { key: 'trucks', label: 'Trucks', color: '#4ade80', zero: false, fmt: (v) => fmtCount(v.trucks) },
    { key: 'updatesPerSec', label: 'Updates / s', color: '#38bdf8', zero: true, fmt: (v) => fmtRate(v.updatesPerSec), sub: (v) => `${fmtCount(v.updatesTotal)} total` },
    { key: 'rssBytes', label: 'RSS', color: '#f472b6', zero: true, fmt: (v) => fmtBytes(v.rssBytes), sub: (v) => (v.trucks > 0 && v.rssBytes > 0 ? `${fmtBytes(v.rssBytes / v.trucks)} per truck` : '') },
    { key: 'bytesPerTruck', label: 'Store bytes / truck', color: '#facc15', zero: true, fmt: (v) => (Number.isNaN(v.bytesPerTruck) ? '–' : `${v.bytesPerTruck.toFixed(1)} B`), sub: (v) => `${fmtBytes(v.memoryTotal)} in all` },
    { key: 'heapObjects', label: 'Heap objects', color: '#a78bfa', zero: true, fmt: (v) => fmtCount(v.heapObjects) },
    { key: 'gcPauseP99Ms', label: 'GC pause p99', color: '#fb923c', zero: true, fmt: (v) => fmtMs(v.gcPauseP99Ms) },
    { key: 'goroutines', label: 'Goroutines', color: '#2dd4bf', zero: true, fmt: (v) => fmtCount(v.goroutines) },
    { key: 'subscribers', label: 'Subscribers', color: '#94a3b8', zero: true, fmt: (v) => (Number.isNaN(v.subscribers) ? '–' : fmtCount(v.subscribers)) },
  ];

  private rowEls = new Map<Charted, { value: HTMLElement; sub: HTMLElement; canvas: HTMLCanvasElement }>();

  private buildVitals(): void {
    const box = $('vitals-rows');
    for (const r of App.ROWS) {
      const row = document.createElement('div');
      row.className = 'vrow';
      const label = document.createElement('span');
      label.className = 'row-label';
      label.textContent = r.label;
      const value = document.createElement('span');
      value.className = 'value';
      value.dataset.stat = r.key;
      value.textContent = '–';
      const sub = document.createElement('span');
      sub.className = 'sub';
      const canvas = document.createElement('canvas');
      canvas.setAttribute('aria-hidden', 'true');
      row.append(label, value, sub, canvas);
      box.append(row);
      this.rowEls.set(r.key, { value, sub, canvas });
    }
  }

  private async statsLoop(): Promise<void> {
    this.buildVitals();
    const status = $('vitals-status');
    for (;;) {
      const started = performance.now();
      if (!document.hidden) {
        try {
          const j = await this.api.json('/v1/stats');
          const v = parseStats(j);
          this.history.add(v, Date.now());
          this.renderVitals(v);
          this.renderSinks(parseSinks(j));
          status.textContent = '';
        } catch (e) {
          status.textContent = `unavailable: ${e instanceof Error ? e.message : e}`;
        }
      }
      await new Promise((r) => setTimeout(r, Math.max(100, STATS_MS - (performance.now() - started))));
    }
  }

  /** chartWindow is the time the charts span: the last 5 minutes, or
   * since the page opened (at least 30 s) until then. */
  private chartWindow(now: number): number {
    const s = this.history.series.trucks.length > 0 ? this.history.series.trucks : this.history.series.updatesPerSec;
    const first = s.length > 0 ? s.at(0)[0] : now;
    return Math.min(CHART_WINDOW_MS, Math.max(30000, now - first));
  }

  /** renderSinks shows each alert sink's health (hidden when none is
   * configured). */
  private renderSinks(rows: SinkRow[]): void {
    const box = $('sinks');
    box.hidden = rows.length === 0;
    const list = $('sink-rows');
    list.replaceChildren();
    for (const r of rows) {
      const li = document.createElement('li');
      li.dataset.sink = r.name;
      li.dataset.health = r.health;
      li.dataset.pending = String(r.pending);
      const dot = document.createElement('i');
      dot.className = `health-${r.health}`;
      dot.title = r.health;
      const name = document.createElement('b');
      name.textContent = r.name;
      const sub = document.createElement('span');
      sub.className = 'muted';
      sub.textContent = sinkSummary(r);
      li.append(dot, name, sub);
      if (r.health === 'failing' && r.lastError) li.title = r.lastError;
      list.append(li);
    }
  }

  private renderVitals(v: Vitals): void {
    const now = Date.now();
    for (const r of App.ROWS) {
      const els = this.rowEls.get(r.key)!;
      els.value.textContent = r.fmt(v);
      els.value.dataset.value = String(v[r.key]);
      els.sub.textContent = r.sub ? r.sub(v) : '';
      drawSpark(els.canvas, this.history.series[r.key], now, this.chartWindow(now), r.color, r.zero);
    }
    $('vitals-rows').dataset.updatesTotal = String(v.updatesTotal);
    const colors = ['#facc15', '#38bdf8', '#4ade80', '#f472b6', '#a78bfa', '#fb923c', '#94a3b8'];
    const bar = $('mem-bar');
    const legend = $('mem-legend');
    const total = v.components.reduce((a, c) => a + c.bytes, 0);
    bar.replaceChildren();
    legend.replaceChildren();
    v.components.forEach((c, i) => {
      const color = colors[i % colors.length];
      const seg = document.createElement('span');
      seg.style.width = `${total > 0 ? (c.bytes / total) * 100 : 0}%`;
      seg.style.background = color;
      seg.title = `${c.name}: ${fmtBytes(c.bytes)}`;
      bar.append(seg);
      const li = document.createElement('li');
      li.dataset.stat = `mem-${c.name}`;
      li.dataset.value = String(c.bytes);
      const sw = document.createElement('i');
      sw.style.background = color;
      li.append(sw, `${c.name} ${Number.isNaN(c.perTruck) ? fmtBytes(c.bytes) : c.perTruck.toFixed(1) + ' B'}`);
      legend.append(li);
    });
    this.renderAlerts();
  }

  private async zonesLoop(): Promise<void> {
    await this.loaded;
    for (;;) {
      try {
        const fc = parseZones(await this.api.json('/v1/zones'));
        this.map.getSource<GeoJSONSource>('zones')?.setData(fc);
      } catch (e) {
        if (e instanceof HttpError && e.status === 404) return; // no zones on this server
      }
      await new Promise((r) => setTimeout(r, 30000));
    }
  }

  private async alertsLoop(): Promise<void> {
    for (;;) {
      try {
        // The first page of what fires: the server counts the rest.
        const j = await this.api.json(`/v1/alerts?limit=${ALERTS_PAGE}`);
        this.alerts.replaceFiring(parseAlerts(j), alertCount(j));
        this.renderAlerts();
      } catch (e) {
        if (e instanceof HttpError && e.status === 404) return; // no alerts on this server
      }
      await new Promise((r) => setTimeout(r, 5000));
    }
  }

  private renderAlerts(): void {
    if (this.alerts.version === this.alertsShown) return;
    this.alertsShown = this.alerts.version;
    const { firing, resolved } = this.alerts.list();
    const list = $('alerts-list');
    const total = Math.max(this.alerts.total, firing.length);
    $('alerts-count').textContent = total > 0 ? `${total} firing` : '';
    list.replaceChildren();
    if (firing.length === 0 && resolved.length === 0) {
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = this.cfg.alerts || this.cfg.stream ? 'None firing.' : 'None (this server has no alert rules yet).';
      list.append(li);
      return;
    }
    for (const [a, cls] of [...firing.slice(0, 100).map((a) => [a, 'firing'] as const), ...resolved.slice(0, 20).map((a) => [a, 'resolved'] as const)]) {
      const li = document.createElement('li');
      li.className = cls;
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.id = a.id;
      b.textContent = a.id;
      li.append(`${cls === 'firing' ? '●' : '○'} ${a.rule} `, b, a.message ? ` ${a.message}` : '');
      list.append(li);
    }
    if (this.selected) this.showDetails(this.selected);
  }
}

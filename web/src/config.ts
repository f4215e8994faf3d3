// The page's configuration, injected by the Go server (internal/web) into
// index.html as JSON in <script id="fleetd-config">. Unit-tested.

export interface Config {
  /** a MapLibre style URL to use instead of the offline outlines */
  basemapStyle: string;
  /** the server mounts GET /v1/stream (SSE live feed) */
  stream: boolean;
  /** the server mounts GET /v1/zones */
  zones: boolean;
  /** the server mounts GET /v1/alerts */
  alerts: boolean;
}

/** parseConfig reads the injected JSON; anything missing or malformed
 * falls back to the defaults (offline basemap, polling, no zones/alerts). */
export function parseConfig(text: string | null | undefined): Config {
  const c: Config = { basemapStyle: '', stream: false, zones: false, alerts: false };
  if (!text) return c;
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return c;
  }
  if (typeof o !== 'object' || o === null) return c;
  const r = o as Record<string, unknown>;
  if (typeof r.basemap_style === 'string') c.basemapStyle = r.basemap_style;
  const f = (typeof r.features === 'object' && r.features !== null ? r.features : {}) as Record<string, unknown>;
  c.stream = f.stream === true;
  c.zones = f.zones === true;
  c.alerts = f.alerts === true;
  return c;
}

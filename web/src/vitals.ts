// The vital-signs model: the figures the panel shows, taken from
// GET /v1/stats, and their recent history for the small charts. Pure
// logic; unit-tested.

/** Series is a fixed-capacity ring of (time ms, value) samples: the last
 * capacity samples, oldest first. Memory is constant however long the page
 * stays open. */
export class Series {
  private t: Float64Array;
  private v: Float64Array;
  private head = 0; // next write position
  private n = 0;

  constructor(readonly capacity: number) {
    this.t = new Float64Array(capacity);
    this.v = new Float64Array(capacity);
  }

  get length(): number {
    return this.n;
  }

  push(tMs: number, value: number): void {
    this.t[this.head] = tMs;
    this.v[this.head] = value;
    this.head = (this.head + 1) % this.capacity;
    if (this.n < this.capacity) this.n++;
  }

  /** at returns sample i, 0 being the oldest kept. */
  at(i: number): [number, number] {
    const j = (this.head - this.n + i + this.capacity) % this.capacity;
    return [this.t[j], this.v[j]];
  }

  last(): number {
    return this.n === 0 ? NaN : this.v[(this.head - 1 + this.capacity) % this.capacity];
  }

  /** range returns [min, max] of the values kept, or [0, 0] when empty. */
  range(): [number, number] {
    if (this.n === 0) return [0, 0];
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < this.n; i++) {
      const v = this.at(i)[1];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    return [lo, hi];
  }
}

/** The figures one /v1/stats answer yields; NaN where the server did not
 * report one (older servers, or a figure not implemented yet). */
export interface Vitals {
  trucks: number;
  updatesTotal: number;
  updatesPerSec: number;
  rssBytes: number;
  memoryTotal: number;
  bytesPerTruck: number;
  /** store memory by component, bytes per truck, largest first */
  components: { name: string; bytes: number; perTruck: number }[];
  heapObjects: number;
  gcPauseP99Ms: number;
  goroutines: number;
  subscribers: number;
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : NaN);

/** The store's memory components, as /v1/stats names them under "memory". */
export const COMPONENTS = ['records', 'ids', 'index', 'free_lists', 'spare'];

/** parseStats extracts the vitals from a /v1/stats answer. The store's
 * total is memory.total (or memory.store), else the sum of the components;
 * bytes per truck is memory.bytes_per_truck, else total / trucks. */
export function parseStats(j: unknown): Vitals {
  const o = (typeof j === 'object' && j !== null ? j : {}) as Record<string, unknown>;
  const mem = (typeof o.memory === 'object' && o.memory !== null ? o.memory : {}) as Record<string, unknown>;
  const trucks = num(o.trucks);
  const components: Vitals['components'] = [];
  for (const name of COMPONENTS) {
    const v = mem[name];
    if (typeof v !== 'number' || !Number.isFinite(v)) continue;
    components.push({ name, bytes: v, perTruck: trucks > 0 ? v / trucks : NaN });
  }
  components.sort((a, b) => b.bytes - a.bytes || (a.name < b.name ? -1 : 1));
  let total = num(mem.total);
  if (Number.isNaN(total)) total = num(mem.store);
  if (Number.isNaN(total) && components.length > 0) total = components.reduce((a, c) => a + c.bytes, 0);
  let bpt = num(mem.bytes_per_truck);
  if (Number.isNaN(bpt) && trucks > 0) bpt = total / trucks;
  const subs = o.subscribers;
  return {
    trucks,
    updatesTotal: num(o.updates_total),
    updatesPerSec: num(o.updates_per_sec),
    rssBytes: Number.isNaN(num(o.rss_bytes)) ? num(mem.rss) : num(o.rss_bytes),
    memoryTotal: total,
    bytesPerTruck: bpt,
    components,
    heapObjects: num(o.heap_objects),
    gcPauseP99Ms: num(o.gc_pause_p99_ms),
    goroutines: num(o.goroutines),
    // subscribers may come as a number or as an object of counts per feed
    subscribers:
      typeof subs === 'object' && subs !== null
        ? Object.values(subs as Record<string, unknown>).reduce<number>((a, v) => a + (typeof v === 'number' ? v : 0), 0)
        : num(subs),
  };
}

/** The charted figures, in panel order. */
export const CHARTED = ['trucks', 'updatesPerSec', 'rssBytes', 'bytesPerTruck', 'heapObjects', 'gcPauseP99Ms', 'goroutines', 'subscribers'] as const;
export type Charted = (typeof CHARTED)[number];

/** History keeps a Series per charted figure. At one sample a second the
 * default capacity is the last 5 minutes. */
export class History {
  readonly series: Record<Charted, Series>;
  latest: Vitals | null = null;

  constructor(capacity = 300) {
    this.series = Object.fromEntries(CHARTED.map((k) => [k, new Series(capacity)])) as Record<Charted, Series>;
  }

  add(v: Vitals, tMs: number): void {
    this.latest = v;
    for (const k of CHARTED) {
      const x = v[k];
      if (!Number.isNaN(x)) this.series[k].push(tMs, x);
    }
  }
}

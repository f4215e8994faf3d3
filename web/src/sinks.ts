// The sink health model: each alert sink's delivery figures from
// GET /v1/stats ("sinks", one object per sink name). Pure logic;
// unit-tested.

export type SinkHealth = 'ok' | 'backlog' | 'failing' | 'unknown';

/** One sink's row in the vital-signs panel. NaN where the server did not
 * report a figure. */
export interface SinkRow {
  name: string;
  health: SinkHealth;
  delivered: number;
  pending: number;
  oldestAgeS: number;
  dropped: number;
  shed: number;
  p99Ms: number;
  lastError: string;
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : NaN);

/** parseSinks reads the "sinks" object of a /v1/stats answer, sorted by
 * name; [] when there are none. Unknown health values read as "unknown",
 * never as healthy. */
export function parseSinks(stats: unknown): SinkRow[] {
  const o = (typeof stats === 'object' && stats !== null ? stats : {}) as Record<string, unknown>;
  const sinks = o.sinks;
  if (typeof sinks !== 'object' || sinks === null || Array.isArray(sinks)) return [];
  const rows: SinkRow[] = [];
  for (const [name, raw] of Object.entries(sinks as Record<string, unknown>)) {
    const s = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    const h = s.health;
    rows.push({
      name,
      health: h === 'ok' || h === 'backlog' || h === 'failing' ? h : 'unknown',
      delivered: num(s.delivered),
      pending: num(s.outbox_depth),
      oldestAgeS: num(s.oldest_age_s),
      dropped: num(s.dropped),
      shed: num(s.shed),
      p99Ms: num(s.latency_p99_ms),
      lastError: typeof s.last_error === 'string' ? s.last_error : '',
    });
  }
  rows.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return rows;
}

/** sinkSummary is the one-line text of a row: what is pending and for how
 * long, and what was lost. */
export function sinkSummary(r: SinkRow): string {
  const parts: string[] = [];
  const n = (v: number) => (Number.isNaN(v) ? '?' : v.toLocaleString('en-US'));
  parts.push(`${n(r.delivered)} delivered`);
  if (r.pending > 0) {
    const age = Number.isNaN(r.oldestAgeS) ? '' : `, oldest ${fmtAge(r.oldestAgeS)}`;
    parts.push(`${n(r.pending)} pending${age}`);
  }
  if (r.dropped > 0) parts.push(`${n(r.dropped)} dropped`);
  if (r.shed > 0) parts.push(`${n(r.shed)} shed`);
  if (!Number.isNaN(r.p99Ms) && r.p99Ms > 0) parts.push(`p99 ${r.p99Ms < 1000 ? `${Math.round(r.p99Ms)} ms` : `${(r.p99Ms / 1000).toFixed(1)} s`}`);
  return parts.join(' · ');
}

export function fmtAge(s: number): string {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

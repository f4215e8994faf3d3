import { describe, expect, it } from 'vitest';
import { fmtAge, parseSinks, sinkSummary } from './sinks';

describe('parseSinks', () => {
  it('reads each sink, sorted by name', () => {
    const rows = parseSinks({
      trucks: 3,
      sinks: {
        pager: { delivered: 10, outbox_depth: 0, health: 'ok', latency_p99_ms: 4.1, shed: 0, dropped: 0, oldest_age_s: 0 },
        bus: { delivered: 5, outbox_depth: 7, health: 'failing', oldest_age_s: 90, dropped: 2, shed: 1, last_error: 'nats: down' },
      },
    });
    expect(rows.map((r) => r.name)).toEqual(['bus', 'pager']);
    expect(rows[0]).toMatchObject({ health: 'failing', pending: 7, dropped: 2, shed: 1, lastError: 'nats: down' });
    expect(rows[1]).toMatchObject({ health: 'ok', delivered: 10, p99Ms: 4.1 });
  });
  it('is empty without sinks and tolerates junk', () => {
    expect(parseSinks({})).toEqual([]);
    expect(parseSinks(null)).toEqual([]);
    expect(parseSinks({ sinks: [1, 2] })).toEqual([]);
    const [r] = parseSinks({ sinks: { x: { health: 'great', delivered: 'many' } } });
    expect(r.health).toBe('unknown');
    expect(Number.isNaN(r.delivered)).toBe(true);
  });
});

describe('sinkSummary', () => {
  it('says what is pending, lost and slow', () => {
    const [r] = parseSinks({ sinks: { a: { delivered: 1200, outbox_depth: 3, oldest_age_s: 125, dropped: 1, shed: 0, latency_p99_ms: 2500, health: 'backlog' } } });
    expect(sinkSummary(r)).toBe('1,200 delivered · 3 pending, oldest 2 min · 1 dropped · p99 2.5 s');
  });
  it('formats ages', () => {
    expect(fmtAge(5)).toBe('5 s');
    expect(fmtAge(7200)).toBe('2.0 h');
    expect(fmtAge(172800)).toBe('2.0 d');
  });
});

import { afterEach, describe, expect, test, vi } from 'vitest';
import { Api } from './api';
import { LiveFeed, parseWithin, type FeedHandlers } from './feed';
import type { Truck } from './trucks';

test('parseWithin', () => {
  expect(parseWithin({ results: [{ id: 'a', lat: 1, lon: 2 }, { bad: true }], count: 2 })).toEqual([{ id: 'a', lat: 1, lon: 2, ts: 0, speed: 0, heading: 0 }]);
  expect(() => parseWithin({ count: 0 })).toThrow(/results/);
});

// A fake server: answers by path prefix, records what was asked.
function fakeFetch(routes: Record<string, (url: string) => Response>) {
  const calls: string[] = [];
  const f = vi.fn(async (url: string, init?: RequestInit) => {
    calls.push(url);
    if (init?.signal?.aborted) throw new DOMException('aborted', 'AbortError');
    for (const [prefix, h] of Object.entries(routes)) if (url.startsWith(prefix)) return h(url);
    return new Response('{"error":"no route"}', { status: 404 });
  });
  vi.stubGlobal('fetch', f);
  return calls;
}

function recorder() {
  const got = { snapshots: [] as Truck[][], positions: [] as Truck[], removed: [] as string[], statuses: [] as string[] };
  const h: FeedHandlers = {
    snapshot: (l) => got.snapshots.push(l),
    position: (t) => got.positions.push(t),
    remove: (id) => got.removed.push(id),
    alert: () => {},
    status: (s) => got.statuses.push(s),
  };
  return { got, h };
}

const within = () => new Response(JSON.stringify({ results: [{ id: 't1', lat: 40, lon: -100, ts: 1, speed: 10, heading: 0 }], count: 1 }), { status: 200 });
const region = { minLon: -101, minLat: 39, maxLon: -99, maxLat: 41 };
const opts = { limit: 100, pollMs: 20, maxHz: 1 };

afterEach(() => vi.unstubAllGlobals());

describe('LiveFeed', () => {
  test('polls /v1/within when the server has no stream', async () => {
    const calls = fakeFetch({ '/v1/within': within });
    const { got, h } = recorder();
    const feed = new LiveFeed(new Api(), false, h, opts);
    feed.setRegion(region);
    await vi.waitFor(() => expect(got.snapshots.length).toBeGreaterThanOrEqual(3));
    feed.close();
    expect(calls.every((c) => c.startsWith('/v1/within?bbox=-101,39,-99,41&limit=100'))).toBe(true);
    expect(got.statuses).toContain('polling');
    expect(got.statuses.at(-1)).toBe('off');
  });

  test('streams positions after the snapshot', async () => {
    const body = 'data: {"type":"position","id":"t2","lat":40.5,"lon":-100.5,"ts":2,"speed":50,"heading":90}\n\n: ping\n\ndata: {"type":"lag","dropped":3}\n\ndata: {"type":"expired","id":"t1","ts":3}\n\n';
    const calls = fakeFetch({
      '/v1/within': within,
      // The stream stays open, as the server's does: a second snapshot can
      // only come from the lag event.
      '/v1/stream': () =>
        new Response(
          new ReadableStream({
            start(c) {
              c.enqueue(new TextEncoder().encode(body));
            },
          }),
          { status: 200, headers: { 'Content-Type': 'text/event-stream' } },
        ),
    });
    const { got, h } = recorder();
    const feed = new LiveFeed(new Api(), true, h, opts);
    feed.setRegion(region);
    await vi.waitFor(() => expect(got.removed).toEqual(['t1']));
    feed.close();
    expect(got.snapshots[0][0].id).toBe('t1');
    expect(got.positions.map((t) => t.id)).toEqual(['t2']);
    expect(calls).toContain('/v1/stream?bbox=-101,39,-99,41&max_hz=1&types=position,expired,alert,lag');
    await vi.waitFor(() => expect(got.snapshots.length).toBeGreaterThanOrEqual(2)); // lag → re-read
  });

  test('falls back to polling when the stream answers 404', async () => {
    const calls = fakeFetch({ '/v1/within': within });
    const { got, h } = recorder();
    const feed = new LiveFeed(new Api(), true, h, opts);
    feed.setRegion(region);
    await vi.waitFor(() => expect(got.statuses).toContain('polling'));
    await vi.waitFor(() => expect(got.snapshots.length).toBeGreaterThanOrEqual(3));
    feed.close();
    expect(calls.filter((c) => c.startsWith('/v1/stream'))).toHaveLength(1); // tried once only
  });

  test('same region is a no-op; a new region restarts', async () => {
    const calls = fakeFetch({ '/v1/within': within });
    const { h } = recorder();
    const feed = new LiveFeed(new Api(), false, h, { ...opts, pollMs: 10000 });
    feed.setRegion(region);
    feed.setRegion({ ...region });
    await vi.waitFor(() => expect(calls).toHaveLength(1));
    feed.setRegion({ ...region, maxLat: 42 });
    await vi.waitFor(() => expect(calls).toHaveLength(2));
    feed.close();
    expect(calls[1]).toContain('bbox=-101,39,-99,42');
  });
});

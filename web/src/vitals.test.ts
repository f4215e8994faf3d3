import { describe, expect, test } from 'vitest';
import { History, parseStats, Series } from './vitals';

describe('Series', () => {
  test('keeps the last capacity samples, oldest first', () => {
    const s = new Series(3);
    expect(s.length).toBe(0);
    expect(s.last()).toBeNaN();
    expect(s.range()).toEqual([0, 0]);
    for (let i = 1; i <= 5; i++) s.push(i * 1000, i * 10);
    expect(s.length).toBe(3);
    expect([s.at(0), s.at(1), s.at(2)]).toEqual([[3000, 30], [4000, 40], [5000, 50]]);
    expect(s.last()).toBe(50);
    expect(s.range()).toEqual([30, 50]);
  });
  test('partly filled', () => {
    const s = new Series(4);
    s.push(1, -5);
    s.push(2, 7);
    expect(s.at(0)).toEqual([1, -5]);
    expect(s.at(1)).toEqual([2, 7]);
    expect(s.range()).toEqual([-5, 7]);
  });
});

describe('parseStats', () => {
  const stats = {
    trucks: 1000,
    updates_total: 123456,
    updates_per_sec: 5000.5,
    memory: { records: 32000, ids: 6000, index: 5500, free_lists: 100, spare: 400, total: 44000, bytes_per_truck: 44 },
    heap_objects: 9000,
    gc_pause_p99_ms: 0.12,
    goroutines: 17,
    rss_bytes: 50 << 20,
  };
  test('all figures', () => {
    const v = parseStats(stats);
    expect(v.trucks).toBe(1000);
    expect(v.updatesTotal).toBe(123456);
    expect(v.updatesPerSec).toBe(5000.5);
    expect(v.rssBytes).toBe(50 << 20);
    expect(v.memoryTotal).toBe(44000);
    expect(v.bytesPerTruck).toBe(44);
    expect(v.components.map((c) => [c.name, c.perTruck])).toEqual([
      ['records', 32],
      ['ids', 6],
      ['index', 5.5],
      ['spare', 0.4],
      ['free_lists', 0.1],
    ]);
    expect(v.heapObjects).toBe(9000);
    expect(v.gcPauseP99Ms).toBe(0.12);
    expect(v.goroutines).toBe(17);
    expect(v.subscribers).toBeNaN();
  });
  test('fleetd serve\'s memory object: store total, Go figures not components', () => {
    const v = parseStats({
      trucks: 20000,
      memory: { records: 640000, ids: 97056, index: 393276, free_lists: 920, spare: 440004, store: 1571256, bytes_per_truck: 78.56, go_heap: 8844944, rss: 25034752, rss_per_truck: 1251.74 },
    });
    expect(v.components.map((c) => c.name)).toEqual(['records', 'spare', 'index', 'ids', 'free_lists']);
    expect(v.memoryTotal).toBe(1571256);
    expect(v.bytesPerTruck).toBe(78.56);
    expect(v.rssBytes).toBe(25034752);
  });
  test('missing figures are NaN, totals derived', () => {
    const v = parseStats({ trucks: 10, memory: { records: 300, ids: 100 } });
    expect(v.memoryTotal).toBe(400);
    expect(v.bytesPerTruck).toBe(40);
    expect(v.rssBytes).toBeNaN();
    expect(v.goroutines).toBeNaN();
  });
  test('no trucks: per-truck figures NaN', () => {
    const v = parseStats({ trucks: 0, memory: { records: 0 } });
    expect(v.components[0].perTruck).toBeNaN();
    expect(v.bytesPerTruck).toBeNaN();
  });
  test('subscribers as a number or per feed', () => {
    expect(parseStats({ subscribers: 3 }).subscribers).toBe(3);
    expect(parseStats({ subscribers: { stream: 2, alerts: 1 } }).subscribers).toBe(3);
  });
  test('garbage', () => {
    expect(parseStats(null).trucks).toBeNaN();
    expect(parseStats({ memory: 'x', trucks: '5' }).components).toEqual([]);
  });
});

test('History skips figures the server did not report', () => {
  const h = new History(10);
  h.add(parseStats({ trucks: 5, goroutines: 3 }), 1000);
  h.add(parseStats({ trucks: 6, goroutines: 4 }), 2000);
  expect(h.series.trucks.length).toBe(2);
  expect(h.series.trucks.last()).toBe(6);
  expect(h.series.subscribers.length).toBe(0);
  expect(h.latest!.goroutines).toBe(4);
});

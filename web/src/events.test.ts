import { describe, expect, test } from 'vitest';
import { AlertBook, alertCount, circle, parseAlert, parseAlerts, parseFeedEvent, parseZones, type Alert } from './events';

const ev = (data: string, event = 'message') => ({ event, data, id: '' });

describe('parseFeedEvent', () => {
  test.each([
    ['position', ev('{"type":"position","id":"t1","lat":1,"lon":2,"ts":3,"speed":4,"heading":5}'), { kind: 'position', truck: { id: 't1', lat: 1, lon: 2, ts: 3, speed: 4, heading: 5 } }],
    ['type from event name', ev('{"id":"t1","lat":1,"lon":2}', 'position'), { kind: 'position', truck: { id: 't1', lat: 1, lon: 2, ts: 0, speed: 0, heading: 0 } }],
    ['bad position', ev('{"type":"position","id":"t1","lat":100,"lon":2}'), null],
    ['delete', ev('{"type":"delete","id":"t1"}'), { kind: 'delete', id: 't1' }],
    ['alert', ev('{"type":"alert","rule":"speeding","id":"t1","state":"firing","since":9}'), { kind: 'alert', alert: { rule: 'speeding', id: 't1', firing: true, since: 9, message: '' } }],
    ['resolved', ev('{"type":"alert_resolved","rule":"r","truck":"t1","ts":9}'), { kind: 'alert', alert: { rule: 'r', id: 't1', firing: false, since: 9, message: '' } }],
    ['expired', ev('{"type":"expired","id":"t1","ts":5}'), { kind: 'delete', id: 't1' }],
    ['lag', ev('{"type":"lag","dropped":1234}'), { kind: 'lag', dropped: 1234 }],
    ['heartbeat', ev('{"type":"heartbeat"}'), null],
    ['not JSON', ev('hello'), null],
    ['JSON scalar', ev('3'), null],
  ])('%s', (_n, e, want) => expect(parseFeedEvent(e)).toEqual(want));
});

describe('parseAlert', () => {
  test.each([
    ['state resolved', { rule: 'r', id: 't', state: 'resolved' }, false],
    ['firing false', { rule: 'r', id: 't', firing: false }, false],
    ['default firing', { name: 'r', truck_id: 't' }, true],
  ])('%s', (_n, o, firing) => expect(parseAlert(o)!.firing).toBe(firing));
  test('needs rule and truck', () => {
    expect(parseAlert({ rule: 'r' })).toBeNull();
    expect(parseAlert({ id: 't' })).toBeNull();
    expect(parseAlert(7)).toBeNull();
  });
  test('parseAlerts accepts both shapes', () => {
    expect(parseAlerts({ alerts: [{ rule: 'r', id: 't' }, { bad: 1 }] })).toHaveLength(1);
    expect(parseAlerts([{ rule: 'r', id: 't' }])).toHaveLength(1);
    expect(parseAlerts({ nope: 1 })).toEqual([]);
    expect(alertCount({ count: 7, alerts: [] })).toBe(7);
    expect(alertCount({ alerts: [] })).toBeUndefined();
    expect(alertCount({ count: -1 })).toBeUndefined();
  });
});

describe('AlertBook', () => {
  const a = (rule: string, id: string, firing = true, since = 1): Alert => ({ rule, id, firing, since, message: '' });
  test('fire, resolve, history', () => {
    const b = new AlertBook(2);
    b.apply(a('speeding', 't1', true, 10));
    b.apply(a('geofence', 't1', true, 20));
    b.apply(a('speeding', 't2', true, 5));
    expect(b.firingFor('t1').map((x) => x.rule)).toEqual(['geofence', 'speeding']);
    expect(b.list().firing.map((x) => x.since)).toEqual([20, 10, 5]);
    const v = b.version;
    b.apply(a('speeding', 't9', false)); // resolving what never fired: no change
    expect(b.version).toBe(v);
    b.apply(a('speeding', 't1', false, 30));
    b.apply(a('speeding', 't2', false, 31));
    b.apply(a('geofence', 't1', false, 32));
    expect(b.firingFor('t1')).toEqual([]);
    expect(b.list().resolved.map((x) => x.since)).toEqual([32, 31]); // capped at 2
  });
  test('replaceFiring', () => {
    const b = new AlertBook();
    b.apply(a('x', 't1'));
    b.replaceFiring([a('y', 't2'), a('z', 't3', false)]);
    expect(b.list().firing.map((x) => x.rule)).toEqual(['y']);
    expect(b.total).toBe(1);
    b.replaceFiring([a('y', 't2')], 5000); // the first page of 5000
    expect(b.total).toBe(5000);
  });
  test('keeps at most keepFiring, counts the rest', () => {
    const b = new AlertBook(10, 3);
    for (let i = 0; i < 5; i++) b.apply(a('r', `t${i}`));
    expect(b.list().firing).toHaveLength(3);
    expect(b.total).toBe(5);
    b.apply(a('r', 't4', false)); // counted, never kept
    expect(b.total).toBe(4);
    expect(b.list().resolved).toEqual([]);
    b.apply(a('r', 't0', false));
    expect(b.total).toBe(3);
    expect(b.list().firing).toHaveLength(2);
    // t3 fires but is not kept; a resolution of a truck not kept is
    // taken to be one of those counted.
    b.apply(a('r', 't9', false));
    expect(b.total).toBe(2);
    const v = b.version;
    b.apply(a('r', 't8', false)); // now all are kept: resolving another changes nothing
    expect(b.version).toBe(v);
    expect(b.total).toBe(2);
  });
});

describe('parseZones', () => {
  const square = [[-1, -1], [1, -1], [1, 1], [-1, 1]];
  test('ring of [lon, lat] is closed', () => {
    const fc = parseZones({ zones: [{ name: 'depot', polygon: square }] });
    expect(fc.features[0].properties.name).toBe('depot');
    expect(fc.features[0].geometry.coordinates[0]).toHaveLength(5);
  });
  test('ring of {lat, lon}', () => {
    const fc = parseZones([{ id: 'z', points: [{ lat: 0, lon: 0 }, { lat: 0, lon: 1 }, { lat: 1, lon: 1 }, { lat: 0, lon: 0 }] }]);
    expect(fc.features[0].geometry.coordinates[0]).toEqual([[0, 0], [1, 0], [1, 1], [0, 0]]);
  });
  test('GeoJSON', () => {
    const g = { type: 'Polygon', coordinates: [[[0, 0], [1, 0], [1, 1], [0, 0]]] };
    expect(parseZones({ zones: [{ name: 'a', geometry: g }] }).features[0].geometry).toEqual(g);
    expect(parseZones({ type: 'FeatureCollection', features: [{ type: 'Feature', properties: { name: 'b' }, geometry: g }] }).features[0].properties.name).toBe('b');
  });
  test('circle', () => {
    const fc = parseZones({ zones: [{ name: 'c', lat: 45, lon: 10, radius_m: 1000 }] });
    const r = fc.features[0].geometry.coordinates[0] as number[][];
    expect(r).toHaveLength(65);
    expect(r[0]).toEqual(r[64]);
    expect(r[0][1] - 45).toBeCloseTo(1000 / 111195, 5);
  });
  test('unreadable zones skipped', () => {
    expect(parseZones({ zones: [{ name: 'x' }, { polygon: [[0, 0]] }, 5, { lat: 1, lon: 1, radius_m: -1 }] }).features).toEqual([]);
    expect(parseZones('nope').features).toEqual([]);
  });
  test('circle is closed and centred', () => {
    const p = circle(0, 0, 111195);
    const xs = p.coordinates[0].map((q) => q[0]);
    expect(Math.max(...xs)).toBeCloseTo(1, 3);
    expect(Math.min(...xs)).toBeCloseTo(-1, 3);
  });
});

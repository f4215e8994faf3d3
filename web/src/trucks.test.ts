import { describe, expect, test } from 'vitest';
import { parseTruck, TruckSet, type Truck } from './trucks';

const t = (id: string, lat: number, lon: number, ts = 100, speed = 50, heading = 90): Truck => ({ id, lat, lon, ts, speed, heading });

describe('parseTruck', () => {
  test.each([
    ['full', { id: 'truck-1', lat: 40, lon: -74, ts: 5, speed: 52.5, heading: 90 }, t('truck-1', 40, -74, 5, 52.5, 90)],
    ['optional fields default to 0', { id: 'a', lat: 1, lon: 2 }, t('a', 1, 2, 0, 0, 0)],
    ['extra fields ignored', { type: 'position', id: 'a', lat: 1, lon: 2, distance_m: 3 }, t('a', 1, 2, 0, 0, 0)],
    ['missing id', { lat: 1, lon: 2 }, null],
    ['empty id', { id: '', lat: 1, lon: 2 }, null],
    ['string lat', { id: 'a', lat: '1', lon: 2 }, null],
    ['lat out of range', { id: 'a', lat: 91, lon: 2 }, null],
    ['NaN lon', { id: 'a', lat: 1, lon: NaN }, null],
    ['not an object', 'a', null],
    ['null', null, null],
  ])('%s', (_n, o, want) => expect(parseTruck(o)).toEqual(want));
});

describe('TruckSet', () => {
  test('latest wins by ts', () => {
    const s = new TruckSet();
    expect(s.upsert(t('a', 1, 1, 100))).toBe(true);
    expect(s.upsert(t('a', 2, 2, 99))).toBe(false);
    expect(s.get('a')!.lat).toBe(1);
    expect(s.upsert(t('a', 3, 3, 100))).toBe(true); // same second, newer report
    expect(s.get('a')!.lat).toBe(3);
    expect(s.upsert(t('a', 3, 3, 100))).toBe(false); // identical
  });

  test('dirty coalesces updates until features()', () => {
    const s = new TruckSet();
    s.upsert(t('a', 1, 1));
    s.upsert(t('b', 1, 1));
    expect(s.dirty).toBe(true);
    const fc = s.features(0);
    expect(fc.features).toHaveLength(2);
    expect(s.dirty).toBe(false);
    s.upsert(t('a', 1, 1));
    expect(s.dirty).toBe(false);
    s.remove('zzz');
    expect(s.dirty).toBe(false);
    s.remove('a');
    expect(s.dirty).toBe(true);
  });

  test('replace keeps exactly the snapshot within the region', () => {
    const s = new TruckSet();
    const region = { minLon: -10, minLat: -10, maxLon: 10, maxLat: 10 };
    s.upsert(t('gone', 0, 0));
    s.upsert(t('stays', 0, 0, 100));
    s.replace([t('stays', 1, 1, 101), t('new', 2, 2), t('outside', 50, 50)], region);
    expect([...s.values()].map((x) => x.id).sort()).toEqual(['new', 'stays']);
    expect(s.get('stays')!.lat).toBe(1);
  });

  test('retain drops trucks that left the region, antimeridian included', () => {
    const s = new TruckSet();
    s.upsert(t('east', 0, 179));
    s.upsert(t('west', 0, -179));
    s.upsert(t('far', 0, 0));
    s.retain({ minLon: 170, minLat: -5, maxLon: -170, maxLat: 5 });
    expect([...s.values()].map((x) => x.id).sort()).toEqual(['east', 'west']);
  });

  test('features: properties and world copy', () => {
    const s = new TruckSet();
    s.upsert(t('a', 10, -179, 1, 80, 45));
    const f = s.features(180).features[0];
    expect(f.properties).toEqual({ id: 'a', speed: 80, heading: 45 });
    expect(f.geometry.coordinates).toEqual([181, 10]);
  });

  test('clear', () => {
    const s = new TruckSet();
    s.clear();
    expect(s.dirty).toBe(false);
    s.upsert(t('a', 0, 0));
    s.features(0);
    s.clear();
    expect(s.size).toBe(0);
    expect(s.dirty).toBe(true);
  });
});

import { describe, expect, test } from 'vitest';
import { decodeDensity, densityAt, densityFeatures, fleetBounds, parseDensityJSON, MERC_LAT } from './density';

// encode is the inverse of decodeDensity, as internal/web writes it.
function encode(cellDeg: number, cells: [number, number, number][], magic = 'FDN1'): ArrayBuffer {
  const buf = new ArrayBuffer(24 + 12 * cells.length);
  const dv = new DataView(buf);
  for (let i = 0; i < 4; i++) dv.setUint8(i, magic.charCodeAt(i));
  dv.setUint32(4, cells.length, true);
  dv.setFloat64(8, cellDeg, true);
  dv.setBigUint64(16, BigInt(cells.reduce((a, c) => a + c[2], 0)), true);
  cells.forEach(([lat, lon, n], i) => {
    dv.setFloat32(24 + 12 * i, lat, true);
    dv.setFloat32(28 + 12 * i, lon, true);
    dv.setUint32(32 + 12 * i, n, true);
  });
  return buf;
}

describe('decodeDensity', () => {
  test('round trip', () => {
    const g = decodeDensity(encode(1.5, [[39, -105, 7], [-34.5, 150, 1], [40.5, -74.5, 4000000]]));
    expect(g.cellDeg).toBe(1.5);
    expect(g.total).toBe(4000008);
    expect([...g.lat]).toEqual([39, -34.5, 40.5]);
    expect([...g.lon]).toEqual([-105, 150, -74.5]);
    expect([...g.count]).toEqual([7, 1, 4000000]);
  });
  test('empty grid', () => {
    const g = decodeDensity(encode(0.5, []));
    expect(g.count.length).toBe(0);
    expect(g.total).toBe(0);
  });
  test.each([
    ['short header', new ArrayBuffer(10), /shorter than its header/],
    ['bad magic', encode(1, [[0, 0, 1]], 'XXXX'), /bad magic/],
    ['truncated', encode(1, [[0, 0, 1], [1, 1, 1]]).slice(0, 40), /need 48 bytes, got 40/],
    ['zero cell size', encode(0, [[0, 0, 1]]), /cell size/],
  ])('rejects %s', (_n, buf, re) => expect(() => decodeDensity(buf)).toThrow(re));
});

describe('parseDensityJSON', () => {
  test('cells and total', () => {
    const g = parseDensityJSON({ cell_deg: 2, total: 11, cells: [[30, -100, 10], [32, -100, 1]] });
    expect(g.cellDeg).toBe(2);
    expect(g.total).toBe(11);
    expect([...g.count]).toEqual([10, 1]);
  });
  test('total derived when absent', () => {
    expect(parseDensityJSON({ cell_deg: 2, cells: [[30, -100, 10], [32, -100, 5]] }).total).toBe(15);
  });
  test.each([
    ['null', null],
    ['no cells', { cell_deg: 1 }],
    ['bad cell', { cell_deg: 1, cells: [[1, 2]] }],
  ])('rejects %s', (_n, j) => expect(() => parseDensityJSON(j)).toThrow(/density/));
});

describe('densityFeatures', () => {
  test('squares with log-scaled t', () => {
    const g = parseDensityJSON({ cell_deg: 1, cells: [[40, -100, 100], [41, -100, 10], [42, -100, 1]] });
    const fc = densityFeatures(g, -100);
    expect(fc.features).toHaveLength(3);
    expect(fc.features[0].geometry.coordinates[0]).toEqual([[-100, 40], [-99, 40], [-99, 41], [-100, 41], [-100, 40]]);
    expect(fc.features.map((f) => f.properties!.t)).toEqual([1, 0.5, 0]);
    expect(fc.features.map((f) => f.properties!.count)).toEqual([100, 10, 1]);
    expect([fc.min, fc.max]).toEqual([1, 100]);
  });
  test('t spans the counts in view', () => {
    const g = parseDensityJSON({ cell_deg: 1, cells: [[40, -100, 1000], [41, -100, 100], [42, -100, 10]] });
    const ts = densityFeatures(g, -100).features.map((f) => f.properties!.t);
    [1, 0.5, 0].forEach((want, i) => expect(ts[i]).toBeCloseTo(want, 12));
  });
  test('empty grid', () => {
    const fc = densityFeatures(parseDensityJSON({ cell_deg: 1, cells: [] }), 0);
    expect([fc.features.length, fc.min, fc.max]).toEqual([0, 0, 0]);
  });
  test('one truck in view: t is 1', () => {
    const fc = densityFeatures(parseDensityJSON({ cell_deg: 1, cells: [[0, 0, 1]] }), 0);
    expect(fc.features[0].properties!.t).toBe(1);
  });
  test('cells move to the world copy in view', () => {
    const g = parseDensityJSON({ cell_deg: 1, cells: [[-40, 179, 1], [-40, -180, 2]] });
    const fc = densityFeatures(g, 180); // centred on the antimeridian
    const wests = fc.features.map((f) => f.geometry.coordinates[0][0][0]);
    expect(wests).toEqual([179, 180]);
  });
  test('clipped to Web Mercator, polar cells dropped', () => {
    const g = parseDensityJSON({ cell_deg: 1, cells: [[85, 0, 1], [89, 0, 1]] });
    const fc = densityFeatures(g, 0);
    expect(fc.features).toHaveLength(1);
    expect(fc.features[0].geometry.coordinates[0][2][1]).toBe(MERC_LAT);
  });
});

test('densityAt', () => {
  const g = parseDensityJSON({ cell_deg: 0.5, cells: [[40, -74.5, 9], [-1, 179.5, 3]] });
  expect(densityAt(g, 40.2, -74.2)).toBe(9);
  expect(densityAt(g, 40.6, -74.2)).toBe(0);
  expect(densityAt(g, -0.7, 179.9)).toBe(3);
  expect(densityAt(g, -0.7, -180.1)).toBe(3); // same place, other world copy
});

describe('fleetBounds', () => {
  test('empty', () => expect(fleetBounds(parseDensityJSON({ cell_deg: 1, cells: [] }))).toBeNull());
  test('one cell', () => expect(fleetBounds(parseDensityJSON({ cell_deg: 1, cells: [[40, -100, 5]] }))).toEqual([-100, 40, -99, 41]));
  test('outliers trimmed', () => {
    const cells: [number, number, number][] = [];
    for (let lat = 30; lat < 45; lat++) for (let lon = -120; lon < -75; lon++) cells.push([lat, lon, 100]);
    cells.push([-33, 151, 1]); // one truck in Sydney
    cells.push([64, -150, 1]); // one in Alaska
    expect(fleetBounds(parseDensityJSON({ cell_deg: 1, cells }))).toEqual([-120, 30, -75, 45]);
  });
  test('all kept with frac 1', () => {
    const g = parseDensityJSON({ cell_deg: 1, cells: [[40, -100, 1000], [-33, 151, 1]] });
    expect(fleetBounds(g, 1)).toEqual([-100, -33, 152, 41]);
  });
});

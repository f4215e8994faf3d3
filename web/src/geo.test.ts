import { describe, expect, test } from 'vitest';
import { bboxContains, bboxCovers, bboxParam, nearLon, padBBox, toBBox, wrapLon } from './geo';

describe('wrapLon', () => {
  test.each([
    [0, 0],
    [179.5, 179.5],
    [180, -180],
    [-180, -180],
    [190, -170],
    [-190, 170],
    [540, -180],
    [725, 5],
  ])('%d → %d', (lon, want) => expect(wrapLon(lon)).toBeCloseTo(want, 9));
});

describe('toBBox', () => {
  test.each([
    ['plain', { west: -125, south: 24, east: -66, north: 50 }, { minLon: -125, minLat: 24, maxLon: -66, maxLat: 50 }],
    ['whole world and more', { west: -300, south: -85, east: 300, north: 85 }, { minLon: -180, minLat: -85, maxLon: 180, maxLat: 85 }],
    ['crosses antimeridian east', { west: 170, south: -50, east: 190, north: -30 }, { minLon: 170, minLat: -50, maxLon: -170, maxLat: -30 }],
    ['crosses antimeridian west', { west: -190, south: 50, east: -170, north: 60 }, { minLon: 170, minLat: 50, maxLon: -170, maxLat: 60 }],
    ['next world copy', { west: 235, south: 24, east: 294, north: 50 }, { minLon: -125, minLat: 24, maxLon: -66, maxLat: 50 }],
    ['east edge on antimeridian', { west: 150, south: 0, east: 180, north: 10 }, { minLon: 150, minLat: 0, maxLon: 180, maxLat: 10 }],
    ['lat clamped', { west: 0, south: -95, east: 10, north: 95 }, { minLon: 0, minLat: -90, maxLon: 10, maxLat: 90 }],
  ])('%s', (_name, b, want) => expect(toBBox(b)).toEqual(want));
});

test('bboxParam rounds to 6 decimals', () => {
  expect(bboxParam({ minLon: -125.1234567, minLat: 24, maxLon: -66.5, maxLat: 49.0000001 })).toBe('-125.123457,24,-66.5,49');
});

describe('bboxContains', () => {
  const us = { minLon: -125, minLat: 24, maxLon: -66, maxLat: 50 };
  const am = { minLon: 170, minLat: -50, maxLon: -170, maxLat: -30 };
  test.each([
    [us, 40, -100, true],
    [us, 40, -60, false],
    [us, 51, -100, false],
    [us, 24, -125, true],
    [am, -40, 175, true],
    [am, -40, -175, true],
    [am, -40, 0, false],
  ])('%o %d,%d', (b, lat, lon, want) => expect(bboxContains(b, lat, lon)).toBe(want));
});

describe('bboxCovers', () => {
  const us = { minLon: -125, minLat: 24, maxLon: -66, maxLat: 50 };
  test.each([
    ['itself', us, us, true],
    ['inside', us, { minLon: -100, minLat: 30, maxLon: -90, maxLat: 40 }, true],
    ['sticks out east', us, { minLon: -100, minLat: 30, maxLon: -60, maxLat: 40 }, false],
    ['sticks out north', us, { minLon: -100, minLat: 30, maxLon: -90, maxLat: 55 }, false],
    ['world covers all', { minLon: -180, minLat: -90, maxLon: 180, maxLat: 90 }, { minLon: 170, minLat: 0, maxLon: -170, maxLat: 1 }, true],
    ['am covers am', { minLon: 160, minLat: -60, maxLon: -160, maxLat: 0 }, { minLon: 170, minLat: -50, maxLon: -170, maxLat: -30 }, true],
    ['am covers east side', { minLon: 160, minLat: -60, maxLon: -160, maxLat: 0 }, { minLon: -175, minLat: -50, maxLon: -165, maxLat: -30 }, true],
    ['plain does not cover am', us, { minLon: 170, minLat: 30, maxLon: -170, maxLat: 40 }, false],
  ])('%s', (_n, outer, inner, want) => expect(bboxCovers(outer, inner)).toBe(want));
});

describe('padBBox', () => {
  test('grows and clamps', () => {
    expect(padBBox({ minLon: -100, minLat: 30, maxLon: -90, maxLat: 40 }, 0.5)).toEqual({ minLon: -105, minLat: 25, maxLon: -85, maxLat: 45 });
    expect(padBBox({ minLon: -100, minLat: 80, maxLon: -90, maxLat: 89 }, 0.5).maxLat).toBe(90);
  });
  test('wraps over the antimeridian', () => {
    expect(padBBox({ minLon: 170, minLat: 0, maxLon: 178, maxLat: 10 }, 0.5)).toEqual({ minLon: 166, minLat: -5, maxLon: -178, maxLat: 15 });
  });
  test('becomes the world', () => {
    expect(padBBox({ minLon: -170, minLat: 0, maxLon: 170, maxLat: 10 }, 0.5)).toEqual({ minLon: -180, minLat: -5, maxLon: 180, maxLat: 15 });
  });
  test('padded bbox covers the original (randomized, seeded)', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 2000; i++) {
      const w = rnd() * 300;
      const minLon = wrapLon(rnd() * 360 - 180);
      const b = { minLon, minLat: -80 + rnd() * 80, maxLon: wrapLon(minLon + w), maxLat: 0 };
      b.maxLat = b.minLat + rnd() * 80;
      const p = padBBox(b, rnd());
      if (!bboxCovers(p, b)) throw new Error(`seed 12345 step ${i}: ${JSON.stringify(p)} does not cover ${JSON.stringify(b)}`);
    }
  });
});

test.each([
  [-100, 0, -100],
  [-100, 300, 260],
  [170, -175, -190],
  [-170, 175, 190],
])('nearLon(%d, %d) = %d', (lon, ref, want) => expect(nearLon(lon, ref)).toBe(want));

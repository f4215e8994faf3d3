import { describe, expect, test } from 'vitest';
import { fmtAge, fmtBytes, fmtCount, fmtHeading, fmtMs, fmtRate } from './format';

describe('fmtBytes', () => {
  test.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.00 KiB'],
    [1536, '1.50 KiB'],
    [44 * 1024 * 1024, '44.0 MiB'],
    [150 * 1024 * 1024, '150 MiB'],
    [3 * 1024 ** 4 * 1024, '3072 TiB'],
    [-2048, '-2.00 KiB'],
    [NaN, '–'],
  ])('%d → %s', (n, want) => expect(fmtBytes(n)).toBe(want));
});

describe('fmtCount', () => {
  test.each([
    [0, '0'],
    [999, '999'],
    [1000, '1,000'],
    [1234567, '1,234,567'],
    [-20000, '-20,000'],
    [12.6, '13'],
    [Infinity, '–'],
  ])('%d → %s', (n, want) => expect(fmtCount(n)).toBe(want));
});

describe('fmtRate', () => {
  test.each([
    [0, '0'],
    [5.25, '5.3'],
    [250, '250'],
    [1234, '1.23k'],
    [2.5e6, '2.50M'],
    [3e9, '3.00G'],
  ])('%d → %s', (n, want) => expect(fmtRate(n)).toBe(want));
});

describe('fmtAge', () => {
  test.each([
    [-3, '0 s'],
    [5.9, '5 s'],
    [125, '2 min 5 s'],
    [7300, '2 h 1 min'],
    [90000, '1 d 1 h'],
  ])('%d → %s', (n, want) => expect(fmtAge(n)).toBe(want));
});

describe('fmtMs', () => {
  test.each([
    [0.25, '250 µs'],
    [1.5, '1.50 ms'],
    [250, '250 ms'],
  ])('%d → %s', (n, want) => expect(fmtMs(n)).toBe(want));
});

describe('fmtHeading', () => {
  test.each([
    [0, '0° N'],
    [90, '90° E'],
    [359.6, '0° N'],
    [225, '225° SW'],
    [-90, '270° W'],
  ])('%d → %s', (n, want) => expect(fmtHeading(n)).toBe(want));
});

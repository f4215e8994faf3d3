import { expect, test } from 'vitest';
import { sparkPoints } from './chart';
import { Series } from './vitals';

test('sparkPoints maps time and value into the box', () => {
  const s = new Series(10);
  s.push(0, 10); // outside the window
  s.push(1000, 0);
  s.push(2000, 50);
  s.push(3000, 100);
  const pts = sparkPoints(s, 3000, 2000, 200, 104, true);
  expect(pts).toEqual([
    [0, 102],
    [100, 52],
    [200, 2],
  ]);
});

test('not zero-based: the minimum is at the bottom', () => {
  const s = new Series(4);
  s.push(0, 90);
  s.push(1000, 100);
  expect(sparkPoints(s, 1000, 1000, 10, 14, false)).toEqual([
    [0, 12],
    [10, 2],
  ]);
});

test('a flat series is drawn in the middle', () => {
  const s = new Series(4);
  s.push(0, 7);
  s.push(1000, 7);
  expect(sparkPoints(s, 1000, 1000, 10, 20, false).map((p) => p[1])).toEqual([10, 10]);
});

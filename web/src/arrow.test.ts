import { expect, test } from 'vitest';
import { arrowSDF } from './arrow';

test('arrowSDF: inside above the edge value, outside below, far outside zero', () => {
  const size = 48;
  const img = arrowSDF(size, 8);
  expect(img.data).toHaveLength(size * size * 4);
  const alpha = (x: number, y: number) => img.data[(y * size + x) * 4 + 3] / 255;
  expect(alpha(24, 24)).toBeGreaterThan(0.75); // body
  expect(alpha(24, 10)).toBeGreaterThan(0.75); // near the tip
  expect(alpha(24, 36)).toBeLessThan(0.75); // the notch at the back is outside
  expect(alpha(0, 0)).toBe(0); // corner, further than radius
  expect(alpha(8, 24)).toBeLessThan(0.75); // left of the arrow
  // symmetric about the vertical axis
  for (let y = 0; y < size; y++) for (let x = 0; x < size / 2; x++) expect(alpha(x, y)).toBe(alpha(size - 1 - x, y));
});

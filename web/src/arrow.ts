// The truck marker: an arrow pointing north, as a signed-distance-field
// image so that MapLibre can tint it by speed (icon-color) and rotate it by
// heading. Generated at start-up; nothing to fetch. Unit-tested.

/** The arrow outline in units of the icon's half-size, y down, tip at top. */
const ARROW: [number, number][] = [
  [0, -1],
  [0.72, 0.85],
  [0, 0.45],
  [-0.72, 0.85],
];

function segDist(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const dx = bx - ax;
  const dy = by - ay;
  const t = Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(px - ax - t * dx, py - ay - t * dy);
}

function inside(px: number, py: number, poly: [number, number][]): boolean {
  let in_ = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i];
    const [xj, yj] = poly[j];
    if (yi > py !== yj > py && px < ((xj - xi) * (py - yi)) / (yj - yi) + xi) in_ = !in_;
  }
  return in_;
}

/** arrowSDF returns an RGBA image of size×size pixels whose alpha encodes
 * the signed distance to the arrow's edge the way MapLibre's SDF icons
 * expect (as @mapbox/tiny-sdf does): 0.75 on the edge, rising inside,
 * falling to 0 at radius pixels outside. The arrow fills size - 2·radius. */
export function arrowSDF(size: number, radius: number): { width: number; height: number; data: Uint8Array } {
  const data = new Uint8Array(size * size * 4);
  const half = (size - 2 * radius) / 2;
  const c = size / 2;
  const pts = ARROW.map(([x, y]) => [c + x * half, c + y * half] as [number, number]);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const px = x + 0.5;
      const py = y + 0.5;
      let d = Infinity;
      for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) d = Math.min(d, segDist(px, py, pts[j][0], pts[j][1], pts[i][0], pts[i][1]));
      if (inside(px, py, pts)) d = -d;
      const a = 1 - (d / radius + 0.25);
      const o = (y * size + x) * 4;
      data[o] = data[o + 1] = data[o + 2] = 255;
      data[o + 3] = Math.round(255 * Math.max(0, Math.min(1, a)));
    }
  }
  return { width: size, height: size, data };
}

// Small time-series charts for the vital-signs panel, drawn on a canvas.
// The geometry (sparkPoints) is a pure function; unit-tested.

import type { Series } from './vitals';

/** sparkPoints maps the samples of the last windowMs before nowMs to
 * canvas coordinates in a w×h box: time left to right, value bottom to top
 * over [lo, hi] where lo is 0 for figures that start at zero (zeroBased)
 * or the series minimum, and hi the maximum (a flat series is drawn in the
 * middle). */
export function sparkPoints(s: Series, nowMs: number, windowMs: number, w: number, h: number, zeroBased: boolean): [number, number][] {
  const pts: [number, number][] = [];
  let [lo, hi] = s.range();
  if (zeroBased) lo = Math.min(0, lo);
  const flat = hi - lo <= Math.abs(hi) * 1e-9;
  const pad = 2;
  for (let i = 0; i < s.length; i++) {
    const [t, v] = s.at(i);
    if (t < nowMs - windowMs) continue;
    const x = ((t - (nowMs - windowMs)) / windowMs) * w;
    const y = flat ? h / 2 : h - pad - ((v - lo) / (hi - lo)) * (h - 2 * pad);
    pts.push([x, y]);
  }
  return pts;
}

/** drawSpark draws the series as a line with a light fill under it. */
export function drawSpark(canvas: HTMLCanvasElement, s: Series, nowMs: number, windowMs: number, color: string, zeroBased: boolean): void {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (w === 0 || h === 0) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pts = sparkPoints(s, nowMs, windowMs, w, h, zeroBased);
  if (pts.length === 0) return;
  ctx.beginPath();
  ctx.moveTo(pts[0][0], pts[0][1]);
  for (const [x, y] of pts) ctx.lineTo(x, y);
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.stroke();
  ctx.lineTo(pts[pts.length - 1][0], h);
  ctx.lineTo(pts[0][0], h);
  ctx.closePath();
  ctx.globalAlpha = 0.15;
  ctx.fillStyle = color;
  ctx.fill();
  ctx.globalAlpha = 1;
}

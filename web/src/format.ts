// Number formatting for the panels. Pure functions; unit-tested.

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** fmtBytes renders a byte count with a binary unit: 1536 → "1.5 KiB". */
export function fmtBytes(n: number): string {
  if (!Number.isFinite(n)) return '–';
  let v = Math.abs(n);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const s = u === 0 ? String(Math.round(v)) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return (n < 0 ? '-' : '') + s + ' ' + units[u];
}

/** fmtCount renders an integer with thousands separators: 1234567 → "1,234,567". */
export function fmtCount(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const neg = n < 0;
  const s = String(Math.round(Math.abs(n)));
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (i > 0 && (s.length - i) % 3 === 0) out += ',';
    out += s[i];
  }
  return (neg ? '-' : '') + out;
}

/** fmtRate renders a per-second rate compactly: 1234 → "1.23k", 2.5e6 → "2.50M". */
export function fmtRate(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(2) + 'G';
  if (a >= 1e6) return (n / 1e6).toFixed(2) + 'M';
  if (a >= 1e3) return (n / 1e3).toFixed(2) + 'k';
  if (a >= 100 || a === 0) return n.toFixed(0);
  return n.toFixed(1);
}

/** fmtAge renders an age in seconds: 5 → "5 s", 125 → "2 min 5 s", 7300 → "2 h 1 min". */
export function fmtAge(sec: number): string {
  if (!Number.isFinite(sec)) return '–';
  if (sec < 0) sec = 0; // clocks a little apart: a report from "the future" is fresh
  sec = Math.floor(sec);
  if (sec < 60) return `${sec} s`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min ${sec % 60} s`;
  if (sec < 86400) return `${Math.floor(sec / 3600)} h ${Math.floor((sec % 3600) / 60)} min`;
  return `${Math.floor(sec / 86400)} d ${Math.floor((sec % 86400) / 3600)} h`;
}

/** fmtMs renders milliseconds with a precision that suits their size. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  if (ms >= 100) return ms.toFixed(0) + ' ms';
  if (ms >= 1) return ms.toFixed(2) + ' ms';
  return (ms * 1000).toFixed(0) + ' µs';
}

/** fmtHeading renders a heading in degrees with its compass point: 90 → "90° E". */
export function fmtHeading(deg: number): string {
  if (!Number.isFinite(deg)) return '–';
  const pts = ['N', 'NE', 'E', 'SE', 'S', 'SW', 'W', 'NW'];
  const d = ((Math.round(deg) % 360) + 360) % 360;
  return `${d}° ${pts[Math.round(d / 45) % 8]}`;
}

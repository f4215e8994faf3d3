import { execFileSync } from 'node:child_process';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { basemapGeoJSON, offlineStyle, type BasemapData } from './basemap';

// The test builds the basemap from the installed packages exactly as the
// production build does.
let data: BasemapData;
beforeAll(() => {
  const out = join(mkdtempSync(join(tmpdir(), 'fleetd-basemap-')), 'basemap.json');
  execFileSync(process.execPath, [join(__dirname, '..', 'tools', 'basemap.mjs'), out]);
  data = JSON.parse(readFileSync(out, 'utf8'));
});

describe('basemap', () => {
  test('outlines decode to plausible geometry', () => {
    const g = basemapGeoJSON(data);
    expect(g.land.features.length).toBeGreaterThan(150); // Natural Earth 110m has 177 countries
    expect(g.states.coordinates.length).toBeGreaterThan(50);
    expect(g.borders.coordinates.length).toBeGreaterThan(100);
    // every coordinate is a real longitude/latitude
    for (const ml of [g.coast, g.borders, g.states]) {
      for (const line of ml.coordinates) {
        for (const [lon, lat] of line) {
          if (!(lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90)) throw new Error(`bad point ${lon},${lat}`);
        }
      }
    }
    // the state borders lie in the US (Alaska and Hawaii included)
    const lons = g.states.coordinates.flat().map((p) => p[0]);
    expect(Math.min(...lons)).toBeGreaterThan(-180);
    expect(Math.max(...lons)).toBeLessThan(-60);
  });

  test('the style needs nothing from the network', () => {
    const style = offlineStyle(basemapGeoJSON(data), data.attribution);
    expect(style.glyphs).toBeUndefined();
    expect(style.sprite).toBeUndefined();
    const text = JSON.stringify(style);
    expect(text).not.toMatch(/https?:\/\//);
    for (const s of Object.values(style.sources)) expect(s.type).toBe('geojson');
    for (const l of style.layers) expect(l.type).not.toBe('symbol');
  });

  test('empty style before the basemap loads', () => {
    const style = offlineStyle(null, '');
    expect(Object.keys(style.sources)).toHaveLength(4);
  });
});

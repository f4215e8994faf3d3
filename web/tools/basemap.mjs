// Builds the dashboard's offline basemap, generated/basemap.json, from the
// world-atlas (Natural Earth 1:110m countries) and us-atlas (US Census 1:10m
// states) TopoJSON files: the two topologies re-quantized to a coarser grid
// (enough for the zoom levels an outline basemap is read at), with the
// objects and properties the page does not draw dropped. The output depends
// only on the two input files, so the build stays reproducible.
//
// Usage: node tools/basemap.mjs [OUT]   (default generated/basemap.json)
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { quantize } from 'topojson-client';

const here = dirname(fileURLToPath(import.meta.url));
const nm = resolve(here, '..', 'node_modules');
const out = resolve(process.argv[2] ?? resolve(here, '..', 'generated', 'basemap.json'));

// dequantize returns a copy of a quantized, delta-encoded topology with
// absolute coordinates and no transform, as quantize requires.
function dequantize(topo) {
  const [sx, sy] = topo.transform.scale;
  const [tx, ty] = topo.transform.translate;
  const arcs = topo.arcs.map((arc) => {
    let x = 0, y = 0;
    return arc.map(([dx, dy]) => {
      x += dx; y += dy;
      return [x * sx + tx, y * sy + ty];
    });
  });
  const { transform: _t, bbox: _b, ...rest } = topo;
  return { ...rest, arcs };
}

// keep returns topo with only the named objects, their geometries stripped
// of properties and ids.
function keep(topo, names) {
  const objects = {};
  for (const n of names) {
    const o = topo.objects[n];
    objects[n] = { type: o.type, geometries: o.geometries.map((g) => ({ type: g.type, arcs: g.arcs })) };
  }
  return { ...topo, objects };
}

function load(rel) {
  return JSON.parse(readFileSync(resolve(nm, rel), 'utf8'));
}

const world = quantize(dequantize(keep(load('world-atlas/countries-110m.json'), ['countries'])), 1e4);
const us = quantize(dequantize(keep(load('us-atlas/states-10m.json'), ['states'])), 3e4);

// Arcs no longer referenced by any kept object are left in place: both
// topologies' objects reference all their arcs.
const text = JSON.stringify({
  attribution: 'Natural Earth (world-atlas), US Census Bureau (us-atlas)',
  world,
  us,
});
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, text);
console.log(`basemap: ${out} ${text.length} bytes`);

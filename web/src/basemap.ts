// The offline basemap: country and US state outlines from the bundled
// TopoJSON (tools/basemap.mjs builds it from world-atlas and us-atlas), as
// a MapLibre style that needs nothing from the network: no tiles, no
// sprite, no glyphs. Unit-tested.

import type { FeatureCollection, MultiLineString, Geometry } from 'geojson';
import type { StyleSpecification } from 'maplibre-gl';
import { feature, mesh } from 'topojson-client';
import type { GeometryCollection, Topology } from 'topojson-specification';

export interface BasemapData {
  attribution: string;
  world: Topology<{ countries: GeometryCollection }>;
  us: Topology<{ states: GeometryCollection }>;
}

/** Credit for the outline data, shown by the map's attribution control. */
export const BASEMAP_ATTRIBUTION = 'Outlines: Natural Earth, US Census Bureau';

export const COLORS = {
  background: '#0b1220', // water
  land: '#172033',
  coast: '#3b4a66',
  border: '#4b5b7a',
  state: '#334261',
};

export interface BasemapGeoJSON {
  land: FeatureCollection;
  coast: MultiLineString;
  borders: MultiLineString;
  states: MultiLineString;
}

/** basemapGeoJSON converts the topologies: land (country polygons),
 * coastlines (arcs used by one country), country borders (arcs shared by
 * two) and US state borders (arcs shared by two states). */
export function basemapGeoJSON(d: BasemapData): BasemapGeoJSON {
  const countries = d.world.objects.countries;
  const land = feature(d.world, countries) as FeatureCollection<Geometry>;
  return {
    land,
    coast: mesh(d.world, countries, (a, b) => a === b),
    borders: mesh(d.world, countries, (a, b) => a !== b),
    states: mesh(d.us, d.us.objects.states, (a, b) => a !== b),
  };
}

const empty: FeatureCollection = { type: 'FeatureCollection', features: [] };

/** offlineStyle returns the basemap style; with g null (basemap not loaded
 * yet) its sources are empty and filled in later by setData. */
export function offlineStyle(g: BasemapGeoJSON | null, attribution: string): StyleSpecification {
  const src = (data: FeatureCollection | MultiLineString) => ({ type: 'geojson' as const, data, attribution });
  return {
    version: 8,
    name: 'fleetd offline outlines',
    sources: {
      'base-land': src(g ? g.land : empty),
      'base-coast': src(g ? g.coast : empty),
      'base-borders': src(g ? g.borders : empty),
      'base-states': src(g ? g.states : empty),
    },
    layers: [
      { id: 'base-background', type: 'background', paint: { 'background-color': COLORS.background } },
      // At 1:110m the coast is a sketch: zoomed in it would draw invented
      // bays, so land and coast fade out past zoom 7.
      { id: 'base-land', type: 'fill', source: 'base-land', paint: { 'fill-color': COLORS.land, 'fill-antialias': false, 'fill-opacity': ['interpolate', ['linear'], ['zoom'], 7, 1, 10, 0.3] } },
      { id: 'base-states', type: 'line', source: 'base-states', minzoom: 2, paint: { 'line-color': COLORS.state, 'line-width': ['interpolate', ['linear'], ['zoom'], 2, 0.4, 8, 1.2] } },
      { id: 'base-borders', type: 'line', source: 'base-borders', paint: { 'line-color': COLORS.border, 'line-width': ['interpolate', ['linear'], ['zoom'], 1, 0.6, 8, 1.6] } },
      { id: 'base-coast', type: 'line', source: 'base-coast', paint: { 'line-color': COLORS.coast, 'line-width': ['interpolate', ['linear'], ['zoom'], 1, 0.6, 8, 1.4], 'line-opacity': ['interpolate', ['linear'], ['zoom'], 7, 1, 10, 0.35] } },
    ],
  };
}

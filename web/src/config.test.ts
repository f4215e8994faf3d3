import { expect, test } from 'vitest';
import { parseConfig } from './config';

const defaults = { basemapStyle: '', stream: false, zones: false, alerts: false };

test.each([
  ['null', null, defaults],
  ['empty object', '{}', defaults],
  ['not JSON', '{{', defaults],
  ['array', '[]', defaults],
  ['all set', '{"basemap_style":"https://tiles.example/style.json","features":{"stream":true,"zones":true,"alerts":true}}', { basemapStyle: 'https://tiles.example/style.json', stream: true, zones: true, alerts: true }],
  ['truthy strings are not true', '{"features":{"stream":"yes"}}', defaults],
  ['wrong types ignored', '{"basemap_style":5}', defaults],
])('%s', (_n, text, want) => expect(parseConfig(text)).toEqual(want));

// Entry point: read the configuration the server injected, start the app,
// and expose it as window.__fleetd for the browser test and the console.
import 'maplibre-gl/dist/maplibre-gl.css';
import './style.css';
import { App } from './app';
import { parseConfig } from './config';

declare global {
  interface Window {
    __fleetd?: App;
  }
}

const cfg = parseConfig(document.getElementById('fleetd-config')?.textContent);
window.__fleetd = new App(cfg);

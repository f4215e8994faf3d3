// Vite builds the dashboard into ../internal/web/dist, which the Go package
// internal/web embeds. The build must be reproducible (scripts/check-web
// rebuilds it and compares): asset names carry content hashes only, no
// timestamps, and no source maps are emitted.
import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const outDir = process.env.FLEETD_WEB_OUT ?? fileURLToPath(new URL('../internal/web/dist', import.meta.url));

export default defineConfig({
  base: './',
  build: {
    outDir,
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
    // Everything is same-origin and served by fleetd itself; no inlined
    // data: URLs for assets, so the CSP can stay strict.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    chunkSizeWarningLimit: 1600,
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});

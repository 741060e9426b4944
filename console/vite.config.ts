// The console's build: one entry, hashed asset names (served immutable by coda), no source
// maps, no inline script (coda's Content-Security-Policy allows none). `npm run dev` proxies
// the API to a `coda serve` on CODA_API (default http://127.0.0.1:8080).
import { defineConfig } from "vite";

const api = process.env.CODA_API ?? "http://127.0.0.1:8080";
const proxy = { "/v1": { target: api }, "/openapi.json": { target: api } };

export default defineConfig({
  base: "/",
  build: {
    outDir: process.env.CONSOLE_OUT_DIR ?? "dist",
    emptyOutDir: true,
    sourcemap: false,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: "es2022",
    reportCompressedSize: false,
  },
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  server: { proxy },
  preview: { proxy },
});

// Bundles the dashboard (www/src) into www/dist with esbuild, with the map
// data copied from npm's world-atlas: no CDN, the page works offline.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("www/dist", { recursive: true });
await build({
  entryPoints: { app: "www/src/main.js" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome120", "firefox120", "safari17"],
  outdir: "www/dist",
  logLevel: "warning",
});
await build({
  entryPoints: { app: "www/src/app.css" },
  bundle: true,
  minify: true,
  outdir: "www/dist",
  logLevel: "warning",
});
copyFileSync("node_modules/world-atlas/countries-110m.json", "www/dist/countries-110m.json");
console.log("[build] dashboard bundled into www/dist");

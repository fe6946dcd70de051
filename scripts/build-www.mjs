// Bundles the dashboard (www/src) into www/dist with esbuild: app.js (uPlot,
// d3-geo, topojson-client and the page's code), app.css (uPlot's CSS and the
// page's) and the map data copied from npm's world-atlas. No CDN, no external
// font: the page works offline. Run from anywhere: `node scripts/build-www.mjs`.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const www = join(root, "www");
const dist = join(www, "dist");

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
const common = { absWorkingDir: root, bundle: true, minify: true, outdir: dist, logLevel: "warning", legalComments: "none" };
await build({
  ...common,
  entryPoints: { app: join(www, "src/main.js") },
  format: "esm",
  target: ["chrome120", "firefox120", "safari17"],
  sourcemap: "linked",
});
await build({ ...common, entryPoints: { app: join(www, "src/app.css") } });
copyFileSync(join(root, "node_modules/world-atlas/countries-110m.json"), join(dist, "countries-110m.json"));
// The API's OpenAPI document, served only by the authenticated
// /_intel/api/openapi.json route (the dashboard route never serves /api/).
mkdirSync(join(www, "api"), { recursive: true });
copyFileSync(join(root, "src/openapi.json"), join(www, "api/openapi.json"));

// Guard: nothing the page loads may come from another host.
const external = /(?:src|href)\s*=\s*["']?(?:https?:)?\/\/|url\(\s*["']?(?:https?:)?\/\/|@import\s+["']?(?:https?:)?\/\//i;
for (const file of [join(www, "index.html"), join(dist, "app.css")]) {
  if (external.test(readFileSync(file, "utf8"))) {
    console.error(`[build] ${file} references another host; bundle it from npm instead`);
    process.exit(1);
  }
}
console.log("[build] dashboard bundled into www/dist");

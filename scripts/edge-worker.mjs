// The built Worker as Miniflare options, for the scripts that run it outside
// wrangler (bench.mjs, bench-scale.mjs, profile-cpu.mjs): the same module
// rules, the Durable Object classes wrangler.toml declares (with SQLite
// storage; read from the file, so a new class is bound here too) and the KV
// namespace.
import { readFileSync } from "node:fs";
import { objectBindings } from "./scale-model.mjs";

export const COMPATIBILITY = { compatibilityDate: "2026-07-01", modules: true };

export function edgeWorker(bindings) {
  const classes = objectBindings(readFileSync("wrangler.toml", "utf8"));
  return {
    name: "w",
    scriptPath: "build/index.js",
    modulesRoot: ".",
    modulesRules: [
      { type: "ESModule", include: ["**/*.js"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    bindings,
    durableObjects: Object.fromEntries(classes.map((c) => [c.binding, { className: c.className, useSQLite: true }])),
    kvNamespaces: ["METRICS"],
    ...COMPATIBILITY,
  };
}

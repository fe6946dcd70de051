// The built Worker as Miniflare options, for the scripts that run it outside
// wrangler (bench.mjs, profile-cpu.mjs): the same module rules, Durable Object
// classes with SQLite storage and KV namespace as wrangler.toml declares.
export const COMPATIBILITY = { compatibilityDate: "2026-07-01", modules: true };

export function edgeWorker(bindings) {
  return {
    name: "w",
    scriptPath: "build/index.js",
    modulesRoot: ".",
    modulesRules: [
      { type: "ESModule", include: ["**/*.js"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    bindings,
    durableObjects: {
      PROFILES: { className: "ProfileObject", useSQLite: true },
      VISITORS: { className: "VisitorObject", useSQLite: true },
      HUB: { className: "HubObject", useSQLite: true },
      STREAMS: { className: "StreamObject", useSQLite: true },
    },
    kvNamespaces: ["METRICS"],
    ...COMPATIBILITY,
  };
}

// Where the Worker's CPU goes: a V8 CPU profile of edgeintel's isolate (the
// Worker and its Durable Objects share it locally) while one client IP sends
// requests at 16 in flight, taken through the runtime's inspector, summed by
// function (self time per request). For finding work to cut, not a benchmark:
// the profiler itself slows the isolate down.
//
//   KEEP_NAMES=1 bash scripts/build.sh && node scripts/profile-cpu.mjs [requests]
//
// (A build without KEEP_NAMES has no wasm function names; `npm run build`
// afterwards restores the stripped module.)
import { Miniflare } from "miniflare";
import { startOrigin } from "./origin.mjs";
import { edgeWorker } from "./edge-worker.mjs";
import { CITIES, cfFor, asciiJson } from "./simulate.mjs";

const N = Number(process.argv[2] ?? 4000);
const PORT = 9339;
const origin = await startOrigin({ port: 0 });
const mf = new Miniflare({
  inspectorPort: PORT,
  workers: [edgeWorker({ ORIGIN_URL: origin.url, ADMIN_TOKEN: "profile-admin-token-0123456789" })],
});
const base = (await mf.ready).href.replace(/\/$/, "");
const headers = { "User-Agent": "Mozilla/5.0 Chrome/131.0", Accept: "text/html", "Accept-Language": "en", "CF-Connecting-IP": "203.0.113.5", "MF-CF-Blob": asciiJson(cfFor(CITIES[0])) };
const send = () => fetch(base + "/products", { headers }).then((r) => r.arrayBuffer());
for (let i = 0; i < 300; i++) await send(); // warm-up

const targets = await (await fetch(`http://127.0.0.1:${PORT}/json`)).json();
const target = targets.find((t) => t.title.endsWith("core:user:w"));
if (!target) throw new Error(`no inspector target for the worker: ${targets.map((t) => t.title).join(", ")}`);
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((res, rej) => ((ws.onopen = res), (ws.onerror = rej)));
let id = 0;
const pending = new Map();
ws.onmessage = (m) => {
  const d = JSON.parse(m.data);
  if (d.id && pending.has(d.id)) pending.get(d.id)(d), pending.delete(d.id);
};
const call = (method, params = {}) => new Promise((res) => (pending.set(++id, res), ws.send(JSON.stringify({ id, method, params }))));

await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 100 });
await call("Profiler.start");
let next = 0;
await Promise.all(Array.from({ length: 16 }, async () => { while (next++ < N) await send(); }));
const { profile } = (await call("Profiler.stop")).result;

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
let total = 0;
profile.samples.forEach((s, i) => {
  const f = byId.get(s).callFrame;
  const name = f.functionName || `(${f.url.split("/").pop() || "native"})`;
  const dt = profile.timeDeltas[i] ?? 0;
  self.set(name, (self.get(name) ?? 0) + dt);
  total += dt;
});
console.log(`${N} requests, ${(total / 1000).toFixed(0)} ms sampled, ${(total / N).toFixed(0)} µs per request (idle included)`);
for (const [name, us] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
  console.log(`${(us / N).toFixed(1).padStart(7)} µs/req  ${name.replace(/::h[0-9a-f]{16}$/, "").slice(0, 130)}`);
}
ws.close();
await mf.dispose();
await origin.close();

// Writes BENCHMARKS.md from bench-results.json (and the native Criterion
// estimates it carries): every number comes from one `npm run bench` run.
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const r = JSON.parse(readFileSync("bench-results.json", "utf8"));
// Fixed decimals with trailing zeros after the point trimmed ("100", "2.5").
const n = (x, d = 2) =>
  x === null || x === undefined ? "n/a" : Number(x).toFixed(d).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
const ok = (cond) => (cond ? "met" : "**missed**");
const us = (ns) => (ns === undefined ? "n/a" : `${n(ns / 1000, 2)} µs`);
const native = r.native ?? {};
const find = (prefix) => Object.entries(native).find(([k]) => k.startsWith(prefix))?.[1];
const core = find("core_path");
const lines = [];
const p = (s = "") => lines.push(s);

p("# Benchmarks");
p();
p(`Measured by \`npm run bench\` on ${r.startedAt.slice(0, 10)}: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}, Miniflare ${r.machine.miniflare} (workerd). The runtime numbers are the local runtime on this machine, client and runtime sharing its 2 cores; ratios compare edgeintel with a pass-through worker (it only forwards to the same origin) measured in the same run. Results: \`bench-results.json\`. Nothing here is a timed test: \`npm test\` asserts behaviour, this measures it.${r.quick ? " (Quick run: smaller samples.)" : ""}`);
p();
p("## Targets");
p();
p("| target | measured | status |");
p("|---|---|---|");
for (const row of r.latency ?? []) {
  p(`| fast mode, ${row.rate} req/s: p50 ratio <= 1.10 | ${n(row.fast.ratio.p50)} (${n(row.fast.p50)} ms vs ${n(row.passthrough.p50)} ms) | ${ok(row.fast.ratio.p50 <= 1.1)} |`);
  p(`| fast mode, ${row.rate} req/s: p99 ratio <= 1.50 | ${n(row.fast.ratio.p99)} (${n(row.fast.p99)} ms vs ${n(row.passthrough.p99)} ms) | ${ok(row.fast.ratio.p99 <= 1.5)} |`);
}
const std = (r.latency ?? [])[0];
if (std) {
  p(`| CPU per request <= 3x pass-through (standard mix, ${std.rate} req/s) | ${n(std.fast.ratio.cpu)}x (${n(std.fast.cpuMsPerRequest, 3)} ms vs ${n(std.passthrough.cpuMsPerRequest, 3)} ms) | ${ok(std.fast.ratio.cpu <= 3)} |`);
}
for (const row of r.latency ?? []) {
  p(`| <= 150 Durable Object requests per 1,000 client requests (standard mix, ${row.requests} requests at ${row.rate} req/s, fast mode) | ${n(row.fast.objectCallsPer1000, 1)} | ${ok(row.fast.objectCallsPer1000 <= 150)} |`);
}
if (core) p(`| core path (parse + signals + score + headers) < 20 µs natively | ${us(core.medianNs)} median | ${ok(core.medianNs < 20_000)} |`);
if (r.bundle) p(`| wasm < 400 KB gzipped (read as KiB: 409,600 bytes) | ${n(r.bundle.wasmGzipBytes / 1024, 1)} KiB (${r.bundle.wasmGzipBytes.toLocaleString("en-US")} bytes, gzip -9) | ${ok(r.bundle.wasmGzipBytes < 400 * 1024)} |`);
if (r.profileObject) p(`| >= 1,000 observations/s into one profile object, none lost | ${n(r.profileObject.observationsPerSecond, 0)}/s (median of ${r.profileObject.runs?.length ?? 1} runs), lost ${r.profileObject.lost} | ${ok(r.profileObject.observationsPerSecond >= 1000 && r.profileObject.lost === 0)} |`);
// `fanOut` is {runs, p99MsAt1000, p99MsAt10000} (an array of runs before issue 17).
const fanRuns = Array.isArray(r.fanOut) ? r.fanOut : r.fanOut?.runs ?? [];
const f1000 = fanRuns.find((f) => f.subscribers === 1000);
if (f1000) p(`| 1,000 subscribers: p99 delivery < 100 ms | ${n(f1000.p99)} ms | ${ok(f1000.p99 < 100)} |`);
const f10000 = fanRuns.find((f) => f.subscribers === 10000);
if (f10000) p(`| 10,000 subscribers: p99 delivery < 500 ms | ${n(f10000.p99)} ms | ${ok(f10000.p99 < 500)} |`);
const tick1m = find("analytics/tick views with 1000000");
if (tick1m) p(`| analytics tick < 10 ms with 1 million events in the window | ${n(tick1m.medianNs / 1e6, 3)} ms natively | ${ok(tick1m.medianNs < 10e6)} |`);
// The reading of the numbers (why a target is missed, what was tried) is
// written by hand after a run and kept beside this script.
if (existsSync("scripts/bench-notes.md")) {
  p();
  p(readFileSync("scripts/bench-notes.md", "utf8").trimEnd());
}
p();
p("## Added latency and cost (standard mix: 1,000 IPs with Zipf-like shares browsing in page views of a page and 4 assets, scanners, a Tor client)");
p();
p("| rate | worker | p50 ms | p95 ms | p99 ms | achieved req/s | CPU ms/request (all workerd processes) | DO requests / 1,000 | errors |");
p("|---|---|---|---|---|---|---|---|---|");
for (const row of r.latency ?? []) {
  for (const kind of ["passthrough", "fast", "consistent"]) {
    const x = row[kind];
    p(`| ${row.rate}/s | ${kind} | ${n(x.p50)} | ${n(x.p95)} | ${n(x.p99)} | ${n(x.achievedRps, 0)} | ${n(x.cpuMsPerRequest, 3)} | ${n(x.objectCallsPer1000, 1)} | ${x.errors} |`);
  }
}
p();
p("Durable Object requests per 1,000 client requests, by binding (PROFILES: consults on a cache miss and batch flushes; HUB: analytics reports and published events; VISITORS: visitor lookups):");
p();
p("| rate | worker | by binding |");
p("|---|---|---|");
for (const row of r.latency ?? []) {
  for (const kind of ["fast", "consistent"]) {
    const b = row[kind].objectCallsByBinding ?? {};
    p(`| ${row.rate}/s | ${kind} | ${Object.entries(b).map(([k, v]) => `${k} ${n(v, 1)}`).join(", ") || "n/a"} |`);
  }
}
const w = r.worstCaseNewIpEveryRequest;
if (w) {
  p();
  p(`Worst case, every request from a new IP (${w.requests} requests at ${w.rate}/s, fast mode): p50 ${n(w.fast.p50)} ms vs ${n(w.passthrough.p50)} ms (ratio ${n(w.ratio.p50)}), p99 ${n(w.fast.p99)} ms vs ${n(w.passthrough.p99)} ms (ratio ${n(w.ratio.p99)}), CPU ${n(w.ratio.cpu)}x, ${n(w.fast.objectCallsPer1000, 1)} Durable Object requests per 1,000 client requests (one consult per new IP that misses the budget or not, plus its own flush).`);
}
p();
p("## Core path and analytics (native, Criterion)");
p();
p("| benchmark | median | mean |");
p("|---|---|---|");
for (const [k, v] of Object.entries(native)) p(`| ${k} | ${us(v.medianNs)} | ${us(v.meanNs)} |`);
p();
p("The ingest rows are one whole run of N events: per-event cost is the median divided by N.");
const ing = ["1000", "100000", "1000000"].map((k) => [k, find(`analytics/ingest ${k} events`)]).filter(([, v]) => v);
if (ing.length) p("Per event: " + ing.map(([k, v]) => `${k}: ${n(v.medianNs / Number(k), 0)} ns`).join(", ") + ".");
if (r.analyticsStateBytes) p("The window's state (the hub's `Aggregator`), serialized: " + Object.entries(r.analyticsStateBytes).map(([k, v]) => `${Number(k).toLocaleString("en-US")} events ${v.toLocaleString("en-US")} bytes`).join(", ") + ": it grows with the distinct countries, ASNs and probe paths, each capped per slide (docs/SCALING.md), not with the number of events.");
p("In the runtime the tick cannot time itself: workerd advances `Date.now()` and `performance.now()` only across I/O (a Spectre mitigation), so the same code is timed natively here.");
p();
if (r.bundle) {
  p("## Bundle and start-up");
  p();
  const when = r.measured?.bundle;
  if (when && when.at.slice(0, 16) !== r.startedAt.slice(0, 16)) {
    p(`(This section was measured again on its own, ${when.at.slice(0, 16).replace("T", " ")} UTC at commit ${when.commit}, with \`BENCH_ONLY=bundle BENCH_KEEP=1\`; the other sections are from the full run above.)`);
    p();
  }
  p(`wasm ${r.bundle.wasmBytes} bytes raw, ${r.bundle.wasmGzipBytes} gzipped (gzip level 9); JS glue ${r.bundle.jsBytes} bytes. WebAssembly.compile of the module in Node (V8): ${n(r.bundle.wasmCompileMsMedian)} ms median. A fresh local runtime to its first response: ${n(r.bundle.runtimeColdStartToFirstResponseMsMedian)} ms median (includes starting workerd).`);
  p();
  const d = r.bundle.deploy;
  if (d) {
    const mib = (b) => n(b / 1024 / 1024, 0);
    p("| deploy upload (`wrangler deploy --dry-run`, offline) | size | gzipped | share of the limit on the compressed size |");
    p("|---|---|---|---|");
    p(`| ${d.files.map((f) => f.replace(/^[0-9a-f]{40}-/, "")).join(", ")} | ${n(d.wranglerUploadKiB, 1)} KiB | ${n(d.wranglerGzipKiB, 1)} KiB | ${n((d.wranglerGzipKiB * 1024 * 100) / d.limitFreeBytes, 1)}% of ${mib(d.limitFreeBytes)} MiB (free plan), ${n((d.wranglerGzipKiB * 1024 * 100) / d.limitPaidBytes, 1)}% of ${mib(d.limitPaidBytes)} MiB (paid) |`);
    p();
    p("The dashboard (`www/`) is uploaded as static assets, which do not count toward that limit. `npm test` runs the same dry run (tests/deploy.test.mjs) and fails over the free plan's limit.");
    p();
  }
}
if (r.profileObject) {
  p("## One profile object");
  p();
  const po = r.profileObject;
  if (po.runs) {
    p(`Three runs of ${po.runs[0].sent} requests from one IP at 32 in flight, each on a fresh runtime, interleaved with three pass-through runs of the same requests. Observations/s through the whole path into one ProfileObject: ${po.runs.map((x) => n(x.observationsPerSecond, 0)).join(", ")} (median ${n(po.observationsPerSecond, 0)}); pass-through requests/s: ${po.passthroughRuns.map((x) => n(x, 0)).join(", ")} (median ${n(po.passthroughRequestsPerSecond, 0)}); ratio ${n(po.ratioToPassthrough)}. Calls into the object per run: ${po.runs.map((x) => x.profileObjectCalls).join(", ")} (the observations arrive coalesced, ~${n(po.runs[0].sent / Math.max(1, po.runs[0].profileObjectCalls), 0)} per call), so the object is far from its limit: the shared cores are. Stored ${po.stored} of ${po.sent} sent, lost ${po.lost}, errors ${po.errors}.`);
  } else {
    p(`${po.sent} requests from one IP at 32 in flight: ${n(po.observationsPerSecond, 0)} observations/s through the whole path into one ProfileObject (coalesced into batches), stored request count ${po.stored}, lost ${po.lost}, errors ${po.errors}.`);
  }
  p();
}
if (r.fanOut) {
  p("## Fan-out (event POSTed to delivery at every subscriber)");
  p();
  p("| subscribers | events | deliveries | p50 ms | p99 ms |");
  p("|---|---|---|---|---|");
  for (const f of fanRuns) p(`| ${f.subscribers} | ${f.events} | ${f.deliveries} | ${n(f.p50)} | ${n(f.p99)} |`);
  p();
}
if (r.memory) {
  p("## Memory");
  p();
  p(`${r.memory.distinctIps} requests, each from a new IP, at ${n(r.memory.rps, 0)} req/s: resident memory of the workerd processes ${n(r.memory.workerdRssMiBBefore, 1)} MiB before, ${n(r.memory.workerdRssMiBAfter, 1)} MiB after. This is not the isolate's memory: locally one workerd process also hosts every Durable Object, and each new IP created a ProfileObject with its own SQLite database (on Cloudflare those live elsewhere and are evicted when idle). The local runtime does not report a single isolate's heap, so the isolate bound is shown natively instead: the verdict cache holds at most ${r.memory.verdictCacheBound} entries (a native test inserts 100,000 and checks the bound), and pending batches hold at most one flush interval.`);
  const nm = r.nativeMemory;
  if (nm) {
    p();
    p(`The verdict cache natively (benches/memory.rs, a counting allocator, default bound ${nm.bound}), live heap bytes as distinct IPs pass through: ${nm.checkpoints.map((c) => `${c.distinctIps.toLocaleString("en-US")} IPs ${(c.liveHeapBytes / 2 ** 20).toFixed(2)} MiB (${c.entries} entries)`).join("; ")}. ${(() => {
      const atBound = nm.checkpoints.find((c) => c.distinctIps === nm.bound);
      const last = nm.checkpoints.at(-1);
      return atBound ? `${last.distinctIps.toLocaleString("en-US")} IPs take ${n(last.liveHeapBytes / atBound.liveHeapBytes)}x the bytes of ${atBound.distinctIps.toLocaleString("en-US")} (the entries stay at the bound).` : "";
    })()}`);
  }
  p();
}
p(`Runtime part of the run: ${r.runtimeSeconds} s.`);
// `--check`: write nothing; exit 1 naming every doc whose numbers differ
// from what bench-results.json gives (tests/docs.test.mjs runs it).
const CHECK = process.argv.includes("--check");
const drift = [];
function put(file, text) {
  if (CHECK) {
    if (readFileSync(file, "utf8") !== text) drift.push(file);
    return;
  }
  writeFileSync(file, text);
  console.log(`[bench] wrote ${file}`);
}
put("BENCHMARKS.md", lines.join("\n") + "\n");

// The measured numbers quoted in docs/SCALING.md, written between its
// markers from the same results, so no doc can quote a number no recorded run
// produced. (The README quotes none: benchmark numbers live in BENCHMARKS.md.)
const fan1000 = fanRuns.find((f) => f.subscribers === 1000);
const tick1M = find("analytics/tick views with 1000000");
const day = r.startedAt.slice(0, 10);
const scaling = [];
const sp = (s) => scaling.push(s);
sp(`*Measured* (\`npm run bench\` of ${day}, on the code of that day, BENCHMARKS.md):`);
for (const row of r.latency ?? []) sp(`- ${n(row.fast.objectCallsPer1000, 1)} Durable Object requests per 1,000 client requests in the standard mix (${row.requests.toLocaleString("en-US")} requests at ${row.rate} req/s, IPs browsing in page views);`);
if (r.worstCaseNewIpEveryRequest) sp(`- ${n(r.worstCaseNewIpEveryRequest.fast.objectCallsPer1000, 0)} per 1,000 when every request comes from a new IP;`);
if (r.profileObject) sp(`- one profile object took ${n(r.profileObject.observationsPerSecond, 0)} observations/s (median of ${r.profileObject.runs?.length ?? 1} runs), ${r.profileObject.lost} lost;`);
if (tick1M) sp(`- the analytics tick takes ${n(tick1M.medianNs / 1e6, 1)} ms natively with a million events in the window;`);
if (fan1000) sp(`- fan-out to 1,000 subscribers delivers at p50 ${n(fan1000.p50, 0)} ms, p99 ${n(fan1000.p99, 0)} ms locally.`);

function replaceBlock(file, name, body) {
  const text = readFileSync(file, "utf8");
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${file} has no ${start} ... ${end} block`);
  put(file, text.slice(0, a + start.length) + "\n" + body.join("\n") + "\n" + text.slice(b));
}
replaceBlock("docs/SCALING.md", "measured", scaling);
if (CHECK && drift.length) {
  console.error(`[bench] these docs differ from what bench-results.json gives: ${drift.join(", ")}; run \`node scripts/bench-report.mjs\` (or \`npm run bench\`) and commit the result`);
  process.exit(1);
}

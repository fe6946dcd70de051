// The K-isolate model (issue 17, item 5): K copies of the Worker run as K
// separate workers (K isolates) in ONE local runtime, sharing one set of
// Durable Object namespaces and one KV namespace, and the standard mix is
// split among them round robin. Measured per K, at the receiving side:
// requests per second into every Durable Object (the busiest object of each
// class, and by operation), object requests per 1,000 client requests, object
// calls per new subject (a phase where every request is a new IP), KV writes
// per key per second, and that nothing was lost (profile observations stored
// equal requests sent, the hub's request total equals requests sent).
//
// How the objects are counted: the objects live in a worker of their own
// ("objects", as on Cloudflare, where objects run apart from the isolates
// that call them), whose entry (build/bench-objects.mjs, written here from
// wrangler.toml's classes) wraps each class of the built Worker: the same
// object code, plus a counter per object id and operation (the first name in
// the JSON body, e.g. "Report"; objects by name where the runtime gives it,
// so the stream root and its relays count apart). The K copies bind those classes by
// `scriptName`. KV is wrapped the same way (a binding that forwards every
// call and logs each put with its key), in every worker. Both are bench-only:
// nothing here is part of a deployment.
import { Miniflare } from "miniflare";
import { readFileSync, writeFileSync } from "node:fs";
import { edgeWorker, COMPATIBILITY } from "./edge-worker.mjs";
import { startOrigin } from "./origin.mjs";
import { startLoader } from "./bench-load.mjs";
import { designOf, extrapolate, fit, objectBindings, predict, settingDefaults } from "./scale-model.mjs";

const r2 = (x) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 100) / 100);
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

const KV_COUNT_MODULE = `
export default function ({ INNER }) {
  return {
    get: (...a) => INNER.get(...a),
    getWithMetadata: (...a) => INNER.getWithMetadata(...a),
    list: (...a) => INNER.list(...a),
    delete: (...a) => INNER.delete(...a),
    async put(key, ...a) {
      const r = await INNER.put(key, ...a);
      console.log("[bench-kv] put " + Date.now() + " " + key);
      return r;
    },
  };
}`;

/** The objects worker's entry: every class of wrangler.toml, wrapped to count. */
function objectsEntry(classes) {
  const lines = [
    "// Written by scripts/bench-scale.mjs for one bench run; never deployed.",
    'import * as edge from "./index.js";',
    "const counts = {};",
    "function note(cls, id, op) {",
    "  const c = (counts[cls] ??= {});",
    "  const o = (c[id] ??= { total: 0, byOp: {}, bySecond: {} });",
    "  o.total++;",
    "  o.byOp[op] = (o.byOp[op] ?? 0) + 1;",
    "  const s = Math.floor(Date.now() / 1000);",
    "  o.bySecond[s] = (o.bySecond[s] ?? 0) + 1;",
    "}",
    "function counted(name, Inner) {",
    "  class Counted {",
    "    constructor(state, env) { this.inner = new Inner(state, env); this.objectId = state.id.name ?? state.id.toString(); }",
    "    async fetch(request) {",
    "      let op = 'empty';",
    "      try {",
    "        const head = (await request.clone().text()).slice(0, 80);",
    "        op = /^\\s*\\{?\\s*\"([A-Za-z_]+)\"/.exec(head)?.[1] ?? (head ? 'other' : 'empty');",
    "      } catch {}",
    "      note(name, this.objectId, op);",
    "      return this.inner.fetch(request);",
    "    }",
    "  }",
    "  for (const k of Object.getOwnPropertyNames(Inner.prototype)) {",
    "    if (k === 'constructor' || k === 'fetch' || typeof Inner.prototype[k] !== 'function') continue;",
    "    Counted.prototype[k] = function (...a) {",
    "      if (k === 'alarm') note(name, this.objectId, 'alarm');",
    "      return this.inner[k](...a);",
    "    };",
    "  }",
    "  return Counted;",
    "}",
    "export default { fetch() { return Response.json(counts); } };",
  ];
  for (const c of classes) lines.push(`export const ${c} = counted(${JSON.stringify(c)}, edge.${c});`);
  return lines.join("\n") + "\n";
}

/**
 * Runs the K-isolate model. `mix(n)` gives the standard mix, `newIps(n)`
 * requests each from a new IP. Returns what goes under `scale` in
 * bench-results.json.
 */
export async function scaleRuns({ mix, newIps, ks = [1, 2, 4, 8], requests = 4000, rate = 200, newSubjects = 300, admin, vars = {}, log = console.log }) {
  const bindings = objectBindings(readFileSync("wrangler.toml", "utf8"));
  const settings = { ...settingDefaults(readFileSync("src/settings.rs", "utf8")), ...vars };
  const hubBatch = Number(/const HUB_BATCH: usize = ([\d_]+)/.exec(readFileSync("src/edge/record.rs", "utf8"))?.[1].replaceAll("_", "") ?? 500);
  const design = designOf({ classNames: bindings.map((b) => b.className), settings });
  writeFileSync("build/bench-objects.mjs", objectsEntry(bindings.map((b) => b.className)));
  // Calm batches wait FLUSH_CALM_MS; with aggregators, a delta waits up to a
  // report period, then a forward period: counting stops after all of it.
  const ms = (name) => Number(settings[name] ?? 0) || 0;
  const settleMs = Math.max(ms("FLUSH_CALM_MS"), ms("FLUSH_INTERVAL_MS")) + ms("REPORT_INTERVAL_MS") + ms("AGGREGATOR_FORWARD_MS") + 2000;
  const origin = await startOrigin({ port: 0 });
  const loader = startLoader();
  const runs = [];
  const plan = mix(requests);
  const worst = newIps(newSubjects);
  for (const k of ks) {
    const t = Date.now();
    const kvLines = [];
    const env = { ORIGIN_URL: origin.url, ADMIN_TOKEN: admin, ...vars };
    const edges = Array.from({ length: k }, (_, i) => {
      const w = edgeWorker(env);
      delete w.kvNamespaces;
      return {
        ...w,
        name: `edge${i}`,
        routes: [`edge${i}.bench/*`],
        durableObjects: Object.fromEntries(bindings.map((b) => [b.binding, { className: b.className, scriptName: "objects" }])),
        wrappedBindings: { METRICS: { scriptName: "kvcount" } },
      };
    });
    const objects = {
      ...edgeWorker(env),
      name: "objects",
      scriptPath: "build/bench-objects.mjs",
      modulesRules: [
        { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
        { type: "CompiledWasm", include: ["**/*.wasm"] },
      ],
      durableObjects: Object.fromEntries(bindings.map((b) => [b.binding, { className: b.className, useSQLite: true }])),
      wrappedBindings: { METRICS: { scriptName: "kvcount" } },
    };
    delete objects.kvNamespaces;
    const mf = new Miniflare({
      handleRuntimeStdio(stdout, stderr) {
        stdout.on("data", (chunk) => {
          for (const line of chunk.toString().split("\n")) {
            const m = /\[bench-kv\] put (\d+) (.+)$/.exec(line);
            if (m) kvLines.push({ at: Number(m[1]), key: m[2] });
          }
        });
        stderr.on("data", (chunk) => process.stderr.write(chunk));
      },
      workers: [...edges, objects, { name: "kvcount", modules: true, script: KV_COUNT_MODULE, kvNamespaces: { INNER: "metrics-store" } }],
    });
    const url = (await mf.ready).href.replace(/\/$/, "");
    const objectsWorker = await mf.getWorker("objects");
    const counts = async () => (await objectsWorker.fetch("http://objects/")).json();
    // Every isolate sits in the same data centre (one colo): K isolates of one location.
    const targets = edges.map((e) => ({ base: url, headers: { "MF-Route-Override": e.name } }));
    const inColo = (qs) => qs.map((q) => ({ ...q, cf: { ...q.cf, colo: "DFW" } }));

    const load = await loader.run(targets, inColo(plan), rate);
    await sleep(settleMs);
    const afterMix = await counts();
    const mixKv = kvLines.length;
    const worstRun = await loader.run(targets, inColo(worst), Math.min(rate, 100));
    await sleep(settleMs);
    const afterWorst = await counts();

    // Nothing lost: every subject's stored request count against what was sent to it.
    // Sent = answered: a request that got no answer (a network error on the
    // loaded machine) may or may not have reached the Worker.
    const sentPerIp = new Map();
    const answered = [...plan.filter((_, i) => load.status[i] > 0), ...worst.filter((_, i) => worstRun.status[i] > 0)];
    for (const q of answered) sentPerIp.set(q.ip, (sentPerIp.get(q.ip) ?? 0) + 1);
    const api = async (path, edge = "edge0") => {
      const res = await fetch(url + "/_intel" + path, { headers: { Authorization: `Bearer ${admin}`, "MF-Route-Override": edge } });
      return res.json().catch(() => null);
    };
    // A cross-check of the counting: what the isolates say they called
    // (each read itself calls every hub shard once before answering).
    let isolateCalls = 0;
    for (const e of edges) {
      const a = await api("/api/intelligence/analytics", e.name);
      isolateCalls += (a?.isolate?.objectCalls ?? 0) - (a?.hubShards ?? 1);
    }
    let stored = 0;
    const ips = [...sentPerIp.keys()];
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (ips.length) {
          const ip = ips.pop();
          const count = (await api(`/api/ip-intelligence/${encodeURIComponent(ip)}`))?.profile?.requestCount ?? 0;
          stored += count;
        }
      }),
    );
    const sent = answered.length;
    // The hub's request total catches up within a report (and forward) period.
    let analytics = null;
    for (let t = 0; t < 30; t++) {
      analytics = await api("/api/intelligence/analytics");
      if ((analytics?.metrics?.totals?.requests ?? 0) >= sent) break;
      await sleep(1000);
    }

    const mixStats = summarize(afterMix, {}, load.seconds);
    const worstStats = summarize(afterWorst, afterMix, worstRun.seconds);
    const kv = kvStats(kvLines.slice(0, mixKv), load.seconds);
    const kvAll = kvStats(kvLines, load.seconds + worstRun.seconds);
    const classes = mixStats.classes;
    const hubName = Object.keys(classes).find((c) => /^hub/i.test(c));
    const aggName = Object.keys(classes).find((c) => /aggregat/i.test(c));
    const run = {
      k,
      requests: plan.length,
      rate,
      clientRps: r2(load.achievedRps),
      perIsolateRps: r2(load.achievedRps / k),
      seconds: r2(load.seconds),
      errors: load.errors + worstRun.errors,
      firstError: load.firstError ?? worstRun.firstError,
      statuses: load.statuses,
      maxObjectRps: mixStats.maxObjectRps,
      maxObjectClass: mixStats.maxObjectClass,
      hubRps: hubName ? classes[hubName].maxObjectRps : null,
      aggregatorRps: aggName ? classes[aggName].maxObjectRps : null,
      objectRequestsPer1000: r2((mixStats.calls * 1000) / plan.length),
      // The floor of this design: each isolate sends its own observations of
      // a subject to the subject's object, so a subject seen by j isolates
      // costs at least j calls. Distinct (isolate, subject) pairs of the mix
      // (request i goes to isolate i % k, bench-load.mjs), per 1,000 requests.
      isolateSubjectPairsPer1000: r2((isolateSubjectPairs(plan, k) * 1000) / plan.length),
      distinctSubjects: new Set(plan.map((q) => q.ip)).size,
      classes,
      newSubjects: { subjects: worst.length, objectCalls: worstStats.calls, perSubject: r2(worstStats.calls / worst.length), byClass: Object.fromEntries(Object.entries(worstStats.classes).map(([c, v]) => [c, v.calls])) },
      kv: { ...kv, all: kvAll },
      sent,
      stored,
      lost: sent - stored,
      hubRequestsCounted: analytics?.metrics?.totals?.requests ?? null,
      // Profile events the hub counted per request it counted (the model's
      // count calls from the stream root follow the events).
      eventsCounted: analytics?.metrics?.totals?.events ?? null,
      eventsPerRequest: analytics?.metrics?.totals?.requests ? Math.round(((analytics.metrics.totals.events ?? 0) / analytics.metrics.totals.requests) * 10000) / 10000 : null,
      // Calls made by the isolates themselves (the objects also call each other: publishes).
      isolateObjectCalls: isolateCalls,
      countedObjectCalls: worstStats.totalIncludingEarlier,
      settleMs,
      stepSeconds: Math.round((Date.now() - t) / 1000),
    };
    // The fit reads the client rate as measured.
    run.clientRps = run.clientRps ?? rate;
    runs.push(run);
    log(`scale K=${k}`, JSON.stringify({ ...run, classes: undefined, statuses: undefined }));
    await mf.dispose();
  }
  loader.close();
  await origin.close();

  const model = fit(design, runs, { ...settings, HUB_BATCH: String(hubBatch) });
  const at1M = predict(model, 1_000_000, 100);
  const k4 = runs.find((r) => r.k === 4) ?? runs.at(-1);
  return {
    maxObjectRequestsPerSecondAt1M: r2(at1M.max),
    maxKvWritesPerKeyPerSecond: Math.max(...runs.map((r) => r.kv.all.maxPerKeyPerSecond)),
    objectRequestsPer1000: k4.objectRequestsPer1000,
    objectRequestsPer1000K: k4.k,
    objectCallsPerNewSubject: Math.max(...runs.map((r) => r.newSubjects.perSubject)),
    sent: runs.reduce((a, r) => a + r.sent, 0),
    stored: runs.reduce((a, r) => a + r.stored, 0),
    lost: runs.reduce((a, r) => a + r.lost, 0),
    design,
    model,
    extrapolation: extrapolate(model),
    runs,
  };
}

/** Distinct (isolate, client IP) pairs when request i goes to isolate i % k. */
function isolateSubjectPairs(plan, k) {
  return new Set(plan.map((q, i) => `${i % k} ${q.ip}`)).size;
}

/** Calls per class and object between two count snapshots, as rates over `seconds`. */
function summarize(now, before, seconds) {
  const classes = {};
  let calls = 0;
  let max = { rps: 0, cls: null };
  for (const [cls, objs] of Object.entries(now)) {
    let clsCalls = 0;
    let busiest = null;
    let peak = 0;
    const n = Object.keys(objs).length;
    for (const [id, o] of Object.entries(objs)) {
      const b = before?.[cls]?.[id];
      const total = o.total - (b?.total ?? 0) - (o.byOp.alarm ?? 0) + (b?.byOp?.alarm ?? 0);
      if (total <= 0) continue;
      clsCalls += total;
      if (!busiest || total > busiest.total) busiest = { total, o, b };
      for (const [s, c] of Object.entries(o.bySecond)) peak = Math.max(peak, c - (b?.bySecond?.[s] ?? 0));
    }
    if (!busiest) continue;
    const byOp = {};
    for (const [op, c] of Object.entries(busiest.o.byOp)) {
      const d = c - (busiest.b?.byOp?.[op] ?? 0);
      if (d > 0 && op !== "alarm") byOp[op] = r2(d / seconds);
    }
    const alarms = Object.values(objs).reduce((a, o) => a + (o.byOp.alarm ?? 0), 0);
    classes[cls] = { objects: n, calls: clsCalls, totalRps: r2(clsCalls / seconds), maxObjectRps: r2(busiest.total / seconds), peakObjectCallsInOneSecond: peak, byOp, alarms };
    const roles = rolesOf(objs, before?.[cls], seconds);
    if (roles) classes[cls].roles = roles;
    calls += clsCalls;
    if (busiest.total / seconds > max.rps) max = { rps: busiest.total / seconds, cls };
  }
  let totalIncludingEarlier = 0;
  for (const objs of Object.values(now)) for (const o of Object.values(objs)) totalIncludingEarlier += o.total - (o.byOp.alarm ?? 0);
  return { classes, calls, maxObjectRps: r2(max.rps), maxObjectClass: max.cls, totalIncludingEarlier };
}

/**
 * Named objects of a class grouped by role (the name before its first ':':
 * "root", "relay", "agg", ...): per role, how many and the busiest one's
 * rate and operations. Null when the runtime gave no names (hex ids).
 */
function rolesOf(objs, before, seconds) {
  const roles = {};
  for (const [id, o] of Object.entries(objs)) {
    if (/^[0-9a-f]{64}$/.test(id)) continue;
    const role = id.split(":")[0];
    const b = before?.[id];
    const total = o.total - (b?.total ?? 0) - (o.byOp.alarm ?? 0) + (b?.byOp?.alarm ?? 0);
    if (total <= 0) continue;
    const r = (roles[role] ??= { objects: 0, maxObjectRps: 0, byOp: {} });
    r.objects++;
    if (total / seconds >= r.maxObjectRps) {
      r.maxObjectRps = r2(total / seconds);
      r.byOp = {};
      for (const [op, c] of Object.entries(o.byOp)) {
        const d = c - (b?.byOp?.[op] ?? 0);
        if (d > 0 && op !== "alarm") r.byOp[op] = r2(d / seconds);
      }
    }
  }
  return Object.keys(roles).length ? roles : null;
}

/** KV puts per key: the most in any one second (sliding), and the mean rate of the busiest key. */
function kvStats(lines, seconds) {
  const byKey = new Map();
  for (const l of lines) {
    if (!byKey.has(l.key)) byKey.set(l.key, []);
    byKey.get(l.key).push(l.at);
  }
  let maxPerKeyPerSecond = 0;
  let busiest = 0;
  for (const ats of byKey.values()) {
    ats.sort((a, b) => a - b);
    busiest = Math.max(busiest, ats.length);
    for (let i = 0, j = 0; i < ats.length; i++) {
      while (ats[i] - ats[j] >= 1000) j++;
      maxPerKeyPerSecond = Math.max(maxPerKeyPerSecond, i - j + 1);
    }
  }
  return { writes: lines.length, keys: byKey.size, maxPerKeyPerSecond, busiestKeyWrites: busiest, busiestKeyPerSecond: r2(busiest / seconds) };
}

// One shared harness for the integration tests: runs the *built* Worker
// (build/index.js + build/index_bg.wasm) in the real local runtime (Miniflare
// 4 / workerd), in front of a recording origin (scripts/origin.mjs).
//
// Geography is given the way `wrangler dev` takes it: the local-only
// `MF-CF-Blob` header replaces `request.cf` entirely, so each test states
// every cf field its case has and nothing else. A second, test-only worker
// ("nocf") forwards requests to ours through a service binding with a fresh
// Request, which has no `cf` at all: the one way to test a truly missing cf.
import { createHash } from "node:crypto";
import { Miniflare } from "miniflare";
import { startOrigin } from "../scripts/origin.mjs";

export const COMPATIBILITY_DATE = "2026-07-01";
export const BASE = "http://edge.test";

const NO_CF_WORKER = `
export default {
  async fetch(request, env) {
    const init = { method: request.method, headers: request.headers };
    if (!["GET", "HEAD"].includes(request.method)) init.body = await request.arrayBuffer();
    return env.EDGE.fetch(new Request(request.url, init));
  },
};`;

// Fault injection with the platform itself: the PROFILES binding can point at
// a Durable Object class of this test-only worker that hangs or throws.
const FAULTS_WORKER = `
export class SlowProfile {
  async fetch() { await new Promise((r) => setTimeout(r, 3000)); return Response.json({ exists: false, threat: 0, reputation: 50, signals: [] }); }
}
export class ThrowingProfile {
  async fetch() { throw new Error("injected profile fault"); }
}
export default { fetch() { return new Response("faults"); } };`;

// A KV namespace that fails on demand: wrapped around a real one (INNER), it
// throws from every call while INNER holds the key "__fault". Tests switch it
// with mf.getKVNamespace("INNER", "kvfault"). The Worker reaches KV through
// the same get/put/list/delete calls either way.
const KV_FAULT_MODULE = `
export default function ({ INNER }) {
  const gate = async () => {
    if ((await INNER.get("__fault")) !== null) throw new Error("injected KV fault");
    const slow = await INNER.get("__slow");
    if (slow !== null) await new Promise((r) => setTimeout(r, Number(slow)));
  };
  return {
    async get(...a) { await gate(); return INNER.get(...a); },
    async getWithMetadata(...a) { await gate(); return INNER.getWithMetadata(...a); },
    async put(...a) { await gate(); return INNER.put(...a); },
    async list(...a) { await gate(); return INNER.list(...a); },
    async delete(...a) { await gate(); return INNER.delete(...a); },
  };
}`;

export const ADMIN_TOKEN = "test-admin-token-0123456789";

/**
 * Starts the origin (unless `originUrl` is given) and the Worker with `vars`.
 * `profileFault`: "slow" | "throw" binds PROFILES to a faulty object;
 * `limitsFault`: the same for LIMITS (the rate limiters).
 * `kvFault`: METRICS is a KV that fails while `setKvDown(true)`.
 * `hubAlarmFaults`: {before, after} makes the hub's alarm throw (see tests/fault-entry.mjs).
 * `hubSlowMs`: every call to a hub object waits this long first (tests/fault-entry.mjs).
 * `port`: a fixed port (a restarted runtime comes back at the same address).
 * `streamRestarts`: STREAMS objects can be restarted one at a time (`restartStream`) or made to fail (`setStreamDown`) or slow (`setStreamSlow`).
 * `aggregatorRestarts`: an aggregator object can be restarted on its own (`restartAggregator`).
 * `isolates`: how many copies of the Worker run, each its own isolate (as
 *   on Cloudflare, where a site's requests land in many): "edge" holds the
 *   Durable Object classes, "edge1", "edge2", ... bind the same objects by
 *   script name and share the KV namespace. `send`/`api` take `isolate: i`.
 */
export async function startEdge({ vars = {}, originUrl, persistTo, profileFault, limitsFault, kvFault, hubAlarmFaults, hubSlowMs, port, streamRestarts, aggregatorRestarts, isolates = 1 } = {}) {
  const faultyHub = Boolean(hubAlarmFaults || hubSlowMs);
  const faultEntry = faultyHub || Boolean(streamRestarts) || Boolean(aggregatorRestarts);
  const origin = originUrl ? null : await startOrigin({ port: 0 });
  // Everything the runtime prints (the Worker's console, workerd's own
  // errors) is kept for assertions such as "no panic in the log", and still
  // shown as before.
  const runtimeLog = [];
  const edge = {
    name: "edge",
    modules: true,
    scriptPath: faultEntry ? "tests/fault-entry.mjs" : "build/index.js",
    modulesRoot: ".",
    modulesRules: [
      { type: "ESModule", include: ["**/*.js"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: COMPATIBILITY_DATE,
    bindings: {
      ORIGIN_URL: originUrl ?? origin.url,
      ADMIN_TOKEN,
      // Suites wait for profiles in seconds; the calm interval has its own test.
      FLUSH_CALM_MS: "1000",
      // The analytics tiers report and forward fast in tests (defaults: 2 s each).
      REPORT_INTERVAL_MS: "300",
      AGGREGATOR_FORWARD_MS: "300",
      ...(hubAlarmFaults ? { HUB_ALARM_FAULTS: JSON.stringify(hubAlarmFaults) } : {}),
      ...(hubSlowMs ? { HUB_SLOW_MS: String(hubSlowMs) } : {}),
      ...vars,
    },
    ...(kvFault ? { wrappedBindings: { METRICS: { scriptName: "kvfault" } } } : { kvNamespaces: ["METRICS"] }),
    assets: { directory: "www", binding: "ASSETS", routerConfig: { has_user_worker: true, invoke_user_worker_ahead_of_assets: true } },
    durableObjects: {
      PROFILES: profileFault
        ? { className: profileFault === "slow" ? "SlowProfile" : "ThrowingProfile", scriptName: "faults" }
        : { className: "ProfileObject", useSQLite: true },
      VISITORS: { className: "VisitorObject", useSQLite: true },
      HUB: { className: faultyHub ? "FaultyHub" : "HubObject", useSQLite: true },
      AGGREGATORS: { className: aggregatorRestarts ? "RestartableAggregator" : "AggregatorObject", useSQLite: true },
      STREAMS: { className: streamRestarts ? "RestartableStream" : "StreamObject", useSQLite: true },
      LIMITS: limitsFault
        ? { className: limitsFault === "slow" ? "SlowProfile" : "ThrowingProfile", scriptName: "faults" }
        : { className: "LimiterObject", useSQLite: true },
    },
  };
  // The other isolates: the same Worker, its objects bound from "edge" (one
  // set of objects, as one Cloudflare namespace), the same KV namespace.
  const copies = Array.from({ length: Math.max(0, isolates - 1) }, (_, j) => {
    const { assets: _assets, ...rest } = edge;
    const objects = Object.fromEntries(
      Object.entries(edge.durableObjects).map(([binding, o]) => [binding, { className: o.className, scriptName: o.scriptName ?? "edge" }]),
    );
    return { ...rest, name: `edge${j + 1}`, durableObjects: objects };
  });
  const mf = new Miniflare({
    handleRuntimeStdio(stdout, stderr) {
      for (const [stream, sink] of [[stdout, process.stdout], [stderr, process.stderr]]) {
        stream.on("data", (chunk) => {
          runtimeLog.push(chunk.toString());
          sink.write(chunk);
        });
      }
    },
    // Shared options: where storage persists across restarts (default: memory).
    ...(persistTo ? { durableObjectsPersist: persistTo, kvPersist: persistTo } : {}),
    ...(port ? { port } : {}),
    workers: [
      edge,
      ...copies,
      ...(kvFault
        ? [{ name: "kvfault", modules: true, script: KV_FAULT_MODULE, kvNamespaces: { INNER: "metrics-store" } }]
        : []),
      { name: "faults", modules: true, script: FAULTS_WORKER, compatibilityDate: COMPATIBILITY_DATE },
      {
        name: "nocf",
        modules: true,
        script: NO_CF_WORKER,
        compatibilityDate: COMPATIBILITY_DATE,
        serviceBindings: { EDGE: "edge" },
      },
    ],
  });
  const httpUrl = await mf.ready;
  const noCf = await mf.getWorker("nocf");

  /**
   * Sends one request. `cf`: the exact cf object (null = no cf at all);
   * `ip`: CF-Connecting-IP; `headers`: any others.
   */
  async function send(path, { cf = {}, ip = "198.51.100.10", method = "GET", headers = {}, body, isolate = 0 } = {}) {
    const h = new Headers(headers);
    if (ip !== null) h.set("CF-Connecting-IP", ip);
    if (isolate > 0) h.set("MF-Route-Override", `edge${isolate}`);
    const init = { method, headers: h, body, redirect: "manual" };
    if (cf === null) return noCf.fetch(BASE + path, init);
    h.set("MF-CF-Blob", asciiJson({ clientAcceptEncoding: "", ...cf }));
    return mf.dispatchFetch(BASE + path, init);
  }

  /** Calls the authenticated API. */
  async function api(method, path, { body, token = ADMIN_TOKEN, headers = {}, isolate = 0 } = {}) {
    const h = new Headers(headers);
    if (token) h.set("Authorization", `Bearer ${token}`);
    if (isolate > 0) h.set("MF-Route-Override", `edge${isolate}`);
    if (body !== undefined && !h.has("Content-Type")) h.set("Content-Type", "application/json");
    const payload = body === undefined || typeof body === "string" ? body : JSON.stringify(body);
    const res = await mf.dispatchFetch(`${BASE}/_intel${path}`, { method, headers: h, body: payload });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, json, text, headers: res.headers };
  }

  async function close() {
    await mf.dispose();
    if (origin) await origin.close();
  }
  /**
   * Opens a real WebSocket to a stream path (e.g. "/api/intelligence/stream")
   * and collects its messages. Auth by `ticket` (query) or the bearer
   * subprotocol (default).
   */
  function stream(path, { ticket, token = ADMIN_TOKEN, query = "" } = {}) {
    const url = new URL(`/_intel${path}`, httpUrl);
    url.protocol = "ws:";
    if (ticket) url.searchParams.set("ticket", ticket);
    for (const [k, v] of new URLSearchParams(query)) url.searchParams.set(k, v);
    const ws = ticket ? new WebSocket(url) : new WebSocket(url, ["bearer", token]);
    return new StreamClient(ws);
  }

  /** With `kvFault`: makes every KV call take `ms` longer (0: back to normal). */
  async function setKvSlow(ms) {
    const inner = await mf.getKVNamespace("INNER", "kvfault");
    if (ms > 0) await inner.put("__slow", String(ms));
    else await inner.delete("__slow");
  }

  /** With `kvFault`: makes every KV call fail (true) or work again (false). */
  async function setKvDown(down) {
    const inner = await mf.getKVNamespace("INNER", "kvfault");
    if (down) await inner.put("__fault", "1");
    else await inner.delete("__fault");
  }

  /** With `hubAlarmFaults`: how many alarms ran and how many faults were injected. */
  async function hubFaults() {
    const ns = await mf.getDurableObjectNamespace("HUB", "edge");
    const res = await ns.get(ns.idFromName("global")).fetch("http://hub/__faults");
    return res.json();
  }

  /**
   * With `streamRestarts`: restarts one stream object ("root", "relay:0", ...)
   * as an eviction would: its memory is gone, its storage and hibernated
   * sockets stay (tests/fault-entry.mjs).
   */
  async function restartStream(name) {
    const ns = await mf.getDurableObjectNamespace("STREAMS", "edge");
    const res = await ns.get(ns.idFromName(name)).fetch("http://stream/__restart");
    return res.text();
  }

  /** Makes a STREAMS object fail every request (true) or serve again (false: answers how many it refused). */
  async function setStreamDown(name, down) {
    const ns = await mf.getDurableObjectNamespace("STREAMS", "edge");
    const res = await ns.get(ns.idFromName(name)).fetch(`http://stream/${down ? "__down" : "__up"}`);
    return res.text();
  }

  /** Delays every later non-upgrade request to a STREAMS object by `ms` (0: none). */
  async function setStreamSlow(name, ms) {
    const ns = await mf.getDurableObjectNamespace("STREAMS", "edge");
    const res = await ns.get(ns.idFromName(name)).fetch("http://stream/__slow", { method: "POST", body: String(ms) });
    return res.text();
  }

  /** A hub shard's raw window and state (HubOp::Window), by object name ("global", "shard-1", ...). */
  async function hubWindow(name) {
    const ns = await mf.getDurableObjectNamespace("HUB", "edge");
    const res = await ns.get(ns.idFromName(name)).fetch("http://hub/", { method: "POST", body: JSON.stringify("window") });
    return res.json();
  }

  /**
   * With `aggregatorRestarts`: restarts one aggregator ("agg:EU:0", ...) as an
   * eviction would: its memory is gone, its storage stays (tests/fault-entry.mjs).
   */
  async function restartAggregator(name) {
    const ns = await mf.getDurableObjectNamespace("AGGREGATORS", "edge");
    const res = await ns.get(ns.idFromName(name)).fetch("http://agg/__restart");
    return Number(await res.text());
  }

  /** An aggregator object's state (AggOp::State), by name ("agg:local:0", ...). */
  async function aggregatorState(name) {
    const ns = await mf.getDurableObjectNamespace("AGGREGATORS", "edge");
    const res = await ns.get(ns.idFromName(name)).fetch("http://agg/", { method: "POST", body: JSON.stringify("state") });
    return res.json();
  }

  return { mf, origin, send, api, stream, close, setKvDown, setKvSlow, hubFaults, hubWindow, aggregatorState, restartAggregator, restartStream, setStreamDown, setStreamSlow, runtimeLog, url: httpUrl };
}

/** Polls `check` (bounded: `tries` times, `everyMs` apart) until it returns a truthy value. */
/** Whether `c` solves `token` at `difficulty` (leading zero bits of SHA-256). */
export function works(token, c, difficulty) {
  const d = createHash("sha256").update(`${token}:${c}`).digest();
  let zeros = 0;
  for (const b of d) {
    if (b === 0) { zeros += 8; continue; }
    zeros += Math.clz32(b) - 24;
    break;
  }
  return zeros >= difficulty;
}

/** Solves the proof-of-work like the challenge page's script does. */
export function solve(token, difficulty) {
  for (let c = 0; ; c++) if (works(token, c, difficulty)) return c;
}

export async function eventually(check, { tries = 50, everyMs = 100 } = {}) {
  for (let i = 0; i < tries; i++) {
    const v = await check();
    if (v) return v;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return check();
}

/** JSON with non-ASCII escaped, so it survives as an HTTP header value. */
export function asciiJson(v) {
  return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/**
 * The headers in edgeintel's namespace that a recorded request carried,
 * underscore spellings included (CGI/WSGI/Rack origins read `x_risk_score` as ours).
 */
export function intelHeaders(recorded) {
  const out = {};
  for (const [name, value] of Object.entries(recorded.headers)) {
    if (/^(x-risk-|x-geo-|x-intel|x-threat-score$|x-reputation-score$)/.test(name.replaceAll("_", "-"))) out[name] = value;
  }
  return out;
}

export const CHROME_UA =
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
export const BROWSER_HEADERS = {
  "User-Agent": CHROME_UA,
  Accept: "text/html,application/xhtml+xml",
  "Accept-Language": "de-DE,de;q=0.9,en;q=0.8",
};

/** A WebSocket client that keeps every message for assertions. */
export class StreamClient {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.waiters = [];
    this.closed = null;
    this.opened = new Promise((resolve, reject) => {
      ws.addEventListener("open", () => resolve(), { once: true });
      ws.addEventListener("error", () => reject(new Error("websocket failed to open")), { once: true });
    });
    ws.addEventListener("message", (e) => {
      const text = typeof e.data === "string" ? e.data : "";
      let msg;
      try { msg = JSON.parse(text); } catch { msg = { unparsable: text }; }
      this.messages.push(msg);
      this.waiters = this.waiters.filter((w) => !w());
    });
    this.closedPromise = new Promise((resolve) =>
      ws.addEventListener("close", (e) => {
        this.closed = { code: e.code, reason: e.reason };
        resolve(this.closed);
      }),
    );
  }

  send(v) {
    this.ws.send(typeof v === "string" ? v : JSON.stringify(v));
  }

  /** Messages of type intelligence_update for `ip` (and optional event type). */
  updates(ip, eventType) {
    return this.messages.filter(
      (m) => m.type === "intelligence_update" && (!ip || m.data.event.ip === ip) && (!eventType || m.data.event.eventType === eventType),
    );
  }

  /** Resolves when `predicate(messages)` holds; rejects after `ms`. */
  until(predicate, ms = 5000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate(this.messages)) {
          clearTimeout(timer);
          resolve(this.messages);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => reject(new Error(`timed out; got ${JSON.stringify(this.messages).slice(0, 500)}`)), ms);
      if (!check()) this.waiters.push(check);
    });
  }

  close() {
    try { this.ws.close(); } catch {}
  }
}

// Tiered aggregation (issue 17, item 1; docs/analytics.md, "Tiers"): the
// isolate folds its samples into slide deltas and reports them to an
// aggregator object (agg:<region>:<i>, the region being the request's
// continent), which forwards one summary per period to the hub shards; the
// hub merges in memory and persists on its tick. The profile events ride in
// the same reports and each aggregator publishes them to the stream root
// once per forward period.
// Counts must equal what was sent: through the tiers, with HUB_SHARDS=4, and
// across a restart of the runtime that takes the hub's unpersisted merges
// and the aggregators' memory with it (their SQLite keeps what the hub has
// not confirmed persisted, and sends it again: applied once).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { startEdge, BROWSER_HEADERS, eventually as poll } from "./harness.mjs";
import { startOrigin } from "../scripts/origin.mjs";
import { recordCounts } from "./counts.mjs";

const counts = { cases: 0, requests: 0, counted: 0, lost: 0, doubled: 0, restarts: 0 };
after(() => recordCounts("aggregation", counts));
const eventually = (check, opts) => poll(check, { tries: 150, everyMs: 100, ...opts });

const COLOS = ["FRA", "CDG", "IAD"];
const CONTINENTS = ["EU", "EU", "NA"];
// Isolates report by region, not colo: FRA and CDG share Europe's aggregators.
const REGIONS = ["EU", "NA", "other"];
const PER_REGION = 2;
const cfOf = (i) => ({ country: ["DE", "FR", "US"][i % 3], asn: 3320 + (i % 3), colo: COLOS[i % 3], continent: CONTINENTS[i % 3] });
const VARS = { ANALYTICS_SLIDE_SECONDS: "2", ANALYTICS_WINDOW_SECONDS: "120", AGGREGATORS_PER_REGION: String(PER_REGION) };

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function sendAll(edge, n, { from = 0, concurrency = 8 } = {}) {
  let next = from;
  const worker = async () => {
    while (next < from + n) {
      const i = next++;
      const res = await edge.send(`/page/${i}`, { cf: cfOf(i), ip: `198.51.100.${i % 50}`, headers: BROWSER_HEADERS });
      await res.arrayBuffer();
      assert.equal(res.status, 200);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  counts.requests += n;
}

async function totals(edge) {
  const r = await edge.api("GET", "/api/intelligence/analytics");
  return r.status === 200 ? r.json : null;
}

/** Every aggregator this isolate may use for the test's regions. */
async function aggregators(edge) {
  const out = {};
  for (const region of REGIONS) {
    for (let i = 0; i < PER_REGION; i++) {
      const s = await edge.aggregatorState(`agg:${region}:${i}`);
      if (s.reports > 0) out[`agg:${region}:${i}`] = s;
    }
  }
  return out;
}

test("requests through the tiers: the hub counts exactly what was sent, the isolate calls its aggregator per report, not per request", async () => {
  counts.cases++;
  const edge = await startEdge({ vars: VARS });
  try {
    const N = 120;
    await sendAll(edge, N);
    const done = await eventually(async () => {
      const a = await totals(edge);
      return a && a.metrics.totals.requests === N ? a : null;
    });
    const a = done ?? (await totals(edge));
    assert.equal(a.metrics.totals.requests, N, "every request counted once");
    counts.counted += a.metrics.totals.requests;
    // The isolate reported deltas to aggregators, never raw samples to the hub.
    const calls = a.isolate.objectCallsByBinding;
    assert.ok(calls.AGGREGATORS > 0, JSON.stringify(calls));
    assert.ok(calls.AGGREGATORS < N / 4, `reports per period, not per request: ${calls.AGGREGATORS} for ${N} requests`);
    // The hub heard from the aggregator tier and the API shows it.
    assert.ok(a.tier.summaries > 0 && a.tier.forwards >= a.tier.summaries, JSON.stringify(a.tier));
    assert.ok(a.tier.aggregators >= 1);
    assert.ok(a.tier.lagMs >= 0);
    // The aggregators get every summary confirmed persisted (the hub's tick) and then hold nothing.
    const settled = await eventually(async () => {
      const aggs = await aggregators(edge);
      const names = Object.keys(aggs);
      return names.length > 0 && names.every((k) => aggs[k].unconfirmed === 0 && aggs[k].open === 0) ? aggs : null;
    });
    assert.ok(settled, JSON.stringify(await aggregators(edge)));
    const prom = await edge.api("GET", "/metrics");
    assert.match(prom.text, /^edgeintel_aggregator_summaries \d+$/m);
    assert.match(prom.text, /^edgeintel_aggregator_forward_failures 0$/m);
    const stored = (await totals(edge)).metrics.totals.requests;
    assert.equal(stored, N, "still exactly once after the summaries were confirmed");
  } finally {
    await edge.close();
  }
});

test("a hub refusing forwards, then losing its answers: the aggregator keeps and re-sends, the hub counts each summary once", async () => {
  counts.cases++;
  const edge = await startEdge({
    vars: VARS,
    hubAlarmFaults: { forward: 4, forwardLost: 3 },
  });
  try {
    const N = 60;
    await sendAll(edge, N);
    const a = await eventually(async () => {
      const t = await totals(edge);
      return t && t.metrics.totals.requests === N && t.tier.forwardFailures > 0 && t.tier.duplicates > 0 ? t : null;
    });
    const t = a ?? (await totals(edge));
    const faults = await edge.hubFaults();
    assert.equal(faults.forwardsRefused, 4);
    // Up to 3 answers are lost: only as many as forwards happen after the
    // refusals (an aggregator holding nothing more sleeps), at least one.
    assert.ok(faults.answersLost >= 1 && faults.answersLost <= 3, JSON.stringify(faults));
    assert.equal(t.metrics.totals.requests, N, `exactly once: ${JSON.stringify(t.tier)}`);
    assert.ok(t.tier.forwardFailures >= 4, "the aggregators reported their failed forwards");
    assert.ok(t.tier.duplicates >= 1, "summaries re-sent after a lost answer were skipped");
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await totals(edge)).metrics.totals.requests, N, "and stays exact");
    counts.counted += N;
  } finally {
    await edge.close();
  }
});

test("the hub's request rate follows the aggregators and the forward period, not the traffic", async () => {
  counts.cases++;
  const edge = await startEdge({ vars: VARS });
  try {
    // Two phases of 4 s each: ~10 requests/s, then as fast as 8 clients go.
    const measure = async (rate) => {
      const start = (await edge.hubWindow("global")).tier.forwards;
      const t0 = Date.now();
      let sent = 0;
      while (Date.now() - t0 < 4000) {
        if (rate) {
          await sendAll(edge, 1, { from: sent, concurrency: 1 });
          sent++;
          await new Promise((r) => setTimeout(r, 1000 / rate));
        } else {
          await sendAll(edge, 16, { from: sent, concurrency: 8 });
          sent += 16;
        }
      }
      const secs = (Date.now() - t0) / 1000;
      const tier = (await edge.hubWindow("global")).tier;
      return { requestsPerSecond: sent / secs, hubForwardsPerSecond: (tier.forwards - start) / secs, aggregators: tier.aggregators };
    };
    const slow = await measure(10);
    const fast = await measure(0);
    counts.rates = { slow, fast };
    assert.ok(fast.requestsPerSecond > 3 * slow.requestsPerSecond, JSON.stringify(counts.rates));
    // At most one forward per aggregator per 300 ms period (the test's two
    // regions: up to two aggregators for this one isolate), whatever the
    // traffic; 25% for timer slack.
    for (const p of [slow, fast]) assert.ok(p.hubForwardsPerSecond <= p.aggregators * (1000 / 300) * 1.25, JSON.stringify(p));
    const trafficRatio = fast.requestsPerSecond / slow.requestsPerSecond;
    const hubRatio = fast.hubForwardsPerSecond / slow.hubForwardsPerSecond;
    // The hub's rate does not follow the traffic: it at most doubles (timer
    // slack, a period with no data in the slow phase) while the traffic
    // grows 3x or more, or it grows under a tenth as fast as the traffic.
    // (A tenth alone failed once at x14.9 traffic, x1.49 hub on a loaded machine.)
    assert.ok(hubRatio < Math.max(2, trafficRatio / 10), `traffic x${trafficRatio.toFixed(1)}, hub requests x${hubRatio.toFixed(2)}`);
  } finally {
    await edge.close();
  }
});

test("profile events reach the global stream through the aggregators: the root hears once per aggregator and period, not per isolate or request", async () => {
  counts.cases++;
  const edge = await startEdge({ vars: VARS });
  const ws = edge.stream("/api/intelligence/stream");
  try {
    await ws.opened;
    // Every request from a new IP with a city: its first observation
    // publishes a location_update (fast mode: the consult records it).
    let n = 0;
    const place = (i) => ({ ...cfOf(i), city: ["Berlin", "Paris", "Ashburn"][i % 3], latitude: "50.1", longitude: "8.6" });
    const visit = async () => {
      const i = n++;
      const res = await edge.send(`/page/${i}`, { cf: place(i), ip: `203.0.${113 + (i >> 8)}.${i & 255}`, headers: BROWSER_HEADERS });
      await res.arrayBuffer();
      assert.equal(res.status, 200);
    };
    const publications = async () => Object.values(await aggregators(edge)).reduce((a, s) => a + s.publications, 0);
    const measure = async (concurrency, pause) => {
      const start = await publications();
      const first = n;
      const t0 = Date.now();
      while (Date.now() - t0 < 4000) {
        await Promise.all(Array.from({ length: concurrency }, visit));
        if (pause) await new Promise((r) => setTimeout(r, pause));
      }
      // The last reports leave within a report period, their publication within a forward period.
      await new Promise((r) => setTimeout(r, 1000));
      const secs = (Date.now() - t0) / 1000;
      const aggs = await aggregators(edge);
      const active = Object.values(aggs).filter((s) => s.publications > 0).length;
      return { requestsPerSecond: (n - first) / (secs - 1), publicationsPerSecond: ((await publications()) - start) / secs, active, first, last: n };
    };
    const slow = await measure(1, 100);
    const fast = await measure(8, 0);
    counts.requests += n;
    counts.eventRates = { slow, fast };
    // Every new IP's location_update reached the socket.
    const ips = new Set(Array.from({ length: n }, (_, i) => `203.0.${113 + (i >> 8)}.${i & 255}`));
    const arrived = await ws
      .until((msgs) => new Set(msgs.filter((m) => m.type === "intelligence_update" && m.data.event.eventType === "location_update").map((m) => m.data.event.ip)).size >= ips.size, 10000)
      .then(() => true, () => false);
    const got = new Set(ws.updates(undefined, "location_update").map((m) => m.data.event.ip));
    assert.ok(arrived, `${got.size} of ${ips.size} IPs' updates on the stream`);
    // They came through the aggregators: what they published covers every update the socket got.
    const aggs = await aggregators(edge);
    const published = Object.values(aggs).reduce((a, s) => a + s.eventsPublished, 0);
    assert.ok(published >= got.size, `aggregators published ${published} events, the socket got ${got.size}: ${JSON.stringify(aggs)}`);
    assert.ok(Object.values(aggs).every((s) => s.eventsHeld === 0), "nothing held after the forward periods");
    // The hub counted them (the root forwards them for counting): exact.
    const counted = await eventually(async () => {
      const a = await totals(edge);
      return a && a.metrics.totals.events >= got.size ? a.metrics.totals.events : null;
    });
    assert.ok(counted >= got.size, `the analytics counted ${counted} events for ${got.size}`);
    // The root's publications follow the aggregators and the 300 ms period, not the traffic.
    assert.ok(fast.requestsPerSecond > 2 * slow.requestsPerSecond, JSON.stringify(counts.eventRates));
    for (const p of [slow, fast]) assert.ok(p.publicationsPerSecond <= Math.max(1, p.active) * (1000 / 300) * 1.25, JSON.stringify(p));
    const trafficRatio = fast.requestsPerSecond / slow.requestsPerSecond;
    const rootRatio = fast.publicationsPerSecond / slow.publicationsPerSecond;
    assert.ok(rootRatio < trafficRatio / 2, `traffic x${trafficRatio.toFixed(1)}, root publications x${rootRatio.toFixed(2)}`);
  } finally {
    ws.close();
    await edge.close();
  }
});

test("HUB_SHARDS=4: summaries keep the subjects' shards, the site's totals add up to what was sent", async () => {
  counts.cases++;
  const edge = await startEdge({ vars: { ...VARS, HUB_SHARDS: "4", ANALYTICS_WINDOW_SECONDS: "60" } });
  try {
    const N = 80;
    await sendAll(edge, N);
    const a = await eventually(async () => {
      const t = await totals(edge);
      return t && t.metrics.totals.requests === N ? t : null;
    });
    assert.ok(a, `site totals reach ${N}`);
    counts.counted += N;
    let shardsWithTraffic = 0;
    for (const name of ["global", "shard-1", "shard-2", "shard-3"]) {
      const w = await edge.hubWindow(name);
      if (w.totals.requests > 0) shardsWithTraffic++;
    }
    assert.ok(shardsWithTraffic >= 2, "50 subjects spread over several shards");
  } finally {
    await edge.close();
  }
});

test("a restart of the runtime with merges unpersisted at the hub and summaries unconfirmed at the aggregators: nothing lost, nothing counted twice", async () => {
  counts.cases++;
  const dir = mkdtempSync(join(tmpdir(), "edgeintel-agg-restart-"));
  const origin = await startOrigin({ port: 0 });
  const port = await freePort();
  // Long slides: the hub persists on its tick, every 10 s, so the restart
  // can come while its merges live only in memory.
  const vars = { ...VARS, ANALYTICS_SLIDE_SECONDS: "10", ANALYTICS_WINDOW_SECONDS: "300", RISK_MODE: "consistent" };
  const start = () => startEdge({ vars, originUrl: origin.url, persistTo: dir, port });
  // Each IP always comes from the same place: after its first request, its
  // profile publishes no events (an event publish would make the hub persist).
  const sendFrom = async (edge, n, from) => {
    let next = from;
    const worker = async () => {
      while (next < from + n) {
        const i = next++;
        const ip = i % 30;
        const res = await edge.send(`/page/${i}`, { cf: cfOf(ip), ip: `198.51.100.${ip}`, headers: BROWSER_HEADERS });
        await res.arrayBuffer();
        assert.equal(res.status, 200);
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    counts.requests += n;
  };
  let edge = await start();
  try {
    const N1 = 30;
    const N2 = 40;
    await sendFrom(edge, N1, 0);
    // Phase 1 merged and confirmed persisted everywhere.
    const quiet = await eventually(async () => {
      const w = await edge.hubWindow("global");
      const aggs = Object.values(await aggregators(edge));
      return w.totals.requests === N1 && aggs.length > 0 && aggs.every((a) => a.unconfirmed === 0 && a.open === 0) ? w : null;
    }, { tries: 300 });
    assert.ok(quiet, "phase 1 persisted");
    // Right after a hub tick (it persists), phase 2: merged in memory only.
    const tick = (await edge.hubWindow("global")).nextTick;
    await new Promise((r) => setTimeout(r, Math.max(0, tick - Date.now()) + 300));
    await sendFrom(edge, N2, N1);
    const before = await eventually(async () => {
      const w = await edge.hubWindow("global");
      return w.totals.requests === N1 + N2 ? w : null;
    });
    assert.ok(before, "the hub merged every request before the restart");
    const held = Object.values(await aggregators(edge)).reduce((n, s) => n + s.unconfirmed, 0);
    assert.ok(Date.now() < before.nextTick, "the restart comes before the hub's next tick");
    assert.ok(held > 0, "the aggregators hold summaries the hub has not confirmed persisted");
    await edge.close();
    counts.restarts++;
    edge = await start();
    const after1 = await eventually(async () => {
      const w = await edge.hubWindow("global");
      return w.totals.requests === N1 + N2 ? w : null;
    }, { tries: 200 });
    const w = after1 ?? (await edge.hubWindow("global"));
    if (w.totals.requests < N1 + N2) counts.lost += N1 + N2 - w.totals.requests;
    assert.equal(w.totals.requests, N1 + N2, `after the restart (the aggregators held ${held} unconfirmed summaries)`);
    // More traffic after the restart: still exact, and stays exact (no late double count).
    await sendFrom(edge, 30, N1 + N2);
    const total = N1 + N2 + 30;
    const final = await eventually(async () => {
      const t = await edge.hubWindow("global");
      return t.totals.requests === total ? t : null;
    });
    assert.ok(final, "requests after the restart counted");
    await new Promise((r) => setTimeout(r, 1500));
    const settled = (await edge.hubWindow("global")).totals.requests;
    if (settled > total) counts.doubled += settled - total;
    assert.equal(settled, total, "nothing counted twice");
    counts.counted += settled;
  } finally {
    await edge.close();
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a report sent again after its answer was lost is merged once (its id is remembered)", async () => {
  counts.cases++;
  const edge = await startEdge({});
  try {
    const ns = await edge.mf.getDurableObjectNamespace("AGGREGATORS", "edge");
    const agg = ns.get(ns.idFromName("agg:EU:0"));
    const report = (id) => agg.fetch("http://agg/", { method: "POST", body: JSON.stringify({ report: { deltas: {}, id } }) }).then((r) => r.json());
    assert.equal((await report("00000000000000ff-1")).duplicate, undefined);
    assert.equal((await report("00000000000000ff-1")).duplicate, true, "the same id again");
    assert.equal((await report("00000000000000ff-2")).duplicate, undefined, "the next report");
    const state = await edge.aggregatorState("agg:EU:0");
    assert.equal(state.reports, 2);
    assert.equal(state.duplicateReports, 1);
  } finally {
    await edge.close();
  }
});

test("three isolates, one set of objects: each subject's requests land in every isolate, the hub and the profiles count exactly what was sent", async () => {
  counts.cases++;
  const K = 3;
  const edge = await startEdge({ vars: { ...VARS, FLUSH_INTERVAL_MS: "200" }, isolates: K });
  try {
    // 12 subjects in three regions (so several aggregators), request i to
    // isolate i % 3: every subject is seen by every isolate, each isolate
    // batches and reports on its own.
    const N = 144;
    const subjects = Array.from({ length: 12 }, (_, s) => `198.51.100.${150 + s}`);
    const sentTo = new Map();
    let next = 0;
    const worker = async () => {
      while (next < N) {
        const i = next++;
        const ip = subjects[Math.floor(i / K) % subjects.length];
        const res = await edge.send(`/page/${i}`, { cf: cfOf(i), ip, headers: BROWSER_HEADERS, isolate: i % K });
        await res.arrayBuffer();
        assert.equal(res.status, 200);
        sentTo.set(ip, (sentTo.get(ip) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    counts.requests += N;
    const a = await eventually(async () => {
      const t = await totals(edge);
      return t && t.metrics.totals.requests === N ? t : null;
    });
    assert.ok(a, `the hub counted ${(await totals(edge))?.metrics.totals.requests} of ${N}`);
    // Each isolate served its third and reported it to the aggregators itself.
    for (let i = 0; i < K; i++) {
      const own = (await edge.api("GET", "/api/intelligence/analytics", { isolate: i })).json;
      // Its third exactly (the counter counts site requests, not API calls):
      // all N would mean the requests never reached the other isolates.
      assert.equal(own.isolate.requests, N / K, `isolate ${i}: ${JSON.stringify(own.isolate)}`);
      assert.ok(own.isolate.objectCallsByBinding.AGGREGATORS > 0, `isolate ${i} reported: ${JSON.stringify(own.isolate.objectCallsByBinding)}`);
    }
    // Several aggregators merged the three isolates' reports.
    const aggs = await aggregators(edge);
    assert.ok(Object.keys(aggs).length >= 2, JSON.stringify(Object.keys(aggs)));
    // Every subject's profile holds every observation, whichever isolate sent it.
    for (const [ip, n] of sentTo) {
      const p = await eventually(async () => {
        const r = await edge.api("GET", `/api/ip-intelligence/${ip}`);
        return r.json?.profile?.requestCount === n ? r.json.profile : null;
      });
      assert.ok(p, `${ip}: ${n} sent, ${(await edge.api("GET", `/api/ip-intelligence/${ip}`)).json?.profile?.requestCount} stored`);
    }
    await new Promise((r) => setTimeout(r, 1000)); // a few more forward periods: nothing counted twice
    assert.equal((await totals(edge)).metrics.totals.requests, N, "exactly once");
    counts.counted += N;
  } finally {
    await edge.close();
  }
});

test("an aggregator restarted on its own, twice, while it holds stored reports and unconfirmed summaries: the hub counts each request once", async () => {
  counts.cases++;
  // The hub refuses the first forwards, so the aggregators hold unconfirmed
  // summaries in storage when they restart.
  const edge = await startEdge({ vars: VARS, aggregatorRestarts: true, hubAlarmFaults: { forward: 6 } });
  try {
    const N = 90;
    await sendAll(edge, 30);
    // Wait until an aggregator holds a summary the hub refused.
    const held = await eventually(async () => {
      const aggs = await aggregators(edge);
      const name = Object.keys(aggs).find((k) => aggs[k].unconfirmed > 0 || aggs[k].open > 0);
      return name ? { name, all: Object.keys(aggs) } : null;
    });
    assert.ok(held, "an aggregator holds what the hub has not taken");
    assert.equal(await edge.restartAggregator(held.name), 1);
    counts.restarts++;
    await sendAll(edge, 30, { from: 30 });
    for (const name of held.all) assert.ok((await edge.restartAggregator(name)) >= 1);
    counts.restarts += held.all.length;
    await sendAll(edge, 30, { from: 60 });
    const a = await eventually(async () => {
      const t = await totals(edge);
      return t && t.metrics.totals.requests === N ? t : null;
    });
    const t = a ?? (await totals(edge));
    assert.equal(t.metrics.totals.requests, N, `nothing lost: ${JSON.stringify(t.tier)}`);
    assert.equal((await edge.hubFaults()).forwardsRefused, 6, "the hub refused forwards while the aggregators restarted");
    // Settled: every aggregator's summaries confirmed, and still exact.
    const settled = await eventually(async () => {
      const aggs = await aggregators(edge);
      return Object.values(aggs).every((s) => s.unconfirmed === 0 && s.open === 0) ? aggs : null;
    });
    assert.ok(settled, JSON.stringify(await aggregators(edge)));
    assert.equal((await totals(edge)).metrics.totals.requests, N, "nothing counted twice");
    counts.counted += N;
  } finally {
    await edge.close();
  }
});

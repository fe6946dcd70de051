// Windowed analytics on Durable Object alarms (issue: analytics): patterns on
// the API and the stream, KV rollups read back through the history endpoint,
// an alert rule that fires and resolves, Prometheus exposition, and KV's
// one-write-per-key-per-second limit (which the local KV does not enforce).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { startEdge, BROWSER_HEADERS, eventually as poll } from "./harness.mjs";

const RULES = JSON.stringify([
  { name: "busy_site", metric: "request_count", operator: ">=", threshold: 5, duration: 0, severity: "high", message: "5 or more requests in a slide", cooldown: 0 },
]);

let edge;
const testStart = Date.now();
before(async () => {
  edge = await startEdge({
    vars: {
      RISK_MODE: "consistent",
      ANALYTICS_SLIDE_SECONDS: "1",
      ANALYTICS_WINDOW_SECONDS: "20",
      FLUSH_INTERVAL_MS: "100",
      ALERT_RULES: RULES,
    },
  });
});
after(async () => {
  await edge?.close();
});

const eventually = (check, opts) => poll(check, { tries: 80, ...opts });

test("a scanning campaign and a threat spike show in patterns, on the stream, and in KV history; a rule fires and resolves", async () => {
  const intel = edge.stream("/api/intelligence/stream");
  const perf = edge.stream("/api/performance/stream");
  await Promise.all([intel.opened, perf.opened]);
  const scanners = ["203.0.113.51", "203.0.113.52", "203.0.113.53", "203.0.113.54", "203.0.113.55"];
  await Promise.all(
    scanners.map(async (ip) => {
      const res = await edge.send("/.env", { cf: { country: "NL", asn: 14061, colo: "AMS" }, ip, headers: { "User-Agent": "python-requests/2.32.3", Accept: "*/*" } });
      await res.arrayBuffer();
    }),
  );
  // A burst of 10 more requests (well under a second): whichever 1-second
  // slides they fall in, one of them holds at least 5 requests for the rule.
  await Promise.all(
    Array.from({ length: 10 }, async (_, i) => {
      const res = await edge.send("/products", { cf: { country: "DE", asn: 3320 }, ip: `192.0.2.${100 + i}`, headers: BROWSER_HEADERS });
      await res.arrayBuffer();
    }),
  );
  // The threat events go out early in a 1-second slide, for margin: they
  // reach the hub through the stream root's count (ROOT_FLUSH_MS +
  // ROOT_COUNT_EVERY_MS, up to ~1.1 s), and their spike is judged up to the
  // tick after their slide closes (~2.7 s on). The native tests
  // a_spike_outlives_its_grace_and_a_late_tick and
  // a_late_tick_pushes_the_spike_of_a_slide_it_missed are the ones that fail
  // under the old rule (the open slide and the one before it, by the tick's
  // wall time); this one checks the way through the runtime.
  while (Date.now() % 1000 > 100) await new Promise((r) => setTimeout(r, 20));
  const post = await edge.api("POST", "/api/events", {
    body: ["198.51.100.61", "198.51.100.62", "198.51.100.63"].map((ip) => ({ ip, eventType: "threat_detected", source: "feed", data: { threatScore: 90 } })),
  });
  assert.equal(post.json.accepted, 3);

  // Patterns on the API.
  const patterns = await eventually(async () => {
    const r = await edge.api("GET", "/api/analytics/patterns");
    const kinds = (r.json?.patterns ?? []).map((p) => p.kind);
    const campaign = r.json?.patterns?.find((p) => p.kind === "scanning_campaign");
    return campaign?.support === 5 && kinds.includes("threat_spike") ? r.json.patterns : null;
  });
  assert.ok(patterns, "patterns appeared");
  const campaign = patterns.find((p) => p.kind === "scanning_campaign");
  assert.equal(campaign.key, "/.env");
  assert.equal(campaign.support, 5);
  assert.deepEqual([...campaign.ips].sort(), scanners);
  assert.ok(patterns.some((p) => p.kind === "high_risk_asn" && p.key === "AS14061"), JSON.stringify(patterns));

  // The same as insights on the intelligence stream (pushed by the alarm tick
  // once the slide's grace is over: config::grace_ms, ~1.7 s with this file's
  // settings, then root and relay; 15 s leaves room for a loaded machine).
  // These pushes were a known gap from issue 17 to issue 19 (missing in 2 of
  // ~6 full runs, and the spike's in CI on 2026-12-04). Two causes were found
  // and fixed: a tick whose call to the stream root failed (4c09cc5, tested
  // below), and the threat spike counted by the tick's wall time, which
  // skipped the slide that held it when the grace was longer than a slide
  // (here) or the tick that closed it ran late (analytics::SpikeSpan). They
  // are strict again.
  const pushed = (kind) => intel.until((ms) => ms.some((m) => m.type === "insight" && m.data.pattern?.kind === kind), 15000);
  await pushed("scanning_campaign");
  await pushed("threat_spike");
  // Correlations are pushed too, when they appear (not at every tick). The
  // time-of-day peak is the steadiest one (its key is the hour).
  // The peak hour is read from the API again at each try: a test that runs
  // across a full hour may see the peak move, and each hour is pushed once.
  const peakNow = async () => {
    const r = await edge.api("GET", "/api/analytics/correlations");
    return (r.json?.correlations ?? []).find((c) => c.kind === "time_of_day_peak") ?? null;
  };
  const isPeak = (m, hour) => m.type === "insight" && m.data.kind === "correlation" && m.data.correlation?.kind === "time_of_day_peak" && m.data.correlation?.hourUtc === hour;
  const correlation = await eventually(async () => {
    const c = await peakNow();
    return c && intel.messages.some((m) => isPeak(m, c.hourUtc)) ? c : null;
  }, { tries: 150 });
  assert.ok(correlation, "the window's time-of-day peak reached the intelligence stream");
  const same = (m) => isPeak(m, correlation.hourUtc);
  const pushes = () => intel.messages.filter(same).length;
  const once = pushes();
  await new Promise((r) => setTimeout(r, 2500)); // two more ticks
  assert.equal(pushes(), once, "an unchanged correlation is not pushed again at every tick");

  // The alert rule (5 or more requests in a slide) fires ...
  await perf.until((ms) => ms.some((m) => m.type === "alert" && m.data.rule === "busy_site" && m.data.to === "firing"), 10000);
  // ... and resolves when a quiet slide is rolled up.
  await perf.until((ms) => ms.some((m) => m.type === "alert" && m.data.rule === "busy_site" && m.data.to === "resolved"), 10000);
  assert.ok(perf.messages.some((m) => m.type === "performance_metric" && m.data.requests >= 5));

  // The rollups are in KV, read back through the history endpoint.
  const hist = await eventually(async () => {
    const r = await edge.api("GET", `/api/performance/metrics/request_count/history?start=${testStart - 2000}&end=${Date.now() + 2000}`);
    return r.json?.metrics?.some((p) => p.value >= 5) ? r.json : null;
  });
  assert.ok(hist, "a rollup with the traffic is in KV");
  assert.equal(hist.count, hist.metrics.length);
  assert.ok(hist.metrics.every((p, i, a) => i === 0 || a[i - 1].timestamp < p.timestamp), "ordered, one per slide");
  const alerts = await edge.api("GET", "/api/performance/alerts");
  assert.equal(alerts.status, 200);
  assert.ok(alerts.json.rules.some((r) => r.rule === "busy_site"));
  intel.close();
  perf.close();
});

test("insights the stream root could not take (down during the tick) reach the stream at a later tick, once", async () => {
  const own = await startEdge({
    vars: { RISK_MODE: "consistent", ANALYTICS_SLIDE_SECONDS: "1", ANALYTICS_WINDOW_SECONDS: "20", FLUSH_INTERVAL_MS: "100" },
    streamRestarts: true,
  });
  try {
    const intel = own.stream("/api/intelligence/stream");
    await intel.opened;
    assert.equal(await own.setStreamDown("root", true), "down");
    const scanners = ["203.0.113.61", "203.0.113.62", "203.0.113.63", "203.0.113.64", "203.0.113.65"];
    await Promise.all(
      scanners.map(async (ip) => {
        const res = await own.send("/.env", { cf: { country: "NL", asn: 14061, colo: "AMS" }, ip, headers: { "User-Agent": "python-requests/2.32.3", Accept: "*/*" } });
        await res.arrayBuffer();
      }),
    );
    const scanning = (ms) => ms.some((m) => m.type === "insight" && m.data.pattern?.kind === "scanning_campaign");
    await eventually(async () => ((await own.api("GET", "/api/analytics/patterns")).json?.patterns ?? []).some((p) => p.kind === "scanning_campaign"));
    // The hub's tick takes the pattern as news once the slide's grace is
    // over (~1.7 s here, ticks every second) and fails to hand it to the
    // root: the log says what it kept.
    const kept = () => own.runtimeLog.join("").match(/(\d+) intelligence messages kept for the next tick/g) ?? [];
    await eventually(() => kept().some((line) => !line.startsWith("0 ")), { tries: 100 });
    await new Promise((r) => setTimeout(r, 4000)); // more ticks while the root is down
    assert.ok(!scanning(intel.messages), "nothing reached the stream while the root was down");
    assert.ok(Number(await own.setStreamDown("root", false)) > 0, "the root refused the hub's broadcasts");
    await intel.until(scanning, 15000);
    await new Promise((r) => setTimeout(r, 2500)); // two more ticks
    assert.equal(intel.messages.filter((m) => m.type === "insight" && m.data.pattern?.kind === "scanning_campaign").length, 1, "pushed once, not again at every tick");
    intel.close();
  } finally {
    await own.close();
  }
});

// Traffic of its own for a test that reads the window: the tests before it
// may take longer than the window (20 s) on a loaded machine (CI failed on
// that, 2026-12-04). Six browsers, each from its own address.
async function freshTraffic() {
  await Promise.all(
    Array.from({ length: 6 }, async (_, i) => {
      const res = await edge.send("/products", { cf: { country: "FR", asn: 3215 }, ip: `192.0.2.${200 + i}`, headers: BROWSER_HEADERS });
      await res.arrayBuffer();
    }),
  );
}

test("metric endpoints, insights, trends, anomalies, correlations and health answer with measured values", async () => {
  await freshTraffic();
  for (const path of ["/api/analytics/insights", "/api/analytics/trends", "/api/analytics/anomalies", "/api/analytics/correlations"]) {
    const r = await edge.api("GET", path);
    assert.equal(r.status, 200, path);
    assert.ok(r.json.window.slideSeconds === 1, path);
  }
  // The six reach the hub within the tiers' delay (~1.7 s here): wait for
  // them in the last 5 s (only they are that recent), then read.
  const recent = await eventually(async () => {
    const r = await edge.api("GET", "/api/performance/metrics/origin_latency_ms?timeframe=5000");
    return r.json?.metrics?.count >= 6 ? r : null;
  });
  assert.ok(recent, "the six fresh requests are in the window");
  const a = await edge.api("GET", "/api/intelligence/analytics");
  assert.equal(a.status, 200);
  assert.ok(a.json.activeProfiles >= 6, JSON.stringify(a.json.activeProfiles));
  assert.ok(Array.isArray(a.json.series.slides) && a.json.series.slides.length > 0);
  assert.equal(typeof a.json.queueSize, "number");
  const m = await edge.api("GET", "/api/performance/metrics/origin_latency_ms?timeframe=20000");
  assert.equal(m.status, 200);
  assert.ok(m.json.metrics.count >= 5, JSON.stringify(m.json));
  assert.ok(m.json.metrics.p50 > 0 && m.json.metrics.p99 >= m.json.metrics.p50);
  assert.equal((await edge.api("GET", "/api/performance/metrics/cpu_usage")).status, 404, "no simulated metrics");
  assert.equal((await edge.api("GET", "/api/performance/metrics/request_count?timeframe=-5")).status, 400);
  const h = await edge.api("GET", "/api/performance/health");
  assert.equal(h.status, 200);
  assert.ok(["healthy", "degraded"].includes(h.json.health.status));
  assert.ok(h.json.health.requestsInWindow >= 5);
  const live = await edge.send("/_intel/health/intelligence", { cf: {} });
  const liveBody = await live.json();
  assert.equal(liveBody.status, "ok");
  // Liveness answers from the isolate alone: the window's numbers are in the
  // authenticated health above (tests/streams.test.mjs counts its object calls: none).
  assert.equal(liveBody.analytics, undefined, JSON.stringify(liveBody));
  assert.ok(!JSON.stringify(liveBody).includes("203.0.113"), "liveness carries no IP data");
  assert.equal((await edge.api("GET", "/api/analytics/patterns", { token: null })).status, 401);
});

test("/metrics is valid Prometheus text", async () => {
  await freshTraffic();
  const r = await eventually(async () => {
    const r = await edge.api("GET", "/metrics");
    const families = r.status === 200 ? parsePrometheus(r.text) : [];
    // Origin latency is over the window: it has quantiles once the six are in.
    return families.find((f) => f.name === "edgeintel_origin_latency_ms")?.metrics.some((x) => x.labels.quantile === "0.95") ? r : null;
  });
  assert.ok(r, "the window's origin latency has quantiles");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /text\/plain; version=0.0.4/);
  const families = parsePrometheus(r.text);
  const byName = Object.fromEntries(families.map((f) => [f.name, f]));
  assert.equal(byName.edgeintel_request_count.type, "COUNTER");
  assert.ok(Number(byName.edgeintel_request_count.metrics[0].value) >= 5);
  assert.ok(byName.edgeintel_origin_latency_ms.metrics.some((x) => x.labels.quantile === "0.95"));
  assert.ok(byName.edgeintel_alert_state.metrics.some((x) => x.labels.rule === "busy_site"));
  assert.equal((await edge.api("GET", "/metrics", { token: null })).status, 401);
});

// KV allows one write per key per second. Every hub shard keeps a log of its
// own writes; the limit is per key whoever writes it, so the logs of all
// shards are checked together: each slide key written once in all, each
// `latest` key at least a second apart, and (HUB_SHARDS > 1) no key written
// by two shards.
async function checkKvWrites(edge, shards) {
  const byKey = new Map();
  const writers = new Map();
  for (let i = 0; i < shards; i++) {
    const name = i === 0 ? "global" : `shard-${i}`;
    const w = await edge.hubWindow(name);
    for (const { key, at } of w.kvWrites) {
      byKey.set(key, [...(byKey.get(key) ?? []), at].sort((a, b) => a - b));
      writers.set(key, new Set([...(writers.get(key) ?? []), name]));
    }
  }
  assert.ok(byKey.size > 10, `only ${byKey.size} keys written`);
  for (const [key, names] of writers) assert.equal(names.size, 1, `${key} written by ${[...names].join(", ")}`);
  for (const [key, times] of byKey) {
    for (let i = 1; i < times.length; i++) {
      assert.ok(times[i] - times[i - 1] >= 1000, `${key} written twice within ${times[i] - times[i - 1]} ms`);
    }
  }
  const latest = [...byKey.keys()].filter((k) => k.startsWith("metrics:v2:latest:"));
  assert.ok(latest.some((k) => byKey.get(k).length >= 2), "latest is rewritten every tick");
  const perSlide = [...byKey.keys()].filter((k) => !latest.includes(k));
  assert.ok(perSlide.every((k) => byKey.get(k).length === 1), "each slide's rollup key is written once");
}

test("KV: never more than one write per key per second", async () => {
  // Let a few more ticks happen, then inspect the hub's own log of KV writes.
  await new Promise((r) => setTimeout(r, 2500));
  await checkKvWrites(edge, 1);
});

// HUB_SHARDS=4 (issue 15, item 12): every shard rolls up its own subjects'
// slides into its own keys; history merges them (requests add up), and the
// write limit holds across the shards' logs.
describe("HUB_SHARDS=4", () => {
  let sharded;
  before(async () => {
    const rules = JSON.stringify([
      { name: "site_busy", metric: "request_count", operator: ">=", threshold: 25, duration: 0, severity: "high", message: "25 or more requests in a slide", cooldown: 0 },
    ]);
    sharded = await startEdge({ vars: { RISK_MODE: "consistent", ANALYTICS_SLIDE_SECONDS: "4", ANALYTICS_WINDOW_SECONDS: "80", FLUSH_INTERVAL_MS: "500", HUB_SHARDS: "4", ALERT_RULES: rules } });
  });
  after(async () => {
    await sharded?.close();
  });

  test("KV rollups of every shard: merged by history, one writer and one write per second per key", async () => {
    const from = Date.now() - 8000; // this edge's first traffic: any slide it lands in (4 s slides)
    const ips = Array.from({ length: 40 }, (_, i) => `192.0.2.${10 + i}`);
    await Promise.all(
      ips.map(async (ip) => {
        const res = await sharded.send("/products", { cf: { country: "DE", asn: 3320 }, ip, headers: BROWSER_HEADERS });
        await res.arrayBuffer();
      }),
    );
    const sent = ips.length;
    // Every shard got some of the subjects (the hash spreads 40 IPs over 4).
    const counted = await eventually(async () => {
      const r = await sharded.api("GET", `/api/performance/metrics/request_count/history?start=${from}&end=${Date.now() + 2000}`);
      const total = (r.json?.metrics ?? []).reduce((n, p) => n + p.value, 0);
      return total >= sent ? r.json : null;
    });
    assert.ok(counted, "history adds up the requests of all shards");
    assert.equal(counted.metrics.reduce((n, p) => n + p.value, 0), sent, "each request counted once");
    assert.ok(counted.metrics.some((p) => p.shards > 1), "a slide with keys from several shards");
    for (let i = 1; i < 4; i++) assert.ok((await sharded.hubWindow(`shard-${i}`)).totals.requests > 0, `shard-${i} got traffic`);
    await new Promise((r) => setTimeout(r, 8500)); // two more 4-second ticks
    await checkKvWrites(sharded, 4);
  });

  test("alert rules and insights are about the whole site: shard 0 evaluates them once, over every shard's window", async () => {
    // The previous test's 40 requests may have fired the rule: start from a quiet site.
    const quiet = await eventually(async () => {
      const r = await sharded.api("GET", "/api/performance/alerts");
      return r.json?.rules?.every((x) => x.state !== "firing" && x.state !== "pending") ? true : null;
    });
    assert.ok(quiet, "the rule is not firing before the burst");
    const intel = sharded.stream("/api/intelligence/stream");
    const perf = sharded.stream("/api/performance/stream");
    await Promise.all([intel.opened, perf.opened]);
    // 60 requests from 60 subjects at once, spread by hash over 4 shards:
    // the whole site has 30 or more in one 4-second slide, no shard has 25.
    const ips = Array.from({ length: 60 }, (_, i) => `203.0.113.${100 + i}`);
    const sentAt = Date.now();
    await Promise.all(
      ips.map(async (ip) => {
        const res = await sharded.send("/.git/config", { cf: { country: "NL", asn: 14061 }, ip, headers: { "User-Agent": "python-requests/2.32.3", Accept: "*/*" } });
        await res.arrayBuffer();
      }),
    );
    const firing = () => perf.messages.filter((m) => m.type === "alert" && m.data.rule === "site_busy" && m.data.to === "firing");
    await perf.until(() => firing().length >= 1, 25000);
    await perf.until((ms) => ms.some((m) => m.type === "alert" && m.data.rule === "site_busy" && m.data.to === "resolved"), 25000);
    assert.equal(firing().length, 1, "one firing transition for the site, not one per shard");
    const busiest = Math.max(...perf.messages.filter((m) => m.type === "performance_metric" && m.data.start * 1000 >= sentAt - 4000).map((m) => m.data.requests));
    assert.ok(busiest >= 30, `the metrics pushed are the whole site's (busiest slide ${busiest})`);
    for (let i = 0; i < 4; i++) {
      const w = await sharded.hubWindow(i === 0 ? "global" : `shard-${i}`);
      const most = Math.max(0, ...w.slides.map((s) => s.requests));
      assert.ok(most < 25, `shard ${i} alone never had 25 requests in a slide (${most}): only the merge fires the rule`);
      if (i > 0) assert.deepEqual(w.rules, [], `shard-${i} keeps no rule states`);
    }
    // The read side lists each rule once (not once per shard).
    const alerts = await sharded.api("GET", "/api/performance/alerts");
    assert.deepEqual(alerts.json.rules.map((r) => r.rule).sort(), ["site_busy"]);
    const metrics = parsePrometheus((await sharded.api("GET", "/metrics")).text);
    const states = metrics.find((m) => m.name === "edgeintel_alert_state").metrics;
    assert.deepEqual(states.map((x) => x.labels.rule), ["site_busy"], "one alert_state series per rule");
    // One scanning campaign with the scanners of every shard, pushed once.
    const campaigns = () => intel.messages.filter((m) => m.type === "insight" && m.data.pattern?.kind === "scanning_campaign" && m.data.pattern.key === "/.git/");
    await intel.until(() => campaigns().length >= 1, 10000);
    const patterns = await eventually(async () => {
      const r = await sharded.api("GET", "/api/analytics/patterns");
      const c = (r.json?.patterns ?? []).find((p) => p.kind === "scanning_campaign" && p.key === "/.git/");
      // More scanners than any one shard saw (under 25 each): the shards'
      // members united (not all 60 when a loaded machine delivered a report
      // after its slide's grace, which drops it as one hub would).
      return c?.support >= 30 ? c : null;
    });
    assert.ok(patterns, "the campaign counts the scanners of every shard");
    await new Promise((r) => setTimeout(r, 8500)); // two more ticks
    assert.equal(campaigns().length, 1, "pushed once, not once per shard");
    assert.ok(campaigns()[0].data.pattern.ips.every((ip) => ips.includes(ip)));
    intel.close();
    perf.close();
  });
});

test("the OpenAPI 3.1 document lists every route the tests call", async () => {
  const r = await edge.api("GET", "/api/openapi.json");
  assert.equal(r.status, 200);
  assert.equal(r.json.openapi, "3.1.0");
  for (const path of ["/health/intelligence", "/api/ip-intelligence/{ip}", "/api/events", "/api/stream-ticket", "/api/intelligence/stream",
    "/api/performance/stream", "/api/intelligence/analytics", "/api/analytics/patterns", "/api/performance/metrics/{name}/history",
    "/api/config/lists", "/metrics"]) {
    assert.ok(r.json.paths[path], `${path} documented`);
  }
  assert.equal((await edge.api("GET", "/api/openapi.json", { token: null })).status, 401);
  // The document is a static file in the build (www/api/); the dashboard route,
  // which needs no token, must not serve it under any other spelling, nor any
  // file of www/ beyond the page and its bundle.
  for (const path of ["/api%2Fopenapi.json", "//api/openapi.json", "/%61pi/openapi.json", "/Api/openapi.json", "/src/main.js", "/dist/%2e%2e/api/openapi.json"]) {
    const leak = await edge.api("GET", path, { token: null });
    assert.ok([401, 404].includes(leak.status), `${path}: ${leak.status}`);
    assert.ok(!leak.text.includes('"openapi"'), `${path} served the document`);
  }
  assert.equal((await edge.api("GET", "/dist/app.js", { token: null })).status, 200, "the bundle is still served");
});

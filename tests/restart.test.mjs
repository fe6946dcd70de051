// Restarts (issue: reliability, item 4): the local runtime is stopped in the
// middle of traffic and of a stream, then started again on the same persisted
// state and at the same address. Profiles, alerts, lists and the analytics
// window must be intact, the alarm must resume and stream clients reconnect.
//
// Consistent mode is used so that "answered" means "recorded": every request
// answered before the stop must be in its profile after it. (In fast mode an
// isolate holds observations up to FLUSH_INTERVAL_MS before writing them; an
// isolate killed without notice loses that much. docs/SCALING.md says so.)
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { startEdge, BROWSER_HEADERS, eventually as poll } from "./harness.mjs";
import { startOrigin } from "../scripts/origin.mjs";
import { recordCounts } from "./counts.mjs";

const RULES = JSON.stringify([
  { name: "busy_site", metric: "request_count", operator: ">=", threshold: 3, duration: 0, severity: "high", message: "3 or more requests in a slide", cooldown: 0 },
]);
const VARS = {
  RISK_MODE: "consistent",
  ENFORCE: "block",
  CHALLENGE_SIGNING_KEY: "restart-test-signing-key-0123",
  ANALYTICS_SLIDE_SECONDS: "1",
  ANALYTICS_WINDOW_SECONDS: "120",
  FLUSH_INTERVAL_MS: "100",
  ALERT_RULES: RULES,
};
const CITIES = [
  { country: "DE", city: "Berlin", latitude: "52.52", longitude: "13.40", asn: 3320, colo: "FRA" },
  { country: "FR", city: "Paris", latitude: "48.85", longitude: "2.35", asn: 3215, colo: "CDG" },
  { country: "US", city: "Ashburn", latitude: "39.04", longitude: "-77.49", asn: 7922, colo: "IAD" },
];
const counts = { restarts: 0, requests: 0, answered: 0, lost: 0 };
after(() => recordCounts("restart", counts));

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

const eventually = (check, opts) => poll(check, { tries: 100, ...opts });

test("stop the runtime mid-traffic and mid-stream, start it on the same state: nothing answered is lost, everything resumes", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeintel-restart-"));
  const origin = await startOrigin({ port: 0 });
  const port = await freePort();
  const start = () => startEdge({ vars: VARS, originUrl: origin.url, persistTo: dir, port });
  let edge = await start();
  try {
    // State of every kind before the stop.
    const lists = await edge.api("PUT", "/api/config/lists", { body: { allow: [], block: ["203.0.113.66"] } });
    assert.equal(lists.status, 200);
    const threat = await edge.api("POST", "/api/events", {
      body: [{ ip: "198.51.100.77", eventType: "threat_detected", source: "feed", data: { threatScore: 95 } }],
    });
    assert.equal(threat.json.accepted, 1);
    const stream = edge.stream("/api/intelligence/stream");
    await stream.opened;

    // Traffic from 40 IPs, 8 requests at a time, until the runtime goes away.
    const ips = Array.from({ length: 40 }, (_, i) => `198.51.100.${100 + i}`);
    const sent = new Map(ips.map((ip) => [ip, 0]));
    const answered = new Map(ips.map((ip) => [ip, 0]));
    let stopping = false;
    let n = 0;
    const worker = async () => {
      while (!stopping) {
        const i = n++;
        const ip = ips[i % ips.length];
        sent.set(ip, sent.get(ip) + 1);
        counts.requests++;
        try {
          const res = await edge.send(`/products/${i}`, { cf: CITIES[i % CITIES.length], ip, headers: BROWSER_HEADERS });
          await res.arrayBuffer();
          if (res.status === 200) answered.set(ip, answered.get(ip) + 1);
        } catch {
          // In flight when the runtime stopped: may or may not be recorded.
        }
      }
    };
    const traffic = Array.from({ length: 8 }, worker);
    // Let traffic run across several slides and alarm ticks, with the alert firing.
    const firing = await eventually(async () => {
      const r = await edge.api("GET", "/api/performance/alerts");
      return r.json?.rules?.find((x) => x.rule === "busy_site" && x.state === "firing");
    }, { tries: 100 });
    assert.ok(firing, "the alert fires under traffic");
    await new Promise((r) => setTimeout(r, 1500));
    const before = await edge.api("GET", "/api/intelligence/analytics");
    const slidesBefore = before.json.series.slides.filter((s) => s.requests > 0).map((s) => s.start);
    assert.ok(slidesBefore.length >= 2, "traffic spans several slides");
    assert.ok(stream.updates().length > 0, "the stream carried updates before the stop");

    // Stop in the middle of it all: 8 requests are in flight when the runtime
    // goes (no new ones start; a disposed Miniflare would not answer them).
    const stoppedAt = Date.now();
    stopping = true;
    await edge.close();
    await Promise.race([Promise.all(traffic), new Promise((r) => setTimeout(r, 5000))]);
    counts.restarts++;
    const closed = await Promise.race([stream.closedPromise, new Promise((r) => setTimeout(() => r(null), 5000))]);
    assert.ok(closed, "the stream client saw its socket close");

    // Start again on the same state at the same address.
    edge = await start();

    // Profiles: every answered request is counted, none counted twice.
    for (const ip of ips) {
      const r = await edge.api("GET", `/api/ip-intelligence/${ip}`);
      assert.equal(r.status, 200, `${ip} has a profile`);
      const stored = r.json.profile.requestCount;
      assert.ok(stored >= answered.get(ip) && stored <= sent.get(ip), `${ip}: stored ${stored}, answered ${answered.get(ip)}, sent ${sent.get(ip)}`);
      counts.answered += answered.get(ip);
      counts.lost += Math.max(0, answered.get(ip) - stored);
    }
    // Events and lists.
    const t = await edge.api("GET", "/api/ip-intelligence/198.51.100.77");
    assert.ok(t.json.profile.alerts.some((a) => a.type === "threat_detected"), "the posted threat is still there");
    const blocked = await edge.send("/", { cf: CITIES[0], ip: "203.0.113.66", headers: BROWSER_HEADERS });
    assert.equal(blocked.status, 403, "the stored block list is in force");
    await blocked.arrayBuffer();

    // The analytics window: the slides from before the stop are still there.
    const a = await edge.api("GET", "/api/intelligence/analytics");
    const slidesAfter = new Set(a.json.series.slides.filter((s) => s.requests > 0).map((s) => s.start));
    for (const s of slidesBefore) assert.ok(slidesAfter.has(s), `slide ${s} survived the restart`);
    // The alert rule kept its state (it was firing; it is firing or resolved
    // since, never reset to "inactive" as if it had never fired).
    const rule = (await edge.api("GET", "/api/performance/alerts")).json.rules.find((x) => x.rule === "busy_site");
    assert.ok(rule && rule.state !== "inactive" && Date.parse(rule.since) <= Date.now(), JSON.stringify(rule));
    // The alarm resumes without any new request to the hub.
    const resumed = await eventually(async () => {
      const r = await edge.api("GET", "/api/intelligence/analytics");
      return Date.parse(r.json?.metrics?.lastTick) > stoppedAt ? r.json.metrics : null;
    });
    assert.ok(resumed, "the hub's alarm ticks again after the restart");

    // A stream client reconnects to the same address and gets new events.
    const again = edge.stream("/api/intelligence/stream");
    await again.opened;
    const res = await edge.send("/.env", { cf: CITIES[1], ip: "198.51.100.200", headers: { "User-Agent": "curl/8.5.0", Accept: "*/*" } });
    await res.arrayBuffer();
    await again.until((ms) => ms.some((m) => m.type === "intelligence_update" && m.data.event.ip === "198.51.100.200"), 8000);
    again.close();
  } finally {
    await edge.close().catch(() => {});
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

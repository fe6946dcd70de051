// Reliability (issue: reliability, partly): hostile input against the running
// Worker, each followed by a valid request that must still work; and load
// without loss: every request counted in exactly one profile.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge, intelHeaders, BROWSER_HEADERS, ADMIN_TOKEN } from "./harness.mjs";
import { recordCounts } from "./counts.mjs";

const BERLIN = { country: "DE", city: "Berlin", latitude: "52.52437", longitude: "13.41053", asn: 3320, colo: "FRA" };
let edge;
const counts = { cases: 0 };
before(async () => {
  edge = await startEdge({ vars: { FLUSH_INTERVAL_MS: "200" } });
});
after(async () => {
  await edge?.close();
  recordCounts("reliability", { badInputCases: counts.cases, requests: counts.requests ?? 0, lost: counts.lost ?? null });
});

async function stillWorks() {
  const r = await edge.send("/products", { cf: BERLIN, ip: "198.51.100.250", headers: BROWSER_HEADERS });
  assert.equal(r.status, 200, "the next valid request works");
  await r.arrayBuffer();
}

async function raw(path, { method = "POST", body, headers = {} } = {}) {
  const res = await edge.mf.dispatchFetch(`http://edge.test/_intel${path}`, {
    method,
    body,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, ...headers },
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch {}
  return { status: res.status, json, text };
}

test("bad input to the API gets a clear error and loses nothing", async () => {
  const json = { "Content-Type": "application/json" };
  const cases = [
    ["malformed JSON", "/api/events", { body: "[{", headers: json }, 400, "malformed_json"],
    ["NaN is not JSON", "/api/events", { body: '[{"ip":"1.2.3.4","eventType":"threat_detected","data":{"threatScore":NaN}}]', headers: json }, 400, "malformed_json"],
    ["huge number", "/api/events", { body: '[{"ip":"1.2.3.4","eventType":"threat_detected","data":{"threatScore":1e309}}]', headers: json }, 400, "malformed_json"],
    ["wrong top-level type", "/api/events", { body: '"events"', headers: json }, 400, "invalid_body"],
    ["invalid UTF-8", "/api/events", { body: new Uint8Array([0x5b, 0xff, 0xfe, 0x5d]), headers: json }, 400, "invalid_utf8"],
    ["oversized body", "/api/events", { body: "[" + " ".repeat(1024 * 1024 + 10) + "]", headers: json }, 413, "payload_too_large"],
    ["too many events", "/api/events", { body: JSON.stringify(Array.from({ length: 501 }, () => ({}))), headers: json }, 413, "batch_too_large"],
    ["not JSON at all", "/api/events", { body: "ip=1.2.3.4", headers: { "Content-Type": "application/x-www-form-urlencoded" } }, 415, "unsupported_media_type"],
    ["path traversal as an IP", "/api/ip-intelligence/..%2F..%2Fetc%2Fpasswd", { method: "GET" }, 400, "invalid_ip"],
    ["control characters as an IP", "/api/ip-intelligence/%0d%0aSet-Cookie:%20a=b", { method: "GET" }, 400, "invalid_ip"],
    ["lists with a bad entry", "/api/config/lists", { method: "PUT", body: '{"allow":["1.2.3.4/99"]}', headers: json }, 400, "invalid_lists"],
    ["lists with an unknown field", "/api/config/lists", { method: "PUT", body: '{"deny":[]}', headers: json }, 400, "invalid_lists"],
    ["unknown route", "/api/does-not-exist", { method: "GET" }, 404, "not_found"],
    ["wrong method", "/api/events", { method: "PATCH", body: "[]", headers: json }, 405, "method_not_allowed"],
  ];
  for (const [name, path, init, status, error] of cases) {
    const r = await raw(path, init);
    assert.equal(r.status, status, `${name}: ${r.text.slice(0, 200)}`);
    assert.equal(r.json?.error, error, name);
    assert.ok(r.json?.message, `${name} has a message`);
    counts.cases++;
    await stillWorks();
  }
  // Per-item errors for wrong types, negative timestamps and unknown event types: the good one is kept.
  const r = await raw("/api/events", {
    headers: json,
    body: JSON.stringify([
      { ip: "198.51.100.240", eventType: "threat_detected", data: { threatScore: 60 } },
      { ip: "198.51.100.240", eventType: "threat_detected", timestamp: -1, data: { threatScore: 60 } },
      { ip: "198.51.100.240", eventType: "teleported" },
      { ip: 1234, eventType: "threat_detected", data: { threatScore: 60 } },
      { ip: "198.51.100.240", eventType: "reputation_change", data: { reputationScore: "low" } },
      { ip: "198.51.100.240", eventType: "behavior_anomaly", data: { behavioralFlags: "suspicious" } },
    ]),
  });
  assert.equal(r.status, 202);
  assert.equal(r.json.accepted, 1);
  assert.deepEqual(r.json.rejected.map((x) => x.index), [1, 2, 3, 4, 5]);
  counts.cases += 5;
  const p = await raw("/api/ip-intelligence/198.51.100.240", { method: "GET" });
  assert.equal(p.json.profile.threatScore, 60, "the valid event was kept");
});

test("hostile requests to the site and to the endpoints anyone can reach get a clear answer and break nothing", async () => {
  // Each case: a request, the status it must get, and then a valid request
  // that must still work (no panic reset the instance). Client addresses are
  // spread so the failed-authentication limit (tests/abuse.test.mjs) stays out of the way.
  let n = 0;
  const from = () => `198.18.200.${++n}`;
  const site = (path, init = {}) => edge.send(path, { cf: BERLIN, ip: from(), headers: BROWSER_HEADERS, ...init });
  const nested = "[".repeat(5000) + "]".repeat(5000);
  const cases = [
    ["an 8 KB path", () => site("/" + "a".repeat(8 * 1024)), 200],
    ["a NUL in the path", () => site("/%00/x"), 200],
    ["broken percent-encoding in the path", () => site("/%zz%/%"), 200],
    ["a 16 KB User-Agent", () => site("/", { headers: { ...BROWSER_HEADERS, "User-Agent": "x".repeat(16 * 1024) } }), 200],
    ["a 30 KB Cookie header with a garbage clearance last", () => site("/", { headers: { ...BROWSER_HEADERS, Cookie: "a=" + "b".repeat(30 * 1024) + "; ei_clear=garbage.garbage" } }), 200],
    ["an 8 KB clearance cookie", () => site("/", { headers: { ...BROWSER_HEADERS, Cookie: "ei_clear=" + "9".repeat(8 * 1024) } }), 200],
    ["a Cookie header of only separators", () => site("/", { headers: { ...BROWSER_HEADERS, Cookie: ";;;==;=;" } }), 200],
    ["cf fields of the wrong types", () => site("/", { cf: { country: 7, city: ["x"], latitude: "north", longitude: {}, asn: "AS-what", colo: null, botManagement: "yes" } }), 200],
    ["a cf object with 500 unknown fields", () => site("/", { cf: Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`f${i}`, "x".repeat(20)])) }), 200],
    ["a client address that is not an address", () => site("/", { ip: "not-an-ip" }), 200],
    ["a client address with a port", () => site("/", { ip: "203.0.113.9:443" }), 200],
    ["a list of client addresses", () => site("/", { ip: "203.0.113.9, 10.0.0.1" }), 200],
    ["an unusual method", () => site("/", { method: "PROPFIND" }), 200],
    ["our headers spoofed, underscores and all", () => site("/", { headers: { ...BROWSER_HEADERS, "X-Risk-Score": "0", X_Risk_Level: "low", "X-Intel-Signature": "t=1,v1=00" } }), 200],
    ["liveness with a body", () => edge.send("/_intel/health/intelligence", { method: "POST", body: "x".repeat(1000), ip: from() }), 405],
    ["a challenge answer while challenges are off", () => edge.send("/_intel/challenge/verify", { method: "POST", body: "token=a&counter=1", ip: from(), headers: { "Content-Type": "application/x-www-form-urlencoded" } }), 404],
    // URL parsing resolves the encoded dot-segments first: this is the site's own /etc/passwd.
    ["encoded dot-segments out of the prefix", () => edge.send("/_intel/%2e%2e/%2e%2e/etc/passwd", { ip: from() }), 200],
    ["an encoded slash into the API", () => edge.send("/_intel/api%2Fevents", { ip: from() }), 404],
    ["a 10 KB bearer token", () => edge.send("/_intel/api/analytics/patterns", { ip: from(), headers: { Authorization: "Bearer " + "t".repeat(10 * 1024) } }), 401],
    ["a Basic credential", () => edge.send("/_intel/api/analytics/patterns", { ip: from(), headers: { Authorization: "Basic YWRtaW46YWRtaW4=" } }), 401],
    ["a stream upgrade with a garbage ticket", () => edge.send("/_intel/api/intelligence/stream?ticket=%00%ff", { ip: from(), headers: { Upgrade: "websocket" } }), 401],
    ["a stream upgrade with a garbage subprotocol", () => edge.send("/_intel/api/performance/stream", { ip: from(), headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": "bearer, ###" } }), 401],
    ["JSON nested 5,000 deep", () => raw("/api/events", { body: nested, headers: { "Content-Type": "application/json" } }), 400],
    ["a UTF-16 body declared as JSON", () => raw("/api/events", { body: new Uint8Array([0xff, 0xfe, 0x5b, 0x00, 0x5d, 0x00]), headers: { "Content-Type": "application/json; charset=utf-16" } }), 400],
    ["a timeframe past f64", () => raw("/api/performance/metrics/request_count?timeframe=1e400", { method: "GET" }), 400],
    ["a negative history start", () => raw("/api/performance/metrics/request_count/history?start=-1", { method: "GET" }), 400],
  ];
  for (const [name, send, status] of cases) {
    const r = await send();
    const text = typeof r.text === "function" ? await r.text() : r.text;
    assert.equal(r.status, status, `${name}: ${String(text).slice(0, 200)}`);
    counts.cases++;
    await stillWorks();
  }
  const log = edge.runtimeLog.join("");
  assert.doesNotMatch(log, /panicked|RuntimeError|Reinitializing Wasm|unreachable executed/i);
});

test("header injection and spoofing have no effect", async () => {
  // CR/LF (and non-ASCII) in a cf field we echo: percent-encoded, never a new header.
  const r = await edge.send("/", { cf: { ...BERLIN, city: "Berlin\r\nSet-Cookie: pwned=1", region: "Ünïcode\u0000" }, ip: "198.51.100.241", headers: BROWSER_HEADERS });
  assert.equal(r.status, 200);
  await r.arrayBuffer();
  const got = edge.origin.requests.at(-1);
  assert.equal(got.headers["x-geo-city"], "Berlin%0D%0ASet-Cookie: pwned=1");
  assert.equal(got.headers["set-cookie"], undefined);
  assert.ok(/^[\x20-\x7e]*$/.test(got.headers["x-geo-region"]));
  // X-Forwarded-For and X-Real-IP do not change who the request is from.
  const s = await edge.send("/", { cf: { country: "T1" }, ip: "198.51.100.242", headers: { ...BROWSER_HEADERS, "X-Forwarded-For": "203.0.113.243", "X-Real-IP": "203.0.113.243" } });
  await s.arrayBuffer();
  await new Promise((res) => setTimeout(res, 600)); // let the batch flush
  const spoofed = await edge.api("GET", "/api/ip-intelligence/203.0.113.243");
  assert.equal(spoofed.status, 404, "no profile for the spoofed address");
  const real = await edge.api("GET", "/api/ip-intelligence/198.51.100.242");
  assert.equal(real.status, 200);
  counts.cases += 3;
  await stillWorks();
});

test("load without loss: 20,000 requests from 1,000 IPs, every one counted, no 5xx", async () => {
  const ips = Array.from({ length: 1000 }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
  const total = 20_000;
  let next = 0;
  const statuses = {};
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < total) {
        const k = next++;
        const r = await edge.send(k % 7 === 0 ? "/.env" : "/products", { cf: BERLIN, ip: ips[k % ips.length], headers: BROWSER_HEADERS });
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        await r.arrayBuffer();
      }
    }),
  );
  assert.deepEqual(Object.keys(statuses), ["200"], JSON.stringify(statuses));
  // Every profile's counter, summed, equals what was sent (batches flush within 200 ms; allow a few seconds).
  let sum = 0;
  for (let attempt = 0; attempt < 20; attempt++) {
    sum = 0;
    for (let i = 0; i < ips.length; i += 50) {
      const chunk = await Promise.all(ips.slice(i, i + 50).map((ip) => edge.api("GET", `/api/ip-intelligence/${ip}`)));
      for (const c of chunk) sum += c.json?.profile?.requestCount ?? 0;
    }
    if (sum >= total) break;
    await new Promise((res) => setTimeout(res, 500));
  }
  counts.requests = total;
  counts.lost = total - sum;
  assert.equal(sum, total, "lost: 0");
  // No panic in the runtime's log (a panic would also reset the wasm instance).
  const log = edge.runtimeLog.join("");
  assert.doesNotMatch(log, /panicked|RuntimeError|Reinitializing Wasm|unreachable executed/i);
});

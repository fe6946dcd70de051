// The rotation budget (issue 17, item 4; docs/profiles.md "Rotation budget"):
// new subjects per /48 and per ASN per minute, counted in the isolate; past
// the budget a request is identified as its /48 (IPv6) or /24 (IPv4) and
// carries `subnet_rotation`. Against the built Worker in the local runtime.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { startEdge, intelHeaders, BROWSER_HEADERS, eventually } from "./harness.mjs";
import { recordCounts } from "./counts.mjs";

const BERLIN = { country: "DE", city: "Berlin", latitude: "52.52437", longitude: "13.41053", colo: "FRA" };

/** Sends a request and returns the edgeintel headers the origin received. */
async function seen(edge, ip, asn, path = "/products") {
  const res = await edge.send(path, { cf: { ...BERLIN, asn }, ip, headers: BROWSER_HEADERS });
  await res.arrayBuffer();
  assert.ok(res.status < 500, `status ${res.status}`);
  return intelHeaders(edge.origin.requests.at(-1));
}

const JSON_ACCEPT = { ...BROWSER_HEADERS, Accept: "application/json" };
const KEY = "rotation-test-challenge-key-0123456789";

/** Solves the proof-of-work like the challenge page's script does. */
function solve(token, difficulty) {
  for (let c = 0; ; c++) {
    const d = createHash("sha256").update(`${token}:${c}`).digest();
    let zeros = 0;
    for (const b of d) {
      if (b === 0) { zeros += 8; continue; }
      zeros += Math.clz32(b) - 24;
      break;
    }
    if (zeros >= difficulty) return c;
  }
}

/** Sends a request and returns its status and JSON body (if any). */
async function answer(edge, ip, { path = "/products", headers = JSON_ACCEPT, asn = 64500 } = {}) {
  const res = await edge.send(path, { cf: { ...BERLIN, asn }, ip, headers });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json };
}

const rotated = (h) => (h["x-risk-reasons"] ?? "").split(",").includes("subnet_rotation");

/** The budget is per clock minute: start early in one, so a run never spans two. */
async function startOfAMinute() {
  const into = Date.now() % 60_000;
  if (into > 30_000) await new Promise((r) => setTimeout(r, 60_000 - into + 200));
}

test("rotating through the /64s of one /48: the budget's worth of profiles, the rest land on the /48 with subnet_rotation", async (t) => {
  const budget = 8;
  const edge = await startEdge({ vars: { ROTATION_BUDGET_PER_48: String(budget), FLUSH_INTERVAL_MS: "100" } });
  const profileCalls = async () => (await edge.api("GET", "/api/intelligence/analytics")).json.isolate.objectCallsByBinding.PROFILES ?? 0;
  try {
    await startOfAMinute();
    const n = 40;
    const ips = Array.from({ length: n }, (_, i) => `2001:db8:77:${(i + 1).toString(16)}::1`);
    const base = await profileCalls();
    const flags = [];
    for (const ip of ips) flags.push(rotated(await seen(edge, ip, 64500)));
    const own = flags.filter((f) => !f).length;
    assert.deepEqual(flags.slice(0, budget), Array(budget).fill(false), "the budget's first /64s are their own subjects");
    assert.equal(own, budget, "every /64 past the budget carries subnet_rotation");
    // Everything recorded (calm batches wait FLUSH_CALM_MS, 1 s here).
    await new Promise((r) => setTimeout(r, 2500));
    const calls = (await profileCalls()) - base;
    t.diagnostic(`${n} new /64s of one /48, budget ${budget}: ${calls} PROFILES calls`);
    // One consult per admitted /64, one for the /48, and the /48's batches
    // (how many depends on the machine's timing: 3 on a quiet one, 5 seen
    // under load). Without the budget it would be at least one per /64 (40).
    assert.ok(calls <= budget + 6, `${calls} profile calls`);
    const wide = await eventually(async () => {
      const r = await edge.api("GET", "/api/ip-intelligence/2001:db8:77::/48");
      return r.json?.profile?.requestCount === n - budget ? r.json : null;
    });
    assert.ok(wide, "the /48's profile holds every widened request");
    assert.deepEqual(wide.profile.widened, { from: "/64", to: "/48", reason: "subnet_rotation" });
    assert.equal(wide.profile.retention, "standard");
    // The admitted /64s have their own profiles; the widened ones have none.
    assert.equal((await edge.api("GET", `/api/ip-intelligence/${ips[0]}`)).json.profile.requestCount, 1);
    assert.equal((await edge.api("GET", `/api/ip-intelligence/${ips[n - 1]}`)).status, 404, "no object for a widened /64");
    // An admitted /64 with a cached verdict is not touched by the budget.
    assert.equal(rotated(await seen(edge, ips[0], 64500)), false);
    // A normal IPv6 user in another /48 (same ASN, under its budget) is unaffected.
    const other = await seen(edge, "2001:db8:99:1::5", 64500);
    assert.equal(rotated(other), false);
    assert.equal(other["x-intel-status"], "ok");
    const mine = await eventually(async () => (await edge.api("GET", "/api/ip-intelligence/2001:db8:99:1::/64")).json);
    assert.equal(mine.profile.widened, undefined);
    recordCounts("rotation", { subjects: n, budget, profileCalls: calls, widened: n - own });
  } finally {
    await edge.close();
  }
});

test("the ASN budget widens new IPv4 addresses to their /24; other ASNs are unaffected", async () => {
  const budget = 5;
  const edge = await startEdge({ vars: { ROTATION_BUDGET_PER_ASN: String(budget), FLUSH_INTERVAL_MS: "100" } });
  try {
    await startOfAMinute();
    const flags = [];
    for (let i = 1; i <= 15; i++) flags.push(rotated(await seen(edge, `203.0.113.${i}`, 64501)));
    assert.equal(flags.filter((f) => !f).length, budget);
    assert.deepEqual(flags.slice(0, budget), Array(budget).fill(false));
    const wide = await eventually(async () => {
      const r = await edge.api("GET", "/api/ip-intelligence/203.0.113.0/24");
      return r.json?.profile?.requestCount === 15 - budget ? r.json : null;
    });
    assert.ok(wide, "the /24's profile holds the widened requests");
    assert.deepEqual(wide.profile.widened, { from: "/32", to: "/24", reason: "subnet_rotation" });
    // Another network's new addresses have their own budget.
    assert.equal(rotated(await seen(edge, "198.51.100.7", 64502)), false);
    // With ROTATION_BUDGET_PER_ASN, IPv6 /64s of that ASN widen to their /48 too.
    assert.equal(rotated(await seen(edge, "2001:db8:55:1::1", 64501)), true);
  } finally {
    await edge.close();
  }
});

test("an attacker scanning from rotating /64s of a shared /48: a new neighbour widened to the /48 is challenged, never blocked, and its clearance is its own /64's", async () => {
  const budget = 2;
  const edge = await startEdge({
    vars: {
      ROTATION_BUDGET_PER_48: String(budget), FLUSH_INTERVAL_MS: "100",
      // docs/enforcement.md: `block` blocks from BLOCK_AT, challenges from CHALLENGE_AT.
      ENFORCE: "block", CHALLENGE_AT: "40", BLOCK_AT: "65", CHALLENGE_SIGNING_KEY: KEY, CHALLENGE_DIFFICULTY: "4",
      // Low, so that the widened crowd's rate would trip it if it counted.
      VELOCITY_RPM: "5",
    },
  });
  try {
    await startOfAMinute();
    // The attacker: probes (path_scan, 40) from a new /64 of 2001:db8:66::/48 each.
    const probes = [];
    for (let i = 1; i <= 12; i++) probes.push(await answer(edge, `2001:db8:66:${i.toString(16)}::1`, { path: "/.env" }));
    // Score 40 + 15 + the /48's history: past BLOCK_AT, yet challenged.
    for (const p of probes) assert.equal(p.status, 403);
    assert.ok(probes.slice(budget).every((p) => p.json?.error === "challenge_required"), JSON.stringify(probes.map((p) => p.json?.error)));
    // The /48's own score is past BLOCK_AT (without subnet_rotation's 15).
    const wide = await eventually(async () => {
      const r = await edge.api("GET", "/api/ip-intelligence/2001:db8:66::/48");
      return r.json?.metrics?.historyRisk?.score >= 65 && r.json.profile.requestCount === 12 - budget ? r.json : null;
    });
    assert.ok(wide, "the /48's history scores past BLOCK_AT");
    const reasons = wide.metrics.historyRisk.contributions.map((c) => c.reason);
    assert.ok(reasons.includes("path_scan"), reasons.join(","));
    assert.ok(!reasons.includes("high_velocity"), "a widened crowd's rate is not one client's velocity");
    assert.ok(wide.metrics.requestsLastMinute > 5);
    await new Promise((r) => setTimeout(r, 300));
    // A neighbour: a new /64 of the same /48, a plain browser on a plain page.
    const neighbour = "2001:db8:66:1000::7";
    const first = await answer(edge, neighbour);
    assert.equal(first.status, 403);
    assert.equal(first.json?.error, "challenge_required", "challenged, not blocked");
    // It solves the challenge: the clearance is bound to its own /64.
    const { token, difficulty, verify } = first.json.challenge;
    const solved = await edge.send(verify, { cf: { ...BERLIN, asn: 64500 }, ip: neighbour, method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token, counter: solve(token, difficulty) }) });
    assert.equal(solved.status, 200, await solved.clone().text());
    const cookie = solved.headers.get("set-cookie").split(";")[0];
    await solved.arrayBuffer();
    const cleared = await edge.send("/products", { cf: { ...BERLIN, asn: 64500 }, ip: neighbour, headers: { ...BROWSER_HEADERS, Cookie: cookie } });
    await cleared.arrayBuffer();
    assert.equal(cleared.status, 200, "its clearance passes while it is still widened");
    assert.equal(rotated(intelHeaders(edge.origin.requests.at(-1))), true);
    // The same cookie from another /64 widened to the /48 does not.
    const other = await edge.send("/products", { cf: { ...BERLIN, asn: 64500 }, ip: "2001:db8:66:1001::7", headers: { ...JSON_ACCEPT, Cookie: cookie } });
    assert.equal(other.status, 403);
    assert.equal((await other.json()).error, "challenge_required");
    // The block list still blocks a widened request.
    await edge.api("PUT", "/api/config/lists", { body: { allow: [], block: ["2001:db8:66::/48"] } });
    const listed = await eventually(async () => {
      const r = await answer(edge, "2001:db8:66:1002::7");
      return r.json?.error === "blocked" ? r : null;
    });
    assert.ok(listed, "block-listed");
  } finally {
    await edge.close();
  }
});

test("the defaults (256 per /48 a minute): 60 new /64s of one /48 are all their own; one device's concurrent first requests count once", async () => {
  const edge = await startEdge({ vars: { FLUSH_INTERVAL_MS: "100" } });
  try {
    await startOfAMinute();
    const flags = [];
    for (let i = 1; i <= 60; i++) flags.push(rotated(await seen(edge, `2001:db8:88:${i.toString(16)}::1`, 64503)));
    assert.equal(flags.filter(Boolean).length, 0, "none widened under the default budget");
  } finally {
    await edge.close();
  }
  const small = await startEdge({ vars: { ROTATION_BUDGET_PER_48: "2", FLUSH_INTERVAL_MS: "100", CACHE_TTL_MS: "0" } });
  try {
    await startOfAMinute();
    // Ten requests of one new device at once (none has a verdict yet), and
    // with CACHE_TTL_MS=0 no request ever has one: the device is counted once.
    await Promise.all(Array.from({ length: 10 }, () => seen(small, "2001:db8:89:1::1", 64504)));
    for (let i = 0; i < 5; i++) assert.equal(rotated(await seen(small, "2001:db8:89:1::2", 64504)), false);
    assert.equal(rotated(await seen(small, "2001:db8:89:2::1", 64504)), false, "the second device is within the budget");
    assert.equal(rotated(await seen(small, "2001:db8:89:3::1", 64504)), true, "the third is past it");
    assert.equal(rotated(await seen(small, "2001:db8:89:1::1", 64504)), false, "an admitted device stays its own");
  } finally {
    await small.close();
  }
});

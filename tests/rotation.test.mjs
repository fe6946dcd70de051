// The rotation budget (issue 17, item 4; docs/profiles.md "Rotation budget"):
// new subjects per /48 and per ASN per minute, counted in the isolate; past
// the budget a request is identified as its /48 (IPv6) or /24 (IPv4) and
// carries `subnet_rotation`. Against the built Worker in the local runtime.
import { test } from "node:test";
import assert from "node:assert/strict";
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
    // One consult per admitted /64, one for the /48, and the /48's batches.
    assert.ok(calls <= budget + 4, `${calls} profile calls`);
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

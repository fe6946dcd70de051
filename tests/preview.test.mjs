// The what-if preview (issue 18, docs/policies.md "Preview"), in the local
// runtime: known traffic goes through the isolates, the aggregators and the
// hub's sample; a candidate policy is evaluated on it beside the policy in
// force; bad candidates are named field by field; an erased subject leaves
// the sample; with IP_HASH_KEY no raw address is in the answer.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge, eventually, BROWSER_HEADERS } from "./harness.mjs";

const CANDIDATE = {
  rules: [
    { id: "admin", match: { path: "/admin*" }, action: "block" },
    { id: "beta", match: { path: "/beta" }, action: "challenge", dryRun: true },
    { id: "login", match: { path: "/login", methods: ["POST"] }, action: "rate_limit", rateLimit: { requests: 5, periodSeconds: 60 } },
  ],
  enforce: "block",
  challengeAt: 40,
  blockAt: 80,
};

let edge;
before(async () => {
  // Two isolates, so the sample is merged across aggregators' reports; no rules
  // in force and ENFORCE off: every request is forwarded while the traffic runs.
  edge = await startEdge({ isolates: 2, vars: { IP_HASH_KEY: "preview-hash-key-0123456789abcdef" } });
  const send = (path, ip, { method = "GET", isolate = 0, cf = { country: "DE", asn: 3320 } } = {}) =>
    edge.send(path, { ip, method, isolate, cf, headers: BROWSER_HEADERS }).then((r) => r.arrayBuffer());
  // 30 to /admin from one client, 20 logins from another, 1 /beta, 9 probes
  // of /.env (path_scan: score 40) and 40 quiet requests from 40 clients.
  for (let i = 0; i < 30; i++) await send("/admin/users", "198.51.100.1", { isolate: i % 2 });
  for (let i = 0; i < 20; i++) await send("/login", "198.51.100.2", { method: "POST", isolate: i % 2 });
  await send("/beta", "198.51.100.3");
  for (let i = 0; i < 9; i++) await send("/.env", `198.51.100.${10 + i}`, { isolate: 1 });
  for (let i = 0; i < 40; i++) await send("/", `203.0.113.${i + 1}`, { isolate: i % 2 });
});
after(async () => {
  await edge?.close();
});

const preview = (body) => edge.api("POST", "/api/policy/preview", { body });

test("a candidate policy is evaluated on the known traffic, beside the policy in force", async () => {
  const r = await eventually(async () => {
    const p = await preview(CANDIDATE);
    return p.status === 200 && p.json.evaluated === 100 ? p : null;
  }, { tries: 100, everyMs: 100 });
  assert.ok(r, "the hub's sample holds all 100 requests");
  const p = r.json;
  assert.equal(p.represents, 100, "each item stands for one request (nothing thinned)");
  assert.deepEqual(p.current, { evaluated: 100, actions: { forward: 100, challenge: 0, block: 0, rate_limit: 0 } });
  assert.deepEqual(p.byRule.admin, { action: "block", dryRun: false, matched: 30, wouldEnforce: 30 });
  assert.deepEqual(p.byRule.beta, { action: "challenge", dryRun: true, matched: 1, wouldEnforce: 1 });
  assert.equal(p.byRule.login.matched, 20);
  // The sample estimates the login rate: 20 requests over spanSeconds, per 60 s,
  // against 5 allowed; past it the share 1 - 5/estimate would get 429.
  const estimate = (20 * 60) / Math.max(1, p.spanSeconds);
  const refused = estimate > 5 ? Math.round(20 * (1 - 5 / estimate)) : 0;
  assert.ok(Math.abs(p.actions.rate_limit - refused) <= 1, `rate_limit ${p.actions.rate_limit}, expected about ${refused} over ${p.spanSeconds} s`);
  assert.equal(p.byRule.login.wouldEnforce, p.actions.rate_limit);
  // ENFORCE=block at 40/80 challenges the 9 probes (path_scan, 40); the dry run forwards.
  assert.equal(p.actions.block, 30);
  assert.equal(p.actions.challenge, 9);
  assert.equal(p.actions.forward + p.actions.challenge + p.actions.block + p.actions.rate_limit, 100);
  // The most affected clients first, as hashed subjects (IP_HASH_KEY): no address in the answer.
  assert.equal(p.topSubjects[0].block, 30);
  assert.equal(p.topSubjects[0].evaluated, 30);
  assert.doesNotMatch(r.text, /198\.51\.100\.|203\.0\.113\./);
  assert.match(p.since, /^\d{4}-\d\d-\d\dT/);

  // Fields left out are the policy in force: an empty body previews it.
  const same = (await preview({})).json;
  assert.deepEqual(same.actions, same.current.actions);
});

test("a bad candidate names every bad field; nothing else is read", async () => {
  const r = await preview({ enforce: "maybe", challengeAt: 101, blockAt: -1, rules: [{ id: "x", action: "nope" }], bogus: 1 });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, "invalid_policy");
  const fields = r.json.errors.map((e) => e.field).sort();
  assert.deepEqual(fields, ["blockAt", "bogus", "challengeAt", "enforce", "rules[0].action"]);
  assert.equal((await preview([])).status, 400, "an array is not a policy");
  assert.equal((await edge.api("POST", "/api/policy/preview", { body: "{", headers: { "Content-Type": "application/json" } })).status, 400);
  assert.equal((await edge.api("POST", "/api/policy/preview", { body: {}, token: "wrong-token-0123456789" })).status, 401);
});

test("an erased subject leaves the sample", async () => {
  const del = await edge.api("DELETE", "/api/ip-intelligence/198.51.100.1");
  assert.equal(del.status, 200);
  const p = (await preview(CANDIDATE)).json;
  assert.equal(p.evaluated, 70);
  assert.equal(p.byRule.admin, undefined, "no /admin request is left");
});

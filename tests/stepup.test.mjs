// Step-up from the origin (issue 18, docs/policies.md "Step-up"), in the
// local runtime: an origin response carrying `X-Intel-Step-Up` makes the
// client's next requests in scope answer a challenge (or a block) for `ttl`
// seconds; the header never reaches the client; only a clearance issued
// after the step-up passes it; it follows the client into another isolate
// (through its profile object) and onto another address (through its
// visitor's object); a malformed one is ignored.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge, eventually, solve, BROWSER_HEADERS } from "./harness.mjs";

const KEY = "challenge-key-for-tests-0123456789";
const JSON_ACCEPT = { ...BROWSER_HEADERS, Accept: "application/json" };
const CF = { country: "DE", asn: 3320, latitude: "52.52", longitude: "13.40", city: "Berlin", continent: "EU" };

let edge;
before(async () => {
  // ENFORCE stays off: every answer below is the step-up's.
  edge = await startEdge({
    isolates: 2,
    vars: { CHALLENGE_SIGNING_KEY: KEY, CHALLENGE_DIFFICULTY: "4", VISITOR_COOKIE: "session", ALLOW_LIST: JSON.stringify(["198.51.100.99"]) },
  });
});
after(async () => {
  await edge?.close();
});

/** One request; its status, parsed JSON body (if any), response headers, and whether the origin got it. */
async function get(path, { ip, cookie, isolate = 0, cf = CF } = {}) {
  const before = edge.origin.requests.length;
  const headers = { ...JSON_ACCEPT, ...(cookie ? { Cookie: cookie } : {}) };
  const res = await edge.send(path, { ip, cf, headers, isolate });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch {}
  return { status: res.status, json, headers: res.headers, forwarded: edge.origin.requests.length > before };
}

const stepUp = (value) => `?step-up=${encodeURIComponent(value)}`;

/** Solves the challenge a challenged request answered; returns the clearance cookie ("ei_clear=..."). */
async function clear(challenged, { ip, isolate = 0 }) {
  const { token, difficulty, verify } = challenged.json.challenge;
  const res = await edge.send(verify, {
    ip, cf: CF, isolate, method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token, counter: solve(token, difficulty) }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  await res.arrayBuffer();
  return res.headers.get("set-cookie").split(";")[0];
}

test("a challenge step-up: the header is removed, the scope is challenged for this client only, and a clearance issued after it passes", async () => {
  const ip = "198.51.100.10";
  const asked = await get(`/checkout/start${stepUp('challenge; scope="/checkout"; ttl=600')}`, { ip });
  assert.equal(asked.status, 200);
  assert.ok(asked.forwarded);
  assert.equal(asked.headers.get("x-intel-step-up"), null, "the header is for edgeintel, not the client");

  const pay = await get("/checkout/pay", { ip });
  assert.equal(pay.status, 403);
  assert.equal(pay.json.error, "challenge_required");
  assert.ok(!pay.forwarded, "not forwarded");
  // Out of scope, or another client: forwarded as before.
  assert.equal((await get("/cart", { ip })).status, 200);
  assert.equal((await get("/checkoutx", { ip })).status, 403, "scope is a path prefix, as written");
  assert.equal((await get("/checkout/pay", { ip: "198.51.100.11" })).status, 200, "only the client the origin named");
  // A path spelled to leave the scope is still in it.
  assert.equal((await get("/x/..%2Fcheckout/pay", { ip })).status, 403);

  const cookie = await clear(pay, { ip });
  const through = await get("/checkout/pay", { ip, cookie });
  assert.equal(through.status, 200, "a clearance issued after the step-up passes");
  assert.ok(through.forwarded);
  // The origin learns the client holds a clearance, and since when (so it need not ask again).
  const cleared = Number(edge.origin.requests.at(-1).headers["x-intel"].match(/, cleared=(\d+)(,|$)/)?.[1]);
  assert.ok(Math.abs(cleared - Date.now() / 1000) < 60, `cleared=${cleared}`);
  assert.doesNotMatch(edge.origin.requests.find((r) => r.url === "/cart").headers["x-intel"], /cleared/);

  // The origin asks again: the clearance predates this step-up and no longer passes.
  await get(`/checkout/again${stepUp('challenge; scope="/checkout/pay"; ttl=600')}`, { ip, cookie });
  const again = await get("/checkout/pay", { ip, cookie });
  assert.equal(again.status, 403, "a clearance from before the step-up does not pass it");
  const fresh = await clear(again, { ip });
  assert.equal((await get("/checkout/pay", { ip, cookie: fresh })).status, 200);
});

test("a block step-up ends with its ttl, and a clearance does not lift it; the allow list is exempt", async () => {
  const ip = "198.51.100.20";
  await get(`/account${stepUp('block; scope="/account/delete"; ttl=3')}`, { ip });
  const blocked = await get("/account/delete", { ip });
  assert.equal(blocked.status, 403);
  assert.equal(blocked.json.error, "blocked");
  assert.equal((await get("/account", { ip })).status, 200);
  // Block and challenge together: the block wins where both hold, and a
  // clearance (issued after both) passes the challenge but not the block.
  await get(`/${stepUp('challenge; scope="/account"; ttl=3')}`, { ip });
  assert.equal((await get("/account/delete", { ip })).json.error, "blocked");
  const settings = await get("/account/settings", { ip });
  assert.equal(settings.json.error, "challenge_required");
  const cookie = await clear(settings, { ip });
  assert.equal((await get("/account/settings", { ip, cookie })).status, 200);
  assert.equal((await get("/account/delete", { ip, cookie })).json.error, "blocked", "a clearance never lifts a block");
  await new Promise((r) => setTimeout(r, 3_100));
  assert.equal((await get("/account/delete", { ip })).status, 200, "over when the ttl ends");

  const listed = "198.51.100.99";
  await get(`/${stepUp("block; ttl=60")}`, { ip: listed });
  assert.equal((await get("/anything", { ip: listed })).status, 200, "an allow-listed client is not stepped up");
});

test("the step-up follows the client into another isolate (its profile) and onto another address (its visitor)", async () => {
  const ip = "198.51.100.30";
  await get(`/pay${stepUp('challenge; scope="/pay"; ttl=600')}`, { ip, cookie: "session=s-30" });
  // Recorded with the profile after the response: the API shows it ...
  assert.ok(await eventually(async () => {
    const res = await edge.api("GET", `/api/ip-intelligence/${ip}`);
    return res.status === 200 && res.json.profile.stepUps?.length === 1;
  }), "the profile holds the step-up");
  const profile = (await edge.api("GET", `/api/ip-intelligence/${ip}`)).json.profile;
  assert.deepEqual(Object.keys(profile.stepUps[0]).sort(), ["action", "at", "scope", "until"]);
  assert.equal(profile.stepUps[0].scope, "/pay");
  // ... and an isolate that never saw the response challenges the subject.
  const other = await get("/pay/now", { ip, isolate: 1 });
  assert.equal(other.status, 403);
  assert.equal(other.json.error, "challenge_required");

  // The same visitor (session cookie) from a new address, in the other
  // isolate: its visitor's object holds the step-up. Each try is a new
  // address, so no isolate has a cached verdict for it.
  let n = 40;
  assert.ok(await eventually(async () => {
    const moved = await get("/pay/now", { ip: `198.51.100.${n++}`, isolate: 1, cookie: "session=s-30" });
    return moved.status === 403 && moved.json.error === "challenge_required";
  }, { tries: 20, everyMs: 100 }), "the visitor's object holds the step-up");
  assert.equal((await get("/pay/now", { ip: `198.51.100.${n++}`, isolate: 1, cookie: "session=s-other" })).status, 200, "another visitor is not");
});

test("a malformed step-up is ignored and still removed", async () => {
  const ip = "198.51.100.70";
  for (const bad of ["allow", 'challenge; scope="checkout"', "challenge; ttl=0", "challenge; ttl=999999", "block; scope=/x"]) {
    const r = await get(`/checkout${stepUp(bad)}`, { ip });
    assert.equal(r.status, 200, bad);
    assert.equal(r.headers.get("x-intel-step-up"), null, bad);
  }
  assert.equal((await get("/checkout", { ip })).status, 200, "nothing was stepped up");
  assert.match(edge.runtimeLog.join(""), /ignored the origin's X-Intel-Step-Up: ttl must be 1\.\.=86400 seconds/);
});

// Challenges that respect real people (issue 19, docs/enforcement.md), in the
// local runtime: a clearance bound to the visitor follows the same browser
// from an IPv4 to an IPv6 address (and not a different browser, and not
// without its visitor cookie; with `subject` binding it does not follow);
// the proof-of-work's difficulty grows with the score and is capped; the
// path for browsers without JavaScript (a signed wait-and-refresh) passes
// only after its wait, once; and every challenge is counted (issued, solved,
// by the no-script path, failed, pending) per trigger and reason in the
// analytics API and /metrics.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge, solve, BROWSER_HEADERS, CHROME_UA } from "./harness.mjs";

const KEY = "challenge-key-for-tests-0123456789";
const JSON_ACCEPT = { ...BROWSER_HEADERS, Accept: "application/json" };
const HTML_ACCEPT = { ...BROWSER_HEADERS, Accept: "text/html,application/xhtml+xml" };
const FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
// Tor alone: 45 points. With a probe path: 85.
const TOR = { country: "T1", asn: 60729, continent: "EU", latitude: "52.52", longitude: "13.40" };
const BASE_VARS = {
  ENFORCE: "challenge",
  CHALLENGE_AT: "40",
  BLOCK_AT: "100",
  CHALLENGE_SIGNING_KEY: KEY,
  CHALLENGE_DIFFICULTY: "4",
  CHALLENGE_DIFFICULTY_MAX: "7",
  CHALLENGE_DIFFICULTY_STEP: "10",
  CHALLENGE_NOSCRIPT_WAIT_SECONDS: "1",
  SET_VISITOR_COOKIE: "true",
  VISITOR_SIGNING_KEY: "visitor-key-for-tests-0123456789",
  RULES: JSON.stringify([{ id: "signup", match: { path: "/signup" }, action: "challenge" }]),
};

let edge;
before(async () => {
  edge = await startEdge({ vars: { ...BASE_VARS, CLEARANCE_BINDING: "visitor" } });
});
after(async () => {
  await edge?.close();
});

/** One request: status, JSON body (if any), the text, headers, and whether the origin got it. */
async function get(e, path, { ip, cookie, ua = CHROME_UA, cf = TOR, accept = JSON_ACCEPT } = {}) {
  const before = e.origin.requests.length;
  const headers = { ...accept, "User-Agent": ua, ...(cookie ? { Cookie: cookie } : {}) };
  const res = await e.send(path, { ip, cf, headers });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch {}
  return { status: res.status, json, text, headers: res.headers, forwarded: e.origin.requests.length > before };
}

/** The `name=value` part of each Set-Cookie of a response, joined for a Cookie header. */
function cookiesOf(headers) {
  return headers.getSetCookie().map((c) => c.split(";")[0]);
}

/** Solves a JSON challenge and posts it; returns the verify response. */
async function answer(e, challenged, { ip, cookie, ua = CHROME_UA }) {
  const { token, difficulty, verify } = challenged.json.challenge;
  return e.send(verify, {
    ip, cf: TOR, method: "POST",
    headers: { "Content-Type": "application/json", "User-Agent": ua, ...(cookie ? { Cookie: cookie } : {}) },
    body: JSON.stringify({ token, counter: solve(token, difficulty) }),
  });
}

test("a visitor-bound clearance follows the same browser from IPv4 to IPv6; not another browser, not without the visitor, not with subject binding", async () => {
  const v4 = "198.51.100.41", v6 = "2001:db8:41:1::7";
  const first = await get(edge, "/account", { ip: v4 });
  assert.equal(first.status, 403);
  assert.equal(first.json.error, "challenge_required");
  const vid = cookiesOf(first.headers).find((c) => c.startsWith("ei_vid="));
  assert.ok(vid, "the challenge sets the visitor cookie, so the answer can be bound to it");

  const verified = await answer(edge, first, { ip: v4, cookie: vid });
  assert.equal(verified.status, 200, await verified.clone().text());
  const clearance = cookiesOf(verified.headers).find((c) => c.startsWith("ei_clear="));
  assert.ok(clearance);
  const both = `${vid}; ${clearance}`;

  assert.ok((await get(edge, "/account", { ip: v4, cookie: both })).forwarded, "cleared on IPv4");
  const moved = await get(edge, "/account", { ip: v6, cookie: both });
  assert.equal(moved.status, 200, "the same browser on IPv6 is not challenged again");
  assert.ok(moved.forwarded);
  assert.equal((await get(edge, "/account", { ip: v6, cookie: both, ua: FIREFOX_UA })).status, 403, "another browser family with the copied cookies");
  assert.equal((await get(edge, "/account", { ip: v6, cookie: clearance })).status, 403, "the clearance without its visitor");

  // The same steps with CLEARANCE_BINDING=subject (the default): IPv6 is challenged again.
  const bySubject = await startEdge({ vars: BASE_VARS });
  try {
    const c = await get(bySubject, "/account", { ip: v4 });
    const vid2 = cookiesOf(c.headers).find((x) => x.startsWith("ei_vid="));
    const ok = await answer(bySubject, c, { ip: v4, cookie: vid2 });
    assert.equal(ok.status, 200);
    const all = `${vid2}; ${cookiesOf(ok.headers).find((x) => x.startsWith("ei_clear="))}`;
    assert.ok((await get(bySubject, "/account", { ip: v4, cookie: all })).forwarded, "cleared on IPv4");
    assert.equal((await get(bySubject, "/account", { ip: v6, cookie: all })).status, 403, "bound to the IPv4 subject");
  } finally {
    await bySubject.close();
  }
});

test("the difficulty grows by a bit per 10 points above CHALLENGE_AT, capped at CHALLENGE_DIFFICULTY_MAX", async () => {
  // Tor 45 (5 above 40): the base 4. Tor + hosting ASN (DigitalOcean) 65: 4 + 2. Tor + a probe path 85: 4 + 4, capped at 7.
  const at = async (path, cf) => (await get(edge, path, { ip: "198.51.100.42", cf })).json.challenge.difficulty;
  assert.equal(await at("/a", TOR), 4);
  assert.equal(await at("/b", { ...TOR, asn: 14061 }), 6);
  assert.equal(await at("/.env", TOR), 7);
});

test("without JavaScript: the page refreshes to the wait path, which passes only after the wait, once; off, the page says JavaScript is needed", async () => {
  const ip = "198.51.100.43";
  const page = await get(edge, "/news?id=7", { ip, accept: HTML_ACCEPT });
  assert.equal(page.status, 403);
  const meta = page.text.match(/<noscript><meta http-equiv="refresh" content="(\d+);url=([^"]+)"><\/noscript>/);
  assert.ok(meta, "a <noscript> refresh in the page");
  assert.equal(meta[1], "1", "the wait at the base difficulty");
  assert.match(page.text, /JavaScript is off/);
  const url = meta[2].replaceAll("&amp;", "&");
  assert.match(url, /^\/_intel\/challenge\/wait\?token=[0-9a-fm.]+&return=%2Fnews%3Fid%3D7$/);

  const early = await edge.send(url, { ip, cf: TOR, headers: HTML_ACCEPT });
  assert.equal(early.status, 403, "before the wait");
  assert.match((await early.json()).message, /too early/);
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal((await edge.send(url, { ip: "198.51.100.44", cf: TOR, headers: HTML_ACCEPT })).status, 403, "another client's token");
  const passed = await edge.send(url, { ip, cf: TOR, headers: HTML_ACCEPT });
  assert.equal(passed.status, 303);
  assert.equal(passed.headers.get("location"), "/news?id=7");
  const clearance = cookiesOf(passed.headers).find((c) => c.startsWith("ei_clear="));
  assert.ok(clearance);
  assert.ok((await get(edge, "/news?id=7", { ip, cookie: clearance })).forwarded, "the clearance passes the challenge");
  const again = await edge.send(url, { ip, cf: TOR, headers: HTML_ACCEPT });
  assert.equal(again.status, 403, "a token passes once");

  const off = await startEdge({ vars: { ...BASE_VARS, CHALLENGE_NOSCRIPT_WAIT_SECONDS: "0" } });
  try {
    const p = await get(off, "/news", { ip, accept: HTML_ACCEPT });
    assert.equal(p.status, 403);
    assert.doesNotMatch(p.text, /http-equiv="refresh"/);
    assert.match(p.text, /This check needs JavaScript/);
    assert.equal((await off.send(url, { ip, cf: TOR })).status, 404);
  } finally {
    await off.close();
  }
});

test("every challenge is counted per trigger and reason: issued, solved, without JavaScript, failed, pending (after the tests above)", async () => {
  const ip = "198.51.100.45";
  const clean = { country: "DE", asn: 3320, continent: "EU" };
  // A probe path alone (40): challenged, with path_scan its top reason.
  const probe = await get(edge, "/.git/config", { ip: "198.51.100.46", cf: clean });
  assert.equal(probe.status, 403);
  // A rule's challenge (a clean client: only the rule decides).
  const signup = await edge.send("/signup", { ip, cf: clean, headers: { ...JSON_ACCEPT, "User-Agent": CHROME_UA } });
  assert.equal(signup.status, 403);
  const bad = await edge.send("/_intel/challenge/verify", {
    ip, cf: clean, method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: (await signup.json()).challenge.token, counter: 0 }),
  });
  // Counter 0 may solve difficulty 4 by chance (1 in 16): then it is solved, not failed.
  const zeroWorked = bad.status === 200;
  await bad.arrayBuffer();

  // The tests above: /account x5 challenged (score, tor_exit), 2 solved; /a /b; /.env (path_scan);
  // /news x1 + solved without JS, 2 failed waits (early, other client), 1 reused.
  const want = (list) => {
    const tor = list.find((c) => c.trigger === "score" && c.reason === "tor_exit");
    const rule = list.find((c) => c.trigger === "rule" && c.rule === "signup");
    return tor && rule && tor.window.solvedNoscript >= 1 && rule.window.issued >= 1 && (tor.window.issued >= 7);
  };
  let list = [];
  for (let i = 0; i < 60 && !want(list); i++) {
    await new Promise((r) => setTimeout(r, 500));
    list = (await edge.api("GET", "/api/intelligence/analytics")).json.challenges ?? [];
  }
  const tor = list.find((c) => c.trigger === "score" && c.reason === "tor_exit");
  assert.ok(tor, JSON.stringify(list));
  // Issued: /account x4 (first, Firefox, clearance-only, ... see above), /a, /b, /news: at least 7.
  assert.ok(tor.window.issued >= 7, JSON.stringify(tor));
  assert.equal(tor.window.solved, 2, "the proof-of-work answer and the wait");
  assert.equal(tor.window.solvedNoscript, 1);
  assert.ok(tor.window.meanSolveMs >= 0, "solve time measured");
  assert.equal(tor.window.abandoned, 0, "nothing is abandoned before a token expires");
  assert.equal(tor.window.pending, tor.window.issued - tor.window.solved);
  const scan = list.find((c) => c.trigger === "score" && c.reason === "path_scan");
  assert.equal(scan?.window.issued, 1, "the /.git/config challenge under its top reason");
  const rule = list.find((c) => c.trigger === "rule" && c.rule === "signup");
  assert.equal(rule?.reason, "none", "a clean client challenged by the rule alone");
  assert.equal(rule.window.issued, 1);
  assert.equal(rule.window.solved, zeroWorked ? 1 : 0);
  const unknown = list.find((c) => c.trigger === "unknown");
  // Refused before the token was trusted: the early wait, the other client's, (the bad counter).
  assert.ok(unknown?.window.failed >= 2, JSON.stringify(list));
  assert.equal(tor.window.failed, 1, "the reused wait token: its label is known");

  const text = (await edge.api("GET", "/metrics")).text;
  assert.match(text, /^edgeintel_challenges_issued\{trigger="rule",rule="signup",reason="none"\} 1$/m);
  assert.match(text, /^edgeintel_challenges_solved_noscript\{trigger="score",rule="",reason="tor_exit"\} 1$/m);
  assert.match(text, /^edgeintel_challenges_solved\{trigger="score",rule="",reason="tor_exit"\} 2$/m);
  assert.match(text, /^edgeintel_challenge_solve_ms_mean\{trigger="score",rule="",reason="tor_exit"\} \d+$/m);
});

test("a shared address: five returning visitors behind one IPv4 address share it without high_velocity; one client alone does not", async () => {
  const e = await startEdge({ vars: { VELOCITY_RPM: "10", SET_VISITOR_COOKIE: "true", VISITOR_SIGNING_KEY: BASE_VARS.VISITOR_SIGNING_KEY } });
  try {
    const office = "198.51.100.50", alone = "198.51.100.51";
    const cf = { country: "DE", asn: 3320, continent: "EU" };
    const visitors = [];
    for (let v = 0; v < 5; v++) {
      const first = await get(e, "/", { ip: office, cf });
      visitors.push(cookiesOf(first.headers).find((c) => c.startsWith("ei_vid=")));
    }
    assert.equal(new Set(visitors).size, 5);
    // 5 x 6 = 30 more requests within the minute: over 10/min for one client, under 10 x 5 for five.
    for (let i = 0; i < 6; i++) for (const vid of visitors) await get(e, "/page", { ip: office, cf, cookie: vid });
    for (let i = 0; i < 35; i++) await get(e, "/page", { ip: alone, cf });
    const profile = async (ip) => (await e.api("GET", `/api/ip-intelligence/${ip}`)).json?.profile;
    let p;
    for (let i = 0; i < 60 && !(p?.requestCount >= 35); i++) {
      await new Promise((r) => setTimeout(r, 250));
      p = await profile(office);
    }
    assert.equal(p.requestCount, 35);
    assert.deepEqual(p.shared, { shared: true, visitorsLastHour: 5, thresholdFactor: 5 });
    assert.ok(!p.behavioralProfile.patterns.includes("high_velocity"), JSON.stringify(p.behavioralProfile));
    let a;
    for (let i = 0; i < 60 && !(a?.requestCount >= 35); i++) {
      await new Promise((r) => setTimeout(r, 250));
      a = await profile(alone);
    }
    assert.equal(a.shared.shared, false);
    assert.ok(a.behavioralProfile.patterns.includes("high_velocity"), "the same rate from one client is high_velocity");
  } finally {
    await e.close();
  }
});

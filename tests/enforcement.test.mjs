// Enforcement, signed headers, allow and block lists, privacy (issue:
// enforcement). Against the built Worker in the local runtime.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEdge, intelHeaders, eventually, works, solve, BROWSER_HEADERS } from "./harness.mjs";
import { startOrigin } from "../scripts/origin.mjs";
import { verify as verifyNode } from "../examples/node/verify.mjs";

const KEY = "challenge-key-for-tests-0123456789";
const BERLIN = { country: "DE", city: "Berlin", latitude: "52.52437", longitude: "13.41053", asn: 3320, colo: "FRA" };
const JSON_ACCEPT = { ...BROWSER_HEADERS, Accept: "application/json" };
const SCANNER = { "User-Agent": "python-requests/2.32.3", Accept: "*/*" };

async function status(edge, path, opts) {
  const res = await edge.send(path, opts);
  const body = await res.text();
  return { status: res.status, body, headers: res.headers };
}

test("each mode at, below and above its thresholds", async () => {
  // Scores from request-only signals: hosting 20, path_scan 40, tor 45, tor+hosting 65, scanner 85.
  const cases = [
    { name: "hosting (20)", cf: { asn: 14061 }, path: "/", headers: BROWSER_HEADERS },
    { name: "probe (40)", cf: {}, path: "/.env", headers: BROWSER_HEADERS },
    { name: "tor (45)", cf: { country: "T1" }, path: "/", headers: BROWSER_HEADERS },
    { name: "tor+hosting (65)", cf: { country: "T1", asn: 14061 }, path: "/", headers: BROWSER_HEADERS },
    { name: "scanner (85)", cf: { asn: 16276 }, path: "/.env", headers: SCANNER },
  ];
  const modes = {
    off: [200, 200, 200, 200, 200],
    challenge: [200, 403, 403, 403, 403],
    block: [200, 403, 403, 403, 403],
  };
  const kinds = { challenge: [null, "challenge_required", "challenge_required", "challenge_required", "challenge_required"], block: [null, "challenge_required", "challenge_required", "blocked", "blocked"] };
  for (const [mode, want] of Object.entries(modes)) {
    const edge = await startEdge({ vars: { ENFORCE: mode, CHALLENGE_AT: "40", BLOCK_AT: "65", CHALLENGE_SIGNING_KEY: KEY, CHALLENGE_DIFFICULTY: "4" } });
    try {
      for (const [i, c] of cases.entries()) {
        const before = edge.origin.requests.length;
        const r = await status(edge, c.path, { cf: c.cf, ip: `198.51.100.${30 + i}`, headers: { ...c.headers, Accept: "application/json" } });
        assert.equal(r.status, want[i], `${mode}: ${c.name}`);
        if (r.status === 403) {
          const body = JSON.parse(r.body);
          assert.equal(body.error, kinds[mode][i], `${mode}: ${c.name}`);
          assert.equal(edge.origin.requests.length, before, "not forwarded");
          assert.ok(!/tor_exit|hosting_asn|path_scan|automation_ua/.test(r.body), "no reasons in the answer");
        }
      }
    } finally {
      await edge.close();
    }
  }
});

test("block answers HTML or JSON with a reference id; verified bots are not blocked on score", async () => {
  const edge = await startEdge({ vars: { ENFORCE: "block", CHALLENGE_SIGNING_KEY: KEY } });
  try {
    const html = await status(edge, "/.env", { cf: { country: "T1", asn: 16276 }, ip: "198.51.100.40", headers: { ...SCANNER, Accept: "text/html" } });
    assert.equal(html.status, 403);
    assert.match(html.headers.get("content-type"), /text\/html/);
    assert.match(html.body, /reference <code>[0-9a-f]{12}<\/code>/);
    const json = await status(edge, "/.env", { cf: { country: "T1", asn: 16276 }, ip: "198.51.100.40", headers: SCANNER });
    assert.match(JSON.parse(json.body).reference, /^[0-9a-f]{12}$/);
    const bot = await status(edge, "/.env", { cf: { country: "T1", asn: 16276, botManagement: { score: 1, verifiedBot: true } }, ip: "198.51.100.41", headers: SCANNER });
    assert.equal(bot.status, 200, "a verified bot is forwarded despite its score");
  } finally {
    await edge.close();
  }
});

test("a client that solves the proof-of-work gets through and keeps its clearance until it expires; forged ones do not", async () => {
  const edge = await startEdge({ vars: { ENFORCE: "challenge", CHALLENGE_AT: "40", CHALLENGE_SIGNING_KEY: KEY, CHALLENGE_DIFFICULTY: "10", CLEARANCE_TTL_SECONDS: "2" } });
  try {
    const tor = { cf: { country: "T1" }, ip: "198.51.100.50" };
    const page = await status(edge, "/checkout?step=2", { ...tor, headers: BROWSER_HEADERS });
    assert.equal(page.status, 403);
    assert.match(page.body, /crypto\.subtle\.digest/, "the interstitial computes the puzzle in the browser");
    const first = JSON.parse((await status(edge, "/checkout", { ...tor, headers: JSON_ACCEPT })).body);
    const { token, difficulty, verify } = first.challenge;
    assert.equal(difficulty, 10);
    const counter = solve(token, difficulty);
    // A wrong answer and a token for another client are refused.
    let bad = counter + 1;
    while (works(token, bad, difficulty)) bad++;
    const wrong = await edge.send(verify, { ...tor, method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token, counter: bad }) });
    assert.equal(wrong.status, 403);
    assert.equal((await wrong.json()).error, "challenge_failed");
    const other = await edge.send(verify, { cf: tor.cf, ip: "198.51.100.51", method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token, counter }) });
    assert.equal(other.status, 403, "token bound to the client");
    await other.arrayBuffer();
    // The form post the page makes: 303 back to the page, with the cookie.
    const form = await edge.send(verify, { ...tor, method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: `token=${token}&counter=${counter}&return=%2Fcheckout%3Fstep%3D2` });
    assert.equal(form.status, 303);
    assert.equal(form.headers.get("location"), "/checkout?step=2");
    const setCookie = form.headers.get("set-cookie");
    assert.match(setCookie, /^ei_clear=\d+\.\d+\.[0-9a-f]{64}; Path=\/; Max-Age=2; HttpOnly; Secure; SameSite=Lax$/);
    await form.arrayBuffer();
    // A solution is accepted once: the same token and counter again are refused.
    const replay = await edge.send(verify, { ...tor, method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token, counter }) });
    assert.equal(replay.status, 403, "a solved token is spent");
    assert.match((await replay.json()).message, /already used/);
    // `return` values a browser would resolve to another host send it to "/" instead
    // (tab, newline and CR are removed by URL parsers; `\` reads as `/`).
    const hostile = ["/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "//evil.example", "/\\evil.example",
      "https://evil.example/", "javascript:alert(1)", "/.//evil.example"];
    for (const ret of hostile) {
      const t = JSON.parse((await status(edge, "/checkout", { ...tor, headers: JSON_ACCEPT })).body).challenge.token;
      const r = await edge.send(verify, { ...tor, method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ token: t, counter: String(solve(t, difficulty)), return: ret }).toString() });
      assert.equal(r.status, 303, JSON.stringify(ret));
      assert.equal(r.headers.get("location"), "/", JSON.stringify(ret));
      assert.equal(new URL(r.headers.get("location"), "https://edge.test/").host, "edge.test");
      await r.arrayBuffer();
    }
    const cookie = setCookie.split(";")[0];
    const through = await status(edge, "/checkout", { ...tor, headers: { ...BROWSER_HEADERS, Cookie: cookie } });
    assert.equal(through.status, 200, "cleared");
    // A browser with ~6 KB of consent and analytics cookies, ours last, is still cleared.
    const crowded = Array.from({ length: 60 }, (_, i) => `_ga_${i}=GS1.1.${"7".repeat(90)}`).join("; ") + `; ${cookie}`;
    assert.ok(crowded.length > 6000);
    assert.equal((await status(edge, "/checkout", { ...tor, headers: { ...BROWSER_HEADERS, Cookie: crowded } })).status, 200, "cleared with a long Cookie header");
    const elsewhere = await status(edge, "/checkout", { cf: tor.cf, ip: "198.51.100.52", headers: { ...JSON_ACCEPT, Cookie: cookie } });
    assert.equal(elsewhere.status, 403, "clearance bound to the subject");
    const forged = cookie.replace(/\.[0-9a-f]{4}/, ".0000");
    assert.equal((await status(edge, "/checkout", { ...tor, headers: { ...JSON_ACCEPT, Cookie: forged } })).status, 403, "forged");
    const tampered = cookie.replace(/=(\d)/, (_, d) => `=${(Number(d) + 1) % 10}`);
    assert.equal((await status(edge, "/checkout", { ...tor, headers: { ...JSON_ACCEPT, Cookie: tampered } })).status, 403, "tampered expiry");
    await new Promise((r) => setTimeout(r, 2200));
    assert.equal((await status(edge, "/checkout", { ...tor, headers: { ...JSON_ACCEPT, Cookie: cookie } })).status, 403, "expired");
  } finally {
    await edge.close();
  }
});

test("a browser challenged 12 times is still challenged, not blocked: the edge's own 403s are enforcement, not auth failures", async () => {
  // Tor alone scores 45: a challenge at 40, a block at 65. Before enforcement
  // was recorded as enforcement, ten challenge pages counted as the origin's
  // 403s (auth_failures +30, threat +20) and the browser ended up blocked.
  for (const mode of ["fast", "consistent"]) {
    const edge = await startEdge({
      vars: { RISK_MODE: mode, ENFORCE: "block", CHALLENGE_AT: "40", BLOCK_AT: "65", CHALLENGE_SIGNING_KEY: KEY, FLUSH_INTERVAL_MS: "100", CACHE_TTL_MS: "0" },
    });
    try {
      const ip = "198.51.100.57";
      const tor = { cf: { country: "T1" }, ip };
      for (let i = 0; i < 12; i++) {
        const r = await status(edge, "/checkout", { ...tor, headers: JSON_ACCEPT });
        assert.equal(r.status, 403, `${mode}: request ${i + 1}`);
        assert.equal(JSON.parse(r.body).error, "challenge_required", `${mode}: request ${i + 1}`);
      }
      const profile = await eventually(async () => {
        const { json } = await edge.api("GET", `/api/ip-intelligence/${ip}`);
        return json?.metrics?.enforcedInWindow >= 12 ? json : null;
      });
      assert.ok(profile, `${mode}: the profile recorded the challenges`);
      const after = await status(edge, "/checkout", { ...tor, headers: JSON_ACCEPT });
      assert.equal(JSON.parse(after.body).error, "challenge_required", `${mode}: still at challenge, not block`);
      assert.equal(profile.profile.enforced, 12);
      assert.equal(profile.metrics.originStatusInWindow["401_403"], 0, `${mode}: no origin 401/403 counted`);
      const reasons = profile.metrics.historyRisk.contributions.map((c) => c.reason);
      assert.ok(!reasons.includes("auth_failures"), `${mode}: ${JSON.stringify(reasons)}`);
      assert.equal(profile.profile.threatScore, 0, `${mode}: threat untouched`);
      assert.equal(profile.profile.reputationScore, 50, `${mode}: reputation untouched`);
      assert.equal(edge.origin.requests.length, 0, "nothing reached the origin");
    } finally {
      await edge.close();
    }
  }
});

test("with Turnstile configured, challenges use it: siteverify's answer decides; why it was shown is sealed", async () => {
  const origin = await startOrigin({ port: 0 });
  const edge = await startEdge({
    originUrl: origin.url,
    vars: {
      ENFORCE: "challenge", CHALLENGE_AT: "40", CHALLENGE_SIGNING_KEY: KEY,
      TURNSTILE_SITE_KEY: "1x00000000000000000000AA", TURNSTILE_SECRET: "turnstile-secret-0123456789",
      TURNSTILE_VERIFY_URL: `${origin.url}/turnstile/siteverify`,
      ANALYTICS_SLIDE_SECONDS: "1", ANALYTICS_WINDOW_SECONDS: "30", FLUSH_INTERVAL_MS: "100",
    },
  });
  try {
    const tor = { cf: { country: "T1" }, ip: "198.51.100.55" };
    const page = await status(edge, "/account", { ...tor, headers: BROWSER_HEADERS });
    assert.equal(page.status, 403);
    assert.match(page.body, /data-sitekey="1x00000000000000000000AA"/);
    assert.doesNotMatch(page.body, /crypto\.subtle/, "no proof-of-work when Turnstile is configured");
    // The page does not say why (the reasons are not told to the client).
    const why = /name="why" value="([^"]*)"/.exec(page.body)?.[1];
    assert.ok(why, "the page carries a sealed why");
    assert.doesNotMatch(page.body, /tor_exit|score\|/);
    assert.ok(!why.includes(Buffer.from("score|tor_exit").toString("hex")));
    const post = (response, ret = "%2Faccount%3Ftab%3D2", w = why) =>
      edge.send("/_intel/challenge/verify", { ...tor, method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: `cf-turnstile-response=${response}&return=${ret}&why=${encodeURIComponent(w)}` });
    const bad = await post("bad");
    assert.equal(bad.status, 403);
    await bad.arrayBuffer();
    // A genuine token solved on another site (siteverify's `hostname`) is refused.
    const elsewhere = await post("good@evil.example");
    assert.equal(elsewhere.status, 403);
    assert.equal((await elsewhere.json()).error, "challenge_failed");
    assert.equal((await status(edge, "/account", { ...tor, headers: { ...BROWSER_HEADERS, Cookie: elsewhere.headers.get("set-cookie") ?? "" } })).status, 403);
    // The same `return` filter as the proof-of-work: a tab-split `//` goes to "/".
    const sneaky = await post("good", "%2F%09%2Fevil.example");
    assert.equal(sneaky.status, 303);
    assert.equal(sneaky.headers.get("location"), "/");
    await sneaky.arrayBuffer();
    const good = await post("good");
    assert.equal(good.status, 303);
    assert.equal(good.headers.get("location"), "/account?tab=2");
    const cookie = good.headers.get("set-cookie").split(";")[0];
    await good.arrayBuffer();
    // A made-up why is counted as unknown, not as a label the client chose.
    const madeUp = await post("bad", undefined, "rule|made-up-by-the-client");
    assert.equal(madeUp.status, 403);
    await madeUp.arrayBuffer();
    let list = [];
    const counted = (l) => l.find((c) => c.trigger === "score" && c.reason === "tor_exit")?.window.solved >= 2 && l.some((c) => c.trigger === "unknown");
    for (let i = 0; i < 60 && !counted(list); i++) {
      await new Promise((r) => setTimeout(r, 250));
      list = (await edge.api("GET", "/api/intelligence/analytics")).json.challenges ?? [];
    }
    assert.ok(counted(list), JSON.stringify(list));
    assert.ok(!list.some((c) => c.rule === "made-up-by-the-client"), JSON.stringify(list));
    const sent = origin.requests.filter((r) => r.url === "/turnstile/siteverify");
    assert.equal(sent.length, 5);
    assert.match(sent[3].body, /secret=turnstile-secret-0123456789/);
    assert.ok(!sent.some((r) => /why=|tor_exit/.test(r.body)), "why is not sent to siteverify");
    assert.equal(new URLSearchParams(sent[3].body).get("remoteip"), "198.51.100.55", "the client IP goes to siteverify");
    assert.equal((await status(edge, "/account", { ...tor, headers: { ...BROWSER_HEADERS, Cookie: cookie } })).status, 200);
  } finally {
    await edge.close();
    await origin.close();
  }
});

test("list precedence from vars and from the API: allow over block, CIDR v4/v6, ASN, country", async () => {
  const edge = await startEdge({
    vars: {
      ENFORCE: "block",
      CHALLENGE_SIGNING_KEY: KEY,
      ALLOW_LIST: JSON.stringify(["203.0.113.7"]),
      BLOCK_LIST: JSON.stringify(["203.0.113.0/24", "2001:db8:bad::/48", "AS64500", "country:XX"]),
    },
  });
  try {
    const s = async (ip, cf = BERLIN) => (await status(edge, "/", { cf, ip, headers: JSON_ACCEPT })).status;
    assert.equal(await s("203.0.113.7"), 200, "allow beats block");
    assert.equal(await s("203.0.113.9"), 403, "v4 CIDR");
    assert.equal(await s("2001:db8:bad:1::5"), 403, "v6 CIDR");
    assert.equal(await s("2001:db8:bae::5"), 200, "outside the v6 CIDR");
    assert.equal(await s("198.51.100.60", { ...BERLIN, asn: 64500 }), 403, "ASN");
    assert.equal(await s("198.51.100.61", { ...BERLIN, country: "XX" }), 403, "country");
    assert.equal(await s("198.51.100.62"), 200, "on no list");
    // The API: invalid lists are refused and nothing is stored.
    let r = await edge.api("PUT", "/api/config/lists", { body: { allow: [], block: ["not-an-ip"] } });
    assert.deepEqual([r.status, r.json.error], [400, "invalid_lists"]);
    assert.match(r.json.message, /block\[0\]/);
    r = await edge.api("PUT", "/api/config/lists", { body: { allow: ["198.51.100.61"], block: ["198.51.100.62/32"] } });
    assert.equal(r.status, 200);
    r = await edge.api("GET", "/api/config/lists");
    assert.deepEqual([r.json.allow, r.json.block], [["198.51.100.61"], ["198.51.100.62/32"]]);
    assert.equal(await s("198.51.100.62"), 403, "blocked through the API");
    assert.equal(await s("198.51.100.61", { ...BERLIN, country: "XX" }), 200, "API allow beats the vars' country block");
    assert.equal((await edge.api("PUT", "/api/config/lists", { body: "{" })).status, 400);
    assert.equal((await edge.api("PUT", "/api/config/lists", { body: {}, token: null })).status, 401);
  } finally {
    await edge.close();
  }
  // Monitor mode: a listed IP is forwarded, marked blocklisted.
  const monitor = await startEdge({ vars: { BLOCK_LIST: JSON.stringify(["203.0.113.0/24"]) } });
  try {
    const r = await monitor.send("/", { cf: BERLIN, ip: "203.0.113.9", headers: BROWSER_HEADERS });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    const h = intelHeaders(monitor.origin.requests.at(-1));
    assert.equal(h["x-risk-reasons"], "blocklisted");
    assert.equal(h["x-risk-level"], "critical");
  } finally {
    await monitor.close();
  }
});

test("signed headers: the Node and Python verifiers accept real output and reject tampering and stale timestamps", async () => {
  const key = "header-signing-key-0123456789";
  const edge = await startEdge({ vars: { HEADER_SIGNING_KEY: key } });
  try {
    const r = await edge.send("/products/42?colour=blue", { cf: { ...BERLIN, city: "Zürich" }, ip: "198.51.100.70", headers: BROWSER_HEADERS });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    const got = edge.origin.requests.at(-1);
    assert.match(got.headers["x-intel-signature"], /^t=\d+,v1=[0-9a-f]{64}$/);
    const url = `http://${got.headers.host}${got.url}`;
    const args = { method: got.method, url, headers: got.headers, key };
    const python = (a) =>
      execFileSync("python3", ["examples/python/edgeintel_verify.py"], { input: JSON.stringify(a) }).toString().trim();
    assert.equal(verifyNode(args), true, "node accepts");
    assert.equal(python(args), "valid", "python accepts");
    const tampered = { ...args, headers: { ...got.headers, "x-risk-score": String(Number(got.headers["x-risk-score"]) + 1) } };
    assert.equal(verifyNode(tampered), false);
    assert.equal(python(tampered), "invalid");
    // The client address is covered: a signed verdict replayed for another client fails.
    assert.equal(got.headers["x-intel-client-ip"], "198.51.100.70");
    const otherClient = { ...args, headers: { ...got.headers, "x-intel-client-ip": "203.0.113.99" } };
    assert.equal(verifyNode(otherClient), false, "node: another client address");
    assert.equal(python(otherClient), "invalid", "python: another client address");
    const { "x-intel-client-ip": _dropped, ...withoutClient } = got.headers;
    assert.equal(verifyNode({ ...args, headers: withoutClient }), false, "node: the client address removed");
    const otherUrl = { ...args, url: url.replace("blue", "red") };
    assert.equal(verifyNode(otherUrl), false);
    const t = Number(/t=(\d+)/.exec(got.headers["x-intel-signature"])[1]);
    const stale = { ...args, now: (t + 301) * 1000 };
    assert.equal(verifyNode(stale), false, "stale");
    assert.equal(python({ ...args, now: t + 301 }), "invalid");
    assert.equal(verifyNode({ ...args, key: "wrong-key-0123456789" }), false);
    // A client cannot supply its own signature.
    const forged = await edge.send("/", { cf: BERLIN, ip: "198.51.100.71", headers: { ...BROWSER_HEADERS, "X-Intel-Signature": "t=1,v1=" + "0".repeat(64) } });
    await forged.arrayBuffer();
    assert.notEqual(edge.origin.requests.at(-1).headers["x-intel-signature"], "t=1,v1=" + "0".repeat(64));
  } finally {
    await edge.close();
  }
});

function filesUnder(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

test("with IP_HASH_KEY, no raw IP is stored anywhere (Durable Objects, KV); lookups still work", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeintel-privacy-"));
  const ips = ["198.51.100.81", "203.0.113.82", "2001:db8:77:1::5"];
  try {
    const edge = await startEdge({
      vars: { IP_HASH_KEY: "ip-hash-key-0123456789abcdef", RISK_MODE: "consistent", VISITOR_COOKIE: "sid", ANALYTICS_SLIDE_SECONDS: "1", ANALYTICS_WINDOW_SECONDS: "10", FLUSH_INTERVAL_MS: "100" },
      persistTo: dir,
    });
    try {
      for (const [i, ip] of ips.entries()) {
        for (const path of ["/", "/.env"]) {
          const r = await edge.send(path, { cf: i === 1 ? { ...BERLIN, country: "AU", latitude: "-33.86", longitude: "151.2" } : BERLIN, ip, headers: { ...BROWSER_HEADERS, Cookie: "sid=abc" } });
          await r.arrayBuffer();
        }
      }
      const ev = await edge.api("POST", "/api/events", { body: [{ ip: ips[0], eventType: "threat_detected", data: { threatScore: 80 } }] });
      assert.equal(ev.json.accepted, 1);
      const p = await edge.api("GET", `/api/ip-intelligence/${ips[0]}`);
      assert.equal(p.status, 200, "lookups hash the queried IP");
      assert.equal(p.json.profile.ip, "198.51.100.x", "masked");
      const v6 = await edge.api("GET", `/api/ip-intelligence/${encodeURIComponent(ips[2])}`);
      assert.equal(v6.json.profile.ip, "2001:db8:77::/48", "a v6 subject is shown by its /48: the /64 is one household");
      // Let the analytics tick write KV rollups.
      await new Promise((r) => setTimeout(r, 2500));
    } finally {
      await edge.close();
    }
    const files = filesUnder(dir);
    assert.ok(files.some((f) => f.endsWith(".sqlite")), "durable object storage was persisted");
    // Neither the v6 address nor its /64 (a household's line) may appear: only the /48.
    const raw = ["198.51.100.81", "203.0.113.82", "2001:db8:77:1::5", "2001:db8:77:1:"];
    for (const f of files) {
      const text = readFileSync(f).toString("latin1");
      for (const ip of raw) assert.ok(!text.includes(ip), `${ip} found in ${f}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Client fingerprints (issue 19, part 3; docs/enforcement.md "Client
// fingerprints"), in the local runtime: the origin's X-Intel carries
// fp="<16 hex>" from the connection's TLS facts in request.cf and the names of
// the request's headers. Two clients with different TLS stacks get two
// fingerprints; the same stack with another header set gets another; the
// same client again gets the same one, whatever its cookies or its address;
// a request without TLS facts gets none. The client cannot choose it by
// sending its own X-Intel (it is replaced).
// Then the reasons, from what the hub learned and published to KV: a
// fingerprint used by 24 subjects with mostly risky traffic is
// `fingerprint_swarm` for a new, innocent subject, while a browser's used by
// 24 honest subjects is not; a fingerprint seen (almost) only from curl is
// `ua_fingerprint_mismatch` for a request claiming Chrome on it, not for curl
// saying what it is, and not for a Chrome on another fingerprint.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge, BROWSER_HEADERS, eventually } from "./harness.mjs";

// Values in the shape Cloudflare sends (base64 SHA-1s, a length).
const CHROME_TLS = {
  tlsClientCiphersSha1: "kXrN3VEKDdzz2cPKTQaKzpxVTxQ=",
  tlsClientExtensionsSha1: "1eY97BUYYO8vDaTfHQywB1pcNdM=",
  tlsClientHelloLength: "508",
  tlsVersion: "TLSv1.3",
  httpProtocol: "HTTP/2",
};
const CURL_TLS = {
  tlsClientCiphersSha1: "JZtiTn8H/ntxORk+XXvU2EvNoz8=",
  tlsClientExtensionsSha1: "Y7DIC8A6G0/aXviZ8ie/xDbJb7g=",
  tlsClientHelloLength: "1605",
  tlsVersion: "TLSv1.3",
  httpProtocol: "HTTP/1.1",
};
const DE = { country: "DE", asn: 3320, continent: "EU" };
// A browser's header set: client hints a library does not send. (Node's
// fetch adds accept, accept-language, accept-encoding and sec-fetch-mode to
// every request here, so those are in every set below.)
const CHROME_HEADERS = {
  ...BROWSER_HEADERS,
  "Sec-Ch-Ua": '"Chromium";v="131", "Not_A Brand";v="24"',
  "Sec-Ch-Ua-Mobile": "?0",
  "Upgrade-Insecure-Requests": "1",
};

let edge;
before(async () => {
  edge = await startEdge({
    // The API test reads the traffic of the two tests before it: a window
    // of 120 s keeps it on a loaded machine (analytics.test.mjs lost its
    // traffic to a 20 s window in CI on 2026-12-04).
    vars: { ANALYTICS_SLIDE_SECONDS: "1", ANALYTICS_WINDOW_SECONDS: "120", FLUSH_INTERVAL_MS: "100" },
  });
});
after(async () => {
  await edge?.close();
});

/** The fp member of the X-Intel the origin got, or null when it has none. */
async function fp({ ip = "198.51.100.90", cf, headers = CHROME_HEADERS }) {
  const before = edge.origin.requests.length;
  const { intel } = await forwarded({ ip, cf, headers });
  const m = /(?:^|, )fp="([^"]*)"/.exec(intel);
  return m ? m[1] : null;
}

/** Sends one request; the X-Intel and the reasons the origin got. */
async function forwarded({ ip, cf, headers }) {
  const before = edge.origin.requests.length;
  const res = await edge.send("/page", { ip, cf, headers });
  await res.arrayBuffer();
  assert.equal(res.status, 200);
  assert.ok(edge.origin.requests.length > before, "forwarded");
  const h = edge.origin.requests.at(-1).headers;
  return { intel: h["x-intel"], reasons: h["x-risk-reasons"].split(",").filter(Boolean) };
}

/** What the hub published for the request path. */
async function published() {
  const kv = await edge.mf.getKVNamespace("METRICS");
  return JSON.parse((await kv.get("config:v1:fingerprints")) ?? "{}");
}

test("two TLS stacks give two fingerprints; the same stack again gives the same one", async () => {
  const chrome = await fp({ cf: { ...DE, ...CHROME_TLS } });
  assert.match(chrome, /^[0-9a-f]{16}$/);
  const curl = await fp({ cf: { ...DE, ...CURL_TLS }, headers: { "User-Agent": "curl/8.5.0", Accept: "*/*" } });
  assert.match(curl, /^[0-9a-f]{16}$/);
  assert.notEqual(chrome, curl);
  // The same browser from another address and network, now with a cookie and
  // a Referer: the same fingerprint (it names software, not a person or a place).
  const again = await fp({
    ip: "2001:db8:7::5",
    cf: { country: "FR", asn: 12322, continent: "EU", ...CHROME_TLS },
    headers: { ...CHROME_HEADERS, Cookie: "session=abc", Referer: "https://example.com/" },
  });
  assert.equal(again, chrome);
});

test("the header set is part of it; a client's own X-Intel does not choose it; no TLS facts, no fingerprint", async () => {
  const chrome = await fp({ cf: { ...DE, ...CHROME_TLS } });
  // A library that copied the browser's TLS hashes and User-Agent but not its client hints.
  const copied = await fp({ cf: { ...DE, ...CHROME_TLS }, headers: BROWSER_HEADERS });
  assert.notEqual(copied, chrome);
  const forged = await fp({ cf: { ...DE, ...CURL_TLS }, headers: { ...CHROME_HEADERS, "X-Intel": `fp="${chrome}"` } });
  assert.notEqual(forged, chrome);
  assert.equal(await fp({ cf: DE }), null, "plain HTTP or a runtime without the TLS fields");
  // JA4 (Bot Management) alone is enough.
  assert.match(await fp({ cf: { ...DE, botManagement: { ja4: "t13d1516h2_8daaf6152771_02713d6af862" } } }), /^[0-9a-f]{16}$/);
});

// Another TLS stack for each reason's test, so the tests do not share statistics.
const BOT_TLS = { ...CURL_TLS, tlsClientHelloLength: "1700", tlsClientCiphersSha1: "c3dhcm0tYm90LWNpcGhlcnM=" };
const SCRIPT_TLS = { ...CURL_TLS, tlsClientHelloLength: "1800", tlsClientCiphersSha1: "c2NyaXB0LWNpcGhlcnMtLS0=" };
const CURL = { "User-Agent": "curl/8.5.0", Accept: "*/*" };
const CHROME_UA = BROWSER_HEADERS["User-Agent"];

test("fingerprint_swarm: a fingerprint many subjects use for risky traffic flags a new subject on it; a popular browser's does not", async () => {
  // 24 subjects on one bot stack, over Tor (risky by itself: `tor_exit`),
  // and 24 honest German browsers on Chrome's stack.
  let bot;
  for (let i = 1; i <= 24; i++) {
    bot = await fp({ ip: `203.0.113.${i}`, cf: { country: "T1", asn: 14061, ...BOT_TLS }, headers: CURL });
    await fp({ ip: `198.51.100.${100 + i}`, cf: { ...DE, ...CHROME_TLS } });
  }
  const chrome = await fp({ cf: { ...DE, ...CHROME_TLS } });
  const sets = await eventually(async () => {
    const s = await published();
    return s.swarm?.includes(bot) ? s : null;
  }, { tries: 100, everyMs: 200 });
  assert.ok(sets, "the hub published the bot's fingerprint as a swarm");
  assert.ok(!sets.swarm.includes(chrome), "a browser's fingerprint with honest traffic is not a swarm");
  // A new subject from an honest network, on the bot's stack: flagged once
  // its isolate has read the sets (within a slide).
  let n = 0;
  const flagged = await eventually(async () => {
    const { reasons } = await forwarded({ ip: `192.0.2.${++n}`, cf: { ...DE, ...BOT_TLS }, headers: CURL });
    return reasons.includes("fingerprint_swarm") ? reasons : null;
  }, { tries: 40, everyMs: 250 });
  assert.ok(flagged, "a new subject on the swarm's fingerprint is fingerprint_swarm");
  const honest = await forwarded({ ip: "192.0.2.200", cf: { ...DE, ...CHROME_TLS }, headers: CHROME_HEADERS });
  assert.ok(!honest.reasons.includes("fingerprint_swarm"), honest.reasons.join(","));
});

test("ua_fingerprint_mismatch: a browser User-Agent on a fingerprint seen only from an HTTP library", async () => {
  let script;
  for (let i = 0; i < 40; i++) script = await fp({ ip: "198.51.100.60", cf: { ...DE, ...SCRIPT_TLS }, headers: CURL });
  const sets = await eventually(async () => {
    const s = await published();
    return s.libraryOnly?.includes(script) ? s : null;
  }, { tries: 100, everyMs: 200 });
  assert.ok(sets, "the hub published the script's fingerprint as library-only");
  // The same script now claiming Chrome (same TLS stack, same header names).
  const claim = { ...CURL, "User-Agent": CHROME_UA };
  const flagged = await eventually(async () => {
    const { reasons } = await forwarded({ ip: "198.51.100.61", cf: { ...DE, ...SCRIPT_TLS }, headers: claim });
    return reasons.includes("ua_fingerprint_mismatch") ? reasons : null;
  }, { tries: 40, everyMs: 250 });
  assert.ok(flagged, "Chrome's User-Agent on a library-only fingerprint is ua_fingerprint_mismatch");
  // curl saying it is curl, and Chrome on Chrome's stack: no mismatch.
  const curl = await forwarded({ ip: "198.51.100.62", cf: { ...DE, ...SCRIPT_TLS }, headers: CURL });
  assert.ok(!curl.reasons.includes("ua_fingerprint_mismatch"), curl.reasons.join(","));
  const chrome = await forwarded({ ip: "198.51.100.63", cf: { ...DE, ...CHROME_TLS }, headers: CHROME_HEADERS });
  assert.ok(!chrome.reasons.includes("ua_fingerprint_mismatch"), chrome.reasons.join(","));
  // The flagged requests did not count as a browser's (those sent before the
  // isolate read the flag did, within LIBRARY_PER_BROWSER): the flag stays.
  await new Promise((r) => setTimeout(r, 2500));
  assert.ok((await published()).libraryOnly.includes(script), "still library-only after the flagged requests");
});

test("the analytics API shows each fingerprint's subjects, User-Agent families, reasons and judgement, to the admin only", async () => {
  // After the two tests above: the bot's swarm over Tor and the script's
  // curl fingerprint that also claimed Chrome.
  const bot = await fp({ ip: "203.0.113.1", cf: { country: "T1", asn: 14061, ...BOT_TLS }, headers: CURL });
  const script = await fp({ ip: "198.51.100.60", cf: { ...DE, ...SCRIPT_TLS }, headers: CURL });
  const view = await eventually(async () => {
    const r = await edge.api("GET", "/api/analytics/fingerprints");
    assert.equal(r.status, 200);
    const list = r.json.fingerprints;
    const b = list.find((f) => f.id === bot);
    const s = list.find((f) => f.id === script);
    return b?.swarm && s?.libraryOnly && s.reasons.ua_fingerprint_mismatch ? { b, s, r: r.json } : null;
  }, { tries: 60, everyMs: 250 });
  assert.ok(view, "both flagged fingerprints are listed with their judgement");
  const { b, s, r } = view;
  assert.ok(b.subjects >= 20, `swarm subjects ${b.subjects}`);
  assert.ok(b.riskyShare >= 0.5, `risky share ${b.riskyShare}`);
  assert.ok(b.reasons.tor_exit >= 24, JSON.stringify(b.reasons));
  assert.ok(b.asns.includes(14061) && b.asns.includes(3320), "the bots' network and the new subjects'");
  assert.ok(s.userAgentFamilies.curl >= 40, JSON.stringify(s.userAgentFamilies));
  assert.ok(s.userAgentFamilies.chrome >= 1, "the impostor's claimed family is counted as such");
  assert.ok(s.libraryRequests >= 40 && s.libraryRequests >= 5 * s.browserRequests, JSON.stringify(s));
  assert.ok(r.distinct >= 4 && r.window.windowSeconds === 120, JSON.stringify({ distinct: r.distinct, window: r.window }));
  // Flagged first; a limit cuts the list; bad limits and no token are refused.
  assert.ok(r.fingerprints.slice(0, 2).every((f) => f.swarm || f.libraryOnly), "the flagged come first");
  const one = await edge.api("GET", "/api/analytics/fingerprints?limit=1");
  assert.equal(one.json.fingerprints.length, 1);
  for (const bad of ["0", "1001", "x", "-1"]) {
    const res = await edge.api("GET", `/api/analytics/fingerprints?limit=${bad}`);
    assert.equal(res.status, 400, bad);
    assert.equal(res.json.error, "bad_limit");
  }
  assert.equal((await edge.api("GET", "/api/analytics/fingerprints", { token: null })).status, 401);
});

// Verified crawlers and impersonators (issue 19, docs/enforcement.md), in the
// local runtime: a Googlebot from an address in the embedded snapshot of its
// published ranges is `verified_bot` (its hosting and automation reasons
// dropped) and is not challenged on score; the same User-Agent from a hosting
// network is `bot_impersonation`; the Cron Trigger refreshes the ranges from
// a local stand-in of the published file (never the internet) and a new
// address becomes verified, while a stand-in that fails or serves garbage
// leaves the last good ranges in place; robots.txt and /.well-known/ are never
// challenged, in any spelling that really is one of them.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { startEdge, BROWSER_HEADERS } from "./harness.mjs";

const KEY = "challenge-key-for-tests-0123456789";
const GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
// COUNTRY_RISK puts every US request at 80: over CHALLENGE_AT.
const US_GOOGLE = { country: "US", asn: 15169, continent: "NA" };
const US_DIGITALOCEAN = { country: "US", asn: 14061, continent: "NA" };
const CRON = "17 */6 * * *";

// The stand-in for the published googlebot.json: what it answers is set per test.
let answer = { status: 200, body: "" };
let fetches = 0;
const standIn = http.createServer((req, res) => {
  fetches++;
  res.writeHead(answer.status, { "content-type": "application/json" });
  res.end(answer.body);
});
let edge;

before(async () => {
  await new Promise((r) => standIn.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${standIn.address().port}/googlebot.json`;
  edge = await startEdge({
    vars: {
      ENFORCE: "challenge",
      CHALLENGE_AT: "70",
      CHALLENGE_SIGNING_KEY: KEY,
      CHALLENGE_DIFFICULTY: "4",
      COUNTRY_RISK: JSON.stringify({ US: 80 }),
      // Only the stand-in is fetched: every other crawler is not refreshed.
      GOOD_BOT_SOURCES: JSON.stringify({ googlebot: url, bingbot: [], applebot: [], duckduckbot: [], openai: [], perplexity: [] }),
    },
  });
});
after(async () => {
  await edge?.close();
  await new Promise((r) => standIn.close(r));
});

/**
 * One request; its status and, if forwarded, the reasons the origin got.
 * `crawlerHeaders`: only Accept and the User-Agent, as Googlebot sends (no Accept-Language).
 */
async function get(path, { ip, cf, ua = GOOGLEBOT, crawlerHeaders = false }) {
  const before = edge.origin.requests.length;
  const headers = crawlerHeaders ? { Accept: "*/*", "User-Agent": ua } : { ...BROWSER_HEADERS, Accept: "application/json", "User-Agent": ua };
  const res = await edge.send(path, { ip, cf, headers });
  await res.arrayBuffer();
  const got = edge.origin.requests.length > before ? edge.origin.requests.at(-1) : null;
  return { status: res.status, reasons: got ? got.headers["x-risk-reasons"].split(",").filter(Boolean) : null };
}

async function cron() {
  const worker = await edge.mf.getWorker();
  await worker.scheduled({ cron: CRON });
}

async function storedRanges() {
  const kv = await edge.mf.getKVNamespace("METRICS");
  const text = await kv.get("config:v1:crawlers");
  return text ? JSON.parse(text).crawlers : null;
}

test("a Googlebot from its published ranges is verified and not challenged on score; the same User-Agent from a hosting network is an impersonator", async () => {
  const real = await get("/products", { ip: "66.249.66.1", cf: US_GOOGLE });
  assert.equal(real.status, 200, "score 80 from the country, but a verified crawler is not challenged on score");
  assert.ok(real.reasons.includes("verified_bot"), real.reasons.join());
  assert.ok(!real.reasons.includes("hosting_asn") && !real.reasons.includes("bot_impersonation"), real.reasons.join());
  // A crawler is no browser: its "Mozilla/5.0 (compatible; Googlebot/2.1 ...)"
  // without Accept-Language is not missing_browser_headers once verified.
  const bare = await get("/products", { ip: "66.249.66.1", cf: US_GOOGLE, crawlerHeaders: true });
  assert.equal(bare.status, 200);
  assert.ok(bare.reasons.includes("verified_bot") && !bare.reasons.includes("missing_browser_headers"), bare.reasons.join());

  const fake = await get("/products", { ip: "159.89.10.10", cf: US_DIGITALOCEAN });
  assert.equal(fake.status, 403, "challenged");
  // robots.txt is never challenged: what the origin gets shows the reasons.
  const seen = await get("/robots.txt", { ip: "159.89.10.10", cf: US_DIGITALOCEAN, crawlerHeaders: true });
  assert.equal(seen.status, 200);
  assert.ok(["bot_impersonation", "hosting_asn", "missing_browser_headers"].every((r) => seen.reasons.includes(r)), seen.reasons.join());
  assert.ok(!seen.reasons.includes("verified_bot"));

  // A browser from the same network claims nothing: neither reason.
  const browser = await get("/robots.txt", { ip: "159.89.10.11", cf: US_DIGITALOCEAN, ua: BROWSER_HEADERS["User-Agent"] });
  assert.ok(!browser.reasons.includes("bot_impersonation") && !browser.reasons.includes("verified_bot"), browser.reasons.join());
});

test("the Cron Trigger refreshes the ranges from the published file; a failing or garbage file keeps the last good ones", async () => {
  const ip = "203.0.113.50";
  assert.ok((await get("/robots.txt", { ip, cf: US_DIGITALOCEAN })).reasons.includes("bot_impersonation"), "not in the snapshot");
  assert.equal(await storedRanges(), null, "nothing stored before the first trigger");

  answer = { status: 200, body: JSON.stringify({ creationTime: "2026-12-03T00:00:00", prefixes: [{ ipv4Prefix: "203.0.113.0/24" }, { ipv6Prefix: "2001:db8:b07::/48" }] }) };
  const before = fetches;
  await cron();
  assert.equal(fetches - before, 1, "one fetch: only the stand-in, nothing from the internet");
  assert.deepEqual((await storedRanges()).googlebot, ["2001:db8:b07::/48", "203.0.113.0/24"]);
  const now = await get("/products", { ip, cf: US_DIGITALOCEAN });
  assert.equal(now.status, 200, "verified: not challenged");
  assert.ok(now.reasons.includes("verified_bot"), now.reasons.join());
  assert.ok((await get("/products", { ip: "2001:db8:b07:1::9", cf: US_DIGITALOCEAN })).reasons?.includes("verified_bot"), "IPv6 too");
  // The refreshed file replaced the snapshot for googlebot.
  assert.ok((await get("/robots.txt", { ip: "66.249.66.1", cf: US_GOOGLE })).reasons.includes("bot_impersonation"));

  for (const bad of [{ status: 500, body: "down" }, { status: 200, body: "<html>moved</html>" }, { status: 200, body: '{"prefixes":[{"ipv4Prefix":"not-a-cidr"}]}' }, { status: 301, body: "" }]) {
    answer = bad;
    await cron();
    assert.deepEqual((await storedRanges()).googlebot, ["2001:db8:b07::/48", "203.0.113.0/24"], `kept after ${bad.status} ${bad.body}`);
    assert.ok((await get("/products", { ip, cf: US_DIGITALOCEAN })).reasons?.includes("verified_bot"));
  }
  assert.ok(!edge.runtimeLog.some((l) => /panicked/.test(l)));
});

test("robots.txt and /.well-known/ are never challenged for a high-score client; a path that only looks like one is", async () => {
  const ip = "198.51.100.77";
  // A browser in the US: 80 points from COUNTRY_RISK, over CHALLENGE_AT.
  const COUNTRY = { country: "US", asn: 3320, continent: "NA" };
  const browser = BROWSER_HEADERS["User-Agent"];
  assert.equal((await get("/products", { ip, cf: COUNTRY, ua: browser })).status, 403, "challenged elsewhere");
  for (const path of ["/robots.txt", "/.well-known/security.txt", "//.well-known//http-message-signatures-directory"]) {
    assert.equal((await get(path, { ip, cf: COUNTRY, ua: browser })).status, 200, path);
  }
  for (const path of ["/.well-known/../admin", "/.well-known/%2e%2e/admin", "/admin/robots.txt"]) {
    assert.equal((await get(path, { ip, cf: COUNTRY, ua: browser })).status, 403, path);
  }
});

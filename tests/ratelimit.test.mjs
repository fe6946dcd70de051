// Rate-limit rules (issue 18, docs/policies.md "Rate limits"), in the local
// runtime with real LimiterObjects: the limit exact across two isolates, the
// 429 with Retry-After and the RateLimit-Policy / RateLimit fields (JSON and
// HTML), keys by subject and by ASN, a dry run forwarded with `limited`, the
// quota back after the Retry-After it gave, and a limiter that fails letting
// requests through.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge, BROWSER_HEADERS } from "./harness.mjs";

const RULES = [
  { id: "login", match: { path: "/login", methods: ["POST"] }, action: "rate_limit", rateLimit: { requests: 3, periodSeconds: 60 } },
  { id: "search-dry", match: { path: "/search" }, action: "rate_limit", rateLimit: { requests: 2, periodSeconds: 60 }, dryRun: true },
  { id: "api-asn", match: { path: "/api/*" }, action: "rate_limit", rateLimit: { requests: 4, periodSeconds: 60, by: "asn" } },
  { id: "tick", match: { path: "/tick" }, action: "rate_limit", rateLimit: { requests: 1, periodSeconds: 1 } },
  { id: "vis", match: { path: "/vis" }, action: "rate_limit", rateLimit: { requests: 2, periodSeconds: 60, by: "visitor" } },
];

let edge;
before(async () => {
  edge = await startEdge({ isolates: 2, vars: { RULES: JSON.stringify(RULES), VISITOR_COOKIE: "session", SET_VISITOR_COOKIE: "true", VISITOR_SIGNING_KEY: "visitor-signing-key-0123456789" } });
});
after(async () => {
  await edge?.close();
});

/** One request; its status, headers, body, and the X-Intel the origin got (null: not forwarded). */
async function through(path, { ip = "198.51.100.30", method = "GET", asn = 3320, accept = "application/json", isolate = 0, cookie } = {}) {
  const before = edge.origin.requests.length;
  const headers = { ...BROWSER_HEADERS, Accept: accept, ...(cookie ? { Cookie: cookie } : {}) };
  const res = await edge.send(path, { ip, method, isolate, cf: { country: "DE", asn }, headers });
  const body = await res.text();
  const forwarded = edge.origin.requests.length > before;
  return { status: res.status, headers: res.headers, body, intel: forwarded ? edge.origin.requests.at(-1).headers["x-intel"] : null };
}

test("a subject's limit holds exactly across two isolates; the 429 carries Retry-After and the RateLimit fields", async () => {
  const answers = [];
  for (let i = 0; i < 6; i++) answers.push(await through("/login", { method: "POST", isolate: i % 2 }));
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 429, 429, 429], "3 allowed in all, whichever isolate");
  for (const a of answers.slice(0, 3)) assert.match(a.intel, /, rule="login", action=rate_limit$/);
  const refused = answers[3];
  assert.equal(refused.intel, null, "not forwarded");
  const body = JSON.parse(refused.body);
  assert.equal(body.error, "rate_limited");
  const retry = Number(refused.headers.get("retry-after"));
  assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 120, `Retry-After ${retry}`);
  assert.equal(body.retryAfter, retry);
  assert.equal(refused.headers.get("ratelimit-policy"), '"login";q=3;w=60');
  assert.equal(refused.headers.get("ratelimit"), `"login";r=0;t=${retry}`);
  assert.equal(refused.headers.get("cache-control"), "no-store");

  const html = await through("/login", { method: "POST", accept: "text/html" });
  assert.equal(html.status, 429);
  assert.match(html.headers.get("content-type"), /^text\/html/);
  assert.match(html.body, /Too many requests/);

  // Another subject has its own quota; the rule's other methods are not counted.
  assert.equal((await through("/login", { method: "POST", ip: "198.51.100.31" })).status, 200);
  assert.equal((await through("/login", { method: "GET" })).status, 200);
});

test("by asn: every address of the network shares one quota", async () => {
  const statuses = [];
  for (let i = 0; i < 6; i++) statuses.push((await through("/api/items", { ip: `203.0.113.${40 + i}`, asn: 64500, isolate: i % 2 })).status);
  assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429]);
  assert.equal((await through("/api/items", { ip: "203.0.113.60", asn: 64501 })).status, 200, "another network");
});

test("by visitor: each visitor behind one address has its own quota; requests without the cookie share the address's", async () => {
  const ip = "198.51.100.36";
  const statuses = async (cookie, n) => {
    const out = [];
    for (let i = 0; i < n; i++) out.push((await through("/vis", { ip, cookie, isolate: i % 2 })).status);
    return out;
  };
  assert.deepEqual(await statuses("session=alice", 3), [200, 200, 429]);
  assert.deepEqual(await statuses("session=bob", 3), [200, 200, 429]);
  // Each of these is given a new signed ei_vid: that is not a visitor yet.
  assert.deepEqual(await statuses(undefined, 3), [200, 200, 429], "no cookie: counted by the subject, not as a new visitor each time");
});

test("a dry run forwards every request and tells the origin which would have been limited", async () => {
  const answers = [];
  for (let i = 0; i < 4; i++) answers.push(await through("/search", { ip: "198.51.100.32" }));
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200]);
  assert.match(answers[1].intel, /, rule="search-dry", action=rate_limit, dry_run$/);
  assert.match(answers[2].intel, /, rule="search-dry", action=rate_limit, limited, dry_run$/);
  assert.match(answers[3].intel, /, limited, dry_run$/);
  assert.equal(answers[2].headers.get("ratelimit"), null, "the client sees nothing of a dry run");
});

test("the quota is back after the Retry-After the 429 gave", async () => {
  assert.equal((await through("/tick", { ip: "198.51.100.33" })).status, 200);
  const refused = await through("/tick", { ip: "198.51.100.33", isolate: 1 });
  assert.equal(refused.status, 429);
  const retry = Number(refused.headers.get("retry-after"));
  assert.ok(retry >= 1 && retry <= 2, `a 1-per-second limit asks for at most 2 s, not ${retry}`);
  // The refusal was remembered by isolate 1 until then: still refused there before it ends.
  assert.equal((await through("/tick", { ip: "198.51.100.33", isolate: 1 })).status, 429);
  await new Promise((r) => setTimeout(r, retry * 1000 + 100));
  assert.equal((await through("/tick", { ip: "198.51.100.33", isolate: 1 })).status, 200);
});

test("rate_limit rules through the API: rateLimit required with the action and refused without it", async () => {
  const missing = await edge.api("PUT", "/api/config/rules", { body: { rules: [{ id: "x", action: "rate_limit" }] } });
  assert.equal(missing.status, 400);
  assert.deepEqual(missing.json.errors.map((e) => e.field), ["rules[0].rateLimit"]);
  const stray = await edge.api("PUT", "/api/config/rules", { body: { rules: [{ id: "x", action: "block", rateLimit: { requests: 1, periodSeconds: 1 } }] } });
  assert.equal(stray.status, 400);
  const bad = await edge.api("PUT", "/api/config/rules", { body: { rules: [{ id: "x", action: "rate_limit", rateLimit: { requests: 0, periodSeconds: 90000, by: "country" } }] } });
  assert.deepEqual(bad.json.errors.map((e) => e.field).sort(), ["rules[0].rateLimit.by", "rules[0].rateLimit.periodSeconds", "rules[0].rateLimit.requests"]);
  const ok = await edge.api("PUT", "/api/config/rules", { body: { rules: [{ id: "stored-rl", match: { path: "/stored" }, action: "rate_limit", rateLimit: { requests: 1, periodSeconds: 60 } }] } });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.json.rules[0].rateLimit, { requests: 1, periodSeconds: 60, by: "subject" });
  assert.equal((await through("/stored", { ip: "198.51.100.34" })).status, 200);
  assert.equal((await through("/stored", { ip: "198.51.100.34" })).status, 429);
  assert.equal((await edge.api("PUT", "/api/config/rules", { body: { rules: [] } })).status, 200);
});

test("a limiter that fails lets the request through (fail open), with the rule named", async () => {
  const broken = await startEdge({ limitsFault: "throw", vars: { RULES: JSON.stringify(RULES) } });
  try {
    for (let i = 0; i < 5; i++) {
      const res = await broken.send("/login", { method: "POST", ip: "198.51.100.35", cf: { country: "DE", asn: 3320 }, headers: { ...BROWSER_HEADERS, Accept: "application/json" } });
      await res.text();
      assert.equal(res.status, 200);
    }
    assert.equal(broken.origin.requests.length, 5);
    assert.match(broken.origin.requests.at(-1).headers["x-intel"], /rule="login", action=rate_limit$/);
  } finally {
    await broken.close();
  }
});

test("each rule's hits reach the analytics API and /metrics, dry runs apart (after the tests above)", async () => {
  // The tests above sent: login 8 decided (4 answered 429), search-dry 4 in a dry run (2 would have been limited).
  const want = (r) => r?.sinceStart.hits === 8 && r.sinceStart.enforced === 4;
  let rules = [];
  for (let i = 0; i < 60 && !want(rules.find((r) => r.id === "login")); i++) {
    await new Promise((r) => setTimeout(r, 500));
    rules = (await edge.api("GET", "/api/intelligence/analytics")).json.rules ?? [];
  }
  const login = rules.find((r) => r.id === "login");
  assert.deepEqual(login, {
    id: "login",
    action: "rate_limit",
    sinceStart: { hits: 8, enforced: 4, dryRunHits: 0, dryRunWouldEnforce: 0 },
    window: { hits: 8, enforced: 4, dryRunHits: 0, dryRunWouldEnforce: 0 },
  });
  const dry = rules.find((r) => r.id === "search-dry");
  assert.deepEqual(dry.sinceStart, { hits: 0, enforced: 0, dryRunHits: 4, dryRunWouldEnforce: 2 });
  const text = (await edge.api("GET", "/metrics")).text;
  assert.match(text, /^edgeintel_rule_hits\{rule="login",action="rate_limit",dry_run="false"\} 8$/m);
  assert.match(text, /^edgeintel_rule_enforced\{rule="login",action="rate_limit",dry_run="false"\} 4$/m);
  assert.match(text, /^edgeintel_rule_hits\{rule="search-dry",action="rate_limit",dry_run="true"\} 4$/m);
  assert.match(text, /^edgeintel_rule_enforced\{rule="search-dry",action="rate_limit",dry_run="true"\} 2$/m);
});

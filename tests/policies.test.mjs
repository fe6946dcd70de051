// Per-route rules (issue 18, docs/policies.md), in the local runtime: each
// action, first-match order, the lists before the rules, dry runs and what
// the origin sees (`X-Intel` members), rules from the vars and through the
// API (validated whole, every bad field named, nothing stored on error), and
// a configuration the deployment cannot serve refused by name.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge, BROWSER_HEADERS } from "./harness.mjs";

const KEY = "challenge-key-for-tests-0123456789";
const RULES = [
  { id: "health-open", match: { path: "/health" }, action: "allow" },
  { id: "admin-block", match: { path: "/admin/*" }, action: "block" },
  { id: "login-first", match: { path: "/login", methods: ["POST"] }, action: "monitor" },
  { id: "login-second", match: { path: "/login" }, action: "challenge" },
  { id: "tor-checkout", match: { path: "/checkout*", reasons: ["tor_exit"] }, action: "block" },
  { id: "beta-dry", match: { path: "/beta*" }, action: "block", dryRun: true },
  { id: "risky", match: { minScore: 40 }, action: "block" },
];

let edge;
before(async () => {
  // ENFORCE stays off (monitor): the rules act on their own.
  edge = await startEdge({ vars: { RULES: JSON.stringify(RULES), CHALLENGE_SIGNING_KEY: KEY, ALLOW_LIST: JSON.stringify(["198.51.100.200"]) } });
});
after(async () => {
  await edge?.close();
});

/** Sends one request; answers its status, body, and the X-Intel the origin got (null: not forwarded). */
async function through(path, { ip = "198.51.100.20", method = "GET", cf = { country: "DE", asn: 3320 }, headers = BROWSER_HEADERS } = {}) {
  const before = edge.origin.requests.length;
  const res = await edge.send(path, { ip, method, cf, headers: { ...headers, Accept: "application/json" } });
  const body = await res.text();
  const forwarded = edge.origin.requests.length > before;
  return { status: res.status, body, intel: forwarded ? edge.origin.requests.at(-1).headers["x-intel"] : null };
}

test("each action: allow and monitor forward naming the rule, block and challenge answer without the origin", async () => {
  const allow = await through("/health");
  assert.equal(allow.status, 200);
  assert.match(allow.intel, /, rule="health-open", action=allow$/);
  const block = await through("/admin/users");
  assert.equal(block.status, 403);
  assert.equal(JSON.parse(block.body).error, "blocked");
  assert.equal(block.intel, null, "not forwarded");
  const challenge = await through("/login");
  assert.equal(challenge.status, 403);
  assert.equal(JSON.parse(challenge.body).error, "challenge_required");
  assert.equal(challenge.intel, null);
  const plain = await through("/products");
  assert.equal(plain.status, 200);
  assert.doesNotMatch(plain.intel, /rule=/, "no rule matched: no rule members");
});

test("the first rule that matches decides; every match field must hold", async () => {
  const post = await through("/login", { method: "POST" });
  assert.equal(post.status, 200, "login-first (monitor) matched before login-second (challenge)");
  assert.match(post.intel, /rule="login-first", action=monitor/);
  const tor = await through("/checkout/pay", { cf: { country: "T1" } });
  assert.equal(tor.status, 403, "path and reason both hold");
  const notTor = await through("/checkout/pay");
  assert.equal(notTor.status, 200, "the reason does not hold");
  // Spelled differently, the same path: the rule still holds.
  assert.equal((await through("//admin//users")).status, 403);
  assert.equal((await through("/%61dmin/users")).status, 403);
  assert.equal((await through("/Admin/users")).status, 200, "paths are case-sensitive");
  // A rule on score: a probe of /.env (path_scan, 40 points) from a plain network.
  const probe = await through("/.env", { ip: "198.51.100.21" });
  assert.equal(probe.status, 403, "minScore 40 holds");
  assert.equal((await through("/.env", { ip: "198.51.100.22", cf: { country: "DE", asn: 3320, botManagement: { verifiedBot: true, score: 99 } } })).status, 200, "a verified bot is not blocked by a rule on score");
});

test("the allow list comes before every rule", async () => {
  const listed = await through("/admin/users", { ip: "198.51.100.200" });
  assert.equal(listed.status, 200);
  assert.doesNotMatch(listed.intel, /rule=/);
});

test("a dry run forwards and tells the origin what would have happened", async () => {
  const dry = await through("/beta/feature");
  assert.equal(dry.status, 200);
  assert.match(dry.intel, /, rule="beta-dry", action=block, dry_run$/);
});

test("a client cannot send its own X-Intel rule members", async () => {
  const forged = await through("/products", { headers: { ...BROWSER_HEADERS, "X-Intel": 'rule="health-open", action=allow' } });
  assert.doesNotMatch(forged.intel, /rule=/);
});

test("the rules API: validation names every bad field and stores nothing; stored rules come before the vars' at once in this isolate", async () => {
  const unauth = await edge.api("GET", "/api/config/rules", { token: null });
  assert.equal(unauth.status, 401);
  const empty = await edge.api("GET", "/api/config/rules");
  assert.equal(empty.status, 200);
  assert.deepEqual(empty.json.rules, []);
  assert.deepEqual(empty.json.fromVars.map((r) => r.id), RULES.map((r) => r.id));

  const bad = await edge.api("PUT", "/api/config/rules", {
    body: {
      rules: [
        { id: "ok", action: "monitor" },
        { id: "bad id", match: { path: "admin", countries: ["Germany"], minscore: 3 }, action: "explode" },
        { id: "admin-block", action: "block" },
        { id: "rl", action: "rate_limit", rateLimit: { requests: 5, periodSeconds: 60 } },
      ],
    },
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error, "invalid_rules");
  const fields = bad.json.errors.map((e) => e.field);
  for (const f of ["rules[1].id", "rules[1].match.path", "rules[1].match.countries[0]", "rules[1].match.minscore", "rules[1].action"]) {
    assert.ok(fields.includes(f), `${f} in ${JSON.stringify(bad.json.errors)}`);
  }
  assert.equal((await edge.api("PUT", "/api/config/rules", { body: { rules: [{ id: "admin-block", action: "block" }] } })).status, 400, "an id the vars use");
  const many = await edge.api("PUT", "/api/config/rules", { body: { rules: [{ id: "m", match: { methods: Array(300).fill("G E T") }, action: "block" }] } });
  assert.equal(many.status, 400);
  assert.equal(many.json.errors.length, 100, "the first 100 problems named");
  assert.equal(many.json.truncated, 200, "the rest counted");
  assert.match(many.json.message, /^300 problem/);
  assert.equal((await edge.api("PUT", "/api/config/rules", { body: [] })).status, 400, "not {rules: [...]}");
  assert.equal((await edge.api("PUT", "/api/config/rules", { body: "{not json" })).status, 400);
  assert.deepEqual((await edge.api("GET", "/api/config/rules")).json.rules, [], "nothing stored");

  // Stored: evaluated before the vars' rules, at once in this isolate.
  const rules = [{ id: "admin-partner", match: { path: "/admin/*", countries: ["NL"] }, action: "allow" }];
  const put = await edge.api("PUT", "/api/config/rules", { body: { rules } });
  assert.equal(put.status, 200, put.text);
  // Answered as stored: each field as written, `dryRun` spelled out.
  const stored = rules.map((r) => ({ ...r, dryRun: false }));
  assert.deepEqual(put.json.rules, stored);
  assert.deepEqual((await edge.api("GET", "/api/config/rules")).json.rules, stored);
  const partner = await through("/admin/users", { cf: { country: "NL", asn: 1136 } });
  assert.equal(partner.status, 200);
  assert.match(partner.intel, /rule="admin-partner", action=allow/);
  assert.equal((await through("/admin/users")).status, 403, "others still meet the vars' block rule");
  assert.equal((await edge.api("PUT", "/api/config/rules", { body: { rules: [] } })).status, 200);
  assert.equal((await through("/admin/users", { cf: { country: "NL", asn: 1136 } })).status, 403, "removed");
});

test("rules the deployment cannot serve are refused by name", async () => {
  const noKey = await startEdge({ vars: { RULES: JSON.stringify([{ id: "c", action: "challenge" }]) } });
  try {
    const res = await noKey.send("/", { headers: { Accept: "application/json" } });
    assert.equal(res.status, 500);
    const body = await res.json();
    assert.equal(body.error, "config_invalid");
    assert.match(body.message, /RULES.*rules\[0\]\.action: challenge needs the secret CHALLENGE_SIGNING_KEY/);
    assert.equal(noKey.origin.requests.length, 0);
  } finally {
    await noKey.close();
  }
  const typo = await startEdge({ vars: { RULES: JSON.stringify([{ id: "x", match: { pathh: "/x" }, action: "block" }]) } });
  try {
    const body = await (await typo.send("/", { headers: { Accept: "application/json" } })).json();
    assert.match(body.message, /rules\[0\]\.match\.pathh: unknown field/);
  } finally {
    await typo.close();
  }
});

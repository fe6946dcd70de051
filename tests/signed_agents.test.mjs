// Signed agents (issue 19, docs/enforcement.md "Signed agents"), in the local
// runtime: HTTP Message Signatures (RFC 9421) as Web Bot Auth uses them,
// signed here with an Ed25519 key from node:crypto and verified by the
// Worker with the key directory a local server publishes on the agent's own
// origin. The first signed request is treated as unsigned (the directory is
// fetched after it, never on the request path); then a valid signature gets
// `signed_agent` and is not challenged on score; a tampered, expired or
// replayed one, or one naming an origin whose directory lacks the key, is not.
// Only agents in SIGNED_AGENTS_TRUSTED are exempt: another agent with a valid
// signature gets the `signed_agent` label and is scored and challenged like
// anyone (anyone can publish a key directory). Loopback agent origins are
// verified only because SIGNED_AGENTS lists them (never under `any`).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge, eventually } from "./harness.mjs";
import { newAgentKey, publicJwk, signedHeaders, startKeyDirectory } from "../scripts/web-bot-auth.mjs";

const KEY = "challenge-key-for-tests-0123456789";
const CF = { country: "US", asn: 14061, continent: "NA" }; // COUNTRY_RISK 80 + hosting: challenged unless exempt
const UA = "ExampleAgent/1.0 (+https://agent.example/bot)";

const agentKey = newAgentKey();
const otherKey = newAgentKey();

let edge, agent, other;
before(async () => {
  agent = await startKeyDirectory([publicJwk(agentKey)]);
  other = await startKeyDirectory([publicJwk(otherKey)]);
  edge = await startEdge({
    vars: {
      ENFORCE: "challenge", CHALLENGE_AT: "70", CHALLENGE_SIGNING_KEY: KEY, COUNTRY_RISK: JSON.stringify({ US: 80 }),
      SIGNED_AGENTS: JSON.stringify([agent.origin, other.origin]),
      SIGNED_AGENTS_TRUSTED: JSON.stringify([agent.origin]),
    },
  });
});
after(async () => {
  await edge?.close();
  await agent?.close();
  await other?.close();
});

/**
 * Headers of a request signed as Web Bot Auth (scripts/web-bot-auth.mjs):
 * `@authority` and `signature-agent` covered (and `@path` when `path` is given).
 */
function signed({ key = agentKey, agentOrigin = agent.origin, authority = "edge.test", ...rest } = {}) {
  return { "User-Agent": UA, Accept: "application/json", ...signedHeaders({ key, agentOrigin, authority, ...rest }) };
}

async function get(path, headers, ip = "159.89.20.1", cf = CF) {
  const before = edge.origin.requests.length;
  const res = await edge.send(path, { ip, cf, headers });
  await res.arrayBuffer();
  const got = edge.origin.requests.length > before ? edge.origin.requests.at(-1) : null;
  return { status: res.status, reasons: got ? got.headers["x-risk-reasons"].split(",") : null };
}

test("the first signed request fetches the agent's directory after the response; then a valid signature is signed_agent and not challenged on score", async () => {
  const first = await get("/products", signed());
  assert.equal(first.status, 403, "directory not held yet: unsigned, challenged");
  assert.ok(await eventually(() => agent.hits.count >= 1), "the directory was fetched from the agent's origin");
  let ok;
  for (let i = 0; i < 40; i++) {
    ok = await get("/products", signed());
    if (ok.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(ok.status, 200, "a valid signature: not challenged at score 100");
  assert.ok(ok.reasons.includes("signed_agent"), ok.reasons.join());
  assert.ok(!ok.reasons.includes("hosting_asn"), "a signed agent's hosting is expected");
  // Covering the path too.
  assert.equal((await get("/docs/a", signed({ path: "/docs/a" }))).status, 200);
});

test("tampered, expired, replayed and other-origin signatures are not signed agents", async () => {
  // A request signed for another path or authority, or whose signature bytes changed.
  assert.equal((await get("/admin", signed({ path: "/docs/a" }))).status, 403, "signed for another path");
  assert.equal((await get("/products", signed({ authority: "other.test" }))).status, 403, "signed for another authority");
  const h = signed();
  const bytes = Buffer.from(h.Signature.slice(6, -1), "base64");
  bytes[0] ^= 1;
  assert.equal((await get("/products", { ...h, Signature: `sig1=:${bytes.toString("base64")}:` })).status, 403, "a changed signature");
  // Expired; created in the future; a window over SIGNED_AGENT_MAX_WINDOW_SECONDS.
  const now = Math.floor(Date.now() / 1000);
  assert.equal((await get("/products", signed({ created: now - 120, expires: now - 60 }))).status, 403, "expired");
  assert.equal((await get("/products", signed({ created: now + 600, expires: now + 660 }))).status, 403, "created in the future");
  assert.equal((await get("/products", signed({ created: now - 5, expires: now + 7200 }))).status, 403, "valid for two hours");
  // A replayed nonce: the same headers twice.
  const once = signed();
  assert.equal((await get("/products", once)).status, 200);
  assert.equal((await get("/products", once)).status, 403, "the same nonce again");
  // Signed with the agent's key but naming another origin: that origin's directory is used, which lacks the key.
  const before = other.hits.count;
  assert.equal((await get("/products", signed({ agentOrigin: other.origin }))).status, 403);
  assert.ok(await eventually(() => other.hits.count > before), "only the named origin's directory is fetched");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await get("/products", signed({ agentOrigin: other.origin }))).status, 403, "its directory lacks the key");
  // The other origin's own key verifies there, but that agent is not
  // trusted: `signed_agent` is a label, its hosting network still counts
  // (from a country without extra risk: forwarded), and at score 100 it is
  // challenged like anyone.
  const DE = { country: "DE", asn: 14061, continent: "EU" };
  const labelled = await eventually(async () => {
    const r = await get("/products", signed({ key: otherKey, agentOrigin: other.origin }), "159.89.20.2", DE);
    return r.reasons?.includes("signed_agent") ? r : null;
  }, { tries: 30, everyMs: 100 });
  assert.ok(labelled, "a verified, untrusted agent gets the signed_agent label");
  assert.ok(labelled.reasons.includes("hosting_asn"), labelled.reasons.join());
  assert.equal((await get("/products", signed({ key: otherKey, agentOrigin: other.origin }))).status, 403, "an untrusted agent is not exempt");
  // No signature headers at all: nothing changes.
  assert.equal((await get("/products", { "User-Agent": UA, Accept: "application/json" })).status, 403);
  assert.ok(!edge.runtimeLog.some((l) => /panicked/.test(l)));
});

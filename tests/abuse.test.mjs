// What an unauthenticated client can make the Worker spend or do (issue 15):
// body limits on every body read, guessing the admin token, block-listed
// clients under the prefix, the dashboard's security headers. Against the
// built Worker in the local runtime.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { startEdge, asciiJson, eventually, solve, ADMIN_TOKEN, BASE } from "./harness.mjs";

const KEY = "challenge-key-for-tests-0123456789";
const CF = { country: "DE", asn: 3320, colo: "FRA" };
const BLOCKED_IP = "198.51.100.99";

let edge;
before(async () => {
  edge = await startEdge({
    vars: { ENFORCE: "challenge", CHALLENGE_AT: "40", CHALLENGE_SIGNING_KEY: KEY, CHALLENGE_DIFFICULTY: "1", BLOCK_LIST: JSON.stringify([BLOCKED_IP]) },
  });
});
after(async () => {
  await edge?.close();
});

/**
 * A body sent as a stream with no Content-Length (chunked): one chunk per
 * entry of `sizes`, then, with `hang`, a stream that stays open until the test
 * ends it. The tests send one byte past the limit and then nothing more: a
 * client still writing when the server answers and closes the connection gets
 * ECONNRESET on its write before it reads the answer (an HTTP/1.1 race of the
 * test client, not of the Worker).
 */
function streamed(sizes, { hang = false } = {}) {
  let sent = 0;
  let end;
  const ended = new Promise((r) => (end = r));
  const body = new ReadableStream({
    async pull(controller) {
      if (sent < sizes.length) {
        controller.enqueue(new Uint8Array(sizes[sent++]).fill(0x20));
        return;
      }
      if (hang) await ended;
      controller.close();
    },
  });
  return { body, end };
}

/** POSTs `body` (string or stream) to `path` from `ip`, as the runtime would receive it. */
function post(path, body, { headers = {}, ip = "198.51.100.70" } = {}) {
  const h = new Headers(headers);
  h.set("CF-Connecting-IP", ip);
  h.set("MF-CF-Blob", asciiJson({ clientAcceptEncoding: "", ...CF }));
  return edge.mf.dispatchFetch(BASE + path, { method: "POST", headers: h, body, duplex: "half", redirect: "manual" });
}

/**
 * Sends only the head of a request that declares `length` body bytes and
 * never sends them: the answer can only come before the body is read.
 * Resolves with { status, body } or rejects after 10 s.
 */
function declaredOnly(path, length, headers = {}, method = "POST") {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, edge.url), {
      method,
      headers: { "CF-Connecting-IP": "198.51.100.73", "Content-Length": String(length), ...headers },
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`${path}: no answer before the declared body was sent`));
    }, 10_000);
    req.on("response", (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode, body });
      });
    });
    req.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.flushHeaders();
  });
}

/** A challenge token for `ip` and a counter that solves it at the difficulty
 *  the challenge states (it grows with the score above CHALLENGE_AT). */
async function challengeToken(ip) {
  const res = await edge.send("/", { cf: { country: "T1" }, ip, headers: { Accept: "application/json" } });
  assert.equal(res.status, 403);
  const { token, difficulty } = (await res.json()).challenge;
  return { token, counter: solve(token, difficulty) };
}

test("challenge verify: a declared-oversize body gets 413 before it is read", async () => {
  // 100 MB declared, not one byte sent.
  const res = await declaredOnly("/_intel/challenge/verify", 100_000_000, { "Content-Type": "application/x-www-form-urlencoded" });
  assert.equal(res.status, 413);
  assert.equal(JSON.parse(res.body).error, "payload_too_large");
  // One byte over the limit, sent: refused as well.
  const sent = await post("/_intel/challenge/verify", "x".repeat(8 * 1024 + 1), { headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  assert.equal(sent.status, 413);
  assert.equal((await sent.json()).error, "payload_too_large");
});

test("challenge verify: a chunked body over 8 KiB gets 413 without waiting for the rest", async () => {
  // 8 KiB + 1 byte sent, then the stream stays open: the answer must not wait for its end.
  const s = streamed([...Array(8).fill(1024), 1], { hang: true });
  const res = await Promise.race([
    post("/_intel/challenge/verify", s.body, { headers: { "Content-Type": "application/x-www-form-urlencoded" } }),
    new Promise((_, reject) => setTimeout(() => reject(new Error("no answer while the body was still open")), 10_000)),
  ]);
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error, "payload_too_large");
  s.end();
});

test("challenge verify: a body of exactly 8 KiB is read and verified", async () => {
  const ip = "198.51.100.71";
  const { token, counter } = await challengeToken(ip);
  let form = `token=${token}&counter=${counter}&return=%2Fhere&pad=`;
  form += "p".repeat(8 * 1024 - form.length);
  assert.equal(form.length, 8 * 1024);
  const res = await post("/_intel/challenge/verify", form, { ip, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  assert.equal(res.status, 303, await res.clone().text());
  assert.equal(res.headers.get("location"), "/here");
  await res.arrayBuffer();
  // The same answer streamed without a length is read as well.
  const { token: token2, counter: c2 } = await challengeToken(ip);
  const text = `token=${token2}&counter=${c2}&return=%2Fthere`;
  const bytes = new TextEncoder().encode(text);
  const stream = new ReadableStream({
    start(controller) {
      controller.enqueue(bytes.slice(0, 10));
      controller.enqueue(bytes.slice(10));
      controller.close();
    },
  });
  const chunked = await post("/_intel/challenge/verify", stream, { ip, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  assert.equal(chunked.status, 303, await chunked.clone().text());
  assert.equal(chunked.headers.get("location"), "/there");
  await chunked.arrayBuffer();
});

test("API bodies: declared and chunked bodies over MAX_BODY_BYTES get 413; one at the limit is read", async () => {
  const auth = { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" };
  const limit = 1024 * 1024;
  for (const path of ["/_intel/api/events", "/_intel/api/config/lists"]) {
    const method = path.endsWith("lists") ? "PUT" : "POST";
    const send = (body) => {
      const h = new Headers(auth);
      h.set("CF-Connecting-IP", "198.51.100.72");
      return edge.mf.dispatchFetch(BASE + path, { method, headers: h, body, duplex: "half" });
    };
    const declared = await declaredOnly(path, 100_000_000, auth, method);
    assert.equal(declared.status, 413, path);
    assert.equal(JSON.parse(declared.body).error, "payload_too_large");
    const s = streamed([...Array(16).fill(64 * 1024), 1], { hang: true });
    const chunked = await Promise.race([
      send(s.body),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`${path}: no answer while the body was still open`)), 10_000)),
    ]);
    assert.equal(chunked.status, 413, path);
    assert.equal((await chunked.json()).error, "payload_too_large");
    s.end();
  }
  // Exactly at the limit: read and parsed (an empty list of events, padded with spaces).
  const atLimit = "[" + " ".repeat(limit - 2) + "]";
  const h = new Headers(auth);
  const ok = await edge.mf.dispatchFetch(BASE + "/_intel/api/events", { method: "POST", headers: h, body: atLimit });
  assert.equal(ok.status, 202, await ok.clone().text());
  assert.equal((await ok.json()).accepted, 0);
});

/** An API call from `ip` with `token`. */
async function apiFrom(ip, path, token, { method = "GET" } = {}) {
  const res = await edge.send(`/_intel${path}`, { cf: CF, ip, method, headers: { Authorization: `Bearer ${token}`, Accept: "application/json" } });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, headers: res.headers };
}

test("admin token guessing: the 11th failure within a minute gets 429 with Retry-After; other clients are unaffected; the profile shows auth_failures", async () => {
  const guesser = "203.0.113.40";
  for (let i = 1; i <= 10; i++) {
    const r = await apiFrom(guesser, "/api/config/lists", `wrong-token-guess-${i}`);
    assert.equal(r.status, 401, `guess ${i}`);
    assert.equal(r.headers.get("retry-after"), null);
  }
  const eleventh = await apiFrom(guesser, "/api/config/lists", "wrong-token-guess-11");
  assert.equal(eleventh.status, 429);
  assert.equal(eleventh.json.error, "too_many_failed_authentications");
  const wait = Number(eleventh.headers.get("retry-after"));
  assert.ok(Number.isInteger(wait) && wait >= 1 && wait <= 60, `Retry-After ${eleventh.headers.get("retry-after")}`);
  // While locked, even the right token is not checked (a guess then learns nothing),
  // on every authenticated route, streams included.
  assert.equal((await apiFrom(guesser, "/api/config/lists", ADMIN_TOKEN)).status, 429);
  assert.equal((await apiFrom(guesser, "/metrics", ADMIN_TOKEN)).status, 429);
  const ws = await edge.send("/_intel/api/intelligence/stream?ticket=guess", { cf: CF, ip: guesser, headers: { Upgrade: "websocket" } });
  assert.equal(ws.status, 429);
  await ws.arrayBuffer();
  // A request with no credential at all is not a guess: a plain 401, never counted or refused.
  const bare = await edge.send("/_intel/api/config/lists", { cf: CF, ip: guesser, headers: { Accept: "application/json" } });
  assert.equal(bare.status, 401);
  await bare.arrayBuffer();
  for (let i = 0; i < 12; i++) {
    const r = await edge.send("/_intel/api/config/lists", { cf: CF, ip: "203.0.113.43", headers: { Accept: "application/json" } });
    assert.equal(r.status, 401);
    await r.arrayBuffer();
  }
  assert.equal((await apiFrom("203.0.113.43", "/api/config/lists", "wrong-token-after-bare-requests")).status, 401);
  // A good token from another client still works.
  const admin = await apiFrom("203.0.113.41", "/api/config/lists", ADMIN_TOKEN);
  assert.equal(admin.status, 200);
  // Each failure was recorded in the guesser's profile as the auth failure it
  // is (the auth_failures signal), apart from the origin's statuses.
  const profile = await eventually(async () => {
    const r = await apiFrom("203.0.113.41", `/api/ip-intelligence/${guesser}`, ADMIN_TOKEN);
    return r.status === 200 && r.json.metrics.adminAuthFailuresInWindow >= 10 ? r.json : null;
  });
  assert.ok(profile, "the guesser's profile counts its failed authentications");
  assert.ok(profile.profile.alerts.some((a) => a.type === "auth_failures"), JSON.stringify(profile.profile.alerts));
  assert.match(JSON.stringify(profile.metrics.historyRisk), /auth_failures/);
  // The 429s themselves are not recorded (the limiter costs the profile nothing more),
  // and the origin answered none of these.
  assert.equal(profile.metrics.adminAuthFailuresInWindow, 10);
  assert.equal(profile.metrics.originStatusInWindow["401_403"], 0);
});

test("a block-listed client gets 403 on every route under the prefix, the right token included", async () => {
  const lists = await apiFrom(BLOCKED_IP, "/api/config/lists", ADMIN_TOKEN);
  assert.equal(lists.status, 403);
  assert.equal(lists.json.error, "blocked");
  for (let i = 0; i < 3; i++) assert.equal((await apiFrom(BLOCKED_IP, "/api/config/lists", `guess-${i}`)).status, 403);
  const verify = await post("/_intel/challenge/verify", "token=x&counter=1", { ip: BLOCKED_IP, headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" } });
  assert.equal(verify.status, 403);
  assert.equal((await verify.json()).error, "blocked");
  // Another client is served as before.
  assert.equal((await apiFrom("203.0.113.42", "/api/config/lists", ADMIN_TOKEN)).status, 200);
});

test("the dashboard's files carry a Content-Security-Policy without inline script, nosniff and no-referrer", async () => {
  for (const path of ["/_intel/", "/_intel/index.html", "/_intel/dist/app.js", "/_intel/dist/app.css"]) {
    const res = await edge.send(path, { cf: CF, headers: { Accept: "text/html" } });
    assert.equal(res.status, 200, path);
    await res.arrayBuffer();
    const csp = res.headers.get("content-security-policy") ?? "";
    assert.match(csp, /(^|; )script-src 'self'(;|$)/, `${path}: ${csp}`);
    assert.match(csp, /(^|; )frame-ancestors 'none'(;|$)/, path);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, path);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff", path);
    assert.equal(res.headers.get("referrer-policy"), "no-referrer", path);
  }
  // The page itself has no inline script or style for the policy to break.
  const html = await (await edge.send("/_intel/", { cf: CF })).text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, "no inline <script>");
  assert.doesNotMatch(html, /<style|\sstyle=|\son[a-z]+=/i, "no inline style or handler");
});

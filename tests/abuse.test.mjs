// What an unauthenticated client can make the Worker spend (issue 15): body
// limits on every body read. Against the built Worker in the local runtime.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge, asciiJson, ADMIN_TOKEN, BASE } from "./harness.mjs";

const KEY = "challenge-key-for-tests-0123456789";
const CF = { country: "DE", asn: 3320, colo: "FRA" };

let edge;
before(async () => {
  edge = await startEdge({ vars: { ENFORCE: "challenge", CHALLENGE_AT: "40", CHALLENGE_SIGNING_KEY: KEY, CHALLENGE_DIFFICULTY: "1" } });
});
after(async () => {
  await edge?.close();
});

/**
 * A body sent as a stream with no Content-Length (chunked): `chunks` pieces of
 * `size` bytes, then, with `hang`, a stream that stays open until the test ends it.
 */
function streamed(chunks, size, { hang = false } = {}) {
  let sent = 0;
  let end;
  const ended = new Promise((r) => (end = r));
  const body = new ReadableStream({
    async pull(controller) {
      if (sent < chunks) {
        sent++;
        controller.enqueue(new Uint8Array(size).fill(0x20));
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

async function challengeToken(ip) {
  const res = await edge.send("/", { cf: { country: "T1" }, ip, headers: { Accept: "application/json" } });
  assert.equal(res.status, 403);
  return (await res.json()).challenge.token;
}

test("challenge verify: a declared-oversize body gets 413 before it is read", async () => {
  const res = await post("/_intel/challenge/verify", "x".repeat(8 * 1024 + 1), { headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error, "payload_too_large");
});

test("challenge verify: a chunked body over 8 KiB gets 413 without waiting for the rest", async () => {
  // 12 KiB sent, then the stream stays open: the answer must not wait for its end.
  const s = streamed(12, 1024, { hang: true });
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
  const token = await challengeToken(ip);
  const { createHash } = await import("node:crypto");
  let counter = 0;
  while ((createHash("sha256").update(`${token}:${counter}`).digest()[0] & 0x80) !== 0) counter++;
  let form = `token=${token}&counter=${counter}&return=%2Fhere&pad=`;
  form += "p".repeat(8 * 1024 - form.length);
  assert.equal(form.length, 8 * 1024);
  const res = await post("/_intel/challenge/verify", form, { ip, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  assert.equal(res.status, 303, await res.clone().text());
  assert.equal(res.headers.get("location"), "/here");
  await res.arrayBuffer();
  // The same answer streamed without a length is read as well.
  const token2 = await challengeToken(ip);
  let c2 = 0;
  while ((createHash("sha256").update(`${token2}:${c2}`).digest()[0] & 0x80) !== 0) c2++;
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
    const declared = await send("[" + " ".repeat(limit) + "]");
    assert.equal(declared.status, 413, path);
    assert.equal((await declared.json()).error, "payload_too_large");
    const s = streamed(20, 64 * 1024, { hang: true });
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

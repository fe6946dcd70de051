// KV metric history after a week (issue 15, item 11): with the default 7-day
// TTL and 60 s slides a metric holds 10,080 keys, and a reader that lists the
// metric's keys oldest first with a page limit never reaches the newest hour.
// Here the METRICS KV (real local KV) is seeded with more than a week of
// slides, in the key format the hub writes (src/intel/rollups.rs), and the
// default history call must return the newest hour within a bounded number of
// KV list calls.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge } from "./harness.mjs";

let edge;
before(async () => {
  edge = await startEdge({ vars: { ANALYTICS_SLIDE_SECONDS: "60" } });
});
after(async () => {
  await edge?.close();
});

const pad = (n, w) => String(n).padStart(w, "0");
// metrics:v2:<name>:<hour start s>:<slide start s>:<shard>, fixed width.
const keyOf = (name, slideS, shard) => `metrics:v2:${name}:${pad(slideS - (slideS % 3600), 10)}:${pad(slideS, 10)}:${pad(shard, 2)}`;

async function seed(kv, entries) {
  for (let i = 0; i < entries.length; i += 250) {
    await Promise.all(
      entries.slice(i, i + 250).map(([key, v]) => kv.put(key, JSON.stringify({ value: v }), { metadata: { v, n: 1 }, expirationTtl: 8 * 86400 })),
    );
  }
}

test("history: the newest hour is read with a bounded number of list calls when a week of keys is stored", async () => {
  const kv = await edge.mf.getKVNamespace("METRICS");
  const name = "events_rejected";
  const nowS = Math.floor(Date.now() / 1000);
  const m0 = nowS - (nowS % 60) - 60;
  // The newest hour: 55 slides, with values that say which slide they are.
  const recent = Array.from({ length: 55 }, (_, k) => [keyOf(name, m0 - k * 60, 0), 5000 + k]);
  // More than a week of older slides (60 s each), all before that hour.
  const OLD = 10_200;
  const old = Array.from({ length: OLD }, (_, k) => [keyOf(name, m0 - 3660 - k * 60, 0), 1]);
  const t0 = Date.now();
  await seed(kv, [...old, ...recent]);
  assert.ok(Date.now() - t0 < 200_000, "seeding took too long for the newest hour to stay in range");
  const listed = await kv.list({ prefix: `metrics:v2:${name}:` });
  assert.equal(listed.list_complete, false, "more than one page of keys stored");

  const r = await edge.api("GET", `/api/performance/metrics/${name}/history`);
  assert.equal(r.status, 200, r.text);
  const values = r.json.metrics.map((p) => p.value).sort((a, b) => a - b);
  assert.deepEqual(values, recent.map(([, v]) => v).sort((a, b) => a - b), "exactly the newest hour's points");
  assert.equal(r.json.count, 55);
  assert.ok(r.json.metrics.every((p, i, a) => i === 0 || a[i - 1].timestamp < p.timestamp), "oldest first");
  // The default hour touches two hour buckets: one list call each.
  assert.ok(r.json.range.listCalls <= 2, `list calls: ${r.json.range.listCalls}`);
  assert.equal(r.json.range.clamped, false);

  // A week asked for is clamped to the newest 24 hours, read in at most one
  // call per hour bucket, and the answer says what it covered.
  const end = Date.now();
  const w = await edge.api("GET", `/api/performance/metrics/${name}/history?start=${end - 7 * 86400_000}&end=${end}`);
  assert.equal(w.status, 200, w.text);
  assert.equal(w.json.range.clamped, true);
  assert.equal(w.json.range.end, end);
  assert.equal(w.json.range.start, end - 86400_000);
  assert.ok(w.json.range.listCalls <= 25, `list calls: ${w.json.range.listCalls}`);
  const inDay = [...old, ...recent].filter(([key]) => Number(key.split(":")[4]) * 1000 >= end - 86400_000).length;
  assert.equal(w.json.count, inDay);
});

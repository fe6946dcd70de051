// Real-time streams (issue: streams): WebSocket fan-out hosted by Durable
// Objects, with real WebSocket clients against the local runtime.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { startEdge, eventually, BROWSER_HEADERS, ADMIN_TOKEN } from "./harness.mjs";

const PLACES = [
  { country: "GB", city: "London", latitude: "51.50853", longitude: "-0.12574", asn: 2856, colo: "LHR" },
  { country: "FR", city: "Paris", latitude: "48.85341", longitude: "2.3488", asn: 3215, colo: "CDG" },
  { country: "DE", city: "Berlin", latitude: "52.52437", longitude: "13.41053", asn: 3320, colo: "FRA" },
  { country: "JP", city: "Tokyo", latitude: "35.6895", longitude: "139.69171", asn: 2516, colo: "NRT" },
  { country: "BR", city: "Sao Paulo", latitude: "-23.5475", longitude: "-46.63611", asn: 28573, colo: "GRU" },
];

// Every stream test runs twice: with one analytics hub, and with four
// (HUB_SHARDS=4: the streams live on shard 0, whatever shard a subject's
// samples go to; issue 15, item 12).
let edge;
let shards = 1;

/** The status of an upgrade attempt (without opening a socket), each from a
 * client address of its own: the refused ones here would otherwise reach the
 * failed-authentication limit (tests/abuse.test.mjs tests that limit). */
let nextClient = 0;
async function upgradeStatus(path, headers = {}) {
  nextClient++;
  const ip = `198.18.${nextClient >> 8}.${nextClient & 255}`;
  const res = await edge.mf.dispatchFetch(`http://edge.test/_intel${path}`, {
    headers: { Upgrade: "websocket", "CF-Connecting-IP": ip, ...headers },
  });
  const status = res.status;
  res.webSocket?.accept();
  res.webSocket?.close();
  if (status !== 101) await res.arrayBuffer();
  return status;
}

async function visit(ip, cf, path = "/") {
  const res = await edge.send(path, { cf, ip, headers: BROWSER_HEADERS });
  await res.arrayBuffer();
}

async function postEvents(events) {
  const r = await edge.api("POST", "/api/events", { body: events });
  assert.equal(r.status, 202);
  assert.equal(r.json.rejected.length, 0, JSON.stringify(r.json.rejected));
}
for (const hubShards of [1, 4]) {
  describe(`HUB_SHARDS=${hubShards}`, () => {
    before(async () => {
      shards = hubShards;
      edge = await startEdge({ vars: { RISK_MODE: "consistent", STREAM_TICKET_TTL_SECONDS: "1", HUB_SHARDS: String(shards) } });
    });
    after(async () => {
      await edge?.close();
    });

    test("tickets: single use, expiring, required; unauthenticated upgrades get 401", async () => {
      assert.equal(await upgradeStatus("/api/intelligence/stream"), 401, "no ticket, no token");
      assert.equal(await upgradeStatus("/api/intelligence/stream?ticket=made-up"), 401);
      assert.equal(await upgradeStatus("/api/intelligence/stream", { "Sec-WebSocket-Protocol": "bearer, wrong" }), 401);
      const noTicket = await edge.api("POST", "/api/stream-ticket", { token: null });
      assert.equal(noTicket.status, 401, "tickets need the token");
      const t = await edge.api("POST", "/api/stream-ticket");
      assert.equal(t.status, 201);
      assert.match(t.json.ticket, /^\d{13}\.[0-9a-f]{32}\.[0-9a-f]{64}$/, "expires.nonce.signature");
      const ok = edge.stream("/api/intelligence/stream", { ticket: t.json.ticket });
      await ok.opened;
      assert.equal(await upgradeStatus(`/api/intelligence/stream?ticket=${t.json.ticket}`), 401, "a used ticket is refused");
      ok.close();
      const late = await edge.api("POST", "/api/stream-ticket");
      await new Promise((r) => setTimeout(r, 1500)); // STREAM_TICKET_TTL_SECONDS=1 here
      assert.equal(await upgradeStatus(`/api/intelligence/stream?ticket=${late.json.ticket}`), 401, "an expired ticket is refused");
      assert.equal(await upgradeStatus("/api/intelligence/stream", { Authorization: `Bearer ${ADMIN_TOKEN}` }), 101);
      // A ticket opens one socket anywhere: spent on a subject's stream, it is
      // refused on the hub's, and the other way round.
      const ipTicket = (await edge.api("POST", "/api/stream-ticket")).json.ticket;
      assert.equal(await upgradeStatus(`/api/intelligence/stream?ip=198.51.100.9&ticket=${ipTicket}`), 101);
      assert.equal(await upgradeStatus(`/api/intelligence/stream?ip=198.51.100.9&ticket=${ipTicket}`), 401);
      assert.equal(await upgradeStatus(`/api/intelligence/stream?ticket=${ipTicket}`), 401);
      const plain = await edge.api("GET", "/api/intelligence/stream");
      assert.equal(plain.status, 426, "not an upgrade");
    });

    test("unauthenticated upgrades cost no hub request: garbage, forged and tampered tickets are refused in the isolate; liveness costs nothing", async () => {
      // Hub calls only: each refused credential is also recorded in its client's
      // profile as an auth failure, batched with that client's other observations
      // (one profile flush per client and interval, as for any request it makes).
      const calls = async () => {
        const r = await edge.api("GET", "/api/intelligence/analytics");
        return r.json.isolate.objectCallsByBinding.HUB ?? 0;
      };
      // Liveness alone, measured first (nothing pending yet): no object call of any kind.
      const all = async () => (await edge.api("GET", "/api/intelligence/analytics")).json.isolate.objectCalls;
      const l0 = await all();
      const l1 = await all();
      for (let i = 0; i < 10; i++) await (await edge.send("/_intel/health/intelligence", { cf: {} })).arrayBuffer();
      const l2 = await all();
      assert.equal(l2 - l1, l1 - l0, `10 liveness calls made ${l2 - l1 - (l1 - l0)} object calls`);
      // What reading the counter costs by itself (the analytics read asks the hub).
      // (The least of three: locally the objects share this isolate's
      // counters, and the stream root's forwarding of events to the hub for
      // counting, at most once a second, may fall between two reads.)
      let readCost = Infinity;
      for (let i = 0; i < 3; i++) {
        const a = await calls();
        readCost = Math.min(readCost, (await calls()) - a);
      }
      const real = (await edge.api("POST", "/api/stream-ticket")).json.ticket;
      const [expires, nonce, sig] = real.split(".");
      const flip = (hex) => hex.slice(0, -1) + (hex.endsWith("0") ? "1" : "0");
      const hostile = [
        "made-up",
        "",
        "x".repeat(5000),
        `${Number(expires) + 3600_000}.${nonce}.${sig}`, // expiry extended
        `${expires}.${flip(nonce)}.${sig}`, // another nonce
        `${expires}.${nonce}.${flip(sig)}`, // tampered signature
        `${expires}.${nonce}.${sig}.extra`,
        "1.00000000000000000000000000000000.00",
        // Signed with a key derived from the admin token (as tickets once were): the
        // key is random now, so knowing or guessing the token makes no ticket.
        (() => {
          const key = createHash("sha256").update("edgeintel stream tickets\0").update(ADMIN_TOKEN).digest();
          const tag = createHmac("sha256", key).update(`${expires}.${flip(nonce)}`).digest("hex");
          return `${expires}.${flip(nonce)}.${tag}`;
        })(),
      ];
      // Up to three rounds, for the same reason: refused upgrades that cost a
      // hub call would cost it in every round, a background call falls in one.
      const extra = [];
      for (let round = 0; round < 3 && !extra.includes(0); round++) {
        const c0 = await calls();
        for (const t of hostile) {
          assert.equal(await upgradeStatus(`/api/intelligence/stream?ticket=${encodeURIComponent(t)}`), 401, t.slice(0, 40));
          assert.equal(await upgradeStatus(`/api/intelligence/stream?ip=198.51.100.9&ticket=${encodeURIComponent(t)}`), 401);
        }
        for (let i = 0; i < 10; i++) {
          const live = await edge.send("/_intel/health/intelligence", { cf: {} });
          assert.equal(live.status, 200);
          await live.arrayBuffer();
        }
        extra.push((await calls()) - c0 - readCost);
      }
      assert.ok(extra.includes(0), `${hostile.length * 2} refused upgrades and 10 liveness calls made ${extra.join(", ")} hub calls (per round)`);

      // The real ticket still works afterwards (nothing above spent it).
      assert.equal(await upgradeStatus(`/api/intelligence/stream?ticket=${real}`), 101);
    });

    test("a subscriber receives the events caused by traffic, in order", async () => {
      const ws = edge.stream("/api/intelligence/stream");
      await ws.opened;
      const ip = "198.51.100.101";
      for (const place of PLACES) await visit(ip, place);
      await ws.until(() => ws.updates(ip, "location_update").length >= PLACES.length);
      const cities = ws.updates(ip, "location_update").map((m) => m.data.event.data.geolocation.city);
      assert.deepEqual(cities, PLACES.map((p) => p.city));
      const m = ws.updates(ip, "location_update")[0];
      assert.equal(m.v, 1);
      assert.match(m.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(m.data.country, "GB");
      ws.close();
    });

    test("filters by event type, severity, country and ip; unsubscribe widens again", async () => {
      const [byType, bySeverity, byCountry, byIp, all] = Array.from({ length: 5 }, () => edge.stream("/api/intelligence/stream"));
      await Promise.all([byType, bySeverity, byCountry, byIp, all].map((c) => c.opened));
      byType.send({ type: "subscribe", eventTypes: ["threat_detected"] });
      bySeverity.send({ type: "subscribe", filter: { minSeverity: "critical" } });
      byCountry.send({ type: "subscribe", filter: { countries: ["FR"] } });
      byIp.send({ type: "subscribe", filter: { ip: "198.51.100.112" } });
      for (const c of [byType, bySeverity, byCountry, byIp]) await c.until((ms) => ms.some((m) => m.data?.subscribed));
      await visit("198.51.100.111", PLACES[0]); // GB: location_update (low)
      await visit("198.51.100.112", PLACES[1]); // FR: location_update (low)
      await postEvents([
        { ip: "198.51.100.111", eventType: "threat_detected", priority: "high", data: { threatScore: 80 } },
        { ip: "198.51.100.112", eventType: "threat_detected", priority: "critical", data: { threatScore: 99 } },
      ]);
      await all.until(() => all.updates().filter((m) => m.data.event.ip.startsWith("198.51.100.11")).length >= 4);
      // One more event everybody would match, so "nothing more arrived" is known.
      await postEvents([{ ip: "198.51.100.112", eventType: "threat_detected", priority: "critical", data: { threatScore: 100 } }]);
      for (const c of [byType, bySeverity, byCountry, byIp]) await c.until(() => c.updates("198.51.100.112", "threat_detected").length >= 2);
      const seen = (c) => c.updates().filter((m) => m.data.event.ip.startsWith("198.51.100.11")).map((m) => `${m.data.event.ip}:${m.data.event.eventType}:${m.data.event.priority}`);
      assert.deepEqual(seen(byType), ["198.51.100.111:threat_detected:high", "198.51.100.112:threat_detected:critical", "198.51.100.112:threat_detected:critical"]);
      assert.deepEqual(seen(bySeverity), ["198.51.100.112:threat_detected:critical", "198.51.100.112:threat_detected:critical"]);
      assert.deepEqual(seen(byCountry), ["198.51.100.112:location_update:low", "198.51.100.112:threat_detected:critical", "198.51.100.112:threat_detected:critical"]);
      assert.deepEqual(seen(byIp), seen(byCountry));
      // unsubscribe: back to everything.
      byType.send({ type: "unsubscribe" });
      await byType.until((ms) => ms.filter((m) => m.data?.subscribed).length >= 2);
      await visit("198.51.100.113", PLACES[3]);
      await byType.until(() => byType.updates("198.51.100.113", "location_update").length === 1);
      for (const c of [byType, bySeverity, byCountry, byIp, all]) c.close();
    });

    test("invalid messages get an error and the socket stays open; binary frames too; ping is answered", async () => {
      const ws = edge.stream("/api/intelligence/stream");
      await ws.opened;
      for (const bad of ["not json", "{\"type\":\"dance\"}", "{\"type\":\"subscribe\",\"filter\":{\"countries\":[\"Narnia\"]}}"]) ws.send(bad);
      ws.ws.send(new Uint8Array([1, 2, 3]));
      await ws.until((ms) => ms.filter((m) => m.type === "error").length === 4);
      assert.ok(ws.messages.filter((m) => m.type === "error").every((m) => m.data.error === "bad_message" && m.data.message));
      ws.send({ type: "ping" });
      await ws.until((ms) => ms.some((m) => m.type === "pong"));
      await visit("198.51.100.120", PLACES[2]);
      await ws.until(() => ws.updates("198.51.100.120").length >= 1);
      assert.equal(ws.closed, null, "still open");
      ws.close();
    });

    test("a flooding client is closed with 1008 and a reason", async () => {
      const ws = edge.stream("/api/intelligence/stream");
      await ws.opened;
      for (let i = 0; i < 60; i++) ws.send({ type: "unsubscribe" });
      const closed = await ws.closedPromise;
      assert.equal(closed.code, 1008);
      assert.match(closed.reason, /flooding/);
    });

    test("per-subject stream (?ip=) carries only that subject's events", async () => {
      const mine = edge.stream("/api/intelligence/stream", { query: "ip=198.51.100.130" });
      await mine.opened;
      await visit("198.51.100.131", PLACES[0]);
      await visit("198.51.100.130", PLACES[1]);
      await postEvents([{ ip: "198.51.100.130", eventType: "reputation_change", data: { reputationScore: 10 } }]);
      await mine.until((ms) => ms.some((m) => m.type === "alert"));
      assert.ok(mine.updates().length >= 2);
      assert.ok(mine.updates().every((m) => m.data.event.ip === "198.51.100.130"));
      const alert = mine.messages.find((m) => m.type === "alert");
      assert.equal(alert.data.alert.type, "reputation_change");
      assert.equal(await upgradeStatus("/api/intelligence/stream?ip=not-an-ip", { Authorization: `Bearer ${ADMIN_TOKEN}` }), 400);
      mine.close();
    });

    test("with IP_HASH_KEY: ?ip= streams and ip filters still receive their subject's events, showing only masked IPs", async () => {
      const hashed = await startEdge({ vars: { RISK_MODE: "consistent", IP_HASH_KEY: "stream-hash-key-0123456789", HUB_SHARDS: String(shards) } });
      try {
        const ip = "198.51.100.150";
        const neighbour = "198.51.100.151";
        const v6 = "2001:db8:77:88::5";
        const mine = hashed.stream("/api/intelligence/stream", { query: `ip=${ip}` });
        const filtered = hashed.stream("/api/intelligence/stream");
        const byV6 = hashed.stream("/api/intelligence/stream");
        await Promise.all([mine.opened, filtered.opened, byV6.opened]);
        filtered.ws.send(JSON.stringify({ type: "subscribe", filter: { ip } }));
        byV6.ws.send(JSON.stringify({ type: "subscribe", filter: { ip: v6 } }));
        await filtered.until((ms) => ms.some((m) => m.data?.subscribed));
        await byV6.until((ms) => ms.some((m) => m.data?.subscribed));
        const subscribed = filtered.messages.find((m) => m.data?.subscribed);
        assert.ok(!JSON.stringify(subscribed).includes(ip), `the kept filter shows no raw IP: ${JSON.stringify(subscribed)}`);
        for (const who of [neighbour, ip, v6]) {
          const res = await hashed.send("/", { cf: PLACES[0], ip: who, headers: BROWSER_HEADERS });
          await res.arrayBuffer();
        }
        await mine.until((ms) => ms.some((m) => m.type === "intelligence_update"));
        await filtered.until((ms) => ms.some((m) => m.type === "intelligence_update"));
        await byV6.until((ms) => ms.some((m) => m.type === "intelligence_update"));
        // Let the neighbour's events arrive too, if they were going to.
        await new Promise((r) => setTimeout(r, 300));
        for (const c of [mine, filtered]) {
          const shown = c.messages.filter((m) => m.type === "intelligence_update").map((m) => m.data.event.ip);
          assert.ok(shown.length >= 1 && shown.every((x) => x === "198.51.100.x"), JSON.stringify(shown));
        }
        // The neighbour shows as the same masked IP, so only the hashed key tells
        // them apart: the filtered hub stream gets exactly what the subject's own stream gets.
        const count = (c) => c.messages.filter((m) => m.type === "intelligence_update").length;
        assert.equal(count(filtered), count(mine), "the neighbour's events reached neither");
        const v6shown = byV6.messages.filter((m) => m.type === "intelligence_update").map((m) => m.data.event.ip);
        assert.deepEqual([...new Set(v6shown)], ["2001:db8:77::/48"], "an IPv6 subject is shown by its /48");
        for (const c of [mine, filtered, byV6]) {
          assert.ok(!JSON.stringify(c.messages).includes(ip) && !JSON.stringify(c.messages).includes("2001:db8:77:88"));
          c.close();
        }
      } finally {
        await hashed.close();
      }
    });

    test("200 concurrent subscribers each receive the same event exactly once", async () => {
      const clients = Array.from({ length: 200 }, () => edge.stream("/api/intelligence/stream"));
      await Promise.all(clients.map((c) => c.opened));
      await postEvents([{ ip: "198.51.100.140", eventType: "threat_detected", data: { threatScore: 77 } }]);
      await Promise.all(clients.map((c) => c.until(() => c.updates("198.51.100.140").length >= 1, 10000)));
      // A second, later event: when it has arrived everywhere, any duplicate of the first would have too.
      await postEvents([{ ip: "198.51.100.141", eventType: "threat_detected", data: { threatScore: 10 } }]);
      await Promise.all(clients.map((c) => c.until(() => c.updates("198.51.100.141").length >= 1, 10000)));
      const counts = clients.map((c) => c.updates("198.51.100.140").length);
      assert.deepEqual([...new Set(counts)], [1]);
      for (const c of clients) c.close();
    });

    test("the hub's kept subscriber list follows clients that come, go and change filters", async () => {
      const a = edge.stream("/api/intelligence/stream");
      const b = edge.stream("/api/intelligence/stream");
      await Promise.all([a.opened, b.opened]);
      await postEvents([{ ip: "198.51.100.150", eventType: "threat_detected", data: { threatScore: 60 } }]);
      await Promise.all([a, b].map((c) => c.until(() => c.updates("198.51.100.150").length === 1)));
      // b leaves, c arrives, a narrows its filter: the next event must follow all three changes.
      b.close();
      await b.closedPromise;
      const c = edge.stream("/api/intelligence/stream");
      await c.opened;
      a.send({ type: "subscribe", filter: { ip: "198.51.100.152" } });
      await a.until((ms) => ms.some((m) => m.type === "event" && m.data.subscribed));
      await postEvents([{ ip: "198.51.100.151", eventType: "threat_detected", data: { threatScore: 61 } }]);
      await postEvents([{ ip: "198.51.100.152", eventType: "threat_detected", data: { threatScore: 62 } }]);
      await c.until(() => c.updates("198.51.100.152").length === 1);
      await a.until(() => a.updates("198.51.100.152").length === 1);
      assert.equal(c.updates("198.51.100.151").length, 1, "the new client gets events");
      assert.equal(a.updates("198.51.100.151").length, 0, "the narrowed filter applies at once");
      a.close();
      c.close();
    });

    test("the performance stream accepts authenticated clients and answers ping", async () => {
      const ws = edge.stream("/api/performance/stream");
      await ws.opened;
      ws.send('{"type":"ping"}');
      await ws.until((ms) => ms.some((m) => m.type === "pong"));
      ws.send({ type: "subscribe", filter: { minSeverity: "high" } });
      await ws.until((ms) => ms.some((m) => m.data?.subscribed));
      ws.close();
    });
  });
}

test("MAX_STREAM_CLIENTS refuses the next client clearly", async () => {
  const small = await startEdge({ vars: { MAX_STREAM_CLIENTS: "2" } });
  try {
    const a = small.stream("/api/intelligence/stream");
    const b = small.stream("/api/intelligence/stream");
    await Promise.all([a.opened, b.opened]);
    const res = await small.mf.dispatchFetch("http://edge.test/_intel/api/intelligence/stream", {
      headers: { Upgrade: "websocket", Authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error, "too_many_stream_clients");
    a.close();
    b.close();
  } finally {
    await small.close();
  }
});

// The global streams' relays (issue 17, item 2): a root that batches and
// relays of RELAY_MAX_SOCKETS sockets each. Here 4 relays of 3 sockets
// (MAX_STREAM_CLIENTS=12), so that a dozen clients fill every relay.
describe("stream relays", () => {
  let relays;
  before(async () => {
    relays = await startEdge({ vars: { RISK_MODE: "consistent", RELAY_MAX_SOCKETS: "3", MAX_STREAM_CLIENTS: "12" }, streamRestarts: true });
  });
  after(async () => {
    await relays?.close();
  });

  // Each attempt from an address of its own (refusals count towards the
  // failed-authentication limit per client).
  let n = 0;
  async function upgrade(e, path, headers = {}) {
    n++;
    const res = await e.mf.dispatchFetch(`http://edge.test/_intel${path}`, {
      headers: { Upgrade: "websocket", "CF-Connecting-IP": `198.18.${200 + (n >> 8)}.${n & 255}`, ...headers },
    });
    const status = res.status;
    const body = status === 101 ? null : await res.json().catch(() => null);
    res.webSocket?.accept();
    res.webSocket?.close();
    return { status, body };
  }

  async function post(e, events) {
    const r = await e.api("POST", "/api/events", { body: events });
    assert.equal(r.status, 202);
    assert.equal(r.json.rejected.length, 0, JSON.stringify(r.json.rejected));
  }

  const threat = (ip, extra = {}) => ({ ip, eventType: "threat_detected", data: { threatScore: 50 }, ...extra });

  async function stillHeld(name) {
    const ns = await relays.mf.getDurableObjectNamespace("STREAMS", "edge");
    const res = await ns.get(ns.idFromName(name)).fetch("http://stream/", { method: "POST", body: JSON.stringify({ deliver: {} }) });
    return res.json();
  }

  test("a full stream spills over every relay; each client on each relay gets each event once, filtered at its relay", async () => {
    const clients = Array.from({ length: 12 }, () => relays.stream("/api/intelligence/stream"));
    await Promise.all(clients.map((c) => c.opened));
    // All 4 relays hold 3 sockets each, whichever relay each client was sent to first.
    const held = await Promise.all([0, 1, 2, 3].map((n) => stillHeld(`relay:${n}`)));
    assert.deepEqual(held.map((h) => h.intel), [3, 3, 3, 3], JSON.stringify(held));
    const full = await upgrade(relays, "/api/intelligence/stream", { Authorization: `Bearer ${ADMIN_TOKEN}` });
    assert.equal(full.status, 503, "the 13th client is refused");
    assert.equal(full.body.error, "too_many_stream_clients");
    assert.match(full.body.message, /maximum of 12 clients/, "the whole stream's limit, not one relay's");
    // Every other client narrows to critical events.
    const narrow = clients.filter((_, i) => i % 2 === 0);
    const wide = clients.filter((_, i) => i % 2 === 1);
    for (const c of narrow) c.send({ type: "subscribe", filter: { minSeverity: "critical" } });
    await Promise.all(narrow.map((c) => c.until((ms) => ms.some((m) => m.data?.subscribed))));
    await post(relays, [threat("198.51.100.201", { priority: "high" }), threat("198.51.100.202", { priority: "critical" })]);
    await post(relays, [threat("198.51.100.203", { priority: "critical" })]);
    await Promise.all(clients.map((c) => c.until(() => c.updates("198.51.100.203").length >= 1, 10000)));
    for (const c of wide) {
      assert.deepEqual(["201", "202", "203"].map((n) => c.updates(`198.51.100.${n}`).length), [1, 1, 1]);
    }
    for (const c of narrow) {
      assert.deepEqual(["201", "202", "203"].map((n) => c.updates(`198.51.100.${n}`).length), [0, 1, 1], "the high one was filtered out");
    }
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.closedPromise));
    // Room again.
    const again = relays.stream("/api/intelligence/stream");
    await again.opened;
    again.close();
    await again.closedPromise;
  });

  test("tickets are single use across relays", async () => {
    for (let i = 0; i < 6; i++) {
      const t = (await relays.api("POST", "/api/stream-ticket")).json.ticket;
      assert.equal((await upgrade(relays, `/api/intelligence/stream?ticket=${t}`)).status, 101);
      assert.equal((await upgrade(relays, `/api/intelligence/stream?ticket=${t}`)).status, 401, "whichever relay the second try lands in");
      assert.equal((await upgrade(relays, `/api/performance/stream?ticket=${t}`)).status, 401);
    }
  });

  test("connect/disconnect churn while events flow: every steady subscriber gets every event once, none twice", async () => {
    const steady = Array.from({ length: 6 }, () => relays.stream("/api/intelligence/stream"));
    await Promise.all(steady.map((c) => c.opened));
    const churners = [];
    let churning = true;
    const churn = (async () => {
      while (churning) {
        const batch = Array.from({ length: 4 }, () => relays.stream("/api/intelligence/stream"));
        churners.push(...batch);
        await Promise.all(batch.map((c) => c.opened.catch(() => null)));
        await new Promise((r) => setTimeout(r, 30));
        for (const c of batch) c.close();
        await Promise.all(batch.map((c) => c.closedPromise));
      }
    })();
    const ips = Array.from({ length: 20 }, (_, i) => `198.51.100.${210 + i}`);
    for (const ip of ips) {
      await post(relays, [threat(ip)]);
      await new Promise((r) => setTimeout(r, 50));
    }
    churning = false;
    await churn;
    await Promise.all(steady.map((c) => c.until(() => ips.every((ip) => c.updates(ip).length >= 1), 10000)));
    await new Promise((r) => setTimeout(r, 300)); // any duplicate would have arrived by now
    for (const c of steady) assert.deepEqual([...new Set(ips.map((ip) => c.updates(ip).length))], [1]);
    assert.ok(churners.length >= 8, `${churners.length} churning clients`);
    for (const c of churners) assert.ok(ips.every((ip) => c.updates(ip).length <= 1), "no churning client got an event twice");
    for (const c of steady) c.close();
    await Promise.all(steady.map((c) => c.closedPromise));
  });

  test("with the root down a new connection gets 503 stream_unavailable from one relay, not every relay's", async () => {
    // Fresh relays (not registered): the next socket on any of them asks the root.
    for (const n of [0, 1, 2, 3]) await relays.restartStream(`relay:${n}`);
    assert.equal(await relays.setStreamDown("root", true), "down");
    let down;
    let refused;
    try {
      down = await upgrade(relays, "/api/intelligence/stream", { Authorization: `Bearer ${ADMIN_TOKEN}` });
    } finally {
      refused = Number(await relays.setStreamDown("root", false));
    }
    assert.equal(down.status, 503);
    assert.equal(down.body.error, "stream_unavailable");
    assert.equal(refused, 1, "one relay asked the root, and the edge passed its refusal back");
    const held = await Promise.all([0, 1, 2, 3].map((n) => stillHeld(`relay:${n}`)));
    assert.deepEqual(held.map((h) => h.intel + h.perf), [0, 0, 0, 0], "no socket was accepted for it");
    // The root back: the next connection opens and gets events.
    const client = relays.stream("/api/intelligence/stream");
    await client.opened;
    await post(relays, [threat("198.51.100.250")]);
    await client.until(() => client.updates("198.51.100.250").length === 1, 10000);
    client.close();
    await client.closedPromise;
  });

  test("the root's answer to the hub counts what its bounds dropped (none here)", async () => {
    const ns = await relays.mf.getDurableObjectNamespace("STREAMS", "edge");
    const res = await ns.get(ns.idFromName("root")).fetch("http://stream/", { method: "POST", body: JSON.stringify({ broadcast: { intel: [], perf: [] } }) });
    const clients = await res.json();
    assert.deepEqual(
      [clients.dropped, clients.late_deliveries, clients.uncounted_dropped],
      [0, 0, 0],
      JSON.stringify(clients),
    );
    // The hub keeps the root's answer to its tick: the health API shows it.
    const h = await eventually(async () => (await relays.api("GET", "/api/performance/health")).json?.health);
    assert.deepEqual(h.streamRoot, { droppedMessages: 0, lateDeliveries: 0, uncountedDropped: 0 }, JSON.stringify(h));
  });

  test("a relay that answers late is skipped for that batch and counted; the others get it without waiting", async () => {
    const clients = Array.from({ length: 6 }, () => relays.stream("/api/intelligence/stream"));
    await Promise.all(clients.map((c) => c.opened));
    const held = await Promise.all([0, 1, 2, 3].map((n) => stillHeld(`relay:${n}`)));
    const slow = [0, 1, 2, 3].find((n) => held[n].intel > 0);
    const root = async () => {
      const ns = await relays.mf.getDurableObjectNamespace("STREAMS", "edge");
      const res = await ns.get(ns.idFromName("root")).fetch("http://stream/", { method: "POST", body: JSON.stringify({ broadcast: {} }) });
      return res.json();
    };
    const before = (await root()).late_deliveries;
    assert.equal(await relays.setStreamSlow(`relay:${slow}`, 4000), "slow");
    try {
      const started = Date.now();
      await post(relays, [threat("198.51.100.251")]);
      assert.ok(Date.now() - started < 3900, `the publication did not wait for the slow relay: ${Date.now() - started} ms`);
      // Every client gets it once: the slow relay's too, when its late delivery lands.
      await Promise.all(clients.map((c) => c.until(() => c.updates("198.51.100.251").length === 1, 10000)));
      assert.equal((await root()).late_deliveries, before + 1, "the late delivery is counted");
    } finally {
      await relays.setStreamSlow(`relay:${slow}`, 0);
    }
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.closedPromise));
  });

  test("a restarted root or relay loses no registration and no subscriber", async () => {
    const clients = Array.from({ length: 8 }, () => relays.stream("/api/intelligence/stream"));
    await Promise.all(clients.map((c) => c.opened));
    const held = await Promise.all([0, 1, 2, 3].map((n) => stillHeld(`relay:${n}`)));
    const used = [0, 1, 2, 3].filter((n) => held[n].intel > 0);
    assert.ok(used.length >= 3, `8 clients on relays of 3 use at least 3 relays: ${JSON.stringify(held)}`);
    const everyone = (ip) => Promise.all(clients.map((c) => c.until(() => c.updates(ip).length === 1, 10000)));
    assert.equal(await relays.restartStream("root"), "restarted");
    await post(relays, [threat("198.51.100.240")]);
    await everyone("198.51.100.240");
    for (const n of used) assert.equal(await relays.restartStream(`relay:${n}`), "restarted");
    await post(relays, [threat("198.51.100.241")]);
    await everyone("198.51.100.241");
    // A subscription made before the restart is still applied (read back from the socket's attachment).
    clients[0].send({ type: "subscribe", filter: { ip: "198.51.100.243" } });
    await clients[0].until((ms) => ms.some((m) => m.data?.subscribed));
    for (const n of used) await relays.restartStream(`relay:${n}`);
    await relays.restartStream("root");
    await post(relays, [threat("198.51.100.242"), threat("198.51.100.243")]);
    await Promise.all(clients.map((c) => c.until(() => c.updates("198.51.100.243").length === 1, 10000)));
    assert.equal(clients[0].updates("198.51.100.242").length, 0, "the filter survived the relay's restart");
    assert.ok(clients.slice(1).every((c) => c.updates("198.51.100.242").length === 1));
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.closedPromise));
  });
});

test("rollout: a stream upgrade handed to the hub (as the previous release's isolates do) gets 503 stream_moved with Retry-After", async () => {
  const edge = await startEdge({});
  try {
    const ns = await edge.mf.getDurableObjectNamespace("HUB", "edge");
    const res = await ns.get(ns.idFromName("global")).fetch("http://hub/stream", { headers: { Upgrade: "websocket" } });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "5");
    assert.equal((await res.json()).error, "stream_moved");
  } finally {
    await edge.close();
  }
});

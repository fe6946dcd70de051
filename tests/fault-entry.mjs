// Test-only entry for fault injection with the platform's own machinery: the
// built Worker unchanged, plus `FaultyHub`, a Durable Object class that wraps
// the real HubObject and makes its alarm throw as `HUB_ALARM_FAULTS` says:
// {"before": n} throws on the first n alarms before any work (the runtime
// must retry), {"after": n} throws on the first n after the tick did its work
// (the retry must not count anything twice), {"part": n} refuses the first n
// `Part` calls between shards (see fetch), {"forward": n} refuses the first
// n aggregator forwards (503, not applied), {"forwardLost": n} applies the
// first n forwards but answers 503 (a lost answer: the retry must count
// once). With `HUB_SLOW_MS`, every call
// to the hub waits that long before the real hub sees it (a slow hub).
// Never part of a deployment.
import * as edge from "../build/index.js";

export * from "../build/index.js";
export default edge.default;

const injected = { alarmCalls: 0, thrownBefore: 0, thrownAfter: 0, partsRefused: 0, forwardsRefused: 0, answersLost: 0 };

export class FaultyHub {
  constructor(state, env) {
    this.inner = new edge.HubObject(state, env);
    this.plan = JSON.parse(env.HUB_ALARM_FAULTS || "{}");
    this.slowMs = Number(env.HUB_SLOW_MS || 0);
  }
  async fetch(request) {
    if (new URL(request.url).pathname === "/__faults") return Response.json(injected);
    if (this.slowMs > 0) await new Promise((r) => setTimeout(r, this.slowMs));
    // {"part": n}: the first n `Part` calls (shard 0 asking another shard for
    // its window) answer 503, as a shard that is down would.
    if (injected.partsRefused < (this.plan.part ?? 0) && (await request.clone().text()) === '"part"') {
      injected.partsRefused++;
      return new Response("injected: shard unavailable", { status: 503 });
    }
    if ((this.plan.forward ?? 0) > injected.forwardsRefused || (this.plan.forwardLost ?? 0) > injected.answersLost) {
      const body = await request.clone().text();
      if (body.startsWith('{"forward"')) {
        if (injected.forwardsRefused < (this.plan.forward ?? 0)) {
          injected.forwardsRefused++;
          return new Response("injected: hub unavailable", { status: 503 });
        }
        injected.answersLost++;
        await this.inner.fetch(request);
        return new Response("injected: answer lost", { status: 503 });
      }
    }
    return this.inner.fetch(request);
  }
  async alarm(info) {
    injected.alarmCalls++;
    if (injected.thrownBefore < (this.plan.before ?? 0)) {
      injected.thrownBefore++;
      throw new Error("injected alarm fault (before the tick)");
    }
    const result = await this.inner.alarm(info);
    if (injected.thrownAfter < (this.plan.after ?? 0)) {
      injected.thrownAfter++;
      throw new Error("injected alarm fault (after the tick)");
    }
    return result;
  }
  webSocketMessage(ws, message) {
    return this.inner.webSocketMessage(ws, message);
  }
  webSocketClose(ws, code, reason, wasClean) {
    return this.inner.webSocketClose(ws, code, reason, wasClean);
  }
  webSocketError(ws, error) {
    return this.inner.webSocketError(ws, error);
  }
}

// `RestartableStream`: the real StreamObject, which `/__restart` replaces by a
// fresh instance over the same state, as the runtime does after an eviction:
// memory (the root's buffer and relay copy, a relay's subscriber list and
// registration flag) is gone, storage and the hibernated sockets stay.
// `/__down` makes it answer every other request 500 (an object that fails)
// until `/__up`, which answers how many requests it refused meanwhile;
// `/__slow` (body: ms) delays every later request but upgrades by that long.
export class RestartableStream {
  constructor(state, env) {
    this.state = state;
    this.env = env;
    this.inner = new edge.StreamObject(state, env);
    this.down = false;
    this.refused = 0;
    this.slowMs = 0;
  }
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/__restart") {
      this.inner = new edge.StreamObject(this.state, this.env);
      return new Response("restarted");
    }
    if (path === "/__down") {
      [this.down, this.refused] = [true, 0];
      return new Response("down");
    }
    if (path === "/__up") {
      this.down = false;
      return new Response(String(this.refused));
    }
    if (path === "/__slow") {
      this.slowMs = Number(await request.text());
      return new Response("slow");
    }
    if (this.slowMs > 0 && !request.headers.get("upgrade")) await new Promise((r) => setTimeout(r, this.slowMs));
    if (this.down) {
      this.refused++;
      return new Response("injected stream fault", { status: 500 });
    }
    return this.inner.fetch(request);
  }
  alarm(info) {
    return this.inner.alarm(info);
  }
  webSocketMessage(ws, message) {
    return this.inner.webSocketMessage(ws, message);
  }
  webSocketClose(ws, code, reason, wasClean) {
    return this.inner.webSocketClose(ws, code, reason, wasClean);
  }
  webSocketError(ws, error) {
    return this.inner.webSocketError(ws, error);
  }
}

// `RestartableAggregator`: the real AggregatorObject, which `/__restart`
// replaces by a fresh instance over the same state, as the runtime does after
// an eviction or a crash: what it held in memory (the events waiting for
// their publication, its counters, anything cached from storage) is gone,
// its SQLite storage (stored reports, unconfirmed summaries, merged report
// ids) stays. Its alarm stays armed, as the runtime keeps it. Work the old
// instance had begun still finishes (workerd would cut it off): this shows
// what the new instance finds, not a crash half way through a write (SQLite
// writes without an await between them are atomic anyway).
export class RestartableAggregator {
  constructor(state, env) {
    this.state = state;
    this.env = env;
    this.inner = new edge.AggregatorObject(state, env);
    this.restarts = 0;
  }
  async fetch(request) {
    if (new URL(request.url).pathname === "/__restart") {
      this.inner = new edge.AggregatorObject(this.state, this.env);
      return new Response(String(++this.restarts));
    }
    return this.inner.fetch(request);
  }
  alarm(info) {
    return this.inner.alarm(info);
  }
}

// Test-only entry for fault injection with the platform's own machinery: the
// built Worker unchanged, plus `FaultyHub`, a Durable Object class that wraps
// the real HubObject and makes its alarm throw as `HUB_ALARM_FAULTS` says:
// {"before": n} throws on the first n alarms before any work (the runtime
// must retry), {"after": n} throws on the first n after the tick did its work
// (the retry must not count anything twice). With `HUB_SLOW_MS`, every call
// to the hub waits that long before the real hub sees it (a slow hub).
// Never part of a deployment.
import * as edge from "../build/index.js";

export * from "../build/index.js";
export default edge.default;

const injected = { alarmCalls: 0, thrownBefore: 0, thrownAfter: 0 };

export class FaultyHub {
  constructor(state, env) {
    this.inner = new edge.HubObject(state, env);
    this.plan = JSON.parse(env.HUB_ALARM_FAULTS || "{}");
    this.slowMs = Number(env.HUB_SLOW_MS || 0);
  }
  async fetch(request) {
    if (new URL(request.url).pathname === "/__faults") return Response.json(injected);
    if (this.slowMs > 0) await new Promise((r) => setTimeout(r, this.slowMs));
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

// The capacity model of docs/SCALING.md (scripts/scale-model.mjs): pure
// arithmetic, checked here against hand-computed cases, so the extrapolation
// the bench writes follows the formulas the doc states.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { REGIONS, countCallsPerSecond, designOf, extrapolate, fit, objectBindings, predict, settingDefaults } from "../scripts/scale-model.mjs";

const close = (a, b, eps = 1e-6) => assert.ok(Math.abs(a - b) <= eps * Math.max(1, Math.abs(b)), `${a} != ${b}`);

test("settings and classes are read from the code (src/settings.rs, wrangler.toml)", () => {
  const settings = settingDefaults(readFileSync("src/settings.rs", "utf8"));
  assert.equal(settings.FLUSH_INTERVAL_MS, "1000");
  assert.equal(settings.HUB_SHARDS, "1");
  const classes = objectBindings(readFileSync("wrangler.toml", "utf8"));
  assert.ok(classes.some((c) => c.binding === "HUB" && c.className === "HubObject"));
  assert.deepEqual(objectBindings('[durable_objects]\nbindings = [\n  # { name = "X", class_name = "Old" },\n  { name = "AGG", class_name = "AggregatorObject" },\n]\n'), [{ binding: "AGG", className: "AggregatorObject" }]);
});

test("the design is chosen by what the Worker binds", () => {
  assert.equal(designOf({ classNames: ["ProfileObject", "HubObject"], settings: {} }), "flat");
  assert.equal(designOf({ classNames: ["HubObject", "AggregatorObject"], settings: {} }), "tiered");
  assert.equal(designOf({ classNames: ["HubObject"], settings: { AGGREGATORS_PER_REGION: "4" } }), "tiered");
  assert.equal(settingDefaults(readFileSync("src/settings.rs", "utf8")).AGGREGATORS_PER_REGION, "16");
});

test("flat: the fit recovers the batch window, and the prediction is issue 17's table", () => {
  // Measurements made by a model with T = 1 s exactly: K isolates at 200/K req/s each.
  const runs = [1, 2, 4, 8].map((k) => {
    const x = 200 / k;
    const perIsolate = x / (1 + x * 1);
    // Publishes: 0.2/s following the traffic plus 0.5/s per isolate.
    return { k, clientRps: 200, classes: { HubObject: { objects: 1, byOp: { Report: k * perIsolate, Publish: 200 * 0.001 + 0.5 * k } } } };
  });
  const m = fit("flat", runs, { HUB_SHARDS: "1", FLUSH_INTERVAL_MS: "1000" });
  close(m.periodS, 1);
  close(m.extraPerRequest, 0.001);
  close(m.extraPerIsolate, 0.5);
  close(predict(m, 1_000_000, 100).hub, 10_000 * (100 / 101) + 1000 + 0.5 * 10_000);
  // Issue 17: 1M req/s at 100 per isolate, ~9,900 reports/s into the hub.
  const bare = { ...m, extraPerRequest: 0, extraPerIsolate: 0 };
  close(predict(bare, 1_000_000, 100).hub, 10_000 * (100 / 101));
  close(predict(bare, 10_000, 500).hub, 20 * (500 / 501));
  // Past S samples per window, a report closes at S: x / (1 + S).
  close(predict({ ...bare, batchMax: 50 }, 1000, 1000).hub, 1000 / 51);
  assert.equal(extrapolate(m).length, 6);
});

test("tiered: aggregators carry the isolates by region, the hub and the stream root only the aggregators", () => {
  // 4 aggregators per region, reports every 10 s, forwards every 5 s; the
  // root gets one publish per active aggregator per 5 s, plus 0.5/s of the
  // hub's tick broadcasts.
  const runs = [1, 2, 4, 8].map((k) => ({
    k,
    clientRps: 200,
    eventsPerRequest: 0.05,
    classes: {
      AggregatorObject: { objects: Math.min(k, 4), totalRps: k / 10, byOp: { Delta: Math.ceil(k / 4) / 10 } },
      HubObject: { objects: 1, byOp: { forward: Math.min(k, 4) / 5, publish: 0.1, report: 0.1 } },
      ProfileObject: { objects: 50, maxObjectRps: 3 },
      StreamObject: { objects: 1, maxObjectRps: Math.min(k, 4) / 5 + 0.5, byOp: { publish: Math.min(k, 4) / 5, broadcast: 0.5 } },
      Other: { objects: 1, maxObjectRps: 2 },
    },
  }));
  const m = fit("tiered", runs, { AGGREGATORS_PER_REGION: "4", REPORT_INTERVAL_MS: "10000", AGGREGATOR_FORWARD_MS: "5000" });
  close(m.reportPeriodS, 10);
  close(m.forwardPeriodS, 5);
  close(m.rootPeriodS, 5);
  assert.ok(m.rootMeasured);
  close(m.rootOtherPerSecond, 0.5);
  // The hub's `publish` calls are the root's counting (their own rule), only `report` is left on the line.
  close(m.extraPerRequest, 0.0005);
  close(m.extraPerIsolate, 0);
  close(m.eventsPerRequest, 0.05);
  assert.equal(m.othersPerRequest.StreamObject, undefined, "the stream root has its own formula, not the traffic's");
  const p = predict(m, 1_000_000, 100);
  // Half of 10,000 isolates in the busiest region, over its 4 aggregators.
  close(p.aggregator, (0.5 * 10_000) / 4 / 10);
  close(predict(m, 1_000_000, 100, { busiestRegionShare: 1 }).aggregator, 10_000 / 4 / 10);
  // The root's count calls: 50,000 events/s at 1M requests/s, 500 per call:
  // 100/s; the rest follows the traffic, as does any other shared class.
  close(countCallsPerSecond(m, 1_000_000), 100);
  close(countCallsPerSecond(m, 1000), 1); // at least one per ROOT_COUNT_EVERY_MS while events flow
  close(countCallsPerSecond({ ...m, eventsPerRequest: null }, 1_000_000), 2000); // unmeasured: one event per request
  close(p.hub, (REGIONS * 4) / 5 + 100 + 500);
  close(p.streamRoot, (REGIONS * 4) / 5 + 0.5);
  close(p.streamRelay, Math.min(p.streamRoot, 10));
  close(p.Other, 10_000);
  assert.equal(p.ProfileObject, undefined, "per-subject objects are not extrapolated with the site's traffic");
  close(p.max, Math.max(p.aggregator, p.hub, p.streamRoot, p.Other));
  // Never more active aggregators than isolates.
  close(predict(m, 1000, 500).hub, 2 / 5 + 1 + 0.5);
  // The root's load does not follow the traffic: the same at 10k and 1M client requests/s (enough isolates).
  close(predict(m, 100_000, 100).streamRoot, predict(m, 1_000_000, 100).streamRoot);
  // The default settings: 7 regions x 16 aggregators / 2 s = 56/s into the hub and the root.
  const d = { ...m, aggregatorsPerRegion: 16, reportPeriodS: 2, forwardPeriodS: 2, rootPeriodS: 2, rootOtherPerSecond: 0, extraPerRequest: 0, extraPerIsolate: 0, eventsPerRequest: 0 };
  const at1M = predict(d, 1_000_000, 100);
  close(at1M.hub, 56);
  close(at1M.streamRoot, 56);
  close(at1M.aggregator, (0.5 * 10_000) / 16 / 2);
});

test("tiered without a stream root in the data: the root's period falls back to the forward period", () => {
  const runs = [1, 2].map((k) => ({ k, clientRps: 100, classes: { AggregatorObject: { objects: k, totalRps: k / 2 }, HubObject: { objects: 1, byOp: { forward: k / 2 } } } }));
  const m = fit("tiered", runs, { AGGREGATORS_PER_REGION: "2", REPORT_INTERVAL_MS: "2000", AGGREGATOR_FORWARD_MS: "2000" });
  assert.equal(m.rootMeasured, false);
  close(m.rootPeriodS, m.forwardPeriodS);
  // A roles split (names recorded by the bench) picks the root, not a busier relay.
  const named = [1, 2].map((k) => ({
    k,
    clientRps: 100,
    classes: {
      AggregatorObject: { objects: k, totalRps: k / 2 },
      HubObject: { objects: 1, byOp: { forward: k / 2 } },
      StreamObject: { objects: 3, byOp: { deliver: 10 }, roles: { root: { objects: 1, byOp: { publish: k / 4 } }, relay: { objects: 2, byOp: { deliver: 10 } } } },
    },
  }));
  close(fit("tiered", named, { AGGREGATOR_FORWARD_MS: "2000" }).rootPeriodS, 4);
});

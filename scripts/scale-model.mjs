// The capacity model of docs/SCALING.md as code: how many requests per second
// reach the shared Durable Objects (hub shards, aggregators) for R client
// requests/s served by isolates doing r requests/s each, fitted to the K-isolate
// measurements of scripts/bench-scale.mjs and extrapolated. Pure: no I/O, no
// clock; scripts/bench-scale.mjs feeds it, tests/scale-model.test.mjs checks it.
//
// Two designs, chosen by what the Worker under test has (`designOf`):
// - "flat" (issue 17's starting point): every isolate batches its analytics
//   samples and sends each hub shard one `Report` per batch window. A batch
//   opens at an isolate's first sample for the shard, closes T later (or at S
//   samples), and the next one opens at the next sample, so one isolate sends
//   a shard x / (1 + min(x*T, S)) reports/s for x samples/s to that shard
//   (x = r / H with H shards). The busiest shard gets (R / r) of those.
// - "tiered" (aggregator objects between isolates and hub): an isolate sends
//   its aggregator one report per report period P (its deltas and its
//   profile events), whatever its rate; aggregators are keyed by region
//   (G = 7 continents) x AGGREGATORS_PER_REGION (A); the busiest region holds
//   a share s of the isolates (`busiestRegionShare`, default 0.5), so its
//   busiest aggregator gets s x isolates / A / P; the hub gets one forward
//   per aggregator per forward period F, and the stream root one `Publish`
//   per aggregator holding events per period F' (fitted from the root's
//   measured publish rate per active aggregator): min(G x A, isolates) / F,
//   whatever the traffic. A relay gets one delivery per root publication,
//   at most 1000 / ROOT_FLUSH_MS (10) per second (the root's batching).
// In both, the hub's other calls (profile events, isolates' event reports,
// reads) are split by how they moved with K at a fixed client rate: b per
// isolate, and the rest read as following the traffic, a / R per client
// request. The busiest object of any other shared class is extrapolated
// with the traffic: its measured rate per client request times R.
//
// Fitting: the formula's periods are not taken on trust. The measured rates
// give the effective period (T, P, F) per K; their mean is used for the
// extrapolation, and the configured value is kept beside it for comparison.

/** Client request rates and per-isolate rates the docs extrapolate to. */
export const SCALES = [10_000, 100_000, 1_000_000];
export const PER_ISOLATE = [100, 500];

/** Ops an isolate sends its hub shard per batch window (flat design). */
export const REPORT_OPS = new Set(["Report", "report"]);

/**
 * The settings' defaults, `{NAME: "value"}`, read from src/settings.rs's
 * table (`s("NAME", Some("value"), ...)`), so the model follows the code.
 */
export function settingDefaults(settingsRs) {
  const out = {};
  for (const m of settingsRs.matchAll(/\bs\(\s*"([A-Z0-9_]+)",\s*Some\("([^"]*)"\)/g)) out[m[1]] = m[2];
  return out;
}

/** The Durable Object classes wrangler.toml binds: [{binding, className}]. */
export function objectBindings(wranglerToml) {
  const block = /\[durable_objects\]\s*bindings\s*=\s*\[([\s\S]*?)\n\]/.exec(wranglerToml)?.[1] ?? "";
  const out = [];
  for (const line of block.split("\n")) {
    if (line.trim().startsWith("#")) continue;
    const m = /name\s*=\s*"([A-Z0-9_]+)".*class_name\s*=\s*"(\w+)"/.exec(line);
    if (m) out.push({ binding: m[1], className: m[2] });
  }
  return out;
}

const isAggregatorClass = (c) => /aggregat/i.test(c);
const isHubClass = (c) => /^hub/i.test(c);
const isStreamClass = (c) => /^stream/i.test(c);
const PUBLISH_OP = /^publish$/i;
/** Regions aggregators are keyed by (src/intel/keys.rs `REGIONS`: the continents). */
export const REGIONS = 7;
/** The stream root publishes to its relays at most once per this many ms (src/intel/fanout.rs `ROOT_FLUSH_MS`). */
export const ROOT_FLUSH_MS = 100;
/**
 * The stream root forwards the events it published to the hub for counting
 * at most once per this many ms, or sooner when this many wait
 * (src/intel/fanout.rs `ROOT_COUNT_EVERY_MS`, `COUNT_MAX`).
 */
export const ROOT_COUNT_EVERY_MS = 1000;
export const COUNT_MAX = 500;
/** The busiest region's share of all isolates (a parameter, not a measurement: stated in docs/SCALING.md). */
export const BUSIEST_REGION_SHARE = 0.5;
// One object per subject or visitor: their load follows one client's traffic,
// not the site's (docs/SCALING.md, "Profile objects").
const isPerSubjectClass = (c) => /profile|visitor/i.test(c);
const FORWARD_OP = /forward/i;

/**
 * "tiered" when the Worker binds an aggregator class (or its settings name
 * the aggregator tier), "flat" otherwise.
 */
export function designOf({ classNames = [], settings = {} }) {
  if (classNames.some(isAggregatorClass) || "AGGREGATORS_PER_REGION" in settings || "AGGREGATORS_PER_COLO" in settings) return "tiered";
  return "flat";
}

const num = (settings, name, fallback) => {
  const v = Number(settings[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};
const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

/**
 * Fits the design's periods to the per-K measurements. A run is
 * `{k, clientRps, classes: {ClassName: {objects, maxObjectRps, byOp: {op: rps into the busiest object}, totalRps}}}`
 * (rates: calls / seconds of load; `byOp` of the busiest object of the class).
 * Returns the fitted parameters, with the configured ones beside them.
 */
export function fit(design, runs, settings) {
  const shards = num(settings, "HUB_SHARDS", 1);
  const usable = runs.filter((r) => r.k > 0 && r.clientRps > 0);
  // Any other shared class (stream roots, relays, ...): its busiest object is
  // extrapolated in proportion to the traffic, the conservative reading when
  // the design's formula for it is not written here.
  const others = {};
  for (const cls of new Set(usable.flatMap((r) => Object.keys(r.classes ?? {})))) {
    if (isHubClass(cls) || isAggregatorClass(cls) || isPerSubjectClass(cls)) continue;
    // The tiered design has a formula for the stream root and its relays.
    if (design !== "flat" && isStreamClass(cls)) continue;
    others[cls] = mean(usable.map((r) => (r.classes[cls]?.maxObjectRps ?? 0) / r.clientRps));
  }
  // The hub's calls besides the design's own (reports in the flat design,
  // forwards in the tiered one): profile events, isolates' event reports,
  // reads. At a fixed client rate, what grows with K is per isolate (b), the
  // rest is read as following the traffic (a / R), the conservative reading
  // of a constant: y = a + b*K, least squares over the runs.
  // Tiered: the hub's `publish` calls are the stream root's event counting,
  // with a rule of their own (`countCallsPerSecond`), not read off the line.
  const own = (op) => (design === "flat" ? REPORT_OPS.has(op) : FORWARD_OP.test(op) || PUBLISH_OP.test(op));
  const extra = lineOverK(usable.map((r) => ({ k: r.k, y: sumOps(hubOf(r), (op) => !own(op)), clientRps: r.clientRps })));
  if (design === "flat") {
    const batchMax = num(settings, "HUB_BATCH", 500);
    const configured = num(settings, "FLUSH_INTERVAL_MS", 1000) / 1000;
    // Per isolate and shard: p = x / (1 + x*T)  =>  T = 1/p - 1/x.
    const perK = usable
      .map((r) => {
        const reports = sumOps(hubOf(r), (op) => REPORT_OPS.has(op));
        const x = r.clientRps / r.k / shards;
        const p = reports / r.k;
        return p > 0 ? { k: r.k, perIsolateReportsPerSecond: p, periodS: 1 / p - 1 / x } : null;
      })
      .filter(Boolean);
    return {
      design,
      shards,
      batchMax,
      configuredPeriodS: configured,
      periodS: mean(perK.map((p) => p.periodS)) ?? configured,
      perK,
      extraPerIsolate: extra.perIsolate,
      extraPerRequest: extra.perRequest,
      othersPerRequest: others,
    };
  }
  // Tiered: the aggregators' calls per isolate give P; the hub's non-traffic
  // calls per aggregator that called it give F.
  const aggregatorsPerRegion = num(settings, "AGGREGATORS_PER_REGION", num(settings, "AGGREGATORS_PER_COLO", 1));
  const configuredP = num(settings, "REPORT_INTERVAL_MS", 10_000) / 1000;
  const configuredF = num(settings, "AGGREGATOR_FORWARD_MS", 10_000) / 1000;
  const perK = usable.map((r) => {
    const agg = aggOf(r);
    // All of an isolate's reports land on some aggregator: the total over
    // aggregators per isolate is its report rate.
    const perIsolate = agg ? agg.totalRps / r.k : 0;
    // The hub's calls from aggregators: its "forward" op.
    const hubForwards = sumOps(hubOf(r), (op) => FORWARD_OP.test(op));
    const activeAggregators = agg?.objects ?? 0;
    // The stream root's publications from aggregators, per active aggregator.
    const root = rootOf(r);
    const rootPublishes = sumOps(root, (op) => PUBLISH_OP.test(op));
    return {
      k: r.k,
      perIsolateReportsPerSecond: perIsolate,
      reportPeriodS: perIsolate > 0 ? 1 / perIsolate : null,
      forwardPeriodS: hubForwards > 0 && activeAggregators > 0 ? activeAggregators / hubForwards : null,
      rootPublishesPerSecond: root ? rootPublishes : null,
      rootPeriodS: rootPublishes > 0 && activeAggregators > 0 ? activeAggregators / rootPublishes : null,
      rootOtherPerSecond: root ? sumOps(root, (op) => !PUBLISH_OP.test(op)) : null,
    };
  });
  const ps = perK.map((p) => p.reportPeriodS).filter((x) => x !== null);
  const fs = perK.map((p) => p.forwardPeriodS).filter((x) => x !== null);
  const rs = perK.map((p) => p.rootPeriodS).filter((x) => x !== null);
  const ro = perK.map((p) => p.rootOtherPerSecond).filter((x) => x !== null);
  // Events per client request, as the hub counted them (the runs' analytics
  // totals): the root's counting calls to the hub follow the events only
  // past COUNT_MAX per ROOT_COUNT_EVERY_MS.
  const ev = usable.map((r) => r.eventsPerRequest).filter((x) => typeof x === "number" && Number.isFinite(x));
  return {
    design,
    shards,
    aggregatorsPerRegion,
    regions: REGIONS,
    configuredReportPeriodS: configuredP,
    configuredForwardPeriodS: configuredF,
    reportPeriodS: mean(ps) ?? configuredP,
    forwardPeriodS: mean(fs) ?? configuredF,
    // The root's publish period per aggregator (F when every aggregator
    // holds events each period; longer when some periods carry none).
    rootPeriodS: mean(rs) ?? configuredF,
    rootMeasured: rs.length > 0,
    // The root's other calls (the hub's tick broadcasts, relay
    // registrations): per tick or per socket change, not per request.
    rootOtherPerSecond: mean(ro) ?? 0,
    // null when the runs did not record it: then every event is assumed to
    // be one count call's worth (the conservative reading).
    eventsPerRequest: mean(ev),
    perK,
    extraPerIsolate: extra.perIsolate,
    extraPerRequest: extra.perRequest,
    othersPerRequest: others,
  };
}

/** y = a + b*k by least squares (a, b >= 0); a as a rate per client request. */
export function lineOverK(points) {
  if (!points.length) return { perIsolate: 0, perRequest: 0 };
  const mk = mean(points.map((p) => p.k));
  const my = mean(points.map((p) => p.y));
  const sxx = points.reduce((acc, p) => acc + (p.k - mk) ** 2, 0);
  let b = sxx > 0 ? points.reduce((acc, p) => acc + (p.k - mk) * (p.y - my), 0) / sxx : 0;
  b = Math.max(0, b);
  const a = Math.max(0, my - b * mk);
  return { perIsolate: b, perRequest: a / mean(points.map((p) => p.clientRps)) };
}

function hubOf(run) {
  const name = Object.keys(run.classes ?? {}).find(isHubClass);
  return name ? run.classes[name] : null;
}
/**
 * The stream root's counts in a run: the object named `root` when the bench
 * recorded names (`roles`), else the busiest StreamObject (without sockets,
 * the relays receive nothing).
 */
function rootOf(run) {
  const name = Object.keys(run.classes ?? {}).find(isStreamClass);
  if (!name) return null;
  const cls = run.classes[name];
  return cls.roles?.root ?? cls;
}
function aggOf(run) {
  const name = Object.keys(run.classes ?? {}).find(isAggregatorClass);
  return name ? run.classes[name] : null;
}
function sumOps(cls, pick) {
  if (!cls?.byOp) return 0;
  return Object.entries(cls.byOp).reduce((a, [op, v]) => a + (pick(op) ? v : 0), 0);
}

/**
 * Requests/s into the busiest shared object at `clientRps` client requests/s
 * and `perIsolate` requests/s per isolate, by tier, and their max.
 * Tiered assumptions (parameters, stated in docs/SCALING.md): the busiest
 * region holds `busiestRegionShare` of the isolates (its aggregators share
 * them by isolate hash), and the hub and the stream root hear from every
 * aggregator of `regions` regions.
 */
export function predict(model, clientRps, perIsolate, { busiestRegionShare = BUSIEST_REGION_SHARE, regions = model.regions ?? REGIONS } = {}) {
  const isolates = clientRps / perIsolate;
  const extra = model.extraPerIsolate * isolates + model.extraPerRequest * clientRps;
  const others = {};
  for (const [cls, perRequest] of Object.entries(model.othersPerRequest ?? {})) others[cls] = perRequest * clientRps;
  const othersMax = Math.max(0, ...Object.values(others));
  if (model.design === "flat") {
    const x = perIsolate / model.shards;
    const perIsolateReports = x / (1 + Math.min(x * model.periodS, model.batchMax));
    const hub = isolates * perIsolateReports + extra;
    return { isolates, hub, ...others, max: Math.max(hub, othersMax) };
  }
  const perRegion = model.aggregatorsPerRegion ?? model.aggregatorsPerColo;
  // The busiest region's isolates spread over its aggregators (by isolate
  // hash); never more aggregators than isolates.
  const regionIsolates = isolates * busiestRegionShare;
  const aggregator = regionIsolates / Math.min(perRegion, Math.max(1, regionIsolates)) / model.reportPeriodS;
  const activeAggregators = Math.min(regions * perRegion, isolates);
  const hub = activeAggregators / model.forwardPeriodS + countCallsPerSecond(model, clientRps) + extra;
  // Every aggregator publishes its isolates' events once per period: the
  // root's load follows the aggregators, not the traffic; each publication
  // it makes is one delivery per relay, at most one per ROOT_FLUSH_MS.
  const streamRoot = activeAggregators / (model.rootPeriodS ?? model.forwardPeriodS) + (model.rootOtherPerSecond ?? 0);
  const streamRelay = Math.min(streamRoot, 1000 / ROOT_FLUSH_MS);
  return { isolates, aggregator, hub, streamRoot, streamRelay, ...others, max: Math.max(aggregator, hub, streamRoot, streamRelay, othersMax) };
}

/**
 * The stream root's event-counting calls into the hub at `clientRps`: one
 * per ROOT_COUNT_EVERY_MS while events flow, more only when over COUNT_MAX
 * events wait per period. Without a measured events-per-request, one event
 * per request (conservative).
 */
export function countCallsPerSecond(model, clientRps) {
  const events = (model.eventsPerRequest ?? 1) * clientRps;
  if (events <= 0) return 0;
  return Math.max(1000 / ROOT_COUNT_EVERY_MS, events / COUNT_MAX);
}

/** The extrapolation table: every scale at every per-isolate rate. */
export function extrapolate(model, opts) {
  const rows = [];
  for (const clientRps of SCALES) {
    for (const perIsolate of PER_ISOLATE) rows.push({ clientRps, perIsolate, ...round(predict(model, clientRps, perIsolate, opts)) });
  }
  return rows;
}

function round(o) {
  const out = {};
  for (const [k, v] of Object.entries(o)) out[k] = Math.round(v * 10) / 10;
  return out;
}

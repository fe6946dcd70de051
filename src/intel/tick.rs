//! The analytics hub's tick, decided here and executed by `HubObject::alarm`
//! (`src/objects/hub.rs`), which only does the I/O: storage, KV, the other
//! shards, the stream root.
//!
//! A tick is two pure steps around its I/O (with `KvRun`, a pure helper that
//! orders the KV writes between them), each over the hub's loaded state
//! (`HubState`: the `Aggregator` and the `Meta` row it persists):
//!
//! 1. `begin` (at the alarm's start): the next alarm, the slides closed since
//!    the last tick (taken: `Aggregator::take_rollups`), the KV puts to make
//!    (`KvRun`: the retries first, then one key per metric per new slide,
//!    then `latest`), whether to fetch the other shards' windows (shard 0 of
//!    several) or to wake shard 0 (every other shard).
//! 2. The object runs the puts one at a time (`KvRun::next`, `KvRun::done`:
//!    when to stop trying and whether `latest` is due are decided there, as
//!    the outcomes come back), fetches or wakes.
//! 3. `finish` (after): the write log, the retries kept (at most
//!    `KV_PENDING_MAX`, the oldest dropped and counted), the alert rules
//!    judged on every slide closed since the last evaluation, in order, the
//!    insights that are news, the stream messages for each tag and the
//!    gauges, recorded into the current slide. The object sends the
//!    messages and persists the state (`Plan::slide`, the meta row).
//!
//! A slide is taken only `AnalyticsConfig::grace_ms` after its end, which
//! `config::grace_ms` derives from the analytics tiers' delays (a jittered
//! `REPORT_INTERVAL_MS` in the isolate, `AGGREGATOR_FORWARD_MS` and its retry
//! in the aggregator, the profile flushes' events): no slide is rolled up or
//! judged before its data can have arrived.
//!
//! Between the two steps the object may take forwards (the state is the one
//! in memory then): what `begin` took is not taken again, and `finish` works
//! on the window as it is when the I/O is done.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::alerting::{self, Rule, RuleState, Transition};
use super::analytics::{
    Aggregator, AnalyticsConfig, Gauges, ShardPart, Slide, SlidePoint, SpikeSpan, Totals, METRIC_NAMES,
};
use super::deltas::{Seen, TierCounters};
use super::fingerprint::{self, Sets};
use super::insights;
use super::keys;
use super::protocol::{iso, MessageType, ServerMessage};
use super::rollups;
use super::views::{Anomaly, Correlation, Pattern, Trend};
use super::wire::KvWrite;

/// Recent KV writes kept for inspection (the one-write-per-key-per-second check).
pub const KV_LOG: usize = 200;
/// Rollups whose KV write failed wait for the next tick (KV down for a while
/// loses nothing); at most this many are kept, the oldest dropped and counted.
pub const KV_PENDING_MAX: usize = 5_000;
/// Puts per tick (a Worker invocation has a subrequest limit), and the
/// failures in a row after which a tick stops trying (KV is down).
pub const KV_PUTS_PER_TICK: usize = 400;
pub const KV_FAILURES_IN_A_ROW: usize = 3;
/// KV allows one write per key per second: `latest` waits this long after its last write.
pub const LATEST_EVERY_MS: f64 = 1000.0;

/// One rollup write, kept until KV has taken it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingPut {
    pub key: String,
    pub body: String,
    pub v: f64,
    /// The weight `v` was measured over (`rollups::weight`), for the reader's merge.
    #[serde(default = "one")]
    pub n: f64,
}

fn one() -> f64 {
    1.0
}

/// The hub's non-slide state, persisted as one meta row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub hours: Vec<u64>,
    #[serde(default)]
    pub last_rolled: i64,
    #[serde(default)]
    pub totals: Totals,
    #[serde(default)]
    pub rules: Vec<RuleState>,
    #[serde(default)]
    pub pattern_keys: Vec<String>,
    /// `Aggregator::last_rolled` of the whole site's window (`Others::Merged`),
    /// kept by shard 0 (`None`: never evaluated).
    #[serde(default)]
    pub site_last_rolled: Option<i64>,
    #[serde(default)]
    pub site_evaluated_at: Option<f64>,
    #[serde(default)]
    pub site_failures: u64,
    /// This hub's shard index, kept from the first request that named it:
    /// an alarm may come without the object's name.
    #[serde(default)]
    pub shard: Option<u32>,
    /// Keys of the trends and correlations pushed last tick (`intel::insights`).
    #[serde(default)]
    pub trend_keys: Vec<String>,
    #[serde(default)]
    pub correlation_keys: Vec<String>,
    #[serde(default)]
    pub next_tick: Option<f64>,
    #[serde(default)]
    pub last_tick: Option<f64>,
    #[serde(default)]
    pub kv_writes: Vec<KvWrite>,
    #[serde(default)]
    pub kv_pending: Vec<PendingPut>,
    #[serde(default)]
    pub kv_failures: u64,
    #[serde(default)]
    pub kv_dropped: u64,
    /// `Aggregator::forgotten`.
    #[serde(default)]
    pub forgotten: BTreeMap<String, f64>,
    /// The aggregator objects this hub heard from and the highest summary
    /// of each it applied (`intel::deltas::receive`). Persisted in the same
    /// write as the slides those summaries changed, so the stored sequence
    /// is exactly what is stored: after a restart, what came after it is
    /// sent again and applied once.
    #[serde(default)]
    pub seen: BTreeMap<String, Seen>,
    /// The aggregator tier as this hub measured it.
    #[serde(default)]
    pub tier: TierCounters,
}

/// The hub's loaded state: the window and the meta row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HubState {
    pub agg: Aggregator,
    pub meta: Meta,
}

impl HubState {
    /// The state from its stored slides and meta row.
    pub fn load(slides: impl IntoIterator<Item = Slide>, meta: Meta) -> HubState {
        let mut agg = Aggregator::default();
        for slide in slides {
            agg.slides.insert(slide.start, slide);
        }
        agg.hours = meta.hours.clone();
        agg.last_rolled = meta.last_rolled;
        agg.totals = meta.totals.clone();
        agg.forgotten = meta.forgotten.clone();
        HubState { agg, meta }
    }

    /// Copies the window's scalars into the meta row, before it is persisted.
    pub fn sync_meta(&mut self) {
        self.meta.hours = self.agg.hours.clone();
        self.meta.last_rolled = self.agg.last_rolled;
        self.meta.totals = self.agg.totals.clone();
        self.meta.forgotten = self.agg.forgotten.clone();
    }
}

/// The configuration parts a tick reads.
#[derive(Debug, Clone, Copy)]
pub struct TickConfig<'a> {
    pub analytics: &'a AnalyticsConfig,
    /// `ALERT_RULES`.
    pub rules: &'a [Rule],
    /// `HUB_SHARDS`.
    pub shards: u32,
}

/// The start (seconds) of the slide holding `at_ms`.
pub fn slide_of(cfg: &AnalyticsConfig, at_ms: f64) -> i64 {
    let s = (at_ms / 1000.0).floor() as i64;
    s - s.rem_euclid(cfg.slide_s.max(1))
}

/// When the tick after `now` comes: the next slide boundary plus the grace
/// period (a slide closes `grace_ms` after its end).
pub fn next_tick(cfg: &AnalyticsConfig, now: f64) -> f64 {
    let slide_ms = cfg.slide_s as f64 * 1000.0;
    (((now - cfg.grace_ms) / slide_ms).floor() + 1.0) * slide_ms + cfg.grace_ms
}

/// Which window this shard's tick judges the alert rules and insights on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// Not shard 0: nothing judged (rules and insights are shard 0's).
    No,
    /// Shard 0 of one: its own window is the site's.
    Own,
    /// Shard 0 of several: its own window merged with shards `1..shards`'.
    Merged { shards: u32 },
}

/// What `begin` decided, for the object to do and for `finish`.
#[derive(Debug)]
pub struct Begun {
    /// Arm the alarm for this, first: whatever fails below, the next tick comes.
    pub next_alarm: f64,
    /// Fetch the windows of shards `1..n` (`HubOp::Part`), added up, and hand
    /// them to `finish` (`Others`): shard 0 of several.
    pub fetch_others: Option<u32>,
    /// Call shard 0 (`HubOp::Wake`): it may have no traffic of its own to arm its alarm.
    pub wake_global: bool,
    pub site: Site,
    started: f64,
    lag: Option<f64>,
    rollups: Vec<SlidePoint>,
}

/// The first step, at `now` (the alarm's start), for shard `shard`: arms
/// the next tick, takes the slides closed since the last one and the
/// retries, and returns the KV puts to run.
pub fn begin(state: &mut HubState, cfg: &TickConfig<'_>, shard: u32, now: f64) -> (Begun, KvRun) {
    let next_alarm = next_tick(cfg.analytics, now);
    let meta = &mut state.meta;
    let lag = meta.next_tick.map(|t| (now - t).max(0.0));
    meta.next_tick = Some(next_alarm);
    meta.last_tick = Some(now);
    let rollups = state.agg.take_rollups(cfg.analytics, now);
    // What KV refused last tick first, in order, then this tick's slides.
    let mut todo: VecDeque<PendingPut> = std::mem::take(&mut meta.kv_pending).into();
    todo.extend(rollup_puts(&rollups, shard));
    let latest_key = keys::latest_key(shard);
    let latest_at = meta.kv_writes.iter().rev().find(|w| w.key == latest_key).map(|w| w.at);
    let latest = rollups.last().map(|last| (latest_key, json!(last).to_string()));
    let kv = KvRun { todo, latest, latest_at, ..KvRun::default() };
    // Alert rules and insights are about the whole site: judged by shard 0
    // alone, over every shard's window (one call per other shard per
    // tick). The other shards only roll up their part into KV.
    let site = match (shard, cfg.shards) {
        (0, 1) => Site::Own,
        (0, n) => Site::Merged { shards: n },
        _ => Site::No,
    };
    let fetch_others = match site {
        Site::Merged { shards } => Some(shards),
        _ => None,
    };
    let begun = Begun { next_alarm, fetch_others, wake_global: shard != 0, site, started: now, lag, rollups };
    (begun, kv)
}

/// The KV puts for closed slides: one per metric per slide (each metric of
/// each slide under its hour bucket, `keys::slide_key`, the value in the
/// metadata too, so a page of a list is a page of points), under this shard's keys.
pub fn rollup_puts(rollups: &[SlidePoint], shard: u32) -> Vec<PendingPut> {
    let mut puts = Vec::new();
    for p in rollups {
        for name in METRIC_NAMES {
            let Some(v) = p.metric(name) else { continue };
            let body = if name == "origin_latency_ms" || name == "consult_latency_ms" {
                let l = if name == "origin_latency_ms" { &p.origin_latency } else { &p.consult_latency };
                json!({"value": v, "start": p.start, "p50": l.p50, "p95": l.p95, "p99": l.p99, "count": l.count})
            } else {
                json!({"value": v, "start": p.start})
            };
            let key = keys::slide_key(name, p.start, shard);
            puts.push(PendingPut { key, body: body.to_string(), v, n: rollups::weight(p, name) });
        }
    }
    puts
}

/// One KV write for the object to make (with `METRICS_TTL_DAYS`).
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    pub key: String,
    pub body: String,
    /// The key's metadata (`{"v", "n"}` of a rollup), if any.
    pub metadata: Option<Value>,
    /// A failure is kept for the next tick (a rollup: log it) or forgotten
    /// (`latest`, overwritten by the next tick anyway).
    pub kept: bool,
}

#[derive(Debug)]
enum Handed {
    Rollup(PendingPut),
    Latest(String),
}

/// A tick's KV writes, one at a time: `next` says what to write (or that
/// the tick is done with KV), `done` takes its outcome. Stops early when KV
/// keeps failing (`KV_FAILURES_IN_A_ROW`) or the tick has made
/// `KV_PUTS_PER_TICK` attempts; what is not written is kept, in order.
/// `latest` (the newest closed slide) comes last, if KV is not failing and
/// its last write is `LATEST_EVERY_MS` old.
#[derive(Debug, Default)]
pub struct KvRun {
    todo: VecDeque<PendingPut>,
    latest: Option<(String, String)>,
    latest_at: Option<f64>,
    handed: Option<Handed>,
    in_a_row: usize,
    attempts: usize,
    written: Vec<KvWrite>,
    pending: Vec<PendingPut>,
    failures: u64,
    began: Option<f64>,
    ended: Option<f64>,
}

impl KvRun {
    /// The next write, at `now`; `None`: the tick is done with KV.
    pub fn next(&mut self, now: f64) -> Option<Put> {
        self.began.get_or_insert(now);
        // `next` without `done`: the write's outcome is unknown; kept.
        if let Some(Handed::Rollup(put)) = self.handed.take() {
            self.pending.push(put);
        }
        while let Some(put) = self.todo.pop_front() {
            if self.in_a_row >= KV_FAILURES_IN_A_ROW || self.attempts >= KV_PUTS_PER_TICK {
                self.pending.push(put);
                continue;
            }
            self.attempts += 1;
            let out = Put {
                key: put.key.clone(),
                body: put.body.clone(),
                metadata: Some(json!({"v": put.v, "n": put.n})),
                kept: true,
            };
            self.handed = Some(Handed::Rollup(put));
            return Some(out);
        }
        if self.in_a_row < KV_FAILURES_IN_A_ROW && self.latest_at.is_none_or(|t| now - t >= LATEST_EVERY_MS) {
            if let Some((key, body)) = self.latest.take() {
                self.handed = Some(Handed::Latest(key.clone()));
                return Some(Put { key, body, metadata: None, kept: false });
            }
        }
        self.latest = None;
        self.ended.get_or_insert(now);
        None
    }

    /// The outcome of the write `next` handed out, taken by KV at `at`.
    pub fn done(&mut self, ok: bool, at: f64) {
        match self.handed.take() {
            Some(Handed::Rollup(put)) if ok => {
                self.in_a_row = 0;
                self.written.push(KvWrite { key: put.key, at });
            }
            Some(Handed::Rollup(put)) => {
                self.in_a_row += 1;
                self.failures += 1;
                self.pending.push(put);
            }
            Some(Handed::Latest(key)) if ok => self.written.push(KvWrite { key, at }),
            Some(Handed::Latest(_)) | None => {}
        }
    }

    /// KV could not be reached at all (no binding): one failure, every put kept.
    pub fn unavailable(&mut self) {
        self.failures += 1;
        if let Some(Handed::Rollup(put)) = self.handed.take() {
            self.pending.push(put);
        }
        self.pending.extend(self.todo.drain(..));
        self.latest = None;
    }

    /// How long the writes took, if any was taken.
    fn latency(&self) -> Option<f64> {
        match (self.written.is_empty(), self.began, self.ended) {
            (false, Some(b), Some(e)) => Some(e - b),
            _ => None,
        }
    }
}

/// The other shards' part of the site, for shard 0 of several (`Begun::fetch_others`).
#[derive(Debug)]
pub enum Others {
    /// Shards `1..n`'s windows, added up (`Aggregator::site`, `add_shard`).
    Merged(Box<Aggregator>),
    /// A shard did not answer (in time): nothing is judged this tick.
    Failed,
}

/// What the tick came to, for the object to execute.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Messages for the performance stream (`PERF_TAG`): the slides judged,
    /// then the alert transitions.
    pub perf: Vec<String>,
    /// Messages for the intelligence stream (`INTEL_TAG`): the insights that are news.
    pub intel: Vec<String>,
    pub transitions: Vec<Transition>,
    /// The hub's own measurements, recorded into the current slide.
    pub gauges: Gauges,
    /// The slide the gauges went into: persist it with the meta row.
    pub slide: i64,
    /// Retries dropped this tick (over `KV_PENDING_MAX`).
    pub kv_dropped: u64,
    /// The site's fingerprint judgement (`fingerprint::judge`), when this
    /// tick judged the site: the object publishes it to KV when it changed.
    pub fingerprints: Option<Sets>,
}

/// The second step, at `now`, when the KV writes are done and, for shard 0
/// of several, the other shards' window came back (`others`; `None` when not
/// fetched). `stream_clients` is the number of sockets on this object.
pub fn finish(
    state: &mut HubState,
    cfg: &TickConfig<'_>,
    begun: Begun,
    kv: KvRun,
    others: Option<Others>,
    stream_clients: usize,
    now: f64,
) -> Plan {
    let kv_ms = kv.latency();
    let meta = &mut state.meta;
    meta.kv_writes.extend(kv.written);
    let excess = meta.kv_writes.len().saturating_sub(KV_LOG);
    meta.kv_writes.drain(..excess);
    meta.kv_failures += kv.failures;
    let mut pending = kv.pending;
    let dropped = pending.len().saturating_sub(KV_PENDING_MAX);
    pending.drain(..dropped);
    meta.kv_dropped += dropped as u64;
    meta.kv_pending = pending;
    let evaluated = match (begun.site, others) {
        (Site::No, _) => {
            // Not shard 0: rule states and insight keys are shard 0's
            // (states left by a version that evaluated per shard go).
            meta.rules.clear();
            None
        }
        (Site::Own, _) => {
            // One shard: its window is the site's.
            meta.site_last_rolled = Some(state.agg.last_rolled);
            meta.site_evaluated_at = Some(now);
            Some(evaluate(cfg, &state.agg, begun.rollups, meta, now))
        }
        (Site::Merged { .. }, Some(Others::Merged(mut site))) => {
            let own: Vec<Slide> = state.agg.slides.values().cloned().collect();
            site.add_shard(&ShardPart { slides: &own, hours: &state.agg.hours, totals: &state.agg.totals });
            // Never evaluated before: from the oldest slide in the window.
            site.last_rolled = meta.site_last_rolled.unwrap_or(0);
            let points = site.take_rollups(cfg.analytics, begun.started);
            meta.site_last_rolled = Some(site.last_rolled);
            meta.site_evaluated_at = Some(now);
            Some(evaluate(cfg, &site, points, meta, now))
        }
        (Site::Merged { .. }, Some(Others::Failed) | None) => {
            // Nothing judged on a part of the site: the slides not rolled
            // up yet come with the next tick. Counted, and
            // `site_evaluated_at` shows how old the rule states are.
            meta.site_failures += 1;
            None
        }
    };
    let fingerprints = evaluated.as_ref().map(|(_, _, news)| news.fingerprints.clone());
    let (perf, intel, transitions) = match evaluated {
        Some((points, transitions, news)) => {
            let (perf, intel) = messages(&points, &transitions, &news, now);
            (perf, intel, transitions)
        }
        None => Default::default(),
    };
    let gauges = Gauges {
        alarm_lag_ms: begun.lag,
        kv_write_latency_ms: kv_ms,
        tick_duration_ms: Some(now - begun.started),
        stream_clients: Some(stream_clients as f64),
    };
    state.agg.record_gauges(cfg.analytics, gauges.clone(), now);
    state.agg.evict(cfg.analytics, now);
    Plan {
        perf,
        intel,
        transitions,
        gauges,
        slide: slide_of(cfg.analytics, now),
        kv_dropped: dropped as u64,
        fingerprints,
    }
}

/// What a tick found worth telling the intelligence stream.
struct News {
    patterns: Vec<Pattern>,
    anomalies: Vec<Anomaly>,
    trends: Vec<Trend>,
    correlations: Vec<Correlation>,
    /// Not stream news: what the request path flags (`fingerprint::judge`).
    fingerprints: Sets,
}

/// Alert rules on each slide closed since the last evaluation and what the
/// window says that it did not say last tick, from the whole site's window
/// (`agg`) and its slides closed since the last tick (`points`, pushed as metrics).
fn evaluate(
    cfg: &TickConfig<'_>,
    agg: &Aggregator,
    points: Vec<SlidePoint>,
    meta: &mut Meta,
    now: f64,
) -> (Vec<SlidePoint>, Vec<Transition>, News) {
    // A late tick judges the threat spike of every slide it rolled up.
    let closed: Vec<i64> = points.iter().map(|p| p.start).collect();
    let views = agg.views_with_spike(cfg.analytics, now, SpikeSpan::for_tick(cfg.analytics, agg, &closed, now));
    // Every slide closed since the last evaluation is judged, in order (a
    // tick that was late or could not evaluate loses none): the newest now,
    // the older ones at the time they closed.
    let slide_ms = cfg.analytics.slide_s as f64 * 1000.0;
    let mut transitions = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let at = if i + 1 == points.len() { now } else { (p.start as f64 * 1000.0 + slide_ms).min(now) };
        transitions.extend(alerting::evaluate(cfg.rules, &mut meta.rules, |m| p.metric(m), at));
    }
    let keys: Vec<String> = views.patterns.iter().map(Pattern::news_key).collect();
    let patterns: Vec<Pattern> =
        views.patterns.iter().filter(|p| !meta.pattern_keys.contains(&p.news_key())).cloned().collect();
    meta.pattern_keys = keys;
    let newest = points.last().map(|p| p.start);
    let anomalies: Vec<Anomaly> = views.anomalies.into_iter().filter(|a| Some(a.slide) == newest).collect();
    // Trends and correlations when what they say changes, not every tick.
    let (trends, keys) = insights::changed(&meta.trend_keys, views.trends.iter().map(|t| (t.news_key(), t)));
    meta.trend_keys = keys;
    let (correlations, keys) =
        insights::changed(&meta.correlation_keys, views.correlations.iter().map(|c| (c.news_key(), c)));
    meta.correlation_keys = keys;
    let fingerprints = fingerprint::judge(agg.slides.values().map(|s| &s.fingerprints));
    (points, transitions, News { patterns, anomalies, trends, correlations, fingerprints })
}

/// The tick's stream messages (the streams live on shard 0, the only shard
/// that judges): metrics and alert transitions for the performance stream,
/// insights for the intelligence stream.
fn messages(points: &[SlidePoint], transitions: &[Transition], news: &News, now: f64) -> (Vec<String>, Vec<String>) {
    let ts = iso(now);
    let mut perf: Vec<String> =
        points.iter().map(|p| ServerMessage::new(MessageType::PerformanceMetric, json!(p), &ts).to_text()).collect();
    perf.extend(transitions.iter().map(|t| ServerMessage::new(MessageType::Alert, json!(t), &ts).to_text()));
    let mut intel: Vec<String> = news.patterns.iter().map(|p| insight("pattern", p, &ts)).collect();
    intel.extend(news.anomalies.iter().map(|a| insight("anomaly", a, &ts)));
    intel.extend(news.trends.iter().map(|t| insight("trend", t, &ts)));
    intel.extend(news.correlations.iter().map(|c| insight("correlation", c, &ts)));
    (perf, intel)
}

/// One insight message: `{"kind": <kind>, <kind>: <the view>}`.
fn insight(kind: &str, v: &impl Serialize, ts: &str) -> String {
    ServerMessage::new(MessageType::Insight, json!({"kind": kind, kind: v}), ts).to_text()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::intel::alerting::{Op, State};
    use crate::intel::analytics::fixtures::threat_event;
    use crate::intel::analytics::Sample;
    use crate::intel::events::Priority;

    const SLIDE_MS: f64 = 60_000.0;
    const GRACE_MS: f64 = 2_500.0;
    /// A slide boundary (a multiple of 60 s).
    const T0: f64 = 1_780_000_020_000.0;
    const S0: i64 = (T0 / 1000.0) as i64;

    fn analytics() -> AnalyticsConfig {
        // These tests were written for the grace of one tier (2 x 1 s flushes
        // + 0.5 s); the tiers' grace is tested in config (`grace_ms`).
        AnalyticsConfig { grace_ms: 2500.0, ..AnalyticsConfig::default() }
    }

    /// Fires at once on any origin error, resolves at once.
    fn rules() -> Vec<Rule> {
        vec![Rule {
            name: "errors".into(),
            metric: "error_rate".into(),
            operator: Op::Gt,
            threshold: 0.05,
            duration: 0.0,
            severity: Priority::High,
            message: "errors".into(),
            cooldown: 0.0,
        }]
    }

    fn sample(at: f64, status: u16) -> Sample {
        Sample { at, subject: "198.51.100.7".into(), risk: 10, status, latency_ms: Some(20.0), ..Sample::default() }
    }

    /// A hub state with one request per `(at, status)`, ingested at `at`.
    fn state_with(samples: &[(f64, u16)]) -> HubState {
        let mut st = HubState::default();
        for (at, status) in samples {
            assert!(st.agg.ingest_sample(&analytics(), &sample(*at, *status), *at));
        }
        st
    }

    /// The object's KV loop: every put answered by `ok`, each at `now`.
    fn run(kv: &mut KvRun, now: f64, mut ok: impl FnMut(&Put) -> bool) -> Vec<Put> {
        let mut puts = Vec::new();
        while let Some(put) = kv.next(now) {
            kv.done(ok(&put), now);
            puts.push(put);
        }
        puts
    }

    fn types(texts: &[String]) -> Vec<String> {
        texts
            .iter()
            .map(|t| {
                let v: Value = serde_json::from_str(t).unwrap();
                v["type"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// The rollup keys of a slide with requests and no gauges (no consult
    /// latency either: every test request was answered from the cache).
    fn metric_keys(start: i64, shard: u32) -> Vec<String> {
        const NOT_MEASURED: [&str; 5] =
            ["consult_latency_ms", "stream_clients", "alarm_lag_ms", "kv_write_latency_ms", "tick_duration_ms"];
        METRIC_NAMES.iter().filter(|m| !NOT_MEASURED.contains(m)).map(|m| keys::slide_key(m, start, shard)).collect()
    }

    #[test]
    fn next_tick_is_the_next_boundary_plus_grace() {
        let cfg = analytics();
        assert_eq!(next_tick(&cfg, T0), T0 + GRACE_MS);
        assert_eq!(next_tick(&cfg, T0 + GRACE_MS), T0 + SLIDE_MS + GRACE_MS);
        assert_eq!(next_tick(&cfg, T0 + 30_000.0), T0 + SLIDE_MS + GRACE_MS);
        assert_eq!(slide_of(&cfg, T0 + 59_999.0), S0);
    }

    #[test]
    fn first_tick_rolls_up_writes_latest_and_judges() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 1 };
        let mut st = state_with(&[(T0 + 1_000.0, 200), (T0 + 2_000.0, 500)]);
        let now = T0 + SLIDE_MS + GRACE_MS;
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        assert_eq!(begun.next_alarm, T0 + 2.0 * SLIDE_MS + GRACE_MS);
        assert_eq!((begun.fetch_others, begun.wake_global, begun.site), (None, false, Site::Own));
        assert_eq!((st.meta.next_tick, st.meta.last_tick), (Some(begun.next_alarm), Some(now)));
        assert_eq!(st.agg.last_rolled, S0);
        let puts = run(&mut kv, now + 5.0, |_| true);
        // One key per metric of the slide, then `latest` (the slide's point).
        let keys_written: Vec<&str> = puts.iter().map(|p| p.key.as_str()).collect();
        let mut expected = metric_keys(S0, 0);
        expected.push(keys::latest_key(0));
        assert_eq!(keys_written, expected);
        let rollup = &puts[0];
        assert_eq!(rollup.key, keys::slide_key("request_count", S0, 0));
        let body: Value = serde_json::from_str(&rollup.body).unwrap();
        assert_eq!(body, json!({"value": 2.0, "start": S0}));
        assert_eq!(rollup.metadata, Some(json!({"v": 2.0, "n": 1.0})));
        assert!(rollup.kept);
        let latest = puts.last().unwrap();
        assert_eq!((latest.metadata.clone(), latest.kept), (None, false));
        let point: SlidePoint = serde_json::from_str(&latest.body).unwrap();
        assert_eq!((point.start, point.requests), (S0, 2));

        let plan = finish(&mut st, &parts, begun, kv, None, 3, now + 10.0);
        assert_eq!(st.meta.kv_writes.len(), puts.len());
        assert!(st.meta.kv_pending.is_empty());
        assert_eq!((st.meta.site_last_rolled, st.meta.site_evaluated_at), (Some(S0), Some(now + 10.0)));
        // Half the requests failed: the rule fires, judged now (the newest slide).
        assert_eq!(plan.transitions.len(), 1);
        assert_eq!((plan.transitions[0].to, plan.transitions[0].at), (State::Firing, now + 10.0));
        assert_eq!(types(&plan.perf), ["performance_metric", "alert"]);
        let metric: Value = serde_json::from_str(&plan.perf[0]).unwrap();
        assert_eq!(metric["timestamp"], iso(now + 10.0));
        assert_eq!(metric["data"]["start"], S0);
        assert_eq!(
            plan.gauges,
            Gauges {
                alarm_lag_ms: None,
                kv_write_latency_ms: Some(0.0),
                tick_duration_ms: Some(10.0),
                stream_clients: Some(3.0)
            }
        );
        assert_eq!(plan.slide, slide_of(&cfg, now + 10.0));
        assert_eq!(st.agg.slides[&plan.slide].gauges, plan.gauges);
        assert_eq!(plan.kv_dropped, 0);

        // The same tick again (a doubled alarm): nothing rolled up twice.
        let (_, mut kv) = begin(&mut st, &parts, 0, now + 10.0);
        assert!(run(&mut kv, now + 10.0, |_| true).is_empty());
    }

    #[test]
    fn a_late_tick_rolls_up_every_slide_and_judges_them_in_order() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 1 };
        // Errors in the first slide, none in the next two.
        let mut st = state_with(&[(T0 + 1_000.0, 500), (T0 + SLIDE_MS + 1_000.0, 200), (T0 + 2.0 * SLIDE_MS, 200)]);
        st.agg.last_rolled = S0 - 60;
        st.meta.next_tick = Some(T0 + SLIDE_MS + GRACE_MS);
        let now = T0 + 3.0 * SLIDE_MS + GRACE_MS + 10.0;
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        assert_eq!(begun.next_alarm, T0 + 4.0 * SLIDE_MS + GRACE_MS);
        let puts = run(&mut kv, now, |_| true);
        let mut expected: Vec<String> = [S0, S0 + 60, S0 + 120].iter().flat_map(|s| metric_keys(*s, 0)).collect();
        expected.push(keys::latest_key(0));
        assert_eq!(puts.iter().map(|p| p.key.clone()).collect::<Vec<_>>(), expected);
        let latest: SlidePoint = serde_json::from_str(&puts.last().unwrap().body).unwrap();
        assert_eq!(latest.start, S0 + 120);

        let plan = finish(&mut st, &parts, begun, kv, None, 0, now);
        assert_eq!(plan.gauges.alarm_lag_ms, Some(2.0 * SLIDE_MS + 10.0));
        // Fired at the first slide's close, resolved on the second's: in order.
        let seen: Vec<(State, f64)> = plan.transitions.iter().map(|t| (t.to, t.at)).collect();
        assert_eq!(seen, [(State::Firing, T0 + SLIDE_MS), (State::Resolved, T0 + 2.0 * SLIDE_MS)]);
        assert_eq!(
            types(&plan.perf),
            ["performance_metric", "performance_metric", "performance_metric", "alert", "alert"]
        );
        assert_eq!(st.meta.site_last_rolled, Some(S0 + 120));
    }

    /// The spike in a slide is pushed by a tick two slides late too: the
    /// tick judges every slide it rolled up (`SpikeSpan::for_tick`). Under
    /// the API's rule at that time ("the newest closed slide on"), and the
    /// wall-time rule before it, the spike's slide is left out.
    #[test]
    fn a_late_tick_pushes_the_spike_of_a_slide_it_missed() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 1 };
        let mut st = HubState::default();
        for i in 0..3 {
            let at = T0 + 50_000.0;
            st.agg.ingest_event(&cfg, &threat_event(&format!("198.51.100.{i}"), at, 90.0), at);
        }
        st.agg.last_rolled = S0 - 60;
        let now = T0 + 3.0 * SLIDE_MS + GRACE_MS + 10.0;
        assert!(!st.agg.views(&cfg, now).patterns.iter().any(|p| p.kind.as_str() == "threat_spike"));
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        run(&mut kv, now, |_| true);
        let plan = finish(&mut st, &parts, begun, kv, None, 0, now);
        let spikes = plan.intel.iter().filter(|t| t.contains(r#""kind":"threat_spike""#)).count();
        assert_eq!(spikes, 1, "{:?}", plan.intel);
    }

    /// A late tick judges each slide it rolled up as when it closed: one
    /// high-threat event every other slide is no spike, though the slides
    /// since the last tick hold three (MIN_PATTERN_SUPPORT).
    #[test]
    fn a_late_tick_does_not_make_a_spike_of_sparse_events() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 1 };
        let mut st = HubState::default();
        for (i, k) in [0.0, 2.0, 4.0].iter().enumerate() {
            let at = T0 + k * SLIDE_MS + 1_000.0;
            st.agg.ingest_event(&cfg, &threat_event(&format!("198.51.100.{i}"), at, 90.0), at);
        }
        st.agg.last_rolled = S0 - 60;
        let now = T0 + 4.0 * SLIDE_MS + GRACE_MS + 10.0; // rolls up four slides
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        assert_eq!(begun.rollups.len(), 4);
        run(&mut kv, now, |_| true);
        let plan = finish(&mut st, &parts, begun, kv, None, 0, now);
        assert!(!plan.intel.iter().any(|t| t.contains(r#""kind":"threat_spike""#)), "{:?}", plan.intel);
    }

    #[test]
    fn kv_failures_are_kept_and_retried_first() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 1 };
        let mut st = state_with(&[(T0 + 1_000.0, 200), (T0 + SLIDE_MS + 1_000.0, 200)]);
        let now = T0 + SLIDE_MS + GRACE_MS;
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        // KV is down: three failures in a row, then no more tries, no `latest`.
        let puts = run(&mut kv, now, |_| false);
        assert_eq!(puts.len(), KV_FAILURES_IN_A_ROW);
        let plan = finish(&mut st, &parts, begun, kv, None, 0, now);
        let first = metric_keys(S0, 0);
        assert_eq!(st.meta.kv_pending.iter().map(|p| p.key.clone()).collect::<Vec<_>>(), first);
        assert_eq!((st.meta.kv_failures, st.meta.kv_dropped), (KV_FAILURES_IN_A_ROW as u64, 0));
        assert!(st.meta.kv_writes.is_empty());
        assert_eq!(plan.gauges.kv_write_latency_ms, None);
        // The slide is judged anyway.
        assert_eq!(types(&plan.perf), ["performance_metric"]);

        // Next tick: the retries first, in order, then the new slide, then `latest`.
        let now = now + SLIDE_MS;
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        let puts = run(&mut kv, now, |_| true);
        let written: Vec<String> = puts.iter().map(|p| p.key.clone()).collect();
        assert_eq!(written[..first.len()], first[..]);
        // The second slide also carries the first tick's gauges.
        let second = &written[first.len()..written.len() - 1];
        let at_second = format!(":{:010}:", S0 + 60);
        assert!(second.len() > 10 && second.iter().all(|k| k.contains(&at_second)));
        assert!(second.contains(&keys::slide_key("tick_duration_ms", S0 + 60, 0)));
        assert_eq!(written.last(), Some(&keys::latest_key(0)));
        finish(&mut st, &parts, begun, kv, None, 0, now);
        assert!(st.meta.kv_pending.is_empty());
        assert_eq!(st.meta.kv_failures, KV_FAILURES_IN_A_ROW as u64);
        assert_eq!(st.meta.kv_writes.len(), written.len());
    }

    #[test]
    fn one_failure_among_successes_is_kept_and_latest_still_written() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 1 };
        let mut st = state_with(&[(T0 + 1_000.0, 200)]);
        let now = T0 + SLIDE_MS + GRACE_MS;
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        let failing = keys::slide_key("request_count", S0, 0);
        let puts = run(&mut kv, now, |p| p.key != failing);
        assert_eq!(puts.last().unwrap().key, keys::latest_key(0));
        finish(&mut st, &parts, begun, kv, None, 0, now);
        assert_eq!(st.meta.kv_pending.iter().map(|p| p.key.clone()).collect::<Vec<_>>(), [failing]);
        assert_eq!(st.meta.kv_failures, 1);
    }

    #[test]
    fn kv_unavailable_keeps_everything_and_retries_past_the_limit_are_dropped() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 1 };
        let mut st = state_with(&[(T0 + 1_000.0, 200)]);
        let old = PendingPut { key: "old".into(), body: "{}".into(), v: 1.0, n: 1.0 };
        st.meta.kv_pending = vec![old; KV_PENDING_MAX];
        let now = T0 + SLIDE_MS + GRACE_MS;
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        kv.unavailable();
        assert_eq!(kv.next(now), None);
        let plan = finish(&mut st, &parts, begun, kv, None, 0, now);
        let new = metric_keys(S0, 0);
        // The oldest retries go, counted; this tick's puts are kept, last.
        assert_eq!(plan.kv_dropped, new.len() as u64);
        assert_eq!((st.meta.kv_dropped, st.meta.kv_failures), (new.len() as u64, 1));
        assert_eq!(st.meta.kv_pending.len(), KV_PENDING_MAX);
        assert_eq!(
            st.meta.kv_pending[KV_PENDING_MAX - new.len()..].iter().map(|p| p.key.clone()).collect::<Vec<_>>(),
            new
        );
    }

    #[test]
    fn puts_per_tick_are_bounded() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 1 };
        let mut st = HubState::default();
        let old = PendingPut { key: "old".into(), body: "{}".into(), v: 1.0, n: 1.0 };
        st.meta.kv_pending = vec![old; KV_PUTS_PER_TICK + 10];
        let (begun, mut kv) = begin(&mut st, &parts, 0, T0);
        assert_eq!(run(&mut kv, T0, |_| true).len(), KV_PUTS_PER_TICK);
        finish(&mut st, &parts, begun, kv, None, 0, T0);
        assert_eq!(st.meta.kv_pending.len(), 10);
    }

    #[test]
    fn latest_is_written_at_most_once_a_second() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 1 };
        let now = T0 + SLIDE_MS + GRACE_MS;
        let latest = keys::latest_key(0);
        for (ago, written) in [(500.0, false), (999.0, false), (1_000.0, true), (60_000.0, true)] {
            let mut st = state_with(&[(T0 + 1_000.0, 200)]);
            st.meta.kv_writes = vec![KvWrite { key: latest.clone(), at: now - ago }];
            let (begun, mut kv) = begin(&mut st, &parts, 0, now);
            let puts = run(&mut kv, now, |_| true);
            assert_eq!(puts.iter().any(|p| p.key == latest), written, "{ago} ms after the last write");
            finish(&mut st, &parts, begun, kv, None, 0, now);
        }
        // The check is made when `latest` comes up, after the rollups: time has passed.
        let mut st = state_with(&[(T0 + 1_000.0, 200)]);
        st.meta.kv_writes = vec![KvWrite { key: latest.clone(), at: now - 500.0 }];
        let (_, mut kv) = begin(&mut st, &parts, 0, now);
        let mut handed = Vec::new();
        let mut t = now;
        while let Some(put) = kv.next(t) {
            kv.done(true, t);
            handed.push(put.key);
            t += 100.0;
        }
        assert_eq!(handed.last(), Some(&latest));
        // A failed `latest` is neither kept nor counted.
        let mut st = state_with(&[(T0 + 1_000.0, 200)]);
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        run(&mut kv, now, |p| p.key != latest);
        finish(&mut st, &parts, begun, kv, None, 0, now);
        assert!(st.meta.kv_pending.is_empty());
        assert_eq!(st.meta.kv_failures, 0);
        assert!(!st.meta.kv_writes.iter().any(|w| w.key == latest));
    }

    #[test]
    fn shard_zero_judges_the_site_after_a_failed_fetch_in_order() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 2 };
        // Shard 0 has one quiet request per slide; shard 1 has the errors.
        let mut st = state_with(&[(T0 + 1_000.0, 200), (T0 + SLIDE_MS + 1_000.0, 200)]);
        let other = state_with(&[(T0 + 2_000.0, 500), (T0 + 3_000.0, 500), (T0 + SLIDE_MS + 2_000.0, 200)]);
        let now = T0 + SLIDE_MS + GRACE_MS;
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        assert_eq!((begun.fetch_others, begun.wake_global), (Some(2), false));
        run(&mut kv, now, |_| true);
        let plan = finish(&mut st, &parts, begun, kv, Some(Others::Failed), 0, now);
        // Nothing judged, counted; its own rollups are written all the same.
        assert!(plan.perf.is_empty() && plan.intel.is_empty() && plan.transitions.is_empty());
        assert_eq!((st.meta.site_failures, st.meta.site_last_rolled, st.meta.site_evaluated_at), (1, None, None));
        assert!(st.meta.kv_writes.iter().any(|w| w.key == keys::slide_key("request_count", S0, 0)));

        let now = now + SLIDE_MS;
        let (begun, mut kv) = begin(&mut st, &parts, 0, now);
        run(&mut kv, now, |_| true);
        let mut site = Aggregator::site();
        let slides: Vec<Slide> = other.agg.slides.values().cloned().collect();
        site.add_shard(&ShardPart { slides: &slides, hours: &other.agg.hours, totals: &other.agg.totals });
        let plan = finish(&mut st, &parts, begun, kv, Some(Others::Merged(Box::new(site))), 0, now);
        // Both slides, judged in order on the merged window: 2 errors of 3
        // requests fire the rule at the first slide's close, then it resolves.
        let seen: Vec<(State, f64)> = plan.transitions.iter().map(|t| (t.to, t.at)).collect();
        assert_eq!(seen, [(State::Firing, T0 + SLIDE_MS), (State::Resolved, now)]);
        assert_eq!(types(&plan.perf), ["performance_metric", "performance_metric", "alert", "alert"]);
        let first: Value = serde_json::from_str(&plan.perf[0]).unwrap();
        assert_eq!((first["data"]["start"].as_i64(), first["data"]["requests"].as_u64()), (Some(S0), Some(3)));
        assert_eq!((st.meta.site_failures, st.meta.site_last_rolled), (1, Some(S0 + 60)));
        assert_eq!(st.meta.site_evaluated_at, Some(now));
    }

    #[test]
    fn another_shard_wakes_shard_zero_and_judges_nothing() {
        let (cfg, rules) = (analytics(), rules());
        let parts = TickConfig { analytics: &cfg, rules: &rules, shards: 2 };
        let mut st = state_with(&[(T0 + 1_000.0, 500)]);
        // Rule states left by a version that judged on every shard.
        st.meta.rules = vec![RuleState { rule: "errors".into(), state: State::Firing, since: T0, value: None }];
        let now = T0 + SLIDE_MS + GRACE_MS;
        let (begun, mut kv) = begin(&mut st, &parts, 1, now);
        assert_eq!((begun.fetch_others, begun.wake_global, begun.site), (None, true, Site::No));
        let puts = run(&mut kv, now, |_| true);
        let mut expected = metric_keys(S0, 1);
        expected.push(keys::latest_key(1));
        assert_eq!(puts.iter().map(|p| p.key.clone()).collect::<Vec<_>>(), expected);
        let plan = finish(&mut st, &parts, begun, kv, None, 0, now);
        assert!(plan.perf.is_empty() && plan.intel.is_empty() && plan.transitions.is_empty());
        assert!(st.meta.rules.is_empty());
        assert_eq!((st.meta.site_last_rolled, st.meta.site_failures), (None, 0));
        assert_eq!(st.agg.slides[&plan.slide].gauges, plan.gauges);
    }

    #[test]
    fn state_loads_and_syncs_its_meta_row() {
        let meta = Meta { last_rolled: S0, hours: vec![1; 24], ..Meta::default() };
        let mut st = HubState::load(
            [Slide { start: S0, ..Slide::default() }, Slide { start: S0 + 60, ..Slide::default() }],
            meta,
        );
        assert_eq!((st.agg.last_rolled, st.agg.slides.len(), st.agg.hours.len()), (S0, 2, 24));
        st.agg.last_rolled = S0 + 60;
        st.sync_meta();
        assert_eq!(st.meta.last_rolled, S0 + 60);
        // The row's JSON is the one older versions wrote.
        let row: Meta = serde_json::from_str(r#"{"kv_pending":[{"key":"k","body":"b","v":1.0}]}"#).unwrap();
        assert_eq!(row.kv_pending[0].n, 1.0);
    }
}

//! `HubObject`: the analytics hub (one per shard, `HUB_SHARDS`; shard 0 is
//! named `global`) and, on `global`, the fan-out of the intelligence and
//! performance streams and the place where stream tickets are spent (the
//! edge issues and verifies them without storage: `intel::ticket`).
//!
//! - `Report`: batched request samples from the isolates (one call per
//!   isolate per flush, never per request), ingested into per-slide buckets.
//! - `Publish`: profile events, fanned out to stream subscribers and counted.
//! - The alarm ticks every `ANALYTICS_SLIDE_SECONDS`: it re-arms first (so it
//!   always does) and rolls up this shard's slides closed since the last tick
//!   into its own KV keys. Shard 0 then evaluates the alert rules and finds
//!   the insights on the whole site's window (its own merged with every other
//!   shard's, fetched with `Window`: `merge_shards`) and pushes them, with
//!   the site's metrics, to the streams; the other shards wake it (`Wake`),
//!   as it may have no traffic of its own. A late, doubled or post-restart
//!   tick neither double-counts nor loses a slide (`Aggregator::take_rollups`,
//!   `Meta::site_last_rolled`).
//!
//! Storage (SQLite): `slides` (one row per slide in the window), `meta`
//! (aggregator scalars, alert rule states, KV write log, next tick),
//! `spent_tickets` (nonces of used tickets until they expire). Memory caches the loaded state; `new` only registers the ping
//! auto-response, so a hibernated or evicted hub loses nothing.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State, WebSocket,
    WebSocketIncomingMessage,
};

use crate::bindings;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::Error;
use crate::intel::alerting::{self, RuleState, Transition};
use crate::intel::analytics::{Aggregator, Gauges, ShardPart, Slide, SlidePoint, METRIC_NAMES};
use crate::intel::insights;
use crate::intel::keys::{self, hub_name, shard_index};
use crate::intel::protocol::{MessageType, ServerMessage};
use crate::intel::rollups;
use crate::intel::views::{Anomaly, Correlation, Pattern, Trend};
use crate::intel::wire::{
    HubOp, KvWrite, SitePart, Spent, TicketKey, WindowState, BEARER_HEADER, INTEL_TAG, PERF_TAG, STREAM_HEADER,
    TICKET_EXPIRES_HEADER, TICKET_NONCE_HEADER,
};
use crate::log::Log;
use crate::platform::{self, reply};

use super::sockets::{self, iso};
use super::Entry;

/// Recent KV writes kept for inspection (the one-write-per-key-per-second check).
const KV_LOG: usize = 200;
/// Rollups whose KV write failed wait for the next tick (KV down for a while
/// loses nothing); at most this many are kept, the oldest dropped and counted.
const KV_PENDING_MAX: usize = 5_000;
/// Puts per tick (a Worker invocation has a subrequest limit), and the
/// failures in a row after which a tick stops trying (KV is down).
const KV_PUTS_PER_TICK: usize = 400;
const KV_FAILURES_IN_A_ROW: usize = 3;

/// One rollup write, kept until KV has taken it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingPut {
    key: String,
    body: String,
    v: f64,
    /// The weight `v` was measured over (`rollups::weight`), for the reader's merge.
    #[serde(default = "one")]
    n: f64,
}

fn one() -> f64 {
    1.0
}

/// The hub's non-slide state, persisted as one meta row.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    #[serde(default)]
    hours: Vec<u64>,
    #[serde(default)]
    last_rolled: i64,
    #[serde(default)]
    totals: crate::intel::analytics::Totals,
    #[serde(default)]
    rules: Vec<RuleState>,
    #[serde(default)]
    pattern_keys: Vec<String>,
    /// `Aggregator::last_rolled` of the whole site's window (`other_shards`),
    /// kept by shard 0 (`None`: never evaluated).
    #[serde(default)]
    site_last_rolled: Option<i64>,
    #[serde(default)]
    site_evaluated_at: Option<f64>,
    #[serde(default)]
    site_failures: u64,
    /// This hub's shard index, kept from the first request that named it
    /// (`shard`): an alarm may come without the object's name.
    #[serde(default)]
    shard: Option<u32>,
    /// Keys of the trends and correlations pushed last tick (`intel::insights`).
    #[serde(default)]
    trend_keys: Vec<String>,
    #[serde(default)]
    correlation_keys: Vec<String>,
    #[serde(default)]
    next_tick: Option<f64>,
    #[serde(default)]
    last_tick: Option<f64>,
    #[serde(default)]
    kv_writes: Vec<KvWrite>,
    #[serde(default)]
    kv_pending: Vec<PendingPut>,
    #[serde(default)]
    kv_failures: u64,
    #[serde(default)]
    kv_dropped: u64,
    /// `Aggregator::forgotten`.
    #[serde(default)]
    forgotten: std::collections::BTreeMap<String, f64>,
}

#[derive(Deserialize)]
struct DataRow {
    data: String,
}

#[derive(Deserialize)]
struct KeyRow {
    key: String,
}

#[derive(Deserialize)]
struct CountRow {
    n: f64,
}

struct Loaded {
    agg: Aggregator,
    meta: Meta,
}

#[durable_object]
pub struct HubObject {
    state: State,
    env: Env,
    loaded: RefCell<Option<Loaded>>,
    /// The intelligence stream's sockets and filters, kept between events.
    subscribers: sockets::Subscribers,
}

impl DurableObject for HubObject {
    fn new(state: State, env: Env) -> Self {
        sockets::enable_auto_pong(&state);
        HubObject { state, env, loaded: RefCell::new(None), subscribers: sockets::Subscribers::default() }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            Err(e) => return super::config_invalid(&self.state, Entry::Fetch, &e).await,
        };
        if req.headers().get("upgrade")?.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            let tag = match req.headers().get(STREAM_HEADER)?.as_deref() {
                Some(PERF_TAG) => PERF_TAG,
                _ => INTEL_TAG,
            };
            let bearer = req.headers().get(BEARER_HEADER)?.is_some();
            // A ticket the edge verified is spent here, where the socket lands.
            if let Some(nonce) = req.headers().get(TICKET_NONCE_HEADER)? {
                let expires =
                    req.headers().get(TICKET_EXPIRES_HEADER)?.and_then(|e| e.parse::<f64>().ok()).unwrap_or(0.0);
                let sql = self.state.storage().sql();
                migrate(&sql)?;
                if !spend_ticket(&sql, &nonce, expires, now_ms())? {
                    return reply(
                        401,
                        &json!({"error": "unauthorized", "message": "this stream ticket was already used"}),
                    );
                }
            }
            return sockets::accept(&self.state, tag, &self.subscribers, config.streams.max_clients, bearer);
        }
        let op: HubOp = match platform::read_op(&mut req).await {
            Ok(op) => op,
            Err(e) => return reply(400, &json!({"error": "bad_op", "message": e.to_string()})),
        };
        let sql = self.state.storage().sql();
        migrate(&sql)?;
        match op {
            HubOp::Report { samples, rejected, dropped, updates, alerts } => {
                sockets::broadcast(&self.state, INTEL_TAG, &self.subscribers, &updates, &alerts);
                let now = now_ms();
                let accepted = self.with_state(&sql, |l, touched| {
                    let mut n = 0;
                    for s in &samples {
                        if l.agg.ingest_sample(&config.analytics, s, now) {
                            n += 1;
                            touched.insert(slide_of(&config, s.at));
                        }
                    }
                    if rejected > 0 {
                        l.agg.count_rejected(&config.analytics, rejected, now);
                        touched.insert(slide_of(&config, now));
                    }
                    if dropped > 0 {
                        l.agg.count_dropped(&config.analytics, dropped, now);
                        touched.insert(slide_of(&config, now));
                    }
                    for u in &updates {
                        if l.agg.ingest_event(&config.analytics, u, now) {
                            touched.insert(slide_of(&config, u.event.timestamp.min(now)));
                        }
                    }
                    n
                })?;
                self.ensure_alarm(&config).await?;
                reply(200, &json!({"accepted": accepted, "dropped": samples.len() - accepted}))
            }
            HubOp::Publish { updates, alerts } => {
                let delivered = sockets::broadcast(&self.state, INTEL_TAG, &self.subscribers, &updates, &alerts);
                let now = now_ms();
                self.with_state(&sql, |l, touched| {
                    for u in &updates {
                        if l.agg.ingest_event(&config.analytics, u, now) {
                            touched.insert(slide_of(&config, u.event.timestamp.min(now)));
                        }
                    }
                })?;
                self.ensure_alarm(&config).await?;
                reply(200, &json!({"delivered": delivered}))
            }
            HubOp::Window => {
                let now = now_ms();
                self.ensure_loaded(&sql)?;
                let loaded = self.loaded.borrow();
                let Some(l) = loaded.as_ref() else { return reply(500, &json!({"error": "not_loaded"})) };
                let window = WindowState {
                    slides: l.agg.window(&config.analytics, now, false).into_iter().cloned().collect(),
                    hours: l.agg.hours.clone(),
                    totals: l.agg.totals.clone(),
                    rules: l.meta.rules.clone(),
                    stream_clients: sockets::sockets(&self.state, INTEL_TAG).len()
                        + sockets::sockets(&self.state, PERF_TAG).len(),
                    intel_clients: sockets::sockets(&self.state, INTEL_TAG).len(),
                    last_tick: l.meta.last_tick,
                    next_tick: l.meta.next_tick,
                    kv_writes: l.meta.kv_writes.clone(),
                    kv_pending: l.meta.kv_pending.len(),
                    kv_failures: l.meta.kv_failures,
                    kv_dropped: l.meta.kv_dropped,
                    site_evaluated_at: l.meta.site_evaluated_at,
                    site_failures: l.meta.site_failures,
                };
                reply(200, &window)
            }
            HubOp::Part => {
                let now = now_ms();
                self.ensure_loaded(&sql)?;
                let loaded = self.loaded.borrow();
                let Some(l) = loaded.as_ref() else { return reply(500, &json!({"error": "not_loaded"})) };
                let part = SitePart {
                    slides: l.agg.window(&config.analytics, now, false).into_iter().cloned().collect(),
                    hours: l.agg.hours.clone(),
                    totals: l.agg.totals.clone(),
                };
                reply(200, &part)
            }
            HubOp::Wake => {
                self.ensure_loaded(&sql)?;
                self.ensure_alarm(&config).await?;
                reply(200, &json!({"awake": true}))
            }
            HubOp::TicketKey => {
                let rows = sql.exec("SELECT key FROM ticket_key WHERE id = 1", None)?.to_array::<KeyRow>()?;
                let key = match rows.into_iter().next() {
                    Some(r) => r.key,
                    None => {
                        let mut raw = [0u8; crate::intel::ticket::KEY_BYTES];
                        getrandom::fill(&mut raw).map_err(|e| worker::Error::RustError(e.to_string()))?;
                        let key = hex::encode(raw);
                        sql.exec("INSERT INTO ticket_key (id, key) VALUES (1, ?)", vec![key.clone().into()])?;
                        key
                    }
                };
                reply(200, &TicketKey { key })
            }
            HubOp::SpendTicket { nonce, expires } => {
                let valid = spend_ticket(&sql, &nonce, expires, now_ms())?;
                reply(200, &Spent { valid })
            }
            HubOp::Forget { subject, at } => {
                let changed = self.with_state(&sql, |l, touched| {
                    let starts = l.agg.forget(&subject, at);
                    let n = starts.len();
                    touched.extend(starts);
                    n
                })?;
                reply(200, &json!({"slidesChanged": changed}))
            }
        }
    }

    async fn alarm(&self) -> Result<Response> {
        // The tick's one log line (printed when it ends, if anything failed).
        let log = Log::new("hub.alarm");
        let started = now_ms();
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            // Keep ticking (a fixed deploy resumes); do no work on a bad config.
            Err(e) => return super::config_invalid(&self.state, Entry::Alarm, &e).await,
        };
        let sql = self.state.storage().sql();
        migrate(&sql)?;
        self.ensure_loaded(&sql)?;
        let Some(shard) = self.shard() else {
            // Never seen by name (only a request names it): which keys to write
            // and whether to evaluate the site are unknown. The next request
            // (every report names the object) arms the tick again.
            log.error("unnamed", "the alarm came without its name; skipped");
            return Response::ok("unnamed");
        };
        // Re-arm first: whatever fails below, the next tick comes.
        let slide_ms = config.analytics.slide_s as f64 * 1000.0;
        let grace = config.analytics.grace_ms;
        let next = (((started - grace) / slide_ms).floor() + 1.0) * slide_ms + grace;
        self.state.storage().set_alarm(worker::ScheduledTime::new(js_sys::Date::new(&next.into()))).await?;
        let (lag, rollups, pending) = {
            let mut loaded = self.loaded.borrow_mut();
            let Some(l) = loaded.as_mut() else { return Response::ok("not loaded") };
            let lag = l.meta.next_tick.map(|t| (started - t).max(0.0));
            l.meta.next_tick = Some(next);
            l.meta.last_tick = Some(started);
            let rollups = l.agg.take_rollups(&config.analytics, started);
            (lag, rollups, std::mem::take(&mut l.meta.kv_pending))
        };
        // KV rollups: one key per metric per slide (written once), and `latest`;
        // what KV refuses now is kept and retried on the next tick.
        let kv_started = now_ms();
        let mut todo = pending;
        todo.extend(rollup_puts(&rollups, shard));
        let kv = self.write_rollups(&config, &log, todo, rollups.last(), shard).await;
        let kv_ms = (!kv.written.is_empty()).then(|| now_ms() - kv_started);
        // Alert rules and insights are about the whole site: evaluated by
        // shard 0 alone, over every shard's window (one call per other shard
        // per tick). The other shards only roll up their part into KV.
        let others = match (shard, config.hub.shards) {
            (0, 1) => Some(Ok(None)),
            (0, n) => Some(self.other_shards(&config, n).await.map(Some)),
            _ => None,
        };
        if shard != 0 {
            let op = HubOp::Wake;
            if let Err(e) = platform::call_object::<_, Value>(&self.env, bindings::HUB, keys::GLOBAL_HUB, &op).await {
                log.error("wake", format_args!("shard {shard} could not wake {}: {e}", keys::GLOBAL_HUB));
            }
        }
        let now = now_ms();
        let evaluated = {
            let mut loaded = self.loaded.borrow_mut();
            let Some(l) = loaded.as_mut() else { return Response::ok("not loaded") };
            l.meta.kv_writes.extend(kv.written);
            let excess = l.meta.kv_writes.len().saturating_sub(KV_LOG);
            l.meta.kv_writes.drain(..excess);
            l.meta.kv_failures += kv.failures;
            let mut pending = kv.pending;
            let dropped = pending.len().saturating_sub(KV_PENDING_MAX);
            pending.drain(..dropped);
            l.meta.kv_dropped += dropped as u64;
            l.meta.kv_pending = pending;
            match others {
                None => {
                    // Not shard 0: rule states and insight keys are shard 0's
                    // (states left by a version that evaluated per shard go).
                    l.meta.rules.clear();
                    None
                }
                Some(Err(e)) => {
                    // Nothing evaluated on a part of the site: the slides
                    // not rolled up yet come with the next tick. Counted, and
                    // `site_evaluated_at` shows how old the rule states are.
                    log.error("site evaluation", format_args!("alert rules and insights wait for the next tick: {e}"));
                    l.meta.site_failures += 1;
                    None
                }
                Some(Ok(None)) => {
                    // One shard: its window is the site's.
                    l.meta.site_last_rolled = Some(l.agg.last_rolled);
                    l.meta.site_evaluated_at = Some(now);
                    Some(evaluate(&config, &l.agg, rollups.clone(), &mut l.meta, now))
                }
                Some(Ok(Some(mut site))) => {
                    let own: Vec<Slide> = l.agg.slides.values().cloned().collect();
                    site.add_shard(&ShardPart { slides: &own, hours: &l.agg.hours, totals: &l.agg.totals });
                    // Never evaluated before: from the oldest slide in the window.
                    site.last_rolled = l.meta.site_last_rolled.unwrap_or(0);
                    let points = site.take_rollups(&config.analytics, started);
                    l.meta.site_last_rolled = Some(site.last_rolled);
                    l.meta.site_evaluated_at = Some(now);
                    Some(evaluate(&config, &site, points, &mut l.meta, now))
                }
            }
        };
        if let Some((points, transitions, news)) = &evaluated {
            self.push(points, transitions, news, now);
        }
        let clients = sockets::sockets(&self.state, INTEL_TAG).len() + sockets::sockets(&self.state, PERF_TAG).len();
        let gauges = Gauges {
            alarm_lag_ms: lag,
            kv_write_latency_ms: kv_ms,
            tick_duration_ms: Some(now_ms() - started),
            stream_clients: Some(clients as f64),
        };
        self.with_state(&sql, |l, touched| {
            l.agg.record_gauges(&config.analytics, gauges, now);
            touched.insert(slide_of(&config, now));
            l.agg.evict(&config.analytics, now);
        })?;
        Response::ok("tick")
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        sockets::on_message_configured(&self.env, &ws, &self.subscribers, message);
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        sockets::on_close(&ws, &self.subscribers);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        sockets::on_error(&ws, &self.subscribers);
        Ok(())
    }
}

fn slide_of(config: &Config, at_ms: f64) -> i64 {
    let s = (at_ms / 1000.0).floor() as i64;
    s - s.rem_euclid(config.analytics.slide_s.max(1))
}

/// Alert rules on each slide closed since the last evaluation and what the
/// window says that it did not say last tick, from the whole site's window (`agg`) and its
/// slides closed since the last tick (`points`, pushed as metrics).
fn evaluate(
    config: &Config,
    agg: &Aggregator,
    points: Vec<SlidePoint>,
    meta: &mut Meta,
    now: f64,
) -> (Vec<SlidePoint>, Vec<Transition>, News) {
    let views = agg.views(&config.analytics, now);
    // Every slide closed since the last evaluation is judged, in order (a
    // tick that was late or could not evaluate loses none): the newest now,
    // the older ones at the time they closed.
    let slide_ms = config.analytics.slide_s as f64 * 1000.0;
    let mut transitions = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let at = if i + 1 == points.len() { now } else { (p.start as f64 * 1000.0 + slide_ms).min(now) };
        transitions.extend(alerting::evaluate(&config.hub.alert_rules, &mut meta.rules, |m| p.metric(m), at));
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
    (points, transitions, News { patterns, anomalies, trends, correlations })
}

/// Records a stream ticket's nonce as spent; false when it already was.
/// Read and write with no await in between: single use even under
/// concurrent upgrades. Spent nonces are kept until their ticket expires
/// (a ticket past its expiry is refused by the edge anyway).
fn spend_ticket(sql: &SqlStorage, nonce: &str, expires: f64, now: f64) -> Result<bool> {
    // Kept a minute past expiry: an edge whose clock runs behind this one
    // may still accept the ticket for a moment.
    sql.exec("DELETE FROM spent_tickets WHERE expires < ?", vec![(now - 60_000.0).into()])?;
    let seen =
        sql.exec("SELECT COUNT(*) AS n FROM spent_tickets WHERE id = ?", vec![nonce.into()])?.to_array::<CountRow>()?;
    if seen.iter().any(|r| r.n > 0.0) {
        return Ok(false);
    }
    sql.exec("INSERT OR REPLACE INTO spent_tickets (id, expires) VALUES (?, ?)", vec![nonce.into(), expires.into()])?;
    Ok(true)
}

fn migrate(sql: &SqlStorage) -> Result<()> {
    // `tickets` held the stored tickets of versions before 2026-12-02
    // (tickets are signed now: intel::ticket).
    sql.exec(
        "DROP TABLE IF EXISTS tickets;
         CREATE TABLE IF NOT EXISTS spent_tickets (id TEXT PRIMARY KEY, expires REAL NOT NULL);
         CREATE TABLE IF NOT EXISTS ticket_key (id INTEGER PRIMARY KEY CHECK (id = 1), key TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS slides (start INTEGER PRIMARY KEY, data TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, data TEXT NOT NULL);",
        None,
    )?;
    Ok(())
}

impl HubObject {
    fn ensure_loaded(&self, sql: &SqlStorage) -> Result<()> {
        if self.loaded.borrow().is_some() {
            return Ok(());
        }
        let mut agg = Aggregator::default();
        for row in sql.exec("SELECT data FROM slides ORDER BY start", None)?.to_array::<DataRow>()? {
            if let Ok(slide) = serde_json::from_str::<Slide>(&row.data) {
                agg.slides.insert(slide.start, slide);
            }
        }
        let meta: Meta = sql
            .exec("SELECT data FROM meta WHERE key = ?", vec![keys::HUB_META_ROW.into()])?
            .to_array::<DataRow>()?
            .first()
            .and_then(|r| serde_json::from_str(&r.data).ok())
            .unwrap_or_default();
        agg.hours = meta.hours.clone();
        agg.last_rolled = meta.last_rolled;
        agg.totals = meta.totals.clone();
        agg.forgotten = meta.forgotten.clone();
        *self.loaded.borrow_mut() = Some(Loaded { agg, meta });
        Ok(())
    }

    /// Applies `f` to the loaded state and persists the slides it touched
    /// and the meta row (no await in between: one atomic write).
    fn with_state<R>(&self, sql: &SqlStorage, f: impl FnOnce(&mut Loaded, &mut BTreeSet<i64>) -> R) -> Result<R> {
        self.ensure_loaded(sql)?;
        let mut loaded = self.loaded.borrow_mut();
        let Some(l) = loaded.as_mut() else { return Err(worker::Error::RustError("hub state not loaded".into())) };
        if let Some(i) = self.state.id().name().as_deref().and_then(shard_index) {
            l.meta.shard = Some(i);
        }
        let mut touched = BTreeSet::new();
        let out = f(l, &mut touched);
        for start in touched {
            if let Some(slide) = l.agg.slides.get(&start) {
                let data = platform::to_json(slide)?;
                sql.exec("INSERT OR REPLACE INTO slides (start, data) VALUES (?, ?)", vec![start.into(), data.into()])?;
            }
        }
        let oldest = l.agg.slides.keys().next().copied().unwrap_or(i64::MAX);
        sql.exec("DELETE FROM slides WHERE start < ?", vec![oldest.into()])?;
        l.meta.hours = l.agg.hours.clone();
        l.meta.last_rolled = l.agg.last_rolled;
        l.meta.totals = l.agg.totals.clone();
        l.meta.forgotten = l.agg.forgotten.clone();
        let meta = platform::to_json(&l.meta)?;
        sql.exec(
            "INSERT OR REPLACE INTO meta (key, data) VALUES (?, ?)",
            vec![keys::HUB_META_ROW.into(), meta.into()],
        )?;
        Ok(out)
    }

    /// Arms the tick if no alarm is set (the first report or event starts it).
    async fn ensure_alarm(&self, config: &Config) -> Result<()> {
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none() {
            let slide_ms = config.analytics.slide_s as f64 * 1000.0;
            let grace = config.analytics.grace_ms;
            let next = (((now_ms() - grace) / slide_ms).floor() + 1.0) * slide_ms + grace;
            storage.set_alarm(worker::ScheduledTime::new(js_sys::Date::new(&next.into()))).await?;
            if let Some(l) = self.loaded.borrow_mut().as_mut() {
                l.meta.next_tick = Some(next);
            }
        }
        Ok(())
    }

    /// This hub's shard index, from its object name (`hub_name`); the runtime
    /// passes the name to the object, alarms included. Keys carry it so that
    /// each KV key is written by one shard only.
    fn shard(&self) -> Option<u32> {
        let named = self.state.id().name().as_deref().and_then(shard_index);
        let mut loaded = self.loaded.borrow_mut();
        let meta = &mut loaded.as_mut()?.meta;
        if named.is_some() {
            meta.shard = named;
        }
        meta.shard
    }

    /// Writes the rollup puts (each metric of each slide under its hour
    /// bucket, `intel::keys::slide_key`, the value in the metadata too, so
    /// a page of a list is a page of points) and this shard's `latest` key at
    /// most once per second. Stops early when KV keeps failing; what is not
    /// written comes back as `pending`, in order.
    async fn write_rollups(
        &self,
        config: &Config,
        log: &Log,
        todo: Vec<PendingPut>,
        last: Option<&SlidePoint>,
        shard: u32,
    ) -> KvOutcome {
        let mut out = KvOutcome::default();
        let kv = match self.env.kv(bindings::METRICS) {
            Ok(kv) => kv,
            Err(e) => {
                log.error("kv", format_args!("KV binding {} unavailable: {e}", bindings::METRICS));
                out.failures = 1;
                out.pending = todo;
                return out;
            }
        };
        let ttl = config.hub.metrics_ttl_s;
        let mut in_a_row = 0;
        let mut attempts = 0;
        for put in todo {
            if in_a_row >= KV_FAILURES_IN_A_ROW || attempts >= KV_PUTS_PER_TICK {
                out.pending.push(put);
                continue;
            }
            attempts += 1;
            let result =
                match kv.put(&put.key, put.body.as_str()).and_then(|b| b.metadata(json!({"v": put.v, "n": put.n}))) {
                    Ok(b) => b.expiration_ttl(ttl).execute().await,
                    Err(e) => Err(e),
                };
            match result {
                Ok(()) => {
                    in_a_row = 0;
                    out.written.push(KvWrite { key: put.key, at: now_ms() });
                }
                Err(e) => {
                    log.error("kv", format_args!("KV write {} failed (kept for the next tick): {e}", put.key));
                    in_a_row += 1;
                    out.failures += 1;
                    out.pending.push(put);
                }
            }
        }
        if let (Some(last), true) = (last, in_a_row < KV_FAILURES_IN_A_ROW) {
            let latest = keys::latest_key(shard);
            let recent = self
                .loaded
                .borrow()
                .as_ref()
                .and_then(|l| l.meta.kv_writes.iter().rev().find(|w| w.key == latest).map(|w| w.at));
            // KV allows one write per key per second. `latest` is overwritten
            // by the next tick anyway, so a failure here is not kept.
            if recent.is_none_or(|t| now_ms() - t >= 1000.0) {
                let body = json!(last).to_string();
                if let Ok(b) = kv.put(&latest, body) {
                    if b.expiration_ttl(ttl).execute().await.is_ok() {
                        out.written.push(KvWrite { key: latest, at: now_ms() });
                    }
                }
            }
        }
        out
    }

    /// Pushes this tick's results to the streams (which live on shard 0,
    /// the only shard that evaluates): metrics and alert transitions to the
    /// performance stream, insights to the intelligence stream.
    fn push(&self, points: &[SlidePoint], transitions: &[Transition], news: &News, now: f64) {
        let ts = iso(now);
        let mut perf: Vec<String> = points
            .iter()
            .map(|p| ServerMessage::new(MessageType::PerformanceMetric, json!(p), &ts).to_text())
            .collect();
        perf.extend(transitions.iter().map(|t| ServerMessage::new(MessageType::Alert, json!(t), &ts).to_text()));
        let mut intel: Vec<String> = news.patterns.iter().map(|p| insight("pattern", p, &ts)).collect();
        intel.extend(news.anomalies.iter().map(|a| insight("anomaly", a, &ts)));
        intel.extend(news.trends.iter().map(|t| insight("trend", t, &ts)));
        intel.extend(news.correlations.iter().map(|c| insight("correlation", c, &ts)));
        send_all(&self.state, PERF_TAG, &perf);
        send_all(&self.state, INTEL_TAG, &intel);
    }

    /// The windows of shards 1..n added up (for shard 0's evaluation of the
    /// whole site). At most 4 calls at a time, each answer added and dropped
    /// as it comes (memory: the sum and 4 answers, not every shard's window),
    /// each bounded by half a slide; an error if any shard does not answer.
    async fn other_shards(&self, config: &Config, n: u32) -> std::result::Result<Aggregator, Error> {
        use futures::future::{select, Either};
        use futures::stream::{self, StreamExt};
        use futures::FutureExt;
        let limit_ms = (config.analytics.slide_s.max(1) as u64 * 500).max(1000);
        let calls = (1..n).map(|i| async move {
            let name = hub_name(i);
            let call =
                platform::call_object::<_, SitePart>(&self.env, bindings::HUB, &name, &HubOp::Part).boxed_local();
            let late = worker::Delay::from(std::time::Duration::from_millis(limit_ms));
            let answer = match select(call, late).await {
                Either::Left((r, _)) => r,
                Either::Right(_) => Err(Error::late(format!("no answer within {limit_ms} ms"))),
            };
            (answer, name)
        });
        let mut answers = stream::iter(calls).buffer_unordered(4);
        let mut site = Aggregator::site();
        while let Some((answer, name)) = answers.next().await {
            match answer {
                Ok((200, Some(p))) => {
                    site.add_shard(&ShardPart { slides: &p.slides, hours: &p.hours, totals: &p.totals })
                }
                Ok((status, _)) => return Err(Error::platform(format!("{name} answered {status}"))),
                Err(e) => return Err(Error::platform(format!("{name}: {e}"))),
            }
        }
        Ok(site)
    }
}

/// What a tick found worth telling the intelligence stream.
struct News {
    patterns: Vec<Pattern>,
    anomalies: Vec<Anomaly>,
    trends: Vec<Trend>,
    correlations: Vec<Correlation>,
}

/// One insight message: `{"kind": <kind>, <kind>: <the view>}`.
fn insight(kind: &str, v: &impl Serialize, ts: &str) -> String {
    ServerMessage::new(MessageType::Insight, json!({"kind": kind, kind: v}), ts).to_text()
}

/// Sends every text to every socket of `tag` (insights and metrics are not
/// filtered by subscriptions: they are about the whole site).
/// What one tick's KV writes came to.
#[derive(Default)]
struct KvOutcome {
    written: Vec<KvWrite>,
    pending: Vec<PendingPut>,
    failures: u64,
}

/// The KV puts for closed slides: one per metric per slide, under this shard's keys.
fn rollup_puts(rollups: &[SlidePoint], shard: u32) -> Vec<PendingPut> {
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

fn send_all(state: &State, tag: &str, texts: &[String]) {
    if texts.is_empty() {
        return;
    }
    for ws in sockets::sockets(state, tag) {
        for t in texts {
            if ws.send_with_str(t).is_err() {
                let _ = ws.close(Some(1011), Some("send failed"));
                break;
            }
        }
    }
}

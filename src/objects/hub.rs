//! `HubObject`: the analytics hub (one per shard, `HUB_SHARDS`; shard 0 is
//! named `global`), also the keeper of the stream-ticket key and of spent
//! challenge solutions. The streams themselves live in `StreamObject`s
//! (`objects::stream`: a root and its relays), which also spend stream tickets.
//!
//! - `Forward`: one summary per aggregator object and forward period
//!   (`intel::deltas`: the isolates fold their samples into slide deltas,
//!   the aggregators merge them), merged into the window in memory and
//!   persisted on the alarm's tick, not per call: the hub's writes per slide
//!   are bounded by its ticks, not by traffic. Each aggregator's summaries
//!   are numbered: the hub answers the highest it applied and the highest it
//!   persisted; the aggregator keeps (and sends again) what is not
//!   persisted, so a hub restart loses nothing and a retry counts once.
//! - `Report`: raw request samples, as isolates of the previous release sent
//!   them (kept for one release, for a rollout with both versions running;
//!   docs/DEPLOY.md), ingested and persisted per call as before.
//! - `Publish`: profile events to count, forwarded by the stream root after
//!   it published them (at most about once a second).
//! - The alarm ticks every `ANALYTICS_SLIDE_SECONDS`: it re-arms first (so it
//!   always does) and rolls up this shard's slides closed since the last tick
//!   into its own KV keys. Shard 0 then evaluates the alert rules and finds
//!   the insights on the whole site's window (its own merged with every other
//!   shard's, fetched with `Part`: `other_shards`) and hands them, with
//!   the site's metrics, to the stream root (`StreamOp::Broadcast`); the other shards wake it (`Wake`),
//!   as it may have no traffic of its own. A late, doubled or post-restart
//!   tick neither double-counts nor loses a slide (`Aggregator::take_rollups`,
//!   `Meta::site_last_rolled`). Every decision of the tick is `intel::tick`'s
//!   (`begin`, `KvRun`, `finish`: pure, tested natively); `alarm` only
//!   executes it: the alarm, KV, the other shards, the stream root, storage.
//! - Alert webhooks (`intel::webhooks`, shard 0 only): the tick's alert
//!   transitions are queued in the outbox, stored in the same write as the
//!   rule states; then, after the tick's own work, the deliveries due are
//!   sent (`deliver`: each attempt bounded by `webhooks::timeout_ms`, no new
//!   one after `webhooks::tick_budget_ms`, a target's first failure ends its
//!   turn) and their outcomes stored. Only the alarm sends: a request never
//!   waits for a receiver. `HubOp::Webhooks` reads the outbox for the API.
//!
//! Storage (SQLite): `slides` (one row per slide in the window), `meta`
//! (aggregator scalars, alert rule states, KV write log, next tick, the
//! summary sequence applied per aggregator object; and the webhook outbox,
//! row `keys::HUB_WEBHOOKS_ROW`),
//! `spent_tickets` (nonces of solved challenges, and of stream tickets
//! spent before the stream objects, until they expire). Memory caches the
//! loaded state, so a hibernated or evicted hub loses nothing.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State, WebSocket,
    WebSocketIncomingMessage,
};

use crate::bindings;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::Error;
use crate::intel::analytics::{Aggregator, AnalyticsConfig, Slide};
use crate::intel::deltas::{self, Forward};
use crate::intel::fanout::{requeue_front, Clients, StreamOp, ROOT};
use crate::intel::fingerprint::Sets;
use crate::intel::keys::{self, hub_name, shard_index};
use crate::intel::tick::{self, HubState, KvRun, Meta, Others, TickConfig};
use crate::intel::webhooks::{self, Outbox, Sent};
use crate::intel::wire::{Forwarded, HubOp, PreviewSample, SitePart, Spent, TicketKey, WindowState};
use crate::log::Log;
use crate::platform::{self, reply};

use super::Entry;

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

#[durable_object]
pub struct HubObject {
    state: State,
    env: Env,
    loaded: RefCell<Option<HubState>>,
    /// Slides changed by forwards since the last persist (written by the
    /// next `with_state`: the tick's, or any other write's).
    dirty: RefCell<BTreeSet<i64>>,
    /// The summary sequence per aggregator as last persisted (`Meta::seen`
    /// in storage): what `Forwarded::persisted` answers.
    persisted: RefCell<BTreeMap<String, u64>>,
    /// The global streams' sockets (intelligence, both) as the stream root
    /// last reported them (its answer to this hub's tick `Broadcast`): the
    /// `stream_clients` gauge and the analytics API's counts, a tick behind.
    /// With the root's counts of what its bounds dropped (`Clients`).
    clients: Cell<Clients>,
    /// Intelligence-stream texts of earlier ticks the stream root did not
    /// take (its call failed): insights are news once (the tick marks them
    /// pushed), so they go again, first, with the next tick's
    /// (`UNSENT_INTEL_MAX` at most, the oldest dropped; memory only: a
    /// restart of the hub loses them). Performance texts are not kept: the
    /// next tick's metrics replace them.
    unsent_intel: RefCell<Vec<String>>,
    /// The alert webhooks' outbox (shard 0), as stored (loaded on first use).
    outbox: RefCell<Option<Outbox>>,
    /// The fingerprint judgement last written to KV (memory only: a
    /// restarted hub writes its first one again).
    fingerprints_published: RefCell<Option<Sets>>,
}

/// Intelligence texts kept for the next tick when the stream root fails.
const UNSENT_INTEL_MAX: usize = 500;

impl DurableObject for HubObject {
    fn new(state: State, env: Env) -> Self {
        HubObject {
            state,
            env,
            loaded: RefCell::new(None),
            dirty: RefCell::new(BTreeSet::new()),
            persisted: RefCell::new(BTreeMap::new()),
            clients: Cell::new(Clients::default()),
            fingerprints_published: RefCell::new(None),
            unsent_intel: RefCell::new(Vec::new()),
            outbox: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            Err(e) => return super::config_invalid(&self.state, Entry::Fetch, &e).await,
        };
        if req.headers().get("upgrade")?.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            // An isolate of the previous release, during a rollout, still hands
            // stream sockets to the hub; the streams live in the relays now
            // (`objects::stream`). A retryable refusal, not a `bad_op` line
            // per dashboard: the dashboard reconnects, through a new isolate.
            let mut res = reply(
                503,
                &json!({"error": "stream_moved", "message": "the streams moved to relay objects: reconnect"}),
            )?;
            res.headers_mut().set("retry-after", "5")?;
            return Ok(res);
        }
        let op: HubOp = match platform::read_op(&mut req).await {
            Ok(op) => op,
            Err(e) => {
                // Only our own isolates call the hub: a malformed op is a bug
                // (or two versions of the Worker at once), worth a line.
                Log::new("hub.fetch").error("bad op", &e);
                return reply(400, &json!({"error": "bad_op", "message": e.to_string()}));
            }
        };
        let sql = self.state.storage().sql();
        migrate(&sql)?;
        match op {
            HubOp::Forward { from, base, summaries, failures } => {
                let now = now_ms();
                self.ensure_loaded(&sql)?;
                let applied = {
                    let mut loaded = self.loaded.borrow_mut();
                    let Some(l) = loaded.as_mut() else { return reply(500, &json!({"error": "not_loaded"})) };
                    let f = Forward { from: &from, base, summaries: &summaries, failures };
                    let (applied, slides) =
                        deltas::receive(&mut l.agg, &config.analytics, &mut l.meta.seen, &mut l.meta.tier, &f, now);
                    self.dirty.borrow_mut().extend(slides);
                    applied
                };
                if let Some(i) = self.state.id().name().as_deref().and_then(shard_index) {
                    if let Some(l) = self.loaded.borrow_mut().as_mut() {
                        l.meta.shard = Some(i);
                    }
                }
                self.ensure_alarm(&config).await?;
                let persisted = self.persisted.borrow().get(&from).copied().unwrap_or(0).max(base).min(applied);
                reply(200, &Forwarded { applied, persisted })
            }
            HubOp::Report { samples, rejected, dropped, updates, alerts: _ } => {
                let now = now_ms();
                let accepted = self.with_state(&sql, |l, touched| {
                    let mut n = 0;
                    for s in &samples {
                        if l.agg.ingest_sample(&config.analytics, s, now) {
                            n += 1;
                            touched.insert(tick::slide_of(&config.analytics, s.at));
                        }
                    }
                    if rejected > 0 {
                        l.agg.count_rejected(&config.analytics, rejected, now);
                        touched.insert(tick::slide_of(&config.analytics, now));
                    }
                    if dropped > 0 {
                        l.agg.count_dropped(&config.analytics, dropped, now);
                        touched.insert(tick::slide_of(&config.analytics, now));
                    }
                    for u in &updates {
                        if l.agg.ingest_event(&config.analytics, u, now) {
                            touched.insert(tick::slide_of(&config.analytics, u.event.timestamp.min(now)));
                        }
                    }
                    n
                })?;
                self.ensure_alarm(&config).await?;
                reply(200, &json!({"accepted": accepted, "dropped": samples.len() - accepted}))
            }
            // The stream root forwards the events it published, for counting
            // (at most once a second: `objects::stream`).
            HubOp::Publish { updates, alerts: _ } => {
                let now = now_ms();
                self.with_state(&sql, |l, touched| {
                    for u in &updates {
                        if l.agg.ingest_event(&config.analytics, u, now) {
                            touched.insert(tick::slide_of(&config.analytics, u.event.timestamp.min(now)));
                        }
                    }
                })?;
                self.ensure_alarm(&config).await?;
                reply(200, &json!({"counted": updates.len()}))
            }
            HubOp::Window => {
                let now = now_ms();
                self.ensure_loaded(&sql)?;
                let loaded = self.loaded.borrow();
                let Some(l) = loaded.as_ref() else { return reply(500, &json!({"error": "not_loaded"})) };
                let root = self.clients.get();
                let (intel_clients, stream_clients) = (root.intel, root.total);
                let SitePart { slides, hours, totals } = site_part(l, &config, now);
                let window = WindowState {
                    slides,
                    hours,
                    totals,
                    rules: l.meta.rules.clone(),
                    stream_clients,
                    intel_clients,
                    stream_root: root,
                    last_tick: l.meta.last_tick,
                    next_tick: l.meta.next_tick,
                    kv_writes: l.meta.kv_writes.clone(),
                    kv_pending: l.meta.kv_pending.len(),
                    kv_failures: l.meta.kv_failures,
                    kv_dropped: l.meta.kv_dropped,
                    site_evaluated_at: l.meta.site_evaluated_at,
                    site_failures: l.meta.site_failures,
                    tier: l.meta.tier.clone(),
                };
                reply(200, &window)
            }
            HubOp::Part => {
                let now = now_ms();
                self.ensure_loaded(&sql)?;
                let loaded = self.loaded.borrow();
                let Some(l) = loaded.as_ref() else { return reply(500, &json!({"error": "not_loaded"})) };
                reply(200, &site_part(l, &config, now))
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
            HubOp::Preview { cap } => {
                let now = now_ms();
                self.ensure_loaded(&sql)?;
                let loaded = self.loaded.borrow();
                let Some(l) = loaded.as_ref() else { return reply(500, &json!({"error": "not_loaded"})) };
                reply(200, &preview_sample(&l.agg, &config.analytics, now, cap))
            }
            HubOp::Webhooks => {
                self.ensure_outbox(&sql)?;
                let outbox = self.outbox.borrow();
                let view = outbox.as_ref().map(|o| o.view(&config.hub.webhooks));
                reply(200, &view.unwrap_or_else(|| Outbox::default().view(&config.hub.webhooks)))
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
        let parts =
            TickConfig { analytics: &config.analytics, rules: &config.hub.alert_rules, shards: config.hub.shards };
        // Re-arm first, before the state changes: whatever fails below, the next tick comes.
        let next = tick::next_tick(&config.analytics, started);
        self.state.storage().set_alarm(worker::ScheduledTime::new(js_sys::Date::new(&next.into()))).await?;
        let (begun, mut kv) = {
            let mut loaded = self.loaded.borrow_mut();
            let Some(l) = loaded.as_mut() else { return Response::ok("not loaded") };
            tick::begin(l, &parts, shard, started)
        };
        self.write_rollups(&mut kv, config.hub.metrics_ttl_s, &log).await;
        let others = match begun.fetch_others {
            Some(n) => Some(match self.other_shards(&config, n).await {
                Ok(site) => Others::Merged(Box::new(site)),
                Err(e) => {
                    log.error("site evaluation", format_args!("alert rules and insights wait for the next tick: {e}"));
                    Others::Failed
                }
            }),
            None => None,
        };
        if begun.wake_global {
            let op = HubOp::Wake;
            if let Err(e) = platform::call_object::<_, Value>(&self.env, bindings::HUB, keys::GLOBAL_HUB, &op).await {
                log.error("wake", format_args!("shard {shard} could not wake {}: {e}", keys::GLOBAL_HUB));
            }
        }
        let clients = self.clients.get().total;
        let now = now_ms();
        let plan = {
            let mut loaded = self.loaded.borrow_mut();
            let Some(l) = loaded.as_mut() else { return Response::ok("not loaded") };
            tick::finish(l, &parts, begun, kv, others, clients, now)
        };
        // Shard 0's transitions, queued for the webhooks (stored below, in
        // the same write as the rule states that made them).
        let alerts = if shard == 0 && !config.hub.webhooks.is_empty() {
            webhooks::alerts(&plan.transitions, &config.hub.alert_rules)
        } else {
            Vec::new()
        };
        if !alerts.is_empty() {
            self.ensure_outbox(&sql)?;
            if let Some(o) = self.outbox.borrow_mut().as_mut() {
                o.enqueue(&config.hub.webhooks, &alerts, now);
            }
        }
        if let Some(sets) = plan.fingerprints {
            self.publish_fingerprints(sets, &log).await;
        }
        self.broadcast(plan.intel, plan.perf, &log).await;
        // Sockets a version before the stream objects accepted here: closed
        // (1012, service restart), so their clients reconnect to a relay.
        for ws in self.state.as_raw().get_websockets().unwrap_or_default() {
            let _ = ws.close_with_code_and_reason(1012, "the streams moved; reconnect");
        }
        self.with_state(&sql, |_, touched| {
            touched.insert(plan.slide);
        })?;
        if !alerts.is_empty() {
            self.save_outbox(&sql)?;
        }
        if shard == 0 {
            self.deliver(&sql, &config, &log).await?;
        }
        Response::ok("tick")
    }

    // Sockets accepted here by versions before the stream objects (the
    // alarm closes them): closed at once if they speak first.
    async fn websocket_message(&self, ws: WebSocket, _message: WebSocketIncomingMessage) -> Result<()> {
        let _ = ws.close(Some(1012), Some("the streams moved; reconnect"));
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        let _ = ws.close(Some(1000), Some("closed"));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        let _ = ws.close(Some(1011), Some("error"));
        Ok(())
    }
}

/// Records a stream ticket's nonce as spent; false when it already was.
/// Read and write with no await in between: single use even under
/// concurrent upgrades. Spent nonces are kept until their ticket expires
/// (a ticket past its expiry is refused by the edge anyway).
pub(super) fn spend_ticket(sql: &SqlStorage, nonce: &str, expires: f64, now: f64) -> Result<bool> {
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

/// The window's reservoirs merged into one sample (`HubOp::Preview`).
fn preview_sample(agg: &Aggregator, cfg: &AnalyticsConfig, now: f64, cap: usize) -> PreviewSample {
    let (sample, since) = agg.preview_sample(cfg, now, cap);
    PreviewSample { sample, since }
}

/// This hub's window as another reader gets it: its slides, hours and totals.
fn site_part(l: &HubState, config: &Config, now: f64) -> SitePart {
    SitePart {
        slides: l.agg.window(&config.analytics, now, false).into_iter().cloned().collect(),
        hours: l.agg.hours.clone(),
        totals: l.agg.totals.clone(),
    }
}

impl HubObject {
    /// Hands the tick's texts for the streams to the stream root (which
    /// publishes them to every relay) and keeps the socket counts it answers.
    /// The intelligence texts of a failed call are kept for the next tick
    /// (`unsent_intel`).
    async fn broadcast(&self, intel: Vec<String>, perf: Vec<String>, log: &Log) {
        let intel = {
            let mut unsent = self.unsent_intel.borrow_mut();
            unsent.extend(intel);
            std::mem::take(&mut *unsent)
        };
        if intel.is_empty() && perf.is_empty() {
            return;
        }
        let op = StreamOp::Broadcast { intel, perf };
        let failed = match platform::call_object::<_, Clients>(&self.env, bindings::STREAMS, ROOT, &op).await {
            Ok((200, Some(c))) => {
                self.clients.set(c);
                None
            }
            Ok((status, _)) => Some(format!("the stream root answered {status}")),
            Err(e) => Some(format!("the stream root: {e}")),
        };
        let Some(why) = failed else { return };
        let StreamOp::Broadcast { intel, .. } = op else { return };
        let (kept, dropped) = requeue_front(&mut self.unsent_intel.borrow_mut(), intel, UNSENT_INTEL_MAX);
        log.error(
            "streams",
            format_args!("{why}; {kept} intelligence messages kept for the next tick, {dropped} oldest dropped"),
        );
    }

    /// Loads the webhook outbox once (an unreadable row is an empty outbox:
    /// a version's format change must not stop the tick).
    fn ensure_outbox(&self, sql: &SqlStorage) -> Result<()> {
        if self.outbox.borrow().is_some() {
            return Ok(());
        }
        let outbox: Outbox = sql
            .exec("SELECT data FROM meta WHERE key = ?", vec![keys::HUB_WEBHOOKS_ROW.into()])?
            .to_array::<DataRow>()?
            .first()
            .and_then(|r| serde_json::from_str(&r.data).ok())
            .unwrap_or_default();
        *self.outbox.borrow_mut() = Some(outbox);
        Ok(())
    }

    fn save_outbox(&self, sql: &SqlStorage) -> Result<()> {
        let data = match self.outbox.borrow().as_ref() {
            Some(o) => platform::to_json(o)?,
            None => return Ok(()),
        };
        sql.exec(
            "INSERT OR REPLACE INTO meta (key, data) VALUES (?, ?)",
            vec![keys::HUB_WEBHOOKS_ROW.into(), data.into()],
        )?;
        Ok(())
    }

    /// Sends the webhook deliveries due now (`Outbox::due`): the targets in
    /// parallel, each target's deliveries in order, each attempt bounded by
    /// `webhooks::timeout_ms`, none started after `webhooks::tick_budget_ms`;
    /// a target's failure ends its turn (a dead receiver costs one timeout
    /// per tick). Outcomes go into the outbox, stored once at the end.
    async fn deliver(&self, sql: &SqlStorage, config: &Config, log: &Log) -> Result<()> {
        use futures::future::join_all;
        self.ensure_outbox(sql)?;
        let started = now_ms();
        let slide_ms = config.analytics.slide_s as f64 * 1000.0;
        let rounds = {
            let mut outbox = self.outbox.borrow_mut();
            let Some(o) = outbox.as_mut() else { return Ok(()) };
            if o.queue.is_empty() {
                return Ok(());
            }
            o.due(&config.hub.webhooks, started)
        };
        let timeout = webhooks::timeout_ms(slide_ms);
        let budget = webhooks::tick_budget_ms(slide_ms);
        let targets = &config.hub.webhooks;
        let runs = rounds.into_iter().filter(|r| !r.is_empty()).map(|attempts| async move {
            for a in attempts {
                if now_ms() - started > budget {
                    break;
                }
                let sent = match platform::post_bounded(&a.url, &a.headers, &a.body, timeout).await {
                    Ok(status) => Sent::Status(status),
                    Err(e) => Sent::Error(e),
                };
                let why = match &sent {
                    Sent::Status(s) => format!("answered {s}"),
                    Sent::Error(e) => e.clone(),
                };
                let delivered =
                    self.outbox.borrow_mut().as_mut().is_some_and(|o| o.record(&a.id, sent, now_ms(), slide_ms));
                if !delivered {
                    let endpoint = targets.get(a.target).map_or("?", |t| t.endpoint.as_str());
                    log.warn("webhook", format_args!("webhook {} ({endpoint}) not delivered: {why}", a.target));
                    break;
                }
            }
        });
        join_all(runs).await;
        self.save_outbox(sql)
    }

    fn ensure_loaded(&self, sql: &SqlStorage) -> Result<()> {
        if self.loaded.borrow().is_some() {
            return Ok(());
        }
        let slides = sql
            .exec("SELECT data FROM slides ORDER BY start", None)?
            .to_array::<DataRow>()?
            .into_iter()
            .filter_map(|row| serde_json::from_str::<Slide>(&row.data).ok());
        let meta: Meta = sql
            .exec("SELECT data FROM meta WHERE key = ?", vec![keys::HUB_META_ROW.into()])?
            .to_array::<DataRow>()?
            .first()
            .and_then(|r| serde_json::from_str(&r.data).ok())
            .unwrap_or_default();
        *self.persisted.borrow_mut() = meta.seen.iter().map(|(k, s)| (k.clone(), s.seq)).collect();
        self.dirty.borrow_mut().clear();
        *self.loaded.borrow_mut() = Some(HubState::load(slides, meta));
        Ok(())
    }

    /// Applies `f` to the loaded state and persists the slides it touched,
    /// those forwards changed since the last persist, and the meta row (no
    /// await in between: one atomic write, so the summary sequences stored
    /// in the meta row are exactly the summaries stored in the slides).
    fn with_state<R>(&self, sql: &SqlStorage, f: impl FnOnce(&mut HubState, &mut BTreeSet<i64>) -> R) -> Result<R> {
        self.ensure_loaded(sql)?;
        let mut loaded = self.loaded.borrow_mut();
        let Some(l) = loaded.as_mut() else { return Err(worker::Error::RustError("hub state not loaded".into())) };
        if let Some(i) = self.state.id().name().as_deref().and_then(shard_index) {
            l.meta.shard = Some(i);
        }
        let mut touched = BTreeSet::new();
        let out = f(l, &mut touched);
        touched.append(&mut self.dirty.borrow_mut());
        for start in touched {
            if let Some(slide) = l.agg.slides.get(&start) {
                let data = platform::to_json(slide)?;
                sql.exec("INSERT OR REPLACE INTO slides (start, data) VALUES (?, ?)", vec![start.into(), data.into()])?;
            }
        }
        let oldest = l.agg.slides.keys().next().copied().unwrap_or(i64::MAX);
        sql.exec("DELETE FROM slides WHERE start < ?", vec![oldest.into()])?;
        l.sync_meta();
        let meta = platform::to_json(&l.meta)?;
        sql.exec(
            "INSERT OR REPLACE INTO meta (key, data) VALUES (?, ?)",
            vec![keys::HUB_META_ROW.into(), meta.into()],
        )?;
        *self.persisted.borrow_mut() = l.meta.seen.iter().map(|(k, s)| (k.clone(), s.seq)).collect();
        Ok(out)
    }

    /// Arms the tick if no alarm is set (the first report or event starts it).
    async fn ensure_alarm(&self, config: &Config) -> Result<()> {
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none() {
            let next = tick::next_tick(&config.analytics, now_ms());
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

    /// Writes the site's fingerprint judgement to KV when it changed (the
    /// request path reads it: `edge::fingerprint`); a failed write is tried
    /// again next tick. No expiry: an old judgement stays until replaced.
    async fn publish_fingerprints(&self, sets: Sets, log: &Log) {
        if self.fingerprints_published.borrow().as_ref() == Some(&sets) {
            return;
        }
        let body = match serde_json::to_string(&sets) {
            Ok(b) => b,
            Err(e) => return log.error("fingerprints", format_args!("not written: {e}")),
        };
        let written = match self.env.kv(bindings::METRICS) {
            Ok(kv) => match kv.put(keys::FINGERPRINTS_KEY, body) {
                Ok(b) => b.execute().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(()) => *self.fingerprints_published.borrow_mut() = Some(sets),
            Err(e) => log.error("kv", format_args!("KV write {} failed (next tick): {e}", keys::FINGERPRINTS_KEY)),
        }
    }

    /// Runs the tick's KV writes (`tick::KvRun`: it says what to write next
    /// and when to stop), each with `METRICS_TTL_DAYS`.
    async fn write_rollups(&self, run: &mut KvRun, ttl: u64, log: &Log) {
        let kv = match self.env.kv(bindings::METRICS) {
            Ok(kv) => kv,
            Err(e) => {
                log.error("kv", format_args!("KV binding {} unavailable: {e}", bindings::METRICS));
                run.unavailable();
                return;
            }
        };
        while let Some(put) = run.next(now_ms()) {
            let builder = match put.metadata {
                Some(m) => kv.put(&put.key, put.body.as_str()).and_then(|b| b.metadata(m)),
                None => kv.put(&put.key, put.body.as_str()),
            };
            let result = match builder {
                Ok(b) => b.expiration_ttl(ttl).execute().await,
                Err(e) => Err(e),
            };
            if let (Err(e), true) = (&result, put.kept) {
                log.error("kv", format_args!("KV write {} failed (kept for the next tick): {e}", put.key));
            }
            run.done(result.is_ok(), now_ms());
        }
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
                Ok((200, Some(p))) => site.add_shard(&p.as_shard()),
                Ok((status, _)) => return Err(Error::platform(format!("{name} answered {status}"))),
                Err(e) => return Err(Error::platform(format!("{name}: {e}"))),
            }
        }
        Ok(site)
    }
}

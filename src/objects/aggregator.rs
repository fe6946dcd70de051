//! `AggregatorObject`: the middle tier of the analytics (docs/analytics.md,
//! "Tiers"). One per region (continent) and isolate hash (`agg:<region>:<i>`,
//! `keys::aggregator_name`): the isolates of a region report their slide
//! deltas (and profile events) here every `REPORT_INTERVAL_MS` (`AggOp::Report`), and every
//! `AGGREGATOR_FORWARD_MS` its alarm forwards one summary per hub shard of
//! what it merged since the last forward (`HubOp::Forward`). The hub then
//! receives `aggregators / forward period` requests per second, whatever the
//! traffic.
//!
//! Nothing is lost on either side of it: a report is merged and stored
//! before it is answered (a write per report is fine here: this tier is
//! spread over regions x `AGGREGATORS_PER_REGION` objects); a sealed summary is numbered (per hub shard,
//! from one) and kept until the hub says it has *persisted* it (`Forwarded`), so it
//! is sent again after a lost answer (the hub skips a sequence it applied)
//! or after a hub restart (the hub's applied sequence falls back to what it
//! persisted, and the aggregator sends again from there).
//!
//! Profile events: an isolate's report also carries the updates and alerts
//! its profile calls returned (`AggOp::Report`). They are held in memory and
//! published to the stream root in one `StreamOp::Publish` at the start of
//! each alarm (in the order the reports arrived), so the root receives
//! (active aggregators) / `AGGREGATOR_FORWARD_MS` publications per second,
//! not one per isolate. Memory only, by choice: events are not
//! observations (the profiles keep them), and a restart of an aggregator
//! loses at most one forward period of stream events, as a restart of the
//! root loses its buffer.
//!
//! Storage (SQLite): `open` (per shard, the summary being merged), `sent`
//! (sealed summaries not yet confirmed persisted), `shards` (per shard: the
//! next sequence, the highest the hub applied and the highest it confirmed,
//! failed forwards not yet reported), `info` (counters). Erased subjects:
//! the summaries hold subject keys for seconds; the hub drops erased ones
//! when it merges them (`deltas::apply`).

use std::time::Duration;

use std::cell::{Cell, RefCell};

use serde::Deserialize;
use serde_json::json;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::bindings;
use crate::clock::now_ms;
use crate::config::Config;
use crate::intel::deltas::{ShardDelta, SlideDeltas, Summary};
use crate::intel::fanout::{StreamOp, ROOT};
use crate::intel::keys::hub_name;
use crate::intel::protocol::{AlertNotice, Update};
use crate::intel::wire::{AggOp, AggState, Forwarded, HubOp};
use crate::log::Log;
use crate::platform::{self, call_object, reply};

use super::Entry;

/// Summaries per forward call at most (a hub that was down for a while gets
/// the backlog over several periods).
const SUMMARIES_PER_FORWARD: u32 = 30;
/// Unconfirmed summaries kept per hub shard at most (an hour at the default
/// period): past it, while a hub stays unreachable, the oldest is dropped and
/// its requests are counted in `observations_dropped` (storage bound).
const MAX_UNCONFIRMED: u64 = 1_800;
/// Events held at most (memory bound): a report that brings the held events
/// past it has them published at once, from its own request.
const MAX_HELD_EVENTS: usize = 5_000;
/// How long a report's id is remembered: an isolate sends a report again at
/// once when its answer is lost (`record::send_report`), so minutes are plenty.
const REPORT_IDS_KEPT_MS: f64 = 5.0 * 60_000.0;
/// Longer ids are not ours (`<16 hex>-<number>`) and are not remembered.
const MAX_REPORT_ID_BYTES: usize = 64;

#[derive(Deserialize)]
struct DataRow {
    data: String,
}

#[derive(Deserialize)]
struct ShardRow {
    shard: f64,
}

#[derive(Deserialize)]
struct SentRow {
    seq: f64,
    data: String,
}

#[derive(Deserialize)]
struct Progress {
    next_seq: f64,
    applied: f64,
    confirmed: f64,
    failures: f64,
}

#[derive(Deserialize)]
struct Counters {
    reports: f64,
    forwards: f64,
    failures: f64,
}

#[derive(Deserialize)]
struct CountRow {
    n: f64,
}

/// Profile events waiting for the next publication, in arrival order.
#[derive(Default)]
struct Held {
    updates: Vec<Update>,
    alerts: Vec<AlertNotice>,
}

impl Held {
    fn len(&self) -> usize {
        self.updates.len() + self.alerts.len()
    }
}

#[durable_object]
pub struct AggregatorObject {
    state: State,
    env: Env,
    events: RefCell<Held>,
    published: Cell<u64>,
    publications: Cell<u64>,
    /// Reports not merged because their id was (memory, for `AggState`).
    duplicates: Cell<u64>,
}

impl DurableObject for AggregatorObject {
    fn new(state: State, env: Env) -> Self {
        AggregatorObject {
            state,
            env,
            events: RefCell::new(Held::default()),
            published: Cell::new(0),
            publications: Cell::new(0),
            duplicates: Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            Err(e) => return super::config_invalid(&self.state, Entry::Fetch, &e).await,
        };
        let op: AggOp = match platform::read_op(&mut req).await {
            Ok(op) => op,
            Err(e) => {
                Log::new("aggregator.fetch").error("bad op", &e);
                return reply(400, &json!({"error": "bad_op", "message": e.to_string()}));
            }
        };
        let sql = self.state.storage().sql();
        migrate(&sql)?;
        match op {
            AggOp::Report { deltas, mut updates, mut alerts, id } => {
                if let Some(name) = self.state.id().name() {
                    sql.exec("UPDATE info SET name = ? WHERE id = 1", vec![name.into()])?;
                }
                // A report sent again after its answer was lost: merged once.
                // The id is checked and recorded with the merge, with no
                // await in between, so they are stored together.
                let id = id.filter(|i| i.len() <= MAX_REPORT_ID_BYTES);
                if let Some(id) = &id {
                    let seen = sql
                        .exec("SELECT COUNT(*) AS n FROM report_ids WHERE id = ?", vec![id.clone().into()])?
                        .to_array::<CountRow>()?
                        .first()
                        .is_some_and(|r| r.n > 0.0);
                    if seen {
                        self.duplicates.set(self.duplicates.get().saturating_add(1));
                        return reply(200, &json!({"merged": 0, "duplicate": true}));
                    }
                    sql.exec(
                        "INSERT INTO report_ids (id, at) VALUES (?, ?)",
                        vec![id.clone().into(), now_ms().into()],
                    )?;
                }
                // Read, merge and write with no await in between: reports
                // arriving together never overwrite each other.
                for (shard, d) in &deltas.shards {
                    let mut open = sql
                        .exec("SELECT data FROM open WHERE shard = ?", vec![i64::from(*shard).into()])?
                        .to_array::<DataRow>()?
                        .first()
                        .and_then(|r| serde_json::from_str::<ShardDelta>(&r.data).ok())
                        .unwrap_or_default();
                    open.absorb(d);
                    sql.exec(
                        "INSERT OR REPLACE INTO open (shard, data) VALUES (?, ?)",
                        vec![i64::from(*shard).into(), platform::to_json(&open)?.into()],
                    )?;
                }
                sql.exec("UPDATE info SET reports = reports + 1 WHERE id = 1", None)?;
                let overflow = {
                    let mut held = self.events.borrow_mut();
                    held.updates.append(&mut updates);
                    held.alerts.append(&mut alerts);
                    held.len() >= MAX_HELD_EVENTS
                };
                self.ensure_alarm(&config).await?;
                if overflow {
                    self.publish(&Log::new("aggregator.fetch")).await;
                }
                reply(200, &json!({"merged": deltas.shards.len()}))
            }
            AggOp::State => {
                let mut state = agg_state(&sql)?;
                state.events_held = self.events.borrow().len() as u64;
                state.events_published = self.published.get();
                state.publications = self.publications.get();
                state.duplicate_reports = self.duplicates.get();
                reply(200, &state)
            }
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let log = Log::new("aggregator.alarm");
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            Err(e) => return super::config_invalid(&self.state, Entry::Alarm, &e).await,
        };
        let sql = self.state.storage().sql();
        migrate(&sql)?;
        let name = match self.state.id().name() {
            Some(n) => n,
            None => sql
                .exec("SELECT name AS data FROM info WHERE id = 1", None)?
                .to_array::<DataRow>()?
                .into_iter()
                .next()
                .map(|r| r.data)
                .unwrap_or_default(),
        };
        if name.is_empty() {
            log.error("unnamed", "the alarm came without its name; skipped until the next report");
            return Response::ok("unnamed");
        }
        // Re-arm first: whatever fails below, the next forward comes.
        self.state.storage().set_alarm(Duration::from_millis(u64::from(config.hub.forward_ms))).await?;
        self.publish(&log).await;
        seal(&sql, &config, now_ms())?;
        sql.exec("DELETE FROM report_ids WHERE at < ?", vec![(now_ms() - REPORT_IDS_KEPT_MS).into()])?;
        let shards: Vec<u32> = sql
            .exec("SELECT DISTINCT shard FROM sent ORDER BY shard", None)?
            .to_array::<ShardRow>()?
            .into_iter()
            .map(|r| r.shard as u32)
            .collect();
        for shard in shards {
            self.forward(&sql, &name, shard, &log).await?;
        }
        let left = count(&sql, "SELECT COUNT(*) AS n FROM sent")?
            + count(&sql, "SELECT COUNT(*) AS n FROM open")?
            + self.events.borrow().len() as u64;
        if left == 0 {
            // Nothing to forward or to see confirmed: sleep until the next report.
            self.state.storage().delete_alarm().await?;
        }
        Response::ok("forwarded")
    }
}

fn migrate(sql: &SqlStorage) -> Result<()> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS open (shard INTEGER PRIMARY KEY, data TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS sent (shard INTEGER NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
           PRIMARY KEY (shard, seq));
         CREATE TABLE IF NOT EXISTS shards (shard INTEGER PRIMARY KEY, next_seq INTEGER NOT NULL DEFAULT 1,
           applied INTEGER NOT NULL DEFAULT 0, confirmed INTEGER NOT NULL DEFAULT 0,
           failures INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE IF NOT EXISTS info (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL DEFAULT '',
           reports INTEGER NOT NULL DEFAULT 0, forwards INTEGER NOT NULL DEFAULT 0,
           failures INTEGER NOT NULL DEFAULT 0);
         INSERT OR IGNORE INTO info (id) VALUES (1);
         CREATE TABLE IF NOT EXISTS report_ids (id TEXT PRIMARY KEY, at REAL NOT NULL);
         CREATE INDEX IF NOT EXISTS report_ids_at ON report_ids (at);",
        None,
    )?;
    Ok(())
}

fn count(sql: &SqlStorage, query: &str) -> Result<u64> {
    Ok(sql.exec(query, None)?.to_array::<CountRow>()?.first().map_or(0, |r| r.n as u64))
}

fn progress(sql: &SqlStorage, shard: u32) -> Result<Progress> {
    sql.exec("INSERT OR IGNORE INTO shards (shard) VALUES (?)", vec![i64::from(shard).into()])?;
    sql.exec(
        "SELECT next_seq, applied, confirmed, failures FROM shards WHERE shard = ?",
        vec![i64::from(shard).into()],
    )?
    .to_array::<Progress>()?
    .into_iter()
    .next()
    .ok_or_else(|| worker::Error::RustError("shard progress missing".into()))
}

/// Turns every open summary into the next numbered one of its shard (no
/// await in between: one atomic write), then bounds each shard's backlog.
fn seal(sql: &SqlStorage, config: &Config, now: f64) -> Result<()> {
    let open: Vec<(u32, String)> = sql
        .exec("SELECT shard, data FROM open", None)?
        .to_array::<OpenRow>()?
        .into_iter()
        .map(|r| (r.shard as u32, r.data))
        .collect();
    for (shard, data) in open {
        let p = progress(sql, shard)?;
        let seq = p.next_seq as u64;
        sql.exec(
            "INSERT INTO sent (shard, seq, data) VALUES (?, ?, ?)",
            vec![i64::from(shard).into(), (seq as f64).into(), data.into()],
        )?;
        sql.exec(
            "UPDATE shards SET next_seq = ? WHERE shard = ?",
            vec![((seq + 1) as f64).into(), i64::from(shard).into()],
        )?;
        sql.exec("DELETE FROM open WHERE shard = ?", vec![i64::from(shard).into()])?;
        drop_over_bound(sql, config, shard, now)?;
    }
    Ok(())
}

/// Drops the oldest unconfirmed summaries of `shard` past `MAX_UNCONFIRMED`:
/// their requests (and the losses they carried) are counted as dropped in
/// the next summary, and the hub is told to skip them (`confirmed`, sent as
/// `base`), so that its sequence does not wait for them.
fn drop_over_bound(sql: &SqlStorage, config: &Config, shard: u32, now: f64) -> Result<()> {
    let held = count_after(sql, shard, 0)?;
    if held <= MAX_UNCONFIRMED {
        return Ok(());
    }
    let rows = sql
        .exec(
            "SELECT seq, data FROM sent WHERE shard = ? ORDER BY seq LIMIT ?",
            vec![i64::from(shard).into(), ((held - MAX_UNCONFIRMED) as f64).into()],
        )?
        .to_array::<SentRow>()?;
    let mut lost = 0u64;
    let mut last = 0u64;
    for r in &rows {
        if let Ok(d) = serde_json::from_str::<ShardDelta>(&r.data) {
            let dropped: u64 = d.slides.values().map(|s| s.observations_dropped).sum();
            lost = lost.saturating_add(d.requests()).saturating_add(dropped);
        }
        last = last.max(r.seq as u64);
    }
    sql.exec("DELETE FROM sent WHERE shard = ? AND seq <= ?", vec![i64::from(shard).into(), (last as f64).into()])?;
    sql.exec(
        "UPDATE shards SET confirmed = MAX(confirmed, ?) WHERE shard = ?",
        vec![(last as f64).into(), i64::from(shard).into()],
    )?;
    let mut counted = SlideDeltas::default();
    counted.add_dropped(&config.analytics, lost, now);
    if let Some(d) = counted.shards.get(&0) {
        let mut open = sql
            .exec("SELECT data FROM open WHERE shard = 0", None)?
            .to_array::<DataRow>()?
            .first()
            .and_then(|r| serde_json::from_str::<ShardDelta>(&r.data).ok())
            .unwrap_or_default();
        open.absorb(d);
        sql.exec("INSERT OR REPLACE INTO open (shard, data) VALUES (0, ?)", vec![platform::to_json(&open)?.into()])?;
    }
    Log::new("aggregator.alarm").error(
        "backlog",
        format_args!("hub shard {shard} unreachable: dropped {} summaries ({lost} requests, counted)", rows.len()),
    );
    Ok(())
}

#[derive(Deserialize)]
struct OpenRow {
    shard: f64,
    data: String,
}

fn agg_state(sql: &SqlStorage) -> Result<AggState> {
    let c = sql
        .exec("SELECT reports, forwards, failures FROM info WHERE id = 1", None)?
        .to_array::<Counters>()?
        .into_iter()
        .next()
        .unwrap_or(Counters { reports: 0.0, forwards: 0.0, failures: 0.0 });
    Ok(AggState {
        open: count(sql, "SELECT COUNT(*) AS n FROM open")?,
        unconfirmed: count(sql, "SELECT COUNT(*) AS n FROM sent")?,
        forwards: c.forwards as u64,
        forward_failures: c.failures as u64,
        reports: c.reports as u64,
        ..AggState::default()
    })
}

impl AggregatorObject {
    /// Publishes the held events to the stream root in one call (tried
    /// twice). If both tries fail they go back in front of what arrived
    /// meanwhile, for the next alarm (bounded: past `MAX_HELD_EVENTS` the
    /// oldest are dropped, logged).
    async fn publish(&self, log: &Log) {
        let Held { updates, alerts } = std::mem::take(&mut *self.events.borrow_mut());
        let n = updates.len() + alerts.len();
        if n == 0 {
            return;
        }
        let op = StreamOp::Publish { updates, alerts };
        let mut last = String::new();
        for _ in 0..2 {
            self.publications.set(self.publications.get().saturating_add(1));
            match call_object::<_, serde_json::Value>(&self.env, bindings::STREAMS, ROOT, &op).await {
                Ok((200, _)) => {
                    self.published.set(self.published.get().saturating_add(n as u64));
                    return;
                }
                Ok((status, _)) => last = format!("stream root answered {status}"),
                Err(e) => last = e.to_string(),
            }
        }
        let StreamOp::Publish { mut updates, mut alerts } = op else { return };
        let mut held = self.events.borrow_mut();
        updates.append(&mut held.updates);
        alerts.append(&mut held.alerts);
        let over = (updates.len() + alerts.len()).saturating_sub(MAX_HELD_EVENTS);
        let cut = over.min(updates.len());
        updates.drain(..cut);
        alerts.drain(..(over - cut).min(alerts.len()));
        *held = Held { updates, alerts };
        log.error(
            "publish",
            format_args!("{n} events to the stream root: {last} (kept for the next alarm; {over} dropped)"),
        );
    }

    /// Arms the forward if no alarm is set (the first report after a quiet spell).
    async fn ensure_alarm(&self, config: &Config) -> Result<()> {
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none() {
            storage.set_alarm(Duration::from_millis(u64::from(config.hub.forward_ms))).await?;
        }
        Ok(())
    }

    /// Sends shard `shard`'s summaries the hub has not applied (or, when
    /// all are applied, none: the answer still says what is persisted) and
    /// deletes what the hub confirms persisted. Tried twice; a hub that
    /// answers with a gap (it restarted) gets the rest at once.
    async fn forward(&self, sql: &SqlStorage, name: &str, shard: u32, log: &Log) -> Result<()> {
        let target = hub_name(shard);
        let mut failed = 0;
        let mut rounds = 0;
        while rounds < 3 {
            rounds += 1;
            let p = progress(sql, shard)?;
            let rows = sql
                .exec(
                    "SELECT seq, data FROM sent WHERE shard = ? AND seq > ? ORDER BY seq LIMIT ?",
                    vec![i64::from(shard).into(), p.applied.into(), i64::from(SUMMARIES_PER_FORWARD).into()],
                )?
                .to_array::<SentRow>()?;
            let summaries: Vec<Summary> = rows
                .iter()
                .filter_map(|r| {
                    serde_json::from_str::<ShardDelta>(&r.data).ok().map(|delta| Summary { seq: r.seq as u64, delta })
                })
                .collect();
            let last = summaries.last().map(|s| s.seq);
            let op = HubOp::Forward {
                from: name.to_string(),
                base: p.confirmed as u64,
                summaries,
                failures: p.failures as u64,
            };
            sql.exec("UPDATE info SET forwards = forwards + 1 WHERE id = 1", None)?;
            let answer = call_object::<_, Forwarded>(&self.env, bindings::HUB, &target, &op).await;
            let f = match answer {
                Ok((200, Some(f))) => f,
                Ok((status, _)) => {
                    failed += 1;
                    self.failed(sql, shard, log, format_args!("{target} answered {status}"))?;
                    if failed >= 2 {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => {
                    failed += 1;
                    self.failed(sql, shard, log, format_args!("{target}: {e}"))?;
                    if failed >= 2 {
                        return Ok(());
                    }
                    continue;
                }
            };
            let confirmed = (p.confirmed as u64).max(f.persisted);
            sql.exec(
                "DELETE FROM sent WHERE shard = ? AND seq <= ?",
                vec![i64::from(shard).into(), (confirmed as f64).into()],
            )?;
            sql.exec(
                "UPDATE shards SET applied = ?, confirmed = ?, failures = 0 WHERE shard = ?",
                vec![(f.applied as f64).into(), (confirmed as f64).into(), i64::from(shard).into()],
            )?;
            // Everything sent was applied (or nothing was sent): done until
            // the next period. Otherwise the hub lost some (a restart) or
            // there is more backlog: send from what it has, now.
            if last.is_none_or(|l| f.applied >= l) && count_after(sql, shard, f.applied)? == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    fn failed(&self, sql: &SqlStorage, shard: u32, log: &Log, what: std::fmt::Arguments<'_>) -> Result<()> {
        log.error("forward", format_args!("{what} (kept, sent again)"));
        sql.exec("UPDATE shards SET failures = failures + 1 WHERE shard = ?", vec![i64::from(shard).into()])?;
        sql.exec("UPDATE info SET failures = failures + 1 WHERE id = 1", None)?;
        Ok(())
    }
}

fn count_after(sql: &SqlStorage, shard: u32, seq: u64) -> Result<u64> {
    Ok(sql
        .exec(
            "SELECT COUNT(*) AS n FROM sent WHERE shard = ? AND seq > ?",
            vec![i64::from(shard).into(), (seq as f64).into()],
        )?
        .to_array::<CountRow>()?
        .first()
        .map_or(0, |r| r.n as u64))
}

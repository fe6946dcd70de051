//! Phase 7, record: what the request path learns is coalesced in the isolate
//! and sent in batches, never one object call per request:
//! - observations per subject go to the subject's `ProfileObject` (what the
//!   profile signals need: paths, statuses, places, times, all kept);
//! - analytics samples are folded into slide deltas (`intel::deltas`), one
//!   per hub shard, and reported every `REPORT_INTERVAL_MS` (jittered
//!   +-20%, or at once past `MAX_REPORT_BYTES`) to this isolate's
//!   aggregator object (`agg:<region>:<i>`, the region being the request's
//!   continent), which forwards them to the hub (docs/analytics.md, "Tiers");
//! - profile events ride in the same report (`AggOp::Report`): the
//!   aggregator publishes them to the stream root (`objects::stream`) once
//!   per forward period, so the root hears from aggregators, not isolates.
//!   Only a report that failed twice, or an isolate that has not yet learnt
//!   its aggregator, sends its events straight to the root
//!   (`publish_events`, also used by consistent mode).
//!
//! In fast mode a request whose consult missed the verdict cache was
//! recorded by the consult itself (`consult::fast`, one call per new
//! subject): it is not queued again; its answer follows (`status`) only when
//! the profile counts it (`outcome::needs_follow_up`).
//!
//! A batch is flushed `FLUSH_INTERVAL_MS` after it opened, or at once when it
//! is full. One object call per batch instead of per request (measured: ~3x
//! the throughput, issue #3). A subject's batch that holds only calm
//! observations (a low verdict, no request signal, a 1xx-3xx status, nothing
//! enforced) waits up to `FLUSH_CALM_MS` instead, so a visitor's next page
//! views join it (Durable Object requests are billed); the first observation
//! that is not calm brings the flush forward to `FLUSH_INTERVAL_MS`.
//!
//! Who keeps the isolate alive until a batch or a report is sent: the
//! request that opened it holds its timer and flush in `ctx.wait_until`; the
//! request that fills it sends it in its own `wait_until`. No request awaits
//! a promise of another request's context (workerd cancels such
//! continuations), which is why later joiners add nothing of their own.
//!
//! What fails here runs after the response, when the request's log line is
//! already printed: each failure prints its own line (`log::background`).

use std::cell::{Cell, RefCell};
use std::time::Duration;

use worker::{Delay, Env};

use crate::bindings;
use crate::clock::now_ms;
use crate::config::{Consult, Flush};
use crate::error::Error;
use crate::intel::analytics::{AnalyticsConfig, Sample};
use crate::intel::batches::{BatchItems, Batches, Enqueued};
use crate::intel::challenge::Outcome;
use crate::intel::deltas::{jittered, SlideDeltas};
use crate::intel::fanout::{StreamOp, ROOT};
use crate::intel::ip::Identity;
use crate::intel::keys::{aggregator_name, region_of};
use crate::intel::outcome::Answer;
use crate::intel::preview::Facts;
use crate::intel::profile::Observation;
use crate::intel::protocol::{AlertNotice, Update};
use crate::intel::wire::{AggOp, ObserveReply, ProfileOp};
use crate::log;
use crate::platform::call_object;

use super::verdicts::remember;
use super::Io;

/// A report whose deltas pass this size (estimated, `SlideDeltas::bytes`)
/// goes at once (memory and message bound; a busy isolate's deltas of one
/// shard and slide stay near 70 KB: the slide's key bound plus sketches).
const MAX_REPORT_BYTES: usize = 256 * 1024;
/// Profile events a report carries at most: past it, the report is sent at once.
const MAX_REPORT_EVENTS: usize = 500;
/// Open batches (subjects) an isolate keeps at most, observations in all of
/// them, and their estimated bytes (`Items::bytes`): past any, the batch is
/// flushed at once instead of waiting. Observations are a few hundred bytes
/// each, but a path can be kilobytes: 10,000 of 16 KB would be more than an
/// isolate's 128 MB, hence the bytes.
const MAX_OPEN_BATCHES: usize = 2_000;
const MAX_QUEUED_ITEMS: usize = 10_000;
const MAX_QUEUED_BYTES: usize = 8 << 20;

/// What coalescing reads of the configuration: when a batch is flushed and
/// a report sent (`Flush`), the analytics slides, and the verdict cache a profile flush's answer refreshes
/// (`Consult`'s cache settings).
#[derive(Clone, Copy)]
pub struct Batching<'a> {
    pub flush: &'a Flush,
    pub cache: &'a Consult,
    /// The slides the analytics deltas are folded into.
    pub analytics: &'a AnalyticsConfig,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Target {
    Profile(String),
}

enum Items {
    Observations { ip: String, list: Vec<Observation> },
}

impl BatchItems for Items {
    fn count(&self) -> usize {
        match self {
            Items::Observations { list, .. } => list.len(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Items::Observations { ip, list } => ip.len() + list.iter().map(Observation::approx_bytes).sum::<usize>(),
        }
    }
}

/// The analytics report this isolate is folding: its deltas, the profile
/// events that go out with it, and which timer owns it.
struct Report {
    id: u64,
    aggregator: String,
    deltas: SlideDeltas,
    samples: usize,
    updates: Vec<Update>,
    alerts: Vec<AlertNotice>,
}

thread_local! {
    static PENDING: RefCell<Batches<Target, Items>> =
        RefCell::new(Batches::new(MAX_OPEN_BATCHES, MAX_QUEUED_ITEMS).with_max_bytes(MAX_QUEUED_BYTES));
    static REPORT: RefCell<Option<Report>> = const { RefCell::new(None) };
    static REPORTS_OPENED: Cell<u64> = const { Cell::new(0) };
    /// This isolate's id (random, made once): which of its region's
    /// aggregators it reports to.
    static ISOLATE: Cell<Option<u64>> = const { Cell::new(None) };
    /// Where this isolate reports (its aggregator, from the region of the
    /// last request it sampled) and how long a report stays open: learnt
    /// from the request path, used by events that arrive with no report open.
    static ROUTE: RefCell<Option<Route>> = const { RefCell::new(None) };
    /// Observations and samples lost (a flush or report failed twice) and
    /// not yet folded into a report.
    static DROPPED: Cell<u64> = const { Cell::new(0) };
}

#[derive(Clone)]
struct Route {
    aggregator: String,
    report_ms: u32,
}

/// Observations and samples waiting in this isolate (the analytics API's `queueSize`).
pub fn queued() -> usize {
    let samples = REPORT.with(|r| r.borrow().as_ref().map_or(0, |r| r.samples));
    PENDING.with(|p| p.borrow().queued()) + samples
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // Only spreads isolates over aggregators and timers: the clock will do
    // when the runtime's random source fails.
    if getrandom::fill(&mut b).is_err() {
        return now_ms() as u32;
    }
    u32::from_le_bytes(b)
}

fn isolate_id() -> u64 {
    ISOLATE.with(|i| match i.get() {
        Some(id) => id,
        None => {
            let id = (u64::from(random_u32()) << 32) | u64::from(random_u32());
            i.set(Some(id));
            id
        }
    })
}

/// Counts `n` observations or samples that are lost; the next analytics report carries the count.
fn count_dropped(n: u64) {
    DROPPED.with(|d| d.set(d.get().saturating_add(n)));
}

/// Whether an observation can wait the calm interval: nothing about it needs
/// the profile soon.
pub fn is_calm(obs: &Observation, verdict_low: bool) -> bool {
    verdict_low && obs.signals.is_empty() && obs.action.is_none() && obs.status.is_none_or(|s| s < 400)
}

/// Records one request's observation for the profile of `id` (its key; its
/// display form goes with the batch).
pub fn observation(io: Io<'_>, b: Batching<'_>, id: &Identity, obs: Observation, verdict_low: bool) {
    let urgent = !is_calm(&obs, verdict_low) || b.flush.calm_ms <= b.flush.interval_ms;
    enqueue(io, b, Target::Profile(id.key.as_str().to_string()), urgent, |items| match items {
        Some(Items::Observations { list, .. }) => {
            list.push(obs);
            None
        }
        _ => Some(Items::Observations { ip: id.display.clone(), list: vec![obs] }),
    });
}

/// Records one request's analytics sample, folded into this isolate's
/// report for hub shard `shard`, with the count of anything this isolate
/// lost since its last report. `continent`: the request's (`cf.continent`;
/// its region names the aggregator).
pub fn sample(io: Io<'_>, b: Batching<'_>, shard: u32, continent: Option<&str>, s: Sample, facts: Facts) {
    let aggregator = aggregator_name(region_of(continent), isolate_id(), b.flush.aggregators_per_region);
    ROUTE.with(|k| {
        let mut k = k.borrow_mut();
        if k.as_ref().is_none_or(|r| r.aggregator != aggregator || r.report_ms != b.flush.report_ms) {
            *k = Some(Route { aggregator, report_ms: b.flush.report_ms });
        }
    });
    let lost = DROPPED.with(|d| d.replace(0));
    fold(io, b, |d, cfg, now| {
        d.add_sample(cfg, shard, &s, now);
        d.add_facts(cfg, shard, facts, now);
        if lost > 0 {
            d.add_dropped(cfg, lost, now);
        }
    });
}

/// Counts one challenge outcome under its label (`intel::challenge::Why`)
/// in the slide of `at` (a solution: its token's issue time), reported with
/// this isolate's next report like a sample.
pub fn challenge(io: Io<'_>, b: Batching<'_>, label: &str, outcome: Outcome, at: f64) {
    fold(io, b, |d, cfg, now| d.add_challenge(cfg, label, outcome, at, now));
}

/// Counts events the API rejected (reported with the next report).
pub fn rejected_events(io: Io<'_>, b: Batching<'_>, n: u64) {
    if n == 0 {
        return;
    }
    fold(io, b, |d, cfg, now| d.add_rejected(cfg, n, now));
}

/// Folds into the open report (opening it, with its timer in this request's
/// `wait_until`, when there is none), or sends it at once from this request
/// when it grew past `MAX_REPORT_BYTES`.
fn fold(io: Io<'_>, b: Batching<'_>, add: impl FnOnce(&mut SlideDeltas, &AnalyticsConfig, f64)) {
    let now = now_ms();
    let (opened, full) = REPORT.with(|r| {
        let mut r = r.borrow_mut();
        let mut opened = None;
        let report = r.get_or_insert_with(|| {
            let aggregator = ROUTE
                .with(|k| k.borrow().as_ref().map(|r| r.aggregator.clone()))
                .unwrap_or_else(|| aggregator_name(region_of(None), isolate_id(), b.flush.aggregators_per_region));
            let rep = new_report(aggregator);
            opened = Some(rep.id);
            rep
        });
        add(&mut report.deltas, b.analytics, now);
        report.samples += 1;
        let full = if report.deltas.bytes() >= MAX_REPORT_BYTES { r.take() } else { None };
        (opened, full)
    });
    let env = io.env.clone();
    if let Some(report) = full {
        io.ctx.wait_until(async move { send_report(&env, report).await });
    } else if let Some(id) = opened {
        let period = b.flush.report_ms;
        io.ctx.wait_until(async move { send_when_due(&env, id, period).await });
    }
}

/// A new, empty report to `aggregator`, numbered for its timer.
fn new_report(aggregator: String) -> Report {
    let id = REPORTS_OPENED.with(|n| {
        n.set(n.get().wrapping_add(1));
        n.get()
    });
    Report { id, aggregator, deltas: SlideDeltas::default(), samples: 0, updates: Vec::new(), alerts: Vec::new() }
}

/// Waits out a report's period (jittered), then sends it unless it already
/// went (full).
async fn send_when_due(env: &Env, id: u64, period_ms: u32) {
    Delay::from(Duration::from_millis(jittered(period_ms, random_u32()))).await;
    let report = REPORT.with(|r| {
        let mut r = r.borrow_mut();
        if r.as_ref().is_some_and(|rep| rep.id == id) {
            r.take()
        } else {
            None
        }
    });
    if let Some(report) = report {
        send_report(env, report).await;
    }
}

/// Sends a report, deltas and events in one call, to its aggregator (tried
/// twice). If both fail, its samples and the losses it carried are counted
/// lost and ride on the next report, and its events go straight to the
/// stream root (`publish_events`): the profiles have them, the streams
/// should still show them.
async fn send_report(env: &Env, report: Report) {
    if report.deltas.is_empty() && report.updates.is_empty() && report.alerts.is_empty() {
        return;
    }
    // Numbered, so the retry below after an answer that was lost (the
    // aggregator merged it) is not merged twice.
    let id = Some(format!("{:016x}-{}", isolate_id(), report.id));
    let op = AggOp::Report { deltas: report.deltas, updates: report.updates, alerts: report.alerts, id };
    for attempt in 1..=2 {
        let outcome =
            match call_object::<_, serde_json::Value>(env, bindings::AGGREGATORS, &report.aggregator, &op).await {
                Ok((200, _)) => return,
                Ok((status, _)) => Error::platform(format!("aggregator answered {status}")),
                Err(e) => e,
            };
        log::background(
            "edge.after",
            "report failed",
            format_args!("{} samples to {}, attempt {attempt}: {outcome}", report.samples, report.aggregator),
        );
    }
    if let AggOp::Report { deltas, updates, alerts, .. } = op {
        count_dropped(deltas.lost_if_dropped());
        publish_events(env, updates, alerts).await;
    }
}

/// Sends profile events straight to the stream root (which also forwards
/// them to the hub for counting): one call, in order, tried twice. Only for
/// what cannot ride a report: consistent mode's events, a report that
/// failed twice, events before this isolate knows its aggregator.
pub async fn publish_events(env: &Env, updates: Vec<Update>, alerts: Vec<AlertNotice>) {
    if updates.is_empty() && alerts.is_empty() {
        return;
    }
    // One retry, as for any batch; a lost batch of events is logged (not
    // counted as lost observations: the profiles have them).
    let mut last = None;
    for _ in 0..2 {
        match publish(env, updates.clone(), alerts.clone()).await {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
    }
    if let Some(e) = last {
        log::background(
            "edge.after",
            "events not published",
            format_args!("{} events: {e}", updates.len() + alerts.len()),
        );
    }
}

/// One `Publish` call to the stream root.
async fn publish(env: &Env, updates: Vec<Update>, alerts: Vec<AlertNotice>) -> Result<(), Error> {
    let op = StreamOp::Publish { updates, alerts };
    match call_object::<_, serde_json::Value>(env, bindings::STREAMS, ROOT, &op).await? {
        (200, _) => Ok(()),
        (status, _) => Err(Error::platform(format!("stream root answered {status}"))),
    }
}

/// Adds profile events to this isolate's open report (sent at once when it
/// then holds `MAX_REPORT_EVENTS`); with none open (a calm batch flushed
/// after its requests' report went), opens one for them and holds it for a
/// report period in this context, as the request that opens a report does.
/// Before this isolate sampled any request it does not know its
/// aggregator: the events go straight to the root.
async fn forward_published(env: &Env, mut updates: Vec<Update>, mut alerts: Vec<AlertNotice>) {
    if updates.is_empty() && alerts.is_empty() {
        return;
    }
    enum Next {
        Done,
        Send(Report),
        Hold(u64, u32),
        Direct(Vec<Update>, Vec<AlertNotice>),
    }
    let next = REPORT.with(|r| {
        let mut r = r.borrow_mut();
        if let Some(rep) = r.as_mut() {
            rep.updates.append(&mut updates);
            rep.alerts.append(&mut alerts);
            let full = rep.updates.len() + rep.alerts.len() >= MAX_REPORT_EVENTS;
            return match (full, r.take()) {
                (true, Some(rep)) => Next::Send(rep),
                (_, rep) => {
                    *r = rep;
                    Next::Done
                }
            };
        }
        match ROUTE.with(|k| k.borrow().clone()) {
            Some(route) => {
                let mut rep = new_report(route.aggregator);
                rep.updates = std::mem::take(&mut updates);
                rep.alerts = std::mem::take(&mut alerts);
                let id = rep.id;
                *r = Some(rep);
                Next::Hold(id, route.report_ms)
            }
            None => Next::Direct(std::mem::take(&mut updates), std::mem::take(&mut alerts)),
        }
    });
    match next {
        Next::Done => {}
        Next::Send(report) => send_report(env, report).await,
        Next::Hold(id, period) => send_when_due(env, id, period).await,
        Next::Direct(updates, alerts) => publish_events(env, updates, alerts).await,
    }
}

/// Adds to the target's open batch (`add` returns a new batch's items when
/// there is none), opening its timer, bringing the timer forward when the
/// batch turns urgent, or flushing it at once when it is full (a subject's
/// at `FLUSH_MAX_BATCH`) or the isolate's bounds are reached.
fn enqueue(
    io: Io<'_>,
    b: Batching<'_>,
    target: Target,
    urgent: bool,
    add: impl FnOnce(Option<&mut Items>) -> Option<Items>,
) {
    let max = b.flush.max_batch;
    let outcome = PENDING.with(|p| p.borrow_mut().enqueue(target.clone(), max, urgent, add));
    match outcome {
        Enqueued::Waiting => {}
        Enqueued::Flush(items) => {
            let (env, cache) = (io.env.clone(), b.cache.clone());
            io.ctx.wait_until(async move { flush(&env, &cache, &target, items).await });
        }
        Enqueued::Timer { id, urgent } => {
            // This request's context keeps the isolate alive for its own timer
            // (a calm batch's timer, then possibly an urgent one: whichever fires
            // first flushes, the other finds the batch gone).
            let wait_ms = if urgent { b.flush.interval_ms } else { b.flush.calm_ms };
            let (env, cache) = (io.env.clone(), b.cache.clone());
            io.ctx.wait_until(async move {
                Delay::from(Duration::from_millis(u64::from(wait_ms))).await;
                // Flush it unless it was already flushed (full, or by the other timer).
                let batch = PENDING.with(|p| p.borrow_mut().take_if(&target, id));
                if let Some(items) = batch {
                    flush(&env, &cache, &target, items).await;
                }
            });
        }
    }
}

/// Sends a batch (tried twice); a profile's answer refreshes the verdict
/// cache (`cache`: its settings).
async fn flush(env: &Env, cache: &Consult, target: &Target, items: Items) {
    let n = items.count();
    // One retry: an object can be briefly unavailable while it moves.
    for attempt in 1..=2 {
        let outcome = match (target, &items) {
            (Target::Profile(key), Items::Observations { ip, list }) => {
                let op = ProfileOp::Observe { subject: key.clone(), ip: ip.clone(), observations: list.clone() };
                match call_object::<_, ObserveReply>(env, bindings::PROFILES, key, &op).await {
                    Ok((200, Some(r))) => {
                        remember(cache, key, r.verdict);
                        forward_published(env, r.updates, r.alerts).await;
                        Ok(())
                    }
                    Ok((status, _)) => Err(Error::platform(format!("profile object answered {status}"))),
                    Err(e) => Err(e),
                }
            }
        };
        match outcome {
            Ok(()) => return,
            Err(e) => log::background("edge.after", "flush failed", format_args!("{n} items, attempt {attempt}: {e}")),
        }
    }
    // Lost: counted, so the loss shows in the analytics and /metrics.
    count_dropped(match &items {
        Items::Observations { list, .. } => list.len() as u64,
    });
}

/// Events a fast consult's recording published (joining this isolate's
/// analytics report in the record phase: `forward_events`).
#[derive(Default)]
pub struct Recorded {
    pub updates: Vec<Update>,
    pub alerts: Vec<AlertNotice>,
}

/// Sends the outcome of a request of `id` at `at` whose observation was
/// recorded before it was answered: the origin's status, or the edge's
/// enforcement action. Consistent mode sends every answer (its events go to
/// the stream root at once); fast mode (`cache`: the verdict cache's settings) only
/// the answers the profile counts (`outcome::needs_follow_up`), after a
/// consult that recorded a new subject's first request, and its answer
/// refreshes the cache and joins this isolate's analytics report.
pub async fn status(env: Env, id: Identity, at: f64, answer: Answer, cache: Option<Consult>) {
    let action = match answer {
        Answer::Enforced { action, .. } => Some(action.as_str().to_string()),
        _ => None,
    };
    let subject = id.key.as_str().to_string();
    let op = ProfileOp::Status { subject: subject.clone(), ip: id.display, at, status: answer.status(), action };
    match call_object::<_, ObserveReply>(&env, bindings::PROFILES, &subject, &op).await {
        Ok((200, Some(r))) => match cache {
            Some(cache) => {
                remember(&cache, &subject, r.verdict);
                forward_published(&env, r.updates, r.alerts).await;
            }
            None => publish_events(&env, r.updates, r.alerts).await,
        },
        Ok(_) => {}
        Err(e) => {
            log::background("edge.after", "status record failed", e);
            count_dropped(1);
        }
    }
}

/// The answer of a fast consult that outlived the request's budget (it still
/// carried the request's observation): fills the verdict cache and forwards
/// what the recording published; a failed one loses the observation, counted.
pub async fn late_consult(env: &Env, cache: &Consult, key: &str, answer: Result<ObserveReply, Error>) {
    match answer {
        Ok(r) => {
            remember(cache, key, r.verdict);
            forward_published(env, r.updates, r.alerts).await;
        }
        Err(e) => {
            log::background("edge.after", "late consult failed, its observation is lost", e);
            count_dropped(1);
        }
    }
}

/// Adds what a fast consult's recording published to this isolate's open
/// analytics report (`forward_published`: the aggregator publishes them).
pub fn forward_events(io: Io<'_>, recorded: Recorded) {
    if recorded.updates.is_empty() && recorded.alerts.is_empty() {
        return;
    }
    let env = io.env.clone();
    io.ctx.wait_until(async move { forward_published(&env, recorded.updates, recorded.alerts).await });
}

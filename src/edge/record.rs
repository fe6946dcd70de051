//! Phase 7, record: what the request path learns is coalesced in the isolate
//! and sent in batches, never one object call per request:
//! - observations per subject go to the subject's `ProfileObject` (what the
//!   profile signals need: paths, statuses, places, times, all kept);
//! - analytics samples of all subjects go to their hub shard;
//! - the events profiles publish go to the stream root (`events`: their own
//!   batch, flushed `FLUSH_INTERVAL_MS` after it opened), which publishes
//!   them to the streams' relays and forwards them to the hub for counting.
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
//! Who keeps the isolate alive until a batch is stored: the request that
//! opened the batch holds its timer and flush in `ctx.wait_until`; the request
//! that fills a batch flushes it in its own `wait_until`. No request awaits a
//! promise of another request's context (workerd cancels such continuations),
//! which is why later joiners add nothing of their own.
//!
//! What fails here runs after the response, when the request's log line is
//! already printed: each failure prints its own line (`log::background`).

use std::cell::{Cell, RefCell};
use std::time::Duration;

use worker::{Delay, Env};

use crate::bindings;
use crate::config::{Consult, Flush};
use crate::error::Error;
use crate::intel::analytics::Sample;
use crate::intel::batches::{BatchItems, Batches, Enqueued};
use crate::intel::fanout::{StreamOp, ROOT};
use crate::intel::ip::Identity;
use crate::intel::keys::hub_name;
use crate::intel::outcome::Answer;
use crate::intel::profile::Observation;
use crate::intel::protocol::{AlertNotice, Update};
use crate::intel::wire::HubOp;
use crate::intel::wire::{ObserveReply, ProfileOp};
use crate::log;
use crate::platform::call_object;

use super::verdicts::remember;
use super::Io;

/// Samples per hub report at most (a report is ~100 bytes per sample).
const HUB_BATCH: usize = 500;
/// Events per stream-root call at most (an update is ~500 bytes).
const EVENT_BATCH: usize = 200;
/// Open batches (subjects and hub shards) an isolate keeps at most, and
/// observations and samples in all of them: past either, the batch is
/// flushed at once instead of waiting (memory bound: at most ~10,000 items of
/// a few hundred bytes each).
const MAX_OPEN_BATCHES: usize = 2_000;
const MAX_QUEUED_ITEMS: usize = 10_000;

/// What coalescing reads of the configuration: when a batch is flushed
/// (`Flush`) and the verdict cache a profile flush's answer refreshes
/// (`Consult`'s cache settings).
#[derive(Clone, Copy)]
pub struct Batching<'a> {
    pub flush: &'a Flush,
    pub cache: &'a Consult,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Target {
    Profile(String),
    Hub(u32),
    /// The stream root (profile events).
    Streams,
}

enum Items {
    Observations {
        ip: String,
        list: Vec<Observation>,
    },
    Samples {
        list: Vec<Sample>,
        rejected: u64,
        /// Observations and samples this isolate lost (reported, then counted by the hub).
        dropped: u64,
    },
    Events {
        updates: Vec<Update>,
        alerts: Vec<AlertNotice>,
    },
}

impl BatchItems for Items {
    fn count(&self) -> usize {
        match self {
            Items::Observations { list, .. } => list.len(),
            Items::Samples { list, rejected, dropped } => {
                list.len() + usize::from(*rejected > 0) + usize::from(*dropped > 0)
            }
            Items::Events { updates, alerts } => updates.len() + alerts.len(),
        }
    }
}

impl Items {
    fn samples() -> Items {
        Items::Samples { list: Vec::new(), rejected: 0, dropped: 0 }
    }
}

thread_local! {
    static PENDING: RefCell<Batches<Target, Items>> =
        RefCell::new(Batches::new(MAX_OPEN_BATCHES, MAX_QUEUED_ITEMS));
    /// Observations and samples lost (a flush failed twice) and not yet
    /// handed to a hub report.
    static DROPPED: Cell<u64> = const { Cell::new(0) };
    /// `FLUSH_INTERVAL_MS`, as the last request's record phase read it: the
    /// events batch is opened by a profile's answer, after the request that
    /// caused it, where the configuration is no longer at hand.
    static EVENTS_WAIT_MS: Cell<u32> = const { Cell::new(1_000) };
}

/// Observations and samples waiting in this isolate (the analytics API's `queueSize`).
pub fn queued() -> usize {
    PENDING.with(|p| p.borrow().queued())
}

/// Counts `n` observations or samples that are lost; the next hub report carries the count.
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

/// Records one request's analytics sample for its hub shard, with the count
/// of anything this isolate lost since its last report (any shard will do:
/// totals are summed over shards).
pub fn sample(io: Io<'_>, b: Batching<'_>, shard: u32, s: Sample) {
    let lost = DROPPED.with(|d| d.replace(0));
    enqueue(io, b, Target::Hub(shard), true, |items| match items {
        Some(Items::Samples { list, dropped, .. }) => {
            list.push(s);
            *dropped = dropped.saturating_add(lost);
            None
        }
        _ => {
            let mut items = Items::samples();
            if let Items::Samples { list, dropped, .. } = &mut items {
                list.push(s);
                *dropped = lost;
            }
            Some(items)
        }
    });
}

/// Counts events the API rejected (reported with the next hub batch).
pub fn rejected_events(io: Io<'_>, b: Batching<'_>, n: u64) {
    if n == 0 {
        return;
    }
    enqueue(io, b, Target::Hub(0), true, |items| match items {
        Some(Items::Samples { rejected, .. }) => {
            *rejected += n;
            None
        }
        _ => {
            let mut items = Items::samples();
            if let Items::Samples { rejected, .. } = &mut items {
                *rejected = n;
            }
            Some(items)
        }
    });
}

/// Sends profile events to the stream root now (consistent mode, the
/// events API, the status follow-up): one call, in order.
pub async fn publish_now(env: &Env, updates: Vec<Update>, alerts: Vec<AlertNotice>) {
    if updates.is_empty() && alerts.is_empty() {
        return;
    }
    if let Err(e) = publish(env, updates, alerts).await {
        log::background("edge.after", "events not published", e);
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

/// Adds profile events to this isolate's events batch: the call that opens
/// it waits `FLUSH_INTERVAL_MS` (inside the `wait_until` of whatever
/// delivered the events) and sends the batch to the stream root; one that
/// fills it (`EVENT_BATCH`) sends it at once. One root call per isolate and
/// interval, whatever the number of subjects.
async fn events(env: &Env, updates: Vec<Update>, alerts: Vec<AlertNotice>) {
    if updates.is_empty() && alerts.is_empty() {
        return;
    }
    let mut add = Some(Items::Events { updates, alerts });
    let outcome = PENDING.with(|p| {
        p.borrow_mut().enqueue(Target::Streams, EVENT_BATCH, true, |items| match (items, add.take()) {
            (Some(Items::Events { updates: u, alerts: a }), Some(Items::Events { mut updates, mut alerts })) => {
                u.append(&mut updates);
                a.append(&mut alerts);
                None
            }
            (_, new) => new,
        })
    });
    let items = match outcome {
        Enqueued::Waiting => return,
        Enqueued::Flush(items) => items,
        Enqueued::Timer { id, .. } => {
            let wait = EVENTS_WAIT_MS.with(Cell::get);
            Delay::from(Duration::from_millis(u64::from(wait))).await;
            match PENDING.with(|p| p.borrow_mut().take_if(&Target::Streams, id)) {
                Some(items) => items,
                None => return,
            }
        }
    };
    if let Items::Events { updates, alerts } = items {
        // One retry, as for any batch; a lost batch of events is logged
        // (not counted as lost observations: the profiles have them).
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
}

/// Adds to the target's open batch (`add` returns a new batch's items when
/// there is none), opening its timer, bringing the timer forward when the
/// batch turns urgent, or flushing it at once when it is full (a subject's
/// at `FLUSH_MAX_BATCH`, a hub shard's at `HUB_BATCH`) or the isolate's
/// bounds are reached.
fn enqueue(
    io: Io<'_>,
    b: Batching<'_>,
    target: Target,
    urgent: bool,
    add: impl FnOnce(Option<&mut Items>) -> Option<Items>,
) {
    EVENTS_WAIT_MS.with(|w| w.set(b.flush.interval_ms));
    let max = match target {
        Target::Profile(_) => b.flush.max_batch,
        Target::Hub(_) => HUB_BATCH,
        Target::Streams => EVENT_BATCH,
    };
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
                        events(env, r.updates, r.alerts).await;
                        Ok(())
                    }
                    Ok((status, _)) => Err(Error::platform(format!("profile object answered {status}"))),
                    Err(e) => Err(e),
                }
            }
            (Target::Streams, Items::Events { updates, alerts }) => publish(env, updates.clone(), alerts.clone()).await,
            (Target::Hub(shard), Items::Samples { list, rejected, dropped }) => {
                let op = HubOp::Report {
                    samples: list.clone(),
                    rejected: *rejected,
                    dropped: *dropped,
                    updates: Vec::new(),
                    alerts: Vec::new(),
                };
                match call_object::<_, serde_json::Value>(env, bindings::HUB, &hub_name(*shard), &op).await {
                    Ok((200, _)) => Ok(()),
                    Ok((status, _)) => Err(Error::platform(format!("hub answered {status}"))),
                    Err(e) => Err(e),
                }
            }
            _ => return,
        };
        match outcome {
            Ok(()) => return,
            Err(e) => log::background("edge.after", "flush failed", format_args!("{n} items, attempt {attempt}: {e}")),
        }
    }
    // Lost: counted, so the loss shows in the analytics and /metrics. A hub
    // report's own loss count goes back to be reported again.
    count_dropped(match &items {
        Items::Observations { list, .. } => list.len() as u64,
        Items::Samples { list, dropped, .. } => (list.len() as u64).saturating_add(*dropped),
        // Events are not observations: the profiles keep them (logged above).
        Items::Events { .. } => 0,
    });
}

/// Events a fast consult's recording published (joining this isolate's
/// events batch in the record phase: `forward_events`).
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
/// refreshes the cache and its events join this isolate's events batch.
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
                events(&env, r.updates, r.alerts).await;
            }
            None => publish_now(&env, r.updates, r.alerts).await,
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
            events(env, r.updates, r.alerts).await;
        }
        Err(e) => {
            log::background("edge.after", "late consult failed, its observation is lost", e);
            count_dropped(1);
        }
    }
}

/// Adds what a fast consult's recording published to this isolate's events
/// batch (one stream-root call per isolate and interval).
pub fn forward_events(io: Io<'_>, recorded: Recorded) {
    if recorded.updates.is_empty() && recorded.alerts.is_empty() {
        return;
    }
    let env = io.env.clone();
    io.ctx.wait_until(async move { events(&env, recorded.updates, recorded.alerts).await });
}

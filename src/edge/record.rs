//! Phase 7, record: observations are coalesced in the isolate per subject and
//! sent to the subject's object as one batch, at most every
//! `FLUSH_INTERVAL_MS` or as soon as `FLUSH_MAX_BATCH` observations wait.
//! One object request per client request would cost ~3x the throughput
//! (measured, see issue #3); a batch keeps every observation (paths,
//! statuses, places, times) and costs one.
//!
//! Who keeps the isolate alive until a batch is stored: the request that
//! opened the batch holds its timer and flush in `ctx.wait_until`; the request
//! that fills a batch flushes it in its own `wait_until`. No request ever
//! awaits a promise of another request's context (workerd cancels such
//! continuations), which is why later joiners add nothing of their own.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use worker::{Context, Delay, Env};

use crate::config::Config;
use crate::intel::ip::SubjectKey;
use crate::intel::profile::{Observation, ProfileVerdict};
use crate::intel::wire::ProfileOp;
use crate::platform::call_object;

use super::consult::{remember, BINDING};

struct Batch {
    id: u64,
    ip: String,
    observations: Vec<Observation>,
}

thread_local! {
    static PENDING: RefCell<HashMap<String, Batch>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// Adds `obs` to the subject's open batch, opening one (and its timer) if
/// there is none, and flushing it here if it is now full.
pub fn record(ctx: &Context, env: &Env, config: &Config, subject: &SubjectKey, ip: &str, obs: Observation) {
    let key = subject.as_str().to_string();
    let (opened, full) = PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        let mut opened = None;
        let batch = pending.entry(key.clone()).or_insert_with(|| {
            let id = NEXT_ID.with(|n| {
                let id = n.get().wrapping_add(1);
                n.set(id);
                id
            });
            opened = Some(id);
            Batch { id, ip: ip.to_string(), observations: Vec::new() }
        });
        batch.observations.push(obs);
        let full = if batch.observations.len() >= config.flush_max_batch { pending.remove(&key) } else { None };
        (opened, full)
    });
    if let Some(batch) = full {
        let (env, config, key) = (env.clone(), config.clone(), key.clone());
        ctx.wait_until(async move { flush(&env, &config, &key, batch).await });
    } else if let Some(id) = opened {
        let (env, config) = (env.clone(), config.clone());
        ctx.wait_until(async move {
            Delay::from(Duration::from_millis(u64::from(config.flush_interval_ms))).await;
            // Flush it unless it was already flushed as full.
            let batch = PENDING.with(|p| {
                let mut p = p.borrow_mut();
                if p.get(&key).is_some_and(|b| b.id == id) {
                    p.remove(&key)
                } else {
                    None
                }
            });
            if let Some(batch) = batch {
                flush(&env, &config, &key, batch).await;
            }
        });
    }
}

async fn flush(env: &Env, config: &Config, key: &str, batch: Batch) {
    let n = batch.observations.len();
    let op = ProfileOp::Observe { subject: key.to_string(), ip: batch.ip, observations: batch.observations };
    // One retry: a profile object can be briefly unavailable while it moves.
    for attempt in 1..=2 {
        match call_object::<_, ProfileVerdict>(env, BINDING, key, &op).await {
            Ok((200, Some(v))) => {
                remember(config, key, v);
                return;
            }
            Ok((status, _)) => {
                worker::console_error!("edgeintel: flush of {n} observations answered {status}")
            }
            Err(e) => {
                worker::console_error!("edgeintel: flush of {n} observations failed (attempt {attempt}): {}", e.0)
            }
        }
    }
}

/// Sends the origin's status for a request recorded before forwarding
/// (consistent mode).
pub async fn status(env: Env, subject: String, ip: String, at: f64, status: u16) {
    let op = ProfileOp::Status { subject: subject.clone(), ip, at, status };
    if let Err(e) = call_object::<_, ProfileVerdict>(&env, BINDING, &subject, &op).await {
        worker::console_error!("edgeintel: status record failed: {}", e.0);
    }
}

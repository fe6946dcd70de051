//! The effective per-route rules (issue 18, docs/policies.md): the rules
//! stored through `PUT /_intel/api/config/rules` (KV, `RULES_KEY`) first, then
//! `RULES` from the vars, cached in the isolate for `RULES_CACHE_MS`. KV is
//! eventually consistent (~60 s across locations): an API change reaches this
//! isolate within `RULES_CACHE_MS` and every location within about a minute.
//!
//! The KV read is bounded by `CONSULT_TIMEOUT_MS` like the lists' read; when
//! KV fails or is late, the isolate keeps the rules it last read (a policy
//! must not lapse because KV hiccuped) and tries again within
//! `RULES_RETRY_MS`; a late answer still refreshes the cache.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};
use futures::FutureExt;
use worker::{Delay, Env};

use crate::bindings;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::Error;
use crate::intel::keys::RULES_KEY;
use crate::intel::rules::{describe, parse_rules, usable, RouteRule};

use super::Io;

/// "Cached a few seconds per isolate" (issue 18).
const RULES_CACHE_MS: f64 = 5_000.0;
/// After a failed KV read, try again this soon (not on every request).
const RULES_RETRY_MS: f64 = 1_000.0;

/// A kept copy older than this (or none) marks the request degraded, as
/// stale lists do (`lists::LISTS_GOOD_FOR_MS`).
const RULES_GOOD_FOR_MS: f64 = 30_000.0;

/// (read again after, stored rules followed by the vars' rules, when KV last answered).
type Cached = (f64, Rc<Vec<RouteRule>>, Option<f64>);

/// The rules for one request, and whether they are what KV holds now
/// (`fresh`), or a kept copy older than `RULES_GOOD_FOR_MS` or none (the
/// vars' alone) because KV failed or missed its budget.
pub struct Effective {
    pub rules: Rc<Vec<RouteRule>>,
    pub fresh: bool,
}

thread_local! {
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
    /// Bumped by `invalidate`: a late read begun before it is not cached.
    static GENERATION: RefCell<u64> = const { RefCell::new(0) };
}

/// KV (the rules' store) did not answer: 503, the cause for the log.
pub fn kv_unavailable() -> Error {
    Error::new(503, "kv_unavailable", "the rule store did not answer; retry")
}

/// The rules stored through the API (none when nothing was stored). What
/// KV holds was validated by the `PUT` that stored it; a copy that no longer
/// parses (a newer release's fields read by an older one), or that this
/// configuration cannot serve (a challenge rule after `CHALLENGE_SIGNING_KEY`
/// was removed: its challenge could never be solved), is an error, not an
/// empty policy.
pub async fn stored(env: &Env, config: &Config) -> Result<Vec<RouteRule>, Error> {
    let rules = stored_as_written(env).await?;
    let unusable = usable(&rules, config.secrets.challenge_key.is_some());
    if !unusable.is_empty() {
        let why = format!("stored rules this configuration cannot serve: {}", describe(&unusable));
        return Err(kv_unavailable().with_detail(why));
    }
    Ok(rules)
}

/// The stored rules as KV holds them, parsed, whether or not this
/// configuration can serve them (`GET` shows them with their problems).
pub async fn stored_as_written(env: &Env) -> Result<Vec<RouteRule>, Error> {
    let unavailable = |e: String| kv_unavailable().with_detail(e);
    let kv = env.kv(bindings::METRICS).map_err(|e| unavailable(e.to_string()))?;
    let Some(text) = kv.get(RULES_KEY).text().await.map_err(|e| unavailable(e.to_string()))? else {
        return Ok(Vec::new());
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| unavailable(format!("stored rules: {e}")))?;
    parse_rules(&value).map_err(|e| unavailable(format!("stored rules: {}", describe(&e))))
}

/// The rules for one request: stored first, then the vars'. Never fails:
/// without KV the last rules read are kept (the request's log says so), and
/// before any read succeeded the vars' rules alone apply; either way past
/// `RULES_GOOD_FOR_MS` the request is marked degraded (`fresh: false`), so
/// `FAIL_MODE=closed` refuses it rather than serve it without the stored rules.
pub async fn effective(io: Io<'_>, config: &Config) -> Effective {
    let now = now_ms();
    let cached = CACHE.with(|c| c.borrow().clone());
    let fresh = |good: Option<f64>| good.is_some_and(|g| now - g <= RULES_GOOD_FOR_MS);
    if let Some((until, rules, good)) = &cached {
        if now < *until {
            return Effective { rules: rules.clone(), fresh: fresh(*good) };
        }
    }
    let vars = &config.enforce.rules;
    let read = {
        let env = io.env.clone();
        let config = config.clone();
        async move { stored(&env, &config).await.map(|s| combined(s, &config.enforce.rules)) }
    }
    .boxed_local();
    let (kept, good) = match cached {
        Some((_, r, good)) => (r, good),
        None => (Rc::new(vars.clone()), None),
    };
    let budget = Delay::from(Duration::from_millis(u64::from(config.consult.timeout_ms)));
    match select(read, budget).await {
        Either::Left((Ok(rules), _)) => {
            let rules = Rc::new(rules);
            CACHE.with(|c| *c.borrow_mut() = Some((now + RULES_CACHE_MS, rules.clone(), Some(now))));
            Effective { rules, fresh: true }
        }
        Either::Left((Err(e), _)) => {
            io.log.warn("rules", format_args!("kept the last rules read: {e}"));
            keep(now, &kept, good);
            Effective { rules: kept, fresh: fresh(good) }
        }
        Either::Right(((), pending)) => {
            io.log.warn("rules", "kept the last rules read: KV missed CONSULT_TIMEOUT_MS");
            keep(now, &kept, good);
            let generation = GENERATION.with(|g| *g.borrow());
            io.ctx.wait_until(async move {
                let read = pending.await;
                // Not over a PUT's invalidation that came after this read began.
                let current = GENERATION.with(|g| *g.borrow());
                if let (Ok(rules), true) = (read, generation == current) {
                    let at = now_ms();
                    CACHE.with(|c| *c.borrow_mut() = Some((at + RULES_CACHE_MS, Rc::new(rules), Some(at))));
                }
            });
            Effective { rules: kept, fresh: fresh(good) }
        }
    }
}

/// Stored rules first (the ones an operator changes at run time), then the vars'.
fn combined(mut stored: Vec<RouteRule>, vars: &[RouteRule]) -> Vec<RouteRule> {
    stored.extend(vars.iter().cloned());
    stored
}

fn keep(now: f64, rules: &Rc<Vec<RouteRule>>, good: Option<f64>) {
    CACHE.with(|c| *c.borrow_mut() = Some((now + RULES_RETRY_MS, rules.clone(), good)));
}

/// Drops the cache (after a PUT in this isolate: its next request reads KV).
pub fn invalidate() {
    GENERATION.with(|g| *g.borrow_mut() += 1);
    CACHE.with(|c| *c.borrow_mut() = None);
}

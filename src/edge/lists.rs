//! The effective allow and block lists: `ALLOW_LIST`/`BLOCK_LIST` from vars
//! plus what `PUT /api/config/lists` stored in KV, cached in the isolate for
//! `LISTS_CACHE_MS`. KV is eventually consistent (~60 s across locations), so
//! an API change reaches every location within about a minute.

use std::cell::RefCell;
use std::rc::Rc;

use std::time::Duration;

use futures::future::{select, Either};
use futures::FutureExt;
use worker::{Delay, Env};

use crate::bindings;
use crate::clock::now_ms;
use crate::config::Consult;
use crate::error::Error;
use crate::intel::keys::LISTS_KEY;
use crate::intel::lists::{Lists, RawLists};

use super::Io;

const LISTS_CACHE_MS: f64 = 10_000.0;
/// A copy read from KV this recently is as good as a new read (KV itself
/// takes up to ~60 s to carry a change everywhere): serving it while KV is
/// slow or failing is not degraded. Older than this, it is.
const LISTS_GOOD_FOR_MS: f64 = 30_000.0;
/// After a failed KV read, try again this soon (not on every request).
const LISTS_RETRY_MS: f64 = 1_000.0;

/// (read again after, lists, last successful KV read).
type Cached = (f64, Rc<Lists>, Option<f64>);

thread_local! {
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// The lists stored through the API (empty when none); KV failing, or
/// holding what does not parse, is a platform error `kv_unavailable`.
pub async fn stored(env: &Env) -> Result<RawLists, Error> {
    let unavailable = |e: String| kv_unavailable().with_detail(e);
    let kv = env.kv(bindings::METRICS).map_err(|e| unavailable(e.to_string()))?;
    match kv.get(LISTS_KEY).text().await.map_err(|e| unavailable(e.to_string()))? {
        Some(text) => serde_json::from_str(&text).map_err(|e| unavailable(format!("stored lists: {e}"))),
        None => Ok(RawLists::default()),
    }
}

/// KV (the lists' store) did not answer: 503, the cause for the log.
pub fn kv_unavailable() -> Error {
    Error::new(503, "kv_unavailable", "the list store did not answer; retry")
}

/// The effective lists for one request, and whether they are what KV holds
/// now (`fresh`) or a kept copy because KV failed or missed its budget
/// (`error`: why, for the request's log).
pub struct Effective {
    pub lists: Rc<Lists>,
    pub fresh: bool,
    pub error: Option<Error>,
}

/// Vars plus stored lists. The KV read is bounded by `CONSULT_TIMEOUT_MS`
/// (no request waits on KV longer than on a profile); when KV fails or is
/// late, the isolate keeps the lists it last read (a stored block must not
/// lapse because KV hiccuped) and a late answer still refreshes the cache.
/// A kept copy older than `LISTS_GOOD_FOR_MS` (or none: the vars alone) is
/// reported (`fresh: false`), so the request is marked and counted degraded.
/// `vars` are the configuration's lists, `consult` has the budget.
pub async fn effective(io: Io<'_>, vars: &Lists, consult: &Consult) -> Effective {
    let now = now_ms();
    let cached = CACHE.with(|c| c.borrow().clone());
    let fresh = |good: Option<f64>| good.is_some_and(|g| now - g <= LISTS_GOOD_FOR_MS);
    if let Some((at, l, good)) = &cached {
        if now - at < LISTS_CACHE_MS {
            return Effective { lists: l.clone(), fresh: fresh(*good), error: None };
        }
    }
    let read = {
        let env = io.env.clone();
        let vars = vars.clone();
        async move { merged(&env, vars).await }
    }
    .boxed_local();
    let budget = Delay::from(Duration::from_millis(u64::from(consult.timeout_ms)));
    let (kept, good) = match cached {
        Some((_, l, good)) => (l, good),
        None => (Rc::new(vars.clone()), None),
    };
    match select(read, budget).await {
        Either::Left((Ok(lists), _)) => {
            let lists = Rc::new(lists);
            CACHE.with(|c| *c.borrow_mut() = Some((now, lists.clone(), Some(now))));
            Effective { lists, fresh: true, error: None }
        }
        Either::Left((Err(e), _)) => {
            // The request's log says the last lists read were kept.
            keep(now, &kept, good);
            Effective { lists: kept, fresh: fresh(good), error: Some(e) }
        }
        Either::Right(((), pending)) => {
            keep(now, &kept, good);
            // Let the late answer refresh the cache for the next requests.
            io.ctx.wait_until(async move {
                if let Ok(lists) = pending.await {
                    let at = now_ms();
                    CACHE.with(|c| *c.borrow_mut() = Some((at, Rc::new(lists), Some(at))));
                }
            });
            Effective { lists: kept, fresh: fresh(good), error: None }
        }
    }
}

/// Vars plus what KV holds.
async fn merged(env: &Env, vars: Lists) -> Result<Lists, Error> {
    let raw = stored(env).await?;
    let extra = Lists::parse(&raw).map_err(|e| kv_unavailable().with_detail(format!("stored lists: {e}")))?;
    let mut lists = vars;
    lists.extend(&extra);
    Ok(lists)
}

/// Keeps `lists` (last read from KV at `good`) and retries KV within `LISTS_RETRY_MS`.
fn keep(now: f64, lists: &Rc<Lists>, good: Option<f64>) {
    CACHE.with(|c| *c.borrow_mut() = Some((now - LISTS_CACHE_MS + LISTS_RETRY_MS, lists.clone(), good)));
}

/// Drops the cache (after a PUT in this isolate).
pub fn invalidate() {
    CACHE.with(|c| *c.borrow_mut() = None);
}

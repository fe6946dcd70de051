//! The effective allow and block lists: `ALLOW_LIST`/`BLOCK_LIST` from vars
//! plus what `PUT /api/config/lists` stored in KV, cached in the isolate for
//! `LISTS_CACHE_MS`. KV is eventually consistent (~60 s across locations), so
//! an API change reaches every location within about a minute.

use std::cell::RefCell;
use std::rc::Rc;

use std::time::Duration;

use futures::future::{select, Either};
use futures::FutureExt;
use worker::{Context, Delay, Env};

use crate::clock::now_ms;
use crate::config::Config;
use crate::intel::lists::{Lists, RawLists};
use crate::objects::hub::KV_BINDING;

pub const KV_KEY: &str = "config:v1:lists";
const LISTS_CACHE_MS: f64 = 10_000.0;
/// After a failed KV read, try again this soon (not on every request).
const LISTS_RETRY_MS: f64 = 1_000.0;

thread_local! {
    /// (read at, lists, fresh): a stale copy is served as such until the retry.
    static CACHE: RefCell<Option<(f64, Rc<Lists>, bool)>> = const { RefCell::new(None) };
}

/// The lists stored through the API (empty when none or unreadable).
pub async fn stored(env: &Env) -> Result<RawLists, String> {
    let kv = env.kv(KV_BINDING).map_err(|e| e.to_string())?;
    match kv.get(KV_KEY).text().await.map_err(|e| e.to_string())? {
        Some(text) => serde_json::from_str(&text).map_err(|e| e.to_string()),
        None => Ok(RawLists::default()),
    }
}

/// The effective lists for one request, and whether they are what KV holds
/// now (`fresh`) or a kept copy because KV failed or missed its budget.
pub struct Effective {
    pub lists: Rc<Lists>,
    pub fresh: bool,
}

/// Vars plus stored lists. The KV read is bounded by `CONSULT_TIMEOUT_MS`
/// (no request waits on KV longer than on a profile); when KV fails or is
/// late, the isolate keeps the lists it last read (a stored block must not
/// lapse because KV hiccuped), a late answer still refreshes the cache, and
/// the request is told (`fresh: false`) so it is marked and counted as
/// degraded. An isolate that never read them uses the vars alone.
pub async fn effective(env: &Env, ctx: &Context, config: &Config) -> Effective {
    let now = now_ms();
    let cached = CACHE.with(|c| c.borrow().clone());
    if let Some((at, l, fresh)) = &cached {
        if now - at < LISTS_CACHE_MS {
            return Effective { lists: l.clone(), fresh: *fresh };
        }
    }
    let read = {
        let env = env.clone();
        let vars = config.lists.clone();
        async move { merged(&env, vars).await }
    }
    .boxed_local();
    let budget = Delay::from(Duration::from_millis(u64::from(config.consult_timeout_ms)));
    let kept = cached.map(|(_, l, _)| l).unwrap_or_else(|| Rc::new(config.lists.clone()));
    match select(read, budget).await {
        Either::Left((Ok(lists), _)) => {
            let lists = Rc::new(lists);
            CACHE.with(|c| *c.borrow_mut() = Some((now, lists.clone(), true)));
            Effective { lists, fresh: true }
        }
        Either::Left((Err(e), _)) => {
            worker::console_error!("edgeintel: stored lists unavailable, keeping the last lists read: {e}");
            keep(now, &kept);
            Effective { lists: kept, fresh: false }
        }
        Either::Right(((), pending)) => {
            keep(now, &kept);
            // Let the late answer refresh the cache for the next requests.
            ctx.wait_until(async move {
                if let Ok(lists) = pending.await {
                    CACHE.with(|c| *c.borrow_mut() = Some((now_ms(), Rc::new(lists), true)));
                }
            });
            Effective { lists: kept, fresh: false }
        }
    }
}

/// Vars plus what KV holds.
async fn merged(env: &Env, vars: Lists) -> Result<Lists, String> {
    let extra = stored(env).await.and_then(|raw| Lists::parse(&raw))?;
    let mut lists = vars;
    lists.extend(&extra);
    Ok(lists)
}

/// Keeps `lists` as a stale copy and retries KV within `LISTS_RETRY_MS`.
fn keep(now: f64, lists: &Rc<Lists>) {
    CACHE.with(|c| *c.borrow_mut() = Some((now - LISTS_CACHE_MS + LISTS_RETRY_MS, lists.clone(), false)));
}

/// Drops the cache (after a PUT in this isolate).
pub fn invalidate() {
    CACHE.with(|c| *c.borrow_mut() = None);
}

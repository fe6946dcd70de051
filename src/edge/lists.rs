//! The effective allow and block lists: `ALLOW_LIST`/`BLOCK_LIST` from vars
//! plus what `PUT /api/config/lists` stored in KV, cached in the isolate for
//! `LISTS_CACHE_MS`. KV is eventually consistent (~60 s across locations), so
//! an API change reaches every location within about a minute.

use std::cell::RefCell;
use std::rc::Rc;

use worker::Env;

use crate::clock::now_ms;
use crate::config::Config;
use crate::intel::lists::{Lists, RawLists};
use crate::objects::hub::KV_BINDING;

pub const KV_KEY: &str = "config:v1:lists";
const LISTS_CACHE_MS: f64 = 10_000.0;
/// After a failed KV read, try again this soon (not on every request).
const LISTS_RETRY_MS: f64 = 1_000.0;

thread_local! {
    static CACHE: RefCell<Option<(f64, Rc<Lists>)>> = const { RefCell::new(None) };
}

/// The lists stored through the API (empty when none or unreadable).
pub async fn stored(env: &Env) -> Result<RawLists, String> {
    let kv = env.kv(KV_BINDING).map_err(|e| e.to_string())?;
    match kv.get(KV_KEY).text().await.map_err(|e| e.to_string())? {
        Some(text) => serde_json::from_str(&text).map_err(|e| e.to_string()),
        None => Ok(RawLists::default()),
    }
}

/// Vars plus stored lists. When KV fails, the isolate keeps the lists it
/// last read (a stored block must not lapse because KV hiccuped) and retries
/// within a second; an isolate that never read them uses the vars alone
/// (logged) rather than failing the request.
pub async fn effective(env: &Env, config: &Config) -> Rc<Lists> {
    let now = now_ms();
    let cached = CACHE.with(|c| c.borrow().clone());
    if let Some((at, l)) = &cached {
        if now - at < LISTS_CACHE_MS {
            return l.clone();
        }
    }
    let (at, lists) = match stored(env).await.and_then(|raw| Lists::parse(&raw)) {
        Ok(extra) => {
            let mut lists = config.lists.clone();
            lists.extend(&extra);
            (now, Rc::new(lists))
        }
        Err(e) => {
            let kept = cached.map(|(_, l)| l);
            let what = if kept.is_some() { "keeping the last lists read" } else { "using vars only" };
            worker::console_error!("edgeintel: stored lists unavailable, {what}: {e}");
            (now - LISTS_CACHE_MS + LISTS_RETRY_MS, kept.unwrap_or_else(|| Rc::new(config.lists.clone())))
        }
    };
    CACHE.with(|c| *c.borrow_mut() = Some((at, lists.clone())));
    lists
}

/// Drops the cache (after a PUT in this isolate).
pub fn invalidate() {
    CACHE.with(|c| *c.borrow_mut() = None);
}

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

/// Vars plus stored lists. A KV failure falls back to the vars alone (fail
/// open, logged) rather than failing the request.
pub async fn effective(env: &Env, config: &Config) -> Rc<Lists> {
    let now = now_ms();
    if let Some(l) =
        CACHE.with(|c| c.borrow().as_ref().filter(|(at, _)| now - at < LISTS_CACHE_MS).map(|(_, l)| l.clone()))
    {
        return l;
    }
    let mut lists = config.lists.clone();
    match stored(env).await.and_then(|raw| Lists::parse(&raw)) {
        Ok(extra) => lists.extend(&extra),
        Err(e) => worker::console_error!("edgeintel: stored lists unavailable, using vars only: {e}"),
    }
    let lists = Rc::new(lists);
    CACHE.with(|c| *c.borrow_mut() = Some((now, lists.clone())));
    lists
}

/// Drops the cache (after a PUT in this isolate).
pub fn invalidate() {
    CACHE.with(|c| *c.borrow_mut() = None);
}

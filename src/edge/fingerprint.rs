//! The fingerprint judgement on the request path (`intel::fingerprint` is
//! the pure part): the sets shard 0's hub published to KV, cached in the
//! isolate for one analytics slide (the hub judges once per slide), and read
//! only by requests that have a fingerprint. A failed or late read keeps the
//! last sets (none at first) and is tried again in `RETRY_MS`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};
use futures::FutureExt;
use worker::{Delay, Env};

use crate::bindings;
use crate::clock::now_ms;
use crate::intel::fingerprint::Sets;
use crate::intel::keys::FINGERPRINTS_KEY;

use super::Io;

/// After a failed or late KV read, try again this soon.
const RETRY_MS: f64 = 10_000.0;
/// The value is at most two sets of `MAX_PUBLISHED` ids: far below this.
const MAX_VALUE_BYTES: usize = 128 * 1024;

thread_local! {
    /// (read again after, sets).
    static CACHE: RefCell<Option<(f64, Rc<Sets>)>> = const { RefCell::new(None) };
}

async fn stored(env: &Env) -> Result<Sets, String> {
    let kv = env.kv(bindings::METRICS).map_err(|e| e.to_string())?;
    match kv.get(FINGERPRINTS_KEY).text().await.map_err(|e| e.to_string())? {
        Some(text) if text.len() > MAX_VALUE_BYTES => Err(format!("{} bytes, over {MAX_VALUE_BYTES}", text.len())),
        Some(text) => serde_json::from_str::<Sets>(&text).map(Sets::checked).map_err(|e| e.to_string()),
        None => Ok(Sets::default()),
    }
}

/// The sets for the request path, within `timeout_ms` (the consult budget);
/// kept for `cache_ms` (one slide).
pub async fn sets(io: Io<'_>, timeout_ms: u32, cache_ms: f64) -> Rc<Sets> {
    let now = now_ms();
    let cached = CACHE.with(|c| c.borrow().clone());
    if let Some((until, s)) = &cached {
        if now < *until {
            return s.clone();
        }
    }
    let kept = cached.map(|(_, s)| s).unwrap_or_default();
    let keep = |s: &Rc<Sets>| CACHE.with(|c| *c.borrow_mut() = Some((now + RETRY_MS.min(cache_ms), s.clone())));
    let read = {
        let env = io.env.clone();
        async move { stored(&env).await }
    }
    .boxed_local();
    let budget = Delay::from(Duration::from_millis(u64::from(timeout_ms)));
    match select(read, budget).await {
        Either::Left((Ok(s), _)) => {
            let s = Rc::new(s);
            CACHE.with(|c| *c.borrow_mut() = Some((now + cache_ms, s.clone())));
            s
        }
        Either::Left((Err(e), _)) => {
            io.log.warn("fingerprints", format_args!("kept the fingerprint sets last read: {e}"));
            keep(&kept);
            kept
        }
        Either::Right(((), pending)) => {
            keep(&kept);
            io.ctx.wait_until(async move {
                if let Ok(s) = pending.await {
                    CACHE.with(|c| *c.borrow_mut() = Some((now_ms() + cache_ms, Rc::new(s))));
                }
            });
            kept
        }
    }
}

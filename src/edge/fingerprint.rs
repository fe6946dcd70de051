//! The fingerprint judgement on the request path (`intel::fingerprint` is
//! the pure part): the sets shard 0's hub published to KV, cached in the
//! isolate for one analytics slide (the hub judges once per slide), and read
//! only by requests that have a fingerprint. A failed or late read keeps the
//! last sets (none at first) and is tried again in `RETRY_MS`.

use std::cell::RefCell;
use std::rc::Rc;

use futures::FutureExt;
use worker::Env;

use crate::bindings;
use crate::intel::fingerprint::Sets;
use crate::intel::keys::FINGERPRINTS_KEY;

use super::kv_cached::{self, Policy, Slot};
use super::Io;

/// After a failed or late KV read, try again this soon.
const RETRY_MS: f64 = 10_000.0;
/// The value is at most two sets of `MAX_PUBLISHED` ids: far below this.
const MAX_VALUE_BYTES: usize = 128 * 1024;

thread_local! {
    static CACHE: Slot<Sets> = const { RefCell::new(None) };
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
    let policy = Policy { what: "fingerprints", noun: "fingerprint sets", cache_ms, retry_ms: RETRY_MS, timeout_ms };
    kv_cached::read(io, &CACHE, policy, Sets::default, |env| async move { stored(&env).await }.boxed_local()).await
}

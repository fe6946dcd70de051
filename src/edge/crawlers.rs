//! Verified crawlers on the platform (`intel::crawlers` is the pure part):
//! the ranges the request path checks a claimed crawler against (KV's copy,
//! cached in the isolate, else the embedded snapshot), and the Cron
//! Trigger's refresh of those ranges from the crawlers' published files.
//! Only a request whose User-Agent claims a crawler reads them: other
//! requests pay nothing.

use std::cell::RefCell;
use std::rc::Rc;

use futures::FutureExt;
use worker::Env;

use crate::bindings;
use crate::clock::now_ms;
use crate::config::Config;
use crate::intel::crawlers::{self, Ranges, Stored, MAX_SOURCE_BYTES};
use crate::intel::keys::CRAWLERS_KEY;
use crate::log;

use super::kv_cached::{self, Policy, Slot};
use super::Io;

/// How long the isolate keeps the ranges it read (they change daily at most).
const CACHE_MS: f64 = 600_000.0;
/// After a failed or late KV read, try again this soon.
const RETRY_MS: f64 = 30_000.0;
/// Each published file must answer within this.
const FETCH_TIMEOUT_MS: u64 = 10_000;

thread_local! {
    static CACHE: Slot<Ranges> = const { RefCell::new(None) };
}

/// What the refresh stored (nothing stored yet: empty).
async fn stored(env: &Env) -> Result<Stored, String> {
    let kv = env.kv(bindings::METRICS).map_err(|e| e.to_string())?;
    match kv.get(CRAWLERS_KEY).text().await.map_err(|e| e.to_string())? {
        Some(text) => serde_json::from_str(&text).map_err(|e| format!("stored crawler ranges: {e}")),
        None => Ok(Stored::default()),
    }
}

/// The ranges for the request path, within `timeout_ms` (the consult
/// budget): a late or failed KV read serves the kept ranges (the snapshot
/// at first) and is tried again within `RETRY_MS`.
pub async fn ranges(io: Io<'_>, timeout_ms: u32) -> Rc<Ranges> {
    let policy =
        Policy { what: "crawlers", noun: "crawler ranges", cache_ms: CACHE_MS, retry_ms: RETRY_MS, timeout_ms };
    let load = |env: Env| async move { stored(&env).await.map(|s| Ranges::with_stored(&s)) }.boxed_local();
    kv_cached::read(io, &CACHE, policy, Ranges::snapshot, load).await
}

/// The Cron Trigger: fetches every crawler's published files (or
/// `GOOD_BOT_SOURCES`), and stores each crawler whose files all answered
/// 200 with valid ranges. A crawler whose fetch failed keeps what was
/// stored before (or the snapshot): good data is never replaced by nothing.
/// Logs one line per crawler that failed (a quiet success logs nothing).
pub async fn refresh(env: &Env, config: &Config) {
    let mut current = match stored(env).await {
        Ok(s) => s,
        Err(e) => {
            // Without the current copy a partial refresh would drop the
            // crawlers that failed: try again at the next trigger.
            log::background("cron", "crawler ranges", format_args!("KV read failed: {e}"));
            return;
        }
    };
    let mut updated = 0;
    for (name, urls) in crawlers::sources(&config.crawler_sources) {
        let mut ranges = Vec::new();
        let mut problem = None;
        for url in &urls {
            match fetch_one(url).await {
                Ok(mut r) => ranges.append(&mut r),
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            }
        }
        ranges.sort();
        ranges.dedup();
        ranges.truncate(crawlers::MAX_RANGES);
        match problem {
            None if !ranges.is_empty() => {
                current.crawlers.insert(name.to_string(), ranges);
                current.fetched_at.insert(name.to_string(), now_ms());
                updated += 1;
            }
            p => {
                let why = p.unwrap_or_else(|| "no ranges".to_string());
                log::background("cron", "crawler ranges", format_args!("{name}: kept the last good ranges: {why}"));
            }
        }
    }
    if updated > 0 {
        let put = async {
            let kv = env.kv(bindings::METRICS).map_err(|e| e.to_string())?;
            let text = serde_json::to_string(&current).map_err(|e| e.to_string())?;
            kv.put(CRAWLERS_KEY, text).map_err(|e| e.to_string())?.execute().await.map_err(|e| e.to_string())
        };
        if let Err(e) = put.await {
            log::background("cron", "crawler ranges", format_args!("KV write failed: {e}"));
            return;
        }
        // This isolate reads the new copy at once.
        CACHE.with(|c| *c.borrow_mut() = None);
    }
}

/// One published file: 200 within the timeout, at most `MAX_SOURCE_BYTES`,
/// valid ranges.
async fn fetch_one(url: &str) -> Result<Vec<String>, String> {
    let (status, body) = crate::platform::get_bounded(url, FETCH_TIMEOUT_MS, MAX_SOURCE_BYTES).await?;
    if status != 200 {
        return Err(format!("answered {status}"));
    }
    let text = String::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    crawlers::parse_source(&text)
}

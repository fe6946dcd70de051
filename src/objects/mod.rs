//! Durable Objects: one `ProfileObject` per subject (SQLite-backed storage is
//! the source of truth; memory only caches), one `VisitorObject` per visitor
//! (impossible travel), `AggregatorObject`s per region (the analytics'
//! middle tier: isolates report slide deltas to them, they forward summaries
//! to the hub), one `HubObject` per analytics shard (`HUB_SHARDS`), and the
//! `StreamObject`s of the global streams (a root and its relays: `stream`).
//! The edge reaches them only through their bindings (`PROFILES`, `VISITORS`,
//! `AGGREGATORS`, `HUB`, `STREAMS`: `crate::bindings`), never by importing them.

pub mod aggregator;
pub mod hub;
pub mod limiter;
pub mod profile;
pub mod sockets;
pub mod store;
pub mod stream;
pub mod visitor;

use std::time::Duration;

use serde_json::json;
use worker::{Response, Result, State};

use crate::config::ConfigError;
use crate::platform::reply;

/// How soon an object's alarm looks again while the configuration is invalid.
pub const CONFIG_RETRY: Duration = Duration::from_secs(60);

/// Which entry point of an object met an invalid configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Fetch,
    Alarm,
}

/// What every object does when the configuration does not parse, the same in
/// all five classes: a fetch is answered `500 {"error":"config_invalid",...}` (the
/// caller reports it as it would any failed object call); an alarm does no
/// work, never deletes anything (a TTL or a window is not trusted from a bad
/// deploy), and re-arms in `CONFIG_RETRY`, so a fixed deploy resumes within a
/// minute.
pub async fn config_invalid(state: &State, entry: Entry, e: &ConfigError) -> Result<Response> {
    match entry {
        Entry::Fetch => reply(500, &json!({"error": "config_invalid", "message": e.to_string()})),
        Entry::Alarm => {
            state.storage().set_alarm(CONFIG_RETRY).await?;
            Response::ok("config invalid")
        }
    }
}

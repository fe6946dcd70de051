//! `POST /api/events`: a batch of intelligence events from the site's own
//! systems, validated one by one (`intel::events`), stored per subject (one
//! profile-object call per subject) and published to the streams in one
//! stream-root call (`StreamOp::Publish`).

use futures::future::join_all;
use serde_json::{json, Value};
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::edge::record::{self, Batching};
use crate::edge::respond;
use crate::edge::verdicts::forget;
use crate::error::ApiError;
use crate::intel::events::{validate, IntelEvent};
use crate::intel::fanout::{StreamOp, ROOT};
use crate::intel::wire::ProfileOp;
use crate::platform::call_object;

use super::common::{iso, read_json_body, Call};

pub async fn post(c: Call<'_>) -> Result<Response, ApiError> {
    let (req, io, config) = (c.req, c.io, c.config);
    let (env, log) = (io.env, io.log);
    let body = read_json_body(req).await?;
    let items = match &body {
        Value::Array(items) => items.as_slice(),
        Value::Object(o) => match o.get("events") {
            Some(Value::Array(items)) => items.as_slice(),
            _ => return Err(ApiError::new(400, "invalid_body", "send a JSON array of events, or {\"events\": [...]}")),
        },
        _ => return Err(ApiError::new(400, "invalid_body", "send a JSON array of events, or {\"events\": [...]}")),
    };
    if items.len() > config.max_event_batch {
        return Err(ApiError::new(
            413,
            "batch_too_large",
            format!("{} events in one batch; the limit is {} (MAX_EVENT_BATCH)", items.len(), config.max_event_batch),
        ));
    }
    let now = now_ms();
    let mut rejected = Vec::new();
    // Group by subject, keeping each event's index for per-item errors.
    // (storage key, displayed IP, [(index in the batch, event)])
    type Group = (String, String, Vec<(usize, IntelEvent)>);
    let mut groups: Vec<Group> = Vec::new();
    for (index, raw) in items.iter().enumerate() {
        match validate(raw, now) {
            Ok(mut v) => {
                let id = crate::intel::ip::identify(&v.subject, config.secrets.ip_hash_key.as_deref());
                let key = id.key.as_str().to_string();
                // With IP_HASH_KEY, the stored and published event carries the masked IP only.
                v.event.ip = id.display.clone();
                match groups.iter_mut().find(|(k, _, _)| *k == key) {
                    Some((_, _, list)) => list.push((index, v.event)),
                    None => groups.push((key, id.display, vec![(index, v.event)])),
                }
            }
            Err(error) => rejected.push(json!({"index": index, "error": error})),
        }
    }
    let calls = groups.iter().map(|(subject, display, list)| {
        let op = ProfileOp::Events {
            subject: subject.clone(),
            ip: display.clone(),
            events: list.iter().map(|(_, e)| e.clone()).collect(),
        };
        async move { call_object::<_, crate::intel::wire::ObserveReply>(env, bindings::PROFILES, subject, &op).await }
    });
    let results = join_all(calls).await;
    let mut accepted = 0usize;
    let (mut updates, mut alerts) = (Vec::new(), Vec::new());
    for ((subject, _, list), result) in groups.iter().zip(results) {
        match result {
            Ok((200, reply)) => {
                accepted += list.len();
                forget(&config.consult, subject);
                if let Some(r) = reply {
                    updates.extend(r.updates);
                    alerts.extend(r.alerts);
                }
            }
            other => {
                match other {
                    Ok((s, _)) => log.error("events not stored", format_args!("profile store answered {s}")),
                    Err(e) => log.error("events not stored", e),
                }
                for (index, _) in list {
                    rejected.push(json!({"index": index, "error": "storage_unavailable: not stored, retry"}));
                }
            }
        }
    }
    // One call to the stream root for the whole batch, awaited so the
    // events are on their way before the 202 (the root publishes them within
    // its batch interval; they are stored either way).
    if !updates.is_empty() || !alerts.is_empty() {
        let op = StreamOp::Publish { updates, alerts };
        if let Err(e) = call_object::<_, Value>(env, bindings::STREAMS, ROOT, &op).await {
            log.error("events not published", e);
        }
    }
    rejected.sort_by_key(|r| r.get("index").and_then(Value::as_u64).unwrap_or(0));
    let batching = Batching { flush: &config.flush, cache: &config.consult, analytics: &config.analytics };
    record::rejected_events(io, batching, rejected.len() as u64);
    Ok(respond::json(202, &json!({"accepted": accepted, "rejected": rejected, "timestamp": iso(now)})))
}

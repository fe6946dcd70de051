//! `/api/ip-intelligence/{ip}`: one subject's profile, read (`GET`) or
//! erased (`DELETE`: the profile object, the verdict cached in this isolate
//! and the subject's place in every hub shard's window).

use futures::future::join_all;
use serde_json::{json, Value};
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::edge::respond;
use crate::edge::verdicts::forget;
use crate::error::ApiError;
use crate::intel::wire::HubOp;
use crate::intel::wire::ProfileOp;
use crate::platform::call_object;

use super::common::{iso, key_from_path, Call};

pub async fn get(c: Call<'_>) -> Result<Response, ApiError> {
    let (env, config, raw) = (c.io.env, c.config, c.param("ip"));
    let subject = key_from_path(raw, &config.secrets)?.key;
    let (status, body) = call_object::<_, Value>(env, bindings::PROFILES, subject.as_str(), &ProfileOp::Get).await?;
    match (status, body) {
        (200, Some(mut v)) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("timestamp".into(), json!(iso(now_ms())));
            }
            Ok(respond::json(200, &v))
        }
        (404, _) => Err(ApiError::not_found(format!(
            "no profile for {}",
            percent_encoding::percent_decode_str(raw).decode_utf8_lossy()
        ))),
        (s, _) => Err(ApiError::new(500, "internal", format!("profile store answered {s}"))),
    }
}

pub async fn delete(c: Call<'_>) -> Result<Response, ApiError> {
    let (env, config, raw) = (c.io.env, c.config, c.param("ip"));
    let id = key_from_path(raw, &config.secrets)?;
    let subject = id.key;
    let (status, body) = call_object::<_, Value>(env, bindings::PROFILES, subject.as_str(), &ProfileOp::Delete).await?;
    forget(&config.consult, subject.as_str());
    // The analytics window's member sets of every hub shard (events reach
    // any shard, samples the subject's own). A failure answers 503: the
    // erasure is idempotent, so the caller retries.
    let at = now_ms();
    let calls = (0..config.hub.shards.max(1)).map(|i| {
        let op = HubOp::Forget { subject: subject.as_str().to_string(), at };
        async move { call_object::<_, Value>(env, bindings::HUB, &crate::intel::keys::hub_name(i), &op).await }
    });
    for outcome in join_all(calls).await {
        outcome?;
    }
    let deleted = body.as_ref().and_then(|b| b.get("deleted")).and_then(Value::as_bool).unwrap_or(false);
    match status {
        200 => Ok(respond::json(200, &json!({"deleted": deleted, "ip": id.display, "timestamp": iso(now_ms())}))),
        // A visitor the profile could not erase: 503, retry (docs/privacy.md's promise).
        503 => Err(ApiError::new(503, "storage_unavailable", "not everything could be erased yet; retry")),
        s => Err(ApiError::new(500, "internal", format!("profile store answered {s}"))),
    }
}

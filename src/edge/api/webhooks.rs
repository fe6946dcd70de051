//! `GET /api/alerts/webhooks`: the alert webhooks' targets (scheme and host
//! only: a Slack URL's path is its secret), counters, the deliveries waiting
//! and the last finished ones (`intel::webhooks::Outbox::view`), as hub
//! shard 0 (`global`, the only one that delivers) keeps them. Reading never
//! sends anything: deliveries happen on the hub's alarm alone.

use serde_json::Value;
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::edge::respond;
use crate::error::ApiError;
use crate::intel::keys::GLOBAL_HUB;
use crate::intel::wire::HubOp;
use crate::platform::call_object;

use super::common::{iso, Call};

pub async fn get(c: Call<'_>) -> Result<Response, ApiError> {
    let answer = call_object::<_, Value>(c.io.env, bindings::HUB, GLOBAL_HUB, &HubOp::Webhooks).await;
    let mut view = match answer {
        Ok((200, Some(v @ Value::Object(_)))) => v,
        Ok((s, _)) => {
            return Err(ApiError::new(503, "webhooks_unavailable", format!("the analytics hub answered {s}")))
        }
        Err(e) => return Err(e.public("webhooks_unavailable", "the analytics hub did not answer; retry")),
    };
    if let Some(m) = view.as_object_mut() {
        m.insert("timestamp".into(), Value::String(iso(now_ms())));
    }
    Ok(respond::json(200, &view))
}

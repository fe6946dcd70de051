//! `/api/config/lists`: the allow and block lists stored in KV (`GET`, and
//! `PUT` to replace them), on top of `ALLOW_LIST`/`BLOCK_LIST` from the vars
//! (`edge::lists` merges both for the request path).

use serde_json::json;
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::edge::{lists, respond};
use crate::error::ApiError;
use crate::intel::keys::LISTS_KEY;

use super::common::{iso, read_json_body, Call};

pub async fn get(c: Call<'_>) -> Result<Response, ApiError> {
    let (env, config) = (c.io.env, c.config);
    let stored = lists::stored(env).await?;
    Ok(respond::json(
        200,
        &json!({"allow": stored.allow, "block": stored.block, "fromVars": {"allowEntries": config.lists.allow.len(), "blockEntries": config.lists.block.len()}, "timestamp": iso(now_ms())}),
    ))
}

/// Replaces the stored lists (validated first; nothing is stored on error).
pub async fn put(c: Call<'_>) -> Result<Response, ApiError> {
    let (req, env) = (c.req, c.io.env);
    let body = read_json_body(req).await?;
    let invalid = |e: String| {
        ApiError::new(400, "invalid_lists", format!("expected {{\"allow\": [...], \"block\": [...]}}: {e}"))
    };
    // An object only: serde would also read the struct from an array (`[allow, block]`).
    if !body.is_object() {
        return Err(invalid("the body is not a JSON object".into()));
    }
    let raw: crate::intel::lists::RawLists = serde_json::from_value(body).map_err(|e| invalid(e.to_string()))?;
    crate::intel::lists::Lists::parse(&raw).map_err(|e| ApiError::new(400, "invalid_lists", e))?;
    let unavailable = |e: String| lists::kv_unavailable().with_detail(e);
    let kv = env.kv(bindings::METRICS).map_err(|e| unavailable(e.to_string()))?;
    let text = serde_json::to_string(&raw)
        .map_err(|e| ApiError::new(500, "internal", "the lists could not be written").with_detail(e.to_string()))?;
    kv.put(LISTS_KEY, text)
        .map_err(|e| unavailable(e.to_string()))?
        .execute()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    lists::invalidate();
    Ok(respond::json(200, &json!({"allow": raw.allow, "block": raw.block, "timestamp": iso(now_ms())})))
}

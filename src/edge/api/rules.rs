//! `/api/config/rules`: the per-route rules stored in KV (`GET`, and `PUT`
//! to replace them, body `{"rules": [...]}`), evaluated before `RULES` from
//! the vars (`edge::rules` combines both for the request path). A `PUT` is
//! validated whole, every bad field named, and stores nothing on error.

use serde_json::json;
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::edge::{respond, rules};
use crate::error::ApiError;
use crate::intel::keys::RULES_KEY;
use crate::intel::rules::{parse_body, usable, FieldError};

use super::common::{iso, read_json_body, Call};

/// The stored rules, the vars' rules, and (only when there are any) the
/// problems that keep the stored rules out of force: a challenge rule stored
/// while `CHALLENGE_SIGNING_KEY` was set, read after it was removed.
pub async fn get(c: Call<'_>) -> Result<Response, ApiError> {
    let stored = rules::stored_as_written(c.io.env).await?;
    let problems = usable(&stored, c.config.secrets.challenge_key.is_some());
    let body = if problems.is_empty() {
        json!({"rules": stored, "fromVars": c.config.enforce.rules, "timestamp": iso(now_ms())})
    } else {
        json!({"rules": stored, "fromVars": c.config.enforce.rules, "problems": problems, "timestamp": iso(now_ms())})
    };
    Ok(respond::json(200, &body))
}

/// Problems named in one 400 answer; the rest are counted (`truncated`).
const MAX_ERRORS: usize = 100;

/// Replaces the stored rules (validated first; nothing is stored on error).
pub async fn put(c: Call<'_>) -> Result<Response, ApiError> {
    let (req, env, config) = (c.req, c.io.env, c.config);
    let body = read_json_body(req).await?;
    let mut errors = Vec::new();
    match parse_body(&body) {
        Err(e) => errors = e,
        Ok(new) => {
            errors.extend(usable(&new, config.secrets.challenge_key.is_some()));
            // One id, one rule: the hit counters and the origin's `rule="..."`
            // name rules by id, across the stored rules and the vars'.
            for (i, r) in new.iter().enumerate() {
                if config.enforce.rules.iter().any(|v| v.id == r.id) {
                    errors.push(FieldError {
                        field: format!("rules[{i}].id"),
                        message: format!("`{}` is the id of a rule in RULES (the vars)", r.id),
                    });
                }
            }
            if errors.is_empty() {
                let unavailable = |e: String| rules::kv_unavailable().with_detail(e);
                let kv = env.kv(bindings::METRICS).map_err(|e| unavailable(e.to_string()))?;
                let text = serde_json::to_string(&new).map_err(|e| {
                    ApiError::new(500, "internal", "the rules could not be written").with_detail(e.to_string())
                })?;
                kv.put(RULES_KEY, text)
                    .map_err(|e| unavailable(e.to_string()))?
                    .execute()
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                rules::invalidate();
                return Ok(respond::json(200, &json!({"rules": new, "timestamp": iso(now_ms())})));
            }
        }
    }
    let message = format!("{} problem(s) in the rules; nothing was stored", errors.len());
    // The first `MAX_ERRORS` named: a body of 300,000 bad entries does not
    // get an answer of tens of megabytes.
    let total = errors.len();
    errors.truncate(MAX_ERRORS);
    let body = if total > MAX_ERRORS {
        json!({"error": "invalid_rules", "message": message, "errors": errors, "truncated": total - MAX_ERRORS})
    } else {
        json!({"error": "invalid_rules", "message": message, "errors": errors})
    };
    Ok(respond::json(400, &body))
}

//! `POST /api/policy/preview`: what a candidate policy would have done to
//! the site's recent requests (`intel::preview`). The body, every field
//! optional: `{"rules": [...], "enforce": "off|challenge|block",
//! "challengeAt": n, "blockAt": n}`; a field left out is the policy in force.
//! Every hub shard answers its window's sample (`HubOp::Preview`); the
//! samples are merged here and the candidate and the policy in force are
//! evaluated on the same sample. Nothing is stored.

use futures::future::join_all;
use serde_json::{json, Value};
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::config::Enforce;
use crate::edge::{respond, rules};
use crate::error::ApiError;
use crate::intel::keys::hub_name;
use crate::intel::preview::{self, Policy, Reservoir};
use crate::intel::rules::{parse_rules, FieldError};
use crate::intel::wire::{HubOp, PreviewSample};
use crate::platform::call_object;

use super::common::{iso, read_json_body, Call};

/// Problems named in one 400 answer; the rest are counted (`truncated`).
const MAX_ERRORS: usize = 100;

pub async fn post(c: Call<'_>) -> Result<Response, ApiError> {
    let body = read_json_body(c.req).await?;
    let current_rules = rules::effective(c.io, c.config).await.rules;
    let e = &c.config.enforce;
    let mut errors = Vec::new();
    let Some(fields) = body.as_object() else {
        return Ok(invalid(vec![FieldError { field: "body".into(), message: "must be a JSON object".into() }]));
    };
    for k in fields.keys().filter(|k| !["rules", "enforce", "challengeAt", "blockAt"].contains(&k.as_str())) {
        errors.push(FieldError { field: short(k), message: "unknown field".into() });
    }
    let candidate_rules = match body.get("rules") {
        None => None,
        Some(v) => match parse_rules(v) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.extend(e);
                None
            }
        },
    };
    let mode = match body.get("enforce") {
        None => e.mode,
        Some(v) => match v.as_str() {
            Some("off") => Enforce::Off,
            Some("challenge") => Enforce::Challenge,
            Some("block") => Enforce::Block,
            _ => {
                errors.push(FieldError { field: "enforce".into(), message: "must be off, challenge or block".into() });
                e.mode
            }
        },
    };
    let mut threshold = |name: &str, dflt: u8| match body.get(name) {
        None => dflt,
        Some(v) => match v.as_u64().and_then(|n| u8::try_from(n).ok()).filter(|n| *n <= 100) {
            Some(n) => n,
            None => {
                errors.push(FieldError { field: name.into(), message: "must be an integer from 0 to 100".into() });
                dflt
            }
        },
    };
    let challenge_at = threshold("challengeAt", e.challenge_at);
    let block_at = threshold("blockAt", e.block_at);
    if !errors.is_empty() {
        return Ok(invalid(errors));
    }
    let (sample, since) = site_sample(&c).await?;
    let now = now_ms();
    let span_s = since.map_or(0.0, |s| (now - s) / 1000.0);
    let rules_in_force: &[_] = &current_rules;
    let candidate =
        Policy { rules: candidate_rules.as_deref().unwrap_or(rules_in_force), mode, challenge_at, block_at };
    let current = Policy { rules: rules_in_force, mode: e.mode, challenge_at: e.challenge_at, block_at: e.block_at };
    let mut answer = preview::answer(
        &sample,
        &preview::evaluate(&sample, &candidate, span_s),
        &preview::evaluate(&sample, &current, span_s),
        span_s,
    );
    if let Some(o) = answer.as_object_mut() {
        o.insert("since".into(), since.map_or(Value::Null, |s| json!(iso(s))));
        o.insert("timestamp".into(), json!(iso(now)));
    }
    Ok(respond::json(200, &answer))
}

/// Every shard's sample, merged (each item standing for as many requests).
async fn site_sample(c: &Call<'_>) -> Result<(Reservoir, Option<f64>), ApiError> {
    let env = c.io.env;
    // Each shard sends its share of the sample, so the answers together
    // stay within `PREVIEW_CAP` items however many shards there are.
    let shards = c.config.hub.shards.max(1);
    let cap = (preview::PREVIEW_CAP / usize::try_from(shards).unwrap_or(1)).max(1);
    let calls = (0..shards).map(|i| {
        let name = hub_name(i);
        async move { call_object::<_, PreviewSample>(env, bindings::HUB, &name, &HubOp::Preview { cap }).await }
    });
    let mut merged = Reservoir::default();
    let mut since: Option<f64> = None;
    for r in join_all(calls).await {
        match r {
            Ok((200, Some(p))) => {
                merged.merge(&p.sample, preview::PREVIEW_CAP);
                since = match (since, p.since) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Ok((s, _)) => return Err(ApiError::new(503, "analytics_unavailable", format!("a hub shard answered {s}"))),
            Err(e) => return Err(e.public("analytics_unavailable", "an analytics hub did not answer; retry")),
        }
    }
    Ok((merged, since))
}

/// A field name as the answer shows it: a huge key is not echoed whole.
fn short(k: &str) -> String {
    let mut cut = k.len().min(64);
    while !k.is_char_boundary(cut) {
        cut -= 1;
    }
    k.get(..cut).unwrap_or("").to_string()
}

fn invalid(mut errors: Vec<FieldError>) -> Response {
    let message = format!("{} problem(s) in the policy", errors.len());
    let total = errors.len();
    errors.truncate(MAX_ERRORS);
    let mut body = json!({"error": "invalid_policy", "message": message, "errors": errors});
    if total > MAX_ERRORS {
        if let Some(o) = body.as_object_mut() {
            o.insert("truncated".into(), json!(total - MAX_ERRORS));
        }
    }
    respond::json(400, &body)
}

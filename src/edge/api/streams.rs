//! The WebSocket streams (`/api/intelligence/stream`,
//! `/api/performance/stream`) and the single-use tickets browsers open them
//! with (`POST /api/stream-ticket`). `Auth::Stream` has checked the method,
//! the upgrade and the credential before a handler here runs; the socket
//! itself is accepted by the object that serves the stream: one of the
//! global streams' relays (`objects::stream`, picked at random, the next one
//! when it is full), or the subject's profile object for `?ip=`.

use serde_json::json;
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::edge::respond;
use crate::error::ApiError;
use crate::intel::fanout::{relay_count, relay_name, relay_order, StreamOp, ROOT};
use crate::intel::ticket;
use crate::intel::wire::{Spent, BEARER_HEADER, INTEL_TAG, PERF_TAG, STREAM_HEADER};
use crate::platform::call_object;

use super::auth::{bearer_subprotocol, ticket_key, unauthorized};
use super::common::{iso, key_from_path, Call};

/// `POST /api/stream-ticket`: a signed single-use stream ticket
/// (`intel::ticket`), made in the isolate.
pub async fn issue_ticket(c: Call<'_>) -> Result<Response, ApiError> {
    let key = ticket_key(c.io.env).await?;
    let mut nonce = [0u8; ticket::NONCE_BYTES];
    getrandom::fill(&mut nonce)
        .map_err(|e| ApiError::new(500, "internal", "no randomness for the ticket").with_detail(e.to_string()))?;
    let ttl = c.config.streams.ticket_ttl_ms;
    let expires = now_ms() + ttl;
    let ticket = ticket::issue(&key, &nonce, expires as u64)
        .ok_or_else(|| ApiError::new(500, "internal", "could not sign the ticket"))?;
    Ok(respond::json(201, &json!({"ticket": ticket, "expiresAt": iso(expires), "expiresIn": ttl / 1000.0})))
}

/// `GET /api/intelligence/stream` (`?ip=` narrows it to one subject).
pub async fn intelligence(c: Call<'_>) -> Result<Response, ApiError> {
    open(c, INTEL_TAG).await
}

/// `GET /api/performance/stream`.
pub async fn performance(c: Call<'_>) -> Result<Response, ApiError> {
    open(c, PERF_TAG).await
}

async fn open(c: Call<'_>, tag: &'static str) -> Result<Response, ApiError> {
    let (env, config) = (c.io.env, c.config);
    let url = url::Url::parse(&c.req.url()).map_err(|_| ApiError::new(400, "bad_url", "unparsable URL"))?;
    let ip = url.query_pairs().find(|(k, _)| k == "ip").map(|(_, v)| v.into_owned());
    // The object is named by the subject's storage key, as every other
    // call names it (hashed with IP_HASH_KEY).
    let subject = match ip {
        Some(ip) if tag == INTEL_TAG => Some(key_from_path(&ip, &config.secrets)?.key.as_str().to_string()),
        Some(_) => return Err(ApiError::new(400, "bad_request", "`ip` narrows only the intelligence stream")),
        None => None,
    };
    let mut headers = vec![("upgrade", "websocket"), (STREAM_HEADER, tag)];
    if bearer_subprotocol(c.req).is_some() {
        headers.push((BEARER_HEADER, "1"));
    }
    if let Some(t) = &c.ticket {
        // Spent in one place, the stream root, before any object accepts the
        // socket: a ticket opens one socket, whichever relay or profile
        // object it lands in.
        let op = StreamOp::SpendTicket { nonce: t.nonce.clone(), expires: t.expires_ms as f64 };
        let (_, body) = call_object::<_, Spent>(env, bindings::STREAMS, ROOT, &op).await?;
        if !body.is_some_and(|b| b.valid) {
            return Err(unauthorized());
        }
    }
    if let Some(key) = subject {
        return upgrade_at(env, bindings::PROFILES, &key, &headers).await;
    }
    // The global streams: from a random relay onwards, the next only when one
    // is full; any other refusal (the root down: `stream_unavailable`) goes
    // back at once, since every relay would give the same.
    let count = relay_count(config.streams.max_clients, config.streams.relay_max_sockets);
    let mut start = [0u8; 4];
    getrandom::fill(&mut start)
        .map_err(|e| ApiError::new(500, "internal", "no randomness to pick a relay").with_detail(e.to_string()))?;
    let mut last = None;
    for relay in relay_order(u32::from_le_bytes(start), count) {
        let mut res = upgrade_raw(env, bindings::STREAMS, &relay_name(relay), &headers).await?;
        if !relay_full(&mut res).await {
            return Ok(res.into());
        }
        last = Some(res.into());
    }
    last.ok_or_else(|| ApiError::new(500, "internal", "no stream relay"))
}

/// Whether a relay's answer is its "full" refusal (503
/// `too_many_stream_clients`), read from a copy of the body.
async fn relay_full(res: &mut worker::Response) -> bool {
    #[derive(serde::Deserialize)]
    struct Refusal {
        error: String,
    }
    if res.status_code() != 503 {
        return false;
    }
    let Ok(mut copy) = res.cloned() else { return false };
    let text = copy.text().await.unwrap_or_default();
    serde_json::from_str::<Refusal>(&text).is_ok_and(|r| r.error == "too_many_stream_clients")
}

/// Hands the upgrade to one object: its 101 with the WebSocket, or its refusal, as is.
async fn upgrade_at(
    env: &worker::Env,
    binding: &str,
    name: &str,
    headers: &[(&str, &str)],
) -> Result<Response, ApiError> {
    Ok(upgrade_raw(env, binding, name, headers).await?.into())
}

async fn upgrade_raw(
    env: &worker::Env,
    binding: &str,
    name: &str,
    headers: &[(&str, &str)],
) -> Result<worker::Response, ApiError> {
    let internal = || ApiError::new(500, "internal", "could not build the upgrade request");
    let inner = crate::platform::new_request("https://object/stream", "GET", headers, None).map_err(|_| internal())?;
    let object_error = ApiError::from;
    // Through `object_stub`: the object lives in DATA_JURISDICTION when it is set.
    let stub = crate::platform::object_stub(env, binding, name)?;
    stub.fetch_with_request(inner).await.map_err(object_error)
}

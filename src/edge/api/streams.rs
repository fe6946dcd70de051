//! The WebSocket streams (`/api/intelligence/stream`,
//! `/api/performance/stream`) and the single-use tickets browsers open them
//! with (`POST /api/stream-ticket`). `Auth::Stream` has checked the method,
//! the upgrade and the credential before a handler here runs; the socket
//! itself is accepted by the object that serves the stream (the hub, or the
//! subject's profile object for `?ip=`).

use serde_json::json;
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::edge::respond;
use crate::error::ApiError;
use crate::intel::keys::GLOBAL_HUB;
use crate::intel::ticket;
use crate::intel::wire::{
    HubOp, Spent, BEARER_HEADER, INTEL_TAG, PERF_TAG, STREAM_HEADER, TICKET_EXPIRES_HEADER, TICKET_NONCE_HEADER,
};
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
    let (binding, name) = match ip {
        // The object is named by the subject's storage key, as every other
        // call names it (hashed with IP_HASH_KEY).
        Some(ip) if tag == INTEL_TAG => {
            (bindings::PROFILES, key_from_path(&ip, &config.secrets)?.key.as_str().to_string())
        }
        Some(_) => return Err(ApiError::new(400, "bad_request", "`ip` narrows only the intelligence stream")),
        None => (bindings::HUB, GLOBAL_HUB.to_string()),
    };
    let internal = || ApiError::new(500, "internal", "could not build the upgrade request");
    let mut headers = vec![("upgrade", "websocket"), (STREAM_HEADER, tag)];
    if bearer_subprotocol(c.req).is_some() {
        headers.push((BEARER_HEADER, "1"));
    }
    let expires;
    if let Some(t) = &c.ticket {
        expires = t.expires_ms.to_string();
        if binding == bindings::HUB {
            // The hub spends it in the same call that accepts the socket.
            headers.push((TICKET_NONCE_HEADER, t.nonce.as_str()));
            headers.push((TICKET_EXPIRES_HEADER, expires.as_str()));
        } else {
            // A subject's stream lands in its profile object; tickets are
            // spent in one place, the hub, so each opens one socket anywhere.
            let op = HubOp::SpendTicket { nonce: t.nonce.clone(), expires: t.expires_ms as f64 };
            let (_, body) = call_object::<_, Spent>(env, bindings::HUB, GLOBAL_HUB, &op).await?;
            if !body.is_some_and(|b| b.valid) {
                return Err(unauthorized());
            }
        }
    }
    let inner = crate::platform::new_request("https://object/stream", "GET", &headers, None).map_err(|_| internal())?;
    let object_error = ApiError::from;
    let stub = crate::platform::object_stub(env, binding, &name)?;
    let res = stub.fetch_with_request(inner).await.map_err(object_error)?;
    // A ticket the hub had already seen spent is a failed authentication
    // like any other (counted by the limiter), not a pass-through answer.
    if res.status_code() == 401 {
        return Err(unauthorized());
    }
    // A 101 with its WebSocket (or the object's refusal) goes back as is.
    Ok(res.into())
}

//! Authentication under the prefix: the admin token, the stream credentials
//! (token, single-use ticket or `bearer` subprotocol) and the limiter of
//! failed authentications (`intel::auth_guard`), kept per isolate. The route
//! table says which check a route gets (`routing::Auth`); `super::route`
//! calls these, in that order, before any handler runs. Without an
//! `ADMIN_TOKEN` configured every authenticated route answers 503 rather
//! than run open.

use std::cell::RefCell;

use web_sys::Request;
use worker::Env;

use crate::bindings;
use crate::clock::now_ms;
use crate::config::{Secrets, Streams};
use crate::edge::extract::header;
use crate::error::ApiError;
use crate::intel::auth_guard::{AuthGuard, MAX_FAILURES_PER_WINDOW};
use crate::intel::keys::GLOBAL_HUB;
use crate::intel::secrets::{bearer, token_matches};
use crate::intel::ticket::{self, Ticket};
use crate::intel::wire::{HubOp, TicketKey};
use crate::platform::call_object;

thread_local! {
    /// Failed authentications per subject in this isolate (bounded: see intel::auth_guard).
    static AUTH_GUARD: RefCell<AuthGuard> = RefCell::new(AuthGuard::default());
    /// The stream-ticket key, asked of the global hub once per isolate.
    static TICKET_KEY: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Whether the request offers any credential: an `Authorization` header, a
/// stream `ticket` or a WebSocket subprotocol (the `bearer, <token>` form).
/// Only such a request is a guess the limiter counts.
pub fn presents_credentials(req: &Request) -> bool {
    let headers = req.headers();
    let has = |name: &str| headers.has(name).unwrap_or(false);
    has("authorization")
        || has("sec-websocket-protocol")
        || url::Url::parse(&req.url()).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == "ticket"))
}

/// Counts a failed authentication of `subject` (a 401 to a request that
/// presented a credential).
pub fn failed(subject: &str, now: f64) {
    AUTH_GUARD.with(|g| g.borrow_mut().failed(subject, now));
}

/// `Auth::Admin`: the token is configured (503), the caller is not locked
/// out (429) and presents it as `Authorization: Bearer` (401).
pub fn admin(req: &Request, secrets: &Secrets, caller: Option<&str>) -> Result<(), ApiError> {
    let expected = admin_token(secrets)?;
    not_locked(caller)?;
    let presented = header(req, "authorization");
    match presented.as_deref().and_then(bearer) {
        Some(t) if token_matches(t, expected) => Ok(()),
        _ => Err(unauthorized()),
    }
}

/// `Auth::Stream`, after the method: a WebSocket upgrade (426), then as
/// `admin`, but browsers cannot set headers on a WebSocket, so besides
/// `Authorization` it accepts a single-use `?ticket=` (returned, for the
/// handler to spend; valid for `streams.ticket_ttl_ms`) or
/// `Sec-WebSocket-Protocol: bearer, <token>`. Every check happens before
/// any socket opens.
pub async fn stream(
    req: &Request,
    env: &Env,
    secrets: &Secrets,
    streams: &Streams,
    caller: Option<&str>,
) -> Result<Option<Ticket>, ApiError> {
    let upgrade = header(req, "upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::new(426, "upgrade_required", "this is a WebSocket endpoint: send Upgrade: websocket"));
    }
    let expected = admin_token(secrets)?;
    not_locked(caller)?;
    let url = url::Url::parse(&req.url()).map_err(|_| ApiError::new(400, "bad_url", "unparsable URL"))?;
    let presented = url.query_pairs().find(|(k, _)| k == "ticket").map(|(_, v)| v.into_owned());
    // A ticket is checked here, in the isolate: garbage is refused by its
    // shape, a forgery by its tag under the cached key (only an isolate's
    // very first ticket fetches that key from the hub, once). It is spent
    // by the handler, in the stream root.
    let ticket = match presented {
        Some(t) if !ticket::well_formed(&t) => return Err(unauthorized()),
        Some(t) => {
            let key = ticket_key(env).await?;
            Some(ticket::verify(&key, &t, now_ms() as u64, streams.ticket_ttl_ms as u64).map_err(|_| unauthorized())?)
        }
        None => None,
    };
    let authorized = if ticket.is_some() {
        true
    } else if let Some(token) = bearer_subprotocol(req) {
        token.is_some_and(|t| token_matches(&t, expected))
    } else {
        header(req, "authorization").as_deref().and_then(bearer).is_some_and(|t| token_matches(t, expected))
    };
    if !authorized {
        return Err(unauthorized());
    }
    Ok(ticket)
}

/// `Some` when the client offers the `bearer, <token>` subprotocol form
/// (with the token, if it sent one); `None` when it does not use that form.
pub fn bearer_subprotocol(req: &Request) -> Option<Option<String>> {
    let protocols = header(req, "sec-websocket-protocol").unwrap_or_default();
    let mut offered = protocols.split(',').map(str::trim);
    (offered.next() == Some("bearer")).then(|| offered.next().map(String::from))
}

/// The stream-ticket key (`intel::ticket`): cached in the isolate; the first
/// use in an isolate asks the global hub, which makes it once at random.
pub async fn ticket_key(env: &Env) -> Result<Vec<u8>, ApiError> {
    if let Some(k) = TICKET_KEY.with(|k| k.borrow().clone()) {
        return Ok(k);
    }
    let (_, body) = call_object::<_, TicketKey>(env, bindings::HUB, GLOBAL_HUB, &HubOp::TicketKey).await?;
    let key = body
        .and_then(|b| hex::decode(b.key).ok())
        .filter(|k| k.len() == ticket::KEY_BYTES)
        .ok_or_else(|| ApiError::new(500, "internal", "the hub gave no ticket key"))?;
    TICKET_KEY.with(|k| *k.borrow_mut() = Some(key.clone()));
    Ok(key)
}

pub fn unauthorized() -> ApiError {
    ApiError::new(401, "unauthorized", "a valid `Authorization: Bearer <ADMIN_TOKEN>` header is required")
}

fn admin_token(secrets: &Secrets) -> Result<&str, ApiError> {
    secrets.admin_token.as_deref().ok_or_else(|| {
        ApiError::new(
            503,
            "admin_token_unset",
            "the API is disabled until ADMIN_TOKEN is set: `wrangler secret put ADMIN_TOKEN` (locally: ADMIN_TOKEN in .dev.vars)",
        )
    })
}

/// 429 while `caller` has failed authentication too often (checked before
/// the token, so a guess made then learns nothing).
fn not_locked(caller: Option<&str>) -> Result<(), ApiError> {
    let Some(caller) = caller else { return Ok(()) };
    match AUTH_GUARD.with(|g| g.borrow_mut().locked_for(caller, now_ms())) {
        None => Ok(()),
        Some(seconds) => {
            let mut e = ApiError::new(
                429,
                "too_many_failed_authentications",
                format!(
                    "more than {MAX_FAILURES_PER_WINDOW} failed authentications within a minute; retry in {seconds} s"
                ),
            );
            e.retry_after_s = Some(seconds);
            Err(e)
        }
    }
}

//! Routes under the reserved prefix (`INTEL_PREFIX`, default `/_intel`).
//! Nothing here is ever forwarded to the origin. Only liveness answers
//! without the admin token, and it carries no data about any IP. Without an
//! `ADMIN_TOKEN` configured the API refuses every call rather than run open.

use std::cell::RefCell;

use futures::future::join_all;
use serde_json::{json, Value};
use web_sys::{Request, Response};
use worker::Env;

use crate::clock::now_ms;
use crate::config::Config;
use crate::error::ApiError;
use crate::intel::auth_guard::{AuthGuard, MAX_FAILURES_PER_WINDOW};
use crate::intel::events::{validate, IntelEvent};
use crate::intel::ip::{identify, parse_subject, subject_of};
use crate::intel::lists::ListVerdict;
use crate::intel::profile::Observation;
use crate::intel::secrets::{bearer, token_matches};
use crate::intel::wire::ProfileOp;
use crate::objects::hub::{self, HubOp};
use crate::objects::sockets::{BEARER_HEADER, STREAM_HEADER, TICKET_EXPIRES_HEADER, TICKET_NONCE_HEADER};
use crate::platform::call_object;

use super::analytics_api;
use super::body::read_limited;
use super::consult::{forget, BINDING};
use super::extract::header;
use super::record;
use super::respond;

/// API bodies over this get 413 (SPEC 5).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A challenge answer is a token, a counter and a return path (or a Turnstile
/// response, ~2 KB): anything over 8 KiB from an unauthenticated client is refused.
const CHALLENGE_MAX_BODY_BYTES: usize = 8 * 1024;

/// True when `path` is the prefix itself or below it.
pub fn owns(config: &Config, path: &str) -> bool {
    let p = config.intel_prefix.as_str();
    path == p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'))
}

thread_local! {
    /// Failed authentications per subject in this isolate (bounded: see intel::auth_guard).
    static AUTH_GUARD: RefCell<AuthGuard> = RefCell::new(AuthGuard::default());
}

pub async fn route(req: &Request, env: &Env, ctx: &worker::Context, config: &Config) -> Response {
    // Liveness first: it answers from the isolate alone (no KV, no object),
    // carries no data, and so needs neither the lists nor the limiter.
    if super::extract::path(req).get(config.intel_prefix.len()..) == Some("/health/intelligence") {
        return match req.method().as_str() {
            "GET" | "HEAD" => liveness(),
            _ => respond::error(&ApiError::method_not_allowed("GET, HEAD")),
        };
    }
    let (ip, cf, request) = super::extract::facts(req, config);
    let identity = ip.map(|ip| identify(&subject_of(ip), config.secrets.ip_hash_key.as_deref()));
    // A block-listed client gets nothing under the prefix, whatever ENFORCE
    // says: no token guessing, no challenge answers (the allow list still wins).
    let lists = super::lists::effective(env, ctx, config).await;
    if lists.lists.check(ip, cf.asn, cf.country.as_deref()) == ListVerdict::Blocked {
        return respond::blocked(&header(req, "accept").unwrap_or_default());
    }
    // Failed authentications are limited per subject. Only a request that
    // presents a credential is a guess: one without any gets its 401 and is
    // neither counted nor refused (it learns nothing). A request without a
    // client address (never on Cloudflare, which always sets
    // CF-Connecting-IP; only local tools calling the runtime directly) has no
    // subject to count against, so it is not limited.
    let caller = identity.as_ref().filter(|_| presents_credentials(req)).map(|id| id.key.as_str());
    match route_inner(req, env, ctx, config, caller).await {
        Ok(res) => res,
        Err(e) => {
            if let (401, Some(id), Some(_)) = (e.status, &identity, caller) {
                let now = now_ms();
                AUTH_GUARD.with(|g| g.borrow_mut().failed(id.key.as_str(), now));
                // The profile counts it as the auth failure it is (its
                // `auth_failures` signal; not an origin status), through the
                // batched observation path: no object call of its own.
                let obs = Observation {
                    at: now,
                    method: request.method.clone(),
                    path: request.path.chars().take(super::MAX_STORED_PATH).collect(),
                    status: None,
                    latency_ms: None,
                    location: super::location_of(&cf, now),
                    signals: Vec::new(),
                    action: None,
                    visitor: None,
                    admin_auth_failed: true,
                };
                record::observation(ctx, env, config, &id.key, &id.display, obs, false);
            }
            respond::error(&e)
        }
    }
}

async fn route_inner(
    req: &Request,
    env: &Env,
    ctx: &worker::Context,
    config: &Config,
    caller: Option<&str>,
) -> Result<Response, ApiError> {
    let path = super::extract::path(req);
    let rest = path.get(config.intel_prefix.len()..).unwrap_or("");
    let method = req.method();
    if rest == "/challenge/verify" {
        return match method.as_str() {
            "POST" => challenge_verify(req, env, config).await,
            _ => Err(ApiError::method_not_allowed("POST")),
        };
    }
    if rest == "/metrics" {
        authorize(req, config, caller)?;
        if !matches!(method.as_str(), "GET" | "HEAD") {
            return Err(ApiError::method_not_allowed("GET, HEAD"));
        }
        return match analytics_api::route(env, config, "metrics", "", record::queued()).await {
            Some(r) => r,
            None => Err(ApiError::not_found("metrics")),
        };
    }
    let stream = match rest {
        "/api/intelligence/stream" => Some(hub::INTEL_TAG),
        "/api/performance/stream" => Some(hub::PERF_TAG),
        _ => None,
    };
    if let Some(tag) = stream {
        return open_stream(req, env, config, tag, caller).await;
    }
    if let Some(api) = rest.strip_prefix("/api/") {
        authorize(req, config, caller)?;
        if api == "stream-ticket" {
            return match method.as_str() {
                "POST" => issue_ticket(env, config).await,
                _ => Err(ApiError::method_not_allowed("POST")),
            };
        }
        if let Some(ip) = api.strip_prefix("ip-intelligence/") {
            return match method.as_str() {
                "GET" => get_profile(env, config, ip).await,
                "DELETE" => delete_profile(env, config, ip).await,
                _ => Err(ApiError::method_not_allowed("GET, DELETE")),
            };
        }
        if api == "openapi.json" {
            return match method.as_str() {
                "GET" => openapi(env).await,
                _ => Err(ApiError::method_not_allowed("GET")),
            };
        }
        if api == "config/lists" {
            return match method.as_str() {
                "GET" => get_lists(env, config).await,
                "PUT" => put_lists(req, env).await,
                _ => Err(ApiError::method_not_allowed("GET, PUT")),
            };
        }
        if api == "events" {
            return match method.as_str() {
                "POST" => post_events(req, env, ctx, config).await,
                _ => Err(ApiError::method_not_allowed("POST")),
            };
        }
        let query = url::Url::parse(&req.url()).ok().and_then(|u| u.query().map(String::from)).unwrap_or_default();
        if let Some(result) = analytics_api::route(env, config, api, &query, record::queued()).await {
            return match method.as_str() {
                "GET" | "HEAD" => result,
                _ => Err(ApiError::method_not_allowed("GET, HEAD")),
            };
        }
    }
    if matches!(method.as_str(), "GET" | "HEAD") && !rest.starts_with("/api/") {
        return dashboard(env, config, rest).await;
    }
    Err(ApiError::not_found(format!("no route for {method} {}{rest}", config.intel_prefix)))
}

/// The dashboard: static files from `www/` (the `ASSETS` binding) under the
/// prefix only, so the site's own paths are never shadowed. The files carry
/// no data; everything they show comes from the authenticated API.
async fn dashboard(env: &Env, config: &Config, rest: &str) -> Result<Response, ApiError> {
    if rest.is_empty() {
        // `/_intel` -> `/_intel/`, so the page's relative URLs resolve under the prefix.
        let init = web_sys::ResponseInit::new();
        init.set_status(308);
        let headers = web_sys::Headers::new().map_err(|_| ApiError::new(500, "internal", "headers"))?;
        let _ = headers.set("location", &format!("{}/", config.intel_prefix));
        init.set_headers(headers.as_ref());
        return Response::new_with_opt_str_and_init(None, &init)
            .map_err(|_| ApiError::new(500, "internal", "redirect"));
    }
    // Only the page and its bundle: `/`, `/index.html` and `/dist/<name>` with a
    // plain file name. Anything else in www/ (the sources, and api/openapi.json,
    // which only the authenticated route serves) is not reachable here, whatever
    // its spelling (`%2F`, `//`, `%61pi`).
    let file = if rest == "/" { "/index.html" } else { rest };
    if !dashboard_file(file) {
        return Err(ApiError::not_found(format!("no route or file for {}{rest}", config.intel_prefix)));
    }
    let res = fetch_asset(env, file).await?;
    if res.status_code() == 404 {
        return Err(ApiError::not_found(format!("no route or file for {}{rest}", config.intel_prefix)));
    }
    // The asset's headers may be immutable: copy them into a new response.
    let res: Response = res.into();
    let headers =
        web_sys::Headers::new_with_headers(&res.headers()).map_err(|_| ApiError::new(500, "internal", "headers"))?;
    for (name, value) in DASHBOARD_HEADERS {
        let _ = headers.set(name, value);
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(res.status());
    init.set_headers(headers.as_ref());
    Response::new_with_opt_readable_stream_and_init(res.body().as_ref(), &init)
        .map_err(|_| ApiError::new(500, "internal", "dashboard response"))
}

/// Security headers of the dashboard's files. The page shows every profile
/// once the token is entered, so: only its own scripts and styles (no inline
/// script or style attribute: an injected string cannot run), its own API and
/// streams, no framing (clickjacking), no MIME sniffing, no Referer.
const DASHBOARD_HEADERS: [(&str, &str); 3] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// The files the dashboard route serves (see `dashboard`).
fn dashboard_file(file: &str) -> bool {
    let plain = |name: &str| {
        !name.is_empty()
            && !name.starts_with('.')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    file == "/index.html" || file.strip_prefix("/dist/").is_some_and(plain)
}

/// GETs `path` from the `ASSETS` binding (the request is built without
/// workers-rs' `RequestInit`: see platform::new_request).
async fn fetch_asset(env: &Env, path: &str) -> Result<worker::Response, ApiError> {
    let failed = |e: worker::Error| ApiError::new(500, "internal", format!("assets: {e}"));
    let assets =
        env.assets("ASSETS").map_err(|_| ApiError::not_found("the dashboard is not deployed (no ASSETS binding)"))?;
    let req = crate::platform::new_request(&format!("https://assets.local{path}"), "GET", &[], None).map_err(failed)?;
    assets.fetch_request(req).await.map_err(failed)
}

fn admin_token(config: &Config) -> Result<&str, ApiError> {
    config.secrets.admin_token.as_deref().ok_or_else(|| {
        ApiError::new(
            503,
            "admin_token_unset",
            "the API is disabled until ADMIN_TOKEN is set: `wrangler secret put ADMIN_TOKEN` (locally: ADMIN_TOKEN in .dev.vars)",
        )
    })
}

fn unauthorized() -> ApiError {
    ApiError::new(401, "unauthorized", "a valid `Authorization: Bearer <ADMIN_TOKEN>` header is required")
}

/// Whether the request offers any credential: an `Authorization` header, a
/// stream `ticket` or a WebSocket subprotocol (the `bearer, <token>` form).
fn presents_credentials(req: &Request) -> bool {
    let headers = req.headers();
    let has = |name: &str| headers.has(name).unwrap_or(false);
    has("authorization")
        || has("sec-websocket-protocol")
        || url::Url::parse(&req.url()).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == "ticket"))
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

fn authorize(req: &Request, config: &Config, caller: Option<&str>) -> Result<(), ApiError> {
    let expected = admin_token(config)?;
    not_locked(caller)?;
    let presented = header(req, "authorization");
    match presented.as_deref().and_then(bearer) {
        Some(t) if token_matches(t, expected) => Ok(()),
        _ => Err(unauthorized()),
    }
}

thread_local! {
    /// The stream-ticket key, asked of the global hub once per isolate.
    static TICKET_KEY: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// The stream-ticket key (`intel::ticket`): cached in the isolate; the first
/// use in an isolate asks the global hub, which makes it once at random.
async fn ticket_key(env: &Env) -> Result<Vec<u8>, ApiError> {
    if let Some(k) = TICKET_KEY.with(|k| k.borrow().clone()) {
        return Ok(k);
    }
    let (_, body) =
        call_object::<_, Value>(env, hub::BINDING, hub::NAME, &HubOp::TicketKey).await.map_err(unavailable)?;
    let key = body
        .as_ref()
        .and_then(|b| b.get("key"))
        .and_then(Value::as_str)
        .and_then(|k| hex::decode(k).ok())
        .filter(|k| k.len() == crate::intel::ticket::KEY_BYTES)
        .ok_or_else(|| ApiError::new(500, "internal", "the hub gave no ticket key"))?;
    TICKET_KEY.with(|k| *k.borrow_mut() = Some(key.clone()));
    Ok(key)
}

/// A signed single-use stream ticket (`intel::ticket`), made in the isolate.
async fn issue_ticket(env: &Env, config: &Config) -> Result<Response, ApiError> {
    let key = ticket_key(env).await?;
    let mut nonce = [0u8; crate::intel::ticket::NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
    let ttl = config.streams.ticket_ttl_ms;
    let expires = now_ms() + ttl;
    let ticket = crate::intel::ticket::issue(&key, &nonce, expires as u64)
        .ok_or_else(|| ApiError::new(500, "internal", "could not sign the ticket"))?;
    Ok(respond::json(201, &json!({"ticket": ticket, "expiresAt": iso(expires), "expiresIn": ttl / 1000.0})))
}

/// A WebSocket upgrade for a stream. Browsers cannot set headers on a
/// WebSocket, so besides `Authorization` it accepts a single-use `?ticket=`
/// or `Sec-WebSocket-Protocol: bearer, <token>`. Every check happens before
/// any socket opens; the socket itself is accepted by the object that serves
/// the stream (the hub, or the subject's profile object for `?ip=`).
async fn open_stream(
    req: &Request,
    env: &Env,
    config: &Config,
    tag: &'static str,
    caller: Option<&str>,
) -> Result<Response, ApiError> {
    if req.method() != "GET" {
        return Err(ApiError::method_not_allowed("GET"));
    }
    let upgrade = header(req, "upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::new(426, "upgrade_required", "this is a WebSocket endpoint: send Upgrade: websocket"));
    }
    let expected = admin_token(config)?;
    not_locked(caller)?;
    let url = url::Url::parse(&req.url()).map_err(|_| ApiError::new(400, "bad_url", "unparsable URL"))?;
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let protocols = header(req, "sec-websocket-protocol").unwrap_or_default();
    let offered: Vec<&str> = protocols.split(',').map(str::trim).collect();
    let bearer_form = offered.first() == Some(&"bearer");
    // A ticket is checked here, in the isolate: garbage is refused by its
    // shape, a forgery by its tag under the cached key (only an isolate's
    // very first ticket fetches that key from the hub, once). It is spent in the hub.
    let ticket = match param("ticket") {
        Some(t) if !crate::intel::ticket::well_formed(&t) => return Err(unauthorized()),
        Some(t) => {
            let key = ticket_key(env).await?;
            Some(
                crate::intel::ticket::verify(&key, &t, now_ms() as u64, config.streams.ticket_ttl_ms as u64)
                    .map_err(|_| unauthorized())?,
            )
        }
        None => None,
    };
    let authorized = if ticket.is_some() {
        true
    } else if bearer_form {
        offered.get(1).is_some_and(|t| token_matches(t, expected))
    } else {
        header(req, "authorization").as_deref().and_then(bearer).is_some_and(|t| token_matches(t, expected))
    };
    if !authorized {
        return Err(unauthorized());
    }
    let (binding, name) = match param("ip") {
        // The object is named by the subject's storage key, as every other
        // call names it (hashed with IP_HASH_KEY).
        Some(ip) if tag == hub::INTEL_TAG => (BINDING, key_from_path(&ip, config)?.key.as_str().to_string()),
        Some(_) => return Err(ApiError::new(400, "bad_request", "`ip` narrows only the intelligence stream")),
        None => (hub::BINDING, hub::NAME.to_string()),
    };
    let internal = || ApiError::new(500, "internal", "could not build the upgrade request");
    let mut headers = vec![("upgrade", "websocket"), (STREAM_HEADER, tag)];
    if bearer_form {
        headers.push((BEARER_HEADER, "1"));
    }
    let expires;
    if let Some(t) = &ticket {
        expires = t.expires_ms.to_string();
        if binding == hub::BINDING {
            // The hub spends it in the same call that accepts the socket.
            headers.push((TICKET_NONCE_HEADER, t.nonce.as_str()));
            headers.push((TICKET_EXPIRES_HEADER, expires.as_str()));
        } else {
            // A subject's stream lands in its profile object; tickets are
            // spent in one place, the hub, so each opens one socket anywhere.
            let op = HubOp::SpendTicket { nonce: t.nonce.clone(), expires: t.expires_ms as f64 };
            let (_, body) = call_object::<_, Value>(env, hub::BINDING, hub::NAME, &op).await.map_err(unavailable)?;
            if !body.as_ref().and_then(|b| b.get("valid")).and_then(Value::as_bool).unwrap_or(false) {
                return Err(unauthorized());
            }
        }
    }
    let inner = crate::platform::new_request("https://object/stream", "GET", &headers, None).map_err(|_| internal())?;
    let object_error = |e: worker::Error| unavailable(crate::platform::ObjectError(e.to_string()));
    let stub = env.durable_object(binding).and_then(|ns| ns.get_by_name(&name)).map_err(object_error)?;
    let res = stub.fetch_with_request(inner).await.map_err(object_error)?;
    // A ticket the hub had already seen spent is a failed authentication
    // like any other (counted by the limiter), not a pass-through answer.
    if res.status_code() == 401 {
        return Err(unauthorized());
    }
    // A 101 with its WebSocket (or the object's refusal) goes back as is.
    Ok(res.into())
}

fn subject_from_path(raw: &str) -> Result<crate::intel::ip::SubjectKey, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    parse_subject(&decoded).ok_or_else(|| {
        let shown: String = decoded.chars().take(64).collect();
        ApiError::new(400, "invalid_ip", format!("`{shown}` is not an IPv4/IPv6 address or an IPv6 /64 prefix"))
    })
}

/// The storage key for a queried IP (its keyed hash with `IP_HASH_KEY`).
fn key_from_path(raw: &str, config: &Config) -> Result<crate::intel::ip::Identity, ApiError> {
    Ok(crate::intel::ip::identify(&subject_from_path(raw)?, config.secrets.ip_hash_key.as_deref()))
}

/// The OpenAPI 3.1 document of this API (kept true by the contract test).
/// The build copies src/openapi.json to www/api/openapi.json; it is read from
/// the `ASSETS` binding rather than compiled in (36 KB of wasm otherwise), and
/// only through this authenticated route: the dashboard route never serves
/// paths under `/api/`.
async fn openapi(env: &Env) -> Result<Response, ApiError> {
    let mut res = fetch_asset(env, "/api/openapi.json").await?;
    if res.status_code() != 200 {
        return Err(ApiError::new(500, "internal", "the OpenAPI document is missing from the build"));
    }
    let text = res.text().await.map_err(|e| ApiError::new(500, "internal", format!("assets: {e}")))?;
    Ok(respond::json_text(200, &text))
}

async fn get_lists(env: &Env, config: &Config) -> Result<Response, ApiError> {
    let stored = super::lists::stored(env).await.map_err(|e| ApiError::new(503, "kv_unavailable", e))?;
    Ok(respond::json(
        200,
        &json!({"allow": stored.allow, "block": stored.block, "fromVars": {"allowEntries": config.lists.allow.len(), "blockEntries": config.lists.block.len()}, "timestamp": iso(now_ms())}),
    ))
}

/// Replaces the stored lists (validated first; nothing is stored on error).
async fn put_lists(req: &Request, env: &Env) -> Result<Response, ApiError> {
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
    let kv = env.kv(hub::KV_BINDING).map_err(|e| ApiError::new(503, "kv_unavailable", e.to_string()))?;
    let text = serde_json::to_string(&raw).map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
    kv.put(super::lists::KV_KEY, text)
        .map_err(|e| ApiError::new(503, "kv_unavailable", e.to_string()))?
        .execute()
        .await
        .map_err(|e| ApiError::new(503, "kv_unavailable", e.to_string()))?;
    super::lists::invalidate();
    Ok(respond::json(200, &json!({"allow": raw.allow, "block": raw.block, "timestamp": iso(now_ms())})))
}

/// Reads a JSON body (415 unless JSON, 413 over 1 MiB, 400 malformed).
async fn read_json_body(req: &Request) -> Result<Value, ApiError> {
    let content_type = header(req, "content-type").unwrap_or_default().to_ascii_lowercase();
    if !content_type.starts_with("application/json") {
        return Err(ApiError::new(415, "unsupported_media_type", "send application/json"));
    }
    let bytes = read_limited(req, MAX_BODY_BYTES).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::new(400, "invalid_utf8", "the body is not UTF-8"))?;
    serde_json::from_str(text).map_err(|e| ApiError::new(400, "malformed_json", format!("the body is not JSON: {e}")))
}

/// The client posts a solved proof-of-work; on success it gets the signed
/// clearance cookie and goes back where it was (a same-site path only).
async fn challenge_verify(req: &Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let Some(key) = config.secrets.challenge_key.as_deref() else {
        return Err(ApiError::not_found("challenges are not enabled"));
    };
    let (ip, _, _) = super::extract::facts(req, config);
    let Some(ip) = ip else { return Err(ApiError::new(400, "no_client_ip", "no client address")) };
    let subject =
        crate::intel::ip::identify(&crate::intel::ip::subject_of(ip), config.secrets.ip_hash_key.as_deref()).key;
    let content_type = header(req, "content-type").unwrap_or_default().to_ascii_lowercase();
    let bytes = read_limited(req, CHALLENGE_MAX_BODY_BYTES).await?;
    let text = String::from_utf8_lossy(&bytes);
    let (token, counter, ret, turnstile_response, json_client) = if content_type.starts_with("application/json") {
        let v: Value = serde_json::from_str(&text).map_err(|e| ApiError::new(400, "malformed_json", e.to_string()))?;
        let get = |k: &str| v.get(k).map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string()));
        // A number counter may come as `12.0` (in JSON, the integer 12; and -0.0 is 0).
        let whole = |x: &Value| x.as_f64().filter(|c| c.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(c));
        let counter = v.get("counter").and_then(whole).map(|c| format!("{:.0}", c.abs())).or_else(|| get("counter"));
        (get("token"), counter, get("return"), get("cf-turnstile-response"), true)
    } else {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes()).into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        (get("token"), get("counter"), get("return"), get("cf-turnstile-response"), false)
    };
    let now = now_ms();
    if let Some((_, secret)) = &config.enforce.turnstile {
        let Some(response) = turnstile_response else {
            return Err(ApiError::new(400, "bad_request", "send cf-turnstile-response"));
        };
        turnstile_verify(config, secret, &response, &ip.to_string(), &req.url()).await?;
    } else {
        let (Some(token), Some(counter)) = (token, counter.and_then(|c| c.parse::<u64>().ok())) else {
            return Err(ApiError::new(400, "bad_request", "send token and counter"));
        };
        crate::intel::enforce::verify_solution(key, subject.as_str(), &token, counter, now, config.enforce.difficulty)
            .map_err(|why| ApiError::new(403, "challenge_failed", why))?;
        // Accepted once: the hub remembers the solved token until it expires.
        // Only a correct solution (real work by the client) gets this far.
        let (id, until) = crate::intel::enforce::solution_id(&token)
            .ok_or_else(|| ApiError::new(403, "challenge_failed", "malformed token"))?;
        let op = HubOp::SpendTicket { nonce: id, expires: until };
        let (_, body) = call_object::<_, Value>(env, hub::BINDING, hub::NAME, &op).await.map_err(unavailable)?;
        if !body.as_ref().and_then(|b| b.get("valid")).and_then(Value::as_bool).unwrap_or(false) {
            return Err(ApiError::new(403, "challenge_failed", "this solution was already used"));
        }
    }
    let expires = now + f64::from(config.enforce.clearance_ttl_s) * 1000.0;
    let value = crate::intel::enforce::clearance(key, subject.as_str(), expires as u64)
        .ok_or_else(|| ApiError::new(500, "internal", "could not sign the clearance"))?;
    let cookie = format!(
        "{}={value}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        crate::intel::enforce::CLEARANCE_COOKIE,
        config.enforce.clearance_ttl_s
    );
    // Only a path on this origin, as the browser will parse it (see intel::redirect).
    let url = req.url();
    let ret = ret.and_then(|r| crate::intel::redirect::same_origin_return(&url, &r)).unwrap_or_else(|| "/".into());
    let init = web_sys::ResponseInit::new();
    let headers = web_sys::Headers::new().map_err(|_| ApiError::new(500, "internal", "headers"))?;
    let _ = headers.set("set-cookie", &cookie);
    let _ = headers.set("cache-control", "no-store");
    let body = if json_client {
        init.set_status(200);
        let _ = headers.set("content-type", "application/json");
        Some(json!({"cleared": true, "expiresAt": iso(expires)}).to_string())
    } else {
        init.set_status(303);
        let _ = headers.set("location", &ret);
        None
    };
    init.set_headers(headers.as_ref());
    Response::new_with_opt_str_and_init(body.as_deref(), &init).map_err(|_| ApiError::new(500, "internal", "response"))
}

/// Asks Turnstile's siteverify whether the widget's response is genuine and
/// was solved on this site. The client IP goes with it (`remoteip`), so
/// Turnstile can refuse a token solved from another address: with Turnstile
/// configured, the challenged client's IP is the one IP that leaves the
/// account, to Cloudflare's own siteverify.
async fn turnstile_verify(
    config: &Config,
    secret: &str,
    response: &str,
    client_ip: &str,
    request_url: &str,
) -> Result<(), ApiError> {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("secret", secret)
        .append_pair("response", response)
        .append_pair("remoteip", client_ip)
        .finish();
    let failed =
        |why: &str| ApiError::new(503, "challenge_unavailable", format!("Turnstile verification failed: {why}"));
    let req = crate::platform::new_request(
        &config.enforce.turnstile_verify_url,
        "POST",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(&body),
    )
    .map_err(|_| failed("request"))?;
    let res = super::forward::subrequest(req.inner()).await.map_err(|_| failed("unreachable"))?;
    let mut res = worker::Response::from(res);
    let answer: Value = res.json().await.map_err(|_| failed("bad answer"))?;
    let host = crate::intel::redirect::host_of(request_url).unwrap_or_default();
    crate::intel::redirect::turnstile_accepts(&answer, &host).map_err(|why| ApiError::new(403, "challenge_failed", why))
}

async fn get_profile(env: &Env, config: &Config, raw: &str) -> Result<Response, ApiError> {
    let subject = key_from_path(raw, config)?.key;
    let (status, body) =
        call_object::<_, Value>(env, BINDING, subject.as_str(), &ProfileOp::Get).await.map_err(unavailable)?;
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

async fn delete_profile(env: &Env, config: &Config, raw: &str) -> Result<Response, ApiError> {
    let id = key_from_path(raw, config)?;
    let subject = id.key;
    let (status, body) =
        call_object::<_, Value>(env, BINDING, subject.as_str(), &ProfileOp::Delete).await.map_err(unavailable)?;
    forget(config, subject.as_str());
    // The analytics window's member sets of every hub shard (events reach
    // any shard, samples the subject's own). A failure answers 503: the
    // erasure is idempotent, so the caller retries.
    let at = now_ms();
    let calls = (0..config.hub.shards.max(1)).map(|i| {
        let op = HubOp::Forget { subject: subject.as_str().to_string(), at };
        async move { call_object::<_, Value>(env, hub::BINDING, &crate::intel::analytics::hub_name(i), &op).await }
    });
    for outcome in join_all(calls).await {
        outcome.map_err(unavailable)?;
    }
    let deleted = body.as_ref().and_then(|b| b.get("deleted")).and_then(Value::as_bool).unwrap_or(false);
    match status {
        200 => Ok(respond::json(200, &json!({"deleted": deleted, "ip": id.display, "timestamp": iso(now_ms())}))),
        // A visitor the profile could not erase: 503, retry (docs/privacy.md's promise).
        503 => Err(ApiError::new(503, "storage_unavailable", "not everything could be erased yet; retry")),
        s => Err(ApiError::new(500, "internal", format!("profile store answered {s}"))),
    }
}

/// Liveness: answers from the isolate alone. Anyone may call it, so it
/// touches no Durable Object and no KV (the window's numbers are in the
/// authenticated `GET /api/performance/health`), and it says nothing about
/// any IP.
fn liveness() -> Response {
    respond::json(
        200,
        &json!({
            "status": "ok",
            "service": "edgeintel",
            "version": env!("CARGO_PKG_VERSION"),
            "timestamp": iso(now_ms()),
        }),
    )
}

async fn post_events(req: &Request, env: &Env, ctx: &worker::Context, config: &Config) -> Result<Response, ApiError> {
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
        async move { call_object::<_, crate::intel::wire::ObserveReply>(env, BINDING, subject, &op).await }
    });
    let results = join_all(calls).await;
    let mut accepted = 0usize;
    let (mut updates, mut alerts) = (Vec::new(), Vec::new());
    for ((subject, _, list), result) in groups.iter().zip(results) {
        match result {
            Ok((200, reply)) => {
                accepted += list.len();
                forget(config, subject);
                if let Some(r) = reply {
                    updates.extend(r.updates);
                    alerts.extend(r.alerts);
                }
            }
            other => {
                let why = match other {
                    Ok((s, _)) => format!("profile store answered {s}"),
                    Err(e) => e.0,
                };
                worker::console_error!("edgeintel: events for one subject not stored: {why}");
                for (index, _) in list {
                    rejected.push(json!({"index": index, "error": "storage_unavailable: not stored, retry"}));
                }
            }
        }
    }
    // One fan-out call for the whole batch, awaited so subscribers see the
    // events before the 202 (the events are stored either way).
    if !updates.is_empty() || !alerts.is_empty() {
        let op = HubOp::Publish { updates, alerts };
        if let Err(e) = call_object::<_, Value>(env, hub::BINDING, hub::NAME, &op).await {
            worker::console_error!("edgeintel: events stored but not published: {}", e.0);
        }
    }
    rejected.sort_by_key(|r| r.get("index").and_then(Value::as_u64).unwrap_or(0));
    record::rejected_events(ctx, env, config, rejected.len() as u64);
    Ok(respond::json(202, &json!({"accepted": accepted, "rejected": rejected, "timestamp": iso(now)})))
}

fn unavailable(e: crate::platform::ObjectError) -> ApiError {
    worker::console_error!("edgeintel: profile store unavailable: {}", e.0);
    ApiError::new(503, "storage_unavailable", "the profile store did not answer; retry")
}

pub fn iso(ms: f64) -> String {
    String::from(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms)).to_iso_string())
}

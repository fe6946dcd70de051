//! `POST /challenge/verify`: the answer to the enforcement challenge (a
//! solved proof-of-work, or a Turnstile response). Public (`Auth::Public`:
//! a challenged visitor has no token), so its body is small and bounded.

use serde_json::{json, Value};
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::edge::body::read_limited;
use crate::edge::extract::{self, header};
use crate::error::ApiError;
use crate::intel::keys::GLOBAL_HUB;
use crate::intel::wire::{HubOp, Spent};
use crate::platform::call_object;

use super::common::{iso, Call};

/// A challenge answer is a token, a counter and a return path (or a Turnstile
/// response, ~2 KB): anything over 8 KiB from an unauthenticated client is refused.
const CHALLENGE_MAX_BODY_BYTES: usize = 8 * 1024;

/// The client posts a solved proof-of-work; on success it gets the signed
/// clearance cookie and goes back where it was (a same-site path only).
pub async fn verify(c: Call<'_>) -> Result<Response, ApiError> {
    let (req, env, config) = (c.req, c.io.env, c.config);
    let Some(key) = config.secrets.challenge_key.as_deref() else {
        return Err(ApiError::not_found("challenges are not enabled"));
    };
    let (ip, _, _) = extract::facts(req, config.trust_x_real_ip);
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
        turnstile_verify(&config.enforce.turnstile_verify_url, secret, &response, &ip.to_string(), &req.url()).await?;
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
        let (_, body) = call_object::<_, Spent>(env, bindings::HUB, GLOBAL_HUB, &op).await?;
        if !body.is_some_and(|b| b.valid) {
            return Err(ApiError::new(403, "challenge_failed", "this solution was already used"));
        }
    }
    let expires = now + f64::from(config.enforce.clearance_ttl_s) * 1000.0;
    let value = crate::intel::enforce::clearance(key, subject.as_str(), now as u64, expires as u64)
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
/// account, to Cloudflare's own siteverify (`verify_url`: `TURNSTILE_VERIFY_URL`).
async fn turnstile_verify(
    verify_url: &str,
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
        verify_url,
        "POST",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(&body),
    )
    .map_err(|_| failed("request"))?;
    let res = crate::edge::forward::subrequest(req.inner()).await.map_err(|_| failed("unreachable"))?;
    let mut res = worker::Response::from(res);
    let answer: Value = res.json().await.map_err(|_| failed("bad answer"))?;
    let host = crate::intel::redirect::host_of(request_url).unwrap_or_default();
    crate::intel::redirect::turnstile_accepts(&answer, &host).map_err(|why| ApiError::new(403, "challenge_failed", why))
}

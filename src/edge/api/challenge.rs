//! `POST /challenge/verify`: the answer to the enforcement challenge (a
//! solved proof-of-work, or a Turnstile response), and `GET /challenge/wait`,
//! the path for browsers without JavaScript. Public (`Auth::Public`: a
//! challenged visitor has no token), so its input is small and bounded.
//! Each answer is counted (solved, failed) for the challenge metrics.

use serde_json::{json, Value};
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::edge::body::read_limited;
use crate::edge::extract::{self, header};
use crate::edge::record::{self, Batching};
use crate::error::ApiError;
use crate::intel::challenge::{self, Outcome};
use crate::intel::enforce::TokenFacts;
use crate::intel::keys::GLOBAL_HUB;
use crate::intel::wire::{HubOp, Spent};
use crate::platform::call_object;

use super::common::{iso, Call};

/// A challenge answer is a token, a counter and a return path (or a Turnstile
/// response, ~2 KB): anything over 8 KiB from an unauthenticated client is refused.
const CHALLENGE_MAX_BODY_BYTES: usize = 8 * 1024;

/// What a challenge answer may be bound to: the visitor and browser family
/// when `CLEARANCE_BINDING=visitor` and the visitor cookie came with it, then
/// the request's own subject (a token issued before the visitor cookie
/// existed is bound to the subject).
fn candidates(c: &Call<'_>, ip: std::net::IpAddr) -> Vec<String> {
    let config = c.config;
    let subject =
        crate::intel::ip::identify(&crate::intel::ip::subject_of(ip), config.secrets.ip_hash_key.as_deref()).key;
    let cookies = extract::cookie_header(c.req);
    let visitor = crate::edge::visitor::identify(cookies.as_deref(), &config.visitor, &config.secrets)
        .filter(|v| v.set_cookie.is_none());
    let ua = header(c.req, "user-agent");
    let bound = challenge::bound_to(
        config.enforce.binding,
        subject.as_str(),
        visitor.as_ref().map(|v| v.key.as_str()),
        ua.as_deref(),
    );
    if bound == subject.as_str() {
        vec![bound]
    } else {
        vec![bound, subject.as_str().to_string()]
    }
}

/// Counts a challenge outcome for the analytics (`intel::challenge`).
fn count(c: &Call<'_>, label: &str, outcome: Outcome, at: f64) {
    // A label that is not ours (an old token, a forged form field) is
    // counted under none.
    let label = challenge::Why::from_label(label).map_or_else(|| "unknown|none".to_string(), |w| w.label());
    let config = c.config;
    let batching = Batching { flush: &config.flush, cache: &config.consult, analytics: &config.analytics };
    record::challenge(c.io, batching, &label, outcome, at);
}

/// Checks `token` against each binding in turn; the first it was issued to.
fn check_any(
    candidates: &[String],
    check: impl Fn(&str) -> Result<TokenFacts, &'static str>,
) -> Result<TokenFacts, &'static str> {
    let mut first_err = "token not issued to this client";
    for (i, b) in candidates.iter().enumerate() {
        match check(b) {
            Ok(f) => return Ok(f),
            Err(e) if i == 0 => first_err = e,
            Err(_) => {}
        }
    }
    Err(first_err)
}

/// Spends a solved token: accepted once, remembered by the hub until it
/// expires. Only a correct solution (real work or the whole wait) gets here.
async fn spend(c: &Call<'_>, token: &str) -> Result<(), &'static str> {
    let (id, until) = crate::intel::enforce::solution_id(token).ok_or("malformed token")?;
    let op = HubOp::SpendTicket { nonce: id, expires: until };
    let spent = call_object::<_, Spent>(c.io.env, bindings::HUB, GLOBAL_HUB, &op).await;
    match spent {
        Ok((_, Some(b))) if b.valid => Ok(()),
        Ok(_) => Err("this solution was already used"),
        Err(_) => Err("could not check the solution; try again"),
    }
}

/// The client posts a solved proof-of-work; on success it gets the signed
/// clearance cookie and goes back where it was (a same-site path only).
pub async fn verify(c: Call<'_>) -> Result<Response, ApiError> {
    let (req, config) = (c.req, c.config);
    let Some(key) = config.secrets.challenge_key.as_deref() else {
        return Err(ApiError::not_found("challenges are not enabled"));
    };
    let (ip, _, _) = extract::facts(req, config.trust_x_real_ip);
    let Some(ip) = ip else { return Err(ApiError::new(400, "no_client_ip", "no client address")) };
    let candidates = candidates(&c, ip);
    let content_type = header(req, "content-type").unwrap_or_default().to_ascii_lowercase();
    let bytes = read_limited(req, CHALLENGE_MAX_BODY_BYTES).await?;
    let text = String::from_utf8_lossy(&bytes);
    let (token, counter, ret, turnstile_response, why, json_client) = if content_type.starts_with("application/json") {
        let v: Value = serde_json::from_str(&text).map_err(|e| ApiError::new(400, "malformed_json", e.to_string()))?;
        let get = |k: &str| v.get(k).map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string()));
        // A number counter may come as `12.0` (in JSON, the integer 12; and -0.0 is 0).
        let whole = |x: &Value| x.as_f64().filter(|c| c.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(c));
        let counter = v.get("counter").and_then(whole).map(|c| format!("{:.0}", c.abs())).or_else(|| get("counter"));
        (get("token"), counter, get("return"), get("cf-turnstile-response"), get("why"), true)
    } else {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes()).into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        (get("token"), get("counter"), get("return"), get("cf-turnstile-response"), get("why"), false)
    };
    let now = now_ms();
    if let Some((_, secret)) = &config.enforce.turnstile {
        let Some(response) = turnstile_response else {
            return Err(ApiError::new(400, "bad_request", "send cf-turnstile-response"));
        };
        // Turnstile's page sends why it was shown, sealed: anything else is
        // counted as unknown (a client cannot make up labels).
        let key = config.secrets.challenge_key.as_deref();
        let label = why.zip(key).and_then(|(w, k)| crate::intel::enforce::open_label(k, &w)).unwrap_or_default();
        let checked =
            turnstile_verify(&config.enforce.turnstile_verify_url, secret, &response, &ip.to_string(), &req.url())
                .await;
        if let Err(e) = checked {
            if e.status == 403 {
                count(&c, &label, Outcome::Failed, now);
            }
            return Err(e);
        }
        count(&c, &label, Outcome::Solved { solve_ms: None, noscript: false }, now);
    } else {
        let (Some(token), Some(counter)) = (token, counter.and_then(|c| c.parse::<u64>().ok())) else {
            return Err(ApiError::new(400, "bad_request", "send token and counter"));
        };
        let min = config.enforce.difficulty;
        let facts =
            check_any(&candidates, |b| crate::intel::enforce::verify_solution(key, b, &token, counter, now, min));
        let facts = match facts {
            Ok(f) => f,
            Err(why) => {
                count(&c, "unknown|none", Outcome::Failed, now);
                return Err(ApiError::new(403, "challenge_failed", why));
            }
        };
        if let Err(why) = spend(&c, &token).await {
            count(&c, &facts.label, Outcome::Failed, now);
            return Err(ApiError::new(403, "challenge_failed", why));
        }
        let solve_ms = Some((now - facts.issued_ms).max(0.0) as u64);
        count(&c, &facts.label, Outcome::Solved { solve_ms, noscript: false }, facts.issued_ms);
    }
    grant(&c, key, &candidates, now, ret, json_client)
}

/// `GET /challenge/wait?token=..&return=..`: the path for browsers without
/// JavaScript (the challenge page's `<noscript>` refresh). A genuine token
/// for this client whose holder waited the page's time passes, once.
/// Weaker than the work: any client that waits passes (docs/enforcement.md).
pub async fn wait(c: Call<'_>) -> Result<Response, ApiError> {
    let config = c.config;
    let Some(key) = config.secrets.challenge_key.as_deref() else {
        return Err(ApiError::not_found("challenges are not enabled"));
    };
    if config.enforce.turnstile.is_some() || config.enforce.noscript_wait_s == 0 {
        return Err(ApiError::not_found("the no-script path is off"));
    }
    let (ip, _, _) = extract::facts(c.req, config.trust_x_real_ip);
    let Some(ip) = ip else { return Err(ApiError::new(400, "no_client_ip", "no client address")) };
    let candidates = candidates(&c, ip);
    let url = c.req.url();
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let Some(token) = get("token").filter(|t| t.len() <= 1024) else {
        return Err(ApiError::new(400, "bad_request", "send token"));
    };
    let now = now_ms();
    let (base_wait, base) = (config.enforce.noscript_wait_s, config.enforce.difficulty);
    let wait_s = |d: u8| challenge::noscript_wait_s(base_wait, d, base);
    let facts = match check_any(&candidates, |b| crate::intel::enforce::verify_wait(key, b, &token, now, wait_s)) {
        Ok(f) => f,
        Err(why) => {
            count(&c, "unknown|none", Outcome::Failed, now);
            return Err(ApiError::new(403, "challenge_failed", why));
        }
    };
    if let Err(why) = spend(&c, &token).await {
        count(&c, &facts.label, Outcome::Failed, now);
        return Err(ApiError::new(403, "challenge_failed", why));
    }
    let solve_ms = Some((now - facts.issued_ms).max(0.0) as u64);
    count(&c, &facts.label, Outcome::Solved { solve_ms, noscript: true }, facts.issued_ms);
    grant(&c, key, &candidates, now, get("return"), false)
}

/// The clearance cookie, bound to the first candidate (the visitor when
/// bound to visitors and the cookie came), and the way back.
fn grant(
    c: &Call<'_>,
    key: &str,
    candidates: &[String],
    now: f64,
    ret: Option<String>,
    json_client: bool,
) -> Result<Response, ApiError> {
    let config = c.config;
    let bound = candidates.first().map_or("", String::as_str);
    let expires = now + f64::from(config.enforce.clearance_ttl_s) * 1000.0;
    let value = crate::intel::enforce::clearance(key, bound, now as u64, expires as u64)
        .ok_or_else(|| ApiError::new(500, "internal", "could not sign the clearance"))?;
    let cookie = format!(
        "{}={value}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        crate::intel::enforce::CLEARANCE_COOKIE,
        config.enforce.clearance_ttl_s
    );
    // Only a path on this origin, as the browser will parse it (see intel::redirect).
    let url = c.req.url();
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

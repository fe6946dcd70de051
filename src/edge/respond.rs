//! Responses the Worker makes itself (API answers, block and challenge
//! pages, and every error through `error`), in one place.
//! Building a Response can only fail on invalid header names/values, which
//! ours never are; the fallbacks keep that path panic-free anyway.

use serde::Serialize;
use web_sys::{Response, ResponseInit};

use crate::config::Config;
use crate::error::Error;
use crate::intel::ratelimit::{self, Taken};

pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_string());
    with_body(status, "application/json; charset=utf-8", &text)
}

/// A JSON document that is already text.
pub fn json_text(status: u16, text: &str) -> Response {
    with_body(status, "application/json; charset=utf-8", text)
}

/// The one conversion of an `Error` into a response (`Error::parts`: the
/// status, the JSON or plain-text body, `Allow`, `Retry-After`). Logs
/// nothing: the caller notes the error in its request's `Log`.
pub fn error(e: &Error) -> Response {
    let parts = e.parts();
    let init = ResponseInit::new();
    init.set_status(parts.status);
    if let Ok(headers) = web_sys::Headers::new() {
        for (name, value) in &parts.headers {
            let _ = headers.set(name, value);
        }
        init.set_headers(headers.as_ref());
    }
    Response::new_with_opt_str_and_init(Some(&parts.body), &init)
        .or_else(|_| Response::new())
        .unwrap_or_else(|_| unreachable_response())
}

fn wants_html(accept: &str) -> bool {
    accept.contains("text/html")
}

fn reference_id() -> String {
    let mut raw = [0u8; 6];
    let _ = getrandom::fill(&mut raw);
    hex::encode(raw)
}

/// 403 for a blocked request: a reference id for support, never the reasons.
pub fn blocked(accept: &str) -> Response {
    let id = reference_id();
    if wants_html(accept) {
        let page = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Access denied</title>\
             <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem;color:#222}}code{{background:#eee;padding:.1rem .3rem}}</style></head>\
             <body><h1>Access denied</h1><p>This request was blocked by the site's security policy.</p>\
             <p>If you think this is a mistake, contact the site and quote reference <code>{id}</code>.</p></body></html>"
        );
        with_body(403, "text/html; charset=utf-8", &page)
    } else {
        let body = serde_json::json!({"error": "blocked", "message": "blocked by the site's security policy", "reference": id});
        with_body(403, "application/json; charset=utf-8", &body.to_string())
    }
}

/// 429 for a request over a rate-limit rule: `Retry-After` and the
/// `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers),
/// an HTML page or JSON by `Accept`.
pub fn rate_limited(accept: &str, rule_id: &str, limit: u32, period_s: u32, taken: &Taken) -> Response {
    let wait = taken.reset_s;
    let response = if wants_html(accept) {
        let page = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Too many requests</title>\
             <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem;color:#222}}</style></head>\
             <body><h1>Too many requests</h1><p>Please wait {wait} seconds before trying again.</p></body></html>"
        );
        with_body(429, "text/html; charset=utf-8", &page)
    } else {
        let body = serde_json::json!({
            "error": "rate_limited",
            "message": format!("too many requests; retry in {wait} s"),
            "retryAfter": wait,
        });
        with_body(429, "application/json; charset=utf-8", &body.to_string())
    };
    let headers = response.headers();
    let _ = headers.set("retry-after", &wait.to_string());
    let _ = headers.set("ratelimit-policy", &ratelimit::policy_header(rule_id, limit, period_s));
    let _ = headers.set("ratelimit", &ratelimit::state_header(rule_id, taken));
    response
}

/// What a challenge is issued for: what the token is bound to
/// (`intel::challenge::bound_to`), where to go back, its difficulty
/// (`Difficulty::for_score`) and why it was issued (`Why::label`).
pub struct ChallengeAsk<'a> {
    pub bound: &'a str,
    pub return_to: &'a str,
    pub now_ms: f64,
    pub difficulty: u8,
    pub label: &'a str,
}

/// 403 with the self-hosted proof-of-work challenge: an HTML page whose
/// script solves it and posts the answer, or JSON for API clients. Without
/// JavaScript the page refreshes itself to the no-script path after its wait
/// (`CHALLENGE_NOSCRIPT_WAIT_SECONDS`; docs/enforcement.md). Takes the whole
/// `Config` for three of its parts: the challenge's settings (`enforce`),
/// its signing key (`secrets`) and the prefix of `verify`.
pub fn challenge(accept: &str, config: &Config, ask: &ChallengeAsk) -> Response {
    let mut nonce = [0u8; 12];
    let _ = getrandom::fill(&mut nonce);
    let key = config.secrets.challenge_key.as_deref().unwrap_or_default();
    if let Some((site_key, _)) = &config.enforce.turnstile {
        // Why it was shown goes back with the answer, masked and signed
        // (without a signing key it is not sent: counted as unknown).
        let why = config
            .secrets
            .challenge_key
            .as_deref()
            .and_then(|k| crate::intel::enforce::seal_label(k, &hex::encode(nonce), ask.label))
            .unwrap_or_default();
        return turnstile(accept, &config.intel_prefix, site_key, ask.return_to, &why);
    }
    let d = ask.difficulty;
    let nonce = hex::encode(nonce);
    let Some(token) = crate::intel::enforce::issue_token(key, ask.bound, &nonce, ask.now_ms as u64, d, ask.label)
    else {
        return blocked(accept);
    };
    let prefix = &config.intel_prefix;
    let verify = format!("{prefix}/challenge/verify");
    let ret = if ask.return_to.starts_with('/') && !ask.return_to.starts_with("//") { ask.return_to } else { "/" };
    let wait = crate::intel::challenge::noscript_wait_s(config.enforce.noscript_wait_s, d, config.enforce.difficulty);
    // The token is hex, digits and dots; the return path is encoded.
    let ret_q: String = url::form_urlencoded::byte_serialize(ret.as_bytes()).collect();
    let wait_url = wait.map(|_| format!("{prefix}/challenge/wait?token={token}&return={ret_q}"));
    if !wants_html(accept) {
        let mut challenge = serde_json::json!({"token": token, "difficulty": d, "verify": verify});
        if let (Some(w), Some(url), Some(c)) = (wait, &wait_url, challenge.as_object_mut()) {
            c.insert("noscript".into(), serde_json::json!({"url": url, "waitSeconds": w}));
        }
        let body = serde_json::json!({
            "error": "challenge_required",
            "message": "solve the proof-of-work: find counter such that SHA-256(token + \":\" + counter) has `difficulty` leading zero bits, then POST {token, counter} to `verify`",
            "challenge": challenge,
        });
        return with_body(403, "application/json; charset=utf-8", &body.to_string());
    }
    let esc = |s: &str| s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;");
    let ret_json = serde_json::to_string(ret).unwrap_or_else(|_| "\"/\"".into()).replace('<', "\\u003c");
    let wait_json = serde_json::to_string(&wait_url).unwrap_or_else(|_| "null".into()).replace('<', "\\u003c");
    let (refresh, noscript) = match (wait, &wait_url) {
        (Some(w), Some(url)) => (
            format!(r#"<noscript><meta http-equiv="refresh" content="{w};url={}"></noscript>"#, esc(url)),
            format!(
                r#"<p><b>JavaScript is off.</b> This page will reload by itself in {w} seconds and let you through: please keep it open. If it does not, <a href="{}">continue here</a> after {w} seconds.</p>"#,
                esc(url)
            ),
        ),
        _ => (
            String::new(),
            "<p><b>This check needs JavaScript.</b> Please turn it on for this site and reload the page.</p>"
                .to_string(),
        ),
    };
    let page = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Checking your browser</title>{refresh}
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem;color:#222}}progress{{width:100%}}#why{{color:#a00}}</style></head>
<body><h1>One moment…</h1><p>Your browser is doing a short calculation to show it is not an automated client. This usually takes a few seconds.</p>
<progress id="p"></progress><p id="why" role="alert"></p><noscript>{noscript}</noscript>
<script>
const token = "{token}", difficulty = {d}, verify = "{verify}", ret = {ret_json}, waitUrl = {wait_json};
function zeros(b) {{ let n = 0; for (const x of b) {{ if (x === 0) {{ n += 8; continue; }} return n + Math.clz32(x) - 24; }} return n; }}
function cannot(why) {{
  document.getElementById("p").remove();
  const p = document.getElementById("why");
  p.textContent = why + " ";
  if (waitUrl) {{ const a = document.createElement("a"); a.href = waitUrl; a.textContent = "Continue without it (after a short wait)"; p.appendChild(a); }}
}}
(async () => {{
  if (!(window.crypto && crypto.subtle)) return cannot("This browser cannot run the check here (it needs Web Crypto, which browsers offer only over HTTPS).");
  const enc = new TextEncoder();
  for (let c = 0; ; c++) {{
    const d = new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(token + ":" + c)));
    if (zeros(d) >= difficulty) {{
      const f = document.createElement("form"); f.method = "POST"; f.action = verify;
      for (const [k, v] of [["token", token], ["counter", String(c)], ["return", ret]]) {{ const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i); }}
      document.body.appendChild(f); f.submit(); return;
    }}
  }}
}})().catch((e) => cannot("The check could not run (" + String(e && e.message || e).slice(0, 100) + ")."));
</script></body></html>"#
    );
    with_body(403, "text/html; charset=utf-8", &page)
}

/// The Turnstile variant of the challenge (when configured): Cloudflare's
/// widget, whose token the worker checks with siteverify (`prefix`: `INTEL_PREFIX`).
/// `label` goes back with the answer (sealed: `enforce::seal_label`; only the metrics read it).
fn turnstile(accept: &str, prefix: &str, site_key: &str, return_to: &str, label: &str) -> Response {
    let verify = format!("{prefix}/challenge/verify");
    let ret = if return_to.starts_with('/') && !return_to.starts_with("//") { return_to } else { "/" };
    if !wants_html(accept) {
        let body = serde_json::json!({
            "error": "challenge_required",
            "message": "solve the Turnstile challenge, then POST cf-turnstile-response to `verify`",
            "challenge": {"type": "turnstile", "siteKey": site_key, "verify": verify, "why": label},
        });
        return with_body(403, "application/json; charset=utf-8", &body.to_string());
    }
    let esc = |s: &str| s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
    let page = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Checking your browser</title>
<script src="https://challenges.cloudflare.com/turnstile/v0/api.js" async defer></script></head>
<body style="font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem">
<h1>One moment…</h1><form method="POST" action="{verify}"><input type="hidden" name="return" value="{ret}"><input type="hidden" name="why" value="{why}">
<div class="cf-turnstile" data-sitekey="{site_key}" data-callback="edgeintelDone"></div><noscript><p>This check needs JavaScript.</p></noscript></form>
<script>function edgeintelDone() {{ document.forms[0].submit(); }}</script></body></html>"#,
        verify = esc(&verify),
        ret = esc(ret),
        site_key = esc(site_key),
        why = esc(label),
    );
    with_body(403, "text/html; charset=utf-8", &page)
}

fn with_body(status: u16, content_type: &str, body: &str) -> Response {
    let init = ResponseInit::new();
    init.set_status(status);
    if let Ok(headers) = web_sys::Headers::new() {
        let _ = headers.set("content-type", content_type);
        let _ = headers.set("cache-control", "no-store");
        init.set_headers(headers.as_ref());
    }
    Response::new_with_opt_str_and_init(Some(body), &init)
        .or_else(|_| Response::new())
        .unwrap_or_else(|_| unreachable_response())
}

/// `new Response()` with no arguments cannot throw; this keeps the type checker
/// satisfied without a panic path.
fn unreachable_response() -> Response {
    wasm_bindgen::JsCast::unchecked_into(js_sys::Object::new())
}

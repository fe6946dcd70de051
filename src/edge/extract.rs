//! Phase 1, extract: the client IP, the `cf` facts and the request facts,
//! read from the runtime's Request. Every read is fallible and defaults to
//! "unknown"; nothing here can fail a request.

use std::net::IpAddr;

use serde_json::Value;
use wasm_bindgen::JsValue;
use web_sys::Request;

use crate::intel::facts::{CfFacts, RequestFacts};
use crate::intel::ip::parse_client_ip;

/// Header values longer than this are not read (real UAs are < 1 KB).
const MAX_HEADER_CHARS: usize = 2048;

/// The client IP (`X-Real-IP` only with `trust_x_real_ip`: `TRUST_X_REAL_IP`),
/// `request.cf` and the request's facts.
pub fn facts(req: &Request, trust_x_real_ip: bool) -> (Option<IpAddr>, CfFacts, RequestFacts) {
    let ip = header(req, "cf-connecting-ip")
        .and_then(|v| parse_client_ip(&v))
        .or_else(|| trust_x_real_ip.then(|| header(req, "x-real-ip")).flatten().and_then(|v| parse_client_ip(&v)));
    let cf = CfFacts::from_json(&cf_json(req));
    let request = RequestFacts {
        method: req.method(),
        path: path_and_query(req),
        user_agent: header(req, "user-agent"),
        accept: header(req, "accept"),
        accept_language: header(req, "accept-language"),
        header_names: header_names(req),
    };
    (ip, cf, request)
}

/// `request.cf` as JSON, `Null` when absent or unreadable. Read as a plain
/// object on purpose: workers-rs' `Cf` getters panic on missing fields.
fn cf_json(req: &Request) -> Value {
    let raw = js_sys::Reflect::get(req.as_ref(), &JsValue::from_str("cf")).unwrap_or(JsValue::UNDEFINED);
    if raw.is_undefined() || raw.is_null() {
        return Value::Null;
    }
    // One JSON.stringify in the runtime and one serde_json parse, rather than
    // serde-wasm-bindgen's JS call per field (and its own code in the wasm).
    js_sys::JSON::stringify(&raw)
        .ok()
        .and_then(|s| s.as_string())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

/// The request's header names, at most `fingerprint::MAX_NAMES` of them
/// (the runtime lists them sorted and lower case). A failure reads as none.
fn header_names(req: &Request) -> Vec<String> {
    // Iterated as [name, value] entries, as `forward::build` does.
    let Ok(Some(entries)) = js_sys::try_iter(req.headers().as_ref()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| js_sys::Array::from(&entry).get(0).as_string())
        .filter(|k| k.len() <= 128)
        .take(crate::intel::fingerprint::MAX_NAMES)
        .collect()
}

pub fn header(req: &Request, name: &str) -> Option<String> {
    header_up_to(req, name, MAX_HEADER_CHARS)
}

/// The `Cookie` header, up to the platform's header size: browsers' cookie
/// headers often exceed `MAX_HEADER_CHARS`, and ours may come last. Only our
/// own cookies' values are bounded (`secrets::cookie`).
pub fn cookie_header(req: &Request) -> Option<String> {
    header_up_to(req, "cookie", crate::intel::secrets::MAX_COOKIE_HEADER_BYTES)
}

fn header_up_to(req: &Request, name: &str, max: usize) -> Option<String> {
    req.headers().get(name).ok().flatten().filter(|v| v.len() <= max)
}

fn parsed_url(req: &Request) -> Option<web_sys::Url> {
    web_sys::Url::new(&req.url()).ok()
}

/// The URL path (percent-encoded as sent).
pub fn path(req: &Request) -> String {
    parsed_url(req).map(|u| u.pathname()).unwrap_or_else(|| "/".to_string())
}

/// Path and query, as the origin will see them.
pub fn path_and_query(req: &Request) -> String {
    parsed_url(req).map(|u| format!("{}{}", u.pathname(), u.search())).unwrap_or_else(|| "/".to_string())
}

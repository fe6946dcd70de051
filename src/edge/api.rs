//! Routes under the reserved prefix (`INTEL_PREFIX`, default `/_intel`).
//! Nothing here is ever forwarded to the origin. Only liveness exists without
//! the admin token, and it carries no data about any IP.

use serde_json::json;
use web_sys::{Request, Response};

use crate::config::Config;
use crate::error::ApiError;

use super::respond;

/// True when `path` is the prefix itself or below it.
pub fn owns(config: &Config, path: &str) -> bool {
    let p = config.intel_prefix.as_str();
    path == p
        || path
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('/'))
}

pub async fn route(req: &Request, config: &Config) -> Response {
    let path = super::extract::path(req);
    let rest = path.get(config.intel_prefix.len()..).unwrap_or("");
    let method = req.method();
    match rest {
        "/health/intelligence" => match method.as_str() {
            "GET" | "HEAD" => respond::json(
                200,
                &json!({
                    "status": "ok",
                    "service": "edgeintel",
                    "version": env!("CARGO_PKG_VERSION"),
                    "timestamp": iso_now(),
                }),
            ),
            _ => respond::error(&ApiError::method_not_allowed("GET, HEAD")),
        },
        _ => respond::error(&ApiError::not_found(format!(
            "no route for {method} {}",
            config.intel_prefix.clone() + rest
        ))),
    }
}

fn iso_now() -> String {
    String::from(
        js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(crate::clock::now_ms())).to_iso_string(),
    )
}

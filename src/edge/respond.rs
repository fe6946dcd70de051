//! Responses the Worker makes itself (API answers and errors), in one place.
//! Building a Response can only fail on invalid header names/values, which
//! ours never are; the fallbacks keep that path panic-free anyway.

use serde::Serialize;
use web_sys::{Response, ResponseInit};

use crate::config::ConfigError;
use crate::error::ApiError;

use super::forward::OriginError;

pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_string());
    with_body(status, "application/json; charset=utf-8", &text)
}

pub fn error(e: &ApiError) -> Response {
    with_body(e.status, "application/json; charset=utf-8", &e.body())
}

/// Every request gets this while the configuration is invalid: the operator
/// sees exactly which variable to fix (values of secrets are never included).
pub fn config_error(e: &ConfigError) -> Response {
    worker::console_error!("edgeintel: {e}");
    error(&ApiError::new(500, "config_invalid", format!("edgeintel configuration error: {e}")))
}

/// The origin could not be reached: a short 502, the cause only in the log.
pub fn origin_unreachable(e: &OriginError) -> Response {
    worker::console_error!("edgeintel: origin unreachable: {}", e.0);
    with_body(502, "text/plain; charset=utf-8", "502 Bad Gateway: the origin server could not be reached.\n")
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

//! Phase 6, forward: copy the request without any client-sent header in our
//! namespace, add ours, send it to the origin and hand back its response
//! object untouched (status, headers, body stream, redirects as they are).

use std::time::Duration;

use futures::future::{select, Either};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, Request, RequestInit, RequestRedirect, Response};
use worker::Delay;

use crate::config::Origin;
use crate::error::Error;
use crate::intel::headers::is_reserved;
use crate::intel::stepup::HEADER as STEP_UP_HEADER;

use super::extract::path_and_query;

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// The runtime's global `fetch`, called with a Request and no init so no
    /// `cf` options are added (workers-rs' RequestInit always sets some).
    #[wasm_bindgen(js_name = fetch, catch)]
    fn global_fetch(req: &Request) -> Result<js_sys::Promise, JsValue>;
}

/// Sends `req` with the runtime's global `fetch` (no `cf` options) and waits
/// for its response; for the Worker's own subrequests (Turnstile).
pub(crate) async fn subrequest(req: &Request) -> Result<Response, JsValue> {
    let promise = global_fetch(req)?;
    JsFuture::from(promise).await?.dyn_into::<Response>()
}

/// Sends the request to the origin. The timeout covers the wait for the
/// response headers only: once they arrive, the body streams to the client
/// for as long as it takes (large downloads are not cut off). No response
/// is an origin `Error`: 502 (refused, reset, DNS, TLS) or 504 (no headers
/// within `ORIGIN_TIMEOUT_MS`), the cause for the log only.
pub async fn send(req: &Request, origin: &Origin, ours: &[(&'static str, String)]) -> Result<Response, Error> {
    let unreachable = Error::origin_unreachable;
    let controller = AbortController::new().map_err(|e| unreachable(format!("no AbortController: {e:?}")))?;
    let out = build(req, origin, ours, &controller)
        .map_err(|e| unreachable(crate::log::without_urls(&format!("could not build the origin request: {e:?}"))))?;
    let promise = global_fetch(&out).map_err(|e| unreachable(crate::log::without_urls(&format!("{e:?}"))))?;
    let limit = Delay::from(Duration::from_millis(u64::from(origin.timeout_ms)));
    match select(JsFuture::from(promise), limit).await {
        Either::Left((Ok(res), _)) => {
            res.dyn_into::<Response>().map_err(|_| unreachable("fetch did not return a Response".to_string()))
        }
        Either::Left((Err(e), _)) => Err(unreachable(describe(&e))),
        Either::Right(_) => {
            // Stop the origin connection too, not only our wait for it.
            controller.abort();
            Err(Error::origin_timeout(origin.timeout_ms))
        }
    }
}

fn build(
    req: &Request,
    origin: &Origin,
    ours: &[(&'static str, String)],
    controller: &AbortController,
) -> Result<Request, JsValue> {
    let headers = Headers::new()?;
    let entries = js_sys::try_iter(req.headers().as_ref())?.into_iter().flatten();
    for entry in entries {
        let pair = js_sys::Array::from(&entry?);
        let (Some(name), Some(value)) = (pair.get(0).as_string(), pair.get(1).as_string()) else {
            continue;
        };
        if !is_reserved(&name) {
            headers.append(&name, &value)?;
        }
    }
    for (name, value) in ours {
        headers.set(name, value)?;
    }
    let init = RequestInit::new();
    init.set_method(&req.method());
    init.set_headers(headers.as_ref());
    // The client sees the origin's redirects; the Worker does not follow them.
    init.set_redirect(RequestRedirect::Manual);
    init.set_signal(Some(&controller.signal()));
    if let Some(body) = req.body() {
        init.set_body(body.as_ref());
    }
    Request::new_with_str_and_init(&target_url(req, origin), &init)
}

/// The URL the origin receives (what the header signature covers).
pub fn target_url(req: &Request, origin: &Origin) -> String {
    match &origin.url {
        Some(url) => format!("{}{}", url.as_str().trim_end_matches('/'), path_and_query(req)),
        None => req.url(),
    }
}

/// The origin's response as the client gets it: without `X-Intel-Step-Up`
/// (meant for edgeintel alone: `edge::stepup`) and with `cookie` added as a
/// `Set-Cookie`. A fetched response's headers are immutable, so status,
/// status text, headers and body stream are copied, only when something
/// changes. On any failure the response goes back as it came.
pub fn finish(res: Response, cookie: Option<&str>) -> Response {
    let step_up = res.headers().has(STEP_UP_HEADER).unwrap_or(false);
    if res.status() == 101 || (!step_up && cookie.is_none()) {
        return res; // a WebSocket upgrade cannot be rebuilt
    }
    let copy = || -> Result<Response, JsValue> {
        let headers = Headers::new_with_headers(res.headers().as_ref())?;
        headers.delete(STEP_UP_HEADER)?;
        if let Some(c) = cookie {
            headers.append("set-cookie", c)?;
        }
        let init = web_sys::ResponseInit::new();
        init.set_status(res.status());
        init.set_status_text(&res.status_text());
        init.set_headers(headers.as_ref());
        Response::new_with_opt_readable_stream_and_init(res.body().as_ref(), &init)
    };
    copy().unwrap_or(res)
}

fn describe(e: &JsValue) -> String {
    let text = e
        .dyn_ref::<js_sys::Error>()
        .map(|err| String::from(err.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "fetch failed".to_string());
    crate::log::without_urls(&text)
}

//! Small platform helpers shared by the request path and the objects:
//! the cached configuration, reaching an object (`object_stub`: every
//! Durable Object id is made there, in `DATA_JURISDICTION`), calling an
//! object with a JSON op, JSON responses for object replies. Only compiled
//! for wasm32.

use std::cell::RefCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, ObjectNamespace, Request, Response, Stub};

use crate::config::{Config, ConfigError};
use crate::error::Error;

type Parsed = Result<Rc<Config>, ConfigError>;

thread_local! {
    /// Vars cannot change within an isolate, so they are parsed once.
    static CONFIG: RefCell<Option<Rc<Parsed>>> = const { RefCell::new(None) };
}

/// The validated configuration, parsed on first use in this isolate.
pub fn config(env: &Env) -> Result<Rc<Config>, ConfigError> {
    let cached = CONFIG.with(|c| c.borrow().clone());
    let parsed = match cached {
        Some(p) => p,
        None => {
            let p = Rc::new(Config::from_vars(|k| var(env, k)).map(Rc::new));
            CONFIG.with(|c| *c.borrow_mut() = Some(p.clone()));
            p
        }
    };
    parsed.as_ref().clone()
}

/// A `[vars]` value or a secret (both are plain strings to the Worker).
fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string()).or_else(|| env.secret(name).ok().map(|v| v.to_string()))
}

thread_local! {
    /// Durable Object calls made by this isolate (reported by the analytics
    /// API as `isolate.objectCalls`, used by the benchmarks).
    static OBJECT_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static REQUESTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Object calls per binding (PROFILES, VISITORS, HUB), for the cost benchmark.
    static CALLS_BY_BINDING: std::cell::RefCell<Vec<(String, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub fn count_request() {
    REQUESTS.with(|c| c.set(c.get() + 1));
}

/// (client requests, object calls) seen by this isolate since it started.
pub fn isolate_counts() -> (u64, u64) {
    (REQUESTS.with(|c| c.get()), OBJECT_CALLS.with(|c| c.get()))
}

/// Object calls per binding seen by this isolate since it started.
pub fn calls_by_binding() -> Vec<(String, u64)> {
    CALLS_BY_BINDING.with(|c| c.borrow().clone())
}

fn count_call(binding: &str) {
    OBJECT_CALLS.with(|c| c.set(c.get() + 1));
    CALLS_BY_BINDING.with(|c| {
        let mut c = c.borrow_mut();
        match c.iter_mut().find(|(b, _)| b == binding) {
            Some((_, n)) => *n += 1,
            None => c.push((binding.to_string(), 1)),
        }
    });
}

/// A runtime error under a platform call (an object's stub, KV, storage):
/// a platform `Error` whose text is kept for the log only.
impl From<worker::Error> for Error {
    fn from(e: worker::Error) -> Self {
        Error::platform(e.to_string())
    }
}

/// Sends `op` as JSON to the object named `name` of binding `binding` and
/// returns its status and JSON answer; a failed call or a 5xx answer is a
/// platform `Error` (503 `storage_unavailable` unless the caller renames it
/// with `Error::public`). Only the (de)serialization is generic;
/// the call itself is one function, not one async state machine per type pair
/// in the wasm.
pub async fn call_object<Op: Serialize, T: DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    op: &Op,
) -> Result<(u16, Option<T>), Error> {
    let body = serde_json::to_string(op).map_err(|e| Error::platform(e.to_string()))?;
    let (status, text) = call_object_text(env, binding, name, &body).await?;
    Ok((status, text.and_then(|t| serde_json::from_str(&t).ok())))
}

/// The stub of the object named `name` of binding `binding`: the one place
/// an object id is made (`call_object`, the stream routes, and any new
/// namespace), so that with `DATA_JURISDICTION` every object is created and
/// found in that jurisdiction. Changing the setting changes every id: the
/// objects made before are not found again (docs/DEPLOY.md).
pub fn object_stub(env: &Env, binding: &str, name: &str) -> Result<Stub, Error> {
    let config = config(env).map_err(|e| Error::config(&e))?;
    let ns = env.durable_object(binding)?;
    let ns = match config.jurisdiction {
        None => ns,
        Some(j) => in_jurisdiction(&ns, j.as_str())?,
    };
    Ok(ns.get_by_name(name)?)
}

/// `namespace.jurisdiction(j)`: workers-rs 0.8.7 has no binding for it (only
/// `unique_id_with_jurisdiction`, and our objects are named), so it is called
/// on the JS object. A runtime without it, or refusing it, is an error:
/// never an object quietly made outside the jurisdiction.
fn in_jurisdiction(ns: &ObjectNamespace, j: &str) -> Result<ObjectNamespace, Error> {
    let raw: &JsValue = ns.as_ref();
    let f = js_sys::Reflect::get(raw, &JsValue::from_str("jurisdiction"))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or_else(|| Error::platform("this runtime's Durable Object namespaces have no jurisdiction()"))?;
    let scoped = f.call1(raw, &JsValue::from_str(j)).map_err(|e| {
        let why = e.dyn_into::<js_sys::Error>().map_or_else(|e| format!("{e:?}"), |e| String::from(e.message()));
        Error::platform(format!("jurisdiction(\"{j}\") refused: {why}"))
    })?;
    Ok(ObjectNamespace::unchecked_from_js(scoped))
}

async fn call_object_text(env: &Env, binding: &str, name: &str, body: &str) -> Result<(u16, Option<String>), Error> {
    count_call(binding);
    let stub = object_stub(env, binding, name)?;
    let req = new_request("https://object/op", "POST", &[], Some(body))?;
    let mut res = stub.fetch_with_request(req).await?;
    let status = res.status_code();
    if status >= 500 {
        let text = res.text().await.unwrap_or_default();
        return Err(Error::platform(format!("{binding} object answered {status}: {text}")));
    }
    let text = if status == 204 { None } else { res.text().await.ok() };
    Ok((status, text))
}

/// A Request built with the runtime's own constructor: workers-rs'
/// `RequestInit` always carries a `cf` options struct whose serializer (image
/// resizing and more) adds ~10 KB to the wasm, and no internal request of ours
/// needs it.
pub fn new_request(url: &str, method: &str, headers: &[(&str, &str)], body: Option<&str>) -> worker::Result<Request> {
    let h = web_sys::Headers::new()?;
    for (name, value) in headers {
        h.set(name, value)?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(h.as_ref());
    if let Some(b) = body {
        init.set_body(&JsValue::from_str(b));
    }
    Ok(Request::from(web_sys::Request::new_with_str_and_init(url, &init)?))
}

/// A value from Durable Object storage or a socket attachment, taken as it
/// is. This version writes state as JSON text; versions before 2026-11-27
/// wrote structured values, which `json_text` turns into the same text, so
/// state written before an upgrade is still read.
#[derive(serde::Deserialize)]
pub struct StoredValue(#[serde(with = "serde_wasm_bindgen::preserve")] pub JsValue);

impl StoredValue {
    /// The value parsed as `T`; `None` when it does not parse.
    pub fn parse<T: DeserializeOwned>(&self) -> Option<T> {
        let text = self.0.as_string().or_else(|| js_sys::JSON::stringify(&self.0).ok().and_then(|s| s.as_string()))?;
        serde_json::from_str(&text).ok()
    }
}

/// `value` as JSON text, for storage, attachments and replies.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> worker::Result<String> {
    serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))
}

/// Reads an object's JSON operation. The body is read as text and parsed by
/// serde_json: workers-rs' `Request::json` goes through a JS object and
/// serde-wasm-bindgen, one JS call per field, and compiles a second
/// deserializer for every message type into the wasm.
pub async fn read_op<T: DeserializeOwned>(req: &mut Request) -> worker::Result<T> {
    let text = req.text().await?;
    serde_json::from_str(&text).map_err(|e| worker::Error::RustError(e.to_string()))
}

/// An object's JSON reply.
pub fn reply<T: Serialize>(status: u16, body: &T) -> worker::Result<Response> {
    reply_text(status, to_json(body)?)
}

fn reply_text(status: u16, text: String) -> worker::Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::ok(text)?.with_headers(headers).with_status(status))
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// The runtime's global `fetch`, called with a Request and no init (no
    /// `cf` options: see `new_request`).
    #[wasm_bindgen(js_name = fetch, catch)]
    fn global_fetch(req: &web_sys::Request) -> Result<js_sys::Promise, JsValue>;
}

/// POSTs `body` to `url` and returns the status, waiting at most
/// `timeout_ms` for the response headers (then the request is aborted, not
/// only our wait). Redirects are not followed (a 3xx is the answer). The
/// response body is cancelled unread: nothing of it is kept, however large.
/// Errors are the runtime's words without any URL (a URL's path may be a secret).
pub async fn post_bounded(
    url: &str,
    headers: &[(&str, String)],
    body: &str,
    timeout_ms: u64,
) -> std::result::Result<u16, String> {
    use futures::future::{select, Either};
    let clean = |e: JsValue| {
        let text = e
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| e.as_string())
            .unwrap_or_else(|| "the request failed".to_string());
        crate::log::without_urls(&text)
    };
    let controller = web_sys::AbortController::new().map_err(clean)?;
    let h = web_sys::Headers::new().map_err(clean)?;
    for (name, value) in headers {
        h.set(name, value).map_err(clean)?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_headers(h.as_ref());
    init.set_body(&JsValue::from_str(body));
    init.set_redirect(web_sys::RequestRedirect::Manual);
    init.set_signal(Some(&controller.signal()));
    let req = web_sys::Request::new_with_str_and_init(url, &init).map_err(clean)?;
    let promise = global_fetch(&req).map_err(clean)?;
    let limit = worker::Delay::from(std::time::Duration::from_millis(timeout_ms));
    match select(wasm_bindgen_futures::JsFuture::from(promise), limit).await {
        Either::Left((Ok(res), _)) => {
            let res: web_sys::Response = res.dyn_into().map_err(|_| "fetch did not return a Response".to_string())?;
            if let Some(stream) = res.body() {
                let _ = stream.cancel();
            }
            Ok(res.status())
        }
        Either::Left((Err(e), _)) => Err(clean(e)),
        Either::Right(_) => {
            controller.abort();
            Err(format!("no answer within {timeout_ms} ms"))
        }
    }
}

/// GETs `url` and reads at most `max_bytes` of its body, all within
/// `timeout_ms` (then the request is aborted). Redirects are not followed (a
/// 3xx is the answer). For the Cron Trigger's refresh of crawler ranges.
/// Errors are the runtime's words without any URL.
pub async fn get_bounded(url: &str, timeout_ms: u64, max_bytes: usize) -> std::result::Result<(u16, Vec<u8>), String> {
    use futures::future::{select, Either};
    let clean = |e: JsValue| {
        let text = e
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| e.as_string())
            .unwrap_or_else(|| "the request failed".to_string());
        crate::log::without_urls(&text)
    };
    let controller = web_sys::AbortController::new().map_err(clean)?;
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_redirect(web_sys::RequestRedirect::Manual);
    init.set_signal(Some(&controller.signal()));
    let req = web_sys::Request::new_with_str_and_init(url, &init).map_err(clean)?;
    let promise = global_fetch(&req).map_err(clean)?;
    let fetch_and_read = async move {
        let res = wasm_bindgen_futures::JsFuture::from(promise).await.map_err(clean)?;
        let res: web_sys::Response = res.dyn_into().map_err(|_| "fetch did not return a Response".to_string())?;
        let status = res.status();
        let Some(stream) = res.body() else { return Ok((status, Vec::new())) };
        match crate::edge::body::read_stream(&stream, max_bytes).await {
            Ok(bytes) => Ok((status, bytes)),
            Err(crate::edge::body::StreamError::TooLarge) => Err(format!("body larger than {max_bytes} bytes")),
            Err(crate::edge::body::StreamError::Unreadable) => Err("body unreadable".to_string()),
        }
    };
    let limit = worker::Delay::from(std::time::Duration::from_millis(timeout_ms));
    match select(Box::pin(fetch_and_read), limit).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => {
            controller.abort();
            Err(format!("no answer within {timeout_ms} ms"))
        }
    }
}

//! What every handler shares: the call it gets (`Call`), the handler type
//! of the route table, and the small helpers more than one resource uses
//! (reading a JSON body, a subject from the path, a file of the build, the
//! timestamp format). Imports no resource file; of the API's helpers only
//! `routing` (the path parameters).

use futures::future::LocalBoxFuture;
use serde_json::Value;
use web_sys::{Request, Response};
use worker::Env;

use crate::bindings;
use crate::config::{Config, Secrets};
use crate::error::{ApiError, Error};
use crate::intel::ip::{identify, parse_subject, Identity, SubjectKey};
use crate::intel::ticket::Ticket;

use super::routing::Params;
use crate::edge::body::read_limited;
use crate::edge::extract::header;
use crate::edge::Io;

/// API bodies over this get 413 (docs/api.md).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One request to one route, as its handler gets it. Authentication (the
/// row's `Auth`) and the method are checked before the handler runs.
pub struct Call<'a> {
    pub req: &'a Request,
    /// The bindings, the request's context and its log: a handler notes
    /// what failed without failing the call (an error it returns is noted
    /// by `route`).
    pub io: Io<'a>,
    /// The whole configuration: the handlers between them read most of its
    /// parts, and hand their callees only the parts they use.
    pub config: &'a Config,
    /// The path after the prefix, as sent (percent-encoded).
    pub path: &'a str,
    /// What the row's pattern took from `path`.
    pub params: Params<'a>,
    /// On a stream row, the verified `?ticket=` the caller came with (to be
    /// spent by the handler); `None` when the token came as a header or subprotocol.
    pub ticket: Option<Ticket>,
}

impl<'a> Call<'a> {
    /// A parameter of the row's pattern (`{name}` or `{*name}`).
    pub fn param(&self, name: &str) -> &'a str {
        self.params.get(name)
    }

    /// The query string, without `?` (empty when none).
    pub fn query(&self) -> String {
        url::Url::parse(&self.req.url()).ok().and_then(|u| u.query().map(String::from)).unwrap_or_default()
    }
}

/// What a handler returns: its response, or the error `respond::error` turns into one.
pub type Reply<'a> = LocalBoxFuture<'a, Result<Response, ApiError>>;

/// The handler column of the route table.
pub type Handler = for<'a> fn(Call<'a>) -> Reply<'a>;

/// A query parameter of `query` (with or without its `?`).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Reads a JSON body (415 unless JSON, 413 over 1 MiB, 400 malformed).
pub async fn read_json_body(req: &Request) -> Result<Value, ApiError> {
    let content_type = header(req, "content-type").unwrap_or_default().to_ascii_lowercase();
    if !content_type.starts_with("application/json") {
        return Err(ApiError::new(415, "unsupported_media_type", "send application/json"));
    }
    let bytes = read_limited(req, MAX_BODY_BYTES).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::new(400, "invalid_utf8", "the body is not UTF-8"))?;
    serde_json::from_str(text).map_err(|e| ApiError::new(400, "malformed_json", format!("the body is not JSON: {e}")))
}

fn subject_from_path(raw: &str) -> Result<SubjectKey, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    parse_subject(&decoded).ok_or_else(|| {
        let shown: String = decoded.chars().take(64).collect();
        ApiError::new(400, "invalid_ip", format!("`{shown}` is not an IPv4/IPv6 address or an IPv6 /64 prefix"))
    })
}

/// The storage key for a queried IP (its keyed hash with `IP_HASH_KEY`).
pub fn key_from_path(raw: &str, secrets: &Secrets) -> Result<Identity, ApiError> {
    Ok(identify(&subject_from_path(raw)?, secrets.ip_hash_key.as_deref()))
}

/// GETs `path` from the `ASSETS` binding (the request is built without
/// workers-rs' `RequestInit`: see platform::new_request).
pub async fn fetch_asset(env: &Env, path: &str) -> Result<worker::Response, ApiError> {
    let failed = |e: worker::Error| {
        Error::new(500, "internal", "the dashboard's files could not be read").with_detail(format!("assets: {e}"))
    };
    let assets = env
        .assets(bindings::ASSETS)
        .map_err(|_| ApiError::not_found("the dashboard is not deployed (no ASSETS binding)"))?;
    let req = crate::platform::new_request(&format!("https://assets.local{path}"), "GET", &[], None).map_err(failed)?;
    assets.fetch_request(req).await.map_err(failed)
}

/// ISO 8601 in UTC with milliseconds, as JavaScript writes it (the pure one).
pub use crate::intel::protocol::iso;

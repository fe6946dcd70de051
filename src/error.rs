//! The one error type of the Worker and the objects, classified by where the
//! failure comes from (pingora's error sources): the client, the origin, the
//! platform (a Durable Object, KV, the runtime) or the configuration. An
//! `Error` knows its status, its public code and message, whether the request
//! path fails open on it, and keeps the cause (`detail`) for the log only:
//! the detail is never sent to a client.
//!
//! `Error::parts` is the one side-effect-free conversion into a response
//! (status, headers, body), which `edge::respond::error` builds; nothing here
//! logs (the per-request log line is `crate::log`). Pure: native tests.

use std::fmt;

use serde::Serialize;

use crate::config::ConfigError;

/// Where a failure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Bad input: 400, 401, 403, 404, 405, 413, 415, 429. Not worth a log line.
    Client,
    /// The origin could not be reached (502) or sent no headers in time (504).
    Origin,
    /// A Durable Object, KV or the runtime failed or was late: 503 (500 for
    /// what cannot happen). The request path goes on without it.
    Platform,
    /// The configuration does not parse: 500 `config_invalid` on every request.
    Config,
}

/// How the body is written: the API's JSON shape, or the one plain-text line
/// the request path answers for the site (502, 504, a fail-closed 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub source: Source,
    pub status: u16,
    /// Stable machine-readable code, e.g. `not_found`, `config_invalid`
    /// (the JSON body's `error`).
    pub code: &'static str,
    /// Human-readable explanation, sent to the client.
    pub message: String,
    /// The cause, for the log only (never sent): an object's or KV's error
    /// text, an origin's fetch error. Never a secret, a token or a body.
    pub detail: Option<String>,
    /// The cause was a budget running out rather than a failure.
    pub timed_out: bool,
    pub form: Form,
    /// Seconds for a `Retry-After` header (429, a fail-closed 503).
    pub retry_after_s: Option<u32>,
    /// The methods the resource has, for the `Allow` header of a 405 (RFC
    /// 9110); empty on every other error.
    pub allow: Vec<&'static str>,
}

/// The API's name for it (handlers return `Result<Response, ApiError>`).
pub type ApiError = Error;

/// What a response is made of; `edge::respond::error` builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    pub status: u16,
    /// (name, value), lower-case names, `content-type` first.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

#[derive(Serialize)]
struct Wire<'a> {
    error: &'a str,
    message: &'a str,
}

impl Error {
    /// An error with a public code and message, classified by its status:
    /// 4xx client, 502/504 origin, 500 `config_invalid` config, any other
    /// 5xx platform.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Error {
        let source = match (status, code) {
            (400..=499, _) => Source::Client,
            (502 | 504, _) => Source::Origin,
            (_, "config_invalid") => Source::Config,
            _ => Source::Platform,
        };
        Error {
            source,
            status,
            code,
            message: message.into(),
            detail: None,
            timed_out: false,
            form: Form::Json,
            retry_after_s: None,
            allow: Vec::new(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(404, "not_found", message)
    }

    /// 405 with the methods the resource has (in the route table's order):
    /// the `Allow` header is made from `allow`, the message only repeats them.
    pub fn method_not_allowed(allow: Vec<&'static str>) -> Error {
        let mut e = Error::new(405, "method_not_allowed", format!("allowed: {}", allow.join(", ")));
        e.allow = allow;
        e
    }

    /// A Durable Object (or the runtime under one) failed: 503
    /// `storage_unavailable`, the cause kept for the log. Callers that name
    /// another store say so with `public`.
    pub fn platform(detail: impl Into<String>) -> Error {
        Error::new(503, "storage_unavailable", "the profile store did not answer; retry").with_detail(detail)
    }

    /// A platform call that missed its budget (a consult, a hub shard).
    pub fn late(detail: impl Into<String>) -> Error {
        Error { timed_out: true, ..Error::platform(detail) }
    }

    /// The origin could not be reached (refused, reset, DNS, TLS): 502.
    pub fn origin_unreachable(detail: impl Into<String>) -> Error {
        Error {
            form: Form::Text,
            ..Error::new(502, "origin_unreachable", "502 Bad Gateway: the origin server could not be reached.\n")
        }
        .with_detail(detail)
    }

    /// The origin sent no response headers within `ORIGIN_TIMEOUT_MS`: 504.
    pub fn origin_timeout(ms: u32) -> Error {
        Error {
            form: Form::Text,
            timed_out: true,
            ..Error::new(504, "origin_timeout", "504 Gateway Timeout: the origin server did not answer in time.\n")
        }
        .with_detail(format!("origin sent no response within {ms} ms"))
    }

    /// Every request gets this while the configuration is invalid: the
    /// operator sees exactly which variable to fix (values of secrets are
    /// never in a `ConfigError`).
    pub fn config(e: &ConfigError) -> Error {
        Error::new(500, "config_invalid", format!("edgeintel configuration error: {e}")).with_detail(e.to_string())
    }

    /// FAIL_MODE=closed and the profile was not consulted: 503, retry soon.
    pub fn fail_closed() -> Error {
        Error {
            form: Form::Text,
            retry_after_s: Some(5),
            ..Error::new(503, "fail_closed", "503 Service Unavailable: please retry in a moment.\n")
        }
    }

    /// The same error with the cause for the log.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Error {
        self.detail = Some(detail.into());
        self
    }

    /// The same failure under another public code and message (e.g. the
    /// analytics hub rather than the profile store); source and detail stay.
    pub fn public(mut self, code: &'static str, message: impl Into<String>) -> Error {
        self.code = code;
        self.message = message.into();
        self
    }

    /// Whether the request path goes on without what failed (degraded,
    /// request-only signals) rather than answering the error: a platform
    /// failure does (unless `FAIL_MODE=closed`); the origin's and the
    /// configuration's cannot be worked around, and a client's is the answer.
    pub fn fails_open(&self) -> bool {
        // `fail_closed` is the answer FAIL_MODE=closed gives: never worked around.
        self.source == Source::Platform && self.code != "fail_closed"
    }

    /// Whether it belongs in the log: everything but a client's mistake.
    pub fn noteworthy(&self) -> bool {
        self.source != Source::Client
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(&Wire { error: self.code, message: &self.message })
            .unwrap_or_else(|_| r#"{"error":"internal","message":""}"#.to_string())
    }

    /// The response, as data: no side effect, no log.
    pub fn parts(&self) -> Parts {
        let (content_type, body) = match self.form {
            Form::Json => (JSON, self.body()),
            Form::Text => (TEXT, self.message.clone()),
        };
        let mut headers = vec![("content-type", content_type.to_string()), ("cache-control", "no-store".to_string())];
        // RFC 9110: a 405 carries `Allow` with the methods the resource has.
        if self.status == 405 && !self.allow.is_empty() {
            headers.push(("allow", self.allow.join(", ")));
        }
        if let Some(s) = self.retry_after_s {
            headers.push(("retry-after", s.to_string()));
        }
        Parts { status: self.status, headers, body }
    }
}

/// For the log: the code and the cause (or the public message when none).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{}: {d}", self.code),
            None => write!(f, "{}: {}", self.code, self.message.trim_end()),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let e = Error::not_found("no profile for \"1.2.3.4\"");
        assert_eq!(e.body(), r#"{"error":"not_found","message":"no profile for \"1.2.3.4\""}"#);
        assert_eq!(e.status, 404);
    }

    #[test]
    fn method_not_allowed_carries_its_methods() {
        let e = Error::method_not_allowed(vec!["GET", "HEAD"]);
        assert_eq!((e.status, e.allow.as_slice()), (405, ["GET", "HEAD"].as_slice()));
        assert_eq!(e.body(), r#"{"error":"method_not_allowed","message":"allowed: GET, HEAD"}"#);
    }

    /// (error, source, status, code, fails open, noteworthy)
    fn table() -> Vec<(Error, Source, u16, &'static str, bool, bool)> {
        let config = ConfigError { var: "BLOCK_AT", message: "expected 0-100".into() };
        vec![
            (Error::new(400, "malformed_json", "x"), Source::Client, 400, "malformed_json", false, false),
            (Error::new(401, "unauthorized", "x"), Source::Client, 401, "unauthorized", false, false),
            (Error::not_found("x"), Source::Client, 404, "not_found", false, false),
            (Error::method_not_allowed(vec!["GET"]), Source::Client, 405, "method_not_allowed", false, false),
            (Error::new(413, "batch_too_large", "x"), Source::Client, 413, "batch_too_large", false, false),
            (Error::new(429, "too_many_failures", "x"), Source::Client, 429, "too_many_failures", false, false),
            (Error::origin_unreachable("refused"), Source::Origin, 502, "origin_unreachable", false, true),
            (Error::origin_timeout(400), Source::Origin, 504, "origin_timeout", false, true),
            (Error::platform("object answered 500"), Source::Platform, 503, "storage_unavailable", true, true),
            (Error::late("no verdict within 50 ms"), Source::Platform, 503, "storage_unavailable", true, true),
            (Error::new(503, "kv_unavailable", "x"), Source::Platform, 503, "kv_unavailable", true, true),
            (Error::new(500, "internal", "x"), Source::Platform, 500, "internal", true, true),
            (Error::fail_closed(), Source::Platform, 503, "fail_closed", false, true),
            (Error::config(&config), Source::Config, 500, "config_invalid", false, true),
        ]
    }

    #[test]
    fn each_error_knows_its_source_status_code_and_failure_mode() {
        for (e, source, status, code, open, noteworthy) in table() {
            assert_eq!((e.source, e.status, e.code), (source, status, code), "{e}");
            assert_eq!(e.fails_open(), open, "{e}");
            assert_eq!(e.noteworthy(), noteworthy, "{e}");
            assert_eq!(e.parts().status, status, "{e}");
        }
    }

    #[test]
    fn the_detail_is_for_the_log_only() {
        let e =
            Error::platform("object answered 500: secret-looking internals").public("analytics_unavailable", "retry");
        let parts = e.parts();
        assert!(!parts.body.contains("internals"), "{}", parts.body);
        assert_eq!(parts.body, r#"{"error":"analytics_unavailable","message":"retry"}"#);
        assert_eq!(e.to_string(), "analytics_unavailable: object answered 500: secret-looking internals");
        assert_eq!(e.source, Source::Platform, "a new public code keeps the source");
        let o = Error::origin_unreachable("TypeError: fetch failed at 10.0.0.1");
        assert!(!o.parts().body.contains("10.0.0.1"));
    }

    #[test]
    fn json_errors_carry_allow_and_retry_after() {
        let p = Error::method_not_allowed(vec!["GET", "HEAD"]).parts();
        assert_eq!(
            p.headers,
            vec![
                ("content-type", JSON.to_string()),
                ("cache-control", "no-store".to_string()),
                ("allow", "GET, HEAD".to_string())
            ]
        );
        let mut limited = Error::new(429, "too_many_failures", "slow down");
        limited.retry_after_s = Some(60);
        assert_eq!(limited.parts().headers[2], ("retry-after", "60".to_string()));
        // `allow` only on a 405.
        let mut odd = Error::not_found("x");
        odd.allow = vec!["GET"];
        assert_eq!(odd.parts().headers.len(), 2);
    }

    /// The request path's own answers are one plain-text line, as before
    /// the taxonomy (tests/faults.test.mjs and request_path.test.mjs read them).
    #[test]
    fn the_request_paths_answers_are_plain_text() {
        let cases = [
            (Error::origin_unreachable("x"), 502, "502 Bad Gateway: the origin server could not be reached.\n", None),
            (Error::origin_timeout(400), 504, "504 Gateway Timeout: the origin server did not answer in time.\n", None),
            (Error::fail_closed(), 503, "503 Service Unavailable: please retry in a moment.\n", Some("5")),
        ];
        for (e, status, body, retry) in cases {
            let p = e.parts();
            assert_eq!((p.status, p.body.as_str()), (status, body));
            assert_eq!(p.headers[0], ("content-type", TEXT.to_string()));
            assert_eq!(p.headers[1], ("cache-control", "no-store".to_string()));
            assert_eq!(p.headers.get(2).map(|(_, v)| v.as_str()), retry);
        }
        assert_eq!(Error::origin_timeout(400).detail.as_deref(), Some("origin sent no response within 400 ms"));
    }

    #[test]
    fn a_config_error_names_the_variable() {
        let e = Error::config(&ConfigError { var: "BLOCK_AT", message: "expected 0-100".into() });
        assert_eq!(
            e.parts().body,
            r#"{"error":"config_invalid","message":"edgeintel configuration error: invalid BLOCK_AT: expected 0-100"}"#
        );
        assert_eq!(e.parts().headers[0].1, JSON);
    }
}

//! One log line per request (or per alarm), at the top level: `edge::handle`,
//! each Durable Object's `fetch` and the hub's `alarm` make a `Log` (the
//! profile and visitor alarms note nothing), the code below
//! them adds notes to it (a degraded consult, a failed object call, the
//! origin's failure), and when the `Log` goes out of scope it prints one
//! structured JSON line, and only if there is something to say: a plain
//! successful request prints nothing and costs nothing but an empty `Vec`.
//!
//! What runs after the response (`ctx.wait_until`: batch flushes, the status
//! follow-up, publishing) has no request to report to any more; it prints its
//! own line with `background`, in the same shape.
//!
//! Never put a secret, a token, a body or a raw IP in a note: subjects appear
//! only in their display form (masked with `IP_HASH_KEY`), API calls by their
//! route pattern, never their path. Details are cut at `MAX_DETAIL` bytes.
//! Pure apart from `emit`: native tests build the line.

use std::cell::RefCell;
use std::fmt::Display;

use serde::Serialize;

use crate::error::Error;

/// A note's detail is cut here (an object's error text can carry a stack).
const MAX_DETAIL: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The request was served as configured, without something (degraded).
    Warn,
    /// Something failed: an error answered, or work lost or postponed.
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Note {
    level: Level,
    what: &'static str,
    detail: String,
}

#[derive(Debug, Default, Serialize)]
struct Fields {
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    notes: Vec<Note>,
}

/// The log context of one request, one object call or one alarm. Shared by
/// reference (`&Log`) across the concurrent parts of the request.
#[derive(Debug)]
pub struct Log {
    /// Who: `edge`, `profile.fetch`, `hub.alarm`...
    at: &'static str,
    fields: RefCell<Fields>,
}

#[derive(Serialize)]
struct Line<'a> {
    edgeintel: &'a str,
    #[serde(flatten)]
    fields: &'a Fields,
}

impl Log {
    pub fn new(at: &'static str) -> Log {
        Log { at, fields: RefCell::new(Fields::default()) }
    }

    /// Something degraded the answer, which is still what was configured.
    pub fn warn(&self, what: &'static str, detail: impl Display) {
        self.note(Level::Warn, what, detail);
    }

    /// Something failed.
    pub fn error(&self, what: &'static str, detail: impl Display) {
        self.note(Level::Error, what, detail);
    }

    /// An error answered: noted unless it is the client's (a 404 or a 401
    /// is the answer, not news).
    pub fn failed(&self, what: &'static str, e: &Error) {
        if e.noteworthy() {
            self.note(Level::Error, what, e);
        }
    }

    fn note(&self, level: Level, what: &'static str, detail: impl Display) {
        let mut detail = detail.to_string();
        if detail.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push('…');
        }
        self.fields.borrow_mut().notes.push(Note { level, what, detail });
    }

    /// Whether the line will be printed (so the caller can skip gathering
    /// context for a line nobody will see).
    pub fn noteworthy(&self) -> bool {
        !self.fields.borrow().notes.is_empty()
    }

    /// The API route's pattern (never the path: it may carry an IP).
    pub fn route(&self, pattern: &'static str) {
        self.fields.borrow_mut().route = Some(pattern);
    }

    /// The subject in its display form (masked with `IP_HASH_KEY`).
    pub fn subject(&self, display: &str) {
        self.fields.borrow_mut().subject = Some(display.to_string());
    }

    pub fn status(&self, status: u16) {
        self.fields.borrow_mut().status = Some(status);
    }

    /// The line, if there is anything to say, with its level.
    pub fn line(&self) -> Option<(Level, String)> {
        let fields = self.fields.borrow();
        let level = fields.notes.iter().map(|n| n.level).max()?;
        let text = serde_json::to_string(&Line { edgeintel: self.at, fields: &fields }).ok()?;
        Some((level, text))
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Some((level, line)) = self.line() {
            emit(level, &line);
        }
    }
}

/// A line of its own for work after the response (`ctx.wait_until`), in the
/// same shape as a request's.
pub fn background(at: &'static str, what: &'static str, detail: impl Display) {
    Log::new(at).error(what, detail);
}

/// The only place that prints.
#[cfg(target_arch = "wasm32")]
fn emit(level: Level, line: &str) {
    match level {
        Level::Warn => worker::console_warn!("{line}"),
        Level::Error => worker::console_error!("{line}"),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn emit(_level: Level, _line: &str) {}

/// A runtime message with any URL in it replaced: a URL's path and query
/// may hold tokens, and log lines never carry a request's path.
pub fn without_urls(text: &str) -> String {
    text.split(' ').map(|w| if w.contains("://") { "<url>" } else { w }).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_runtime_messages_are_replaced() {
        let m = without_urls("Network connection lost: https://origin.example/reset?token=abc123 (after 3 tries)");
        assert_eq!(m, "Network connection lost: <url> (after 3 tries)");
        assert!(!m.contains("abc123"));
    }

    #[test]
    fn a_plain_request_says_nothing() {
        let log = Log::new("edge");
        log.status(200);
        log.route("/api/ip-intelligence/{ip}");
        assert_eq!(log.line(), None);
        assert!(!log.noteworthy());
        // A client's error is its answer, not news.
        log.failed("api", &Error::not_found("no profile"));
        assert_eq!(log.line(), None);
    }

    #[test]
    fn one_line_with_every_note() {
        let log = Log::new("edge");
        log.warn("consult", Error::late("no verdict within 50 ms"));
        log.failed("origin", &Error::origin_timeout(400));
        log.subject("198.51.100.140");
        log.status(504);
        let (level, line) = log.line().unwrap_or((Level::Warn, String::new()));
        assert_eq!(level, Level::Error);
        assert_eq!(
            line,
            r#"{"edgeintel":"edge","subject":"198.51.100.140","status":504,"notes":[{"level":"warn","what":"consult","detail":"storage_unavailable: no verdict within 50 ms"},{"level":"error","what":"origin","detail":"origin_timeout: origin sent no response within 400 ms"}]}"#
        );
    }

    #[test]
    fn a_degraded_request_is_a_warning_a_failed_one_an_error() {
        let degraded = Log::new("edge");
        degraded.warn("consult", Error::platform("object answered 500"));
        assert_eq!(degraded.line().map(|l| l.0), Some(Level::Warn));
        let failed = Log::new("api");
        failed.failed("api", &Error::config(&crate::config::ConfigError { var: "BLOCK_AT", message: "x".into() }));
        assert_eq!(failed.line().map(|l| l.0), Some(Level::Error));
    }

    #[test]
    fn details_are_bounded() {
        let log = Log::new("profile.fetch");
        log.error("publish", "é".repeat(400));
        let (_, line) = log.line().unwrap_or((Level::Warn, String::new()));
        assert!(line.len() < MAX_DETAIL + 120, "{}", line.len());
        assert!(line.contains('…'));
    }
}

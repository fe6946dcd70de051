//! Alert webhooks (docs/analytics.md, "Alert webhooks"): every alert rule
//! transition to `firing` or `resolved` is POSTed to each target of
//! `ALERT_WEBHOOKS`, signed (`X-Intel-Webhook-Signature: t=<unix>,v1=<hex>`,
//! HMAC-SHA256 of `"<t>.<body>"`) or as a Slack-compatible `{"text": ...}`.
//!
//! This module owns the decisions, and no I/O: parsing and validating the
//! targets, the payloads, the signature, the outbox (a bounded queue of
//! deliveries and the record of the last ones, persisted by the hub as one
//! row), which deliveries are due at a tick and the backoff after a failure.
//! The hub's alarm (`objects::hub`, shard 0 only) executes it: it enqueues
//! the tick's transitions, sends what `Outbox::due` hands out, bounded in
//! time, and reports each outcome back. Nothing on a request path sends.
//!
//! What must not leak: a target's secret and its URL beyond scheme and host
//! (a Slack webhook URL carries its secret in its path). Errors name the
//! target by position and field, never by value; the outbox stores a
//! redacted endpoint (`Target::endpoint`) and a fingerprint of the URL, and
//! no receiver's response body.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::alerting::{Op, Rule, State, Transition};
use super::events::Priority;
use super::protocol::iso;

/// Targets in `ALERT_WEBHOOKS` at most.
pub const MAX_TARGETS: usize = 8;
/// Deliveries waiting at most (every target's together); past it the oldest
/// is dropped, recorded and counted (`Outbox::dropped`).
pub const QUEUE_MAX: usize = 200;
/// Finished deliveries kept for `GET /api/alerts/webhooks`.
pub const LOG_MAX: usize = 50;
/// Attempts per delivery: the first at the tick of the transition, then
/// after 1, 2, 4, 8 and 16 slides (`backoff_ms`); after the last it is given up.
pub const MAX_ATTEMPTS: u32 = 6;
/// Attempts per target per tick at most (a target's deliveries go in
/// order; its first failure ends its turn for the tick).
pub const PER_TARGET_PER_TICK: usize = 5;
/// The longest wait between two attempts, whatever the slide.
pub const BACKOFF_CAP_MS: f64 = 3_600_000.0;
/// Shortest secret accepted (as the other secrets).
pub const MIN_SECRET_LEN: usize = 16;
/// `secretVar` must name a variable starting with this.
pub const SECRET_VAR_PREFIX: &str = "ALERT_WEBHOOK_SECRET";
/// An error text kept per delivery at most (characters).
const ERROR_MAX_CHARS: usize = 160;

/// The headers of a delivery.
pub const SIGNATURE_HEADER: &str = "X-Intel-Webhook-Signature";
/// The same for every attempt of one delivery: a receiver de-duplicates with it.
pub const ID_HEADER: &str = "X-Intel-Webhook-Id";
pub const ATTEMPT_HEADER: &str = "X-Intel-Webhook-Attempt";

type HmacSha256 = Hmac<Sha256>;

/// The body a target receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"alert": {...}}`, signed.
    Json,
    /// `{"text": "..."}` (Slack incoming webhooks, and the many tools that take the same body).
    Slack,
}

/// One target of `ALERT_WEBHOOKS`, validated. `Debug` shows neither the
/// URL's path nor the secret.
#[derive(Clone, PartialEq)]
pub struct Target {
    pub url: String,
    pub format: Format,
    /// The HMAC key; required for `json`, optional for `slack` (then the
    /// signature header is sent too).
    pub secret: Option<String>,
    /// Scheme, host and port only, with `/…`: what the API and logs show.
    pub endpoint: String,
    /// A fingerprint of the URL, so a queued delivery finds its target
    /// again after a deploy that reorders `ALERT_WEBHOOKS` (stored, never served).
    pub key: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("format", &self.format)
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

/// Parses `ALERT_WEBHOOKS`: a JSON array of
/// `{"url", "format": "json" | "slack", "secret" | "secretVar"}`.
/// `var` reads a variable named by `secretVar`. Errors name the target by
/// its position (from 1) and the field, never a value.
pub fn parse_targets(text: &str, var: impl Fn(&str) -> Option<String>) -> Result<Vec<Target>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = value.as_array().ok_or("must be a JSON array of {url, format, secret | secretVar}")?;
    if items.len() > MAX_TARGETS {
        return Err(format!("{} targets; at most {MAX_TARGETS}", items.len()));
    }
    let mut targets: Vec<Target> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let t = parse_target(item, &var).map_err(|e| format!("webhook {n}: {e}"))?;
        if targets.iter().any(|o| o.key == t.key) {
            return Err(format!("webhook {n}: the same `url` as an earlier webhook"));
        }
        targets.push(t);
    }
    Ok(targets)
}

fn parse_target(item: &Value, var: &impl Fn(&str) -> Option<String>) -> Result<Target, String> {
    let obj = item.as_object().ok_or("must be an object {url, format, secret | secretVar}")?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "url" | "format" | "secret" | "secretVar") {
            // Config errors are served to every client: a key is named only
            // when it looks like a field name (a pasted secret or URL is not).
            let plain = k.len() <= 32 && k.chars().all(|c| c.is_ascii_alphabetic());
            return Err(if plain {
                format!("unknown field `{k}` (url, format, secret, secretVar)")
            } else {
                "an unknown field (url, format, secret, secretVar)".to_string()
            });
        }
    }
    let url = match obj.get("url") {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return Err("`url` must be a string".into()),
        None => return Err("`url` is missing".into()),
    };
    let endpoint = check_url(&url)?;
    let format = match obj.get("format") {
        None => Format::Json,
        Some(Value::String(s)) if s == "json" => Format::Json,
        Some(Value::String(s)) if s == "slack" => Format::Slack,
        Some(_) => return Err("`format` must be \"json\" or \"slack\"".into()),
    };
    let secret = match (obj.get("secret"), obj.get("secretVar")) {
        (Some(_), Some(_)) => return Err("give `secret` or `secretVar`, not both".into()),
        (Some(Value::String(s)), None) => Some(s.clone()),
        (Some(_), None) => return Err("`secret` must be a string".into()),
        (None, Some(Value::String(name))) => {
            let ok = name.starts_with(SECRET_VAR_PREFIX)
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(format!(
                    "`secretVar` must name a variable {SECRET_VAR_PREFIX} or {SECRET_VAR_PREFIX}_<NAME> (capitals, digits, _)"
                ));
            }
            let value = var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
            Some(
                value.ok_or_else(|| {
                    format!("`secretVar`: the variable {name} is not set (wrangler secret put {name})")
                })?,
            )
        }
        (None, Some(_)) => return Err("`secretVar` must be a string".into()),
        (None, None) => None,
    };
    if let Some(s) = &secret {
        if s.chars().count() < MIN_SECRET_LEN {
            return Err(format!("the secret must be at least {MIN_SECRET_LEN} characters (use a random value)"));
        }
    }
    if format == Format::Json && secret.is_none() {
        return Err("a json webhook is signed: give `secret` or `secretVar`".into());
    }
    Ok(Target { key: fingerprint(&url), url, format, secret, endpoint })
}

/// Checks a target URL and returns its shown form (scheme, host, port, `/…`).
/// `https://` only; `http://` for the loopback hosts alone (`localhost`,
/// `127.0.0.1`, `[::1]`: a receiver on the same machine, as in the tests).
fn check_url(url: &str) -> Result<String, String> {
    if !url.is_ascii() {
        return Err("`url` is not ASCII: write an international host name in punycode (xn--...)".into());
    }
    // A percent-encoded byte in the host decodes to non-ASCII inside the URL
    // parser, where idna's table-less stub (Cargo.toml) debug-asserts (see
    // config::parse_url); paths and queries may have them.
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('%') {
        return Err("`url` has percent-encoding in its host".into());
    }
    let u = url::Url::parse(url).map_err(|e| format!("`url` is not a URL ({e})"))?;
    let loopback = crate::intel::ip::is_loopback(&u);
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err("`url` must be https:// (http:// only for localhost, 127.0.0.1 or [::1])".into());
        }
    }
    if u.host().is_none() {
        return Err("`url` has no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("`url` must not carry credentials (user:password@); use the secret".into());
    }
    if u.fragment().is_some() {
        return Err("`url` must not have a #fragment".into());
    }
    Ok(format!("{}/…", u.origin().ascii_serialization()))
}

fn fingerprint(url: &str) -> String {
    let h = Sha256::digest(format!("edgeintel-webhook:{url}").as_bytes());
    hex::encode(h.get(..8).unwrap_or_default())
}

/// An alert as a webhook tells it: a rule's transition to firing or resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    /// `firing` or `resolved`.
    pub state: State,
    pub severity: Priority,
    pub message: String,
    /// The metric's value in the slide that made the transition.
    pub value: Option<f64>,
    pub threshold: f64,
    /// When the transition happened (ISO 8601, UTC).
    pub at: String,
    /// The rule's metric and operator (beyond the issue's fields: a
    /// receiver can say "error_rate 0.12 > 0.05" without the rules).
    pub metric: String,
    pub operator: Op,
}

/// The alerts of a tick's transitions: those to `firing` or `resolved` only
/// (pending is not news to a pager), with their rule's threshold.
pub fn alerts(transitions: &[Transition], rules: &[Rule]) -> Vec<Alert> {
    transitions
        .iter()
        .filter(|t| matches!(t.to, State::Firing | State::Resolved))
        .filter_map(|t| {
            let rule = rules.iter().find(|r| r.name == t.rule)?;
            Some(Alert {
                rule: t.rule.clone(),
                state: t.to,
                severity: t.severity,
                message: t.message.clone(),
                value: t.value,
                threshold: rule.threshold,
                at: iso(t.at),
                metric: rule.metric.clone(),
                operator: rule.operator,
            })
        })
        .collect()
}

/// The `json` body: `{"alert": {...}}`.
pub fn json_body(alert: &Alert) -> String {
    json!({ "alert": alert }).to_string()
}

/// The `slack` body: `{"text": "..."}`, one line, Slack's three
/// characters escaped (`&`, `<`, `>`: the rule's words are never markup).
pub fn slack_body(alert: &Alert) -> String {
    let (mark, word) = match alert.state {
        State::Firing => (":rotating_light:", "FIRING"),
        _ => (":white_check_mark:", "RESOLVED"),
    };
    let op = match alert.operator {
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
    };
    let severity = match alert.severity {
        Priority::Low => "low",
        Priority::Medium => "medium",
        Priority::High => "high",
        Priority::Critical => "critical",
    };
    let value = alert.value.map_or_else(|| "not measured".to_string(), |v| format!("{v}"));
    let text = format!(
        "{mark} [{word}] {} ({severity}): {} ({} = {value}, threshold {op} {}) at {}",
        alert.rule, alert.message, alert.metric, alert.threshold, alert.at
    );
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    json!({ "text": escaped }).to_string()
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &str, t_unix: u64, body: &str) -> Option<String> {
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    m.update(format!("{t_unix}.{body}").as_bytes());
    Some(format!("t={t_unix},v1={}", hex::encode(m.finalize().into_bytes())))
}

/// One delivery: an alert for one target, until delivered or given up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Stable over the attempts (`ID_HEADER`).
    pub id: String,
    /// `Target::key` of the target it is for.
    pub target: String,
    /// `Target::endpoint` and format at the time it was queued (shown even
    /// after the target is removed from the configuration).
    pub endpoint: String,
    pub format: Format,
    pub alert: Alert,
    pub attempts: u32,
    pub queued_at: f64,
    /// Not attempted before this.
    pub next_at: f64,
    #[serde(default)]
    pub first_at: Option<f64>,
    #[serde(default)]
    pub last_at: Option<f64>,
    /// The receiver's last HTTP status, if it answered.
    #[serde(default)]
    pub status: Option<u16>,
    /// Why the last attempt failed (network error, timeout, non-2xx).
    #[serde(default)]
    pub error: Option<String>,
}

/// How a finished delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    /// `MAX_ATTEMPTS` failed.
    Failed,
    /// Pushed out of a full queue (`QUEUE_MAX`) before it was delivered.
    Dropped,
    /// Its target is no longer in `ALERT_WEBHOOKS`.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finished {
    pub delivery: Delivery,
    pub outcome: Outcome,
    pub finished_at: f64,
}

/// The hub's webhook state, persisted as one row (`keys::HUB_WEBHOOKS_ROW`):
/// at most `QUEUE_MAX` + `LOG_MAX` deliveries of a few hundred bytes each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outbox {
    /// Waiting, oldest first.
    #[serde(default)]
    pub queue: Vec<Delivery>,
    /// Finished, oldest first, the last `LOG_MAX`.
    #[serde(default)]
    pub log: Vec<Finished>,
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub dropped: u64,
    #[serde(default)]
    pub removed: u64,
}

/// One attempt the hub is to make now.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: String,
    /// The index of its target in `ALERT_WEBHOOKS`.
    pub target: usize,
    pub url: String,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// The receiver answered this status (2xx: delivered).
    Status(u16),
    /// No answer: a network error or the timeout (the text is kept, shortened).
    Error(String),
}

/// How long after a failed attempt (the `attempts`-th) the next may come:
/// 1, 2, 4, 8, 16 slides (at most `BACKOFF_CAP_MS`), less half a slide so
/// that the tick at the boundary takes it (a tick starts a little early or
/// late; retries happen only at ticks).
pub fn backoff_ms(attempts: u32, slide_ms: f64) -> f64 {
    let factor = 2f64.powi(attempts.saturating_sub(1).min(20) as i32);
    let wait = (slide_ms * factor).min(BACKOFF_CAP_MS.max(slide_ms));
    (wait - slide_ms / 2.0).max(0.0)
}

/// How long one attempt may take: a quarter of a slide, between 1 and 5 s
/// (a slow receiver delays the next tick by at most this per round).
pub fn timeout_ms(slide_ms: f64) -> u64 {
    (slide_ms / 4.0).clamp(1000.0, 5000.0) as u64
}

/// No new attempt is started this long after the tick's first: half a
/// slide, at least one timeout, at most 15 s.
pub fn tick_budget_ms(slide_ms: f64) -> f64 {
    (slide_ms / 2.0).min(15_000.0).max(timeout_ms(slide_ms) as f64)
}

impl Outbox {
    /// Queues one delivery per alert per target, at `now` (due at once);
    /// drops the oldest past `QUEUE_MAX`.
    pub fn enqueue(&mut self, targets: &[Target], alerts: &[Alert], now: f64) {
        for alert in alerts {
            for t in targets {
                let id = delivery_id(&t.key, alert);
                if self.queue.iter().any(|d| d.id == id) {
                    continue; // the same transition again (a repeated tick): once
                }
                self.queue.push(Delivery {
                    id,
                    target: t.key.clone(),
                    endpoint: t.endpoint.clone(),
                    format: t.format,
                    alert: alert.clone(),
                    attempts: 0,
                    queued_at: now,
                    next_at: now,
                    first_at: None,
                    last_at: None,
                    status: None,
                    error: None,
                });
            }
        }
        let excess = self.queue.len().saturating_sub(QUEUE_MAX);
        for d in self.queue.drain(..excess).collect::<Vec<_>>() {
            self.dropped += 1;
            self.finish(d, Outcome::Dropped, now);
        }
    }

    /// The attempts due at `now`, per target (in `targets`' order), each
    /// target's in queue order and at most `PER_TARGET_PER_TICK`. Deliveries
    /// whose target is gone are finished as `Removed` first. Each attempt is
    /// signed with `now` (in seconds) as its `t`.
    pub fn due(&mut self, targets: &[Target], now: f64) -> Vec<Vec<Attempt>> {
        let (kept, gone): (Vec<Delivery>, Vec<Delivery>) =
            std::mem::take(&mut self.queue).into_iter().partition(|d| targets.iter().any(|t| t.key == d.target));
        self.queue = kept;
        for d in gone {
            self.removed += 1;
            self.finish(d, Outcome::Removed, now);
        }
        let t_unix = (now / 1000.0).floor().max(0.0) as u64;
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                self.queue
                    .iter()
                    .filter(|d| d.target == t.key && d.next_at <= now)
                    .take(PER_TARGET_PER_TICK)
                    .map(|d| attempt(i, t, d, t_unix))
                    .collect()
            })
            .collect()
    }

    /// Takes the outcome of attempt `id`, made at `now`. Returns whether it
    /// was delivered (a failure ends its target's turn for the tick).
    pub fn record(&mut self, id: &str, sent: Sent, now: f64, slide_ms: f64) -> bool {
        let Some(pos) = self.queue.iter().position(|d| d.id == id) else { return false };
        let Some(d) = self.queue.get_mut(pos) else { return false };
        d.attempts += 1;
        d.first_at.get_or_insert(now);
        d.last_at = Some(now);
        let ok = match sent {
            Sent::Status(s) => {
                d.status = Some(s);
                d.error = (!(200..300).contains(&s)).then(|| match s {
                    300..=399 => format!("answered {s} (redirects are not followed)"),
                    _ => format!("answered {s}"),
                });
                (200..300).contains(&s)
            }
            Sent::Error(e) => {
                d.status = None;
                d.error = Some(e.chars().take(ERROR_MAX_CHARS).collect());
                false
            }
        };
        if ok || d.attempts >= MAX_ATTEMPTS {
            let d = self.queue.remove(pos);
            if ok {
                self.delivered += 1;
                self.finish(d, Outcome::Delivered, now);
            } else {
                self.failed += 1;
                self.finish(d, Outcome::Failed, now);
            }
        } else {
            d.next_at = now + backoff_ms(d.attempts, slide_ms);
        }
        ok
    }

    fn finish(&mut self, delivery: Delivery, outcome: Outcome, now: f64) {
        self.log.push(Finished { delivery, outcome, finished_at: now });
        let excess = self.log.len().saturating_sub(LOG_MAX);
        self.log.drain(..excess);
    }

    /// `GET /api/alerts/webhooks`'s body (without its `timestamp`): the
    /// targets as shown (no URL path, no secret), the counters, the queue and
    /// the last finished deliveries, newest first.
    pub fn view(&self, targets: &[Target]) -> Value {
        let index = |key: &str| targets.iter().position(|t| t.key == key);
        let item = |d: &Delivery, outcome: &str, finished: Option<f64>| {
            let mut m = Map::new();
            m.insert("id".into(), json!(d.id));
            m.insert("rule".into(), json!(d.alert.rule));
            m.insert("state".into(), json!(d.alert.state));
            m.insert("severity".into(), json!(d.alert.severity));
            m.insert("at".into(), json!(d.alert.at));
            m.insert("target".into(), json!(index(&d.target)));
            m.insert("endpoint".into(), json!(d.endpoint));
            m.insert("format".into(), json!(d.format));
            m.insert("outcome".into(), json!(outcome));
            m.insert("attempts".into(), json!(d.attempts));
            m.insert("status".into(), json!(d.status));
            m.insert("error".into(), json!(d.error));
            m.insert("queuedAt".into(), json!(iso(d.queued_at)));
            m.insert("firstAttemptAt".into(), json!(d.first_at.map(iso)));
            m.insert("lastAttemptAt".into(), json!(d.last_at.map(iso)));
            m.insert("nextAttemptAt".into(), json!(finished.is_none().then(|| iso(d.next_at))));
            m.insert("finishedAt".into(), json!(finished.map(iso)));
            Value::Object(m)
        };
        let pending: Vec<Value> = self.queue.iter().take(LOG_MAX).map(|d| item(d, "pending", None)).collect();
        let deliveries: Vec<Value> = self
            .log
            .iter()
            .rev()
            .map(|f| {
                let outcome = match f.outcome {
                    Outcome::Delivered => "delivered",
                    Outcome::Failed => "failed",
                    Outcome::Dropped => "dropped",
                    Outcome::Removed => "removed",
                };
                item(&f.delivery, outcome, Some(f.finished_at))
            })
            .collect();
        let shown: Vec<Value> = targets
            .iter()
            .enumerate()
            .map(
                |(i, t)| json!({"target": i, "endpoint": t.endpoint, "format": t.format, "signed": t.secret.is_some()}),
            )
            .collect();
        json!({
            "targets": shown,
            "queued": self.queue.len(),
            "queueMax": QUEUE_MAX,
            "maxAttempts": MAX_ATTEMPTS,
            "delivered": self.delivered,
            "failed": self.failed,
            "dropped": self.dropped,
            "removed": self.removed,
            "pending": pending,
            "deliveries": deliveries,
        })
    }
}

/// The same alert for the same target has the same id.
fn delivery_id(key: &str, alert: &Alert) -> String {
    let state = if alert.state == State::Firing { "firing" } else { "resolved" };
    let h = Sha256::digest(format!("{key}\n{}\n{state}\n{}", alert.rule, alert.at).as_bytes());
    hex::encode(h.get(..12).unwrap_or_default())
}

fn attempt(index: usize, t: &Target, d: &Delivery, t_unix: u64) -> Attempt {
    let body = match t.format {
        Format::Json => json_body(&d.alert),
        Format::Slack => slack_body(&d.alert),
    };
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("user-agent", concat!("edgeintel-webhooks/", env!("CARGO_PKG_VERSION")).to_string()),
        (ID_HEADER, d.id.clone()),
        (ATTEMPT_HEADER, (d.attempts + 1).to_string()),
    ];
    if let Some(sig) = t.secret.as_deref().and_then(|s| signature(s, t_unix, &body)) {
        headers.push((SIGNATURE_HEADER, sig));
    }
    Attempt { id: d.id.clone(), target: index, url: t.url.clone(), body, headers }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec-0123456789abcdef";

    fn vars(name: &str) -> Option<String> {
        (name == "ALERT_WEBHOOK_SECRET_OPS").then(|| SECRET.to_string())
    }

    fn targets() -> Vec<Target> {
        parse_targets(
            r#"[{"url": "https://hooks.example.com/in", "secretVar": "ALERT_WEBHOOK_SECRET_OPS"},
                {"url": "https://hooks.slack.com/services/T0/B0/XSECRETX", "format": "slack"}]"#,
            vars,
        )
        .unwrap()
    }

    fn alert(state: State, at: f64) -> Alert {
        Alert {
            rule: "high_error_rate".into(),
            state,
            severity: Priority::High,
            message: "errors <5% & rising".into(),
            value: Some(0.12),
            threshold: 0.05,
            at: iso(at),
            metric: "error_rate".into(),
            operator: Op::Gt,
        }
    }

    #[test]
    fn targets_parse_with_inline_or_named_secrets() {
        let t = targets();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].format, t[0].secret.as_deref()), (Format::Json, Some(SECRET)));
        assert_eq!((t[1].format, t[1].secret.as_deref()), (Format::Slack, None));
        assert_eq!(t[1].endpoint, "https://hooks.slack.com/…");
        let shown = format!("{t:?}");
        assert!(!shown.contains("XSECRETX") && !shown.contains(SECRET), "Debug hides paths and secrets: {shown}");
        let local = parse_targets(
            r#"[{"url": "http://127.0.0.1:8787/a", "secret": "0123456789abcdef"},
                {"url": "http://localhost/b", "secret": "0123456789abcdef"},
                {"url": "http://[::1]:9/c", "format": "slack"}]"#,
            |_| None,
        )
        .unwrap();
        assert_eq!(local[0].endpoint, "http://127.0.0.1:8787/…");
        assert_eq!(parse_targets("[]", |_| None).unwrap(), vec![]);
    }

    /// (the value, words its error must contain)
    #[test]
    fn bad_targets_are_refused_naming_the_field_never_the_value() {
        let cases: &[(&str, &str)] = &[
            ("{", "not JSON"),
            ("{}", "JSON array"),
            ("[1]", "webhook 1: must be an object"),
            (r#"[{"secret": "0123456789abcdef"}]"#, "webhook 1: `url` is missing"),
            (r#"[{"url": 5, "secret": "0123456789abcdef"}]"#, "`url` must be a string"),
            (r#"[{"url": "http://hooks.example.com/x", "secret": "0123456789abcdef"}]"#, "must be https://"),
            (r#"[{"url": "http://127.0.0.2/x", "secret": "0123456789abcdef"}]"#, "must be https://"),
            (r#"[{"url": "ftp://example.com/x", "secret": "0123456789abcdef"}]"#, "must be https://"),
            (r#"[{"url": "not a url", "secret": "0123456789abcdef"}]"#, "`url` is not a URL"),
            (r#"[{"url": "https://u:p@example.com/x", "secret": "0123456789abcdef"}]"#, "credentials"),
            (r#"[{"url": "https://example.com/x#f", "secret": "0123456789abcdef"}]"#, "fragment"),
            (r#"[{"url": "https://ex%41mple.com/x", "secret": "0123456789abcdef"}]"#, "percent-encoding"),
            (r#"[{"url": "https://bücher.example/x", "secret": "0123456789abcdef"}]"#, "punycode"),
            (r#"[{"url": "https://example.com/x"}]"#, "give `secret` or `secretVar`"),
            (r#"[{"url": "https://example.com/x", "secret": "short-secret"}]"#, "at least 16 characters"),
            (r#"[{"url": "https://example.com/x", "secret": 1}]"#, "`secret` must be a string"),
            (r#"[{"url": "https://example.com/x", "format": "xml", "secret": "0123456789abcdef"}]"#, "`format`"),
            (r#"[{"url": "https://example.com/x", "sekret": "0123456789abcdef"}]"#, "unknown field `sekret`"),
            (r#"[{"url": "https://example.com/x", "secretVar": "ADMIN_TOKEN"}]"#, "`secretVar` must name"),
            (r#"[{"url": "https://example.com/x", "secretVar": "ALERT_WEBHOOK_SECRET_NOPE"}]"#, "is not set"),
            (
                r#"[{"url": "https://example.com/x", "secret": "0123456789abcdef", "secretVar": "ALERT_WEBHOOK_SECRET_OPS"}]"#,
                "not both",
            ),
            (
                r#"[{"url": "https://a.example/x", "format": "slack"}, {"url": "https://a.example/x", "format": "slack"}]"#,
                "webhook 2: the same `url`",
            ),
        ];
        for (text, words) in cases {
            let e = parse_targets(text, vars).unwrap_err();
            assert!(e.contains(words), "{text}: {e}");
            for secret_part in ["/x", "0123456789abcdef", "short-secret", "u:p"] {
                assert!(!e.contains(secret_part), "{text}: the error echoes `{secret_part}`: {e}");
            }
        }
        let nine: Vec<String> =
            (0..9).map(|i| format!(r#"{{"url": "https://h{i}.example/", "format": "slack"}}"#)).collect();
        assert!(parse_targets(&format!("[{}]", nine.join(",")), vars).unwrap_err().contains("at most 8"));
    }

    #[test]
    fn only_firing_and_resolved_transitions_are_sent_with_the_rule_threshold() {
        let rules = crate::intel::alerting::default_rules(60.0);
        let t = |to, from| Transition {
            rule: "high_error_rate".into(),
            from,
            to,
            at: 1_780_000_000_000.0,
            value: Some(0.2),
            severity: Priority::High,
            message: "m".into(),
        };
        let out = alerts(
            &[
                t(State::Pending, State::Inactive),
                t(State::Firing, State::Pending),
                t(State::Inactive, State::Pending),
                t(State::Resolved, State::Firing),
            ],
            &rules,
        );
        assert_eq!(out.iter().map(|a| a.state).collect::<Vec<_>>(), [State::Firing, State::Resolved]);
        assert_eq!(out[0].threshold, 0.05);
        assert_eq!(out[0].at, "2026-05-28T20:26:40.000Z");
        let body: Value = serde_json::from_str(&json_body(&out[0])).unwrap();
        let keys: Vec<&str> = body["alert"].as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["rule", "state", "severity", "message", "value", "threshold", "at"] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
        assert_eq!(body["alert"]["state"], "firing");
        assert_eq!(body["alert"]["severity"], "high");
    }

    #[test]
    fn slack_text_says_what_fired_and_escapes_markup() {
        let body: Value = serde_json::from_str(&slack_body(&alert(State::Firing, 0.0))).unwrap();
        let text = body["text"].as_str().unwrap();
        assert_eq!(
            text,
            ":rotating_light: [FIRING] high_error_rate (high): errors &lt;5% &amp; rising (error_rate = 0.12, threshold &gt; 0.05) at 1970-01-01T00:00:00.000Z"
        );
        assert_eq!(body.as_object().unwrap().len(), 1, "only text");
        let resolved: Value = serde_json::from_str(&slack_body(&alert(State::Resolved, 0.0))).unwrap();
        assert!(resolved["text"].as_str().unwrap().starts_with(":white_check_mark: [RESOLVED] high_error_rate"));
    }

    /// The signature a receiver recomputes: HMAC-SHA256 over "t.body",
    /// checked against an independent value (`openssl dgst -sha256 -hmac key`
    /// of `1700000000.{"a":1}`).
    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body() {
        let sig = signature("key", 1_700_000_000, r#"{"a":1}"#).unwrap();
        assert_eq!(sig, "t=1700000000,v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03");
    }

    #[test]
    fn a_failing_target_is_retried_with_backoff_then_given_up() {
        let ts = targets();
        let slide = 60_000.0;
        let mut ob = Outbox::default();
        let t0 = 1_780_000_000_000.0;
        ob.enqueue(&ts, &[alert(State::Firing, t0)], t0);
        assert_eq!(ob.queue.len(), 2, "one delivery per target");
        let due = ob.due(&ts, t0);
        assert_eq!((due[0].len(), due[1].len()), (1, 1));
        let json_try = &due[0][0];
        let sig = json_try.headers.iter().find(|(h, _)| *h == SIGNATURE_HEADER).unwrap();
        assert_eq!(sig.1, signature(SECRET, 1_780_000_000, &json_try.body).unwrap());
        assert!(!due[1][0].headers.iter().any(|(h, _)| *h == SIGNATURE_HEADER), "slack without a secret: unsigned");
        assert!(ob.record(&due[1][0].id, Sent::Status(200), t0 + 10.0, slide));
        // The json target fails: at the tick of each backoff, and not before.
        let mut now = t0;
        let mut tries = vec![];
        for attempt in 1..=MAX_ATTEMPTS {
            let due = ob.due(&ts, now);
            assert_eq!(due[0].len(), 1, "attempt {attempt} due at {now}");
            assert_eq!(due[0][0].headers.iter().find(|(h, _)| *h == ATTEMPT_HEADER).unwrap().1, attempt.to_string());
            assert!(!ob.record(&due[0][0].id, Sent::Error("connect ECONNREFUSED".into()), now, slide));
            tries.push((now - t0) / slide);
            if attempt < MAX_ATTEMPTS {
                let next = ob.queue[0].next_at;
                assert!(ob.due(&ts, next - 1.0)[0].is_empty(), "not before its time");
                // The next tick at or after `next`: ticks come at slide multiples (+ a little).
                now = t0 + ((next - t0) / slide).ceil() * slide + 5.0;
            }
        }
        assert_eq!(tries.iter().map(|t| t.round() as u32).collect::<Vec<_>>(), [0, 1, 3, 7, 15, 31]);
        assert!(ob.queue.is_empty(), "given up after {MAX_ATTEMPTS}");
        assert_eq!((ob.delivered, ob.failed), (1, 1));
        let last = ob.log.last().unwrap();
        assert_eq!((last.outcome, last.delivery.attempts), (Outcome::Failed, MAX_ATTEMPTS));
        assert_eq!(last.delivery.error.as_deref(), Some("connect ECONNREFUSED"));
        // A non-2xx is a failure too, a 3xx says why.
        ob.enqueue(&ts, &[alert(State::Resolved, t0 + 1.0)], t0);
        let due = ob.due(&ts, t0);
        assert!(!ob.record(&due[0][0].id, Sent::Status(302), t0, slide));
        assert_eq!(ob.queue[0].error.as_deref(), Some("answered 302 (redirects are not followed)"));
        assert_eq!(ob.queue[0].status, Some(302));
    }

    #[test]
    fn the_queue_and_the_log_are_bounded_and_count_what_they_drop() {
        let ts = targets();
        let mut ob = Outbox::default();
        for i in 0..(QUEUE_MAX as u64) {
            ob.enqueue(&ts, &[alert(State::Firing, i as f64 * 1000.0)], 0.0);
        }
        assert_eq!(ob.queue.len(), QUEUE_MAX);
        assert_eq!(ob.dropped, QUEUE_MAX as u64, "2 targets x 200 alerts: the oldest 200 dropped");
        assert_eq!(ob.log.len(), LOG_MAX);
        assert!(ob.log.iter().all(|f| f.outcome == Outcome::Dropped));
        // The queue kept the newest.
        assert_eq!(ob.queue.last().unwrap().alert.at, iso((QUEUE_MAX as f64 - 1.0) * 1000.0));
        // A repeated transition is queued once.
        let before = ob.queue.len();
        ob.enqueue(&ts, &[ob.queue.last().unwrap().alert.clone()], 0.0);
        assert_eq!(ob.queue.len(), before);
        // At most PER_TARGET_PER_TICK per target per tick.
        let due = ob.due(&ts, 0.0);
        assert_eq!((due[0].len(), due[1].len()), (PER_TARGET_PER_TICK, PER_TARGET_PER_TICK));
        // Persisted as one row of bounded size.
        let row = serde_json::to_string(&ob).unwrap();
        assert!(row.len() < 200_000, "{}", row.len());
        assert_eq!(serde_json::from_str::<Outbox>(&row).unwrap(), ob, "round trip");
    }

    #[test]
    fn a_removed_target_finishes_its_deliveries() {
        let ts = targets();
        let mut ob = Outbox::default();
        ob.enqueue(&ts, &[alert(State::Firing, 0.0)], 0.0);
        let only_slack = vec![ts[1].clone()];
        let due = ob.due(&only_slack, 0.0);
        assert_eq!(due.len(), 1);
        assert_eq!(ob.queue.len(), 1);
        assert_eq!((ob.removed, ob.log[0].outcome), (1, Outcome::Removed));
    }

    #[test]
    fn the_view_shows_no_url_path_and_no_secret() {
        let ts = targets();
        let mut ob = Outbox::default();
        ob.enqueue(&ts, &[alert(State::Firing, 0.0)], 0.0);
        let due = ob.due(&ts, 0.0);
        ob.record(&due[0][0].id, Sent::Status(500), 1.0, 60_000.0);
        ob.record(&due[1][0].id, Sent::Status(204), 1.0, 60_000.0);
        let v = ob.view(&ts);
        let text = v.to_string();
        for hidden in ["XSECRETX", "/services", "/in", SECRET, &ts[0].key] {
            assert!(!text.contains(hidden), "{hidden} in {text}");
        }
        assert_eq!(
            v["targets"][1],
            json!({"target": 1, "endpoint": "https://hooks.slack.com/…", "format": "slack", "signed": false})
        );
        assert_eq!(v["pending"][0]["outcome"], "pending");
        assert_eq!(v["pending"][0]["status"], 500);
        assert_eq!(v["pending"][0]["attempts"], 1);
        assert_eq!(v["deliveries"][0]["outcome"], "delivered");
        assert_eq!(v["deliveries"][0]["target"], 1);
        assert_eq!(v["deliveries"][0]["nextAttemptAt"], Value::Null);
        assert_eq!(v["delivered"], 1);
    }

    #[test]
    fn timing_bounds() {
        assert_eq!(timeout_ms(60_000.0), 5000);
        assert_eq!(timeout_ms(1000.0), 1000);
        assert_eq!(tick_budget_ms(60_000.0), 15_000.0);
        assert_eq!(tick_budget_ms(1000.0), 1000.0);
        assert_eq!(backoff_ms(1, 60_000.0), 30_000.0);
        assert_eq!(backoff_ms(40, 60_000.0), BACKOFF_CAP_MS - 30_000.0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod contract {
    use super::*;

    fn required(schema: &Value) -> Vec<String> {
        let mut r: Vec<String> =
            schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        r.sort();
        r
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    /// src/openapi.json describes exactly what `view` answers (the edge adds `timestamp`).
    #[test]
    fn the_openapi_schema_is_the_view() {
        let doc: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
        let schema =
            doc.pointer("/paths/~1api~1alerts~1webhooks/get/responses/200/content/application~1json/schema").unwrap();
        let targets = parse_targets(r#"[{"url": "https://a.example/x", "format": "slack"}]"#, |_| None).unwrap();
        let mut ob = Outbox::default();
        let a = Alert {
            rule: "r".into(),
            state: State::Firing,
            severity: Priority::Low,
            message: "m".into(),
            value: None,
            threshold: 1.0,
            at: iso(0.0),
            metric: "error_rate".into(),
            operator: Op::Gt,
        };
        ob.enqueue(&targets, &[a.clone(), Alert { state: State::Resolved, ..a }], 0.0);
        let due = ob.due(&targets, 0.0);
        ob.record(&due[0][0].id, Sent::Status(200), 1.0, 1000.0);
        let mut view = ob.view(&targets);
        view.as_object_mut().unwrap().insert("timestamp".into(), json!(iso(0.0)));
        assert_eq!(keys(&view), required(schema));
        let item = &schema["properties"]["pending"]["items"];
        assert_eq!(keys(&view["pending"][0]), required(item));
        assert_eq!(keys(&view["deliveries"][0]), required(&schema["properties"]["deliveries"]["items"]));
        assert_eq!(keys(&view["targets"][0]), required(&schema["properties"]["targets"]["items"]));
        assert_eq!(schema["properties"]["targets"]["maxItems"], MAX_TARGETS);
        assert_eq!(schema["properties"]["deliveries"]["maxItems"], LOG_MAX);
    }
}

//! The settings table: every variable the Worker reads (`[vars]` and
//! secrets), with its default as an operator would write it, the values it
//! accepts and one line of documentation. It is the one place a default is
//! written: `config::Config::from_vars` reads every value through `Raw`
//! (an unset variable reads as its default here), and docs/configuration.md's
//! table is rendered from it (the `settings_doc` test fails when it is stale;
//! `UPDATE_DOCS=1 cargo test settings_doc` rewrites it).
//!
//! This module checks what one variable alone can say (a number's range, a
//! choice, a boolean, a secret's length) with the error messages operators
//! and tests know. What needs parsing of a structured value (JSON, URLs,
//! cookie names) or several variables together is `config`'s.
//! No platform imports: native tests cover it.

/// What values a variable accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, any case).
    Bool,
    /// A whole number in `min..=max`.
    Int { min: u64, max: u64 },
    /// A number above 0 and at most `max`; `what` names it in errors
    /// ("a number", "a number of days").
    Number { max: f64, what: &'static str },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A secret (`wrangler secret put`), at least `min_len` characters when set.
    Secret { min_len: usize },
    /// Free text that `config` parses and checks; the words say what it is.
    Text(&'static str),
}

/// One variable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    pub name: &'static str,
    /// The value an unset (or empty) variable has, as an operator would
    /// write it; `None` when unset means "off" or "absent" (see `doc`).
    pub default: Option<&'static str>,
    pub kind: Kind,
    /// One line for docs/configuration.md. Not in the wasm build (it would
    /// only add bytes): a const fn drops it there at compile time.
    #[cfg(not(target_arch = "wasm32"))]
    pub doc: &'static str,
}

impl Setting {
    pub fn is_secret(&self) -> bool {
        matches!(self.kind, Kind::Secret { .. })
    }
}

const fn s(name: &'static str, default: Option<&'static str>, kind: Kind, doc: &'static str) -> Setting {
    #[cfg(target_arch = "wasm32")]
    let _ = doc;
    Setting {
        name,
        default,
        kind,
        #[cfg(not(target_arch = "wasm32"))]
        doc,
    }
}

const fn int(min: u64, max: u64) -> Kind {
    Kind::Int { min, max }
}

const SECRET_16: Kind = Kind::Secret { min_len: 16 };

/// Every variable, in the order of docs/configuration.md's table.
pub static SETTINGS: &[Setting] = &[
    // The request path.
    s("INTEL_PREFIX", Some("/_intel"), Kind::Text("a path like `/_intel`"), "reserved path prefix for edgeintel's own endpoints (API, streams, dashboard); never forwarded to the origin"),
    s("ORIGIN_URL", None, Kind::Text("`scheme://host[:port]`"), "where to send requests, keeping their path and query; unset = pass-through `fetch` of the request. Write an international host name in punycode (`xn--…`), and no percent-encoding: the Worker carries no Unicode IDNA tables"),
    s("ORIGIN_TIMEOUT_MS", Some("30000"), int(100, 600_000), "wait this long for the origin's response headers, then answer `504` (the body itself streams without a limit); an unreachable origin gets `502`"),
    s("TRUST_X_REAL_IP", Some("false"), Kind::Bool, "take the client IP from `X-Real-IP` when `CF-Connecting-IP` is missing (only behind your own proxy)"),
    // Consulting the profile.
    s("RISK_MODE", Some("fast"), Kind::Choice(&["fast", "consistent"]), "`fast`: never wait longer than `CONSULT_TIMEOUT_MS`, observations are coalesced and recorded after the response; `consistent`: the verdict includes this request (one object call per request)"),
    s("CONSULT_TIMEOUT_MS", Some("50"), int(1, 10_000), "fast mode's budget for the profile lookup (and the lists', rules', crawler ranges' and fingerprint sets' KV reads, and a rate-limit rule's limiter call)"),
    s("CONSISTENT_TIMEOUT_MS", Some("5000"), int(1, 60_000), "consistent mode's limit for a stuck object (then degraded)"),
    s("FAIL_MODE", Some("open"), Kind::Choice(&["open", "closed"]), "`open`: forward degraded when the profile store or the lists' KV read fails; `closed`: answer 503 (counted as degraded and in `fail_closed_count`, never as an origin 5xx)"),
    s("CACHE_TTL_MS", Some("30000"), int(0, 600_000), "lifetime of an entry in the in-isolate verdict cache (bounded LRU); every flush refreshes the entries of the subjects it carried, and an event pushed through the API drops its subject in the isolate that received it"),
    s("CACHE_MAX_ENTRIES", Some("10000"), int(1, 1_000_000), "entries of the in-isolate verdict cache"),
    // Coalescing observations.
    s("FLUSH_INTERVAL_MS", Some("1000"), int(10, 60_000), "how long observations of one subject are coalesced in the isolate before they go to its object as a batch"),
    s("FLUSH_CALM_MS", Some("10000"), int(10, 25_000), "how long a batch of only calm observations (low verdict, no signal, status below 400) may wait for later page views; at or below `FLUSH_INTERVAL_MS` it is off (not above 25000: a request's `waitUntil` lasts 30 s)"),
    s("FLUSH_MAX_BATCH", Some("64"), int(1, 1000), "a batch this full is sent at once"),
    // Scoring and lists.
    s("RISK_WEIGHTS", Some("{}"), Kind::Text("JSON object"), "reason code -> points 0-100 over the built-in points of the [reason codes](../README.md#reason-codes), e.g. `{\"tor_exit\": 60}`"),
    s("COUNTRY_RISK", Some("{}"), Kind::Text("JSON object"), "country code -> points 0-100, e.g. `{\"XX\": 30}`"),
    s("GOOD_BOT_SOURCES", Some("{}"), Kind::Text("JSON object"), "crawler name -> URL (or array of URLs) the Cron Trigger fetches that crawler's IP ranges from instead of its published files, e.g. `{\"googlebot\": \"https://mirror.example/googlebot.json\"}`; an empty array: that crawler is not refreshed; https only (http for localhost); names: googlebot, bingbot, applebot, duckduckbot, openai, perplexity"),
    s("SIGNED_AGENTS", Some("any"), Kind::Text("any, off or JSON array"), "whose Web Bot Auth signatures (HTTP Message Signatures) are verified: `any` agent on the web whose key directory on its own origin verifies it, `off`, or a JSON array of agent origins, e.g. `[\"https://agent.example\"]`; a verified agent gets `signed_agent`, a label: only `SIGNED_AGENTS_TRUSTED` exempts"),
    s("SIGNED_AGENTS_TRUSTED", Some("[]"), Kind::Text("JSON array"), "agent origins whose verified signatures are treated like a verified crawler's (never challenged or blocked on score; `automation_ua`, `hosting_asn`, `missing_browser_headers`, `bot_impersonation` and the fingerprint reasons dropped), e.g. `[\"https://agent.example\"]`; anyone can publish a key directory, so only agents listed here are trusted"),
    s("SIGNED_AGENT_MAX_WINDOW_SECONDS", Some("3600"), int(60, 86_400), "the longest validity (`expires` - `created`) of an agent's signature that is accepted; its nonce is remembered that long"),
    s("HOSTING_ASNS", Some("[]"), Kind::Text("JSON array"), "extra hosting ASNs, `64496` or `\"AS64496\"`, added to the embedded hosting/VPN list"),
    s("RULES", None, Kind::Text("JSON array"), "per-route rules `{id, match: {path, methods, countries, asns, reasons, minScore}, action (allow, monitor, challenge, block, rate_limit), rateLimit: {requests, periodSeconds, by}, dryRun}`, evaluated in order after the allow and block lists and after the rules stored through the API; the first that matches decides (docs/policies.md)"),
    s("ALLOW_LIST", Some("[]"), Kind::Text("JSON array"), "IPs, CIDRs, `AS64496`, `country:XX` always allowed; the API's lists (KV) are added to these"),
    s("BLOCK_LIST", Some("[]"), Kind::Text("JSON array"), "IPs, CIDRs, `AS64496`, `country:XX` always blocked; the API's lists (KV) are added to these"),
    // Enforcement.
    s("ENFORCE", Some("off"), Kind::Choice(&["off", "challenge", "block"]), "`off` (monitor only), `challenge` or `block` (see [enforcement.md](enforcement.md))"),
    s("CHALLENGE_AT", Some("75"), int(0, 100), "score from which enforcement challenges (at most `BLOCK_AT`)"),
    s("BLOCK_AT", Some("90"), int(0, 100), "score from which enforcement blocks"),
    s("CHALLENGE_SIGNING_KEY", None, SECRET_16, "signs challenge tokens and clearance cookies; required for `ENFORCE=challenge\\|block`"),
    s("CHALLENGE_DIFFICULTY", Some("16"), int(1, 28), "leading zero bits of the proof-of-work (16: ~65k hashes)"),
    s("CHALLENGE_DIFFICULTY_MAX", Some("20"), int(1, 28), "the most leading zero bits a challenge asks for however high the score (at least `CHALLENGE_DIFFICULTY` is always asked)"),
    s("CHALLENGE_DIFFICULTY_STEP", Some("10"), int(0, 100), "points above `CHALLENGE_AT` per extra bit of proof-of-work (each bit doubles the work): difficulty = `CHALLENGE_DIFFICULTY` + floor((score - `CHALLENGE_AT`) / step), at most `CHALLENGE_DIFFICULTY_MAX`; 0 = fixed"),
    s("CHALLENGE_NOSCRIPT_WAIT_SECONDS", Some("5"), int(0, 300), "browsers without JavaScript may pass the challenge by waiting this long (plus as long again per extra bit of difficulty, at most 150 s: half a token's life) and following the page's refresh; weaker than the work: any client that waits passes (0 = off)"),
    s("CLEARANCE_TTL_SECONDS", Some("3600"), int(1, 2_592_000), "lifetime of a solved challenge"),
    s("CLEARANCE_BINDING", Some("subject"), Kind::Choice(&["subject", "visitor"]), "what a challenge and its clearance are bound to: `subject` (the IPv4 address or IPv6 /64) or `visitor` (the signed `ei_vid` or `VISITOR_COOKIE` visitor plus its browser family: kept across IPv4/IPv6 and networks; falls back to the subject without a visitor)"),
    s("TURNSTILE_SITE_KEY", None, Kind::Text("site key"), "use Cloudflare Turnstile for challenges instead of the proof-of-work; set with `TURNSTILE_SECRET` (both or neither)"),
    s("TURNSTILE_SECRET", None, Kind::Secret { min_len: 0 }, "Turnstile's secret key, with `TURNSTILE_SITE_KEY` (both or neither)"),
    s("TURNSTILE_VERIFY_URL", Some("https://challenges.cloudflare.com/turnstile/v0/siteverify"), Kind::Text("http(s) URL"), "where Turnstile answers are verified; only tests point it at a stand-in"),
    // Secrets of the API and the headers.
    s("ADMIN_TOKEN", None, SECRET_16, "bearer token for the API (a shorter one is a configuration error naming it); unset = the API answers 503 to every call"),
    s("HEADER_SIGNING_KEY", None, SECRET_16, "sign the headers to the origin (`X-Intel-Signature`)"),
    s("IP_HASH_KEY", None, SECRET_16, "store keyed hashes and show masked IPs only"),
    // Profiles.
    s("VELOCITY_RPM", Some("120"), int(1, 1_000_000), "`high_velocity` threshold (requests per minute)"),
    s("SHARED_MIN_VISITORS", Some("3"), int(0, 64), "distinct returning visitors (signed `ei_vid` or `VISITOR_COOKIE`) within the hour from which a subject is a shared address (carrier NAT, an office): its `VELOCITY_RPM` and `NOT_FOUND_BURST` are multiplied by that count (never `AUTH_FAILURE_BURST`), at most `SHARED_MAX_FACTOR` (0 = never)"),
    s("SHARED_MAX_FACTOR", Some("8"), int(1, 64), "the most a shared address's rate and 404-burst thresholds are multiplied by"),
    s("BURST_WINDOW_SECONDS", Some("300"), int(10, 86_400), "window for origin status bursts and probes"),
    s("AUTH_FAILURE_BURST", Some("10"), int(1, 100_000), "401/403 answers (or wrong admin credentials) within the burst window that raise `auth_failures`"),
    s("NOT_FOUND_BURST", Some("20"), int(1, 100_000), "404 answers within the burst window that raise `not_found_burst`"),
    s("GEO_JUMP_KM", Some("500"), int(1, 20_100), "`geo_jump` distance"),
    s("THREAT_HALF_LIFE_MIN", Some("360"), int(1, 525_600), "minutes for a profile's threat score to halve without new signals"),
    s("REPUTATION_HALF_LIFE_MIN", Some("1440"), int(1, 525_600), "minutes for the reputation score to move half way back to 50"),
    s("PROFILE_TTL_DAYS", Some("30"), Kind::Number { max: 3650.0, what: "a number of days" }, "delete a profile (and a visitor) after this long without activity; decimals allowed, e.g. `0.5`"),
    s("SEEN_ONCE_TTL_HOURS", Some("24"), Kind::Number { max: 87_600.0, what: "a number of hours" }, "a profile seen once (one request, no signal, no event) is deleted this long after it, unless a second request or any signal or event makes it a normal profile (kept `PROFILE_TTL_DAYS`); never longer than `PROFILE_TTL_DAYS`; decimals allowed"),
    // Subjects: rotation budget and where objects live.
    s("ROTATION_BUDGET_PER_48", Some("256"), int(0, 1_000_000), "distinct new IPv6 /64 subjects per /48 per minute one isolate admits (new: no cached verdict and not admitted in the last 10 minutes); past it a new /64's requests go to the /48's profile with `subnet_rotation`, and are at most challenged on score, never blocked (0 = no budget)"),
    s("ROTATION_BUDGET_PER_ASN", Some("6000"), int(0, 1_000_000), "distinct new subjects per ASN per minute one isolate admits; past it a new IPv6 /64 goes to its /48, a new IPv4 address to its /24, with `subnet_rotation` (0 = no budget)"),
    s("DATA_JURISDICTION", None, Kind::Choice(&["eu", "fedramp"]), "create every Durable Object (profiles, visitors, aggregators, hubs, stream root and relays) in this jurisdiction; unset = anywhere. Changing it later starts with new, empty objects (see [DEPLOY.md](DEPLOY.md))"),
    // Impossible travel.
    s("TRAVEL_MAX_KMH", Some("900"), int(1, 100_000), "impossible travel: faster than this between two sightings"),
    s("TRAVEL_MIN_KM", Some("500"), int(0, 20_100), "impossible travel: shorter hops are within geolocation error"),
    s("VISITOR_COOKIE", None, Kind::Text("cookie name"), "your session cookie's name, whose (hashed) value identifies a visitor for impossible travel"),
    s("SET_VISITOR_COOKIE", Some("false"), Kind::Bool, "set a signed first-party `ei_vid` cookie when the request has none; needs `VISITOR_SIGNING_KEY`"),
    s("VISITOR_SIGNING_KEY", None, Kind::Secret { min_len: 0 }, "signs the `ei_vid` cookie; at least 16 characters when `SET_VISITOR_COOKIE` is on"),
    // The API and streams.
    s("MAX_EVENT_BATCH", Some("500"), int(1, 10_000), "events per `POST /api/events`"),
    s("MAX_STREAM_CLIENTS", Some("10000"), int(1, 100_000), "WebSockets on the global streams in all (spread over `ceil(MAX_STREAM_CLIENTS / RELAY_MAX_SOCKETS)` relay objects), and on one subject's stream (`?ip=`, one object: at most 32768, the platform's limit of hibernated WebSockets per object)"),
    s("RELAY_MAX_SOCKETS", Some("1000"), int(1, 32_768), "WebSockets one stream relay object holds at most (each relay sends every event to each of its sockets in turn: fewer per relay, more relays in parallel)"),
    s("STREAM_TICKET_TTL_SECONDS", Some("60"), int(1, 3600), "lifetime of a single-use stream ticket"),
    // Analytics.
    s("ANALYTICS_SLIDE_SECONDS", Some("60"), int(1, 3600), "length of one analytics slide: the unit of rollups, alert rules and insights"),
    s("ANALYTICS_WINDOW_SECONDS", Some("300"), int(1, 86_400), "how far back patterns, trends and anomalies look: 1 to 120 slides, and at least two slides plus the whole slides of the grace period (the grace comes from `FLUSH_INTERVAL_MS`, `REPORT_INTERVAL_MS` and `AGGREGATOR_FORWARD_MS`: [analytics.md](analytics.md))"),
    s("MIN_PATTERN_SUPPORT", Some("3"), int(1, 10_000), "subjects a pattern needs before it is reported"),
    s("TREND_SENSITIVITY", Some("0.2"), Kind::Number { max: 100.0, what: "a number" }, "relative change over the window (slope x (n-1) / mean) beyond which a metric is a trend"),
    s("ANOMALY_THRESHOLD", Some("2.0"), Kind::Number { max: 100.0, what: "a number" }, "z-score of a slide against the window beyond which it is an anomaly"),
    s("ALERT_RULES", None, Kind::Text("JSON array"), "alert rules `{name, metric, operator (> >= < <=), threshold, duration, severity, message, cooldown}`; unset = the 5 built-in rules"),
    s("ALERT_WEBHOOKS", None, Kind::Text("JSON array"), "alert webhooks `{url, format (json, slack), secret or secretVar}`: each rule's transition to firing or resolved is POSTed from the hub's alarm, signed (`X-Intel-Webhook-Signature`), retried with backoff; `https://` only (`http://` for localhost, 127.0.0.1, [::1]); at most 8 (see [analytics.md](analytics.md#alert-webhooks))"),
    s("ALERT_WEBHOOK_SECRET", None, SECRET_16, "the HMAC key of the webhooks whose `secretVar` is `ALERT_WEBHOOK_SECRET` (more keys: `ALERT_WEBHOOK_SECRET_<NAME>`, named the same way)"),
    s("HUB_SHARDS", Some("1"), int(1, 64), "analytics hubs by subject hash, merged on read; shards x slides per window at most 256"),
    s("METRICS_TTL_DAYS", Some("7"), int(1, 365), "TTL of the KV rollups"),
    // Tiered aggregation (docs/analytics.md, "Tiers").
    s("REPORT_INTERVAL_MS", Some("2000"), int(100, 20_000), "how long an isolate folds its analytics samples into slide deltas before it reports them to its aggregator object (jittered +-20%; earlier when the deltas pass 256 KB)"),
    s("AGGREGATORS_PER_REGION", Some("16"), int(1, 64), "aggregator objects per region (continent: `agg:<continent>:<i>`, `other` when unknown); an isolate reports to one of them, chosen by a hash of its id; hub and stream root requests/s = regions x this / AGGREGATOR_FORWARD_MS"),
    s("AGGREGATOR_FORWARD_MS", Some("2000"), int(100, 60_000), "how often an aggregator object forwards one summary per hub shard of what it merged; hub requests/s = aggregators / this period"),
];

/// The setting of this name.
pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// A variable with an invalid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.var, self.message)
    }
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { var, message: message.into() }
}

/// The raw values of every setting: the operator's (trimmed; empty counts as
/// unset, so `KEY = ""` in wrangler.toml means default), else the table's
/// default. Variables not in the table are never read.
pub struct Raw {
    values: Vec<(&'static Setting, Option<String>)>,
}

impl Raw {
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Raw {
        let values =
            SETTINGS.iter().map(|s| (s, get(s.name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()))).collect();
        Raw { values }
    }

    /// The setting and its value (the operator's, else the default). A name
    /// missing from the table is a configuration error naming it (a test
    /// reads every setting, so none ships).
    fn value(&self, name: &'static str) -> Result<(&'static Setting, Option<&str>), ConfigError> {
        let (s, v) = self
            .values
            .iter()
            .find(|(s, _)| s.name == name)
            .ok_or_else(|| err(name, "is not in the settings table (src/settings.rs)"))?;
        Ok((s, v.as_deref().or(s.default)))
    }

    /// Whether the operator set the variable (a default does not count).
    pub fn is_set(&self, name: &'static str) -> bool {
        self.values.iter().any(|(s, v)| s.name == name && v.is_some())
    }

    /// A `Text` (or any) value as written, or `None` when unset without default.
    pub fn text(&self, name: &'static str) -> Result<Option<&str>, ConfigError> {
        Ok(self.value(name)?.1)
    }

    /// The value of a setting that has a default in the table, so the
    /// default is written once (there). A setting without one is an error
    /// naming it (a test reads every setting, so none ships).
    pub fn text_or_default(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.value(name)?.1.ok_or_else(|| err(name, "has no default in the settings table (src/settings.rs)"))
    }

    pub fn bool(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.value(name)? {
            (_, None) => Ok(false),
            (s, Some(v)) => parse_bool(s.name, v),
        }
    }

    /// An `Int` setting (always has a default).
    pub fn int(&self, name: &'static str) -> Result<u64, ConfigError> {
        match self.value(name)? {
            (Setting { kind: Kind::Int { min, max }, .. }, Some(v)) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (*min..=*max).contains(n))
                .ok_or_else(|| err(name, format!("`{v}` is not a whole number from {min} to {max}"))),
            _ => Err(err(name, "is not a whole number setting with a default (src/settings.rs)")),
        }
    }

    /// A `Number` setting (always has a default).
    pub fn number(&self, name: &'static str) -> Result<f64, ConfigError> {
        match self.value(name)? {
            (Setting { kind: Kind::Number { max, what }, .. }, Some(v)) => v
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0 && *x <= *max)
                .ok_or_else(|| err(name, format!("`{v}` is not {what} above 0 and at most {max}"))),
            _ => Err(err(name, "is not a number setting with a default (src/settings.rs)")),
        }
    }

    /// A `Choice` setting's word (always has a default).
    pub fn choice(&self, name: &'static str) -> Result<&'static str, ConfigError> {
        match self.value(name)? {
            (Setting { kind: Kind::Choice(words), .. }, Some(v)) => {
                words.iter().find(|w| **w == v).copied().ok_or_else(|| {
                    let message = match words {
                        [a, b] => format!("`{v}` is not {a} or {b}"),
                        _ => format!("`{v}` is not one of {}", words.join(", ")),
                    };
                    err(name, message)
                })
            }
            _ => Err(err(name, "is not a choice setting with a default (src/settings.rs)")),
        }
    }

    /// A `Secret` setting: `None` when unset, an error when shorter than its minimum.
    pub fn secret(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match self.value(name)? {
            (Setting { kind: Kind::Secret { min_len }, .. }, Some(v)) if v.len() < *min_len => {
                Err(err(name, format!("must be at least {min_len} characters (use a random value)")))
            }
            (Setting { kind: Kind::Secret { .. }, .. }, v) => Ok(v.map(str::to_string)),
            _ => Err(err(name, "is not a secret setting (src/settings.rs)")),
        }
    }
}

pub fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(err(var, format!("`{v}` is not true or false"))),
    }
}

/// The markdown table between the `<!-- settings:table -->` markers of
/// docs/configuration.md: one row per variable.
#[cfg(not(target_arch = "wasm32"))]
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | accepts | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let name = if s.is_secret() { format!("`{}` (secret)", s.name) } else { format!("`{}`", s.name) };
        let default = s.default.map_or_else(|| "unset".to_string(), |d| format!("`{d}`"));
        let accepts = match s.kind {
            Kind::Bool => "`true` or `false`".to_string(),
            Kind::Int { min, max } => format!("whole number, {min} to {max}"),
            Kind::Number { max, .. } => format!("number above 0, at most {max}"),
            Kind::Choice(words) => words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", "),
            Kind::Secret { min_len: 0 } => "any text".to_string(),
            Kind::Secret { min_len } => format!("at least {min_len} characters"),
            Kind::Text(what) => what.to_string(),
        };
        out.push_str(&format!("| {name} | {default} | {accepts} | {} |\n", s.doc));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BEGIN: &str = "<!-- settings:table -->\n";
    const END: &str = "<!-- /settings:table -->";

    #[test]
    fn names_are_unique_and_shouting_snake_case() {
        for (i, s) in SETTINGS.iter().enumerate() {
            let shouting = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
            assert!(s.name.starts_with(|c: char| c.is_ascii_uppercase()) && s.name.chars().all(shouting), "{}", s.name);
            assert!(!SETTINGS[..i].iter().any(|t| t.name == s.name), "{} twice", s.name);
            assert!(!s.doc.is_empty() && !s.doc.contains('\n'), "{}: one line of doc", s.name);
            assert!(!(s.is_secret() && s.default.is_some()), "{}: a secret has no default", s.name);
        }
    }

    #[test]
    fn every_default_is_valid_on_its_own() {
        // Each default, written explicitly, parses to the same Config as unset.
        let defaults = Config::from_vars(|_| None).unwrap();
        for s in SETTINGS {
            if let Some(d) = s.default {
                let c = Config::from_vars(|k| (k == s.name).then(|| d.to_string()));
                assert_eq!(c.as_ref(), Ok(&defaults), "{} = {d:?}", s.name);
            }
        }
    }

    #[test]
    fn the_config_reads_every_setting() {
        // Each setting, set to a value other than its default, changes the
        // Config or is refused: none is in the table but never read.
        let defaults = Config::from_vars(|_| None).unwrap();
        for s in SETTINGS {
            let other = match s.kind {
                Kind::Bool => "true",
                Kind::Int { min, max } => {
                    let n = if s.default == Some(min.to_string().as_str()) { max } else { min };
                    Box::leak(n.to_string().into_boxed_str())
                }
                Kind::Number { .. } => "1.5",
                Kind::Choice(words) => words[1],
                Kind::Secret { .. } | Kind::Text(_) => match s.name {
                    "INTEL_PREFIX" => "/other",
                    "ORIGIN_URL" | "TURNSTILE_VERIFY_URL" => "https://example.com",
                    "RISK_WEIGHTS" => r#"{"tor_exit": 1}"#,
                    "COUNTRY_RISK" => r#"{"XX": 1}"#,
                    "HOSTING_ASNS" => "[64496]",
                    "ALLOW_LIST" | "BLOCK_LIST" => r#"["192.0.2.1"]"#,
                    "ALERT_RULES" => "[]",
                    "ALERT_WEBHOOKS" => r#"[{"url": "https://hooks.example.com/x", "format": "slack"}]"#,
                    "RULES" => r#"[{"id": "a", "action": "block"}]"#,
                    "VISITOR_COOKIE" => "sid",
                    _ => "0123456789abcdef-other",
                },
            };
            let c = Config::from_vars(|k| (k == s.name).then(|| other.to_string()));
            assert_ne!(c.as_ref(), Ok(&defaults), "{} = {other:?} changed nothing", s.name);
        }
    }

    #[test]
    fn kind_errors_keep_their_words() {
        let raw = Raw::read(|k| {
            let v = match k {
                "BLOCK_AT" => "lots",
                "ENFORCE" => "loud",
                "FAIL_MODE" => "ajar",
                "PROFILE_TTL_DAYS" => "0",
                "TREND_SENSITIVITY" => "-1",
                "ADMIN_TOKEN" => "short",
                "TRUST_X_REAL_IP" => "maybe",
                _ => return None,
            };
            Some(v.to_string())
        });
        let msg = |r: Result<String, ConfigError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(raw.int("BLOCK_AT").map(|n| n.to_string())),
            "invalid BLOCK_AT: `lots` is not a whole number from 0 to 100"
        );
        assert_eq!(
            msg(raw.choice("ENFORCE").map(str::to_string)),
            "invalid ENFORCE: `loud` is not one of off, challenge, block"
        );
        assert_eq!(msg(raw.choice("FAIL_MODE").map(str::to_string)), "invalid FAIL_MODE: `ajar` is not open or closed");
        assert_eq!(
            msg(raw.number("PROFILE_TTL_DAYS").map(|n| n.to_string())),
            "invalid PROFILE_TTL_DAYS: `0` is not a number of days above 0 and at most 3650"
        );
        assert_eq!(
            msg(raw.number("TREND_SENSITIVITY").map(|n| n.to_string())),
            "invalid TREND_SENSITIVITY: `-1` is not a number above 0 and at most 100"
        );
        assert_eq!(
            msg(raw.secret("ADMIN_TOKEN").map(|_| String::new())),
            "invalid ADMIN_TOKEN: must be at least 16 characters (use a random value)"
        );
        assert_eq!(
            msg(raw.bool("TRUST_X_REAL_IP").map(|b| b.to_string())),
            "invalid TRUST_X_REAL_IP: `maybe` is not true or false"
        );
        assert!(raw.int("NOT_A_SETTING").is_err());
    }

    #[test]
    fn alert_rules_doc_counts_the_built_in_rules() {
        let n = crate::intel::alerting::default_rules(60.0).len();
        assert!(find("ALERT_RULES").unwrap().doc.contains(&format!("the {n} built-in rules")));
    }

    /// docs/configuration.md's table is this module's table.
    /// `UPDATE_DOCS=1 cargo test settings_doc` rewrites it.
    #[test]
    fn settings_doc_is_generated_from_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let start = doc.find(BEGIN).expect("docs/configuration.md has a <!-- settings:table --> line") + BEGIN.len();
        let end = start + doc[start..].find(END).expect("and a <!-- /settings:table --> line");
        let table = markdown_table();
        if doc[start..end] != table {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                std::fs::write(path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
                return;
            }
            panic!(
                "docs/configuration.md's settings table is not the one src/settings.rs renders; \
                 regenerate it with `UPDATE_DOCS=1 cargo test settings_doc` (edit the table in \
                 src/settings.rs, not the markdown)"
            );
        }
    }

    /// wrangler.toml's `[vars]` (set or commented out as examples) are known
    /// settings with valid values, and no secret is written there.
    #[test]
    fn wrangler_vars_are_known_and_valid() {
        let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/wrangler.toml")).unwrap();
        let vars = toml.split("\n[vars]\n").nth(1).expect("wrangler.toml has [vars]");
        let vars = vars.split("\n[").next().unwrap_or_default();
        let mut seen = 0;
        for line in vars.lines() {
            let line = line.trim_start_matches(['#', ' ']);
            let Some((name, rest)) = line.split_once(" = ") else { continue };
            let name = name.trim();
            if !name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                continue; // prose in a comment
            }
            let rest = rest.trim_start();
            let quote = rest.chars().next().expect("a value");
            assert!(quote == '"' || quote == '\'', "{name}: a quoted string");
            let value = rest[1..].split(quote).next().unwrap();
            let setting = find(name).unwrap_or_else(|| panic!("wrangler.toml sets {name}, which is not a setting"));
            assert!(!setting.is_secret(), "{name} is a secret: `wrangler secret put {name}`, not wrangler.toml");
            let c = Config::from_vars(|k| (k == name).then(|| value.to_string()));
            assert!(c.is_ok(), "wrangler.toml: {name} = {value:?}: {:?}", c.err());
            seen += 1;
        }
        assert!(seen >= 10, "read {seen} vars from wrangler.toml");
    }
}

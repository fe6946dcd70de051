//! Configuration: the Worker's `[vars]` (and secrets) parsed once into a typed,
//! validated `Config`. The core never sees `Env`; the glue hands us a lookup
//! function. An invalid value is an error naming the variable, never a silent
//! default: the Worker then answers every request with that error and
//! `/health/intelligence` reports it.

use serde_json::Value;
use url::Url;

use crate::intel::alerting::{default_rules, parse_rules, Rule};
use crate::intel::analytics::AnalyticsConfig;
use crate::intel::facts::country_code;
use crate::intel::lists::{Lists, RawLists};
use crate::intel::profile::ProfileRules;
use crate::intel::score::Weights;
use crate::intel::signals::{Reason, SignalConfig};
use crate::intel::travel::TravelRules;

/// What the Worker does with a risky request (`ENFORCE`): `off` (monitor only,
/// default), `challenge` or `block`; see `intel::enforce`.
pub use crate::intel::enforce::Mode as Enforce;

/// How long the request path may wait for the subject's profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskMode {
    /// Never wait longer than `CONSULT_TIMEOUT_MS`; fall back to request-only
    /// signals (`degraded`). Observations are coalesced and recorded after
    /// the response (default).
    Fast,
    /// Record this request in the profile first and use the verdict that
    /// includes it (one object call per request: slower, exact).
    Consistent,
}

/// The validated configuration. Each field names its variable and default.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `INTEL_PREFIX` (default `/_intel`): reserved path prefix for the API,
    /// streams and dashboard; never forwarded to the origin.
    pub intel_prefix: String,
    /// `TRUST_X_REAL_IP` (default `false`): take the client IP from
    /// `X-Real-IP` when `CF-Connecting-IP` is absent. Only behind a proxy you run.
    pub trust_x_real_ip: bool,
    /// `ORIGIN_URL` (default unset: pass-through `fetch` of the request):
    /// scheme and host (and port) the request is sent to instead; path and
    /// query are kept.
    pub origin_url: Option<Url>,
    /// `ENFORCE` (default `off`).
    pub enforce: Enforce,
    /// `CHALLENGE_AT` (default 75) and `BLOCK_AT` (default 90): score thresholds.
    pub challenge_at: u8,
    pub block_at: u8,
    /// `RISK_WEIGHTS` (JSON object reason code -> points 0-100) over the defaults.
    pub weights: Weights,
    /// `COUNTRY_RISK` (JSON object country code -> points) and `HOSTING_ASNS`
    /// (JSON array of ASNs, `64496` or `"AS64496"`), for the request signals.
    pub signals: SignalConfig,
    /// `ALLOW_LIST`, `BLOCK_LIST` (JSON arrays: IPs, CIDRs, `AS64496`,
    /// `country:XX`); the API's lists (KV) are added to these.
    pub lists: Lists,
    /// `CHALLENGE_DIFFICULTY` (default 16 leading zero bits, ~65k hashes).
    pub challenge_difficulty: u8,
    /// `CHALLENGE_SIGNING_KEY` (secret; required for `ENFORCE=challenge|block`).
    pub challenge_key: Option<String>,
    /// `CLEARANCE_TTL_SECONDS` (default 3600): how long a solved challenge lasts.
    pub clearance_ttl_s: u32,
    /// `TURNSTILE_SITE_KEY` (var) and `TURNSTILE_SECRET` (secret): use
    /// Cloudflare Turnstile for challenges instead of the proof-of-work;
    /// `TURNSTILE_VERIFY_URL` overrides the siteverify endpoint (tests).
    pub turnstile: Option<(String, String)>,
    pub turnstile_verify_url: String,
    /// `HEADER_SIGNING_KEY` (secret): sign our headers with `X-Intel-Signature`.
    pub header_signing_key: Option<String>,
    /// `IP_HASH_KEY` (secret): store and show only keyed hashes and masked IPs.
    pub ip_hash_key: Option<String>,
    /// `FAIL_MODE` (`open`, default | `closed`): when the profile cannot be
    /// consulted, forward degraded (open) or answer 503 (closed).
    pub fail_closed: bool,
    /// `ADMIN_TOKEN` (secret, at least 16 characters; unset = the API refuses every call with 503).
    pub admin_token: Option<String>,
    /// `RISK_MODE` (`fast` | `consistent`, default `fast`).
    pub risk_mode: RiskMode,
    /// `CONSULT_TIMEOUT_MS` (default 50): the fast-mode budget for a profile lookup.
    pub consult_timeout_ms: u32,
    /// `CONSISTENT_TIMEOUT_MS` (default 5000): even consistent mode stops
    /// waiting for a stuck object after this, and goes on degraded.
    pub consistent_timeout_ms: u32,
    /// `ORIGIN_TIMEOUT_MS` (default 30000): how long to wait for the origin's
    /// response headers before answering 504 (the body then streams freely).
    pub origin_timeout_ms: u32,
    /// `FLUSH_INTERVAL_MS` (default 1000): how long observations of one subject
    /// are coalesced in the isolate before they go to its object as a batch.
    pub flush_interval_ms: u32,
    /// `FLUSH_CALM_MS` (default 10000): how long a subject's batch of only
    /// calm observations (low verdict, no signal, status below 400) may wait,
    /// so that later page views join it. Not above 25000 (a request's
    /// `waitUntil` lasts 30 s after its response); at or below
    /// `FLUSH_INTERVAL_MS`, every batch uses the short interval.
    pub flush_calm_ms: u32,
    /// `FLUSH_MAX_BATCH` (default 64): a batch this full is sent at once.
    pub flush_max_batch: usize,
    /// `CACHE_TTL_MS` (default 30000) and `CACHE_MAX_ENTRIES` (default 10000):
    /// the in-isolate verdict cache (bounded LRU).
    pub cache_ttl_ms: u32,
    pub cache_max_entries: usize,
    /// Profile rules: `VELOCITY_RPM` (120), `BURST_WINDOW_SECONDS` (300),
    /// `AUTH_FAILURE_BURST` (10), `NOT_FOUND_BURST` (20), `GEO_JUMP_KM` (500),
    /// `THREAT_HALF_LIFE_MIN` (360), `REPUTATION_HALF_LIFE_MIN` (1440).
    pub rules: ProfileRules,
    /// `TRAVEL_MAX_KMH` (900), `TRAVEL_MIN_KM` (500).
    pub travel: TravelRules,
    /// `PROFILE_TTL_DAYS` (default 30; decimals allowed, e.g. `0.5`): a profile
    /// or visitor without activity this long is deleted by its object's alarm.
    /// Kept in ms.
    pub profile_ttl_ms: f64,
    /// `MAX_STREAM_CLIENTS` (default 10000, at most 32768, the platform's limit
    /// of hibernated WebSockets per object): sockets per stream object.
    pub max_stream_clients: usize,
    /// `STREAM_TICKET_TTL_SECONDS` (default 60): how long a stream ticket is valid.
    pub stream_ticket_ttl_ms: f64,
    /// `MAX_EVENT_BATCH` (default 500): events per `POST /api/events`.
    pub max_event_batch: usize,
    /// `ANALYTICS_SLIDE_SECONDS` (60), `ANALYTICS_WINDOW_SECONDS` (300),
    /// `MIN_PATTERN_SUPPORT` (3), `TREND_SENSITIVITY` (0.2), `ANOMALY_THRESHOLD` (2.0).
    pub analytics: AnalyticsConfig,
    /// `HUB_SHARDS` (default 1): analytics hubs, keyed by subject hash, merged on read.
    pub hub_shards: u32,
    /// `ALERT_RULES` (JSON array; default: the four rules of SPEC 7).
    pub alert_rules: Vec<Rule>,
    /// `METRICS_TTL_DAYS` (default 7): how long KV rollups are kept.
    pub metrics_ttl_s: u64,
    /// `VISITOR_COOKIE` (default unset): name of the site's own session cookie
    /// whose (hashed) value identifies a visitor for impossible travel.
    pub visitor_cookie: Option<String>,
    /// `SET_VISITOR_COOKIE` (default false): set a signed first-party cookie
    /// `ei_vid` when the request has none; needs the `VISITOR_SIGNING_KEY` secret.
    pub set_visitor_cookie: bool,
    pub visitor_signing_key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            intel_prefix: "/_intel".to_string(),
            trust_x_real_ip: false,
            origin_url: None,
            enforce: Enforce::Off,
            challenge_at: 75,
            block_at: 90,
            weights: Weights::default(),
            signals: SignalConfig::default(),
            admin_token: None,
            fail_closed: false,
            lists: Lists::default(),
            challenge_difficulty: 16,
            challenge_key: None,
            clearance_ttl_s: 3600,
            header_signing_key: None,
            turnstile: None,
            turnstile_verify_url: "https://challenges.cloudflare.com/turnstile/v0/siteverify".to_string(),
            ip_hash_key: None,
            risk_mode: RiskMode::Fast,
            consult_timeout_ms: 50,
            consistent_timeout_ms: 5000,
            origin_timeout_ms: 30_000,
            flush_interval_ms: 1000,
            flush_calm_ms: 10_000,
            flush_max_batch: 64,
            cache_ttl_ms: 30_000,
            cache_max_entries: 10_000,
            rules: ProfileRules::default(),
            travel: TravelRules { max_kmh: 900.0, min_km: 500.0, memory_ms: 3_600_000.0 },
            profile_ttl_ms: 30.0 * 86_400_000.0,
            max_event_batch: 500,
            max_stream_clients: 10_000,
            analytics: AnalyticsConfig::default(),
            hub_shards: 1,
            alert_rules: default_rules(60.0),
            metrics_ttl_s: 7 * 86_400,
            stream_ticket_ttl_ms: 60_000.0,
            visitor_cookie: None,
            set_visitor_cookie: false,
            visitor_signing_key: None,
        }
    }
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

impl Config {
    /// Parses every variable through `get` (which returns `None` for unset).
    /// Empty strings count as unset, so `KEY = ""` in wrangler.toml means default.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut c = Config::default();
        if let Some(p) = get("INTEL_PREFIX") {
            c.intel_prefix = parse_prefix(&p)?;
        }
        if let Some(v) = get("TRUST_X_REAL_IP") {
            c.trust_x_real_ip = parse_bool("TRUST_X_REAL_IP", &v)?;
        }
        if let Some(v) = get("ORIGIN_URL") {
            c.origin_url = Some(parse_origin(&v)?);
        }
        if let Some(v) = get("ENFORCE") {
            c.enforce = match v.as_str() {
                "off" => Enforce::Off,
                "challenge" => Enforce::Challenge,
                "block" => Enforce::Block,
                _ => return Err(err("ENFORCE", format!("`{v}` is not one of off, challenge, block"))),
            };
        }
        if let Some(v) = get("CHALLENGE_AT") {
            c.challenge_at = parse_points("CHALLENGE_AT", &v)?;
        }
        if let Some(v) = get("BLOCK_AT") {
            c.block_at = parse_points("BLOCK_AT", &v)?;
        }
        if c.challenge_at > c.block_at {
            return Err(err("CHALLENGE_AT", format!("{} is above BLOCK_AT ({})", c.challenge_at, c.block_at)));
        }
        if let Some(v) = get("RISK_WEIGHTS") {
            for (code, points) in parse_points_map("RISK_WEIGHTS", &v)? {
                let reason = Reason::from_code(&code)
                    .ok_or_else(|| err("RISK_WEIGHTS", format!("unknown reason code `{code}`")))?;
                c.weights.set(reason, points);
            }
        }
        if let Some(v) = get("COUNTRY_RISK") {
            for (code, points) in parse_points_map("COUNTRY_RISK", &v)? {
                let cc = country_code(&code)
                    .ok_or_else(|| err("COUNTRY_RISK", format!("`{code}` is not a two-letter country code")))?;
                c.signals.country_risk.push((cc, points));
            }
        }
        if let Some(v) = get("HOSTING_ASNS") {
            c.signals.extra_hosting_asns = parse_asn_list("HOSTING_ASNS", &v)?;
        }
        if let Some(v) = get("FAIL_MODE") {
            c.fail_closed = match v.as_str() {
                "open" => false,
                "closed" => true,
                _ => return Err(err("FAIL_MODE", format!("`{v}` is not open or closed"))),
            };
        }
        let list = |var: &'static str| -> Result<Vec<String>, ConfigError> {
            match get(var) {
                None => Ok(Vec::new()),
                Some(v) => serde_json::from_str::<Vec<String>>(&v)
                    .map_err(|e| err(var, format!("not a JSON array of strings: {e}"))),
            }
        };
        let raw = RawLists { allow: list("ALLOW_LIST")?, block: list("BLOCK_LIST")? };
        c.lists = Lists::parse(&raw).map_err(|e| err("ALLOW_LIST/BLOCK_LIST", e))?;
        let secret = |var: &'static str| -> Result<Option<String>, ConfigError> {
            match get(var) {
                Some(v) if v.len() < 16 => Err(err(var, "must be at least 16 characters (use a random value)")),
                other => Ok(other),
            }
        };
        // The admin token guards every profile: as long as the other secrets,
        // so that guessing it (also limited per client: intel::auth_guard) is hopeless.
        c.admin_token = secret("ADMIN_TOKEN")?;
        c.challenge_key = secret("CHALLENGE_SIGNING_KEY")?;
        c.header_signing_key = secret("HEADER_SIGNING_KEY")?;
        c.turnstile = match (get("TURNSTILE_SITE_KEY"), get("TURNSTILE_SECRET")) {
            (Some(site), Some(secret)) => Some((site, secret)),
            (None, None) => None,
            _ => {
                return Err(err(
                    "TURNSTILE_SITE_KEY",
                    "set both TURNSTILE_SITE_KEY and the secret TURNSTILE_SECRET, or neither",
                ))
            }
        };
        if let Some(v) = get("TURNSTILE_VERIFY_URL") {
            c.turnstile_verify_url = parse_origin_or_url("TURNSTILE_VERIFY_URL", &v)?;
        }
        c.ip_hash_key = secret("IP_HASH_KEY")?;
        if c.enforce != Enforce::Off && c.challenge_key.is_none() {
            return Err(err(
                "ENFORCE",
                "challenge and block modes need the secret CHALLENGE_SIGNING_KEY (at least 16 characters): wrangler secret put CHALLENGE_SIGNING_KEY",
            ));
        }
        if let Some(v) = get("RISK_MODE") {
            c.risk_mode = match v.as_str() {
                "fast" => RiskMode::Fast,
                "consistent" => RiskMode::Consistent,
                _ => return Err(err("RISK_MODE", format!("`{v}` is not fast or consistent"))),
            };
        }
        let num = |var: &'static str, min: u64, max: u64| -> Result<Option<u64>, ConfigError> {
            match get(var) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .map(Some)
                    .ok_or_else(|| err(var, format!("`{v}` is not a whole number from {min} to {max}"))),
            }
        };
        // Narrowing casts below are within the ranges just checked.
        if let Some(n) = num("CHALLENGE_DIFFICULTY", 1, 28)? {
            c.challenge_difficulty = n as u8;
        }
        if let Some(n) = num("CLEARANCE_TTL_SECONDS", 1, 30 * 86_400)? {
            c.clearance_ttl_s = n as u32;
        }
        if let Some(n) = num("CONSULT_TIMEOUT_MS", 1, 10_000)? {
            c.consult_timeout_ms = n as u32;
        }
        if let Some(n) = num("CONSISTENT_TIMEOUT_MS", 1, 60_000)? {
            c.consistent_timeout_ms = n as u32;
        }
        if let Some(n) = num("ORIGIN_TIMEOUT_MS", 100, 600_000)? {
            c.origin_timeout_ms = n as u32;
        }
        if let Some(n) = num("FLUSH_INTERVAL_MS", 10, 60_000)? {
            c.flush_interval_ms = n as u32;
        }
        if let Some(n) = num("FLUSH_CALM_MS", 10, 25_000)? {
            c.flush_calm_ms = n as u32;
        }
        if let Some(n) = num("FLUSH_MAX_BATCH", 1, 1000)? {
            c.flush_max_batch = n as usize;
        }
        if let Some(n) = num("CACHE_TTL_MS", 0, 600_000)? {
            c.cache_ttl_ms = n as u32;
        }
        if let Some(n) = num("CACHE_MAX_ENTRIES", 1, 1_000_000)? {
            c.cache_max_entries = n as usize;
        }
        if let Some(n) = num("VELOCITY_RPM", 1, 1_000_000)? {
            c.rules.velocity_rpm = n as f64;
        }
        if let Some(n) = num("BURST_WINDOW_SECONDS", 10, 86_400)? {
            c.rules.burst_window_ms = n as f64 * 1000.0;
        }
        if let Some(n) = num("AUTH_FAILURE_BURST", 1, 100_000)? {
            c.rules.auth_failure_burst = n as f64;
        }
        if let Some(n) = num("NOT_FOUND_BURST", 1, 100_000)? {
            c.rules.not_found_burst = n as f64;
        }
        if let Some(n) = num("GEO_JUMP_KM", 1, 20_100)? {
            c.rules.geo_jump_km = n as f64;
        }
        if let Some(n) = num("THREAT_HALF_LIFE_MIN", 1, 525_600)? {
            c.rules.threat_half_life_ms = n as f64 * 60_000.0;
        }
        if let Some(n) = num("REPUTATION_HALF_LIFE_MIN", 1, 525_600)? {
            c.rules.reputation_half_life_ms = n as f64 * 60_000.0;
        }
        if let Some(n) = num("TRAVEL_MAX_KMH", 1, 100_000)? {
            c.travel.max_kmh = n as f64;
        }
        if let Some(n) = num("TRAVEL_MIN_KM", 0, 20_100)? {
            c.travel.min_km = n as f64;
        }
        if let Some(v) = get("PROFILE_TTL_DAYS") {
            let days =
                v.parse::<f64>().ok().filter(|d| d.is_finite() && *d > 0.0 && *d <= 3650.0).ok_or_else(|| {
                    err("PROFILE_TTL_DAYS", format!("`{v}` is not a number of days above 0 and at most 3650"))
                })?;
            c.profile_ttl_ms = days * 86_400_000.0;
        }
        if let Some(n) = num("MAX_STREAM_CLIENTS", 1, 32_768)? {
            c.max_stream_clients = n as usize;
        }
        if let Some(n) = num("STREAM_TICKET_TTL_SECONDS", 1, 3600)? {
            c.stream_ticket_ttl_ms = n as f64 * 1000.0;
        }
        if let Some(n) = num("MAX_EVENT_BATCH", 1, 10_000)? {
            c.max_event_batch = n as usize;
        }
        if let Some(n) = num("ANALYTICS_SLIDE_SECONDS", 1, 3600)? {
            c.analytics.slide_s = n as i64;
        }
        if let Some(n) = num("ANALYTICS_WINDOW_SECONDS", 1, 86_400)? {
            c.analytics.window_s = n as i64;
        }
        if c.analytics.window_s < c.analytics.slide_s || c.analytics.window_s / c.analytics.slide_s > 120 {
            return Err(err(
                "ANALYTICS_WINDOW_SECONDS",
                format!("must hold 1 to 120 slides of ANALYTICS_SLIDE_SECONDS ({} s)", c.analytics.slide_s),
            ));
        }
        if let Some(n) = num("MIN_PATTERN_SUPPORT", 1, 10_000)? {
            c.analytics.min_support = n as usize;
        }
        let fraction = |var: &'static str, max: f64| -> Result<Option<f64>, ConfigError> {
            match get(var) {
                None => Ok(None),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0 && *x <= max)
                    .map(Some)
                    .ok_or_else(|| err(var, format!("`{v}` is not a number above 0 and at most {max}"))),
            }
        };
        if let Some(x) = fraction("TREND_SENSITIVITY", 100.0)? {
            c.analytics.trend_sensitivity = x;
        }
        if let Some(x) = fraction("ANOMALY_THRESHOLD", 100.0)? {
            c.analytics.anomaly_threshold = x;
        }
        if let Some(n) = num("HUB_SHARDS", 1, 64)? {
            c.hub_shards = n as u32;
        }
        c.alert_rules = match get("ALERT_RULES") {
            Some(v) => parse_rules(&v).map_err(|e| err("ALERT_RULES", e))?,
            None => default_rules(c.analytics.slide_s as f64),
        };
        c.analytics.grace_ms = 2.0 * f64::from(c.flush_interval_ms) + 500.0;
        if let Some(n) = num("METRICS_TTL_DAYS", 1, 365)? {
            c.metrics_ttl_s = n * 86_400;
        }
        if let Some(v) = get("VISITOR_COOKIE") {
            let ok = v.len() <= 64 && v.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch));
            if !ok {
                return Err(err("VISITOR_COOKIE", format!("`{v}` is not a cookie name")));
            }
            c.visitor_cookie = Some(v);
        }
        if let Some(v) = get("SET_VISITOR_COOKIE") {
            c.set_visitor_cookie = parse_bool("SET_VISITOR_COOKIE", &v)?;
        }
        c.visitor_signing_key = get("VISITOR_SIGNING_KEY");
        if c.set_visitor_cookie && c.visitor_signing_key.as_deref().is_none_or(|k| k.len() < 16) {
            return Err(err(
                "SET_VISITOR_COOKIE",
                "needs the secret VISITOR_SIGNING_KEY (at least 16 characters): wrangler secret put VISITOR_SIGNING_KEY",
            ));
        }
        Ok(c)
    }
}

fn parse_prefix(p: &str) -> Result<String, ConfigError> {
    let ok = p.starts_with('/')
        && p.len() >= 2
        && !p.ends_with('/')
        && p.chars().all(|c| c.is_ascii_alphanumeric() || "/_-.".contains(c))
        && !p.contains("//");
    if ok {
        Ok(p.to_string())
    } else {
        Err(err("INTEL_PREFIX", format!("`{p}` must look like /_intel (a path starting with /, no trailing /)")))
    }
}

fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(err(var, format!("`{v}` is not true or false"))),
    }
}

/// Parses a URL setting. International host names must be written in their
/// ASCII (punycode) form: the Worker is built without Unicode IDNA tables
/// (Cargo.toml, `idna_adapter`), which would cost ~40 KB of gzipped wasm.
/// Non-ASCII text is refused before the URL parser sees it: without the
/// tables, idna's stub would only turn it into an error anyway, and in builds
/// with debug assertions (tests, fuzzing) it asserts on such input.
fn parse_url(var: &'static str, v: &str) -> Result<Url, ConfigError> {
    if !v.is_ascii() {
        return Err(err(var, format!("`{v}` is not ASCII: write an international host name in punycode (xn--...)")));
    }
    // A percent-encoded byte in the host decodes to non-ASCII inside the URL
    // parser, where idna's table-less stub (see Cargo.toml) debug-asserts:
    // found by the config fuzzer (`https:/{D%AAi`). URL settings need none.
    if v.contains('%') {
        return Err(err(var, format!("`{v}` has percent-encoding: write the URL plainly (hosts in punycode)")));
    }
    Url::parse(v).map_err(|e| err(var, format!("`{v}` is not a URL: {e}")))
}

fn parse_origin(v: &str) -> Result<Url, ConfigError> {
    let u = parse_url("ORIGIN_URL", v)?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(err("ORIGIN_URL", format!("`{v}` must be an http(s) URL with a host")));
    }
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
        return Err(err(
            "ORIGIN_URL",
            format!("`{v}` must be scheme://host[:port] only; the request keeps its own path"),
        ));
    }
    Ok(u)
}

fn parse_origin_or_url(var: &'static str, v: &str) -> Result<String, ConfigError> {
    let u = parse_url(var, v)?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(err(var, "must be an http(s) URL"));
    }
    Ok(u.to_string())
}

fn parse_points(var: &'static str, v: &str) -> Result<u8, ConfigError> {
    v.parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| err(var, format!("`{v}` is not a whole number from 0 to 100")))
}

fn parse_points_map(var: &'static str, v: &str) -> Result<Vec<(String, u8)>, ConfigError> {
    let value: Value = serde_json::from_str(v).map_err(|e| err(var, format!("not JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| err(var, "must be a JSON object of name -> points"))?;
    obj.iter()
        .map(|(k, p)| {
            let points = p
                .as_u64()
                .filter(|p| *p <= 100)
                .and_then(|p| u8::try_from(p).ok())
                .ok_or_else(|| err(var, format!("`{k}`: {p} is not a whole number from 0 to 100")))?;
            Ok((k.clone(), points))
        })
        .collect()
}

/// `[13335, "AS14061"]` -> ASNs.
pub fn parse_asn_list(var: &'static str, v: &str) -> Result<Vec<u32>, ConfigError> {
    let value: Value = serde_json::from_str(v).map_err(|e| err(var, format!("not JSON: {e}")))?;
    let items = value.as_array().ok_or_else(|| err(var, "must be a JSON array of ASNs"))?;
    items
        .iter()
        .map(|item| {
            let n = match item {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => {
                    let digits = s.strip_prefix("AS").or_else(|| s.strip_prefix("as")).unwrap_or(s);
                    digits.parse::<u64>().ok()
                }
                _ => None,
            };
            n.and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| err(var, format!("{item} is not an ASN")))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.intel_prefix, "/_intel");
        assert_eq!(c.weights.get(Reason::TorExit), 45);
        assert!(c.signals.country_risk.is_empty());
    }

    #[test]
    fn valid_values() {
        let c = parse(&[
            ("INTEL_PREFIX", "/edge-intel"),
            ("TRUST_X_REAL_IP", "true"),
            ("ORIGIN_URL", "http://127.0.0.1:8788"),
            ("BLOCK_AT", "95"),
            ("RISK_WEIGHTS", r#"{"tor_exit": 60, "geo_jump": 0}"#),
            ("COUNTRY_RISK", r#"{"xx": 30}"#),
            ("HOSTING_ASNS", r#"[64496, "AS64497"]"#),
            ("ENFORCE", ""),
            ("RISK_MODE", "consistent"),
            ("CONSULT_TIMEOUT_MS", "20"),
            ("THREAT_HALF_LIFE_MIN", "60"),
            ("VISITOR_COOKIE", "session_id"),
            ("SET_VISITOR_COOKIE", "true"),
            ("VISITOR_SIGNING_KEY", "0123456789abcdef0123"),
        ])
        .unwrap();
        assert_eq!(c.risk_mode, RiskMode::Consistent);
        assert_eq!(c.consult_timeout_ms, 20);
        assert_eq!(c.rules.threat_half_life_ms, 3_600_000.0);
        assert_eq!(c.visitor_cookie.as_deref(), Some("session_id"));
        assert!(c.set_visitor_cookie);
        assert_eq!(c.intel_prefix, "/edge-intel");
        assert!(c.trust_x_real_ip);
        assert_eq!(c.origin_url.unwrap().as_str(), "http://127.0.0.1:8788/");
        assert_eq!(c.block_at, 95);
        assert_eq!(c.weights.get(Reason::TorExit), 60);
        assert_eq!(c.weights.get(Reason::GeoJump), 0);
        assert_eq!(c.signals.country_risk, vec![("XX".to_string(), 30)]);
        assert_eq!(c.signals.extra_hosting_asns, vec![64496, 64497]);
    }

    #[test]
    fn admin_token_needs_16_characters() {
        let e = parse(&[("ADMIN_TOKEN", "hunter2")]).unwrap_err();
        assert_eq!(e.var, "ADMIN_TOKEN");
        assert!(e.to_string().contains("at least 16 characters"), "{e}");
        assert_eq!(
            parse(&[("ADMIN_TOKEN", "0123456789abcdef")]).unwrap().admin_token.as_deref(),
            Some("0123456789abcdef")
        );
        // The tokens the test harness, the benchmarks and `npm start` use qualify.
        for t in ["test-admin-token-0123456789", "bench-admin-token-0123456789", "profile-admin-token-0123456789"] {
            assert!(parse(&[("ADMIN_TOKEN", t)]).is_ok(), "{t}");
        }
        assert_eq!(parse(&[("ADMIN_TOKEN", "")]).unwrap().admin_token, None, "empty is unset: the API answers 503");
    }

    #[test]
    fn international_hosts_are_written_in_punycode() {
        let e = parse(&[("ORIGIN_URL", "https://bücher.example")]).unwrap_err().to_string();
        assert!(e.contains("ORIGIN_URL") && e.contains("punycode"), "{e}");
        // Found by the config fuzz target: a non-ASCII host with capitals hit a
        // debug assertion in idna's table-less stub.
        let e = parse(&[("ORIGIN_URL", "https://eSK_WFIGHTS\u{84}\"m/_intel")]).unwrap_err().to_string();
        assert!(e.contains("ORIGIN_URL") && e.contains("not ASCII"), "{e}");
        // Found by the config fuzz target too: ASCII that percent-decodes to a
        // non-ASCII host with capitals.
        let e = parse(&[("ORIGIN_URL", "https:/{D%AAi")]).unwrap_err().to_string();
        assert!(e.contains("ORIGIN_URL") && e.contains("percent-encoding"), "{e}");
        let c = parse(&[("ORIGIN_URL", "https://xn--bcher-kva.example")]).unwrap();
        assert_eq!(c.origin_url.unwrap().host_str(), Some("xn--bcher-kva.example"));
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let cases = [
            ("INTEL_PREFIX", "_intel"),
            ("INTEL_PREFIX", "/_intel/"),
            ("TRUST_X_REAL_IP", "maybe"),
            ("ORIGIN_URL", "not a url"),
            ("ORIGIN_URL", "ftp://example.com"),
            ("ORIGIN_URL", "https://example.com/base"),
            ("ENFORCE", "block"),
            ("ENFORCE", "loud"),
            ("IP_HASH_KEY", "short"),
            ("ADMIN_TOKEN", "fifteen-chars-x"),
            ("CHALLENGE_DIFFICULTY", "40"),
            ("BLOCK_AT", "101"),
            ("BLOCK_AT", "-1"),
            ("CHALLENGE_AT", "95"),
            ("RISK_WEIGHTS", "{"),
            ("RISK_WEIGHTS", r#"{"made_up": 10}"#),
            ("RISK_WEIGHTS", r#"{"tor_exit": 500}"#),
            ("COUNTRY_RISK", r#"{"Russia": 10}"#),
            ("COUNTRY_RISK", "[]"),
            ("HOSTING_ASNS", r#"["ASX"]"#),
            ("HOSTING_ASNS", "[0]"),
            ("RISK_MODE", "slow"),
            ("CONSULT_TIMEOUT_MS", "0"),
            ("FLUSH_INTERVAL_MS", "1e3"),
            ("VELOCITY_RPM", "-5"),
            ("PROFILE_TTL_DAYS", "0"),
            ("VISITOR_COOKIE", "a b"),
            ("SET_VISITOR_COOKIE", "true"),
            ("ANALYTICS_WINDOW_SECONDS", "30"),
            ("TREND_SENSITIVITY", "-1"),
            ("HUB_SHARDS", "0"),
            ("ALERT_RULES", "[{}]"),
        ];
        for (var, value) in cases {
            let e = parse(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{var}={value}: {e}");
            assert!(e.to_string().starts_with(&format!("invalid {var}: ")));
        }
    }
}

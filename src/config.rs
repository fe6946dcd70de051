//! Configuration: the Worker's `[vars]` (and secrets) parsed once into a typed,
//! validated `Config`. The core never sees `Env`; the glue hands us a lookup
//! function. Names, defaults, ranges and docs are in the settings table
//! (`crate::settings`); this module turns those raw values into typed parts
//! and checks what involves structure or several variables. An invalid value is an error naming the variable, never a silent
//! default: the Worker then answers every request with that error and
//! `/health/intelligence` reports it.

use serde_json::Value;
use url::Url;

use crate::intel::alerting::{default_rules, parse_rules, Rule};
use crate::intel::analytics::AnalyticsConfig;
use crate::intel::facts::country_code;
use crate::intel::lists::{Lists, RawLists};
use crate::intel::profile::ProfileRules;
use crate::intel::rules::{describe, parse_rules as parse_route_rules, usable, RouteRule};
use crate::intel::score::Weights;
use crate::intel::signals::{Reason, SignalConfig};
use crate::intel::travel::TravelRules;
use crate::intel::webhooks::{parse_targets, Target};
pub use crate::settings::ConfigError;
use crate::settings::Raw;

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

/// Slides of all hub shards' windows merged at once at most (`HUB_SHARDS` x
/// slides per window): shard 0's tick and every analytics read hold them all.
pub const MAX_MERGED_SLIDES: i64 = 256;

/// The validated configuration, made of parts so that glue can take only
/// the part it needs. Each field names its variable(s); their defaults,
/// ranges and docs are in the settings table (`crate::settings`).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `INTEL_PREFIX`: reserved path prefix for the API, streams and
    /// dashboard; never forwarded to the origin.
    pub intel_prefix: String,
    /// `TRUST_X_REAL_IP`: take the client IP from `X-Real-IP` when
    /// `CF-Connecting-IP` is absent. Only behind a proxy you run.
    pub trust_x_real_ip: bool,
    /// Where requests go (`ORIGIN_URL`, `ORIGIN_TIMEOUT_MS`).
    pub origin: Origin,
    /// Consulting the subject's profile and the verdict cache.
    pub consult: Consult,
    /// Coalescing observations in the isolate.
    pub flush: Flush,
    /// `RISK_WEIGHTS` (reason code -> points 0-100) over the defaults.
    pub weights: Weights,
    /// `COUNTRY_RISK` and `HOSTING_ASNS`, for the request signals.
    pub signals: SignalConfig,
    /// `GOOD_BOT_SOURCES`: crawler name -> the URLs the Cron Trigger fetches
    /// its ranges from instead of the published ones (`intel::crawlers`).
    pub crawler_sources: std::collections::BTreeMap<String, Vec<String>>,
    /// `SIGNED_AGENTS`: whose Web Bot Auth signatures are verified.
    pub signed_agents: crate::intel::signed_agent::Trust,
    /// `SIGNED_AGENTS_TRUSTED`: the verified agents treated like verified crawlers.
    pub signed_agents_trusted: Vec<String>,
    /// `SIGNED_AGENT_MAX_WINDOW_SECONDS`.
    pub signed_agents_window_s: u32,
    /// `ALLOW_LIST`, `BLOCK_LIST`; the API's lists (KV) are added to these.
    pub lists: Lists,
    /// What to do with a risky request, and the challenge.
    pub enforce: Enforcement,
    /// Profile rules: `VELOCITY_RPM`, `BURST_WINDOW_SECONDS`,
    /// `AUTH_FAILURE_BURST`, `NOT_FOUND_BURST`, `GEO_JUMP_KM`,
    /// `THREAT_HALF_LIFE_MIN`, `REPUTATION_HALF_LIFE_MIN`.
    pub rules: ProfileRules,
    /// `TRAVEL_MAX_KMH`, `TRAVEL_MIN_KM`.
    pub travel: TravelRules,
    /// `PROFILE_TTL_DAYS` (decimals allowed): a profile or visitor without
    /// activity this long is deleted by its object's alarm. Kept in ms.
    pub profile_ttl_ms: f64,
    /// New subjects per /48 and per ASN, and how long a subject seen once is kept.
    pub subjects: Subjects,
    /// `DATA_JURISDICTION`: where every Durable Object is created (`None`: anywhere).
    pub jurisdiction: Option<Jurisdiction>,
    /// Identifying a visitor for impossible travel.
    pub visitor: Visitor,
    /// `MAX_EVENT_BATCH`: events per `POST /api/events`.
    pub max_event_batch: usize,
    /// Stream sockets and tickets.
    pub streams: Streams,
    /// `ANALYTICS_SLIDE_SECONDS`, `ANALYTICS_WINDOW_SECONDS`,
    /// `MIN_PATTERN_SUPPORT`, `TREND_SENSITIVITY`, `ANOMALY_THRESHOLD`.
    pub analytics: AnalyticsConfig,
    /// The analytics hubs: shards, alert rules, rollup TTL.
    pub hub: Hub,
    /// The secrets (`wrangler secret put`), each at least 16 characters.
    pub secrets: Secrets,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// `ORIGIN_URL` (unset: pass-through `fetch` of the request): scheme and
    /// host (and port) the request is sent to instead; path and query are kept.
    pub url: Option<Url>,
    /// `ORIGIN_TIMEOUT_MS`: how long to wait for the origin's response
    /// headers before answering 504 (the body then streams freely).
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Consult {
    /// `RISK_MODE` (`fast` | `consistent`).
    pub mode: RiskMode,
    /// `CONSULT_TIMEOUT_MS`: the fast-mode budget for a profile lookup (and
    /// the lists' KV read).
    pub timeout_ms: u32,
    /// `CONSISTENT_TIMEOUT_MS`: even consistent mode stops waiting for a stuck
    /// object after this, and goes on degraded.
    pub consistent_timeout_ms: u32,
    /// `FAIL_MODE` (`open` | `closed`): when the profile cannot be consulted,
    /// forward degraded (open) or answer 503 (closed).
    pub fail_closed: bool,
    /// `CACHE_TTL_MS` and `CACHE_MAX_ENTRIES`: the in-isolate verdict cache
    /// (bounded LRU).
    pub cache_ttl_ms: u32,
    pub cache_max_entries: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Flush {
    /// `FLUSH_INTERVAL_MS`: how long observations of one subject are coalesced
    /// in the isolate before they go to its object as a batch.
    pub interval_ms: u32,
    /// `FLUSH_CALM_MS`: how long a subject's batch of only calm observations
    /// (low verdict, no signal, status below 400) may wait, so that later page
    /// views join it. Not above 25000 (a request's `waitUntil` lasts 30 s after
    /// its response); at or below `interval_ms`, every batch uses the short
    /// interval.
    pub calm_ms: u32,
    /// `FLUSH_MAX_BATCH`: a batch this full is sent at once.
    pub max_batch: usize,
    /// `REPORT_INTERVAL_MS`: how long the isolate folds analytics samples
    /// into slide deltas before reporting them to its aggregator (jittered).
    pub report_ms: u32,
    /// `AGGREGATORS_PER_REGION`: aggregator objects per region (continent).
    pub aggregators_per_region: u32,
}

/// How new subjects are admitted and kept (docs/profiles.md, "Rotation
/// budget" and "Retention").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Subjects {
    /// `ROTATION_BUDGET_PER_48` and `ROTATION_BUDGET_PER_ASN` (0: no budget).
    pub rotation: crate::intel::rotation::Budget,
    /// `SEEN_ONCE_TTL_HOURS` in ms, never above `PROFILE_TTL_DAYS`: a profile
    /// of one quiet request is deleted this long after it.
    pub seen_once_ttl_ms: f64,
}

/// `DATA_JURISDICTION`: the jurisdiction every Durable Object id is made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jurisdiction {
    Eu,
    FedRamp,
}

impl Jurisdiction {
    /// The platform's name (`DurableObjectNamespace.jurisdiction(name)`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Jurisdiction::Eu => "eu",
            Jurisdiction::FedRamp => "fedramp",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Enforcement {
    /// `ENFORCE` (`off` | `challenge` | `block`).
    pub mode: Enforce,
    /// `CHALLENGE_AT` and `BLOCK_AT`: score thresholds (challenge <= block).
    pub challenge_at: u8,
    pub block_at: u8,
    /// `CHALLENGE_DIFFICULTY`: leading zero bits of the proof-of-work.
    pub difficulty: u8,
    /// `CHALLENGE_DIFFICULTY_MAX` and `_STEP`: the difficulty grows with the
    /// score (`intel::challenge::Difficulty`; `difficulty` is its base).
    pub difficulty_max: u8,
    pub difficulty_step: u8,
    /// `CHALLENGE_NOSCRIPT_WAIT_SECONDS`: the no-script path's wait (0 = off).
    pub noscript_wait_s: u32,
    /// `CLEARANCE_TTL_SECONDS`: how long a solved challenge lasts.
    pub clearance_ttl_s: u32,
    /// `CLEARANCE_BINDING`: what challenges and clearances are bound to.
    pub binding: crate::intel::challenge::Binding,
    /// `TURNSTILE_SITE_KEY` (var) and `TURNSTILE_SECRET` (secret): use
    /// Cloudflare Turnstile for challenges instead of the proof-of-work.
    pub turnstile: Option<(String, String)>,
    /// `TURNSTILE_VERIFY_URL`: the siteverify endpoint (tests override it).
    pub turnstile_verify_url: String,
    /// `RULES`: per-route rules (`intel::rules`), evaluated after the rules
    /// stored through the API (KV) and before `mode`.
    pub rules: Vec<RouteRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Visitor {
    /// `VISITOR_COOKIE`: name of the site's own session cookie whose (hashed)
    /// value identifies a visitor for impossible travel.
    pub cookie: Option<String>,
    /// `SET_VISITOR_COOKIE`: set a signed first-party cookie `ei_vid` when the
    /// request has none (needs `secrets.visitor_signing_key`).
    pub set_cookie: bool,
}

/// Sockets one subject's stream (`?ip=`, its profile object) holds at most:
/// the platform's limit of hibernated WebSockets per object.
pub const SUBJECT_MAX_SOCKETS: usize = 32_768;

#[derive(Debug, Clone, PartialEq)]
pub struct Streams {
    /// `MAX_STREAM_CLIENTS`: sockets on the global streams in all, and on
    /// one subject's stream (there at most `SUBJECT_MAX_SOCKETS`).
    pub max_clients: usize,
    /// `RELAY_MAX_SOCKETS`: sockets per relay of the global streams.
    pub relay_max_sockets: usize,
    /// `STREAM_TICKET_TTL_SECONDS`: how long a stream ticket is valid, in ms.
    pub ticket_ttl_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hub {
    /// `HUB_SHARDS`: analytics hubs, keyed by subject hash, merged on read.
    pub shards: u32,
    /// `ALERT_RULES` (JSON array; unset: the five built-in rules, `default_rules`).
    pub alert_rules: Vec<Rule>,
    /// `METRICS_TTL_DAYS`: how long KV rollups are kept, in seconds.
    pub metrics_ttl_s: u64,
    /// `AGGREGATOR_FORWARD_MS`: an aggregator object's forward period.
    pub forward_ms: u32,
    /// `ALERT_WEBHOOKS`: where shard 0's alarm POSTs each alert rule
    /// transition (`intel::webhooks`; empty: none). Secrets resolved.
    pub webhooks: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Secrets {
    /// `ADMIN_TOKEN` (unset = the API refuses every call with 503).
    pub admin_token: Option<String>,
    /// `CHALLENGE_SIGNING_KEY` (required for `ENFORCE=challenge|block`).
    pub challenge_key: Option<String>,
    /// `HEADER_SIGNING_KEY`: sign our headers with `X-Intel-Signature`.
    pub header_signing_key: Option<String>,
    /// `IP_HASH_KEY`: store and show only keyed hashes and masked IPs.
    pub ip_hash_key: Option<String>,
    /// `VISITOR_SIGNING_KEY`: signs `ei_vid` (at least 16 characters when
    /// `SET_VISITOR_COOKIE` is on; otherwise unchecked).
    pub visitor_signing_key: Option<String>,
    /// `ALERT_WEBHOOK_SECRET`: the key of the webhooks whose `secretVar`
    /// names it (others may name `ALERT_WEBHOOK_SECRET_<NAME>`).
    pub alert_webhook_secret: Option<String>,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { var, message: message.into() }
}

impl Config {
    /// Parses every variable through `get` (which returns `None` for unset)
    /// and the settings table (`crate::settings`): an unset or empty variable
    /// has the table's default, so `KEY = ""` in wrangler.toml means default.
    /// Variables are checked in a fixed order and the first invalid one is
    /// the error.
    /// Besides the table's variables, only those a webhook's `secretVar`
    /// names (`ALERT_WEBHOOK_SECRET_<NAME>`) are read.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::from_raw(&Raw::read(&get), &get)
    }

    fn from_raw(raw: &Raw, get: &impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = |var: &'static str| raw.text(var);
        let defaulted = |var: &'static str| raw.text_or_default(var);
        let intel_prefix = parse_prefix(defaulted("INTEL_PREFIX")?)?;
        let trust_x_real_ip = raw.bool("TRUST_X_REAL_IP")?;
        let origin_url = text("ORIGIN_URL")?.map(parse_origin).transpose()?;
        let enforce = match raw.choice("ENFORCE")? {
            "challenge" => Enforce::Challenge,
            "block" => Enforce::Block,
            _ => Enforce::Off,
        };
        // Narrowing casts below are within the ranges the table checks.
        let challenge_at = raw.int("CHALLENGE_AT")? as u8;
        let block_at = raw.int("BLOCK_AT")? as u8;
        if challenge_at > block_at {
            return Err(err("CHALLENGE_AT", format!("{challenge_at} is above BLOCK_AT ({block_at})")));
        }
        let mut weights = Weights::default();
        for (code, points) in parse_points_map("RISK_WEIGHTS", defaulted("RISK_WEIGHTS")?)? {
            let reason =
                Reason::from_code(&code).ok_or_else(|| err("RISK_WEIGHTS", format!("unknown reason code `{code}`")))?;
            weights.set(reason, points);
        }
        let mut signals = SignalConfig::default();
        for (code, points) in parse_points_map("COUNTRY_RISK", defaulted("COUNTRY_RISK")?)? {
            let cc = country_code(&code)
                .ok_or_else(|| err("COUNTRY_RISK", format!("`{code}` is not a two-letter country code")))?;
            signals.country_risk.push((cc, points));
        }
        signals.extra_hosting_asns = parse_asn_list("HOSTING_ASNS", defaulted("HOSTING_ASNS")?)?;
        let crawler_sources = crate::intel::crawlers::parse_sources(defaulted("GOOD_BOT_SOURCES")?)
            .map_err(|e| err("GOOD_BOT_SOURCES", e))?;
        let signed_agents = crate::intel::signed_agent::Trust::parse(defaulted("SIGNED_AGENTS")?)
            .map_err(|e| err("SIGNED_AGENTS", e))?;
        let signed_agents_trusted = crate::intel::signed_agent::parse_trusted(defaulted("SIGNED_AGENTS_TRUSTED")?)
            .map_err(|e| err("SIGNED_AGENTS_TRUSTED", e))?;
        let signed_agents_window_s = raw.int("SIGNED_AGENT_MAX_WINDOW_SECONDS")? as u32;
        let fail_closed = raw.choice("FAIL_MODE")? == "closed";
        let list = |var: &'static str| -> Result<Vec<String>, ConfigError> {
            serde_json::from_str::<Vec<String>>(defaulted(var)?)
                .map_err(|e| err(var, format!("not a JSON array of strings: {e}")))
        };
        let lists = RawLists { allow: list("ALLOW_LIST")?, block: list("BLOCK_LIST")? };
        let lists = Lists::parse(&lists).map_err(|e| err("ALLOW_LIST/BLOCK_LIST", e))?;
        // The admin token guards every profile: as long as the other secrets,
        // so that guessing it (also limited per client: intel::auth_guard) is hopeless.
        let admin_token = raw.secret("ADMIN_TOKEN")?;
        let challenge_key = raw.secret("CHALLENGE_SIGNING_KEY")?;
        let header_signing_key = raw.secret("HEADER_SIGNING_KEY")?;
        let turnstile = match (text("TURNSTILE_SITE_KEY")?, raw.secret("TURNSTILE_SECRET")?) {
            (Some(site), Some(secret)) => Some((site.to_string(), secret)),
            (None, None) => None,
            _ => {
                return Err(err(
                    "TURNSTILE_SITE_KEY",
                    "set both TURNSTILE_SITE_KEY and the secret TURNSTILE_SECRET, or neither",
                ))
            }
        };
        let turnstile_verify_url = parse_origin_or_url("TURNSTILE_VERIFY_URL", defaulted("TURNSTILE_VERIFY_URL")?)?;
        let ip_hash_key = raw.secret("IP_HASH_KEY")?;
        if enforce != Enforce::Off && challenge_key.is_none() {
            return Err(err(
                "ENFORCE",
                "challenge and block modes need the secret CHALLENGE_SIGNING_KEY (at least 16 characters): wrangler secret put CHALLENGE_SIGNING_KEY",
            ));
        }
        let route_rules = match text("RULES")? {
            None => Vec::new(),
            Some(v) => {
                let value: serde_json::Value =
                    serde_json::from_str(v).map_err(|e| err("RULES", format!("not JSON: {e}")))?;
                let rules = parse_route_rules(&value).map_err(|e| err("RULES", describe(&e)))?;
                let unusable = usable(&rules, challenge_key.is_some());
                if !unusable.is_empty() {
                    return Err(err("RULES", describe(&unusable)));
                }
                rules
            }
        };
        let risk_mode = match raw.choice("RISK_MODE")? {
            "consistent" => RiskMode::Consistent,
            _ => RiskMode::Fast,
        };
        let challenge_difficulty = raw.int("CHALLENGE_DIFFICULTY")? as u8;
        let clearance_ttl_s = raw.int("CLEARANCE_TTL_SECONDS")? as u32;
        let difficulty_max = raw.int("CHALLENGE_DIFFICULTY_MAX")? as u8;
        let difficulty_step = raw.int("CHALLENGE_DIFFICULTY_STEP")? as u8;
        let noscript_wait_s = raw.int("CHALLENGE_NOSCRIPT_WAIT_SECONDS")? as u32;
        let binding = crate::intel::challenge::Binding::parse(raw.choice("CLEARANCE_BINDING")?).unwrap_or_default();
        let consult_timeout_ms = raw.int("CONSULT_TIMEOUT_MS")? as u32;
        let consistent_timeout_ms = raw.int("CONSISTENT_TIMEOUT_MS")? as u32;
        let origin_timeout_ms = raw.int("ORIGIN_TIMEOUT_MS")? as u32;
        let flush_interval_ms = raw.int("FLUSH_INTERVAL_MS")? as u32;
        let flush_calm_ms = raw.int("FLUSH_CALM_MS")? as u32;
        let flush_max_batch = raw.int("FLUSH_MAX_BATCH")? as usize;
        let report_ms = raw.int("REPORT_INTERVAL_MS")? as u32;
        let aggregators_per_region = raw.int("AGGREGATORS_PER_REGION")? as u32;
        let forward_ms = raw.int("AGGREGATOR_FORWARD_MS")? as u32;
        let cache_ttl_ms = raw.int("CACHE_TTL_MS")? as u32;
        let cache_max_entries = raw.int("CACHE_MAX_ENTRIES")? as usize;
        let rules = ProfileRules {
            velocity_rpm: raw.int("VELOCITY_RPM")? as f64,
            burst_window_ms: raw.int("BURST_WINDOW_SECONDS")? as f64 * 1000.0,
            auth_failure_burst: raw.int("AUTH_FAILURE_BURST")? as f64,
            not_found_burst: raw.int("NOT_FOUND_BURST")? as f64,
            geo_jump_km: raw.int("GEO_JUMP_KM")? as f64,
            threat_half_life_ms: raw.int("THREAT_HALF_LIFE_MIN")? as f64 * 60_000.0,
            reputation_half_life_ms: raw.int("REPUTATION_HALF_LIFE_MIN")? as f64 * 60_000.0,
            shared_min_visitors: raw.int("SHARED_MIN_VISITORS")? as usize,
            shared_max_factor: raw.int("SHARED_MAX_FACTOR")? as f64,
            ..ProfileRules::default()
        };
        let travel = TravelRules {
            max_kmh: raw.int("TRAVEL_MAX_KMH")? as f64,
            min_km: raw.int("TRAVEL_MIN_KM")? as f64,
            memory_ms: TRAVEL_MEMORY_MS,
        };
        let profile_ttl_ms = raw.number("PROFILE_TTL_DAYS")? * 86_400_000.0;
        let subjects = Subjects {
            rotation: crate::intel::rotation::Budget {
                per_48: raw.int("ROTATION_BUDGET_PER_48")? as u32,
                per_asn: raw.int("ROTATION_BUDGET_PER_ASN")? as u32,
            },
            // A short retention longer than the normal one would make no sense.
            seen_once_ttl_ms: (raw.number("SEEN_ONCE_TTL_HOURS")? * 3_600_000.0).min(profile_ttl_ms),
        };
        let jurisdiction = match text("DATA_JURISDICTION")? {
            None => None,
            Some("eu") => Some(Jurisdiction::Eu),
            Some("fedramp") => Some(Jurisdiction::FedRamp),
            Some(v) => {
                return Err(err("DATA_JURISDICTION", format!("`{v}` is not eu or fedramp (unset: no jurisdiction)")))
            }
        };
        let max_stream_clients = raw.int("MAX_STREAM_CLIENTS")? as usize;
        let relay_max_sockets = raw.int("RELAY_MAX_SOCKETS")? as usize;
        let stream_ticket_ttl_ms = raw.int("STREAM_TICKET_TTL_SECONDS")? as f64 * 1000.0;
        let max_event_batch = raw.int("MAX_EVENT_BATCH")? as usize;
        let slide_s = raw.int("ANALYTICS_SLIDE_SECONDS")? as i64;
        let window_s = raw.int("ANALYTICS_WINDOW_SECONDS")? as i64;
        if window_s < slide_s || window_s / slide_s > 120 {
            return Err(err(
                "ANALYTICS_WINDOW_SECONDS",
                format!("must hold 1 to 120 slides of ANALYTICS_SLIDE_SECONDS ({slide_s} s)"),
            ));
        }
        let grace = grace_ms(flush_interval_ms, report_ms, forward_ms);
        // A slide is rolled up (and judged) once closed, while it is still in
        // the window (`Aggregator::take_rollups`): the window must hold two
        // slides and the whole slides the grace spans, or no slide ever is.
        // The part of a slide the grace leaves over is how late a tick may
        // run before it loses one (51 s at 60-second slides and 8.9 s).
        let min_window_s = slide_s * (2 + (grace / (slide_s as f64 * 1000.0)).floor() as i64);
        if window_s < min_window_s {
            return Err(err(
                "ANALYTICS_WINDOW_SECONDS",
                format!(
                    "must be at least {min_window_s} s: two slides of ANALYTICS_SLIDE_SECONDS ({slide_s} s) and the \
                     whole slides of the grace period ({grace:.0} ms, from FLUSH_INTERVAL_MS, REPORT_INTERVAL_MS and \
                     AGGREGATOR_FORWARD_MS), or no slide is ever rolled up and judged (a longer \
                     ANALYTICS_SLIDE_SECONDS needs fewer slides)"
                ),
            ));
        }
        let analytics = AnalyticsConfig {
            slide_s,
            window_s,
            min_support: raw.int("MIN_PATTERN_SUPPORT")? as usize,
            trend_sensitivity: raw.number("TREND_SENSITIVITY")?,
            anomaly_threshold: raw.number("ANOMALY_THRESHOLD")?,
            grace_ms: grace,
        };
        let hub_shards = raw.int("HUB_SHARDS")? as u32;
        // Shard 0's tick and every analytics read hold the slides of all
        // shards' windows at once (up to 64 KiB of keys each when attacked):
        // bounded, so that merge stays far below an isolate's 128 MB.
        let slides = i64::from(hub_shards) * (window_s / slide_s);
        if slides > MAX_MERGED_SLIDES {
            return Err(err(
                "HUB_SHARDS",
                format!(
                    "{hub_shards} shards x {} slides per window is {slides} slides to merge; at most \
                     {MAX_MERGED_SLIDES} (fewer shards, or a shorter ANALYTICS_WINDOW_SECONDS)",
                    window_s / slide_s
                ),
            ));
        }
        let alert_rules = match text("ALERT_RULES")? {
            Some(v) => parse_rules(v).map_err(|e| err("ALERT_RULES", e))?,
            None => default_rules(slide_s as f64),
        };
        let metrics_ttl_s = raw.int("METRICS_TTL_DAYS")? * 86_400;
        let alert_webhook_secret = raw.secret("ALERT_WEBHOOK_SECRET")?;
        let webhooks = match text("ALERT_WEBHOOKS")? {
            None => Vec::new(),
            Some(v) => {
                // `secretVar` names a variable: the table's ALERT_WEBHOOK_SECRET
                // (length checked there) or any ALERT_WEBHOOK_SECRET_<NAME>.
                let var = |name: &str| match name {
                    "ALERT_WEBHOOK_SECRET" => alert_webhook_secret.clone(),
                    _ => get(name),
                };
                parse_targets(v, var).map_err(|e| err("ALERT_WEBHOOKS", e))?
            }
        };
        let visitor_cookie = match text("VISITOR_COOKIE")? {
            Some(v) if v.len() > 64 || !v.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch)) => {
                return Err(err("VISITOR_COOKIE", format!("`{v}` is not a cookie name")));
            }
            v => v.map(str::to_string),
        };
        let set_visitor_cookie = raw.bool("SET_VISITOR_COOKIE")?;
        let visitor_signing_key = raw.secret("VISITOR_SIGNING_KEY")?;
        if set_visitor_cookie && visitor_signing_key.as_deref().is_none_or(|k| k.len() < 16) {
            return Err(err(
                "SET_VISITOR_COOKIE",
                "needs the secret VISITOR_SIGNING_KEY (at least 16 characters): wrangler secret put VISITOR_SIGNING_KEY",
            ));
        }
        Ok(Config {
            intel_prefix,
            trust_x_real_ip,
            origin: Origin { url: origin_url, timeout_ms: origin_timeout_ms },
            consult: Consult {
                mode: risk_mode,
                timeout_ms: consult_timeout_ms,
                consistent_timeout_ms,
                fail_closed,
                cache_ttl_ms,
                cache_max_entries,
            },
            flush: Flush {
                interval_ms: flush_interval_ms,
                calm_ms: flush_calm_ms,
                max_batch: flush_max_batch,
                report_ms,
                aggregators_per_region,
            },
            weights,
            signals,
            crawler_sources,
            signed_agents,
            signed_agents_trusted,
            signed_agents_window_s,
            lists,
            enforce: Enforcement {
                mode: enforce,
                challenge_at,
                block_at,
                difficulty: challenge_difficulty,
                difficulty_max,
                difficulty_step,
                noscript_wait_s,
                clearance_ttl_s,
                binding,
                turnstile,
                turnstile_verify_url,
                rules: route_rules,
            },
            rules,
            travel,
            profile_ttl_ms,
            subjects,
            jurisdiction,
            visitor: Visitor { cookie: visitor_cookie, set_cookie: set_visitor_cookie },
            max_event_batch,
            streams: Streams {
                max_clients: max_stream_clients,
                relay_max_sockets,
                ticket_ttl_ms: stream_ticket_ttl_ms,
            },
            analytics,
            hub: Hub { shards: hub_shards, alert_rules, metrics_ttl_s, forward_ms, webhooks },
            secrets: Secrets {
                admin_token,
                challenge_key,
                header_signing_key,
                ip_hash_key,
                visitor_signing_key,
                alert_webhook_secret,
            },
        })
    }
}

/// How long after its end a slide's data may still reach its hub shard, so
/// that the tick rolls it up and judges it only after that (docs/analytics.md,
/// "Tiers"): a sample waits up to a jittered report interval (1.2 x
/// `REPORT_INTERVAL_MS`) in its isolate, then up to a forward period in its
/// aggregator, plus one more forward period when that forward is retried;
/// profile events come through a profile flush (`FLUSH_INTERVAL_MS`, twice
/// with its retry), the same report and the aggregator's forward period,
/// then the stream root's batching and its counting forward to the hub
/// (`ROOT_FLUSH_MS` + `ROOT_COUNT_EVERY_MS`), which the second forward
/// period covers when `AGGREGATOR_FORWARD_MS` >= 1.1 s (the default, 2 s;
/// a shorter one, as in the tests, may count a fast-mode event after its
/// slide was judged); 500 ms for the calls themselves.
pub fn grace_ms(flush_interval_ms: u32, report_ms: u32, forward_ms: u32) -> f64 {
    2.0 * f64::from(flush_interval_ms) + 1.2 * f64::from(report_ms) + 2.0 * f64::from(forward_ms) + 500.0
}

/// How long an impossible-travel finding keeps flagging the visitor's
/// requests (not a setting).
const TRAVEL_MEMORY_MS: f64 = 3_600_000.0;

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

    /// The defaults as they were written in code before the settings table:
    /// the table must reproduce them exactly.
    fn expected_defaults() -> Config {
        Config {
            intel_prefix: "/_intel".to_string(),
            trust_x_real_ip: false,
            origin: Origin { url: None, timeout_ms: 30_000 },
            consult: Consult {
                mode: RiskMode::Fast,
                timeout_ms: 50,
                consistent_timeout_ms: 5000,
                fail_closed: false,
                cache_ttl_ms: 30_000,
                cache_max_entries: 10_000,
            },
            flush: Flush {
                interval_ms: 1000,
                calm_ms: 10_000,
                max_batch: 64,
                report_ms: 2000,
                aggregators_per_region: 16,
            },
            weights: Weights::default(),
            signals: SignalConfig::default(),
            crawler_sources: Default::default(),
            signed_agents: Default::default(),
            signed_agents_trusted: Vec::new(),
            signed_agents_window_s: 3600,
            lists: Lists::default(),
            enforce: Enforcement {
                mode: Enforce::Off,
                challenge_at: 75,
                block_at: 90,
                difficulty: 16,
                difficulty_max: 20,
                difficulty_step: 10,
                noscript_wait_s: 5,
                clearance_ttl_s: 3600,
                binding: crate::intel::challenge::Binding::Subject,
                turnstile: None,
                turnstile_verify_url: "https://challenges.cloudflare.com/turnstile/v0/siteverify".to_string(),
                rules: Vec::new(),
            },
            rules: ProfileRules::default(),
            travel: TravelRules { max_kmh: 900.0, min_km: 500.0, memory_ms: 3_600_000.0 },
            profile_ttl_ms: 30.0 * 86_400_000.0,
            subjects: Subjects {
                rotation: crate::intel::rotation::Budget { per_48: 256, per_asn: 6000 },
                seen_once_ttl_ms: 24.0 * 3_600_000.0,
            },
            jurisdiction: None,
            visitor: Visitor { cookie: None, set_cookie: false },
            max_event_batch: 500,
            streams: Streams { max_clients: 10_000, relay_max_sockets: 1_000, ticket_ttl_ms: 60_000.0 },
            analytics: AnalyticsConfig::default(),
            hub: Hub {
                shards: 1,
                alert_rules: default_rules(60.0),
                metrics_ttl_s: 7 * 86_400,
                forward_ms: 2000,
                webhooks: Vec::new(),
            },
            secrets: Secrets {
                admin_token: None,
                challenge_key: None,
                header_signing_key: None,
                ip_hash_key: None,
                visitor_signing_key: None,
                alert_webhook_secret: None,
            },
        }
    }

    /// A window too short for a slide to close inside it is refused: no
    /// slide would ever be rolled up or judged.
    #[test]
    fn the_window_holds_two_slides_and_the_grace() {
        // 60-second slides and the default 8.9 s grace: two slides.
        let e =
            parse(&[("ANALYTICS_SLIDE_SECONDS", "60"), ("ANALYTICS_WINDOW_SECONDS", "119")]).map(|_| ()).unwrap_err();
        assert_eq!(e.var, "ANALYTICS_WINDOW_SECONDS");
        assert!(e.message.contains("at least 120 s") && e.message.contains("(8900 ms"), "{}", e.message);
        assert!(parse(&[("ANALYTICS_SLIDE_SECONDS", "60"), ("ANALYTICS_WINDOW_SECONDS", "120")]).is_ok());
        // The tests' settings: 1-second slides, a 1.66 s grace, so 3 s at least.
        let short = [("FLUSH_INTERVAL_MS", "100"), ("REPORT_INTERVAL_MS", "300"), ("AGGREGATOR_FORWARD_MS", "300")];
        let with = |w: &'static str| {
            [&short[..], &[("ANALYTICS_SLIDE_SECONDS", "1"), ("ANALYTICS_WINDOW_SECONDS", w)]].concat()
        };
        assert!(parse(&with("2")).is_err() && parse(&with("3")).is_ok());
        // At those periods and a one-slide window, a tick's rollups are empty.
        let c = AnalyticsConfig { slide_s: 1, window_s: 1, grace_ms: 1660.0, ..AnalyticsConfig::default() };
        let mut a = crate::intel::analytics::Aggregator::default();
        let mut taken = 0;
        for k in 0..10 {
            let at = 1_780_000_020_000.0 + k as f64 * 1000.0;
            let sample = crate::intel::analytics::Sample { at, subject: "198.51.100.7".into(), ..Default::default() };
            assert!(a.ingest_sample(&c, &sample, at));
            taken += a.take_rollups(&c, at).len();
        }
        assert_eq!(taken, 0, "why it is refused");
    }

    /// A slide is judged only after its data can have come through the
    /// tiers: a jittered report interval, a forward period and its retry,
    /// the profile flushes' events, and a margin.
    #[test]
    fn the_grace_period_covers_the_tiers_delay() {
        assert_eq!(parse(&[]).map(|c| c.analytics.grace_ms).ok(), Some(AnalyticsConfig::default().grace_ms));
        let c = parse(&[("FLUSH_INTERVAL_MS", "100"), ("REPORT_INTERVAL_MS", "300"), ("AGGREGATOR_FORWARD_MS", "300")]);
        let c = c.unwrap();
        assert_eq!(c.analytics.grace_ms, 1660.0);
        let worst_report = crate::intel::deltas::jittered(300, u32::MAX) as f64;
        assert!(c.analytics.grace_ms >= worst_report + 2.0 * 300.0 + 2.0 * 100.0);
        // At the defaults a fast-mode event's way fits too: flush (and retry),
        // report, the aggregator's period, the root's batching and count.
        use crate::intel::fanout::{ROOT_COUNT_EVERY_MS, ROOT_FLUSH_MS};
        let event = 2.0 * 1000.0
            + crate::intel::deltas::jittered(2000, u32::MAX) as f64
            + 2000.0
            + (ROOT_FLUSH_MS + ROOT_COUNT_EVERY_MS) as f64;
        assert!(AnalyticsConfig::default().grace_ms >= event + 400.0, "{event}");
        assert_eq!((c.flush.report_ms, c.flush.aggregators_per_region, c.hub.forward_ms), (300, 16, 300));
        assert_eq!(parse(&[("AGGREGATORS_PER_REGION", "0")]).map(|_| ()).unwrap_err().var, "AGGREGATORS_PER_REGION");
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c, expected_defaults());
        assert_eq!(c.rules, ProfileRules::default());
        assert_eq!(c.analytics, AnalyticsConfig::default());
        assert_eq!(c.intel_prefix, "/_intel");
        assert_eq!(c.weights.get(Reason::TorExit), 45);
        assert!(c.signals.country_risk.is_empty());
    }

    #[test]
    fn jurisdiction_and_subject_settings() {
        assert_eq!(parse(&[]).unwrap().jurisdiction, None);
        assert_eq!(parse(&[("DATA_JURISDICTION", "eu")]).unwrap().jurisdiction, Some(Jurisdiction::Eu));
        assert_eq!(parse(&[("DATA_JURISDICTION", " fedramp ")]).unwrap().jurisdiction, Some(Jurisdiction::FedRamp));
        assert_eq!(parse(&[("DATA_JURISDICTION", "")]).unwrap().jurisdiction, None, "empty is unset");
        let e = parse(&[("DATA_JURISDICTION", "us")]).unwrap_err();
        assert_eq!(e.to_string(), "invalid DATA_JURISDICTION: `us` is not eu or fedramp (unset: no jurisdiction)");
        let c = parse(&[("ROTATION_BUDGET_PER_48", "0"), ("ROTATION_BUDGET_PER_ASN", "50")]).unwrap();
        assert_eq!((c.subjects.rotation.per_48, c.subjects.rotation.per_asn), (0, 50));
        // The short retention never outlasts the normal one.
        let c = parse(&[("SEEN_ONCE_TTL_HOURS", "100"), ("PROFILE_TTL_DAYS", "1")]).unwrap();
        assert_eq!(c.subjects.seen_once_ttl_ms, 86_400_000.0);
        let c = parse(&[("SEEN_ONCE_TTL_HOURS", "0.5")]).unwrap();
        assert_eq!(c.subjects.seen_once_ttl_ms, 1_800_000.0);
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
        assert_eq!(c.consult.mode, RiskMode::Consistent);
        assert_eq!(c.consult.timeout_ms, 20);
        assert_eq!(c.rules.threat_half_life_ms, 3_600_000.0);
        assert_eq!(c.visitor.cookie.as_deref(), Some("session_id"));
        assert!(c.visitor.set_cookie);
        assert_eq!(c.intel_prefix, "/edge-intel");
        assert!(c.trust_x_real_ip);
        assert_eq!(c.origin.url.unwrap().as_str(), "http://127.0.0.1:8788/");
        assert_eq!(c.enforce.block_at, 95);
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
            parse(&[("ADMIN_TOKEN", "0123456789abcdef")]).unwrap().secrets.admin_token.as_deref(),
            Some("0123456789abcdef")
        );
        // The tokens the test harness, the benchmarks and `npm start` use qualify.
        for t in ["test-admin-token-0123456789", "bench-admin-token-0123456789", "profile-admin-token-0123456789"] {
            assert!(parse(&[("ADMIN_TOKEN", t)]).is_ok(), "{t}");
        }
        assert_eq!(
            parse(&[("ADMIN_TOKEN", "")]).unwrap().secrets.admin_token,
            None,
            "empty is unset: the API answers 503"
        );
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
        assert_eq!(c.origin.url.unwrap().host_str(), Some("xn--bcher-kva.example"));
    }

    #[test]
    fn webhook_secrets_come_inline_or_from_a_named_variable() {
        let hooks = r#"[{"url": "https://a.example/in", "secretVar": "ALERT_WEBHOOK_SECRET"},
                        {"url": "https://b.example/in", "secretVar": "ALERT_WEBHOOK_SECRET_OPS"},
                        {"url": "https://hooks.slack.com/services/T/B/X", "format": "slack"}]"#;
        let c = parse(&[
            ("ALERT_WEBHOOKS", hooks),
            ("ALERT_WEBHOOK_SECRET", "default-secret-0123456789"),
            ("ALERT_WEBHOOK_SECRET_OPS", "ops-secret-0123456789"),
        ])
        .unwrap();
        let secrets: Vec<Option<&str>> = c.hub.webhooks.iter().map(|t| t.secret.as_deref()).collect();
        assert_eq!(secrets, [Some("default-secret-0123456789"), Some("ops-secret-0123456789"), None]);
        // A named variable that is unset is an error naming ALERT_WEBHOOKS,
        // which never shows a URL's path (a Slack URL's secret) or a secret.
        let e = parse(&[("ALERT_WEBHOOKS", hooks), ("ALERT_WEBHOOK_SECRET", "default-secret-0123456789")]).unwrap_err();
        assert_eq!(e.var, "ALERT_WEBHOOKS");
        assert!(e.message.contains("webhook 2") && e.message.contains("ALERT_WEBHOOK_SECRET_OPS"), "{e}");
        let e = parse(&[("ALERT_WEBHOOKS", hooks)]).unwrap_err();
        assert!(e.message.contains("webhook 1"), "{e}");
        let e =
            parse(&[("ALERT_WEBHOOKS", r#"[{"url": "http://hooks.slack.com/services/T/B/X", "format": "slack"}]"#)])
                .unwrap_err()
                .to_string();
        assert!(e.contains("https://") && !e.contains("/services"), "{e}");
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
            ("SEEN_ONCE_TTL_HOURS", "0"),
            ("ROTATION_BUDGET_PER_48", "-1"),
            ("ROTATION_BUDGET_PER_ASN", "many"),
            ("DATA_JURISDICTION", "us"),
            ("DATA_JURISDICTION", "EU"),
            ("VISITOR_COOKIE", "a b"),
            ("SET_VISITOR_COOKIE", "true"),
            ("ANALYTICS_WINDOW_SECONDS", "30"),
            ("TREND_SENSITIVITY", "-1"),
            ("HUB_SHARDS", "0"),
            ("ALERT_RULES", "[{}]"),
            ("ALERT_WEBHOOKS", r#"[{"url": "http://hooks.example.com/x", "format": "slack"}]"#),
            ("ALERT_WEBHOOKS", r#"[{"url": "https://hooks.example.com/x"}]"#),
            ("ALERT_WEBHOOK_SECRET", "short"),
        ];
        // 64 shards x 5 slides (the default window) = 320 slides to merge: too many.
        assert_eq!(parse(&[("HUB_SHARDS", "64")]).unwrap_err().var, "HUB_SHARDS");
        assert!(parse(&[("HUB_SHARDS", "51")]).is_ok(), "51 x 5 = 255 slides");
        for (var, value) in cases {
            let e = parse(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{var}={value}: {e}");
            assert!(e.to_string().starts_with(&format!("invalid {var}: ")));
        }
    }
}

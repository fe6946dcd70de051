//! Windowed analytics (docs/analytics.md): per-slide buckets over a sliding window.
//! Ingesting a sample or an event is O(1) work on the slide it falls in (no
//! buffer is rescanned); unique counts use a HyperLogLog; per-key sets are
//! bounded. A tick only derives views from the buckets and emits the
//! rollups of slides closed since the last tick, so a late or doubled tick
//! neither double-counts nor loses a slide. Pure: the hub object persists
//! the state, the alarm calls `tick`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::challenge::{add_counts, ChallengeCounts, Outcome};
use super::events::EventType;
use super::preview;
use super::protocol::Update;
use super::signals::Reason;
use super::sketch::{Histogram, Hll};
use super::stats::{mean_std, pearson, slope, z_score};
use super::views::{Anomaly, Correlation, Direction, Pattern, PatternKind, Severity, Trend, Views};

/// The hub shard a subject's analytics go to (stable across isolates).
pub fn shard_of(subject: &str, shards: u32) -> u32 {
    use sha2::{Digest, Sha256};
    if shards <= 1 {
        return 0;
    }
    let d = Sha256::digest(subject.as_bytes());
    let mut first = [0u8; 4];
    first.copy_from_slice(d.get(..4).unwrap_or(&[0; 4]));
    u32::from_le_bytes(first) % shards
}

/// `HIGH_RISK_AT`: a request scoring at least this is high risk (the `high` band).
pub const HIGH_RISK_AT: u8 = 75;
/// Keys kept per map and members per set in one slide (memory bound).
const MAX_KEYS: usize = 256;
const MAX_MEMBERS: usize = 64;
/// The bytes of keys and members one slide may hold, each charged with an
/// allowance for its JSON framing. The open slide is rewritten on every
/// report, so key counts alone do not bound the work: long or unique keys
/// would. What does not fit is counted in the slide's `budget.dropped`.
pub const MAX_SLIDE_BYTES: usize = 64 * 1024;
/// Longest key or member kept. Legitimate ones are far shorter: subject keys
/// at most 34 bytes (`h:` + 32 hex), probe rule names 21, countries 2.
pub const MAX_KEY_BYTES: usize = 64;
/// Charged per new map entry beyond its key (the entry's JSON: field names
/// and numbers of a `KeyAgg`), and per member (quotes and comma).
const ENTRY_COST: usize = 128;
const MEMBER_COST: usize = 3;

#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsConfig {
    /// `ANALYTICS_SLIDE_SECONDS` (60).
    pub slide_s: i64,
    /// `ANALYTICS_WINDOW_SECONDS` (300).
    pub window_s: i64,
    /// `MIN_PATTERN_SUPPORT` (3).
    pub min_support: usize,
    /// `TREND_SENSITIVITY` (0.2): relative change over the window that counts as a trend.
    pub trend_sensitivity: f64,
    /// `ANOMALY_THRESHOLD` (2.0) standard deviations.
    pub anomaly_threshold: f64,
    /// How long after its end a slide stays open for late data: the tiers'
    /// delay (`config::grace_ms`: report interval, forward periods, flushes).
    pub grace_ms: f64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            slide_s: 60,
            window_s: 300,
            min_support: 3,
            trend_sensitivity: 0.2,
            anomaly_threshold: 2.0,
            // config::grace_ms(1000, 2000, 2000) (the defaults).
            grace_ms: 8900.0,
        }
    }
}

/// How the consult phase went for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Consult {
    /// Served from the isolate cache or no subject to consult.
    #[default]
    Cached,
    Ok,
    Timeout,
    Error,
}

/// One request's analytics sample, as the isolate folds it into its slide
/// deltas (short names: the raw samples of an older isolate's `HubOp::Report`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    #[serde(rename = "t")]
    pub at: f64,
    #[serde(rename = "s")]
    pub subject: String,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(rename = "r")]
    pub risk: u8,
    /// The profile's threat score at the time.
    #[serde(rename = "h", default)]
    pub threat: u8,
    /// The status the client got (the origin's, or the edge's own when `enforced`).
    #[serde(rename = "o")]
    pub status: u16,
    /// The origin's latency; `None` when the request never reached it.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The edge challenged or blocked the request itself.
    #[serde(rename = "e", default, skip_serializing_if = "std::ops::Not::not")]
    pub enforced: bool,
    /// The request was served with a kept copy of the allow/block lists
    /// because KV failed or missed its budget.
    #[serde(rename = "d", default, skip_serializing_if = "std::ops::Not::not")]
    pub lists_stale: bool,
    /// `FAIL_MODE=closed` answered 503 instead of forwarding a degraded request.
    #[serde(rename = "x", default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_closed: bool,
    #[serde(rename = "k", default)]
    pub consult: Consult,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub consult_ms: Option<f64>,
    /// The probe rule the request matched (`signals::probe_rule`), when it was one.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// The per-route rule that decided the request, if one did.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleSample>,
    /// The client's fingerprint id (`intel::fingerprint`), when known.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<String>,
    /// Its User-Agent's kind (`fingerprint::UaKind::code`); a browser's
    /// flagged `ua_fingerprint_mismatch` is recorded as other.
    #[serde(rename = "g", default, skip_serializing_if = "is_zero")]
    pub fp_ua: u8,
    /// Risky (`fingerprint::RISKY_AT`) without the fingerprint's own reasons.
    #[serde(rename = "q", default, skip_serializing_if = "std::ops::Not::not")]
    pub fp_risky: bool,
    /// Its User-Agent's family (`fingerprint::ua_family`), for the fingerprint's statistics.
    #[serde(rename = "y", default, skip_serializing_if = "Option::is_none")]
    pub fp_family: Option<String>,
    /// The request's reasons (`signals::Reason::bit`), for the fingerprint's statistics.
    #[serde(rename = "w", default, skip_serializing_if = "is_zero_u32")]
    pub fp_reasons: u32,
}

/// `Sample::fp_ua` codes (`fingerprint::UaKind::code`); 0 is other.
pub const UA_BROWSER: u8 = 1;
pub const UA_LIBRARY: u8 = 2;
/// A browser's flagged `ua_fingerprint_mismatch`.
pub const UA_FLAGGED_BROWSER: u8 = 3;

fn is_zero(v: &u8) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// What a sample says of the per-route rule that decided it (issue 18).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSample {
    /// `<rule id>|<action>` (`rule_key`): the counters are per rule and action.
    #[serde(rename = "i")]
    pub key: String,
    /// The rule answered the request itself, or in a dry run would have
    /// (challenge, block, 429).
    #[serde(rename = "w", default, skip_serializing_if = "std::ops::Not::not")]
    pub enforces: bool,
    #[serde(rename = "y", default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// The counters' key of a rule: `<rule id>|<action>` (ids hold no `|`).
pub fn rule_key(id: &str, action: &str) -> String {
    format!("{id}|{action}")
}

/// A rule's hits: the requests it decided, and those it answered itself;
/// a dry run's apart, with those it would have answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHits {
    #[serde(rename = "h", default)]
    pub hits: u64,
    #[serde(rename = "e", default)]
    pub enforced: u64,
    #[serde(rename = "dh", default)]
    pub dry_run_hits: u64,
    #[serde(rename = "de", default)]
    pub dry_run_would_enforce: u64,
}

impl RuleHits {
    fn count(&mut self, s: &RuleSample) {
        if s.dry_run {
            self.dry_run_hits += 1;
            self.dry_run_would_enforce += u64::from(s.enforces);
        } else {
            self.hits += 1;
            self.enforced += u64::from(s.enforces);
        }
    }

    pub fn add(&mut self, o: &RuleHits) {
        self.hits += o.hits;
        self.enforced += o.enforced;
        self.dry_run_hits += o.dry_run_hits;
        self.dry_run_would_enforce += o.dry_run_would_enforce;
    }
}

/// One rule's counters as the API and the dashboard show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleCounter {
    pub id: String,
    pub action: String,
    pub since_start: RuleHitsView,
    pub window: RuleHitsView,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleHitsView {
    pub hits: u64,
    pub enforced: u64,
    pub dry_run_hits: u64,
    pub dry_run_would_enforce: u64,
}

impl From<RuleHits> for RuleHitsView {
    fn from(h: RuleHits) -> Self {
        RuleHitsView {
            hits: h.hits,
            enforced: h.enforced,
            dry_run_hits: h.dry_run_hits,
            dry_run_would_enforce: h.dry_run_would_enforce,
        }
    }
}

/// Every rule key counted since start or in the window's `slides`, with
/// both counts, most hits (real and dry) in the window first.
pub fn rule_counters<'a>(
    totals: &BTreeMap<String, RuleHits>,
    slides: impl Iterator<Item = &'a Slide>,
) -> Vec<RuleCounter> {
    let mut window: BTreeMap<String, RuleHits> = BTreeMap::new();
    for s in slides {
        for (k, v) in &s.rules {
            add_rule_hits(&mut window, k, v, MAX_RULE_TOTALS);
        }
    }
    let keys: std::collections::BTreeSet<&String> = totals.keys().chain(window.keys()).collect();
    let mut out: Vec<RuleCounter> = keys
        .into_iter()
        .map(|k| {
            let (id, action) = k.split_once('|').unwrap_or((k.as_str(), ""));
            RuleCounter {
                id: id.to_string(),
                action: action.to_string(),
                since_start: totals.get(k).copied().unwrap_or_default().into(),
                window: window.get(k).copied().unwrap_or_default().into(),
            }
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.window.hits + c.window.dry_run_hits));
    out
}

/// Rule keys kept in the totals since start: 200 stored and 200 `RULES`
/// rules, with room for ids that were removed or renamed; past it a new key
/// is not counted there (the slides still count it, within `MAX_KEYS`).
pub const MAX_RULE_TOTALS: usize = 1_000;

/// Adds `hits` of `key` to a map of rule counters bounded at `max` keys.
pub fn add_rule_hits(map: &mut BTreeMap<String, RuleHits>, key: &str, hits: &RuleHits, max: usize) {
    if let Some(h) = map.get_mut(key) {
        h.add(hits);
    } else if map.len() < max {
        map.insert(key.to_string(), *hits);
    }
}

impl Sample {
    /// Served without everything it should have been scored with: the profile
    /// (timeout or error) or fresh allow/block lists.
    pub fn degraded(&self) -> bool {
        matches!(self.consult, Consult::Timeout | Consult::Error) || self.lists_stale
    }

    /// The origin answered it (not blocked, challenged or refused fail-closed
    /// by the edge itself): only these count as origin statuses.
    pub fn reached_origin(&self) -> bool {
        !self.enforced && !self.fail_closed
    }
}

/// A bounded set of members (subjects), with a count of what did not fit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Members {
    #[serde(rename = "m", default)]
    pub members: Vec<String>,
    #[serde(rename = "x", default)]
    pub overflow: u64,
}

/// What a slide's keys and members have used of `MAX_SLIDE_BYTES`, and how
/// many were not kept (too long, over `MAX_KEYS`, or over the byte bound).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    #[serde(rename = "b", default)]
    pub bytes: u64,
    #[serde(rename = "d", default)]
    pub dropped: u64,
}

impl Budget {
    /// Charges a key or member of `len` bytes plus `framing`; false (and
    /// counted as dropped) when it is too long or does not fit.
    fn take(&mut self, len: usize, framing: usize) -> bool {
        let cost = (len + framing) as u64;
        if len > MAX_KEY_BYTES || self.bytes + cost > MAX_SLIDE_BYTES as u64 {
            self.dropped += 1;
            return false;
        }
        self.bytes += cost;
        true
    }
}

impl Members {
    /// Adds a member (unbounded bytes: only for views merged on read).
    fn insert(&mut self, m: &str) {
        if self.members.iter().any(|x| x == m) {
            return;
        }
        if self.members.len() < MAX_MEMBERS {
            self.members.push(m.to_string());
        } else {
            self.overflow += 1;
        }
    }

    /// Adds a member to a stored slide, within its byte budget. A member
    /// that does not fit still counts (in `overflow`), so support stays right.
    fn insert_within(&mut self, m: &str, budget: &mut Budget) {
        if self.members.iter().any(|x| x == m) {
            return;
        }
        if self.members.len() < MAX_MEMBERS && budget.take(m.len(), MEMBER_COST) {
            self.members.push(m.to_string());
        } else {
            self.overflow += 1;
        }
    }

    /// Removes a member (an erased subject); true if it was there. The bytes
    /// it held are given back to the slide's budget.
    fn remove(&mut self, m: &str, budget: &mut Budget) -> bool {
        let before = self.members.len();
        self.members.retain(|x| x != m);
        let removed = self.members.len() < before;
        if removed {
            budget.bytes = budget.bytes.saturating_sub((m.len() + MEMBER_COST) as u64);
        }
        removed
    }

    fn union(&mut self, other: &Members) {
        for m in &other.members {
            self.insert(m);
        }
        self.overflow += other.overflow;
    }

    /// Distinct members (lower bound when it overflowed).
    pub fn len(&self) -> usize {
        self.members.len() + self.overflow as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-country or per-ASN aggregates of one slide.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyAgg {
    pub requests: u64,
    pub risk_sum: u64,
    pub threat_sum: u64,
    pub high_risk: Members,
}

impl KeyAgg {
    fn merge(&mut self, o: &KeyAgg) {
        self.requests += o.requests;
        self.risk_sum += o.risk_sum;
        self.threat_sum += o.threat_sum;
        self.high_risk.union(&o.high_risk);
    }
}

/// Per-fingerprint aggregates of one slide (`intel::fingerprint`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FpAgg {
    #[serde(rename = "n", default)]
    pub requests: u64,
    /// Requests risky without the fingerprint's own reasons.
    #[serde(rename = "r", default)]
    pub risky: u64,
    /// Requests with a browser's User-Agent (not flagged as a mismatch).
    #[serde(rename = "b", default)]
    pub browser: u64,
    /// Requests with an HTTP library's User-Agent.
    #[serde(rename = "l", default)]
    pub library: u64,
    /// Requests with a browser's User-Agent flagged `ua_fingerprint_mismatch`.
    #[serde(rename = "m", default, skip_serializing_if = "is_zero_u64")]
    pub flagged: u64,
    /// The subjects using it (up to `MAX_MEMBERS`).
    #[serde(rename = "s", default)]
    pub subjects: Members,
    /// The ASNs it came from (up to `MAX_FP_ASNS`).
    #[serde(rename = "a", default)]
    pub asns: Vec<u32>,
    /// Requests per User-Agent family (`fingerprint::ua_family`; up to
    /// `MAX_FP_FAMILIES`, the first seen).
    #[serde(rename = "u", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub families: BTreeMap<String, u64>,
    /// Requests per reason code they carried (up to `MAX_FP_REASONS`, the
    /// first seen).
    #[serde(rename = "w", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reasons: BTreeMap<String, u64>,
}

/// ASNs kept per fingerprint and slide.
pub const MAX_FP_ASNS: usize = 16;
/// Fingerprints kept per slide (first come; the rest counted as dropped).
pub const MAX_FP_KEYS: usize = 64;
/// Subjects kept per fingerprint and slide: a few more than a swarm needs
/// (`fingerprint::SWARM_SUBJECTS`), so its bytes stay small.
pub const MAX_FP_SUBJECTS: usize = 24;
/// User-Agent families kept per fingerprint and slide (the first seen):
/// an honest fingerprint has one or two; a fingerprint with more is a
/// client rotating its User-Agent, and four say that.
pub const MAX_FP_FAMILIES: usize = 4;
/// Reasons kept per fingerprint and slide (the first seen).
pub const MAX_FP_REASONS: usize = 6;
/// What a family's or reason's count costs of the slide's bytes besides its
/// name (quotes, colon, comma, a count of up to three digits).
const LABEL_COST: usize = 7;

/// Adds `n` to `label`'s count; a new label only within `cap` labels and
/// when `fits` says its bytes fit.
fn count_label(map: &mut BTreeMap<String, u64>, cap: usize, label: &str, n: u64, fits: impl FnOnce(usize) -> bool) {
    if let Some(c) = map.get_mut(label) {
        *c += n;
    } else if map.len() < cap && fits(label.len()) {
        map.insert(label.to_string(), n);
    }
}

impl FpAgg {
    /// Adds another's counts and sets (the window's sum, unbounded by a budget).
    pub fn add(&mut self, o: &FpAgg) {
        self.requests += o.requests;
        self.risky += o.risky;
        self.browser += o.browser;
        self.library += o.library;
        self.flagged += o.flagged;
        self.subjects.union(&o.subjects);
        self.add_asns(&o.asns);
        for (k, n) in &o.families {
            count_label(&mut self.families, MAX_FP_FAMILIES, k, *n, |_| true);
        }
        for (k, n) in &o.reasons {
            count_label(&mut self.reasons, MAX_FP_REASONS, k, *n, |_| true);
        }
    }

    /// Adds another slide's families and reasons within the slide's byte budget.
    fn add_labels(&mut self, o: &FpAgg, budget: &mut Budget) {
        for (k, n) in &o.families {
            count_label(&mut self.families, MAX_FP_FAMILIES, k, *n, |len| budget.take(len, LABEL_COST));
        }
        for (k, n) in &o.reasons {
            count_label(&mut self.reasons, MAX_FP_REASONS, k, *n, |len| budget.take(len, LABEL_COST));
        }
    }

    /// Adds a subject within `MAX_FP_SUBJECTS` and the slide's byte budget.
    fn add_subject(&mut self, subject: &str, budget: &mut Budget) {
        if self.subjects.members.len() < MAX_FP_SUBJECTS || self.subjects.members.iter().any(|m| m == subject) {
            self.subjects.insert_within(subject, budget);
        } else {
            self.subjects.overflow += 1;
        }
    }

    fn add_asns(&mut self, asns: &[u32]) {
        for a in asns {
            if !self.asns.contains(a) && self.asns.len() < MAX_FP_ASNS {
                self.asns.push(*a);
            }
        }
    }
}

/// Measured by the hub itself during a slide (the tick's own numbers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gauges {
    pub alarm_lag_ms: Option<f64>,
    pub kv_write_latency_ms: Option<f64>,
    pub tick_duration_ms: Option<f64>,
    pub stream_clients: Option<f64>,
}

impl Gauges {
    /// Another hub's gauges for the same slide (the whole site's view): the
    /// worst lag, latency and tick duration (as `rollups::merge_rule` merges
    /// their KV history), the sockets of all (only shard 0 counts them, from
    /// the stream root's answer).
    pub fn merge(&mut self, o: &Gauges) {
        fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
            match (a, b) {
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            }
        }
        self.alarm_lag_ms = max(self.alarm_lag_ms, o.alarm_lag_ms);
        self.kv_write_latency_ms = max(self.kv_write_latency_ms, o.kv_write_latency_ms);
        self.tick_duration_ms = max(self.tick_duration_ms, o.tick_duration_ms);
        self.stream_clients = match (self.stream_clients, o.stream_clients) {
            (Some(x), Some(y)) => Some(x + y),
            (x, y) => x.or(y),
        };
    }
}

/// One slide's buckets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Slide {
    /// Start, epoch seconds (a multiple of the slide length).
    pub start: i64,
    pub requests: u64,
    pub risk_sum: u64,
    pub high_risk: u64,
    pub server_errors: u64,
    pub degraded: u64,
    pub do_errors: u64,
    pub events: u64,
    pub events_rejected: u64,
    /// Observations and samples the isolates lost (reported with their next report).
    #[serde(default)]
    pub observations_dropped: u64,
    pub unique: Hll,
    pub latency: Histogram,
    pub consult_latency: Histogram,
    pub countries: BTreeMap<String, KeyAgg>,
    pub asns: BTreeMap<u32, KeyAgg>,
    pub probes: BTreeMap<String, Members>,
    pub auth_failures: Members,
    pub high_threat: Members,
    pub high_threat_events: u64,
    pub travel: Members,
    pub travel_events: u64,
    pub gauges: Gauges,
    /// Requests the edge challenged or blocked itself.
    #[serde(default)]
    pub enforced: u64,
    /// Requests `FAIL_MODE=closed` answered with 503.
    #[serde(default)]
    pub fail_closed: u64,
    /// Bytes of keys and members held, and how many were dropped.
    #[serde(default)]
    pub budget: Budget,
    /// Hits per per-route rule and action (`rule_key`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, RuleHits>,
    /// Challenges issued, solved and failed per `<trigger>|<reason>` label
    /// (`intel::challenge`; a solution in the slide its token was issued in).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub challenges: BTreeMap<String, ChallengeCounts>,
    /// Per fingerprint id (`intel::fingerprint`): who uses it and how.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fingerprints: BTreeMap<String, FpAgg>,
}

/// The fingerprint's entry, within `MAX_FP_KEYS` and the byte budget. A
/// client picks its own fingerprint (any header set is one), so fingerprints
/// get fewer keys than the slide's other maps: one client varying its
/// headers can take at most these, not the budget the others need. When the
/// map is full, a fingerprint bringing `incoming` requests takes the place of
/// the least used one if that one has fewer (its bytes are given back): a
/// flood of one-request fingerprints early in a slide cannot keep a busy one
/// out of the aggregators' and the hub's slides.
fn fp_entry<'a>(
    map: &'a mut BTreeMap<String, FpAgg>,
    key: &str,
    incoming: u64,
    budget: &mut Budget,
) -> Option<&'a mut FpAgg> {
    match make_room(map, key, incoming) {
        Err(()) => {
            budget.dropped += 1;
            return None;
        }
        Ok(Some((k, gone))) => {
            budget.bytes = budget.bytes.saturating_sub(fp_cost(&k, &gone));
            budget.dropped += 1;
        }
        Ok(None) => {}
    }
    entry_within(map, &key.to_string(), key.len(), budget)
}

/// Room for `key` in a fingerprint map: there already, or a free place, or
/// the place of the least used entry if it has fewer than `incoming`
/// requests (returned: it is gone); `Err` when there is none.
fn make_room(map: &mut BTreeMap<String, FpAgg>, key: &str, incoming: u64) -> Result<Option<(String, FpAgg)>, ()> {
    if map.contains_key(key) || map.len() < MAX_FP_KEYS {
        return Ok(None);
    }
    // Every entry holds a request: one request never takes a place (and the
    // isolate's samples, one at a time, skip the scan).
    if incoming <= 1 {
        return Err(());
    }
    match map.iter().min_by_key(|(_, v)| v.requests).map(|(k, v)| (k.clone(), v.requests)) {
        Some((k, n)) if n < incoming => Ok(map.remove(&k).map(|gone| (k, gone))),
        _ => Err(()),
    }
}

/// What a fingerprint's entry was charged of the slide's bytes.
fn fp_cost(key: &str, f: &FpAgg) -> u64 {
    let members: usize = f.subjects.members.iter().map(|m| m.len() + MEMBER_COST).sum();
    let labels: usize = f.families.keys().chain(f.reasons.keys()).map(|l| l.len() + LABEL_COST).sum();
    (key.len() + ENTRY_COST + members + labels) as u64
}

/// New fingerprints one subject may open in a slide of an isolate: a client
/// varying its headers takes a few of the `MAX_FP_KEYS`, not all.
pub const MAX_FP_KEYS_PER_SUBJECT: usize = 4;

fn agg_for<'a, K: Ord + Clone>(map: &'a mut BTreeMap<K, KeyAgg>, key: &K) -> Option<&'a mut KeyAgg> {
    if !map.contains_key(key) && map.len() >= MAX_KEYS {
        return None;
    }
    Some(map.entry(key.clone()).or_default())
}

/// The entry of `key` in a stored slide's map, created if it is within
/// `MAX_KEYS` and the byte budget (otherwise counted as dropped).
fn entry_within<'a, K: Ord + Clone, V: Default>(
    map: &'a mut BTreeMap<K, V>,
    key: &K,
    key_len: usize,
    budget: &mut Budget,
) -> Option<&'a mut V> {
    if !map.contains_key(key) {
        if map.len() >= MAX_KEYS {
            budget.dropped += 1;
            return None;
        }
        if !budget.take(key_len, ENTRY_COST) {
            return None;
        }
    }
    Some(map.entry(key.clone()).or_default())
}

impl Slide {
    pub(super) fn new(start: i64) -> Slide {
        Slide { start, ..Slide::default() }
    }

    /// Counts a sample; `forgotten`: its subject was erased after it, so it
    /// is counted but joins no member set.
    pub(super) fn add_sample(&mut self, s: &Sample, forgotten: bool) {
        self.requests += 1;
        self.risk_sum += u64::from(s.risk);
        let high = s.risk >= HIGH_RISK_AT;
        self.high_risk += u64::from(high);
        // Origin statuses only for requests the origin answered.
        self.server_errors += u64::from(s.reached_origin() && s.status >= 500);
        self.enforced += u64::from(s.enforced);
        self.fail_closed += u64::from(s.fail_closed);
        self.degraded += u64::from(s.degraded());
        self.do_errors += u64::from(s.consult == Consult::Error);
        self.unique.insert(&s.subject);
        if let Some(ms) = s.latency_ms {
            self.latency.record(ms);
        }
        if let Some(ms) = s.consult_ms {
            self.consult_latency.record(ms);
        }
        let budget = &mut self.budget;
        if let Some(c) = s.country.as_ref().and_then(|c| entry_within(&mut self.countries, c, c.len(), budget)) {
            c.requests += 1;
            c.risk_sum += u64::from(s.risk);
            c.threat_sum += u64::from(s.threat);
            if high && !forgotten {
                c.high_risk.insert_within(&s.subject, budget);
            }
        }
        if let Some(a) = s.asn.and_then(|a| entry_within(&mut self.asns, &a, 10, budget)) {
            a.requests += 1;
            a.risk_sum += u64::from(s.risk);
            a.threat_sum += u64::from(s.threat);
            if high && !forgotten {
                a.high_risk.insert_within(&s.subject, budget);
            }
        }
        if let Some(m) = s.probe.as_ref().and_then(|p| entry_within(&mut self.probes, p, p.len(), budget)) {
            if !forgotten {
                m.insert_within(&s.subject, budget);
            }
        }
        if s.reached_origin() && matches!(s.status, 401 | 403) && !forgotten {
            self.auth_failures.insert_within(&s.subject, budget);
        }
        if let Some(r) = &s.rule {
            if let Some(h) = entry_within(&mut self.rules, &r.key, r.key.len(), budget) {
                h.count(r);
            }
        }
        let opened = |map: &BTreeMap<String, FpAgg>| {
            map.values().filter(|f| f.subjects.members.first() == Some(&s.subject)).count()
        };
        let fp = s.fp.as_ref().filter(|f| {
            // The scan only while the map has room (at most MAX_FP_KEYS times a slide).
            let room = self.fingerprints.len() < MAX_FP_KEYS && !self.fingerprints.contains_key(f.as_str());
            if room && opened(&self.fingerprints) >= MAX_FP_KEYS_PER_SUBJECT {
                budget.dropped += 1;
                return false;
            }
            true
        });
        if let Some(f) = fp.and_then(|f| fp_entry(&mut self.fingerprints, f, 1, budget)) {
            f.requests += 1;
            f.risky += u64::from(s.fp_risky);
            f.browser += u64::from(s.fp_ua == UA_BROWSER);
            f.library += u64::from(s.fp_ua == UA_LIBRARY);
            f.flagged += u64::from(s.fp_ua == UA_FLAGGED_BROWSER);
            if !forgotten {
                f.add_subject(&s.subject, budget);
            }
            if let Some(a) = s.asn {
                f.add_asns(&[a]);
            }
            if let Some(family) = &s.fp_family {
                count_label(&mut f.families, MAX_FP_FAMILIES, family, 1, |len| budget.take(len, LABEL_COST));
            }
            for r in Reason::of_bits(s.fp_reasons) {
                count_label(&mut f.reasons, MAX_FP_REASONS, r.code(), 1, |len| budget.take(len, LABEL_COST));
            }
        }
    }

    /// Counts one challenge outcome under its label (within the slide's bounds).
    pub(super) fn add_challenge(&mut self, label: &str, o: Outcome) {
        if let Some(c) = entry_within(&mut self.challenges, &label.to_string(), label.len(), &mut self.budget) {
            c.count(o);
        }
    }

    fn add_event(&mut self, u: &Update, forgotten: bool) {
        self.events += 1;
        let ev = &u.event;
        // Members are subject keys, like the samples' (the event's `ip` may be
        // masked, shared by many subjects): what an erasure removes. Updates
        // from older isolates carry no key: their `ip`.
        let member = if u.subject.is_empty() { ev.ip.as_str() } else { u.subject.as_str() };
        let member = if forgotten { None } else { Some(member) };
        if ev.event_type == EventType::ThreatDetected && ev.data.threat_score.is_some_and(|t| t >= 75.0) {
            self.high_threat_events += 1;
            if let Some(m) = member {
                self.high_threat.insert_within(m, &mut self.budget);
            }
        }
        if ev.event_type == EventType::BehaviorAnomaly
            && ev.data.behavioral_flags.iter().any(|f| f == "impossible_travel")
        {
            self.travel_events += 1;
            if let Some(m) = member {
                self.travel.insert_within(m, &mut self.budget);
            }
        }
    }

    /// Removes an erased subject from every member set; true if any held it.
    /// Counts and the unique estimate (a HyperLogLog) cannot be edited.
    pub(super) fn forget(&mut self, subject: &str) -> bool {
        let b = &mut self.budget;
        let mut any = false;
        for a in self.countries.values_mut() {
            any |= a.high_risk.remove(subject, b);
        }
        for a in self.asns.values_mut() {
            any |= a.high_risk.remove(subject, b);
        }
        for m in self.probes.values_mut() {
            any |= m.remove(subject, b);
        }
        any |= self.auth_failures.remove(subject, b);
        any |= self.high_threat.remove(subject, b);
        any |= self.travel.remove(subject, b);
        for f in self.fingerprints.values_mut() {
            any |= f.subjects.remove(subject, b);
        }
        any
    }

    /// Adds another slide of the same start into this stored one, within
    /// this slide's key and byte bounds (`MAX_KEYS`, `MAX_SLIDE_BYTES`): a
    /// slide delta of an isolate or an aggregator (`intel::deltas`). What
    /// does not fit is counted in `budget.dropped`, as a sample's would be;
    /// counts, sketches and member supports stay exact.
    pub fn absorb(&mut self, o: &Slide) {
        fn key_agg(into: &mut KeyAgg, o: &KeyAgg, budget: &mut Budget) {
            into.requests += o.requests;
            into.risk_sum += o.risk_sum;
            into.threat_sum += o.threat_sum;
            for m in &o.high_risk.members {
                into.high_risk.insert_within(m, budget);
            }
            into.high_risk.overflow += o.high_risk.overflow;
        }
        fn members(into: &mut Members, o: &Members, budget: &mut Budget) {
            for m in &o.members {
                into.insert_within(m, budget);
            }
            into.overflow += o.overflow;
        }
        self.requests += o.requests;
        self.risk_sum += o.risk_sum;
        self.high_risk += o.high_risk;
        self.server_errors += o.server_errors;
        self.enforced += o.enforced;
        self.fail_closed += o.fail_closed;
        self.degraded += o.degraded;
        self.do_errors += o.do_errors;
        self.events += o.events;
        self.events_rejected += o.events_rejected;
        self.observations_dropped += o.observations_dropped;
        self.unique.merge(&o.unique);
        self.latency.merge(&o.latency);
        self.consult_latency.merge(&o.consult_latency);
        let budget = &mut self.budget;
        for (k, v) in &o.countries {
            if let Some(a) = entry_within(&mut self.countries, k, k.len(), budget) {
                key_agg(a, v, budget);
            }
        }
        for (k, v) in &o.asns {
            if let Some(a) = entry_within(&mut self.asns, k, 10, budget) {
                key_agg(a, v, budget);
            }
        }
        for (k, v) in &o.probes {
            if let Some(m) = entry_within(&mut self.probes, k, k.len(), budget) {
                members(m, v, budget);
            }
        }
        members(&mut self.auth_failures, &o.auth_failures, budget);
        members(&mut self.high_threat, &o.high_threat, budget);
        members(&mut self.travel, &o.travel, budget);
        self.high_threat_events += o.high_threat_events;
        self.travel_events += o.travel_events;
        for (k, v) in &o.rules {
            if let Some(h) = entry_within(&mut self.rules, k, k.len(), budget) {
                h.add(v);
            }
        }
        for (k, v) in &o.challenges {
            if let Some(c) = entry_within(&mut self.challenges, k, k.len(), budget) {
                c.add(v);
            }
        }
        for (k, v) in &o.fingerprints {
            if let Some(f) = fp_entry(&mut self.fingerprints, k, v.requests, budget) {
                f.requests += v.requests;
                f.risky += v.risky;
                f.browser += v.browser;
                f.library += v.library;
                f.flagged += v.flagged;
                for m in &v.subjects.members {
                    f.add_subject(m, budget);
                }
                f.subjects.overflow += v.subjects.overflow;
                f.add_asns(&v.asns);
                f.add_labels(v, budget);
            }
        }
        budget.dropped += o.budget.dropped;
    }

    /// Every distinct member of the slide's sets (to check against erasures).
    pub(super) fn all_members(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let sets = self
            .countries
            .values()
            .map(|a| &a.high_risk)
            .chain(self.asns.values().map(|a| &a.high_risk))
            .chain(self.probes.values())
            .chain([&self.auth_failures, &self.high_threat, &self.travel])
            .chain(self.fingerprints.values().map(|f| &f.subjects));
        for set in sets {
            out.extend(set.members.iter().cloned());
        }
        out.sort();
        out.dedup();
        out
    }

    /// Adds another slide of the same start (hub shards merged on read).
    pub fn merge(&mut self, o: &Slide) {
        self.requests += o.requests;
        self.risk_sum += o.risk_sum;
        self.high_risk += o.high_risk;
        self.server_errors += o.server_errors;
        self.enforced += o.enforced;
        self.fail_closed += o.fail_closed;
        self.degraded += o.degraded;
        self.do_errors += o.do_errors;
        self.events += o.events;
        self.events_rejected += o.events_rejected;
        self.observations_dropped += o.observations_dropped;
        self.unique.merge(&o.unique);
        self.latency.merge(&o.latency);
        self.consult_latency.merge(&o.consult_latency);
        for (k, v) in &o.countries {
            if let Some(a) = agg_for(&mut self.countries, k) {
                a.merge(v);
            }
        }
        for (k, v) in &o.asns {
            if let Some(a) = agg_for(&mut self.asns, k) {
                a.merge(v);
            }
        }
        for (k, v) in &o.probes {
            self.probes.entry(k.clone()).or_default().union(v);
        }
        self.auth_failures.union(&o.auth_failures);
        self.high_threat.union(&o.high_threat);
        self.high_threat_events += o.high_threat_events;
        self.travel.union(&o.travel);
        self.travel_events += o.travel_events;
        self.budget.bytes += o.budget.bytes;
        self.budget.dropped += o.budget.dropped;
        self.gauges.merge(&o.gauges);
        for (k, v) in &o.rules {
            add_rule_hits(&mut self.rules, k, v, MAX_KEYS);
        }
        for (k, v) in &o.challenges {
            if let Some(c) = entry_within(&mut self.challenges, k, k.len(), &mut self.budget) {
                c.add(v);
            }
        }
        // Merged on read: unbounded bytes, the same keys bound.
        for (k, v) in &o.fingerprints {
            if make_room(&mut self.fingerprints, k, v.requests).is_ok() {
                self.fingerprints.entry(k.clone()).or_default().add(v);
            }
        }
    }

    fn ratio(a: u64, b: u64) -> f64 {
        if b == 0 {
            0.0
        } else {
            a as f64 / b as f64
        }
    }

    /// The slide as chart point and rollup: every metric it measured (docs/analytics.md).
    pub fn point(&self) -> SlidePoint {
        SlidePoint {
            start: self.start,
            requests: self.requests,
            mean_risk: if self.requests == 0 { 0.0 } else { self.risk_sum as f64 / self.requests as f64 },
            unique_ips: self.unique.estimate().round(),
            high_risk_share: Slide::ratio(self.high_risk, self.requests),
            error_rate: Slide::ratio(self.server_errors, self.requests),
            degraded: self.degraded,
            degraded_share: Slide::ratio(self.degraded, self.requests),
            do_errors: self.do_errors,
            events: self.events,
            events_rejected: self.events_rejected,
            observations_dropped: self.observations_dropped,
            keys_dropped: self.budget.dropped,
            origin_latency: LatencySummary::of(&self.latency),
            consult_latency: LatencySummary::of(&self.consult_latency),
            gauges: self.gauges.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl LatencySummary {
    pub fn of(h: &Histogram) -> LatencySummary {
        let some = h.count > 0;
        LatencySummary {
            count: h.count,
            avg: h.mean(),
            min: some.then_some(h.min),
            max: some.then_some(h.max),
            p50: h.quantile(0.5),
            p95: h.quantile(0.95),
            p99: h.quantile(0.99),
        }
    }
}

/// One slide's numbers (charts, rollups, history).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlidePoint {
    pub start: i64,
    pub requests: u64,
    pub mean_risk: f64,
    pub unique_ips: f64,
    pub high_risk_share: f64,
    pub error_rate: f64,
    pub degraded: u64,
    pub degraded_share: f64,
    pub do_errors: u64,
    pub events: u64,
    pub events_rejected: u64,
    #[serde(default)]
    pub observations_dropped: u64,
    /// Keys and members the slide did not keep (`Budget::dropped`).
    #[serde(default)]
    pub keys_dropped: u64,
    pub origin_latency: LatencySummary,
    pub consult_latency: LatencySummary,
    pub gauges: Gauges,
}

/// The metric names (docs/analytics.md; API `:name`, Prometheus `edgeintel_<name>`).
pub const METRIC_NAMES: [&str; 15] = [
    "request_count",
    "origin_latency_ms",
    "consult_latency_ms",
    "do_errors",
    "degraded_count",
    "error_rate",
    "events_processed",
    "events_rejected",
    "observations_dropped",
    "active_profiles",
    "stream_clients",
    "alarm_lag_ms",
    "kv_write_latency_ms",
    "tick_duration_ms",
    "high_risk_share",
];

/// The names `SlidePoint::metric` answers besides `METRIC_NAMES` (views of
/// a slide that are not rolled up on their own).
const MORE_RULE_METRICS: [&str; 3] = ["origin_latency_p95_ms", "degraded_share", "mean_risk"];

/// Every name an alert rule's `metric` may be: every name `SlidePoint::metric` answers.
pub fn rule_metrics() -> impl Iterator<Item = &'static str> {
    METRIC_NAMES.into_iter().chain(MORE_RULE_METRICS)
}

impl SlidePoint {
    /// The slide's value of a named metric (latencies: the mean; `None` when
    /// nothing was measured in the slide).
    pub fn metric(&self, name: &str) -> Option<f64> {
        Some(match name {
            "request_count" => self.requests as f64,
            "origin_latency_ms" => self.origin_latency.avg?,
            "origin_latency_p95_ms" => self.origin_latency.p95?,
            "consult_latency_ms" => self.consult_latency.avg?,
            "do_errors" => self.do_errors as f64,
            "degraded_count" => self.degraded as f64,
            "degraded_share" => self.degraded_share,
            "error_rate" => self.error_rate,
            "events_processed" => self.events as f64,
            "events_rejected" => self.events_rejected as f64,
            "observations_dropped" => self.observations_dropped as f64,
            "active_profiles" => self.unique_ips,
            "stream_clients" => self.gauges.stream_clients?,
            "alarm_lag_ms" => self.gauges.alarm_lag_ms?,
            "kv_write_latency_ms" => self.gauges.kv_write_latency_ms?,
            "tick_duration_ms" => self.gauges.tick_duration_ms?,
            "high_risk_share" => self.high_risk_share,
            "mean_risk" => self.mean_risk,
            _ => return None,
        })
    }
}

/// The window state: slides by start, the long-run hour-of-day counts, and
/// which slides have been rolled up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregator {
    pub slides: BTreeMap<i64, Slide>,
    /// Requests per UTC hour of day, all time (time-of-day peaks).
    pub hours: Vec<u64>,
    /// Start of the newest slide already rolled up (0: none).
    pub last_rolled: i64,
    /// Monotonic totals since the hub started (Prometheus counters).
    pub totals: Totals,
    /// Erased subjects and when: a sample or event of theirs from before
    /// that (a batch still pending in an isolate) joins no member set. Kept
    /// while the erasure time is inside the window; older ones could not be
    /// ingested anyway.
    #[serde(default)]
    pub forgotten: BTreeMap<String, f64>,
    /// The what-if preview's sample, per slide (`intel::preview`): memory
    /// only, never stored (a restarted hub starts a new one).
    #[serde(skip)]
    pub reservoirs: preview::Reservoirs,
}

/// Erased subjects a hub remembers at most (the oldest go first).
const MAX_FORGOTTEN: usize = 10_000;

/// How an erased subject is remembered: a hash of its key, not the key (which
/// is the raw IP without `IP_HASH_KEY`): after a DELETE, no hub keeps the IP.
pub(super) fn forgotten_key(subject: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"edgeintel erased\0");
    h.update(subject.as_bytes());
    hex::encode(h.finalize().get(..16).unwrap_or_default())
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub events: u64,
    pub events_rejected: u64,
    pub degraded: u64,
    pub do_errors: u64,
    pub server_errors: u64,
    pub high_risk: u64,
    /// Requests the edge challenged or blocked itself.
    #[serde(default)]
    pub enforced: u64,
    /// Observations and samples the isolates lost.
    #[serde(default)]
    pub observations_dropped: u64,
    /// Requests `FAIL_MODE=closed` answered with 503.
    #[serde(default)]
    pub fail_closed: u64,
    /// Hits per per-route rule and action since start (`MAX_RULE_TOTALS` keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, RuleHits>,
    /// Challenge counters per label since start (`challenge::MAX_LABELS` keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub challenges: BTreeMap<String, ChallengeCounts>,
}

impl Aggregator {
    pub(super) fn slide_start(cfg: &AnalyticsConfig, at_ms: f64) -> i64 {
        let s = (at_ms / 1000.0).floor() as i64;
        s - s.rem_euclid(cfg.slide_s.max(1))
    }

    /// The slide for `at`, created if needed; `None` if `at` is outside the
    /// window (too old, or more than a slide in the future).
    pub(super) fn slide_mut(&mut self, cfg: &AnalyticsConfig, at_ms: f64, now_ms: f64) -> Option<&mut Slide> {
        let start = Aggregator::slide_start(cfg, at_ms);
        let newest = Aggregator::slide_start(cfg, now_ms);
        if start > newest + cfg.slide_s || start <= newest - cfg.window_s || start <= self.last_rolled {
            return None;
        }
        Some(self.slides.entry(start).or_insert_with(|| Slide::new(start)))
    }

    /// Counts one request. Returns false if it fell outside the window (or
    /// into a slide already rolled up).
    pub fn ingest_sample(&mut self, cfg: &AnalyticsConfig, s: &Sample, now_ms: f64) -> bool {
        let forgotten =
            !self.forgotten.is_empty() && self.forgotten.get(&forgotten_key(&s.subject)).is_some_and(|t| s.at <= *t);
        let Some(slide) = self.slide_mut(cfg, s.at, now_ms) else { return false };
        slide.add_sample(s, forgotten);
        if self.hours.len() != 24 {
            self.hours = vec![0; 24];
        }
        let hour = ((s.at / 3_600_000.0).floor() as i64).rem_euclid(24) as usize;
        if let Some(h) = self.hours.get_mut(hour) {
            *h += 1;
        }
        let t = &mut self.totals;
        t.requests += 1;
        t.high_risk += u64::from(s.risk >= HIGH_RISK_AT);
        t.server_errors += u64::from(s.reached_origin() && s.status >= 500);
        t.enforced += u64::from(s.enforced);
        t.fail_closed += u64::from(s.fail_closed);
        t.degraded += u64::from(s.degraded());
        t.do_errors += u64::from(s.consult == Consult::Error);
        if let Some(r) = &s.rule {
            let mut one = RuleHits::default();
            one.count(r);
            add_rule_hits(&mut t.rules, &r.key, &one, MAX_RULE_TOTALS);
        }
        true
    }

    pub fn ingest_event(&mut self, cfg: &AnalyticsConfig, u: &Update, now_ms: f64) -> bool {
        let at = u.event.timestamp.min(now_ms);
        let key = if u.subject.is_empty() { &u.event.ip } else { &u.subject };
        let forgotten = !self.forgotten.is_empty() && self.forgotten.get(&forgotten_key(key)).is_some_and(|t| at <= *t);
        let Some(slide) = self.slide_mut(cfg, at, now_ms) else { return false };
        slide.add_event(u, forgotten);
        self.totals.events += 1;
        true
    }

    pub fn count_rejected(&mut self, cfg: &AnalyticsConfig, n: u64, now_ms: f64) {
        if let Some(slide) = self.slide_mut(cfg, now_ms, now_ms) {
            slide.events_rejected += n;
        }
        self.totals.events_rejected += n;
    }

    /// Counts observations and samples an isolate reported lost.
    pub fn count_dropped(&mut self, cfg: &AnalyticsConfig, n: u64, now_ms: f64) {
        if let Some(slide) = self.slide_mut(cfg, now_ms, now_ms) {
            slide.observations_dropped += n;
        }
        self.totals.observations_dropped += n;
    }

    /// Records the hub's own measurements into the current slide.
    pub fn record_gauges(&mut self, cfg: &AnalyticsConfig, g: Gauges, now_ms: f64) {
        if let Some(slide) = self.slide_mut(cfg, now_ms, now_ms) {
            slide.gauges = g;
        }
    }

    /// Drops slides that left the window, and erasures older than it.
    pub fn evict(&mut self, cfg: &AnalyticsConfig, now_ms: f64) {
        let newest = Aggregator::slide_start(cfg, now_ms);
        self.slides.retain(|start, _| *start > newest - cfg.window_s);
        let oldest_ms = ((newest - cfg.window_s) as f64) * 1000.0;
        self.forgotten.retain(|_, at| *at > oldest_ms);
    }

    /// Erases a subject (its key) from every member set of the window, and
    /// remembers it so that its samples and events from before `at` still
    /// on their way join none. Returns the starts of the slides it changed.
    /// Counts, histograms and the unique estimates keep what they counted.
    pub fn forget(&mut self, subject: &str, at: f64) -> Vec<i64> {
        let remembered = forgotten_key(subject);
        if !self.forgotten.contains_key(&remembered) && self.forgotten.len() >= MAX_FORGOTTEN {
            let oldest = self.forgotten.iter().min_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.forgotten.remove(&k);
            }
        }
        let t = self.forgotten.entry(remembered).or_insert(at);
        *t = t.max(at);
        for r in self.reservoirs.values_mut() {
            r.forget(subject);
        }
        self.slides.iter_mut().filter_map(|(start, slide)| slide.forget(subject).then_some(*start)).collect()
    }

    /// The what-if preview's sample of this shard's window (its reservoirs
    /// of the window's slides merged: at most `cap` items, and never more
    /// than `preview::PREVIEW_CAP`),
    /// and where it begins (ms).
    pub fn preview_sample(&self, cfg: &AnalyticsConfig, now_ms: f64, cap: usize) -> (preview::Reservoir, Option<f64>) {
        let newest = Aggregator::slide_start(cfg, now_ms);
        let window: Vec<(&i64, &preview::Reservoir)> = self.reservoirs.range(newest - cfg.window_s + 1..).collect();
        let since = window.first().map(|(start, _)| **start as f64 * 1000.0);
        (preview::window_sample(window.into_iter().map(|(_, r)| r), cap.min(preview::PREVIEW_CAP)), since)
    }

    /// The window's slides, oldest first; `closed_only` leaves out the open one.
    pub fn window(&self, cfg: &AnalyticsConfig, now_ms: f64, closed_only: bool) -> Vec<&Slide> {
        let newest = Aggregator::slide_start(cfg, now_ms);
        self.slides
            .values()
            .filter(|s| s.start > newest - cfg.window_s && (!closed_only || Aggregator::closed(cfg, s.start, now_ms)))
            .collect()
    }

    /// A slide is closed once its end plus the grace period has passed.
    pub fn closed(cfg: &AnalyticsConfig, start: i64, now_ms: f64) -> bool {
        Aggregator::closes_at(cfg, start) <= now_ms
    }

    /// When slide `start` closes: its end plus the grace period.
    fn closes_at(cfg: &AnalyticsConfig, start: i64) -> f64 {
        ((start + cfg.slide_s.max(1)) as f64) * 1000.0 + cfg.grace_ms
    }

    /// The newest slide closed at `now`.
    fn newest_closed(cfg: &AnalyticsConfig, now_ms: f64) -> i64 {
        Aggregator::slide_start(cfg, now_ms - cfg.grace_ms) - cfg.slide_s.max(1)
    }

    /// The slides closed since the last tick, to roll up, in order; marks
    /// them rolled. Calling it again at the same time returns nothing.
    /// A slide without traffic is rolled up too (zero requests is a
    /// measurement, and alert rules need it to resolve), but never more
    /// than a window's worth.
    pub fn take_rollups(&mut self, cfg: &AnalyticsConfig, now_ms: f64) -> Vec<SlidePoint> {
        let slide = cfg.slide_s.max(1);
        // Slides start on multiples of the slide (`slide_start`). A window
        // that is not one (150 s of 60 s slides), or a `last_rolled` left by
        // another slide length, would start the rollups off that grid, where
        // no slide is, and every later one with them: rounded up onto it.
        let on_grid = |t: i64| t + (slide - t.rem_euclid(slide)) % slide;
        let newest_closed = Aggregator::newest_closed(cfg, now_ms);
        // The oldest slide `window` holds: the first start after newest - window.
        let oldest_in_window = on_grid(Aggregator::slide_start(cfg, now_ms) - cfg.window_s + 1);
        let first = if self.last_rolled > 0 {
            on_grid(self.last_rolled + slide).max(oldest_in_window)
        } else {
            match self.slides.keys().next() {
                Some(k) => on_grid(*k).max(oldest_in_window),
                None => return Vec::new(),
            }
        };
        let mut due = Vec::new();
        let mut start = first;
        while start <= newest_closed && Aggregator::closed(cfg, start, now_ms) {
            due.push(self.slides.get(&start).map_or_else(|| Slide::new(start).point(), Slide::point));
            start += slide;
        }
        if let Some(last) = due.last() {
            self.last_rolled = last.start;
        }
        due
    }

    /// Patterns, trends, anomalies and correlations of the window at `now`.
    pub fn views(&self, cfg: &AnalyticsConfig, now_ms: f64) -> Views {
        self.views_with_spike(cfg, now_ms, SpikeSpan::at(cfg, now_ms))
    }

    /// `views`, with a threat spike counted over `spike` (the hub's tick
    /// passes `SpikeSpan::for_tick`).
    pub fn views_with_spike(&self, cfg: &AnalyticsConfig, now_ms: f64, spike: SpikeSpan) -> Views {
        let all = self.window(cfg, now_ms, false);
        let closed = self.window(cfg, now_ms, true);
        Views {
            patterns: patterns(cfg, &all, spike),
            trends: trends(cfg, &closed),
            anomalies: anomalies(cfg, &closed),
            correlations: correlations(&all, &closed, &self.hours),
        }
    }
}

/// One hub shard's part of the window: what the read API and shard 0's tick
/// fetch from every shard to see the whole site.
pub struct ShardPart<'a> {
    pub slides: &'a [Slide],
    pub hours: &'a [u64],
    pub totals: &'a Totals,
}

/// The whole site's window from every shard's part: slides merged by start,
/// hours and totals added. `last_rolled` and `forgotten` are left empty:
/// they are one hub's bookkeeping, not the site's.
pub fn merge_shards(parts: &[ShardPart<'_>]) -> Aggregator {
    let mut site = Aggregator::site();
    for p in parts {
        site.add_shard(p);
    }
    site
}

impl Aggregator {
    /// An empty whole-site window, to add shards' parts to one at a time
    /// (`add_shard`: a part can be dropped once added).
    pub fn site() -> Aggregator {
        Aggregator { hours: vec![0; 24], ..Aggregator::default() }
    }

    /// Adds one shard's part to a whole-site window.
    pub fn add_shard(&mut self, part: &ShardPart<'_>) {
        for s in part.slides {
            match self.slides.get_mut(&s.start) {
                Some(acc) => acc.merge(s),
                None => {
                    self.slides.insert(s.start, s.clone());
                }
            }
        }
        for (h, n) in self.hours.iter_mut().zip(part.hours) {
            *h += n;
        }
        self.totals.add(part.totals);
    }
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.events += o.events;
        self.events_rejected += o.events_rejected;
        self.degraded += o.degraded;
        self.do_errors += o.do_errors;
        self.server_errors += o.server_errors;
        self.high_risk += o.high_risk;
        self.enforced += o.enforced;
        self.fail_closed += o.fail_closed;
        self.observations_dropped += o.observations_dropped;
        for (k, v) in &o.rules {
            add_rule_hits(&mut self.rules, k, v, MAX_RULE_TOTALS);
        }
        for (k, v) in &o.challenges {
            add_counts(&mut self.challenges, k, v);
        }
    }
}

fn severity_for(support: usize, min: usize) -> Severity {
    if support >= min.saturating_mul(3) {
        Severity::Critical
    } else if support >= min.saturating_mul(2) {
        Severity::High
    } else {
        Severity::Medium
    }
}

fn pattern(kind: PatternKind, key: &str, members: &Members, min: usize, description: String) -> Pattern {
    Pattern {
        description,
        ips: members.members.clone(),
        key: key.to_string(),
        kind,
        severity: severity_for(members.len(), min),
        support: members.len(),
    }
}

/// The slides a threat spike counts, by start: `from` to `to`, both included.
///
/// A spike is recent, judged when its slide's late data is in: the newest
/// closed slide (`Aggregator::closed`: its end plus the grace has passed)
/// and the ones open after it. The rule used to be "the open slide and the
/// one before it" by wall time, which skipped the slide holding the spike
/// whenever the grace was longer than a slide (1-second slides in the tests)
/// or the tick that closed it ran late: its insight was never pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpikeSpan {
    pub from: i64,
    pub to: i64,
}

impl SpikeSpan {
    /// At `now` (the API): the newest closed slide and every one after it.
    pub fn at(cfg: &AnalyticsConfig, now_ms: f64) -> SpikeSpan {
        SpikeSpan { from: Aggregator::newest_closed(cfg, now_ms), to: i64::MAX }
    }

    /// As an on-time tick saw it when slide `start` closed: that slide and
    /// the ones open then, with every late event that has come in since.
    pub fn closing(cfg: &AnalyticsConfig, start: i64) -> SpikeSpan {
        SpikeSpan { from: start, to: Aggregator::slide_start(cfg, Aggregator::closes_at(cfg, start)) }
    }

    /// For a tick that rolled up `closed` (the slides closed since the last
    /// one, in order): the span of whichever of them had the most high-threat
    /// events, each judged as when it closed, so a late tick judges the
    /// slides it missed one by one and never adds up a window of sparse
    /// events into a spike. No slide closed: as the API at `now`.
    pub fn for_tick(cfg: &AnalyticsConfig, agg: &Aggregator, closed: &[i64], now_ms: f64) -> SpikeSpan {
        let events = |span: &SpikeSpan| -> u64 {
            agg.slides.range(span.from..=span.to).map(|(_, s)| s.high_threat_events).sum()
        };
        closed
            .iter()
            .map(|start| SpikeSpan::closing(cfg, *start))
            .max_by_key(events)
            .unwrap_or_else(|| SpikeSpan::at(cfg, now_ms))
    }

    fn holds(&self, start: i64) -> bool {
        (self.from..=self.to).contains(&start)
    }
}

/// The patterns over the window (docs/analytics.md) (open slide included, so
/// they show fast); a threat spike counts the slides in `spike`.
pub fn patterns(cfg: &AnalyticsConfig, slides: &[&Slide], spike: SpikeSpan) -> Vec<Pattern> {
    let min = cfg.min_support.max(1);
    let mut out = Vec::new();
    let mut travel = Members::default();
    let mut high_threat = Members::default();
    let mut auth = Members::default();
    let mut probes: BTreeMap<&str, Members> = BTreeMap::new();
    let mut countries: BTreeMap<&str, Members> = BTreeMap::new();
    let mut asns: BTreeMap<u32, Members> = BTreeMap::new();
    for s in slides {
        travel.union(&s.travel);
        high_threat.union(&s.high_threat);
        auth.union(&s.auth_failures);
        for (p, m) in &s.probes {
            probes.entry(p.as_str()).or_default().union(m);
        }
        for (c, a) in &s.countries {
            countries.entry(c.as_str()).or_default().union(&a.high_risk);
        }
        for (k, a) in &s.asns {
            asns.entry(*k).or_default().union(&a.high_risk);
        }
    }
    if travel.len() >= min {
        let d = format!("{} visitors' IPs made impossible-travel hops in the window", travel.len());
        out.push(pattern(PatternKind::ImpossibleTravelCluster, "impossible_travel", &travel, min, d));
    }
    // A spike is recent: the slides in `spike` (`SpikeSpan`).
    let (mut n, mut members) = (0u64, Members::default());
    for s in slides.iter().filter(|s| spike.holds(s.start)) {
        n += s.high_threat_events;
        members.union(&s.high_threat);
    }
    if n as usize >= min {
        let d = format!("{n} high-threat events (threat >= 75) in recent slides");
        out.push(pattern(PatternKind::ThreatSpike, "threat_detected", &members, min, d));
    }
    for (path, m) in &probes {
        if m.len() >= min {
            let d = format!("{} IPs probed {path}", m.len());
            out.push(pattern(PatternKind::ScanningCampaign, path, m, min, d));
        }
    }
    if auth.len() >= min {
        let d = format!("{} IPs received 401/403 answers: possible credential stuffing", auth.len());
        out.push(pattern(PatternKind::CredentialStuffing, "401/403", &auth, min, d));
    }
    for (c, m) in &countries {
        if m.len() >= min {
            out.push(pattern(PatternKind::HighRiskCountry, c, m, min, format!("{} high-risk IPs from {c}", m.len())));
        }
    }
    for (a, m) in &asns {
        if m.len() >= min {
            out.push(pattern(
                PatternKind::HighRiskAsn,
                &format!("AS{a}"),
                m,
                min,
                format!("{} high-risk IPs from AS{a}", m.len()),
            ));
        }
    }
    out
}

/// Per-slide series of the metrics trends and anomalies look at.
fn series(slides: &[&Slide]) -> Vec<(&'static str, Vec<f64>)> {
    let points: Vec<SlidePoint> = slides.iter().map(|s| s.point()).collect();
    vec![
        ("request_rate", points.iter().map(|p| p.requests as f64).collect()),
        ("mean_risk", points.iter().map(|p| p.mean_risk).collect()),
        ("unique_ips", points.iter().map(|p| p.unique_ips).collect()),
        ("high_risk_share", points.iter().map(|p| p.high_risk_share).collect()),
    ]
}

/// Least-squares slope per series, with direction and the relative change
/// over the window (slope x (n-1) / mean).
pub fn trends(cfg: &AnalyticsConfig, closed: &[&Slide]) -> Vec<Trend> {
    let mut out = Vec::new();
    for (name, ys) in series(closed) {
        let (Some(m), Some((mean, _))) = (slope(&ys), mean_std(&ys)) else { continue };
        let change = if mean.abs() > 1e-12 { m * (ys.len() as f64 - 1.0) / mean.abs() } else { 0.0 };
        let direction = if change > cfg.trend_sensitivity {
            Direction::Up
        } else if change < -cfg.trend_sensitivity {
            Direction::Down
        } else {
            Direction::Flat
        };
        out.push(Trend { change_rate: change, direction, metric: name.to_string(), points: ys.len(), slope: m });
    }
    out
}

/// The newest closed slide against the earlier slides of the window, per
/// metric and per country's request count.
pub fn anomalies(cfg: &AnalyticsConfig, closed: &[&Slide]) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let Some((newest, earlier)) = closed.split_last() else { return out };
    if earlier.is_empty() {
        return out;
    }
    let mut check = |metric: &str, scope: &str, history: Vec<f64>, x: f64| {
        if let Some((mean, std)) = mean_std(&history) {
            let z = z_score(x, mean, std);
            if z.abs() >= cfg.anomaly_threshold {
                out.push(Anomaly {
                    mean,
                    metric: metric.to_string(),
                    scope: scope.to_string(),
                    slide: newest.start,
                    stddev: std,
                    value: x,
                    z,
                });
            }
        }
    };
    let all: Vec<&Slide> = closed.to_vec();
    for (name, ys) in series(&all) {
        if let Some((x, hist)) = ys.split_last() {
            check(name, "global", hist.to_vec(), *x);
        }
    }
    let mut keys: Vec<&String> = newest.countries.keys().collect();
    for s in earlier {
        keys.extend(s.countries.keys());
    }
    keys.sort();
    keys.dedup();
    for c in keys {
        let count = |s: &Slide| s.countries.get(c).map_or(0.0, |a| a.requests as f64);
        let hist: Vec<f64> = earlier.iter().map(|s| count(s)).collect();
        check("request_rate", &format!("country:{c}"), hist, count(newest));
    }
    out
}

/// Region-threat (mean threat > 75 over >= 5 samples), time-of-day peaks,
/// and Pearson correlations between the window's metric series.
pub fn correlations(all: &[&Slide], closed: &[&Slide], hours: &[u64]) -> Vec<Correlation> {
    let mut out = Vec::new();
    let mut countries: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut asns: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for s in all {
        for (c, a) in &s.countries {
            let e = countries.entry(c.as_str()).or_default();
            e.0 += a.threat_sum;
            e.1 += a.requests;
        }
        for (k, a) in &s.asns {
            let e = asns.entry(*k).or_default();
            e.0 += a.threat_sum;
            e.1 += a.requests;
        }
    }
    let mut region = |key: String, (sum, n): (u64, u64)| {
        if n >= 5 {
            let mean = sum as f64 / n as f64;
            if mean > 75.0 {
                out.push(Correlation::RegionThreat { key, mean_threat: mean, samples: n });
            }
        }
    };
    for (c, v) in countries {
        region(format!("country:{c}"), v);
    }
    for (a, v) in asns {
        region(format!("AS{a}"), v);
    }
    let hourly: Vec<f64> = hours.iter().map(|&h| h as f64).collect();
    if let Some((mean, std)) = mean_std(&hourly) {
        if hourly.iter().sum::<f64>() > 0.0 {
            for (h, &v) in hourly.iter().enumerate() {
                if std > 0.0 && v > mean + std {
                    out.push(Correlation::TimeOfDayPeak { hour_utc: h, requests: v, mean });
                }
            }
        }
    }
    let s = series(closed);
    for i in 0..s.len() {
        for j in (i + 1)..s.len() {
            if let (Some((a, xs)), Some((b, ys))) = (s.get(i), s.get(j)) {
                if let Some(r) = pearson(xs, ys) {
                    out.push(Correlation::Pearson { a: a.to_string(), b: b.to_string(), r, points: xs.len() });
                }
            }
        }
    }
    out
}

/// Test data other modules' tests share (the hub's tick tests).
#[cfg(test)]
pub(crate) mod fixtures {
    use super::Update;
    use crate::intel::events::{EventData, EventType, IntelEvent, Priority};

    /// A `threat_detected` event of `score` from `ip` at `at`.
    pub fn threat_event(ip: &str, at: f64, score: f64) -> Update {
        Update {
            event: IntelEvent {
                ip: ip.into(),
                timestamp: at,
                event_type: EventType::ThreatDetected,
                confidence: 100.0,
                data: EventData { threat_score: Some(score), ..EventData::default() },
                source: "t".into(),
                priority: Priority::High,
            },
            country: Some("DE".into()),
            threat_score: score as u8,
            reputation_score: 50,
            subject: ip.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::fixtures::threat_event;
    use super::*;
    use crate::intel::events::EventData;
    use serde_json::Value;

    const SLIDE_MS: f64 = 60_000.0;
    /// A slide boundary (a multiple of 60 s).
    const T0: f64 = 1_780_000_020_000.0;

    fn cfg() -> AnalyticsConfig {
        // These tests were written for the grace of one tier (2 x 1 s flushes
        // + 0.5 s); the tiers' grace is tested in config (`grace_ms`).
        AnalyticsConfig { grace_ms: 2500.0, ..AnalyticsConfig::default() }
    }

    fn sample(at: f64, subject: &str) -> Sample {
        Sample {
            at,
            subject: subject.into(),
            country: Some("DE".into()),
            asn: Some(3320),
            risk: 10,
            status: 200,
            latency_ms: Some(20.0),
            ..Sample::default()
        }
    }

    #[test]
    fn one_client_varying_its_headers_takes_few_keys_and_bytes() {
        let start = 1_764_000_000;
        let at = start as f64 * 1000.0;
        let mut slide = Slide::new(start);
        // At its worst: every request with every reason, and the User-Agent
        // rotated through the families.
        let families = ["curl", "python-requests", "chrome", "firefox", "safari", "go-http-client", "wget"];
        let all_reasons = Reason::ALL.iter().fold(0, |b, r| b | r.bit());
        let flood = |slide: &mut Slide, who: &dyn Fn(usize) -> String| {
            for i in 0..200 {
                for family in families {
                    let s = Sample {
                        fp: Some(format!("{i:016x}")),
                        fp_family: Some(family.into()),
                        fp_reasons: all_reasons,
                        ..sample(at, &who(i))
                    };
                    slide.add_sample(&s, false);
                }
            }
        };
        // One client opens a few fingerprints of the slide, not all.
        flood(&mut slide, &|_| "one-client".to_string());
        assert_eq!(slide.fingerprints.len(), MAX_FP_KEYS_PER_SUBJECT);
        // 200 clients (each with its own header set) fill it, within the bytes.
        let mut slide = Slide::new(start);
        flood(&mut slide, &|i| format!("client-{i}"));
        assert_eq!(slide.fingerprints.len(), MAX_FP_KEYS);
        assert!(slide.budget.dropped >= (200 - MAX_FP_KEYS) as u64);
        let f = slide.fingerprints.values().next().unwrap();
        assert_eq!((f.families.len(), f.reasons.len()), (MAX_FP_FAMILIES, MAX_FP_REASONS));
        // Under a third of the slide's bytes: the rest stays for the other keys.
        assert!(slide.budget.bytes < (MAX_SLIDE_BYTES / 3) as u64, "{} bytes", slide.budget.bytes);
        // What it costs, for docs/enforcement.md.
        println!("one client's fingerprint flood: {} of {} bytes", slide.budget.bytes, MAX_SLIDE_BYTES);
        // The bytes charged are at least what the slide takes as JSON.
        let json = serde_json::to_string(&slide.fingerprints).unwrap();
        assert!(json.len() as u64 <= slide.budget.bytes, "{} > {}", json.len(), slide.budget.bytes);
        // Many subjects on one fingerprint: MAX_FP_SUBJECTS kept, the rest counted.
        let mut slide = Slide::new(start);
        for i in 0..40 {
            let s = Sample { fp: Some("00000000000000aa".into()), ..sample(at, &format!("subject-{i}")) };
            slide.add_sample(&s, false);
        }
        let f = &slide.fingerprints["00000000000000aa"];
        assert_eq!((f.subjects.members.len(), f.subjects.overflow), (MAX_FP_SUBJECTS, 16));
    }

    #[test]
    fn a_busy_fingerprint_takes_the_place_of_a_flood_of_one_request_ones_up_the_tiers() {
        let start = 1_764_000_000;
        let at = start as f64 * 1000.0;
        // An aggregator's slide full of one-request fingerprints from many clients.
        let mut stored = Slide::new(start);
        for i in 0..MAX_FP_KEYS {
            stored.add_sample(&Sample { fp: Some(format!("{i:016x}")), ..sample(at, &format!("junk-{i}")) }, false);
        }
        let bytes_full = stored.budget.bytes;
        // An isolate's delta with a busy fingerprint: it gets in, one junk goes,
        // and the bytes of the one gone are given back.
        let mut delta = Slide::new(start);
        for i in 0..30 {
            delta
                .add_sample(&Sample { fp: Some("ffffffffffffffff".into()), ..sample(at, &format!("busy-{i}")) }, false);
        }
        stored.absorb(&delta);
        assert_eq!(stored.fingerprints.len(), MAX_FP_KEYS);
        assert_eq!(stored.fingerprints["ffffffffffffffff"].requests, 30);
        assert!(stored.budget.bytes < bytes_full + 30 * 64, "{} vs {}", stored.budget.bytes, bytes_full);
        // A delta of one-request fingerprints does not push it out.
        let mut junk = Slide::new(start);
        junk.add_sample(&Sample { fp: Some("eeeeeeeeeeeeeeee".into()), ..sample(at, "junk-late") }, false);
        stored.absorb(&junk);
        assert!(
            stored.fingerprints.contains_key("ffffffffffffffff")
                && !stored.fingerprints.contains_key("eeeeeeeeeeeeeeee")
        );
        // The same on the hub's merge on read.
        let mut merged = Slide::new(start);
        merged.merge(&junk);
        for i in 1..MAX_FP_KEYS {
            let mut one = Slide::new(start);
            one.add_sample(&Sample { fp: Some(format!("{i:016x}")), ..sample(at, "x") }, false);
            merged.merge(&one);
        }
        merged.merge(&delta);
        assert!(merged.fingerprints.contains_key("ffffffffffffffff"));
        assert_eq!(merged.fingerprints.len(), MAX_FP_KEYS);
    }

    #[test]
    fn fingerprints_are_counted_absorbed_merged_and_forgotten() {
        let start = 1_764_000_000;
        let at = start as f64 * 1000.0;
        use crate::intel::fingerprint::UaKind;
        let fp = |subject: &str, ua: UaKind, risky: bool, asn: u32| Sample {
            fp: Some("00000000000000aa".into()),
            fp_ua: ua.code(),
            fp_risky: risky,
            asn: Some(asn),
            fp_family: Some(if ua == UaKind::Library { "curl" } else { "chrome" }.into()),
            fp_reasons: if risky { Reason::TorExit.bit() | Reason::AutomationUa.bit() } else { 0 },
            ..sample(at, subject)
        };
        let (mut a, mut b) = (Slide::new(start), Slide::new(start));
        a.add_sample(&fp("s1", UaKind::Library, true, 14061), false);
        a.add_sample(&fp("s2", UaKind::Browser, false, 3320), false);
        b.add_sample(&fp("s1", UaKind::Library, true, 14061), false);
        b.add_sample(&sample(at, "s3"), false);
        let mut absorbed = Slide::new(start);
        absorbed.absorb(&a);
        absorbed.absorb(&b);
        let mut merged = a.clone();
        merged.merge(&b);
        for s in [&absorbed, &merged] {
            let f = &s.fingerprints["00000000000000aa"];
            assert_eq!((f.requests, f.risky, f.browser, f.library), (3, 2, 1, 2));
            assert_eq!(f.subjects.members, ["s1", "s2"]);
            assert_eq!(f.asns, [14061, 3320]);
            let families: Vec<(&str, u64)> = f.families.iter().map(|(k, n)| (k.as_str(), *n)).collect();
            assert_eq!(families, [("chrome", 1), ("curl", 2)]);
            let reasons: Vec<(&str, u64)> = f.reasons.iter().map(|(k, n)| (k.as_str(), *n)).collect();
            assert_eq!(reasons, [("automation_ua", 2), ("tor_exit", 2)]);
            assert_eq!(s.fingerprints.len(), 1, "a sample without a fingerprint adds none");
        }
        assert!(absorbed.all_members().contains(&"s2".to_string()));
        assert!(absorbed.forget("s2"));
        assert_eq!(absorbed.fingerprints["00000000000000aa"].subjects.members, ["s1"]);
    }

    #[test]
    fn rule_hits_are_counted_per_rule_and_action_dry_runs_apart_through_every_tier() {
        let c = cfg();
        let now = 1_700_000_000_000.0;
        let hit = |key: &str, enforces: bool, dry_run: bool| RuleSample { key: key.into(), enforces, dry_run };
        let mut samples = Vec::new();
        for i in 0..5 {
            let mut s = sample(now, &format!("198.51.100.{i}"));
            s.rule = Some(hit("login|rate_limit", i >= 3, false));
            samples.push(s);
        }
        for i in 0..3 {
            let mut s = sample(now, &format!("192.0.2.{i}"));
            s.rule = Some(hit("beta|block", true, true));
            samples.push(s);
        }
        samples.push(sample(now, "203.0.113.1"));
        // Straight into one aggregator, and split over two slides absorbed and
        // then merged as two shards: the same counts.
        let mut direct = Aggregator::default();
        for s in &samples {
            assert!(direct.ingest_sample(&c, s, now));
        }
        let start = Aggregator::slide_start(&c, now);
        let (mut a, mut b) = (Slide::new(start), Slide::new(start));
        for (i, s) in samples.iter().enumerate() {
            if i % 2 == 0 {
                a.add_sample(s, false)
            } else {
                b.add_sample(s, false)
            }
        }
        let mut absorbed = Slide::new(start);
        absorbed.absorb(&a);
        absorbed.absorb(&b);
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(absorbed.rules, merged.rules);
        assert_eq!(direct.slides.values().next().map(|s| &s.rules), Some(&merged.rules));
        let counters = rule_counters(&direct.totals.rules, direct.slides.values());
        assert_eq!(counters.len(), 2);
        let login = counters.iter().find(|r| r.id == "login").unwrap();
        assert_eq!(login.action, "rate_limit");
        assert_eq!((login.window.hits, login.window.enforced, login.window.dry_run_hits), (5, 2, 0));
        assert_eq!(login.since_start, login.window);
        let beta = counters.iter().find(|r| r.id == "beta").unwrap();
        assert_eq!((beta.window.hits, beta.window.dry_run_hits, beta.window.dry_run_would_enforce), (0, 3, 3));
        assert_eq!(counters.first().map(|r| r.id.as_str()), Some("login"), "most hits first");
        let mut totals = Totals::default();
        for _ in 0..MAX_RULE_TOTALS + 5 {
            totals.add(&direct.totals);
        }
        assert_eq!(totals.rules.get("login|rate_limit").map(|h| h.hits), Some(5 * (MAX_RULE_TOTALS as u64 + 5)));
        let mut many = BTreeMap::new();
        for i in 0..MAX_RULE_TOTALS + 10 {
            add_rule_hits(
                &mut many,
                &format!("r{i}|block"),
                &RuleHits { hits: 1, ..RuleHits::default() },
                MAX_RULE_TOTALS,
            );
        }
        assert_eq!(many.len(), MAX_RULE_TOTALS, "bounded");
    }

    fn kinds(v: &[Pattern]) -> Vec<String> {
        v.iter().map(|p| format!("{}:{}", p.kind.as_str(), p.key)).collect()
    }

    /// The views as the API and the streams send them.
    fn json_of<T: serde::Serialize>(v: &[T]) -> Vec<Value> {
        v.iter().map(|x| serde_json::to_value(x).unwrap()).collect()
    }

    #[test]
    fn each_pattern() {
        let c = cfg();
        let mut a = Aggregator::default();
        let now = T0 + 10_000.0;
        for i in 0..3 {
            let ip = format!("203.0.113.{i}");
            let mut s = sample(now, &ip);
            s.probe = Some("/.env".into());
            a.ingest_sample(&c, &s, now);
            let mut s = sample(now, &format!("198.51.100.{i}"));
            s.status = 401;
            a.ingest_sample(&c, &s, now);
            let mut s = sample(now, &format!("192.0.2.{i}"));
            s.risk = 90;
            s.asn = Some(14061);
            s.country = Some("NL".into());
            a.ingest_sample(&c, &s, now);
            a.ingest_event(&c, &threat_event(&ip, now, 80.0), now);
            let mut travel = threat_event(&ip, now, 0.0);
            travel.event.event_type = EventType::BehaviorAnomaly;
            travel.event.data =
                EventData { behavioral_flags: vec!["impossible_travel".into()], ..EventData::default() };
            a.ingest_event(&c, &travel, now);
        }
        let got = kinds(&a.views(&c, now).patterns);
        // The spike is recent only: two slides later it is gone, the campaign is not.
        let later = kinds(&a.views(&c, now + 2.0 * SLIDE_MS).patterns);
        assert!(
            !later.iter().any(|k| k.starts_with("threat_spike"))
                && later.iter().any(|k| k.starts_with("scanning_campaign"))
        );
        for want in [
            "impossible_travel_cluster:impossible_travel",
            "threat_spike:threat_detected",
            "scanning_campaign:/.env",
            "credential_stuffing:401/403",
            "high_risk_country:NL",
            "high_risk_asn:AS14061",
        ] {
            assert!(got.contains(&want.to_string()), "missing {want} in {got:?}");
        }
        // Below support: two IPs on another path is no campaign.
        let mut b = Aggregator::default();
        for i in 0..2 {
            let mut s = sample(now, &format!("203.0.113.{i}"));
            s.probe = Some("/.git/config".into());
            b.ingest_sample(&c, &s, now);
            b.ingest_sample(&c, &s, now); // the same IP twice counts once
        }
        assert!(b.views(&c, now).patterns.is_empty());
    }

    /// A spike is judged once its slide's late data is in, also when the
    /// grace is longer than a slide (1-second slides in the tests) and when
    /// the tick that judges it runs late.
    #[test]
    fn a_spike_outlives_its_grace_and_a_late_tick() {
        let c = AnalyticsConfig { slide_s: 1, window_s: 20, grace_ms: 1660.0, ..AnalyticsConfig::default() };
        let mut a = Aggregator::default();
        let at = T0 + 900.0; // late in slide T0
        for i in 0..3 {
            a.ingest_event(&c, &threat_event(&format!("198.51.100.{i}"), at, 90.0), at);
        }
        let spike = |v: Views| kinds(&v.patterns).iter().any(|k| k.starts_with("threat_spike"));
        let s0 = (T0 / 1000.0) as i64;
        let closes = T0 + 1000.0 + c.grace_ms; // the tick that takes slide T0
        assert!(spike(a.views(&c, closes)), "the tick that closes the slide sees its spike");
        assert!(spike(a.views(&c, closes + 900.0)), "and one that runs 0.9 s late");
        let late = closes + 3000.0;
        assert!(!spike(a.views(&c, late)), "three slides on, the API's spike is over");
        // A tick 3 s late rolled up four slides, the first holding the spike.
        let closed = [s0, s0 + 1, s0 + 2, s0 + 3];
        assert_eq!(SpikeSpan::for_tick(&c, &a, &closed, late), SpikeSpan { from: s0, to: s0 + 2 });
        assert!(spike(a.views_with_spike(&c, late, SpikeSpan::for_tick(&c, &a, &closed, late))), "judged late");
        assert_eq!(SpikeSpan::for_tick(&c, &a, &[], late), SpikeSpan::at(&c, late), "no slide closed: as the API");
    }

    /// A late tick judges each slide it missed as when it closed: sparse
    /// events over many slides are no spike (the span of each slide holds one).
    #[test]
    fn a_late_tick_does_not_add_up_sparse_events() {
        let c = AnalyticsConfig { slide_s: 1, window_s: 20, grace_ms: 1660.0, ..AnalyticsConfig::default() };
        let mut a = Aggregator::default();
        let s0 = (T0 / 1000.0) as i64;
        let last = T0 + 6500.0;
        for (i, k) in [0.0, 3.0, 6.0].iter().enumerate() {
            let at = T0 + k * 1000.0 + 500.0;
            a.ingest_event(&c, &threat_event(&format!("198.51.100.{i}"), at, 90.0), last);
        }
        let now = T0 + 9000.0 + c.grace_ms; // a tick that missed eight closes
        let closed: Vec<i64> = (0..9).map(|k| s0 + k).collect();
        let span = SpikeSpan::for_tick(&c, &a, &closed, now);
        assert_eq!(span.to - span.from, 2, "{span:?}");
        let spiking = kinds(&a.views_with_spike(&c, now, span).patterns).iter().any(|k| k.starts_with("threat_spike"));
        assert!(!spiking, "three events six seconds apart are no spike");
    }

    /// A window that is not a whole number of slides (150 s of 60 s) rolls
    /// up the slides themselves, on their grid, also when the first rollup
    /// starts at the window's edge (a multi-shard hub's first evaluation).
    #[test]
    fn rollups_stay_on_the_slide_grid() {
        let c = AnalyticsConfig { window_s: 150, ..cfg() };
        let mut a = Aggregator::default();
        for k in 0..4 {
            let at = T0 + k as f64 * SLIDE_MS + 1000.0;
            assert!(a.ingest_sample(&c, &sample(at, "198.51.100.9"), at));
        }
        let now = T0 + 4.0 * SLIDE_MS + c.grace_ms + 1.0;
        let points = a.take_rollups(&c, now);
        let starts: Vec<i64> = points.iter().map(|p| p.start).collect();
        let s0 = (T0 / 1000.0) as i64;
        assert_eq!(starts, vec![s0 + 120, s0 + 180], "the window's closed slides");
        assert!(points.iter().all(|p| p.requests == 1), "each with its request");
        // The next tick goes on from there, on the grid.
        let at = T0 + 4.0 * SLIDE_MS + 1000.0;
        a.ingest_sample(&c, &sample(at, "198.51.100.9"), at);
        let next = a.take_rollups(&c, now + SLIDE_MS);
        assert_eq!(next.iter().map(|p| (p.start, p.requests)).collect::<Vec<_>>(), vec![(s0 + 240, 1)]);
    }

    /// Fills slide k (0 = oldest of 5) with `n` requests of risk `risk`.
    fn fill(a: &mut Aggregator, c: &AnalyticsConfig, k: usize, n: usize, risk: u8, now: f64) {
        for i in 0..n {
            let mut s = sample(T0 + k as f64 * SLIDE_MS + 1000.0, &format!("10.{k}.{}.{}", i / 256, i % 256));
            s.risk = risk;
            a.ingest_sample(c, &s, now);
        }
    }

    fn trend_of(v: &[Trend], metric: &str) -> String {
        json_of(v)
            .iter()
            .find(|t| t["metric"] == metric)
            .map(|t| t["direction"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn trend_directions() {
        let c = cfg();
        let now = T0 + 5.0 * SLIDE_MS + 3000.0; // slides 0..4 closed
        let mut up = Aggregator::default();
        let mut down = Aggregator::default();
        let mut flat = Aggregator::default();
        for k in 0..5 {
            fill(&mut up, &c, k, 10 + 10 * k, 10, now);
            fill(&mut down, &c, k, 50 - 10 * k, 10, now);
            fill(&mut flat, &c, k, 20, 10, now);
        }
        assert_eq!(trend_of(&up.views(&c, now).trends, "request_rate"), "up");
        assert_eq!(trend_of(&down.views(&c, now).trends, "request_rate"), "down");
        assert_eq!(trend_of(&flat.views(&c, now).trends, "request_rate"), "flat");
        assert_eq!(trend_of(&flat.views(&c, now).trends, "mean_risk"), "flat");
    }

    #[test]
    fn anomalies_and_none_on_a_flat_series() {
        let c = cfg();
        let now = T0 + 5.0 * SLIDE_MS + 3000.0;
        let mut flat = Aggregator::default();
        let mut spike = Aggregator::default();
        for k in 0..5 {
            fill(&mut flat, &c, k, 20, 10, now);
            fill(&mut spike, &c, k, if k == 4 { 200 } else { 20 }, 10, now);
        }
        assert!(flat.views(&c, now).anomalies.is_empty(), "{:?}", flat.views(&c, now).anomalies);
        let an = json_of(&spike.views(&c, now).anomalies);
        assert!(an.iter().any(|x| x["metric"] == "request_rate" && x["scope"] == "global"), "{an:?}");
        assert!(an.iter().any(|x| x["scope"] == "country:DE"), "{an:?}");
        // A noisy but normal series has none.
        let mut noisy = Aggregator::default();
        for (k, n) in [20, 24, 18, 22, 21].iter().enumerate() {
            fill(&mut noisy, &c, k, *n, 10, now);
        }
        assert!(json_of(&noisy.views(&c, now).anomalies).iter().all(|x| x["metric"] != "request_rate"));
    }

    #[test]
    fn correlations_region_threat_and_pearson() {
        let c = cfg();
        let now = T0 + 5.0 * SLIDE_MS + 3000.0;
        let mut a = Aggregator::default();
        for k in 0..5 {
            // Riskier slides also have more requests: positive correlation.
            fill(&mut a, &c, k, 10 + 5 * k, (10 + 15 * k) as u8, now);
        }
        for i in 0..5 {
            let mut s = sample(now - 1000.0, &format!("192.0.2.{i}"));
            s.country = Some("XX".into());
            s.threat = 90;
            a.ingest_sample(&c, &s, now);
        }
        let corr = json_of(&a.views(&c, now).correlations);
        assert!(corr.iter().any(|x| x["kind"] == "region_threat" && x["key"] == "country:XX"), "{corr:?}");
        assert!(!corr.iter().any(|x| x["kind"] == "region_threat" && x["key"] == "country:DE"));
        let r =
            corr.iter().find(|x| x["kind"] == "pearson" && x["a"] == "request_rate" && x["b"] == "mean_risk").unwrap();
        assert!(r["r"].as_f64().unwrap() > 0.9, "{r}");
        assert!(corr.iter().any(|x| x["kind"] == "time_of_day_peak"));
    }

    #[test]
    fn late_and_doubled_ticks_change_nothing() {
        let c = cfg();
        let mut a = Aggregator::default();
        for k in 0..3 {
            fill(&mut a, &c, k, 5, 10, T0 + k as f64 * SLIDE_MS + 2000.0);
        }
        // A tick at the end of slide 0, then again (doubled): one rollup.
        let t1 = T0 + SLIDE_MS + 3000.0;
        let first = a.take_rollups(&c, t1);
        assert_eq!(first.iter().map(|p| p.start).collect::<Vec<_>>(), vec![(T0 / 1000.0) as i64]);
        assert_eq!(first[0].requests, 5);
        assert!(a.take_rollups(&c, t1).is_empty(), "doubled tick");
        let views_before = a.views(&c, t1);
        assert_eq!(a.views(&c, t1), views_before, "views are pure");
        // The next tick comes two slides late: it rolls up both missed slides, once.
        let late = a.take_rollups(&c, T0 + 3.0 * SLIDE_MS + 30_000.0);
        assert_eq!(late.len(), 2);
        assert!(late.iter().all(|p| p.requests == 5));
        // A quiet slide is rolled up with zero requests; a long silence at most a window.
        let quiet = a.take_rollups(&c, T0 + 4.0 * SLIDE_MS + 3000.0);
        assert_eq!(quiet.iter().map(|p| p.requests).collect::<Vec<_>>(), vec![0]);
        let after_silence = a.take_rollups(&c, T0 + 100.0 * SLIDE_MS + 3000.0);
        assert_eq!(after_silence.len() as i64, c.window_s / c.slide_s - 1, "the closed slides of one window");
        // A sample for a slide already rolled up is refused, not double-counted.
        assert!(!a.ingest_sample(&c, &sample(T0 + 1000.0, "late"), T0 + 3.0 * SLIDE_MS + 31_000.0));
        // State survives a restart (serialize and load).
        let text = serde_json::to_string(&a).unwrap();
        let b: Aggregator = serde_json::from_str(&text).unwrap();
        assert_eq!(b, a);
    }

    #[test]
    fn bounded_memory_and_eviction() {
        let c = cfg();
        let mut a = Aggregator::default();
        let now = T0 + 1000.0;
        for i in 0..10_000 {
            let mut s = sample(now, &format!("s{i}"));
            s.country = Some(format!("{}{}", (b'A' + (i % 26) as u8) as char, (b'A' + ((i / 26) % 26) as u8) as char));
            s.probe = Some(format!("/probe/{i}"));
            s.risk = 99;
            a.ingest_sample(&c, &s, now);
        }
        let slide = a.slides.values().next().unwrap();
        assert!(slide.countries.len() <= MAX_KEYS && slide.probes.len() <= MAX_KEYS);
        assert!(slide.countries.values().all(|k| k.high_risk.members.len() <= MAX_MEMBERS));
        assert!((slide.point().unique_ips - 10_000.0).abs() < 500.0);
        a.evict(&c, now + 10.0 * SLIDE_MS);
        assert!(a.slides.is_empty());
    }

    #[test]
    fn reported_losses_are_counted_per_slide_and_in_totals() {
        let c = cfg();
        let mut a = Aggregator::default();
        let now = T0 + 1000.0;
        a.count_dropped(&c, 5, now);
        a.count_dropped(&c, 2, now);
        let p = a.slides.values().next().unwrap().point();
        assert_eq!((p.observations_dropped, a.totals.observations_dropped), (7, 7));
        assert_eq!(p.metric("observations_dropped"), Some(7.0));
        // A window persisted before the field existed still loads (zero).
        let mut v = serde_json::to_value(&a).unwrap();
        v["totals"].as_object_mut().unwrap().remove("observations_dropped");
        assert_eq!(serde_json::from_value::<Aggregator>(v).unwrap().totals.observations_dropped, 0);
    }

    #[test]
    fn stale_lists_and_fail_closed_answers_are_counted() {
        let cfg = AnalyticsConfig::default();
        let mut a = Aggregator::default();
        let base = Sample { at: 1_000_000.0, subject: "s".into(), status: 200, ..Sample::default() };
        let stale = Sample { lists_stale: true, ..base.clone() };
        let closed = Sample { fail_closed: true, status: 503, consult: Consult::Timeout, ..base.clone() };
        for s in [&base, &stale, &closed] {
            assert!(a.ingest_sample(&cfg, s, 1_000_000.0));
        }
        let t = &a.totals;
        assert_eq!(
            (t.requests, t.degraded, t.fail_closed, t.server_errors),
            (3, 2, 1, 0),
            "a 503 the edge answered is no origin error"
        );
        let slide = a.slides.values().next().unwrap();
        assert_eq!((slide.degraded, slide.fail_closed, slide.server_errors), (2, 1, 0));
        let back: Sample = serde_json::from_str(&serde_json::to_string(&stale).unwrap()).unwrap();
        assert!(back.lists_stale && !back.fail_closed);
        let old: Sample = serde_json::from_str(r#"{"t":1,"s":"x","r":0,"o":200}"#).unwrap();
        assert!(!old.degraded() && old.reached_origin());
    }

    #[test]
    fn enforced_samples_are_not_origin_answers() {
        let c = cfg();
        let mut a = Aggregator::default();
        let now = T0 + 1000.0;
        for i in 0..20 {
            let mut s = sample(now, &format!("198.51.100.{i}"));
            s.status = 403;
            s.latency_ms = None;
            s.enforced = true;
            a.ingest_sample(&c, &s, now);
        }
        let slide = a.slides.values().next().unwrap();
        assert!(slide.auth_failures.is_empty(), "no credential stuffing from our own challenges");
        assert_eq!(slide.latency.count, 0, "no origin latency for requests that never reached it");
        assert_eq!((slide.enforced, a.totals.enforced, slide.requests), (20, 20, 20));
        assert_eq!(slide.point().origin_latency.avg, None);
        // A report from an older isolate (latency a plain number, no `e`) still parses.
        let old: Sample = serde_json::from_str(r#"{"t":1,"s":"x","r":0,"o":200,"l":12.5}"#).unwrap();
        assert_eq!((old.latency_ms, old.enforced), (Some(12.5), false));
    }

    #[test]
    fn ten_thousand_env_variants_are_one_probe_key() {
        let c = cfg();
        let mut a = Aggregator::default();
        let now = T0 + 1000.0;
        for i in 0..10_000 {
            let mut s = sample(now, &format!("203.0.{}.{}", i / 256, i % 256));
            s.probe = crate::intel::signals::probe_rule(&format!("/.env/{i}")).map(String::from);
            a.ingest_sample(&c, &s, now);
        }
        let slide = a.slides.values().next().unwrap();
        assert_eq!(slide.probes.keys().collect::<Vec<_>>(), vec!["/.env"]);
        assert_eq!(slide.probes["/.env"].len(), 10_000, "every prober still counts");
    }

    #[test]
    fn a_slide_fed_adversarial_keys_stays_under_its_byte_bound() {
        let c = cfg();
        let mut a = Aggregator::default();
        let now = T0 + 1000.0;
        for i in 0..20_000u32 {
            // Unique subjects as long as a hashed key, unique countries, ASNs,
            // probe keys (raw paths, as an older isolate sends them), long
            // event IPs: every set and map is fed something new.
            let mut s = sample(now, &format!("h:{i:032x}"));
            s.country = Some(format!("{}{}", (b'A' + (i % 26) as u8) as char, (b'A' + ((i / 26) % 26) as u8) as char));
            s.asn = Some(i);
            s.probe = Some(format!("/.env/{i}/{}", "x".repeat((i % 200) as usize)));
            s.risk = 99;
            s.status = 401;
            a.ingest_sample(&c, &s, now);
            let mut e = threat_event(&format!("h:{i:032x}{}", "y".repeat((i % 3) as usize * 40)), now, 90.0);
            a.ingest_event(&c, &e, now);
            e.event.event_type = EventType::BehaviorAnomaly;
            e.event.data.behavioral_flags = vec!["impossible_travel".into()];
            a.ingest_event(&c, &e, now);
        }
        let slide = a.slides.values().next().unwrap();
        let size = serde_json::to_string(slide).unwrap().len();
        // The rest of a slide does not grow with keys: the HLL (2 KiB hex),
        // two histograms (at most 251 buckets each) and counters (512 bytes
        // of slack for their digits).
        let keyless = Slide {
            unique: slide.unique.clone(),
            latency: slide.latency.clone(),
            consult_latency: slide.consult_latency.clone(),
            ..Slide::new(slide.start)
        };
        let fixed = serde_json::to_string(&keyless).unwrap().len() + 512;
        assert!(size <= MAX_SLIDE_BYTES + fixed, "{size} bytes > {} + {fixed}", MAX_SLIDE_BYTES);
        assert!(slide.budget.bytes <= MAX_SLIDE_BYTES as u64);
        assert!(slide.budget.dropped > 0, "what did not fit is counted");
        assert_eq!(slide.point().keys_dropped, slide.budget.dropped, "and shown with the slide's numbers");
        assert_eq!(slide.requests, 20_000, "counts are not bounded, only stored strings");
        assert!(slide.auth_failures.len() >= 20_000 - 1, "support counts survive: {}", slide.auth_failures.len());
        assert!(slide.probes.keys().all(|k| k.len() <= MAX_KEY_BYTES));
        // State written before this field existed still loads.
        let mut v = serde_json::to_value(slide).unwrap();
        v.as_object_mut().unwrap().remove("budget");
        assert_eq!(serde_json::from_value::<Slide>(v).unwrap().budget, Budget::default());
    }

    #[test]
    fn shards_merge_on_read() {
        let c = cfg();
        let now = T0 + 1000.0;
        let (mut x, mut y) = (Aggregator::default(), Aggregator::default());
        for i in 0..2 {
            let mut s = sample(now, &format!("x{i}"));
            s.probe = Some("/.env".into());
            x.ingest_sample(&c, &s, now);
        }
        let mut s = sample(now, "y0");
        s.probe = Some("/.env".into());
        y.ingest_sample(&c, &s, now);
        assert!(x.views(&c, now).patterns.is_empty() && y.views(&c, now).patterns.is_empty());
        let (xs, ys): (Vec<Slide>, Vec<Slide>) =
            (x.slides.values().cloned().collect(), y.slides.values().cloned().collect());
        let mut site = Aggregator::site();
        for (slides, a) in [(&xs, &x), (&ys, &y)] {
            site.add_shard(&ShardPart { slides, hours: &a.hours, totals: &a.totals });
        }
        let refs: Vec<&Slide> = site.slides.values().collect();
        assert_eq!(kinds(&patterns(&c, &refs, SpikeSpan::at(&c, now))), vec!["scanning_campaign:/.env".to_string()]);
        assert_eq!(refs[0].requests, 3);
    }

    #[test]
    fn the_site_window_of_shards_rolls_up_what_no_single_shard_saw() {
        // Shard 0 saw nothing; shards 1 and 2 saw a scanner each: only the
        // merged window has the campaign, the requests of both, and slides
        // to roll up (shard 0's tick evaluates this merge, issue 15 item 12).
        let c = cfg();
        let now = T0 + 1000.0;
        let (zero, mut one, mut two) = (Aggregator::default(), Aggregator::default(), Aggregator::default());
        for (agg, ip) in [(&mut one, "a"), (&mut two, "b")] {
            for i in 0..2 {
                let mut s = sample(now, &format!("{ip}{i}"));
                s.probe = Some("/.env".into());
                agg.ingest_sample(&c, &s, now);
            }
            agg.totals.requests = 2;
            agg.hours = vec![1; 24];
        }
        one.slides.values_mut().for_each(|s| s.gauges.stream_clients = Some(9.0));
        let parts: Vec<(Vec<Slide>, &Aggregator)> =
            [&zero, &one, &two].into_iter().map(|a| (a.slides.values().cloned().collect(), a)).collect();
        let parts: Vec<ShardPart> =
            parts.iter().map(|(s, a)| ShardPart { slides: s, hours: &a.hours, totals: &a.totals }).collect();
        let mut site = merge_shards(&parts);
        assert_eq!(site.totals.requests, 4);
        assert_eq!(site.hours, vec![2; 24], "hours add up (a shard with none counts zero)");
        let later = now + (c.slide_s as f64) * 1000.0 + c.grace_ms + 1.0;
        assert!(zero.clone().take_rollups(&c, later).is_empty(), "shard 0 alone has nothing to roll up");
        let points = site.take_rollups(&c, later);
        assert_eq!(points.iter().map(|p| p.requests).sum::<u64>(), 4);
        assert_eq!(points[0].gauges.stream_clients, Some(9.0), "sockets add up (one shard counts them)");
        let mut g = Gauges { alarm_lag_ms: Some(5.0), stream_clients: Some(2.0), ..Gauges::default() };
        g.merge(&Gauges {
            alarm_lag_ms: Some(900.0),
            tick_duration_ms: Some(3.0),
            stream_clients: Some(0.0),
            ..Gauges::default()
        });
        assert_eq!(
            g,
            Gauges {
                alarm_lag_ms: Some(900.0),
                kv_write_latency_ms: None,
                tick_duration_ms: Some(3.0),
                stream_clients: Some(2.0)
            },
            "the worst lag of any shard is the site's"
        );
        let campaigns: Vec<String> =
            kinds(&site.views(&c, later).patterns).into_iter().filter(|k| k.starts_with("scanning")).collect();
        assert_eq!(campaigns, vec!["scanning_campaign:/.env".to_string()], "one campaign of four scanners");
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("203.0.113.7", 1), 0);
        assert_eq!(shard_of("203.0.113.7", 4), shard_of("203.0.113.7", 4));
        let mut seen = [0u32; 4];
        for i in 0..400 {
            seen[shard_of(&format!("198.51.{}.{}", i / 256, i % 256), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
    }

    #[test]
    fn metric_names_resolve() {
        let mut s = Slide::new(0);
        let mut x = sample(0.0, "a");
        x.consult = Consult::Ok;
        x.consult_ms = Some(3.0);
        x.latency_ms = Some(5.0);
        s.add_sample(&x, false);
        s.gauges = Gauges {
            alarm_lag_ms: Some(3.0),
            kv_write_latency_ms: Some(4.0),
            tick_duration_ms: Some(5.0),
            stream_clients: Some(2.0),
        };
        let p = s.point();
        // Every name an alert rule may use (the rolled-up ones among them).
        for name in rule_metrics() {
            assert!(p.metric(name).is_some(), "{name}");
        }
        assert_eq!(p.metric("nope"), None);
    }

    #[test]
    fn an_erased_subject_leaves_every_member_set_and_late_samples_do_not_bring_it_back() {
        let c = cfg();
        let mut a = Aggregator::default();
        let who = "198.51.100.120";
        let mut hot = sample(T0, who);
        hot.risk = 90;
        hot.probe = Some("/.env".into());
        a.ingest_sample(&c, &hot, T0);
        let mut denied = sample(T0 + 1.0, who);
        denied.status = 401;
        a.ingest_sample(&c, &denied, T0 + 1.0);
        a.ingest_sample(&c, &sample(T0 + 2.0, "203.0.113.9"), T0 + 2.0);
        let mut high = threat_event("198.51.100.x", T0 + 3.0, 95.0);
        high.subject = who.into();
        a.ingest_event(&c, &high, T0 + 3.0);
        let mut travel = high.clone();
        travel.event.event_type = EventType::BehaviorAnomaly;
        travel.event.data.behavioral_flags = vec!["impossible_travel".into()];
        a.ingest_event(&c, &travel, T0 + 3.0);
        let json = |a: &Aggregator| serde_json::to_string(&a.slides).unwrap();
        assert!(json(&a).contains(who));
        // Members are subject keys, not the event's (possibly masked) ip.
        assert!(!json(&a).contains("198.51.100.x"));
        let erased_at = T0 + 4.0;
        let bytes_before = a.slides.values().next().unwrap().budget.bytes;
        let touched = a.forget(who, erased_at);
        assert_eq!(touched.len(), 1);
        assert!(!json(&a).contains(who), "{}", json(&a));
        // Counts stay (they are not the subject's); the budget gave back its bytes.
        let slide = a.slides.values().next().unwrap();
        assert_eq!((slide.requests, slide.high_risk, slide.high_threat_events, slide.travel_events), (3, 1, 1, 1));
        // Six memberships: country and ASN high risk, the probe, auth failures, high threat, travel.
        assert_eq!(bytes_before - slide.budget.bytes, 6 * (who.len() + MEMBER_COST) as u64);
        // A batch from before the erasure arrives late: counted, in no set.
        let mut late = hot.clone();
        late.at = T0 + 3.5;
        assert!(a.ingest_sample(&c, &late, T0 + 5.0));
        a.ingest_event(&c, &high, T0 + 5.0);
        assert!(!json(&a).contains(who), "{}", json(&a));
        assert_eq!(a.slides.values().next().unwrap().requests, 4);
        // A request after the erasure is a new sighting.
        let mut fresh = hot.clone();
        fresh.at = T0 + 6.0;
        a.ingest_sample(&c, &fresh, T0 + 6.0);
        assert!(json(&a).contains(who));
        // The erasure is remembered while it is inside the window, then dropped.
        a.evict(&c, T0 + 6.0);
        assert!(a.forgotten.contains_key(&forgotten_key(who)));
        assert!(!serde_json::to_string(&a.forgotten).unwrap().contains(who), "the erased key itself is not kept");
        a.evict(&c, erased_at + (c.window_s as f64 + 2.0 * c.slide_s as f64) * 1000.0);
        assert!(a.forgotten.is_empty());
    }
}

//! One subject's profile (docs/profiles.md) and the rules that update it: from
//! observations of its requests, from pushed events, and over time (threat
//! decays, reputation recovers). Pure: the Durable Object loads, calls these,
//! persists what changed. Time is always an argument.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::events::{EventData, EventType, IntelEvent, Location, Priority};
use super::geo::haversine_km;
use super::rotation::Widened;
use super::score::Weights;
use super::signals::{Reason, Signal};
use super::stepup::{self, StepUp};
use super::travel::TravelFinding;
use super::window::SlidingCount;

pub const SCHEMA_VERSION: u32 = 1;
pub const MAX_LOCATIONS: usize = 100;
pub const MAX_ALERTS: usize = 50;
const MAX_PATTERNS: usize = 20;
const MAX_DISTINCT: usize = 50;
/// Visitor keys kept per profile, the newest first out of the list last: an
/// erasure erases every one of them (docs/privacy.md). 32 hex characters
/// each, so the list adds at most ~7 KB to the profile row; a shared address
/// (a NAT, an office) with more visitors loses its oldest keys, whose
/// objects then expire after `PROFILE_TTL_DAYS` instead.
pub const MAX_VISITORS: usize = 200;
/// Returning visitors remembered per subject for the shared-address count.
pub const MAX_CROWD: usize = 64;
const MINUTE: f64 = 60_000.0;
const HOUR: f64 = 60.0 * MINUTE;
const DAY: f64 = 24.0 * HOUR;

/// Threat points one probe request adds, and what each burst detection adds.
const PROBE_THREAT: f64 = 8.0;
const BURST_THREAT: f64 = 20.0;
const VELOCITY_THREAT: f64 = 15.0;
const TRAVEL_THREAT: f64 = 30.0;
/// Reputation lost per probe and per burst (violations).
const PROBE_REPUTATION: f64 = 2.0;
const BURST_REPUTATION: f64 = 10.0;
/// Threat below this contributes nothing (noise after decay).
const THREAT_FLOOR: f64 = 10.0;
/// `bad_reputation` below this.
const BAD_REPUTATION_BELOW: f64 = 30.0;
/// Probes within the burst window that keep `path_scan` on for clean paths.
const PROBES_FOR_HISTORY: f64 = 3.0;
/// Neutral reputation.
pub const NEUTRAL: f64 = 50.0;

/// The thresholds and time constants the rules use (from `Config`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRules {
    /// `VELOCITY_RPM` (120).
    pub velocity_rpm: f64,
    /// `BURST_WINDOW_SECONDS` (300) as ms: window for origin status bursts and probes.
    pub burst_window_ms: f64,
    /// `AUTH_FAILURE_BURST` (10) 401/403 answers in the window.
    pub auth_failure_burst: f64,
    /// `NOT_FOUND_BURST` (20) 404 answers in the window.
    pub not_found_burst: f64,
    /// `GEO_JUMP_KM` (500).
    pub geo_jump_km: f64,
    /// `THREAT_HALF_LIFE_MIN` (360) as ms.
    pub threat_half_life_ms: f64,
    /// `REPUTATION_HALF_LIFE_MIN` (1440) as ms: how fast reputation returns to 50.
    pub reputation_half_life_ms: f64,
    /// How long `geo_jump` and `impossible_travel` keep flagging (1 h).
    pub signal_memory_ms: f64,
    /// `SHARED_MIN_VISITORS` (3): distinct returning visitors within the
    /// hour from which a subject is a shared address (0 = never).
    pub shared_min_visitors: usize,
    /// `SHARED_MAX_FACTOR` (8): the most a shared address's rate and burst
    /// thresholds are multiplied by.
    pub shared_max_factor: f64,
}

impl Default for ProfileRules {
    fn default() -> Self {
        ProfileRules {
            velocity_rpm: 120.0,
            burst_window_ms: 300_000.0,
            auth_failure_burst: 10.0,
            not_found_burst: 20.0,
            geo_jump_km: 500.0,
            threat_half_life_ms: 360.0 * MINUTE,
            reputation_half_life_ms: 1440.0 * MINUTE,
            signal_memory_ms: HOUR,
            shared_min_visitors: 3,
            shared_max_factor: 8.0,
        }
    }
}

/// One request as the edge saw it, sent to the subject's object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub at: f64,
    pub method: String,
    pub path: String,
    /// The origin's status; `None` until known (consistent mode records
    /// first) and for requests the edge answered itself (`action`).
    #[serde(default)]
    pub status: Option<u16>,
    /// The origin's latency; `None` when the request never reached it.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    pub location: Location,
    /// Request-only reasons the edge found.
    #[serde(default)]
    pub signals: Vec<Reason>,
    /// `challenge` or `block` when the edge answered the request itself
    /// (enforcement: never counted as an origin status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The visitor key (a hash), so erasing the subject can erase its visitors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor: Option<String>,
    /// The visitor came back with its cookie (not one minted for this
    /// request): only such visitors make a subject a shared address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub returning: bool,
    /// A wrong admin credential sent to edgeintel's own API: an auth failure
    /// (the `auth_failures` signal), but not an origin answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin_auth_failed: bool,
}

impl Observation {
    /// An estimate of the memory it holds while it waits in a batch: the
    /// struct itself plus its text (the path can be kilobytes long).
    pub fn approx_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let l = &self.location;
        std::mem::size_of::<Observation>()
            + self.method.len()
            + self.path.len()
            + text(&l.country_code)
            + text(&l.city)
            + text(&l.region)
            + text(&l.colo)
            + self.signals.len() * std::mem::size_of::<Reason>()
            + text(&self.action)
            + text(&self.visitor)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: Priority,
    pub timestamp: f64,
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Behavioral {
    /// Behaviour flags seen (detections and `behavior_anomaly` flags), newest last.
    pub patterns: Vec<String>,
    /// The reason codes of the current verdict.
    pub risk_factors: Vec<String>,
    pub last_activity: f64,
    /// Requests in the last hour (estimate).
    pub activity_frequency: f64,
}

/// A score that moves back toward `rest` exponentially from `(value, at)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Relaxing {
    pub value: f64,
    pub at: f64,
}

impl Relaxing {
    pub fn at_time(&self, now: f64, rest: f64, half_life_ms: f64) -> f64 {
        let dt = (now - self.at).max(0.0);
        if half_life_ms <= 0.0 {
            return rest;
        }
        rest + (self.value - rest) * 0.5f64.powf(dt / half_life_ms)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub minute: SlidingCount,
    pub hour: SlidingCount,
    pub day: SlidingCount,
    pub auth_failures: SlidingCount,
    pub not_found: SlidingCount,
    pub rate_limited: SlidingCount,
    pub server_errors: SlidingCount,
    pub probes: SlidingCount,
    /// Requests the edge challenged or blocked (in the burst window).
    #[serde(default)]
    pub enforced: SlidingCount,
    /// Wrong admin credentials (also counted in `auth_failures`, the signal).
    #[serde(default)]
    pub admin_auth_failures: SlidingCount,
}

/// The profile's scalar state (one row). Location history and alerts live
/// beside it (their own tables), in `history` and `alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub schema_version: u32,
    /// The subject key (or its HMAC when IPs are hashed).
    pub subject: String,
    /// What is shown as the IP (masked when IPs are hashed).
    pub ip: String,
    pub first_seen: f64,
    pub last_updated: f64,
    pub request_count: u64,
    pub current_location: Option<Location>,
    pub threat: Relaxing,
    pub reputation: Relaxing,
    pub behavioral_profile: Behavioral,
    pub confidence: f64,
    pub counters: Counters,
    pub countries: Vec<String>,
    pub asns: Vec<u32>,
    pub geo_jump_at: Option<f64>,
    pub travel: Option<TravelFinding>,
    pub reasons: Vec<Reason>,
    /// Visitor keys seen from this subject (bounded), for erasure.
    #[serde(default)]
    pub visitors: Vec<String>,
    /// Returning visitors seen from this subject and when last (at most
    /// `MAX_CROWD`, the oldest out first): how many people share it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crowd: Vec<CrowdMember>,
    /// Requests the edge challenged or blocked.
    #[serde(default)]
    pub enforced: u64,
    /// Set when the subject is a widened one (`subnet_rotation`): which
    /// prefix it stands for instead of one address's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widened: Option<Widened>,
    /// Anything beyond a quiet request happened: a request signal, a counted
    /// status, an enforcement, a pushed event, a travel finding. A profile of
    /// one request without it is "seen once" (`retention_ms`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub eventful: bool,
    /// Step-ups the origin asked for (`intel::stepup`), at most
    /// `stepup::MAX_PER_CLIENT`; the expired ones go at the next one added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_ups: Vec<StepUp>,
    #[serde(skip)]
    pub history: VecDeque<Location>,
    #[serde(skip)]
    pub alerts: VecDeque<Alert>,
}

/// What one update changed, for the object to persist and publish.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub new_locations: Vec<Location>,
    pub new_alerts: Vec<Alert>,
    pub events: Vec<IntelEvent>,
}

impl Changes {
    fn alert(&mut self, p: &mut Profile, kind: &str, severity: Priority, at: f64, description: String) {
        let a = Alert { kind: kind.to_string(), severity, timestamp: at, description };
        push_bounded(&mut p.alerts, a.clone(), MAX_ALERTS);
        self.new_alerts.push(a);
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, cap: usize) {
    q.push_back(item);
    while q.len() > cap {
        q.pop_front();
    }
}

/// One returning visitor of a subject (`Profile::crowd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrowdMember {
    /// The visitor key (already a hash).
    pub v: String,
    /// Last seen (ms).
    pub t: f64,
}

fn remember<T: PartialEq>(v: &mut Vec<T>, item: T, cap: usize) {
    if let Some(i) = v.iter().position(|x| *x == item) {
        v.remove(i);
    } else if v.len() >= cap {
        v.remove(0);
    }
    v.push(item);
}

impl Profile {
    pub fn new(subject: &str, ip: &str, now: f64) -> Profile {
        Profile {
            schema_version: SCHEMA_VERSION,
            subject: subject.to_string(),
            ip: ip.to_string(),
            first_seen: now,
            last_updated: now,
            request_count: 0,
            current_location: None,
            threat: Relaxing { value: 0.0, at: now },
            reputation: Relaxing { value: NEUTRAL, at: now },
            behavioral_profile: Behavioral { last_activity: now, ..Behavioral::default() },
            confidence: 0.0,
            counters: Counters::default(),
            countries: Vec::new(),
            asns: Vec::new(),
            geo_jump_at: None,
            travel: None,
            reasons: Vec::new(),
            visitors: Vec::new(),
            crowd: Vec::new(),
            enforced: 0,
            widened: None,
            eventful: false,
            step_ups: Vec::new(),
            history: VecDeque::new(),
            alerts: VecDeque::new(),
        }
    }

    pub fn threat_at(&self, now: f64, rules: &ProfileRules) -> f64 {
        self.threat.at_time(now, 0.0, rules.threat_half_life_ms)
    }

    pub fn reputation_at(&self, now: f64, rules: &ProfileRules) -> f64 {
        self.reputation.at_time(now, NEUTRAL, rules.reputation_half_life_ms)
    }

    fn bump_threat(&mut self, now: f64, by: f64, rules: &ProfileRules) {
        let v = (self.threat_at(now, rules) + by).clamp(0.0, 100.0);
        self.threat = Relaxing { value: v, at: now };
    }

    fn lower_reputation(&mut self, now: f64, by: f64, rules: &ProfileRules) {
        let v = (self.reputation_at(now, rules) - by).clamp(0.0, 100.0);
        self.reputation = Relaxing { value: v, at: now };
    }

    fn event(&self, at: f64, kind: EventType, priority: Priority, data: EventData) -> IntelEvent {
        IntelEvent {
            ip: self.ip.clone(),
            timestamp: at,
            event_type: kind,
            confidence: self.confidence.round(),
            data,
            source: "edgeintel".to_string(),
            priority,
        }
    }

    /// Applies one request. Returns what changed, including the events it
    /// produced: `location_update` when the place changed, `threat_detected`
    /// when detections raised the threat score, `behavior_anomaly` for
    /// geo jumps and impossible travel.
    pub fn observe(&mut self, obs: &Observation, rules: &ProfileRules) -> Changes {
        let now = obs.at;
        let mut ch = Changes::default();
        let threat_before = self.threat_at(now, rules);
        let mut detections: Vec<&'static str> = Vec::new();
        let mut anomalies: Vec<String> = Vec::new();

        self.request_count = self.request_count.saturating_add(1);
        self.last_updated = self.last_updated.max(now);
        if !obs.signals.is_empty()
            || obs.action.is_some()
            || obs.admin_auth_failed
            || obs.status.is_some_and(counts_status)
        {
            self.eventful = true;
        }
        if obs.signals.contains(&Reason::SubnetRotation) && self.widened.is_none() {
            self.widened = Some(Widened::of_display(&self.ip));
        }
        self.behavioral_profile.last_activity = self.behavioral_profile.last_activity.max(now);
        if let (Some(v), true) = (&obs.visitor, obs.returning) {
            self.see_in_crowd(v, now);
        }
        // A shared address (carrier NAT, an office): its thresholds scale
        // with the people behind it (`shared_factor`).
        let factor = self.shared_factor(now, rules);
        let velocity_rpm = rules.velocity_rpm * factor;
        let rpm_before = self.counters.minute.estimate(now, MINUTE);
        self.counters.minute.add(now, MINUTE, 1);
        self.counters.hour.add(now, HOUR, 1);
        self.counters.day.add(now, DAY, 1);
        // A widened profile (a /48 or /24 many devices land on) is a crowd:
        // its request rate is theirs together, not one client's, so it
        // never raises `high_velocity` (counted all the same, for metrics).
        // Rotation itself is what `subnet_rotation` marks.
        if self.widened.is_none()
            && rpm_before <= velocity_rpm
            && self.counters.minute.estimate(now, MINUTE) > velocity_rpm
        {
            detections.push("high_velocity");
            self.bump_threat(now, VELOCITY_THREAT, rules);
            self.lower_reputation(now, BURST_REPUTATION / 2.0, rules);
            let d = format!("more than {velocity_rpm} requests per minute");
            ch.alert(self, "high_velocity", Priority::Medium, now, d);
        }
        if obs.signals.contains(&Reason::PathScan) {
            self.counters.probes.add(now, rules.burst_window_ms, 1);
            detections.push("path_scan");
            self.bump_threat(now, PROBE_THREAT, rules);
            self.lower_reputation(now, PROBE_REPUTATION, rules);
        }
        match &obs.action {
            // The edge's own answer (a challenge page or a block is a 403) is
            // enforcement, not the origin's: counting it as an auth failure
            // would push a challenged browser toward a block. A status sent
            // with an action (observations of older isolates) is ignored.
            Some(action) => anomalies.push(self.count_enforcement(action, now, rules)),
            // A guess at the admin token is an auth failure like the origin's
            // 401/403 (the same signal), shown apart from origin statuses.
            None if obs.admin_auth_failed => {
                self.counters.admin_auth_failures.add(now, rules.burst_window_ms, 1);
                self.count_status(401, now, rules, factor, &mut ch, &mut detections);
            }
            None => {
                if let Some(status) = obs.status {
                    self.count_status(status, now, rules, factor, &mut ch, &mut detections);
                }
            }
        }
        self.observe_location(&obs.location, now, rules, &mut ch, &mut anomalies);
        if let Some(v) = &obs.visitor {
            remember(&mut self.visitors, v.clone(), MAX_VISITORS);
        }
        self.confidence = 100.0 * (1.0 - (-(self.request_count as f64) / 20.0).exp());
        self.behavioral_profile.activity_frequency = self.counters.hour.estimate(now, HOUR);
        for d in &detections {
            remember(&mut self.behavioral_profile.patterns, d.to_string(), MAX_PATTERNS);
        }
        if !anomalies.is_empty() {
            let data = EventData { behavioral_flags: anomalies, ..EventData::default() };
            ch.events.push(self.event(now, EventType::BehaviorAnomaly, Priority::Medium, data));
        }
        let threat_now = self.threat_at(now, rules);
        if threat_now > threat_before + 0.5 {
            if threat_before <= 75.0 && threat_now > 75.0 {
                let severity = if threat_now > 90.0 { Priority::Critical } else { Priority::High };
                let d = format!("threat score rose to {:.0} ({})", threat_now, detections.join(", "));
                ch.alert(self, "threat_detected", severity, now, d);
            }
            let data = EventData {
                threat_score: Some(threat_now.round()),
                behavioral_flags: detections.iter().map(|d| d.to_string()).collect(),
                ..EventData::default()
            };
            ch.events.push(self.event(now, EventType::ThreatDetected, priority_of(threat_now), data));
        }
        ch
    }

    fn count_status(
        &mut self,
        status: u16,
        now: f64,
        rules: &ProfileRules,
        factor: f64,
        ch: &mut Changes,
        detections: &mut Vec<&'static str>,
    ) {
        let w = rules.burst_window_ms;
        // Failed logins are not scaled: a client can collect visitor cookies
        // and rotate them to look like a crowd, and credential stuffing is
        // what this burst is for (docs/profiles.md, "Shared addresses").
        let (auth_failure_burst, not_found_burst) = (rules.auth_failure_burst, rules.not_found_burst * factor);
        match status {
            401 | 403 => {
                let before = self.counters.auth_failures.estimate(now, w);
                self.counters.auth_failures.add(now, w, 1);
                if before < auth_failure_burst && self.counters.auth_failures.estimate(now, w) >= auth_failure_burst {
                    detections.push("auth_failures");
                    self.bump_threat(now, BURST_THREAT, rules);
                    self.lower_reputation(now, BURST_REPUTATION, rules);
                    let d = format!("{} or more 401/403 answers within {:.0} s", auth_failure_burst, w / 1000.0);
                    ch.alert(self, "auth_failures", Priority::High, now, d);
                }
            }
            404 => {
                let before = self.counters.not_found.estimate(now, w);
                self.counters.not_found.add(now, w, 1);
                if before < not_found_burst && self.counters.not_found.estimate(now, w) >= not_found_burst {
                    detections.push("not_found_burst");
                    self.bump_threat(now, BURST_THREAT / 2.0, rules);
                    self.lower_reputation(now, BURST_REPUTATION / 2.0, rules);
                    let d = format!("{} or more 404 answers within {:.0} s", not_found_burst, w / 1000.0);
                    ch.alert(self, "not_found_burst", Priority::Medium, now, d);
                }
            }
            429 => self.counters.rate_limited.add(now, w, 1),
            500..=599 => self.counters.server_errors.add(now, w, 1),
            _ => {}
        }
    }

    /// Records an impossible hop of a visitor whose latest request came from
    /// this subject (reported by the visitor's object). The same finding
    /// twice changes nothing.
    pub fn apply_travel(&mut self, f: &TravelFinding, now: f64, rules: &ProfileRules) -> Changes {
        let mut ch = Changes::default();
        if self.travel.as_ref().is_some_and(|t| t.at == f.at) {
            return ch;
        }
        // Only this subject's own IP is kept (issue 15, item 9): the other
        // sighting's subject is not this profile's to store.
        let f = &f.naming_only(&self.ip);
        self.eventful = true;
        let before = self.threat_at(now, rules);
        self.travel = Some(f.clone());
        self.last_updated = self.last_updated.max(now);
        remember(&mut self.behavioral_profile.patterns, "impossible_travel".to_string(), MAX_PATTERNS);
        self.bump_threat(now, TRAVEL_THREAT, rules);
        ch.alert(self, "impossible_travel", Priority::High, now, f.description.clone());
        let flags = EventData {
            behavioral_flags: vec!["impossible_travel".to_string()],
            metadata: serde_json::from_value(
                json!({ "description": f.description, "km": f.km.round(), "minutes": f.minutes.round() }),
            )
            .unwrap_or_default(),
            ..EventData::default()
        };
        ch.events.push(self.event(now, EventType::BehaviorAnomaly, Priority::High, flags));
        let after = self.threat_at(now, rules);
        let data = EventData {
            threat_score: Some(after.round()),
            behavioral_flags: vec!["impossible_travel".to_string()],
            ..EventData::default()
        };
        ch.events.push(self.event(now, EventType::ThreatDetected, priority_of(after.max(before)), data));
        ch
    }

    /// Counts one challenged or blocked request; returns the event flag
    /// (`enforced:<action>`; the verdict's reasons are not included).
    fn count_enforcement(&mut self, action: &str, now: f64, rules: &ProfileRules) -> String {
        self.enforced = self.enforced.saturating_add(1);
        self.counters.enforced.add(now, rules.burst_window_ms, 1);
        format!("enforced:{action}")
    }

    /// Records that the edge challenged or blocked a request observed
    /// earlier (consistent mode records before deciding).
    pub fn record_enforcement(&mut self, action: &str, now: f64, rules: &ProfileRules) -> Changes {
        let mut ch = Changes::default();
        self.last_updated = self.last_updated.max(now);
        self.eventful = true;
        let flag = self.count_enforcement(action, now, rules);
        let data = EventData { behavioral_flags: vec![flag], ..EventData::default() };
        ch.events.push(self.event(now, EventType::BehaviorAnomaly, Priority::Medium, data));
        ch
    }

    /// Records the origin's answer to a request observed earlier (consistent mode).
    pub fn record_status(&mut self, status: u16, now: f64, rules: &ProfileRules) -> Changes {
        let mut ch = Changes::default();
        let mut detections = Vec::new();
        let before = self.threat_at(now, rules);
        self.eventful |= counts_status(status);
        let factor = self.shared_factor(now, rules);
        self.count_status(status, now, rules, factor, &mut ch, &mut detections);
        let after = self.threat_at(now, rules);
        if after > before + 0.5 {
            let data = EventData {
                threat_score: Some(after.round()),
                behavioral_flags: detections.iter().map(|d| d.to_string()).collect(),
                ..EventData::default()
            };
            ch.events.push(self.event(now, EventType::ThreatDetected, priority_of(after), data));
        }
        ch
    }

    fn observe_location(
        &mut self,
        loc: &Location,
        now: f64,
        rules: &ProfileRules,
        ch: &mut Changes,
        anomalies: &mut Vec<String>,
    ) {
        if let Some(c) = &loc.country_code {
            remember(&mut self.countries, c.clone(), MAX_DISTINCT);
        }
        if let Some(a) = loc.asn {
            remember(&mut self.asns, a, MAX_DISTINCT);
        }
        let known = loc.country_code.is_some() || loc.coordinates().is_some();
        if !known {
            return;
        }
        let changed = self.current_location.as_ref().is_none_or(|cur| !cur.same_place(loc));
        if let (Some(prev), Some(here)) =
            (self.current_location.as_ref().and_then(Location::coordinates), loc.coordinates())
        {
            let km = haversine_km(prev, here);
            if km >= rules.geo_jump_km {
                self.geo_jump_at = Some(now);
                anomalies.push("geo_jump".to_string());
            }
        }
        if changed {
            let mut entry = loc.clone();
            entry.timestamp = now;
            push_bounded(&mut self.history, entry.clone(), MAX_LOCATIONS);
            ch.new_locations.push(entry.clone());
            self.current_location = Some(entry.clone());
            let data = EventData { geolocation: Some(entry), ..EventData::default() };
            ch.events.push(self.event(now, EventType::LocationUpdate, Priority::Low, data));
        }
    }

    /// Applies a pushed event (docs/api.md).
    pub fn apply_event(&mut self, ev: &IntelEvent, now: f64, rules: &ProfileRules) -> Changes {
        let mut ch = Changes::default();
        let at = ev.timestamp.min(now);
        self.last_updated = self.last_updated.max(at);
        self.eventful = true;
        match ev.event_type {
            EventType::ThreatDetected => {
                if let Some(reported) = ev.data.threat_score {
                    let current = self.threat_at(now, rules);
                    self.threat = Relaxing { value: current.max(reported), at: now };
                    remember(&mut self.behavioral_profile.patterns, "threat_report".to_string(), MAX_PATTERNS);
                    if reported > 75.0 {
                        let severity = if reported > 90.0 { Priority::Critical } else { Priority::High };
                        let d = format!("threat score {reported:.0} reported by {}", ev.source);
                        ch.alert(self, "threat_detected", severity, at, d);
                    }
                }
            }
            EventType::BehaviorAnomaly => {
                for f in &ev.data.behavioral_flags {
                    remember(&mut self.behavioral_profile.patterns, f.clone(), MAX_PATTERNS);
                }
                if ev.data.behavioral_flags.iter().any(|f| f.to_ascii_lowercase().contains("suspicious")) {
                    let d = format!(
                        "behavioral anomaly reported by {}: {}",
                        ev.source,
                        ev.data.behavioral_flags.join(", ")
                    );
                    ch.alert(self, "behavioral_anomaly", Priority::Medium, at, d);
                }
            }
            EventType::ReputationChange => {
                if let Some(new) = ev.data.reputation_score {
                    let previous = self.reputation_at(now, rules);
                    self.reputation = Relaxing { value: new, at: now };
                    let drop = previous - new;
                    if drop > 20.0 {
                        let severity = if drop > 50.0 { Priority::Critical } else { Priority::High };
                        let d = format!(
                            "reputation dropped by {drop:.0} points ({previous:.0} -> {new:.0}), reported by {}",
                            ev.source
                        );
                        ch.alert(self, "reputation_change", severity, at, d);
                    }
                }
            }
            EventType::LocationUpdate => {
                if let Some(loc) = &ev.data.geolocation {
                    let mut anomalies = Vec::new();
                    self.observe_location(loc, at, rules, &mut ch, &mut anomalies);
                    // The event itself is what gets published; no second location_update.
                    ch.events.clear();
                }
            }
        }
        ch
    }

    /// Remembers a returning visitor of this subject (bounded: the oldest
    /// goes first).
    fn see_in_crowd(&mut self, visitor: &str, now: f64) {
        if let Some(m) = self.crowd.iter_mut().find(|m| m.v == visitor) {
            m.t = m.t.max(now);
            return;
        }
        if self.crowd.len() >= MAX_CROWD {
            if let Some(oldest) = self.crowd.iter().enumerate().min_by(|a, b| a.1.t.total_cmp(&b.1.t)).map(|(i, _)| i) {
                self.crowd.swap_remove(oldest);
            }
        }
        self.crowd.push(CrowdMember { v: visitor.to_string(), t: now });
    }

    /// Distinct returning visitors seen from this subject within the hour.
    pub fn crowd_size(&self, now: f64) -> usize {
        self.crowd.iter().filter(|m| now - m.t <= HOUR).count()
    }

    /// What the rate and burst thresholds are multiplied by: the crowd's
    /// size once it reaches `shared_min_visitors`, at most
    /// `shared_max_factor`; 1 otherwise. Probes, threat reports and the
    /// request's own signals are not scaled: a crowd does not make them safer.
    pub fn shared_factor(&self, now: f64, rules: &ProfileRules) -> f64 {
        let n = self.crowd_size(now);
        if rules.shared_min_visitors == 0 || n < rules.shared_min_visitors {
            return 1.0;
        }
        (n as f64).min(rules.shared_max_factor).max(1.0)
    }

    /// The signals the profile's history adds to a request's own.
    pub fn signals(&self, now: f64, rules: &ProfileRules, weights: &Weights) -> Vec<Signal> {
        let mut out = Vec::new();
        let recent = |t: Option<f64>| t.is_some_and(|t| now - t <= rules.signal_memory_ms);
        let w = rules.burst_window_ms;
        if self.counters.probes.estimate(now, w) >= PROBES_FOR_HISTORY {
            out.push(Signal { reason: Reason::PathScan, points: None });
        }
        if recent(self.travel.as_ref().map(|t| t.at)) {
            out.push(Signal { reason: Reason::ImpossibleTravel, points: None });
        }
        if recent(self.geo_jump_at) {
            out.push(Signal { reason: Reason::GeoJump, points: None });
        }
        let factor = self.shared_factor(now, rules);
        if self.widened.is_none() && self.counters.minute.estimate(now, MINUTE) > rules.velocity_rpm * factor {
            out.push(Signal { reason: Reason::HighVelocity, points: None });
        }
        if self.counters.auth_failures.estimate(now, w) >= rules.auth_failure_burst {
            out.push(Signal { reason: Reason::AuthFailures, points: None });
        }
        if self.counters.not_found.estimate(now, w) >= rules.not_found_burst * factor {
            out.push(Signal { reason: Reason::NotFoundBurst, points: None });
        }
        let threat = self.threat_at(now, rules);
        if threat >= THREAT_FLOOR {
            // The threat score itself, capped by the reason's weight.
            let points = threat.round().min(f64::from(weights.get(Reason::ThreatReport)));
            out.push(Signal { reason: Reason::ThreatReport, points: Some(points as u8) });
        }
        if self.reputation_at(now, rules) < BAD_REPUTATION_BELOW {
            out.push(Signal { reason: Reason::BadReputation, points: None });
        }
        out
    }

    /// The verdict inputs the request path needs from a profile: cached in the
    /// isolate and returned by every object call.
    pub fn verdict(&self, now: f64, rules: &ProfileRules, weights: &Weights) -> ProfileVerdict {
        ProfileVerdict {
            exists: true,
            threat: clamp_u8(self.threat_at(now, rules)),
            reputation: clamp_u8(self.reputation_at(now, rules)),
            signals: self.signals(now, rules, weights),
            step_ups: self.step_ups.iter().filter(|s| s.active(now)).cloned().collect(),
        }
    }

    /// The origin asked to step this subject up (`X-Intel-Step-Up`). It
    /// makes the profile eventful: kept `PROFILE_TTL_DAYS`, not "seen once".
    pub fn add_step_up(&mut self, s: StepUp, now: f64) -> Changes {
        stepup::add(&mut self.step_ups, s, now);
        self.eventful = true;
        self.last_updated = self.last_updated.max(now);
        Changes::default()
    }

    /// Seen once: one request (or none: only an unremarkable status), and
    /// nothing eventful. Such a profile is kept `SEEN_ONCE_TTL_HOURS`, not
    /// `PROFILE_TTL_DAYS`, so one-request visitors do not each cost a
    /// 30-day object (docs/profiles.md, "Retention").
    pub fn seen_once(&self) -> bool {
        self.request_count <= 1 && !self.eventful
    }

    /// How long after its last activity the profile is kept.
    pub fn retention_ms(&self, ttl_ms: f64, seen_once_ms: f64) -> f64 {
        if self.seen_once() {
            seen_once_ms.min(ttl_ms)
        } else {
            ttl_ms
        }
    }

    /// Measured per-subject numbers for the API's `metrics`.
    pub fn metrics(&self, now: f64, rules: &ProfileRules) -> Value {
        let w = rules.burst_window_ms;
        let c = &self.counters;
        json!({
            "requestsLastMinute": c.minute.estimate(now, MINUTE).round(),
            "requestsLastHour": c.hour.estimate(now, HOUR).round(),
            "requestsLastDay": c.day.estimate(now, DAY).round(),
            "threatScore": self.threat_at(now, rules).round(),
            "reputationScore": self.reputation_at(now, rules).round(),
            "windowSeconds": w / 1000.0,
            "originStatusInWindow": {
                "401_403": (c.auth_failures.estimate(now, w) - c.admin_auth_failures.estimate(now, w)).max(0.0).round(),
                "404": c.not_found.estimate(now, w).round(),
                "429": c.rate_limited.estimate(now, w).round(),
                "5xx": c.server_errors.estimate(now, w).round(),
            },
            "probesInWindow": c.probes.estimate(now, w).round(),
            "enforcedInWindow": c.enforced.estimate(now, w).round(),
            "adminAuthFailuresInWindow": c.admin_auth_failures.estimate(now, w).round(),
            "distinctCountries": self.countries.len(),
            "distinctAsns": self.asns.len(),
        })
    }

    /// The API form: the stored fields with current (decayed) scores, the
    /// location history and alerts.
    pub fn to_api(&self, now: f64, rules: &ProfileRules) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Object(Map::new()));
        if let Some(o) = v.as_object_mut() {
            o.remove("threat");
            o.remove("reputation");
            o.remove("counters");
            o.remove("visitors");
            o.remove("crowd");
            o.remove("eventful");
            let factor = self.shared_factor(now, rules);
            o.insert(
                "shared".into(),
                json!({"shared": factor > 1.0, "visitorsLastHour": self.crowd_size(now), "thresholdFactor": factor}),
            );
            o.insert("retention".into(), json!(if self.seen_once() { "seen_once" } else { "standard" }));
            o.insert("threatScore".into(), json!(self.threat_at(now, rules).round()));
            o.insert("reputationScore".into(), json!(self.reputation_at(now, rules).round()));
            o.insert("lastSeen".into(), json!(self.behavioral_profile.last_activity));
            o.insert("locationHistory".into(), json!(self.history));
            o.insert("alerts".into(), json!(self.alerts));
        }
        v
    }
}

/// Whether the profile counts an origin status (`Profile::observe`,
/// `Profile::record_status`): 401/403, 404, 429 and 5xx feed its burst
/// counters and signals; any other status (2xx, 3xx, the other 4xx) changes
/// nothing but the status itself, which is not stored. The fast-mode consult
/// that records a request before its answer is known sends the answer
/// afterwards only when this (or an enforced action) says it matters.
pub fn counts_status(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 429 | 500..=599)
}

/// Left in a subject's object after an erasure: observations, statuses,
/// events and travel findings from before `erased_at` are dropped, so a
/// batch still pending in another isolate cannot re-create what was erased.
/// Kept until `until` (then the object's alarm deletes it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub erased_at: f64,
    pub until: f64,
}

/// Safety factor over the longest time an isolate holds a batch.
const TOMBSTONE_FACTOR: f64 = 3.0;
/// The shortest a tombstone is kept.
const TOMBSTONE_MIN_MS: f64 = 60_000.0;

impl Tombstone {
    /// A batch waits at most `FLUSH_CALM_MS` (or `FLUSH_INTERVAL_MS`) and is
    /// retried once, and a flush may take a while under load: three times
    /// the longer of the two, and at least a minute, covers every batch that
    /// was open at the erasure (with the maxima, 25 s x 3 = 75 s).
    pub fn new(erased_at: f64, flush_interval_ms: u32, flush_calm_ms: u32) -> Tombstone {
        let flush = f64::from(flush_interval_ms.max(flush_calm_ms));
        Tombstone { erased_at, until: erased_at + (flush * TOMBSTONE_FACTOR).max(TOMBSTONE_MIN_MS) }
    }

    /// Whether something that happened at `at` was erased (dropped). Holds
    /// after `until` too: only the storage of the tombstone expires.
    pub fn drops(&self, at: f64) -> bool {
        at <= self.erased_at
    }

    pub fn expired(&self, now: f64) -> bool {
        now >= self.until
    }
}

/// What the request path learns from the profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileVerdict {
    /// False when the subject has no profile yet.
    pub exists: bool,
    pub threat: u8,
    pub reputation: u8,
    pub signals: Vec<Signal>,
    /// The step-ups in force (`intel::stepup`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_ups: Vec<StepUp>,
}

impl ProfileVerdict {
    /// A subject never seen: no threat, neutral reputation, no history.
    pub fn unknown_subject() -> ProfileVerdict {
        ProfileVerdict {
            exists: false,
            threat: 0,
            reputation: NEUTRAL as u8,
            signals: Vec::new(),
            step_ups: Vec::new(),
        }
    }
}

fn clamp_u8(x: f64) -> u8 {
    if x.is_finite() {
        x.round().clamp(0.0, 100.0) as u8
    } else {
        0
    }
}

fn priority_of(threat: f64) -> Priority {
    match threat {
        t if t > 90.0 => Priority::Critical,
        t if t > 75.0 => Priority::High,
        t if t >= 40.0 => Priority::Medium,
        _ => Priority::Low,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::intel::score::score;

    const T0: f64 = 1_780_000_020_000.0;
    const SEC: f64 = 1000.0;

    fn rules() -> ProfileRules {
        ProfileRules::default()
    }

    fn obs(at: f64, path: &str) -> Observation {
        Observation {
            at,
            method: "GET".into(),
            path: path.into(),
            status: Some(200),
            latency_ms: Some(12.0),
            location: berlin(at),
            signals: vec![],
            action: None,
            visitor: None,
            returning: false,
            admin_auth_failed: false,
        }
    }

    #[test]
    fn counts_status_names_exactly_the_statuses_the_profile_counts() {
        // What the fast-mode consult's status follow-up relies on: a status
        // `counts_status` calls uncounted leaves the profile as it was.
        let r = rules();
        for status in 100..=599u16 {
            let mut p = Profile::new("s", "s", T0);
            let before = p.clone();
            p.record_status(status, T0, &r);
            let changed = p != before;
            assert_eq!(changed, counts_status(status), "status {status}");
        }
    }

    #[test]
    fn an_observation_is_charged_for_its_text() {
        let short = obs(T0, "/");
        let long = obs(T0, &"/a".repeat(4000));
        assert!(short.approx_bytes() >= std::mem::size_of::<Observation>());
        assert_eq!(long.approx_bytes() - short.approx_bytes(), 8000 - 1);
    }

    #[test]
    fn seen_once_until_a_second_request_or_anything_eventful() {
        let (r, ttl, once) = (rules(), 30.0 * DAY, DAY);
        let mut p = Profile::new("s", "198.51.100.1", T0);
        p.observe(&obs(T0, "/"), &r);
        assert!(p.seen_once());
        assert_eq!(p.retention_ms(ttl, once), once);
        assert_eq!(p.to_api(T0, &r)["retention"], "seen_once");
        assert!(p.to_api(T0, &r).get("eventful").is_none(), "internal flag not shown");
        // A 2xx status follow-up changes nothing; the second request does.
        p.record_status(200, T0, &r);
        assert!(p.seen_once());
        p.observe(&obs(T0 + SEC, "/next"), &r);
        assert!(!p.seen_once());
        assert_eq!(p.retention_ms(ttl, once), ttl);
        assert_eq!(p.to_api(T0, &r)["retention"], "standard");
        // Any signal, counted status, enforcement or event on the first request.
        let first = |f: &dyn Fn(&mut Profile)| {
            let mut p = Profile::new("s", "198.51.100.1", T0);
            f(&mut p);
            p.seen_once()
        };
        let signal = Observation { signals: vec![Reason::AutomationUa], ..obs(T0, "/") };
        assert!(!first(&|p| {
            p.observe(&signal, &r);
        }));
        assert!(!first(&|p| {
            p.observe(&Observation { status: Some(404), ..obs(T0, "/x") }, &r);
        }));
        assert!(!first(&|p| {
            p.observe(&Observation { status: None, action: Some("challenge".into()), ..obs(T0, "/") }, &r);
        }));
        assert!(!first(&|p| {
            p.record_status(401, T0, &r);
        }));
        let ev = IntelEvent {
            ip: "198.51.100.1".into(),
            timestamp: T0,
            event_type: EventType::BehaviorAnomaly,
            confidence: 50.0,
            data: EventData::default(),
            source: "api".into(),
            priority: Priority::Low,
        };
        assert!(!first(&|p| {
            p.apply_event(&ev, T0, &r);
        }));
        // Never longer than the normal retention.
        assert_eq!(Profile::new("s", "s", T0).retention_ms(DAY, 2.0 * DAY), DAY);
        // A profile stored before this field existed reads as not eventful.
        let mut old = serde_json::to_value(Profile::new("s", "s", T0)).unwrap();
        old.as_object_mut().unwrap().remove("eventful");
        let back: Profile = serde_json::from_value(old).unwrap();
        assert!(!back.eventful && back.widened.is_none());
    }

    #[test]
    fn a_widened_profile_is_a_crowd_its_rate_raises_no_high_velocity_but_probes_still_count() {
        let r = rules();
        let rotated = |at: f64, path: &str, signals: Vec<Reason>| {
            let mut signals = signals;
            signals.push(Reason::SubnetRotation);
            Observation { signals, ..obs(at, path) }
        };
        let mut p = Profile::new("2001:db8:1::/48", "2001:db8:1::/48", T0);
        let mut ch = Changes::default();
        for i in 0..300 {
            let c = p.observe(&rotated(T0 + f64::from(i) * 100.0, "/", vec![]), &r);
            ch.new_alerts.extend(c.new_alerts);
        }
        let now = T0 + 30.0 * SEC;
        assert!(p.counters.minute.estimate(now, MINUTE) > r.velocity_rpm, "counted (metrics)");
        assert!(!codes(&p, now).contains(&"high_velocity"));
        assert!(ch.new_alerts.iter().all(|a| a.kind != "high_velocity"));
        assert!(p.threat_at(now, &r) < 1.0, "no threat from the crowd's rate");
        // What a client does (a probe) still lands on the /48's history.
        for i in 0..3 {
            p.observe(&rotated(now + f64::from(i), "/.env", vec![Reason::PathScan]), &r);
        }
        assert!(codes(&p, now + 10.0).contains(&"path_scan"));
        assert!(p.threat_at(now + 10.0, &r) >= 20.0);
    }

    #[test]
    fn a_subnet_rotation_observation_marks_the_profile_widened() {
        let r = rules();
        let rotated = Observation { signals: vec![Reason::SubnetRotation], ..obs(T0, "/") };
        let mut p = Profile::new("2001:db8:1::/48", "2001:db8:1::/48", T0);
        p.observe(&rotated, &r);
        let api = p.to_api(T0, &r);
        assert_eq!(api["widened"], json!({"from": "/64", "to": "/48", "reason": "subnet_rotation"}));
        assert_eq!(api["retention"], "standard", "a widened profile is never seen-once");
        let mut v4 = Profile::new("203.0.113.0/24", "203.0.113.0/24", T0);
        v4.observe(&rotated, &r);
        assert_eq!(v4.to_api(T0, &r)["widened"], json!({"from": "/32", "to": "/24", "reason": "subnet_rotation"}));
        let mut plain = Profile::new("198.51.100.1", "198.51.100.1", T0);
        plain.observe(&obs(T0, "/"), &r);
        assert!(plain.to_api(T0, &r).get("widened").is_none());
    }

    fn berlin(at: f64) -> Location {
        Location {
            timestamp: at,
            country_code: Some("DE".into()),
            city: Some("Berlin".into()),
            latitude: Some(52.52),
            longitude: Some(13.405),
            asn: Some(3320),
            ..Location::default()
        }
    }

    fn tokyo(at: f64) -> Location {
        Location {
            timestamp: at,
            country_code: Some("JP".into()),
            city: Some("Tokyo".into()),
            latitude: Some(35.6762),
            longitude: Some(139.6503),
            asn: Some(2516),
            ..Location::default()
        }
    }

    fn codes(p: &Profile, now: f64) -> Vec<&'static str> {
        p.signals(now, &rules(), &Weights::default()).iter().map(|s| s.reason.code()).collect()
    }

    fn event(kind: EventType, data: EventData) -> IntelEvent {
        IntelEvent {
            ip: "203.0.113.7".into(),
            timestamp: T0,
            event_type: kind,
            confidence: 100.0,
            data,
            source: "feed".into(),
            priority: Priority::High,
        }
    }

    #[test]
    fn a_shared_address_scales_its_rate_and_burst_thresholds_with_its_returning_visitors() {
        let r = rules();
        let with = |at: f64, visitor: Option<String>, returning: bool| Observation {
            visitor,
            returning,
            ..obs(at, "/products")
        };
        // One office: 5 returning visitors, 200 requests within a minute together.
        let mut office = Profile::new("203.0.113.8", "203.0.113.8", T0);
        // One client alone, the same 200 requests.
        let mut alone = Profile::new("203.0.113.9", "203.0.113.9", T0);
        // 200 requests whose visitor ids were minted for each (no cookie came back): no crowd.
        let mut minted = Profile::new("203.0.113.10", "203.0.113.10", T0);
        for i in 0..200u32 {
            let at = T0 + f64::from(i) * 250.0;
            office.observe(&with(at, Some(format!("v{}", i % 5)), true), &r);
            alone.observe(&with(at, None, false), &r);
            minted.observe(&with(at, Some(format!("m{i}")), false), &r);
        }
        let now = T0 + 50.0 * SEC;
        assert_eq!((office.crowd_size(now), office.shared_factor(now, &r)), (5, 5.0));
        assert!(!codes(&office, now).contains(&"high_velocity"), "200/min is under 120 x 5");
        assert!(codes(&alone, now).contains(&"high_velocity"));
        assert!(codes(&minted, now).contains(&"high_velocity"), "visitors that never came back make no crowd");
        assert_eq!(minted.shared_factor(now, &r), 1.0);
        let api = office.to_api(now, &r);
        assert_eq!(api["shared"], json!({"shared": true, "visitorsLastHour": 5, "thresholdFactor": 5.0}));
        assert!(api.get("crowd").is_none(), "the visitor keys are not shown");

        // Capped at SHARED_MAX_FACTOR, bounded, and gone after the hour.
        let mut crowd = Profile::new("203.0.113.11", "203.0.113.11", T0);
        for i in 0..100u32 {
            crowd.observe(&with(T0 + f64::from(i), Some(format!("c{i}")), true), &r);
        }
        assert_eq!(crowd.crowd.len(), MAX_CROWD);
        assert_eq!(crowd.shared_factor(T0 + SEC, &r), 8.0);
        assert_eq!(crowd.shared_factor(T0 + 2.0 * HOUR, &r), 1.0);
        // Two visitors are not a crowd (SHARED_MIN_VISITORS 3); 0 turns it off.
        let two = ProfileRules { shared_min_visitors: 3, ..r.clone() };
        let mut pair = Profile::new("203.0.113.12", "203.0.113.12", T0);
        pair.observe(&with(T0, Some("a".into()), true), &two);
        pair.observe(&with(T0, Some("b".into()), true), &two);
        assert_eq!(pair.shared_factor(T0, &two), 1.0);
        let off = ProfileRules { shared_min_visitors: 0, ..r };
        assert_eq!(office.shared_factor(now, &off), 1.0);
    }

    #[test]
    fn a_shared_address_gets_no_more_failed_logins() {
        // Eight returning visitors (or one client rotating eight cookies):
        // the failed-login burst stays one person's.
        let r = rules();
        let mut p = Profile::new("203.0.113.14", "203.0.113.14", T0);
        for i in 0..10u32 {
            let o = Observation {
                visitor: Some(format!("v{}", i % 8)),
                returning: true,
                status: Some(401),
                ..obs(T0 + f64::from(i) * 100.0, "/login")
            };
            p.observe(&o, &r);
        }
        let now = T0 + 2.0 * SEC;
        assert_eq!(p.shared_factor(now, &r), 8.0);
        assert!(codes(&p, now).contains(&"auth_failures"), "10 failed logins within the burst window");
    }

    #[test]
    fn a_shared_address_needs_more_404s_for_a_burst() {
        let r = rules();
        let mut p = Profile::new("203.0.113.13", "203.0.113.13", T0);
        for i in 0..40u32 {
            let o = Observation {
                status: Some(404),
                visitor: Some(format!("v{}", i % 4)),
                returning: true,
                ..obs(T0 + f64::from(i) * SEC, "/missing")
            };
            p.observe(&o, &r);
        }
        // 40 404s: a burst for one client (20), not for four (80).
        assert!(!codes(&p, T0 + 40.0 * SEC).contains(&"not_found_burst"));
        let mut one = Profile::new("203.0.113.14", "203.0.113.14", T0);
        for i in 0..40u32 {
            one.observe(&Observation { status: Some(404), ..obs(T0 + f64::from(i) * SEC, "/missing") }, &r);
        }
        assert!(codes(&one, T0 + 40.0 * SEC).contains(&"not_found_burst"));
    }

    #[test]
    fn a_quiet_visitor_has_no_signals() {
        let mut p = Profile::new("203.0.113.7", "203.0.113.7", T0);
        for i in 0..10 {
            p.observe(&obs(T0 + f64::from(i) * 10.0 * SEC, "/products"), &rules());
        }
        assert_eq!(p.request_count, 10);
        assert!(codes(&p, T0 + 100.0 * SEC).is_empty());
        assert_eq!(p.history.len(), 1, "same place is one history entry");
        assert!((p.confidence - 100.0 * (1.0 - (-0.5f64).exp())).abs() < 1e-9);
    }

    #[test]
    fn each_history_signal() {
        let r = rules();
        // high_velocity: 121 requests within a minute.
        let mut p = Profile::new("s", "s", T0);
        let mut ch = Changes::default();
        for i in 0..121 {
            let c = p.observe(&obs(T0 + f64::from(i) * 100.0, "/"), &r);
            ch.new_alerts.extend(c.new_alerts);
        }
        assert!(codes(&p, T0 + 12_100.0).contains(&"high_velocity"));
        assert_eq!(ch.new_alerts.iter().filter(|a| a.kind == "high_velocity").count(), 1, "alert once per crossing");
        // auth_failures: 10 x 401 within the window, not 9.
        let mut p = Profile::new("s", "s", T0);
        for i in 0..9 {
            let mut o = obs(T0 + f64::from(i) * SEC, "/login");
            o.status = Some(if i % 2 == 0 { 401 } else { 403 });
            p.observe(&o, &r);
        }
        assert!(!codes(&p, T0 + 9.0 * SEC).contains(&"auth_failures"));
        let mut o = obs(T0 + 9.0 * SEC, "/login");
        o.status = Some(401);
        let c = p.observe(&o, &r);
        assert!(codes(&p, T0 + 10.0 * SEC).contains(&"auth_failures"));
        assert!(c.new_alerts.iter().any(|a| a.kind == "auth_failures"));
        // ... and it ends when the window has passed (two windows later).
        assert!(!codes(&p, T0 + 2.0 * r.burst_window_ms + 20.0 * SEC).contains(&"auth_failures"));
        // not_found_burst: 20 x 404.
        let mut p = Profile::new("s", "s", T0);
        for i in 0..20 {
            let mut o = obs(T0 + f64::from(i) * SEC, "/missing");
            o.status = Some(404);
            p.observe(&o, &r);
        }
        assert!(codes(&p, T0 + 20.0 * SEC).contains(&"not_found_burst"));
        // geo_jump: Berlin then Tokyo from the same IP; gone after the memory.
        let mut p = Profile::new("s", "s", T0);
        p.observe(&obs(T0, "/"), &r);
        let mut o = obs(T0 + 3600.0 * SEC, "/");
        o.location = tokyo(o.at);
        let c = p.observe(&o, &r);
        assert!(codes(&p, o.at).contains(&"geo_jump"));
        assert!(c.events.iter().any(|e| e.event_type == EventType::BehaviorAnomaly));
        assert_eq!(c.events.iter().filter(|e| e.event_type == EventType::LocationUpdate).count(), 1);
        assert!(!codes(&p, o.at + r.signal_memory_ms + 1.0).contains(&"geo_jump"));
        assert_eq!(p.history.len(), 2);
        assert_eq!(p.countries, ["DE", "JP"]);
    }

    #[test]
    fn admin_token_guesses_are_auth_failures_but_not_origin_statuses() {
        let r = rules();
        let mut p = Profile::new("s", "s", T0);
        let mut alerts = Vec::new();
        for i in 0..10 {
            let mut o = obs(T0 + f64::from(i) * SEC, "/_intel/api/analytics/patterns");
            o.status = None;
            o.latency_ms = None;
            o.admin_auth_failed = true;
            alerts.extend(p.observe(&o, &r).new_alerts);
        }
        let now = T0 + 10.0 * SEC;
        assert!(codes(&p, now).contains(&"auth_failures"), "ten guesses are the auth_failures signal");
        assert!(alerts.iter().any(|a| a.kind == "auth_failures"));
        assert!(p.threat_at(now, &r) > 0.0);
        let m = p.metrics(now, &r);
        assert_eq!(m["originStatusInWindow"]["401_403"], 0.0, "the origin answered none of them");
        assert_eq!(m["adminAuthFailuresInWindow"], 10.0);
        // Observations stored or sent before the field existed still parse.
        let old: Observation = serde_json::from_value(serde_json::json!({
            "at": T0, "method": "GET", "path": "/", "location": serde_json::to_value(berlin(T0)).unwrap()
        }))
        .unwrap();
        assert!(!old.admin_auth_failed);
    }

    #[test]
    fn challenges_are_enforcement_not_auth_failures() {
        let r = rules();
        let mut p = Profile::new("s", "s", T0);
        let mut ch = Changes::default();
        for i in 0..20 {
            let mut o = obs(T0 + f64::from(i) * SEC, "/checkout");
            // As the request path records it: the edge answered, no origin status or latency.
            o.status = None;
            o.latency_ms = None;
            o.action = Some("challenge".into());
            merge_changes(&mut ch, p.observe(&o, &r));
            // Older isolates also sent the challenge page's 403: still enforcement.
            let mut old = obs(T0 + f64::from(i) * SEC + 500.0, "/checkout");
            old.status = Some(403);
            old.action = Some("challenge".into());
            merge_changes(&mut ch, p.observe(&old, &r));
        }
        let now = T0 + 20.0 * SEC;
        assert_eq!(p.counters.auth_failures.estimate(now, r.burst_window_ms), 0.0);
        assert!(!codes(&p, now).contains(&"auth_failures"));
        assert_eq!(p.threat_at(now, &r), 0.0, "threat untouched");
        assert_eq!(p.reputation_at(now, &r), NEUTRAL, "reputation untouched");
        assert!(ch.new_alerts.is_empty(), "{:?}", ch.new_alerts);
        assert!(!ch.events.iter().any(|e| e.event_type == EventType::ThreatDetected));
        assert_eq!(p.enforced, 40);
        assert_eq!(p.metrics(now, &r)["enforcedInWindow"], 40.0);
        assert_eq!(p.metrics(now, &r)["originStatusInWindow"]["401_403"], 0.0);
        assert!(ch.events.iter().any(|e| e.data.behavioral_flags == ["enforced:challenge"]));
        // Consistent mode's follow-up for an enforced request.
        let c = p.record_enforcement("block", now, &r);
        assert_eq!(c.events[0].data.behavioral_flags, ["enforced:block"]);
        assert_eq!(p.counters.auth_failures.estimate(now, r.burst_window_ms), 0.0);
        assert_eq!(p.enforced, 41);
        // A profile stored before the enforcement counter existed still loads.
        let mut v = serde_json::to_value(&p).unwrap();
        v["counters"].as_object_mut().unwrap().remove("enforced");
        let back: Profile = serde_json::from_value(v).unwrap();
        assert_eq!(back.counters.enforced, SlidingCount::default());
    }

    fn merge_changes(into: &mut Changes, c: Changes) {
        into.new_alerts.extend(c.new_alerts);
        into.events.extend(c.events);
    }

    #[test]
    fn probes_raise_threat_and_keep_path_scan_on() {
        let r = rules();
        let mut p = Profile::new("s", "s", T0);
        let mut events = Vec::new();
        for i in 0..30 {
            let mut o = obs(T0 + f64::from(i) * SEC, "/.env");
            o.signals = vec![Reason::PathScan];
            o.status = Some(404);
            events.extend(p.observe(&o, &r).events);
        }
        let now = T0 + 30.0 * SEC;
        let c = codes(&p, now);
        assert!(c.contains(&"path_scan") && c.contains(&"threat_report"), "{c:?}");
        assert_eq!(p.threat_at(now, &r).round(), 100.0);
        assert!(p.reputation_at(now, &r) < 30.0, "violations lowered reputation");
        assert!(c.contains(&"bad_reputation"));
        // A clean request from this IP is now high risk.
        let v = score(&p.signals(now, &r, &Weights::default()), &Weights::default());
        assert!(v.score >= 75, "{v:?}");
        assert!(events.iter().any(|e| e.event_type == EventType::ThreatDetected));
        assert!(p.alerts.iter().any(|a| a.kind == "threat_detected"));
    }

    #[test]
    fn threat_decays_with_its_half_life() {
        let r = rules();
        let mut p = Profile::new("s", "s", T0);
        p.apply_event(
            &event(EventType::ThreatDetected, EventData { threat_score: Some(80.0), ..Default::default() }),
            T0,
            &r,
        );
        let hl = r.threat_half_life_ms;
        let table = [(0.0, 80.0), (hl, 40.0), (2.0 * hl, 20.0), (3.0 * hl, 10.0), (4.0 * hl, 5.0)];
        for (dt, want) in table {
            assert!((p.threat_at(T0 + dt, &r) - want).abs() < 1e-9, "after {dt} ms");
        }
        assert!(codes(&p, T0 + 3.0 * hl).contains(&"threat_report"));
        assert!(!codes(&p, T0 + 4.0 * hl).contains(&"threat_report"), "below the floor after decay");
        // Decay does not go negative and a clock going backwards changes nothing.
        assert_eq!(p.threat_at(T0 - 1000.0, &r), 80.0);
    }

    #[test]
    fn reputation_recovers_toward_neutral() {
        let r = rules();
        let mut p = Profile::new("s", "s", T0);
        p.apply_event(
            &event(EventType::ReputationChange, EventData { reputation_score: Some(10.0), ..Default::default() }),
            T0,
            &r,
        );
        let hl = r.reputation_half_life_ms;
        for (dt, want) in [(0.0, 10.0), (hl, 30.0), (2.0 * hl, 40.0)] {
            assert!((p.reputation_at(T0 + dt, &r) - want).abs() < 1e-9);
        }
        assert!(codes(&p, T0).contains(&"bad_reputation"));
        assert!(!codes(&p, T0 + hl).contains(&"bad_reputation"), "30 is not below 30");
        // Good reputation relaxes down toward 50 too.
        p.apply_event(
            &event(EventType::ReputationChange, EventData { reputation_score: Some(90.0), ..Default::default() }),
            T0,
            &r,
        );
        assert!((p.reputation_at(T0 + hl, &r) - 70.0).abs() < 1e-9);
    }

    #[test]
    fn threat_detected_semantics() {
        let r = rules();
        let table = [
            (60.0, None),
            (76.0, Some(Priority::High)),
            (90.0, Some(Priority::High)),
            (95.0, Some(Priority::Critical)),
        ];
        for (reported, alert) in table {
            let mut p = Profile::new("s", "s", T0);
            let ch = p.apply_event(
                &event(EventType::ThreatDetected, EventData { threat_score: Some(reported), ..Default::default() }),
                T0,
                &r,
            );
            assert_eq!(ch.new_alerts.first().map(|a| a.severity), alert, "reported {reported}");
            assert_eq!(p.threat_at(T0, &r), reported);
        }
        // Raises to at least the reported value, never lowers.
        let mut p = Profile::new("s", "s", T0);
        p.apply_event(
            &event(EventType::ThreatDetected, EventData { threat_score: Some(80.0), ..Default::default() }),
            T0,
            &r,
        );
        p.apply_event(
            &event(EventType::ThreatDetected, EventData { threat_score: Some(30.0), ..Default::default() }),
            T0,
            &r,
        );
        assert_eq!(p.threat_at(T0, &r), 80.0);
        // 95 makes the next clean request critical.
        let mut p = Profile::new("s", "s", T0);
        p.apply_event(
            &event(EventType::ThreatDetected, EventData { threat_score: Some(95.0), ..Default::default() }),
            T0,
            &r,
        );
        let v = score(&p.signals(T0 + 1000.0, &r, &Weights::default()), &Weights::default());
        assert_eq!((v.score, v.level.as_str()), (95, "critical"));
    }

    #[test]
    fn reputation_change_drop_is_measured_against_the_previous_value() {
        let r = rules();
        // (previous, new, alert severity)
        let table = [
            (50.0, 40.0, None),
            (50.0, 30.0, None), // drop of exactly 20: no alert
            (50.0, 29.0, Some(Priority::High)),
            (80.0, 29.0, Some(Priority::Critical)), // drop of 51
            (80.0, 30.0, Some(Priority::High)),     // drop of exactly 50
            (20.0, 90.0, None),                     // a rise never alerts
        ];
        for (prev, new, want) in table {
            let mut p = Profile::new("s", "s", T0);
            p.apply_event(
                &event(EventType::ReputationChange, EventData { reputation_score: Some(prev), ..Default::default() }),
                T0,
                &r,
            );
            let ch = p.apply_event(
                &event(EventType::ReputationChange, EventData { reputation_score: Some(new), ..Default::default() }),
                T0,
                &r,
            );
            assert_eq!(ch.new_alerts.first().map(|a| a.severity), want, "{prev} -> {new}");
            assert_eq!(p.reputation_at(T0, &r), new);
        }
    }

    #[test]
    fn behavior_anomaly_alerts_only_on_suspicious() {
        let r = rules();
        let mut p = Profile::new("s", "s", T0);
        let flags = |f: &[&str]| EventData {
            behavioral_flags: f.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let ch = p.apply_event(&event(EventType::BehaviorAnomaly, flags(&["fast_typing"])), T0, &r);
        assert!(ch.new_alerts.is_empty());
        let ch = p.apply_event(&event(EventType::BehaviorAnomaly, flags(&["Suspicious_checkout"])), T0, &r);
        assert_eq!(ch.new_alerts.len(), 1);
        assert!(p.behavioral_profile.patterns.contains(&"fast_typing".to_string()));
    }

    #[test]
    fn travel_finding_alerts_once_and_flags() {
        let r = rules();
        let mut p = Profile::new("s", "s", T0);
        let s = |city: &str, lat, lon, at| crate::intel::travel::Sighting {
            at,
            latitude: lat,
            longitude: lon,
            ip: "x".into(),
            country: None,
            city: Some(city.into()),
            hosting: false,
            tor: false,
        };
        let f = crate::intel::travel::check(
            &s("London", 51.5, -0.12, T0),
            &s("Sydney", -33.87, 151.2, T0 + 2_400_000.0),
            &crate::intel::travel::TravelRules { max_kmh: 900.0, min_km: 500.0, memory_ms: 3_600_000.0 },
        )
        .unwrap();
        let now = T0 + 2_400_000.0;
        let ch = p.apply_travel(&f, now, &r);
        assert_eq!(ch.new_alerts.iter().filter(|a| a.kind == "impossible_travel").count(), 1);
        assert!(ch.events.iter().any(|e| e.event_type == EventType::BehaviorAnomaly));
        let ch = p.apply_travel(&f, now + 1.0, &r);
        assert!(ch.new_alerts.is_empty() && ch.events.is_empty(), "same finding again");
        assert!(codes(&p, now).contains(&"impossible_travel"));
        assert!(!codes(&p, now + r.signal_memory_ms + 1.0).contains(&"impossible_travel"));
    }

    #[test]
    fn histories_are_bounded() {
        let r = rules();
        let mut p = Profile::new("s", "s", T0);
        for i in 0..150 {
            let mut o = obs(T0 + f64::from(i) * 1000.0 * SEC, "/");
            o.location.latitude = Some(f64::from(i % 80));
            p.observe(&o, &r);
            p.apply_event(
                &event(
                    EventType::BehaviorAnomaly,
                    EventData { behavioral_flags: vec![format!("suspicious_{i}")], ..Default::default() },
                ),
                o.at,
                &r,
            );
        }
        assert_eq!(p.history.len(), MAX_LOCATIONS);
        assert_eq!(p.alerts.len(), MAX_ALERTS);
        assert_eq!(p.behavioral_profile.patterns.len(), MAX_PATTERNS);
    }

    #[test]
    fn api_form_has_the_spec_fields() {
        let r = rules();
        let mut p = Profile::new("203.0.113.7", "203.0.113.7", T0);
        p.observe(&obs(T0, "/"), &r);
        let v = p.to_api(T0, &r);
        for k in [
            "ip",
            "currentLocation",
            "locationHistory",
            "threatScore",
            "reputationScore",
            "behavioralProfile",
            "alerts",
            "lastUpdated",
            "confidence",
            "firstSeen",
            "requestCount",
            "countries",
            "asns",
            "schemaVersion",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["reputationScore"], 50.0);
        let back: Profile = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back.request_count, 1);
    }

    #[test]
    fn a_tombstone_drops_what_happened_before_the_erasure_and_expires() {
        // Defaults (1 s, 10 s): the minute floor.
        let t = Tombstone::new(T0, 1000, 10_000);
        assert_eq!(t.until, T0 + 60_000.0);
        // The largest allowed FLUSH_CALM_MS: three times it.
        assert_eq!(Tombstone::new(T0, 1000, 25_000).until, T0 + 75_000.0);
        assert_eq!(Tombstone::new(T0, 30_000, 10).until, T0 + 90_000.0);
        assert!(t.drops(T0 - 5_000.0) && t.drops(T0), "pending from before the erasure");
        assert!(!t.drops(T0 + 1.0), "a request after the erasure is a new profile");
        assert!(!t.expired(T0 + 59_999.0));
        assert!(t.expired(T0 + 60_000.0));
        assert!(t.drops(T0 - 1.0) && t.expired(T0 + 1e9), "the rule holds after expiry; only storage goes");
    }

    #[test]
    fn a_stored_travel_finding_names_only_this_subject() {
        let r = rules();
        let mut p = Profile::new("203.0.113.40", "203.0.113.40", T0);
        let s = |city: &str, lat, lon, at, ip: &str| crate::intel::travel::Sighting {
            at,
            latitude: lat,
            longitude: lon,
            ip: ip.into(),
            country: None,
            city: Some(city.into()),
            hosting: false,
            tor: false,
        };
        let f = crate::intel::travel::check(
            &s("London", 51.5, -0.12, T0, "198.51.100.20"),
            &s("Sydney", -33.87, 151.2, T0 + 2_400_000.0, "203.0.113.40"),
            &crate::intel::travel::TravelRules { max_kmh: 900.0, min_km: 500.0, memory_ms: 3_600_000.0 },
        )
        .unwrap();
        let ch = p.apply_travel(&f, T0 + 2_400_000.0, &r);
        let stored = serde_json::to_string(&(&p, &p.alerts, &ch.events)).unwrap();
        assert!(!stored.contains("198.51.100.20"), "{stored}");
        assert!(stored.contains("London (another address) to Sydney (203.0.113.40)"), "{stored}");
        // The same finding again is still recognised.
        assert!(p.apply_travel(&f, T0 + 2_400_001.0, &r).new_alerts.is_empty());
    }

    #[test]
    fn every_visitor_up_to_the_cap_is_kept_for_erasure() {
        let r = rules();
        let mut p = Profile::new("s", "s", T0);
        for i in 0..(MAX_VISITORS + 5) {
            let mut o = obs(T0 + i as f64, "/");
            o.visitor = Some(format!("{i:032x}"));
            p.observe(&o, &r);
        }
        assert_eq!(p.visitors.len(), MAX_VISITORS);
        assert_eq!(p.visitors.first().map(String::as_str), Some(format!("{:032x}", 5).as_str()), "oldest out first");
    }
}

//! What one request leaves behind, built from what the request path's phases
//! found (`edge::request`): the observation for the subject's profile, the
//! analytics sample for its hub shard, and the sighting for its visitor.
//! Pure, so the rules of what is recorded (an enforced answer is not an origin
//! status; a probe is keyed by its rule; a cached verdict has no consult
//! time) are tested here at exact inputs.

use crate::intel::analytics::{Consult, Sample};
use crate::intel::enforce::Action;
use crate::intel::events::Location;
use crate::intel::facts::{CfFacts, RequestFacts};
use crate::intel::profile::{counts_status, Observation};
use crate::intel::signals::{self, Reason, Signal};
use crate::intel::travel::Sighting;

/// Paths longer than this are cut before they are stored in a profile.
pub const MAX_STORED_PATH: usize = 512;

/// How the request was answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// Sent to the origin: its status (or 502/504 when it gave none) and the
    /// wait for it.
    Forwarded { status: u16, latency_ms: f64 },
    /// Answered by the edge itself (challenge or block), with this status.
    Enforced { action: Action, status: u16 },
    /// `FAIL_MODE=closed` answered 503 without a profile.
    FailedClosed,
}

impl Answer {
    /// The status the client got.
    pub fn status(&self) -> u16 {
        match self {
            Answer::Forwarded { status, .. } | Answer::Enforced { status, .. } => *status,
            Answer::FailedClosed => 503,
        }
    }

    fn latency_ms(&self) -> Option<f64> {
        match self {
            Answer::Forwarded { latency_ms, .. } => Some(*latency_ms),
            _ => None,
        }
    }
}

/// What the consult phase came back with, for the sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Consulted {
    pub consult: Consult,
    /// The consult's I/O wait (Workers advance the clock only across I/O).
    pub consult_ms: f64,
    /// The lists or the rules were not read fresh (KV failed or was late:
    /// `edge::lists`, `edge::rules`).
    pub lists_stale: bool,
}

/// The observation as the profile records it before the answer is known
/// (consistent mode sends it first): the request's own facts and signals.
pub fn observation(
    at: f64,
    request: &RequestFacts,
    cf: &CfFacts,
    request_signals: &[Signal],
    visitor: Option<&str>,
) -> Observation {
    Observation {
        at,
        method: request.method.clone(),
        path: request.path.chars().take(MAX_STORED_PATH).collect(),
        status: None,
        latency_ms: None,
        location: location(cf, at),
        signals: request_signals.iter().map(|s| s.reason).collect(),
        action: None,
        visitor: visitor.map(String::from),
        returning: false,
        admin_auth_failed: false,
    }
}

/// The observation with its answer: an origin's status and latency, or the
/// edge's own action (enforcement is never recorded as an origin status).
pub fn answered(mut obs: Observation, answer: &Answer) -> Observation {
    match answer {
        Answer::Forwarded { status, latency_ms } => {
            obs.status = Some(*status);
            obs.latency_ms = Some(*latency_ms);
        }
        Answer::Enforced { action, .. } => obs.action = Some(action.as_str().to_string()),
        Answer::FailedClosed => {}
    }
    obs
}

/// Whether the answer to a request whose observation was recorded before it
/// was answered (the fast-mode consult on a cache miss) must follow it to the
/// profile: an enforced action always (the profile counts it), an origin
/// status only when the profile counts it (`profile::counts_status`: 401/403,
/// 404, 429, 5xx). The latency is never sent: the profile does not use it.
/// A fail-closed answer has neither.
pub fn needs_follow_up(answer: &Answer) -> bool {
    match answer {
        Answer::Forwarded { status, .. } => counts_status(*status),
        Answer::Enforced { .. } => true,
        Answer::FailedClosed => false,
    }
}

/// The analytics sample of one request of `subject`, scored `risk`.
pub fn sample(
    at: f64,
    subject: &str,
    request: &RequestFacts,
    cf: &CfFacts,
    (risk, threat): (u8, u8),
    consulted: &Consulted,
    answer: &Answer,
) -> Sample {
    let fail_closed = *answer == Answer::FailedClosed;
    Sample {
        at,
        subject: subject.to_string(),
        country: cf.country.clone(),
        asn: cf.asn,
        risk,
        threat,
        status: answer.status(),
        latency_ms: answer.latency_ms(),
        enforced: matches!(answer, Answer::Enforced { .. }),
        lists_stale: consulted.lists_stale,
        fail_closed,
        consult: consulted.consult,
        consult_ms: (consulted.consult != Consult::Cached).then_some(consulted.consult_ms),
        // Keyed by the rule, not the path: a scanner's endless variants of
        // one path are one analytics key. A fail-closed answer is counted,
        // not analysed.
        probe: if fail_closed { None } else { signals::probe_rule(&request.path).map(String::from) },
        // Set by the request path when a rule decided (`RuleSample`).
        rule: None,
        // Set by the request path from the fingerprint it computed.
        fp: None,
        fp_ua: 0,
        fp_risky: false,
        fp_family: None,
        fp_reasons: 0,
    }
}

/// Where the request came from, as a profile's location entry.
pub fn location(cf: &CfFacts, at: f64) -> Location {
    Location {
        timestamp: at,
        country_code: cf.country.clone(),
        city: cf.city.clone(),
        region: cf.region.clone(),
        latitude: cf.latitude,
        longitude: cf.longitude,
        asn: cf.asn,
        colo: cf.colo.clone(),
    }
}

/// The visitor's sighting of this request (for impossible travel); `None`
/// without coordinates.
pub fn sighting(cf: &CfFacts, signals: &[Signal], display_ip: &str, at: f64) -> Option<Sighting> {
    let (latitude, longitude) = cf.coordinates()?;
    Some(Sighting {
        at,
        latitude,
        longitude,
        ip: display_ip.to_string(),
        country: cf.country.clone(),
        city: cf.city.clone(),
        hosting: signals.iter().any(|s| s.reason == Reason::HostingAsn),
        tor: signals.iter().any(|s| s.reason == Reason::TorExit),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(path: &str) -> (RequestFacts, CfFacts) {
        let request = RequestFacts { method: "GET".into(), path: path.into(), ..RequestFacts::default() };
        let cf = CfFacts::from_json(&json!({
            "country": "DE", "city": "Berlin", "latitude": "52.52437", "longitude": "13.41053", "asn": 3320, "colo": "FRA"
        }));
        (request, cf)
    }

    const OK: Consulted = Consulted { consult: Consult::Ok, consult_ms: 7.0, lists_stale: false };

    #[test]
    fn only_answers_the_profile_counts_follow_a_recorded_observation() {
        let fwd = |status| Answer::Forwarded { status, latency_ms: 30.0 };
        for s in [200, 204, 301, 304, 400, 410, 418] {
            assert!(!needs_follow_up(&fwd(s)), "{s}");
        }
        for s in [401, 403, 404, 429, 500, 502, 503, 504] {
            assert!(needs_follow_up(&fwd(s)), "{s}");
        }
        assert!(needs_follow_up(&Answer::Enforced { action: Action::Challenge, status: 403 }));
        assert!(needs_follow_up(&Answer::Enforced { action: Action::Block, status: 403 }));
        assert!(!needs_follow_up(&Answer::FailedClosed));
    }

    #[test]
    fn an_enforced_answer_is_an_action_not_an_origin_status() {
        let (request, cf) = facts("/");
        let obs = observation(1.0, &request, &cf, &[], None);
        let challenged = answered(obs.clone(), &Answer::Enforced { action: Action::Challenge, status: 403 });
        assert_eq!(
            (challenged.status, challenged.latency_ms, challenged.action.as_deref()),
            (None, None, Some("challenge"))
        );
        let forwarded = answered(obs, &Answer::Forwarded { status: 404, latency_ms: 12.0 });
        assert_eq!((forwarded.status, forwarded.latency_ms, forwarded.action), (Some(404), Some(12.0), None));
        let s =
            sample(1.0, "s", &request, &cf, (80, 10), &OK, &Answer::Enforced { action: Action::Block, status: 403 });
        assert!(s.enforced && s.latency_ms.is_none() && s.status == 403 && !s.fail_closed);
    }

    #[test]
    fn the_sample_keys_probes_by_rule_and_times_only_real_consults() {
        let (request, cf) = facts("/.env/1?x=2");
        let answer = Answer::Forwarded { status: 404, latency_ms: 3.0 };
        let s = sample(1.0, "s", &request, &cf, (10, 0), &OK, &answer);
        assert_eq!(s.probe.as_deref(), Some("/.env"));
        assert_eq!(
            (s.consult_ms, s.latency_ms, s.country.as_deref(), s.asn),
            (Some(7.0), Some(3.0), Some("DE"), Some(3320))
        );
        let cached = Consulted { consult: Consult::Cached, ..OK };
        assert_eq!(sample(1.0, "s", &request, &cf, (10, 0), &cached, &answer).consult_ms, None);
        let closed =
            sample(1.0, "s", &request, &cf, (10, 0), &Consulted { lists_stale: true, ..OK }, &Answer::FailedClosed);
        assert!(closed.fail_closed && closed.lists_stale && closed.status == 503 && closed.probe.is_none());
    }

    #[test]
    fn stored_paths_are_cut_and_signals_kept_as_reasons() {
        let (request, cf) = facts(&format!("/{}", "a".repeat(2000)));
        let signals = [Signal { reason: Reason::HostingAsn, points: None }];
        let obs = observation(5.0, &request, &cf, &signals, Some("v1"));
        assert_eq!(obs.path.chars().count(), MAX_STORED_PATH);
        assert_eq!(obs.signals, vec![Reason::HostingAsn]);
        assert_eq!((obs.visitor.as_deref(), obs.location.city.as_deref()), (Some("v1"), Some("Berlin")));
        let sighting = sighting(&cf, &signals, "203.0.113.x", 5.0).unwrap();
        assert!(sighting.hosting && !sighting.tor);
        assert_eq!(sighting.ip, "203.0.113.x");
        assert!(super::sighting(&CfFacts::default(), &signals, "x", 5.0).is_none(), "no coordinates, no sighting");
    }
}

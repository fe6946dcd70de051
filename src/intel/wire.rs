//! Messages between the request path and the Durable Objects (internal).
//! Enums use serde's default external tagging (`{"observe":{...}}`, `"verdict"`):
//! internal tagging and `flatten` pull serde's buffering `Content` machinery
//! into the wasm (~100 KB), and nothing outside this Worker reads these. Kept pure so both sides share one definition
//! and round-trips are tested natively.

use serde::{Deserialize, Serialize};

use super::events::IntelEvent;
use super::profile::{Observation, ProfileVerdict};
use super::protocol::{AlertNotice, Update};
use super::travel::{Sighting, TravelFinding};

/// A request to a subject's profile object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileOp {
    /// A batch of coalesced observations; answers the `ProfileVerdict` after them.
    Observe { subject: String, ip: String, observations: Vec<Observation> },
    /// The outcome of a request observed earlier (consistent mode): the
    /// origin's status, or, with `action`, the edge's own answer (then the
    /// status is the edge's and is not counted as the origin's).
    Status {
        subject: String,
        ip: String,
        at: f64,
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
    },
    /// The current verdict, without recording anything.
    Verdict,
    /// Validated events pushed through the API.
    Events { subject: String, ip: String, events: Vec<IntelEvent> },
    /// An impossible hop found by a visitor's object.
    Travel { subject: String, ip: String, finding: Box<TravelFinding> },
    /// The API view: `{profile, metrics}`, or 404.
    Get,
    /// Erase everything stored for the subject.
    Delete,
}

/// A profile object's answer to `Observe`, `Status` and `Events`: the verdict
/// and what the update published. The request path forwards the published events
/// to the global hub inside its own batched report, so a profile object never
/// calls the hub per batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObserveReply {
    pub verdict: ProfileVerdict,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<Update>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertNotice>,
}

/// A request to a visitor's object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitorOp {
    /// Record a sighting; answers `VisitorAnswer`.
    Sight { sighting: Sighting, subject: String },
    /// Erase the visitor.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitorAnswer {
    /// The impossible hop in effect for this visitor, if any.
    pub finding: Option<TravelFinding>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip() {
        let ops = [
            ProfileOp::Observe {
                subject: "s".into(),
                ip: "1.2.3.4".into(),
                observations: vec![Observation::default()],
            },
            ProfileOp::Status { subject: "s".into(), ip: "1.2.3.4".into(), at: 5.0, status: 401, action: None },
            ProfileOp::Status {
                subject: "s".into(),
                ip: "1.2.3.4".into(),
                at: 5.0,
                status: 403,
                action: Some("challenge".into()),
            },
            ProfileOp::Verdict,
            ProfileOp::Events { subject: "s".into(), ip: "1.2.3.4".into(), events: vec![] },
            ProfileOp::Get,
            ProfileOp::Delete,
        ];
        for op in ops {
            let text = serde_json::to_string(&op).unwrap();
            assert_eq!(serde_json::from_str::<ProfileOp>(&text).unwrap(), op, "{text}");
        }
        assert!(serde_json::from_str::<ProfileOp>(r#"{"explode":{}}"#).is_err());
        let reply = ObserveReply { verdict: ProfileVerdict::unknown_subject(), updates: vec![], alerts: vec![] };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<ObserveReply>(&text).unwrap(), reply);
    }
}

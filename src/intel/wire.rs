//! Messages between the request path and the Durable Objects (internal):
//! the ops an isolate or an object sends to the profile, visitor, aggregator
//! and hub objects (`ProfileOp`, `VisitorOp`, `AggOp`, `HubOp`), their
//! replies (`ObserveReply`, `AggState`, `Forwarded`, ...), and the headers and
//! stream tags of a WebSocket upgrade handed to an object. `src/edge/` and
//! `src/objects/` both import them from here, never from each other. The
//! stream objects' ops (`StreamOp`) live with their logic in `intel::fanout`.
//! Enums use serde's default external tagging (`{"observe":{...}}`, `"verdict"`):
//! internal tagging and `flatten` pull serde's buffering `Content` machinery
//! into the wasm (~100 KB), and nothing outside this Worker reads these. Kept pure so both sides share one definition
//! and round-trips are tested natively.

use serde::{Deserialize, Serialize};

use super::alerting::RuleState;
use super::analytics::{Sample, Slide, Totals};
use super::deltas::{SlideDeltas, Summary, TierCounters};
use super::events::IntelEvent;
use super::preview::Reservoir;
use super::profile::{Observation, ProfileVerdict};
use super::protocol::{AlertNotice, Update};
use super::stepup::StepUp;
use super::travel::{Sighting, TravelFinding};

/// Header by which the edge tells an object which stream a socket is for
/// (`INTEL_TAG` or `PERF_TAG`).
pub const STREAM_HEADER: &str = "x-edgeintel-stream";
/// Header by which the edge asks the object to answer `Sec-WebSocket-Protocol: bearer`.
pub const BEARER_HEADER: &str = "x-edgeintel-bearer";
/// Socket tags: one per global stream (the value of `STREAM_HEADER`).
pub const INTEL_TAG: &str = "intel";
pub const PERF_TAG: &str = "perf";

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
    /// The fast-mode consult of a subject the isolate has no verdict for:
    /// records this request's observation (its answer not known yet: the
    /// request path sends a `Status` only when the profile counts it) and
    /// answers `ObserveReply` with `before`, the verdict this request is
    /// scored with (history before it, as a cached verdict would be), and
    /// `verdict`, the one after it, for the isolate's cache. One object call
    /// for a new subject's first sight instead of a `Verdict` and a batch.
    Consult { subject: String, ip: String, observation: Box<Observation> },
    /// The current verdict, without recording anything.
    Verdict,
    /// Validated events pushed through the API.
    Events { subject: String, ip: String, events: Vec<IntelEvent> },
    /// An impossible hop found by a visitor's object.
    Travel { subject: String, ip: String, finding: Box<TravelFinding> },
    /// The origin asked to step the subject up (`X-Intel-Step-Up`); answers the verdict.
    StepUp { subject: String, ip: String, step_up: StepUp },
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
    /// `Consult` only: the verdict before the recorded observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<ProfileVerdict>,
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
    /// The origin asked to step the visitor up (`X-Intel-Step-Up`).
    StepUp { step_up: StepUp },
    /// Erase the visitor.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitorAnswer {
    /// The impossible hop in effect for this visitor, if any.
    pub finding: Option<TravelFinding>,
    /// The step-ups in force for this visitor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_ups: Vec<StepUp>,
}

/// A request to a rate limiter (`LimiterObject`, one per rule and key:
/// `intel::ratelimit`); the rule's numbers travel with each call, so an
/// edited rule applies at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimiterOp {
    /// Count one request if the limit allows it; answers `ratelimit::Taken`.
    Take { limit: u32, period_s: u32 },
}

/// A request to an analytics hub shard (`HubObject`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HubOp {
    Report {
        #[serde(default)]
        samples: Vec<Sample>,
        #[serde(default)]
        rejected: u64,
        /// Observations and samples the isolate lost (flushes that failed twice).
        #[serde(default)]
        dropped: u64,
        /// Profile events. Isolates no longer send `Report` (they report to
        /// their aggregator, `AggOp::Report`, and their events reach the
        /// stream root); a report of an older isolate still has its updates
        /// counted.
        #[serde(default)]
        updates: Vec<Update>,
        #[serde(default)]
        alerts: Vec<AlertNotice>,
    },
    /// Profile events to count (from the stream root, after it published
    /// them; alerts are not counted).
    Publish {
        #[serde(default)]
        updates: Vec<Update>,
        #[serde(default)]
        alerts: Vec<AlertNotice>,
    },
    /// The raw window and state, for the read API (merged across shards):
    /// answers `WindowState`.
    Window,
    /// Only the window's slides, hours and totals (`SitePart`): what shard 0
    /// fetches from every other shard on each tick to evaluate the whole site.
    Part,
    /// The stream-ticket key (`intel::ticket`): made once, at random, kept
    /// on the hub; each isolate asks once and caches it. Answers `TicketKey`.
    TicketKey,
    /// Sent by every other shard on its tick to `global`, which arms its own
    /// tick if it has none (with several shards, `global` may see no traffic
    /// of its own, yet it evaluates the whole site).
    Wake,
    /// Spends a nonce once: `Spent {valid: true}` the first time, false
    /// after. Used for solved challenges (`keys::solution_key`); stream
    /// tickets are spent by the stream root (`fanout::StreamOp::SpendTicket`).
    SpendTicket { nonce: String, expires: f64 },
    /// The what-if preview's sample of this shard's window
    /// (`intel::preview`), at most `cap` items: answers `PreviewSample`.
    Preview { cap: usize },
    /// Erases a subject (its key) from the window's member sets
    /// (`Aggregator::forget`); sent to every shard by `DELETE
    /// /api/ip-intelligence/:ip`.
    Forget { subject: String, at: f64 },
    /// An aggregator object's summaries for this shard (`intel::deltas`):
    /// `from` is its name, `base` the highest sequence this hub has confirmed
    /// persisted to it (everything up to it is stored), `summaries` the
    /// unconfirmed ones in order, `failures` its forwards that failed since
    /// the last one that did not. Answers `Forwarded`.
    Forward {
        from: String,
        #[serde(default)]
        base: u64,
        #[serde(default)]
        summaries: Vec<Summary>,
        #[serde(default)]
        failures: u64,
    },
    /// The alert webhooks' outbox as `GET /api/alerts/webhooks` shows it
    /// (`webhooks::Outbox::view`; shard 0 alone delivers). Answers a JSON object.
    Webhooks,
}

/// The hub's answer to `HubOp::Forward`: the highest sequence of this
/// aggregator it has applied (in memory) and the highest it has persisted
/// (the aggregator deletes what is persisted and re-sends from `applied`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    pub applied: u64,
    pub persisted: u64,
}

/// A request to an aggregator object (`AggregatorObject`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggOp {
    /// An isolate's slide deltas since its last report, and the profile
    /// events (updates, alerts) its profile calls returned meanwhile: the
    /// aggregator publishes those to the stream root once per forward
    /// period (one call per aggregator, not per isolate).
    Report {
        deltas: SlideDeltas,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        updates: Vec<Update>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        alerts: Vec<AlertNotice>,
        /// The report's id (`<isolate>-<report number>`): a report sent again
        /// after a lost answer is merged once (the aggregator remembers the
        /// ids of the last `REPORT_IDS_KEPT_MS`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// What it holds and how its forwards went (`AggState`), for tests and operators.
    State,
}

/// An aggregator's answer to `AggOp::State`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggState {
    /// Shards with an open (not yet sealed) summary.
    pub open: u64,
    /// Sealed summaries not yet confirmed persisted by their hub shard.
    pub unconfirmed: u64,
    pub forwards: u64,
    pub forward_failures: u64,
    pub reports: u64,
    /// Events held for the next publication to the stream root (memory).
    #[serde(default)]
    pub events_held: u64,
    /// Events published to the stream root since this object started (memory).
    #[serde(default)]
    pub events_published: u64,
    /// `Publish` calls to the stream root since this object started (memory).
    #[serde(default)]
    pub publications: u64,
    /// Reports that came again (their id already merged) and were not merged twice.
    #[serde(default)]
    pub duplicate_reports: u64,
}

/// One shard's window as shard 0's tick fetches it (`HubOp::Part`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SitePart {
    pub slides: Vec<Slide>,
    pub hours: Vec<u64>,
    pub totals: Totals,
}

impl SitePart {
    /// As one part of a whole-site merge (`Aggregator::add_shard`).
    pub fn as_shard(&self) -> crate::intel::analytics::ShardPart<'_> {
        crate::intel::analytics::ShardPart { slides: &self.slides, hours: &self.hours, totals: &self.totals }
    }
}

/// One shard's sample for the what-if preview (`HubOp::Preview`): its
/// window's reservoirs merged, and where the window's sample begins (ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreviewSample {
    pub sample: Reservoir,
    #[serde(default)]
    pub since: Option<f64>,
}

/// What the read API gets from one shard (`HubOp::Window`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowState {
    /// The slides, hours and totals (a `SitePart`'s fields, written out: with
    /// `#[serde(flatten)]` serde buffers them, and its buffer cannot read the
    /// numeric keys of a slide's `asns` map back, so every window with an
    /// ASN in it failed to parse).
    pub slides: Vec<Slide>,
    pub hours: Vec<u64>,
    pub totals: Totals,
    pub rules: Vec<RuleState>,
    pub stream_clients: usize,
    pub intel_clients: usize,
    /// The stream root's last answer, for what its bounds dropped (`dropped`,
    /// `late_deliveries`, `uncounted_dropped`); shard 0 only.
    #[serde(default)]
    pub stream_root: crate::intel::fanout::Clients,
    pub last_tick: Option<f64>,
    pub next_tick: Option<f64>,
    pub kv_writes: Vec<KvWrite>,
    /// Rollup writes waiting for KV to answer again, and failures so far.
    #[serde(default)]
    pub kv_pending: usize,
    #[serde(default)]
    pub kv_failures: u64,
    #[serde(default)]
    pub kv_dropped: u64,
    /// Shard 0: when the alert rules and insights were last evaluated on the
    /// whole site, and the ticks that could not (a shard did not answer).
    #[serde(default)]
    pub site_evaluated_at: Option<f64>,
    #[serde(default)]
    pub site_failures: u64,
    /// The aggregator tier as this shard saw it (`intel::deltas`).
    #[serde(default)]
    pub tier: TierCounters,
}

impl WindowState {
    /// As one part of a whole-site merge (`Aggregator::add_shard`).
    pub fn as_shard(&self) -> crate::intel::analytics::ShardPart<'_> {
        crate::intel::analytics::ShardPart { slides: &self.slides, hours: &self.hours, totals: &self.totals }
    }
}

/// One KV write a hub made (kept for inspection: one write per key per second).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KvWrite {
    pub key: String,
    pub at: f64,
}

/// The hub's answer to `HubOp::TicketKey`: the key, hex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketKey {
    pub key: String,
}

/// The hub's answer to `HubOp::SpendTicket`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    pub valid: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
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
            ProfileOp::Consult { subject: "s".into(), ip: "1.2.3.4".into(), observation: Box::default() },
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
        let reply =
            ObserveReply { verdict: ProfileVerdict::unknown_subject(), before: None, updates: vec![], alerts: vec![] };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<ObserveReply>(&text).unwrap(), reply);
        assert!(!text.contains("before"), "an Observe reply keeps its form: {text}");
        let consulted = ObserveReply { before: Some(ProfileVerdict::unknown_subject()), ..reply };
        let text = serde_json::to_string(&consulted).unwrap();
        assert_eq!(serde_json::from_str::<ObserveReply>(&text).unwrap(), consulted);
    }

    /// The tiers' messages: an isolate's report, the aggregator's forward
    /// and the hub's answer (numeric shard and slide keys as JSON strings).
    #[test]
    fn tier_messages_keep_their_wire_form() {
        use crate::intel::deltas::ShardDelta;
        let mut deltas = SlideDeltas::default();
        deltas.shards.insert(1, ShardDelta::default());
        let report = AggOp::Report { deltas: deltas.clone(), updates: vec![], alerts: vec![], id: None };
        assert_eq!(serde_json::to_string(&report).unwrap(), r#"{"report":{"deltas":{"1":{"slides":{}}}}}"#);
        let numbered = AggOp::Report { deltas, updates: vec![], alerts: vec![], id: Some("00000000000000ff-7".into()) };
        let text = serde_json::to_string(&numbered).unwrap();
        assert_eq!(text, r#"{"report":{"deltas":{"1":{"slides":{}}},"id":"00000000000000ff-7"}}"#);
        assert!(
            matches!(serde_json::from_str::<AggOp>(&text).unwrap(), AggOp::Report { id: Some(ref i), .. } if i == "00000000000000ff-7")
        );
        // An older isolate's report (no events) still reads.
        let read: AggOp = serde_json::from_str(r#"{"report":{"deltas":{}}}"#).unwrap();
        assert!(
            matches!(read, AggOp::Report { ref updates, ref alerts, .. } if updates.is_empty() && alerts.is_empty())
        );
        assert_eq!(serde_json::to_string(&AggOp::State).unwrap(), r#""state""#);
        let fwd = HubOp::Forward {
            from: "agg:FRA:0".into(),
            base: 2,
            summaries: vec![Summary { seq: 3, delta: ShardDelta::default() }],
            failures: 0,
        };
        let text = serde_json::to_string(&fwd).unwrap();
        assert_eq!(
            text,
            r#"{"forward":{"from":"agg:FRA:0","base":2,"summaries":[{"seq":3,"delta":{"slides":{}}}],"failures":0}}"#
        );
        assert!(matches!(serde_json::from_str::<HubOp>(&text).unwrap(), HubOp::Forward { base: 2, .. }));
        let minimal: HubOp = serde_json::from_str(r#"{"forward":{"from":"a"}}"#).unwrap();
        assert!(matches!(minimal, HubOp::Forward { base: 0, failures: 0, .. }));
        let answer: Forwarded = serde_json::from_str(r#"{"applied":4,"persisted":3}"#).unwrap();
        assert_eq!(answer, Forwarded { applied: 4, persisted: 3 });
    }

    #[test]
    fn hub_ops_keep_their_wire_form() {
        let cases = [
            (HubOp::Window, r#""window""#),
            (HubOp::Part, r#""part""#),
            (HubOp::TicketKey, r#""ticket_key""#),
            (HubOp::Wake, r#""wake""#),
            (HubOp::Webhooks, r#""webhooks""#),
            (HubOp::SpendTicket { nonce: "n".into(), expires: 5.0 }, r#"{"spend_ticket":{"nonce":"n","expires":5.0}}"#),
            (HubOp::Forget { subject: "s".into(), at: 1.5 }, r#"{"forget":{"subject":"s","at":1.5}}"#),
            (HubOp::Publish { updates: vec![], alerts: vec![] }, r#"{"publish":{"updates":[],"alerts":[]}}"#),
            (
                HubOp::Report { samples: vec![], rejected: 1, dropped: 2, updates: vec![], alerts: vec![] },
                r#"{"report":{"samples":[],"rejected":1,"dropped":2,"updates":[],"alerts":[]}}"#,
            ),
        ];
        for (op, text) in cases {
            assert_eq!(serde_json::to_string(&op).unwrap(), text);
            let back: HubOp = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
        // Older isolates may leave out the defaulted fields.
        assert!(matches!(
            serde_json::from_str::<HubOp>(r#"{"report":{}}"#).unwrap(),
            HubOp::Report { rejected: 0, dropped: 0, .. }
        ));
        assert_eq!(serde_json::to_string(&Spent { valid: true }).unwrap(), r#"{"valid":true}"#);
        assert_eq!(serde_json::to_string(&TicketKey { key: "ab".into() }).unwrap(), r#"{"key":"ab"}"#);
        let w = WindowState { kv_writes: vec![KvWrite { key: "k".into(), at: 1.0 }], ..WindowState::default() };
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["kvWrites"], serde_json::json!([{"key": "k", "at": 1.0}]));
        assert!(v.get("siteEvaluatedAt").is_some() && v.get("streamClients").is_some());
        // A window with an ASN (a numeric map key) reads back.
        let mut slide = Slide::default();
        slide.asns.insert(3320, Default::default());
        let w = WindowState { slides: vec![slide.clone()], ..WindowState::default() };
        let back: WindowState = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(back.slides, vec![slide]);
    }
}

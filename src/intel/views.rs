//! What the analytics window says: the typed patterns, trends, anomalies and
//! correlations `Aggregator::views` derives (`intel::analytics`), pushed by
//! the hub as insights (`intel::insights` decides which are news) and served
//! by `/api/analytics/*`.
//!
//! Their JSON is a contract the dashboard (`www/src/`) and the tests read, so
//! every type serializes to exactly what the `json!` objects of earlier
//! versions did: fields in alphabetical order (serde_json's map order without
//! `preserve_order`), camelCase where they were. The tests below hold each
//! shape against the old JSON, written out literally. Serialize only: nothing
//! reads these back.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// Derived views of the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Views {
    pub patterns: Vec<Pattern>,
    pub trends: Vec<Trend>,
    pub anomalies: Vec<Anomaly>,
    pub correlations: Vec<Correlation>,
}

/// A pattern of several subjects in the window (docs/analytics.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pattern {
    pub description: String,
    /// Members of the pattern (subject keys), as the slide kept them.
    pub ips: Vec<String>,
    /// What it is about: a path, a country, `AS<n>`, or a fixed word.
    pub key: String,
    pub kind: PatternKind,
    pub severity: Severity,
    /// How many subjects: `ips.len()`.
    pub support: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    ImpossibleTravelCluster,
    ThreatSpike,
    ScanningCampaign,
    CredentialStuffing,
    HighRiskCountry,
    HighRiskAsn,
}

impl PatternKind {
    /// The wire name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            PatternKind::ImpossibleTravelCluster => "impossible_travel_cluster",
            PatternKind::ThreatSpike => "threat_spike",
            PatternKind::ScanningCampaign => "scanning_campaign",
            PatternKind::CredentialStuffing => "credential_stuffing",
            PatternKind::HighRiskCountry => "high_risk_country",
            PatternKind::HighRiskAsn => "high_risk_asn",
        }
    }
}

/// A pattern's severity, from its support against `ANALYTICS_MIN_SUPPORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Medium,
    High,
    Critical,
}

/// A metric's least-squares trend over the window's closed slides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    /// Relative change over the window: slope x (points - 1) / |mean|.
    #[serde(rename = "changeRate")]
    pub change_rate: f64,
    pub direction: Direction,
    pub metric: String,
    pub points: usize,
    pub slope: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
    Flat,
}

impl Direction {
    /// The wire name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Flat => "flat",
        }
    }
}

/// The newest closed slide far from the earlier ones (|z| at or above
/// `ANALYTICS_ANOMALY_THRESHOLD`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub mean: f64,
    pub metric: String,
    /// `global`, or `country:<code>` for a country's request count.
    pub scope: String,
    /// Start (s) of the slide it is in.
    pub slide: i64,
    pub stddev: f64,
    pub value: f64,
    pub z: f64,
}

/// A correlation in the window; its JSON carries `kind` among its fields
/// (`region_threat`, `time_of_day_peak`, `pearson`).
#[derive(Debug, Clone, PartialEq)]
pub enum Correlation {
    /// A country (`country:<code>`) or network (`AS<n>`) whose mean threat is over 75.
    RegionThreat { key: String, mean_threat: f64, samples: u64 },
    /// A UTC hour whose all-time request count is over mean + one standard deviation.
    TimeOfDayPeak { hour_utc: usize, requests: f64, mean: f64 },
    /// Pearson's r between two metric series of the window.
    Pearson { a: String, b: String, r: f64, points: usize },
}

impl Correlation {
    /// The wire name of its kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Correlation::RegionThreat { .. } => "region_threat",
            Correlation::TimeOfDayPeak { .. } => "time_of_day_peak",
            Correlation::Pearson { .. } => "pearson",
        }
    }
}

/// Written by hand: serde's internal tagging would put `kind` first, and the
/// fields must come in the alphabetical order the old JSON objects had.
impl Serialize for Correlation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = self.kind();
        match self {
            Correlation::RegionThreat { key, mean_threat, samples } => {
                let mut m = s.serialize_struct("Correlation", 4)?;
                m.serialize_field("key", key)?;
                m.serialize_field("kind", kind)?;
                m.serialize_field("meanThreat", mean_threat)?;
                m.serialize_field("samples", samples)?;
                m.end()
            }
            Correlation::TimeOfDayPeak { hour_utc, requests, mean } => {
                let mut m = s.serialize_struct("Correlation", 4)?;
                m.serialize_field("hourUtc", hour_utc)?;
                m.serialize_field("kind", kind)?;
                m.serialize_field("mean", mean)?;
                m.serialize_field("requests", requests)?;
                m.end()
            }
            Correlation::Pearson { a, b, r, points } => {
                let mut m = s.serialize_struct("Correlation", 5)?;
                m.serialize_field("a", a)?;
                m.serialize_field("b", b)?;
                m.serialize_field("kind", kind)?;
                m.serialize_field("points", points)?;
                m.serialize_field("r", r)?;
                m.end()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Both ways the JSON leaves the Worker: as text, and inside a `json!`
    /// object (the API's bodies, the stream's insights).
    fn same(typed: &impl Serialize, old: Value, old_text: &str) {
        assert_eq!(serde_json::to_string(typed).unwrap(), old_text);
        assert_eq!(serde_json::to_value(typed).unwrap(), old);
        assert_eq!(old.to_string(), old_text, "the old json! object printed the same text");
    }

    #[test]
    fn patterns_serialize_as_the_old_json() {
        let p = Pattern {
            description: "3 IPs probed /.env".into(),
            ips: vec!["203.0.113.1".into(), "h:ab".into()],
            key: "/.env".into(),
            kind: PatternKind::ScanningCampaign,
            severity: Severity::High,
            support: 2,
        };
        // What `analytics::pattern` built before.
        let old = json!({
            "kind": "scanning_campaign",
            "key": "/.env",
            "support": 2,
            "ips": ["203.0.113.1", "h:ab"],
            "severity": "high",
            "description": "3 IPs probed /.env",
        });
        same(
            &p,
            old,
            r#"{"description":"3 IPs probed /.env","ips":["203.0.113.1","h:ab"],"key":"/.env","kind":"scanning_campaign","severity":"high","support":2}"#,
        );
        for (k, name) in [
            (PatternKind::ImpossibleTravelCluster, "impossible_travel_cluster"),
            (PatternKind::ThreatSpike, "threat_spike"),
            (PatternKind::ScanningCampaign, "scanning_campaign"),
            (PatternKind::CredentialStuffing, "credential_stuffing"),
            (PatternKind::HighRiskCountry, "high_risk_country"),
            (PatternKind::HighRiskAsn, "high_risk_asn"),
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), json!(name));
            assert_eq!(k.as_str(), name);
        }
        for (s, name) in [(Severity::Medium, "medium"), (Severity::High, "high"), (Severity::Critical, "critical")] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(name));
        }
    }

    #[test]
    fn trends_and_anomalies_serialize_as_the_old_json() {
        let t =
            Trend { change_rate: 0.5, direction: Direction::Up, metric: "request_rate".into(), points: 5, slope: 2.5 };
        let old = json!({"metric": "request_rate", "slope": 2.5, "changeRate": 0.5, "direction": "up", "points": 5});
        same(&t, old, r#"{"changeRate":0.5,"direction":"up","metric":"request_rate","points":5,"slope":2.5}"#);
        for d in [Direction::Up, Direction::Down, Direction::Flat] {
            assert_eq!(serde_json::to_value(d).unwrap(), json!(d.as_str()));
        }
        let a = Anomaly {
            mean: 20.0,
            metric: "request_rate".into(),
            scope: "country:DE".into(),
            slide: 1_700_000_040,
            stddev: 1.5,
            value: 200.0,
            z: 120.0,
        };
        let old = json!({"metric": "request_rate", "scope": "country:DE", "value": 200.0, "mean": 20.0, "stddev": 1.5, "z": 120.0, "slide": 1_700_000_040});
        same(
            &a,
            old,
            r#"{"mean":20.0,"metric":"request_rate","scope":"country:DE","slide":1700000040,"stddev":1.5,"value":200.0,"z":120.0}"#,
        );
        // A value that is not a number was `null` in the json! objects; it still is.
        let nan = Trend { slope: f64::NAN, ..t };
        assert_eq!(serde_json::to_value(&nan).unwrap()["slope"], Value::Null);
    }

    #[test]
    fn correlations_serialize_as_the_old_json() {
        let region = Correlation::RegionThreat { key: "AS14061".into(), mean_threat: 80.5, samples: 12 };
        same(
            &region,
            json!({"kind": "region_threat", "key": "AS14061", "meanThreat": 80.5, "samples": 12u64}),
            r#"{"key":"AS14061","kind":"region_threat","meanThreat":80.5,"samples":12}"#,
        );
        let peak = Correlation::TimeOfDayPeak { hour_utc: 14, requests: 900.0, mean: 100.25 };
        same(
            &peak,
            json!({"kind": "time_of_day_peak", "hourUtc": 14usize, "requests": 900.0, "mean": 100.25}),
            r#"{"hourUtc":14,"kind":"time_of_day_peak","mean":100.25,"requests":900.0}"#,
        );
        let pearson = Correlation::Pearson { a: "request_rate".into(), b: "mean_risk".into(), r: -0.75, points: 5 };
        same(
            &pearson,
            json!({"kind": "pearson", "a": "request_rate", "b": "mean_risk", "r": -0.75, "points": 5usize}),
            r#"{"a":"request_rate","b":"mean_risk","kind":"pearson","points":5,"r":-0.75}"#,
        );
    }
}

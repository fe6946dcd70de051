//! Intelligence events (docs/api.md): the
//! wire shape, and the validation of events pushed in through the API. The
//! profile produces events of the same shape (`profile::apply_*`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ip::{parse_subject, SubjectKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    LocationUpdate,
    ThreatDetected,
    BehaviorAnomaly,
    ReputationChange,
}

impl EventType {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::LocationUpdate => "location_update",
            EventType::ThreatDetected => "threat_detected",
            EventType::BehaviorAnomaly => "behavior_anomaly",
            EventType::ReputationChange => "reputation_change",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Critical,
}

/// A place, as the profile keeps it (history entries carry their time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colo: Option<String>,
}

impl Location {
    pub fn coordinates(&self) -> Option<(f64, f64)> {
        Some((self.latitude?, self.longitude?))
    }

    /// Same place for history purposes: same country, city and coordinates.
    pub fn same_place(&self, other: &Location) -> bool {
        self.country_code == other.country_code && self.city == other.city && self.coordinates() == other.coordinates()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geolocation: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reputation_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behavioral_flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// One event. `ip` is the subject key (an address, or `prefix/64`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntelEvent {
    pub ip: String,
    /// Milliseconds since the epoch.
    pub timestamp: f64,
    pub event_type: EventType,
    /// 0-100.
    pub confidence: f64,
    pub data: EventData,
    pub source: String,
    pub priority: Priority,
}

pub const MAX_FLAGS: usize = 32;
pub const MAX_TEXT: usize = 200;
pub const MAX_METADATA_BYTES: usize = 4096;
/// Events more than this far in the future are refused (clock skew allowance).
pub const MAX_FUTURE_MS: f64 = 5.0 * 60_000.0;

/// A validated event with the subject it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    pub subject: SubjectKey,
    pub event: IntelEvent,
}

/// Validates one pushed event (as raw JSON, so each field gets its own error
/// message). A missing `timestamp` means `now`; `confidence` defaults to 100,
/// `source` to "api", `priority` to "medium".
pub fn validate(raw: &Value, now: f64) -> Result<ValidEvent, String> {
    let obj = raw.as_object().ok_or("an event must be a JSON object")?;
    let ip_raw = obj.get("ip").and_then(Value::as_str).ok_or("`ip` is required and must be a string")?;
    let subject = parse_subject(ip_raw).ok_or_else(|| format!("`ip`: {} is not a valid IP address", clip(ip_raw)))?;
    let type_raw = obj.get("eventType").ok_or("`eventType` is required")?;
    let event_type: EventType = serde_json::from_value(type_raw.clone()).map_err(|_| {
        format!(
            "`eventType`: {} is not one of location_update, threat_detected, behavior_anomaly, reputation_change",
            clip(&type_raw.to_string())
        )
    })?;
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => now,
        Some(v) => {
            let t = v.as_f64().ok_or("`timestamp` must be a number (ms since the epoch)")?;
            if !(t.is_finite() && t >= 0.0) {
                return Err("`timestamp` must be a non-negative number of ms".into());
            }
            if t > now + MAX_FUTURE_MS {
                return Err("`timestamp` is in the future".into());
            }
            t
        }
    };
    let confidence = bounded(obj.get("confidence"), "confidence")?.unwrap_or(100.0);
    let source = match obj.get("source") {
        None | Some(Value::Null) => "api".to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_TEXT => s.trim().to_string(),
        Some(_) => return Err(format!("`source` must be a non-empty string of at most {MAX_TEXT} bytes")),
    };
    let priority = match obj.get("priority") {
        None | Some(Value::Null) => Priority::Medium,
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| "`priority` must be low, medium, high or critical")?,
    };
    let data_obj = match obj.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("`data` must be an object".into()),
    };
    let data = validate_data(&data_obj, now)?;
    let needs = match event_type {
        EventType::ThreatDetected if data.threat_score.is_none() => Some("threat_detected needs `data.threatScore`"),
        EventType::ReputationChange if data.reputation_score.is_none() => {
            Some("reputation_change needs `data.reputationScore`")
        }
        EventType::BehaviorAnomaly if data.behavioral_flags.is_empty() => {
            Some("behavior_anomaly needs `data.behavioralFlags`")
        }
        EventType::LocationUpdate if data.geolocation.is_none() => Some("location_update needs `data.geolocation`"),
        _ => None,
    };
    if let Some(msg) = needs {
        return Err(msg.into());
    }
    let event =
        IntelEvent { ip: subject.as_str().to_string(), timestamp, event_type, confidence, data, source, priority };
    Ok(ValidEvent { subject, event })
}

fn validate_data(m: &Map<String, Value>, now: f64) -> Result<EventData, String> {
    let threat_score = bounded(m.get("threatScore"), "data.threatScore")?;
    let reputation_score = bounded(m.get("reputationScore"), "data.reputationScore")?;
    let behavioral_flags = match m.get("behavioralFlags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_FLAGS {
                return Err(format!("`data.behavioralFlags` has more than {MAX_FLAGS} flags"));
            }
            items
                .iter()
                .map(|f| match f {
                    Value::String(s) if !s.is_empty() && s.len() <= MAX_TEXT => Ok(s.clone()),
                    _ => Err(format!("`data.behavioralFlags` entries must be strings of 1-{MAX_TEXT} bytes")),
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err("`data.behavioralFlags` must be an array of strings".into()),
    };
    let metadata = match m.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => {
            if serde_json::to_string(o).map_or(usize::MAX, |s| s.len()) > MAX_METADATA_BYTES {
                return Err(format!("`data.metadata` is larger than {MAX_METADATA_BYTES} bytes"));
            }
            o.clone()
        }
        Some(_) => return Err("`data.metadata` must be an object".into()),
    };
    let geolocation = match m.get("geolocation") {
        None | Some(Value::Null) => None,
        Some(Value::Object(g)) => Some(validate_location(g, now)?),
        Some(_) => return Err("`data.geolocation` must be an object".into()),
    };
    Ok(EventData { geolocation, threat_score, reputation_score, behavioral_flags, metadata })
}

fn validate_location(g: &Map<String, Value>, now: f64) -> Result<Location, String> {
    let text = |k: &str| -> Result<Option<String>, String> {
        match g.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= MAX_TEXT => Ok(Some(s.clone())),
            Some(_) => Err(format!("`data.geolocation.{k}` must be a string of at most {MAX_TEXT} bytes")),
        }
    };
    let coord = |k: &str, limit: f64| -> Result<Option<f64>, String> {
        match g.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && x.abs() <= limit)
                .map(Some)
                .ok_or_else(|| format!("`data.geolocation.{k}` must be a number within ±{limit}")),
        }
    };
    let latitude = coord("latitude", 90.0)?;
    let longitude = coord("longitude", 180.0)?;
    if latitude.is_some() != longitude.is_some() {
        return Err("`data.geolocation` needs both latitude and longitude, or neither".into());
    }
    let country_code = match text("countryCode")? {
        Some(c) => Some(super::facts::country_code(&c).ok_or("`data.geolocation.countryCode` must be two letters")?),
        None => None,
    };
    let asn = match g.get("asn") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64().and_then(|a| u32::try_from(a).ok()).ok_or("`data.geolocation.asn` must be a whole number")?,
        ),
    };
    Ok(Location {
        timestamp: g.get("timestamp").and_then(Value::as_f64).filter(|t| t.is_finite() && *t >= 0.0).unwrap_or(now),
        country_code,
        city: text("city")?,
        region: text("region")?,
        latitude,
        longitude,
        asn,
        colo: text("colo")?,
    })
}

/// A 0-100 number, or absent.
fn bounded(v: Option<&Value>, name: &str) -> Result<Option<f64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite() && (0.0..=100.0).contains(x))
            .map(Some)
            .ok_or_else(|| format!("`{name}` must be a number from 0 to 100")),
    }
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: f64 = 1_780_000_000_000.0;

    #[test]
    fn valid_events() {
        let e =
            validate(&json!({"ip": "203.0.113.7", "eventType": "threat_detected", "data": {"threatScore": 95}}), NOW)
                .unwrap();
        assert_eq!(e.subject.as_str(), "203.0.113.7");
        assert_eq!(e.event.timestamp, NOW);
        assert_eq!(e.event.confidence, 100.0);
        assert_eq!(e.event.source, "api");
        assert_eq!(e.event.priority, Priority::Medium);
        assert_eq!(e.event.data.threat_score, Some(95.0));

        let e = validate(
            &json!({"ip": "2001:db8:1:2::5", "eventType": "location_update", "timestamp": NOW - 1000.0,
                    "confidence": 85, "source": "feed", "priority": "high",
                    "data": {"geolocation": {"countryCode": "us", "city": "San Francisco", "latitude": 37.7749, "longitude": -122.4194}}}),
            NOW,
        )
        .unwrap();
        assert_eq!(e.subject.as_str(), "2001:db8:1:2::/64");
        assert_eq!(e.event.ip, "2001:db8:1:2::/64");
        let g = e.event.data.geolocation.unwrap();
        assert_eq!(g.country_code.as_deref(), Some("US"));
        assert_eq!(g.coordinates(), Some((37.7749, -122.4194)));
    }

    #[test]
    fn each_bad_field_has_its_own_error() {
        let cases = [
            (json!([]), "JSON object"),
            (json!({"eventType": "threat_detected"}), "`ip` is required"),
            (json!({"ip": "not-an-ip", "eventType": "threat_detected"}), "not a valid IP"),
            (json!({"ip": "1.2.3.4", "eventType": "mystery"}), "`eventType`"),
            (json!({"ip": "1.2.3.4"}), "`eventType` is required"),
            (json!({"ip": "1.2.3.4", "eventType": "threat_detected", "data": {}}), "needs `data.threatScore`"),
            (json!({"ip": "1.2.3.4", "eventType": "threat_detected", "data": {"threatScore": 101}}), "0 to 100"),
            (json!({"ip": "1.2.3.4", "eventType": "threat_detected", "data": {"threatScore": "95"}}), "0 to 100"),
            (json!({"ip": "1.2.3.4", "eventType": "reputation_change", "data": {}}), "reputationScore"),
            (json!({"ip": "1.2.3.4", "eventType": "behavior_anomaly", "data": {"behavioralFlags": [1]}}), "strings"),
            (json!({"ip": "1.2.3.4", "eventType": "location_update", "data": {}}), "geolocation"),
            (
                json!({"ip": "1.2.3.4", "eventType": "location_update", "data": {"geolocation": {"latitude": 95, "longitude": 0}}}),
                "latitude",
            ),
            (
                json!({"ip": "1.2.3.4", "eventType": "location_update", "data": {"geolocation": {"latitude": 5}}}),
                "both latitude and longitude",
            ),
            (
                json!({"ip": "1.2.3.4", "eventType": "threat_detected", "timestamp": -5, "data": {"threatScore": 1}}),
                "non-negative",
            ),
            (
                json!({"ip": "1.2.3.4", "eventType": "threat_detected", "timestamp": NOW + 1e9, "data": {"threatScore": 1}}),
                "future",
            ),
            (
                json!({"ip": "1.2.3.4", "eventType": "threat_detected", "priority": "urgent", "data": {"threatScore": 1}}),
                "priority",
            ),
            (
                json!({"ip": "1.2.3.4", "eventType": "threat_detected", "source": "", "data": {"threatScore": 1}}),
                "source",
            ),
            (json!({"ip": "1.2.3.4", "eventType": "threat_detected", "data": "x"}), "`data` must be an object"),
            (
                json!({"ip": "1.2.3.4", "eventType": "threat_detected", "confidence": 1e300, "data": {"threatScore": 1}}),
                "confidence",
            ),
        ];
        for (raw, want) in cases {
            let err = validate(&raw, NOW).unwrap_err();
            assert!(err.contains(want), "{raw}: got {err:?}, want it to mention {want:?}");
        }
    }

    #[test]
    fn wire_shape_round_trips() {
        let e = validate(&json!({"ip": "1.2.3.4", "eventType": "behavior_anomaly", "data": {"behavioralFlags": ["suspicious_login"]}}), NOW)
            .unwrap()
            .event;
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["eventType"], "behavior_anomaly");
        assert_eq!(v["data"]["behavioralFlags"][0], "suspicious_login");
        let back: IntelEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}

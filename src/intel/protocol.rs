//! The stream protocol (docs/streams.md), shared with `www/`: what the server sends
//! over a WebSocket, what a client may send, subscription filters and their
//! compact form for socket attachments (which survive hibernation).
//!
//! Every server message is `{"v":1,"type":...,"data":...,"timestamp":ISO-8601}`.
//! `ping` is answered by the runtime's auto-response with `{"type":"pong"}`
//! (exact strings, no timestamp: the object is not woken for it).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::{EventType, IntelEvent, Priority};

pub const PROTOCOL_VERSION: u8 = 1;
/// The exact ping text the runtime answers without waking the object.
pub const PING: &str = r#"{"type":"ping"}"#;
pub const PONG: &str = r#"{"type":"pong"}"#;
/// Client messages larger than this get an `error` (and count as flooding).
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 4096;
/// Most countries one filter may name. Every event is compared with every
/// socket's filter, so the lists a client can make the object keep and walk
/// are bounded (event types are deduplicated: there are four).
pub const MAX_FILTER_COUNTRIES: usize = 50;
/// More client messages than this within `FLOOD_WINDOW_MS` closes the socket 1008.
pub const FLOOD_MAX_MESSAGES: u32 = 30;
pub const FLOOD_WINDOW_MS: f64 = 10_000.0;
/// Policy violation (RFC 6455): the close code for flooding.
pub const CLOSE_POLICY: u16 = 1008;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    IntelligenceUpdate,
    Event,
    Insight,
    Alert,
    PerformanceMetric,
    Error,
    Pong,
}

/// A server message. `timestamp` is ISO-8601 (the glue formats the clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMessage {
    pub v: u8,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub data: Value,
    pub timestamp: String,
}

impl ServerMessage {
    pub fn new(kind: MessageType, data: Value, timestamp: &str) -> ServerMessage {
        ServerMessage { v: PROTOCOL_VERSION, kind, data, timestamp: timestamp.to_string() }
    }

    pub fn error(code: &str, message: &str, timestamp: &str) -> ServerMessage {
        ServerMessage::new(MessageType::Error, serde_json::json!({"error": code, "message": message}), timestamp)
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a profile publishes: one event with the facts filters need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Update {
    pub event: IntelEvent,
    /// The subject's current country (events themselves may carry no place).
    #[serde(default)]
    pub country: Option<String>,
    pub threat_score: u8,
    pub reputation_score: u8,
    /// The subject's storage key (its keyed hash with `IP_HASH_KEY`): what an
    /// `ip` filter is compared with, since `event.ip` may be masked.
    #[serde(default)]
    pub subject: String,
}

/// A profile alert, published as an `alert` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertNotice {
    pub ip: String,
    #[serde(default)]
    pub country: Option<String>,
    pub alert: super::profile::Alert,
    /// The subject's storage key, as in `Update`.
    #[serde(default)]
    pub subject: String,
}

/// A client's filter. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<EventType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<String>>,
    /// The subject's storage key (see `keyed`), never a raw IP once keyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl Subscription {
    /// The filter as the object keeps and compares it: the `ip` subject
    /// replaced by its storage key (`ip::identify`), so that with
    /// `IP_HASH_KEY` it matches the hashed subjects events carry and no raw
    /// IP is kept in the socket's attachment.
    pub fn keyed(mut self, hash_key: Option<&str>) -> Subscription {
        self.ip = self
            .ip
            .and_then(|raw| super::ip::parse_subject(&raw))
            .map(|subject| super::ip::identify(&subject, hash_key).key.as_str().to_string());
        self
    }

    pub fn matches_update(&self, u: &Update) -> bool {
        self.event_types.as_ref().is_none_or(|t| t.contains(&u.event.event_type))
            && self.matches(u.event.priority, u.country.as_deref(), &u.subject)
    }

    pub fn matches_alert(&self, a: &AlertNotice) -> bool {
        self.matches(a.alert.severity, a.country.as_deref(), &a.subject)
    }

    fn matches(&self, severity: Priority, country: Option<&str>, ip: &str) -> bool {
        self.min_severity.is_none_or(|m| severity >= m)
            && self.countries.as_ref().is_none_or(|cs| country.is_some_and(|c| cs.iter().any(|x| x == c)))
            && self.ip.as_deref().is_none_or(|want| want == ip)
    }
}

/// What a socket keeps in its attachment: the filter and the flood counter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SocketState {
    #[serde(default, rename = "s")]
    pub subscription: Subscription,
    /// Start of the current flood window (ms) and messages in it.
    #[serde(default, rename = "w")]
    pub window_start: f64,
    #[serde(default, rename = "n")]
    pub count: u32,
}

/// A parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Subscribe(Subscription),
    /// Back to receiving everything.
    Unsubscribe,
    Ping,
}

/// The client message as sent: one flat object whose `type` says what it is.
/// Parsed as a plain struct, not a serde internally-tagged enum: that form
/// buffers every message through serde's generic `Content` tree, which costs
/// ~100 KB of wasm for no behaviour we need.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    #[serde(rename = "type")]
    kind: RawKind,
    #[serde(default, rename = "eventTypes")]
    event_types: Option<Value>,
    #[serde(default)]
    filter: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawKind {
    Subscribe,
    Unsubscribe,
    Ping,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    min_severity: Option<Priority>,
    #[serde(default)]
    countries: Option<Vec<String>>,
    #[serde(default)]
    ip: Option<String>,
}

/// Parses a client text message; the error is a message for the client.
pub fn parse_client(text: &str) -> Result<ClientMessage, String> {
    if text.len() > MAX_CLIENT_MESSAGE_BYTES {
        return Err(format!("message larger than {MAX_CLIENT_MESSAGE_BYTES} bytes"));
    }
    let raw: RawClient = serde_json::from_str(text)
        .map_err(|e| format!("expected {{\"type\":\"subscribe\"|\"unsubscribe\"|\"ping\", ...}}: {e}"))?;
    Ok(match raw.kind {
        RawKind::Ping if raw.event_types.is_some() || raw.filter.is_some() => {
            return Err("`ping` takes no other fields".to_string())
        }
        RawKind::Ping => ClientMessage::Ping,
        // Unsubscribe ignores any filter it is sent (back to everything).
        RawKind::Unsubscribe => ClientMessage::Unsubscribe,
        RawKind::Subscribe => {
            let mut event_types: Option<Vec<EventType>> = match raw.event_types {
                Some(v) => serde_json::from_value(v).map_err(|e| format!("`eventTypes`: {e}"))?,
                None => None,
            };
            if let Some(types) = event_types.as_mut() {
                let mut seen = Vec::with_capacity(types.len().min(8));
                types.retain(|t| {
                    if seen.contains(t) {
                        false
                    } else {
                        seen.push(*t);
                        true
                    }
                });
            }
            let f: RawFilter = match raw.filter {
                Some(v) => serde_json::from_value(v).map_err(|e| format!("`filter`: {e}"))?,
                None => RawFilter { min_severity: None, countries: None, ip: None },
            };
            let countries = match f.countries {
                Some(cs) if cs.len() > MAX_FILTER_COUNTRIES => {
                    return Err(format!("`countries`: at most {MAX_FILTER_COUNTRIES} countries per filter"))
                }
                Some(cs) => {
                    let mut codes = cs
                        .iter()
                        .map(|c| super::facts::country_code(c).ok_or_else(|| format!("`{c}` is not a country code")))
                        .collect::<Result<Vec<_>, _>>()?;
                    codes.sort();
                    codes.dedup();
                    Some(codes)
                }
                None => None,
            };
            let ip = match f.ip {
                Some(ip) => Some(
                    super::ip::parse_subject(&ip)
                        .ok_or_else(|| format!("`{}` is not an IP address", ip.chars().take(64).collect::<String>()))?
                        .as_str()
                        .to_string(),
                ),
                None => None,
            };
            ClientMessage::Subscribe(Subscription { event_types, min_severity: f.min_severity, countries, ip })
        }
    })
}

/// Counts one client message at `now`; true when the socket is flooding.
pub fn count_message(state: &mut SocketState, now: f64) -> bool {
    if now - state.window_start > FLOOD_WINDOW_MS || now < state.window_start {
        state.window_start = now;
        state.count = 0;
    }
    state.count = state.count.saturating_add(1);
    state.count > FLOOD_MAX_MESSAGES
}

/// `ms` since the epoch as JavaScript's `Date.prototype.toISOString` writes
/// it (`2026-05-01T12:00:00.000Z`), without the platform: the streams'
/// message timestamps, made in the pure core (`intel::tick`).
pub fn iso(ms: f64) -> String {
    let ms = ms.trunc() as i64;
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (proleptic Gregorian; H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn iso_is_javascripts_to_iso_string() {
        assert_eq!(iso(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400_000.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso(1_780_000_020_123.9), "2026-05-28T20:27:00.123Z");
        assert_eq!(iso(4_102_444_799_999.0), "2099-12-31T23:59:59.999Z");
        assert_eq!(iso(-1.0), "1969-12-31T23:59:59.999Z");
    }
    use crate::intel::events::{EventData, EventType};
    use serde_json::json;

    fn update(kind: EventType, priority: Priority, country: Option<&str>, ip: &str) -> Update {
        Update {
            event: IntelEvent {
                ip: ip.into(),
                timestamp: 0.0,
                event_type: kind,
                confidence: 100.0,
                data: EventData::default(),
                source: "edgeintel".into(),
                priority,
            },
            country: country.map(String::from),
            threat_score: 0,
            reputation_score: 50,
            subject: ip.into(),
        }
    }

    #[test]
    fn every_message_type_round_trips() {
        for kind in [
            MessageType::IntelligenceUpdate,
            MessageType::Event,
            MessageType::Insight,
            MessageType::Alert,
            MessageType::PerformanceMetric,
            MessageType::Error,
            MessageType::Pong,
        ] {
            let m = ServerMessage::new(kind, json!({"x": 1}), "2026-11-26T20:00:00.000Z");
            let text = m.to_text();
            let back: ServerMessage = serde_json::from_str(&text).unwrap();
            assert_eq!(back, m);
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["v"], 1);
            assert!(v["type"].is_string() && v["timestamp"].is_string());
        }
        let e = ServerMessage::error("bad_message", "nope", "t");
        assert_eq!(serde_json::to_value(&e).unwrap()["data"]["error"], "bad_message");
    }

    #[test]
    fn attachment_round_trips_and_is_compact() {
        let s = SocketState {
            subscription: Subscription {
                event_types: Some(vec![EventType::ThreatDetected]),
                min_severity: Some(Priority::High),
                countries: Some(vec!["DE".into()]),
                ip: Some("203.0.113.7".into()),
            },
            window_start: 5.0,
            count: 3,
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.len() < 200, "{text}");
        assert_eq!(serde_json::from_str::<SocketState>(&text).unwrap(), s);
        assert_eq!(serde_json::from_str::<SocketState>("{}").unwrap(), SocketState::default());
    }

    #[test]
    fn client_messages() {
        assert_eq!(parse_client(PING).unwrap(), ClientMessage::Ping);
        assert_eq!(parse_client(r#"{"type":"unsubscribe"}"#).unwrap(), ClientMessage::Unsubscribe);
        assert_eq!(parse_client(r#"{"type":"unsubscribe","filter":{}}"#).unwrap(), ClientMessage::Unsubscribe);
        let m = parse_client(
            r#"{"type":"subscribe","eventTypes":["threat_detected"],"filter":{"minSeverity":"high","countries":["de"],"ip":"2001:db8::1"}}"#,
        )
        .unwrap();
        let ClientMessage::Subscribe(s) = m else { panic!("not a subscribe") };
        assert_eq!(s.countries, Some(vec!["DE".to_string()]));
        assert_eq!(s.ip.as_deref(), Some("2001:db8::/64"));
        for bad in [
            "",
            "garbage",
            "[]",
            r#"{"type":"dance"}"#,
            r#"{"type":"subscribe","eventTypes":["nope"]}"#,
            r#"{"type":"subscribe","filter":{"minSeverity":"extreme"}}"#,
            r#"{"type":"subscribe","filter":{"countries":["Germany"]}}"#,
            r#"{"type":"subscribe","filter":{"ip":"not-ip"}}"#,
            r#"{"type":"subscribe","filter":{"colour":"red"}}"#,
        ] {
            assert!(parse_client(bad).is_err(), "{bad:?}");
        }
        assert!(parse_client(&"x".repeat(MAX_CLIENT_MESSAGE_BYTES + 1)).unwrap_err().contains("larger"));
    }

    #[test]
    fn filters() {
        let all = Subscription::default();
        let u = update(EventType::ThreatDetected, Priority::High, Some("DE"), "203.0.113.7");
        assert!(all.matches_update(&u));
        let table = [
            (Subscription { event_types: Some(vec![EventType::LocationUpdate]), ..Default::default() }, false),
            (Subscription { event_types: Some(vec![EventType::ThreatDetected]), ..Default::default() }, true),
            (Subscription { min_severity: Some(Priority::Critical), ..Default::default() }, false),
            (Subscription { min_severity: Some(Priority::High), ..Default::default() }, true),
            (Subscription { countries: Some(vec!["FR".into()]), ..Default::default() }, false),
            (Subscription { countries: Some(vec!["FR".into(), "DE".into()]), ..Default::default() }, true),
            (Subscription { ip: Some("203.0.113.8".into()), ..Default::default() }, false),
            (Subscription { ip: Some("203.0.113.7".into()), ..Default::default() }, true),
        ];
        for (sub, want) in table {
            assert_eq!(sub.matches_update(&u), want, "{sub:?}");
        }
        let nowhere = update(EventType::ThreatDetected, Priority::High, None, "203.0.113.7");
        assert!(!Subscription { countries: Some(vec!["DE".into()]), ..Default::default() }.matches_update(&nowhere));
    }

    #[test]
    fn filter_lists_are_bounded() {
        let countries: Vec<String> = (0..=MAX_FILTER_COUNTRIES)
            .map(|i| format!("\"{}{}\"", (b'A' + (i / 26) as u8) as char, (b'A' + (i % 26) as u8) as char))
            .collect();
        let too_many = format!(r#"{{"type":"subscribe","filter":{{"countries":[{}]}}}}"#, countries.join(","));
        assert!(parse_client(&too_many).unwrap_err().contains("at most 50"), "51 countries");
        let fifty = format!(r#"{{"type":"subscribe","filter":{{"countries":[{}]}}}}"#, countries[..50].join(","));
        let ClientMessage::Subscribe(s) = parse_client(&fifty).unwrap() else { panic!() };
        assert_eq!(s.countries.unwrap().len(), 50);
        let repeated =
            format!(r#"{{"type":"subscribe","eventTypes":[{}]}}"#, vec!["\"threat_detected\""; 200].join(","));
        let ClientMessage::Subscribe(s) = parse_client(&repeated).unwrap() else { panic!() };
        assert_eq!(s.event_types, Some(vec![EventType::ThreatDetected]), "deduplicated");
        let dup = r#"{"type":"subscribe","filter":{"countries":["de","DE","fr"]}}"#;
        let ClientMessage::Subscribe(s) = parse_client(dup).unwrap() else { panic!() };
        assert_eq!(s.countries, Some(vec!["DE".to_string(), "FR".to_string()]));
    }

    #[test]
    fn an_ip_filter_is_kept_as_the_subject_key() {
        let ClientMessage::Subscribe(s) =
            parse_client(r#"{"type":"subscribe","filter":{"ip":"203.0.113.7"}}"#).unwrap()
        else {
            panic!()
        };
        let plain = s.clone().keyed(None);
        assert_eq!(plain.ip.as_deref(), Some("203.0.113.7"));
        let hashed = s.keyed(Some("k-0123456789abcdef"));
        let key = crate::intel::ip::identify(
            &crate::intel::ip::parse_subject("203.0.113.7").unwrap(),
            Some("k-0123456789abcdef"),
        )
        .key;
        assert_eq!(hashed.ip.as_deref(), Some(key.as_str()));
        assert!(!serde_json::to_string(&hashed).unwrap().contains("203.0.113"), "no raw IP in the attachment");
        // An event of that subject shows the masked IP and carries the key: it matches.
        let mut u = update(EventType::ThreatDetected, Priority::High, None, "203.0.113.x");
        u.subject = key.as_str().to_string();
        assert!(hashed.matches_update(&u));
        let mut other = u.clone();
        other.subject = "h:00000000000000000000000000000000".into();
        assert!(!hashed.matches_update(&other), "another subject in the same /24 does not match");
    }

    #[test]
    fn flood_counting() {
        let mut s = SocketState::default();
        for i in 0..FLOOD_MAX_MESSAGES {
            assert!(!count_message(&mut s, 1000.0 + f64::from(i)));
        }
        assert!(count_message(&mut s, 1100.0));
        assert!(!count_message(&mut s, 1000.0 + FLOOD_WINDOW_MS + 200.0), "a new window starts over");
    }
}

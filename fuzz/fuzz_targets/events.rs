//! `POST /api/events` bodies: a JSON array of events (or `{"events": [...]}`,
//! or a single value), each item through `events::validate`. Never panics;
//! an accepted event is within its documented bounds, names its subject, and
//! is itself accepted again unchanged (what is stored and published is valid).
#![no_main]

use edgeintel::intel::events::{validate, MAX_FLAGS, MAX_FUTURE_MS, MAX_METADATA_BYTES, MAX_TEXT};
use edgeintel::intel::ip::parse_subject;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOW: f64 = 1_780_000_000_000.0;

fn unit(x: f64) -> bool {
    x.is_finite() && (0.0..=100.0).contains(&x)
}

fn check(item: &Value) {
    let v = match validate(item, NOW) {
        Ok(v) => v,
        Err(message) => {
            assert!(!message.is_empty());
            return;
        }
    };
    let e = &v.event;
    assert_eq!(e.ip, v.subject.as_str());
    assert_eq!(parse_subject(&e.ip).as_ref(), Some(&v.subject), "subject {:?} does not round-trip", e.ip);
    assert!(e.timestamp.is_finite() && e.timestamp >= 0.0 && e.timestamp <= NOW + MAX_FUTURE_MS, "{}", e.timestamp);
    assert!(unit(e.confidence), "confidence {}", e.confidence);
    assert!(e.data.threat_score.is_none_or(unit) && e.data.reputation_score.is_none_or(unit));
    assert!(!e.source.is_empty() && e.source.len() <= MAX_TEXT && e.source.trim() == e.source, "{:?}", e.source);
    assert!(e.data.behavioral_flags.len() <= MAX_FLAGS);
    assert!(e.data.behavioral_flags.iter().all(|f| !f.is_empty() && f.len() <= MAX_TEXT));
    let meta = serde_json::to_string(&e.data.metadata).map_or(usize::MAX, |s| s.len());
    assert!(meta <= MAX_METADATA_BYTES, "metadata of {meta} bytes");
    if let Some(g) = &e.data.geolocation {
        assert_eq!(g.latitude.is_some(), g.longitude.is_some());
        assert!(g.latitude.is_none_or(|x| x.abs() <= 90.0) && g.longitude.is_none_or(|x| x.abs() <= 180.0));
        assert!(g.timestamp.is_finite() && g.timestamp >= 0.0);
        if let Some(c) = &g.country_code {
            assert!(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "{c:?}");
        }
    }
    // The event as stored and published is a valid event, and the same one.
    let stored = serde_json::to_value(e).unwrap_or_else(|err| panic!("event does not serialize: {err}"));
    match validate(&stored, NOW) {
        Ok(again) => assert_eq!(again, v, "re-validating {stored} changed it"),
        Err(why) => panic!("the accepted event {stored} is refused when sent again: {why}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    match &body {
        Value::Array(items) => items.iter().for_each(check),
        Value::Object(o) => match o.get("events") {
            Some(Value::Array(items)) => items.iter().for_each(check),
            _ => check(&body),
        },
        _ => check(&body),
    }
});

//! `request.cf` (any JSON value): `CfFacts::from_json` never panics, every
//! field it keeps is within its documented bounds, and the headers rendered
//! from those facts are printable ASCII (the contract in `intel::headers`).
#![no_main]

use edgeintel::intel::facts::{CfFacts, RequestFacts};
use edgeintel::intel::headers::{render, HeaderInput, IntelStatus};
use edgeintel::intel::score::{score, Weights};
use edgeintel::intel::signals::{request_signals, SignalConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(cf) = serde_json::from_slice::<Value>(data) else { return };
    let f = CfFacts::from_json(&cf);
    if !cf.is_object() {
        assert_eq!(f, CfFacts::default(), "a non-object cf gives empty facts");
    }
    if let Some(lat) = f.latitude {
        assert!((-90.0..=90.0).contains(&lat), "latitude {lat}");
    }
    if let Some(lon) = f.longitude {
        assert!((-180.0..=180.0).contains(&lon), "longitude {lon}");
    }
    if let Some(c) = &f.country {
        assert!(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "country {c:?}");
    }
    if let Some(c) = &f.colo {
        assert!((3..=4).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_uppercase()), "colo {c:?}");
    }
    if let Some(a) = f.asn {
        assert!(a > 0, "asn 0");
    }
    if let Some(s) = f.bot_score {
        assert!(s <= 100, "bot score {s}");
    }
    let texts = [
        &f.city,
        &f.region,
        &f.region_code,
        &f.continent,
        &f.postal_code,
        &f.timezone,
        &f.as_organization,
        &f.http_protocol,
        &f.tls_version,
        &f.tls_ciphers_sha1,
        &f.tls_extensions_sha1,
        &f.ja4,
    ];
    for t in texts.into_iter().flatten() {
        assert!(!t.is_empty() && t.chars().count() <= 128, "text field {t:?}");
    }

    // The facts go on into the request signals, the score and the headers.
    let signals = request_signals(&f, &RequestFacts::default(), &SignalConfig::default());
    let verdict = score(&signals, &Weights::default());
    assert!(verdict.score <= 100);
    // Whatever the TLS facts hold, the fingerprint is 16 hex or absent.
    let fp = edgeintel::intel::fingerprint::id(&f, &[]);
    assert!(fp.as_deref().is_none_or(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit())));
    let input = HeaderInput {
        verdict: &verdict,
        level: verdict.level,
        threat: 0,
        reputation: 0,
        cf: &f,
        status: IntelStatus::Ok,
        rule: None,
        cleared: None,
        fingerprint: fp.as_deref(),
    };
    for (name, value) in render(&input) {
        assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{name}: {value:?} is not printable ASCII");
    }
});

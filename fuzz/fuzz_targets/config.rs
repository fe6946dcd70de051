//! The Worker's vars through `Config::from_vars`. Input: lines `NAME=value`
//! (the last one for a name wins), so one input sets several vars at once:
//! JSON ones (RISK_WEIGHTS, COUNTRY_RISK, HOSTING_ASNS, ALLOW_LIST,
//! BLOCK_LIST, ALERT_RULES), URLs, numbers, secrets. Never panics; an
//! accepted config keeps the invariants the request path relies on; a
//! refused one names a variable.
#![no_main]

use edgeintel::config::Config;
use edgeintel::intel::enforce::Mode;
use edgeintel::intel::lists::MAX_ENTRIES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let vars: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
    // A plain scan (no hashing) so libFuzzer's compare tracing learns the names.
    let get = |name: &str| vars.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_string());
    let c = match Config::from_vars(get) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.var.is_empty() && e.to_string().starts_with("invalid "), "{e:?}");
            return;
        }
    };
    assert!(
        c.enforce.challenge_at <= c.enforce.block_at && c.enforce.block_at <= 100,
        "thresholds {} {}",
        c.enforce.challenge_at,
        c.enforce.block_at
    );
    let p = &c.intel_prefix;
    assert!(p.len() >= 2 && p.starts_with('/') && !p.ends_with('/') && !p.contains("//"), "prefix {p:?}");
    if let Some(u) = &c.origin.url {
        assert!(matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/", "origin {u}");
        assert!(u.query().is_none() && u.fragment().is_none(), "origin {u}");
    }
    if c.enforce.mode != Mode::Off {
        assert!(c.secrets.challenge_key.as_ref().is_some_and(|k| k.len() >= 16), "enforcing without a key");
    }
    if c.visitor.set_cookie {
        assert!(c.secrets.visitor_signing_key.as_ref().is_some_and(|k| k.len() >= 16), "visitor cookie without a key");
    }
    for k in [&c.secrets.challenge_key, &c.secrets.header_signing_key, &c.secrets.ip_hash_key].into_iter().flatten() {
        assert!(k.len() >= 16, "short secret accepted");
    }
    assert!(c.profile_ttl_ms.is_finite() && c.profile_ttl_ms > 0.0, "profile ttl {}", c.profile_ttl_ms);
    let a = &c.analytics;
    assert!(a.slide_s >= 1 && a.window_s >= a.slide_s && a.window_s / a.slide_s <= 120, "slides {a:?}");
    assert!(a.trend_sensitivity.is_finite() && a.trend_sensitivity > 0.0, "trend {}", a.trend_sensitivity);
    assert!(a.anomaly_threshold.is_finite() && a.anomaly_threshold > 0.0, "anomaly {}", a.anomaly_threshold);
    assert!(c.lists.allow.len() + c.lists.block.len() <= MAX_ENTRIES);
    for r in &c.hub.alert_rules {
        assert!(!r.name.trim().is_empty() && r.threshold.is_finite(), "alert rule {r:?}");
        assert!(r.duration >= 0.0 && r.cooldown >= 0.0, "alert rule {r:?}");
    }
    assert!((1..=64).contains(&c.hub.shards) && c.streams.max_clients <= 100_000 && c.max_event_batch >= 1);
    if let Some(name) = &c.visitor.cookie {
        assert!(!name.is_empty() && !name.contains([';', '=', ' ']), "visitor cookie name {name:?}");
    }
});

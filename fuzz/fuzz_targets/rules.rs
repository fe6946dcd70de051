//! Per-route rules (`intel::rules`): the `PUT /api/config/rules` body, the
//! `RULES` setting and the copy stored in KV, all untrusted JSON; and the
//! request paths rules match against, and an origin's `X-Intel-Step-Up`
//! value (`intel::stepup`). Never panics; rules that parse print
//! back (what `GET` shows, what KV holds) to the same rules; a rule's own
//! path matches itself; `match_path` always gives a path starting with `/`
//! and no `//` (it decodes once, so it is not idempotent: `%2561` becomes `%61`).
#![no_main]

use edgeintel::intel::rules::{first_match, match_path, parse_body, parse_rules, RuleInput, MAX_RULES};
use edgeintel::intel::stepup;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_rules(v: &Value) {
    match parse_rules(v) {
        Ok(rules) => {
            assert!(rules.len() <= MAX_RULES);
            let printed = serde_json::to_value(&rules).unwrap_or_else(|e| panic!("rules do not serialize: {e}"));
            let again = parse_rules(&printed).unwrap_or_else(|e| panic!("{printed} does not parse back: {e:?}"));
            assert_eq!(again, rules, "{printed}");
            let input =
                RuleInput { path: "/", method: "GET", country: Some("DE"), asn: Some(64496), reasons: &[], score: 50 };
            let _ = first_match(&rules, &input);
        }
        Err(errors) => {
            assert!(!errors.is_empty() && errors.iter().all(|e| !e.field.is_empty() && !e.message.is_empty()))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A request path: its normalised reading is a clean absolute path.
    let once = match_path(text);
    assert!(once.starts_with('/'), "{text:?} -> {once:?}");
    assert!(!once.contains("//"), "{text:?} -> {once:?}");
    // An origin's `X-Intel-Step-Up` value: anything taken is in bounds.
    if let Ok(s) = stepup::parse(text, 1_000.0) {
        assert!(s.scope.starts_with('/') && s.scope.len() <= stepup::MAX_SCOPE_LEN, "{text:?} -> {s:?}");
        let ttl = (s.until - s.at) / 1000.0;
        assert!(s.at == 1_000.0 && (1.0..=stepup::MAX_TTL_S as f64).contains(&ttl), "{text:?} -> {s:?}");
    }
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        check_rules(&v);
        let _ = parse_body(&v);
        if let Some(rules) = v.get("rules") {
            check_rules(rules);
        }
    }
});

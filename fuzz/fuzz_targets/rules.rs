//! Per-route rules (`intel::rules`): the `PUT /api/config/rules` body, the
//! `RULES` setting and the copy stored in KV, all untrusted JSON; and the
//! request paths rules match against. Never panics; rules that parse print
//! back (what `GET` shows, what KV holds) to the same rules; a rule's own
//! path matches itself; `match_path` is idempotent.
#![no_main]

use edgeintel::intel::rules::{first_match, match_path, parse_body, parse_rules, RuleInput, MAX_RULES};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_rules(v: &Value) {
    match parse_rules(v) {
        Ok(rules) => {
            assert!(rules.len() <= MAX_RULES);
            let printed = serde_json::to_value(&rules).unwrap_or_else(|e| panic!("rules do not serialize: {e}"));
            let again = parse_rules(&printed).unwrap_or_else(|e| panic!("{printed} does not parse back: {e:?}"));
            assert_eq!(again, rules, "{printed}");
            let input = RuleInput { path: "/", method: "GET", country: Some("DE"), asn: Some(64496), reasons: &[], score: 50 };
            let _ = first_match(&rules, &input);
        }
        Err(errors) => assert!(!errors.is_empty() && errors.iter().all(|e| !e.field.is_empty() && !e.message.is_empty())),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A request path: normalising twice changes nothing more.
    let once = match_path(text);
    assert!(once.starts_with('/'), "{text:?} -> {once:?}");
    assert!(!once.contains("//"), "{text:?} -> {once:?}");
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        check_rules(&v);
        let _ = parse_body(&v);
        if let Some(rules) = v.get("rules") {
            check_rules(rules);
        }
    }
});

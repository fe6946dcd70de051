//! Every parser of untrusted input, fed a deterministic stream of random and
//! mutated inputs: none may panic (a panic would reset the wasm instance).
//! Bounded: a few hundred thousand inputs, well under a second per parser.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use edgeintel::config::Config;
use edgeintel::intel::enforce::{clearance_valid, verify_solution};
use edgeintel::intel::events::validate;
use edgeintel::intel::facts::CfFacts;
use edgeintel::intel::ip::{parse_client_ip, parse_subject};
use edgeintel::intel::lists::Entry;
use edgeintel::intel::protocol::parse_client;
use edgeintel::intel::secrets::{bearer, cookie, verify_visitor_cookie};
use edgeintel::intel::signals::is_probe_path;
use edgeintel::intel::webhooks::parse_targets;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    "203.0.113.7",
    "2001:db8:1:2::5",
    "203.0.113.0/24",
    "2001:db8::/32",
    "AS64496",
    "country:DE",
    "::ffff:1.2.3.4",
    r#"{"country":"DE","latitude":"52.5","longitude":"13.4","asn":3320,"botManagement":{"score":5}}"#,
    r#"{"ip":"203.0.113.7","eventType":"threat_detected","data":{"threatScore":95}}"#,
    r#"{"type":"subscribe","eventTypes":["threat_detected"],"filter":{"minSeverity":"high","countries":["DE"],"ip":"1.2.3.4"}}"#,
    r#"{"type":"ping"}"#,
    "a=1; ei_vid=00ff.abcd; session=x",
    "Bearer abc",
    "/.env",
    "/a/%2e%2e/%252e/b",
    "t=1,v1=00",
    "00ff11.1780000000000.16.abcd",
    "1780000000000.deadbeef",
    r#"[{"url":"https://hooks.slack.com/services/T/B/X","format":"slack"},{"url":"http://[::1]:8/a","secretVar":"ALERT_WEBHOOK_SECRET_A"}]"#,
];
const ALPHABET: &[u8] = b"0123456789abcdefABCDEF:./%-_,;= {}[]\\\"\\\\ntrue false null \x00\xff\xc3\xa9-1e309NaN";

fn mutate(r: &mut Rng, s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    for _ in 0..=r.below(6) {
        match r.below(5) {
            0 if !b.is_empty() => {
                let i = r.below(b.len());
                b.remove(i);
            }
            1 => {
                let i = r.below(b.len() + 1);
                b.insert(i, ALPHABET[r.below(ALPHABET.len())]);
            }
            2 if !b.is_empty() => {
                let i = r.below(b.len());
                b[i] = ALPHABET[r.below(ALPHABET.len())];
            }
            3 => {
                let other = SEEDS[r.below(SEEDS.len())].as_bytes();
                let i = r.below(b.len() + 1);
                b.splice(i..i, other.iter().copied());
            }
            _ => b.truncate(r.below(b.len() + 1)),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn inputs(seed: u64, n: usize) -> Vec<String> {
    let mut r = Rng(seed);
    (0..n)
        .map(|_| {
            let seed = SEEDS[r.below(SEEDS.len())];
            mutate(&mut r, seed)
        })
        .collect()
}

#[test]
fn parsers_never_panic_on_mutated_input() {
    let now = 1_780_000_000_000.0;
    let mut tried = 0usize;
    for text in inputs(0x9E37_79B9_7F4A_7C15, 40_000) {
        let _ = parse_client_ip(&text);
        let _ = parse_subject(&text);
        let _ = Entry::parse(&text);
        let _ = parse_client(&text);
        let _ = cookie(&text, "ei_vid");
        let _ = bearer(&text);
        let _ = verify_visitor_cookie("key-0123456789abcdef", &text);
        let _ = is_probe_path(&text);
        let _ = parse_targets(&text, |_| Some("0123456789abcdef-secret".to_string()));
        let _ = verify_solution("key-0123456789abcdef", "s", &text, 7, now, 1);
        let _ = clearance_valid("key-0123456789abcdef", "s", &text, now);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = CfFacts::from_json(&v);
            let _ = validate(&v, now);
        }
        let _ = Config::from_vars(|k| match k {
            "RISK_WEIGHTS" | "COUNTRY_RISK" | "HOSTING_ASNS" | "ALLOW_LIST" | "ALERT_RULES" | "BLOCK_AT"
            | "ORIGIN_URL" | "INTEL_PREFIX" | "PROFILE_TTL_DAYS" | "ALERT_WEBHOOKS" => Some(text.clone()),
            _ => None,
        });
        tried += 1;
    }
    println!("parsers: {tried} mutated inputs, 0 panics");
    assert_eq!(tried, 40_000);
    // For the summary at the end of `npm test` (scripts/test-summary.mjs).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts/counts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("parsers.json"), format!("{{\"suite\":\"parsers\",\"cases\":{tried},\"panics\":0}}\n"))
        .unwrap();
}

#[test]
fn cf_parser_survives_every_json_shape_per_field() {
    let values = [
        "null",
        "true",
        "0",
        "-1",
        "1e308",
        "-0.0",
        "\"\"",
        "\"x\"",
        "\"52.5\"",
        "\"NaN\"",
        "[]",
        "[1,2]",
        "{}",
        "{\"a\":1}",
        "\"\\u0000\"",
        "\"é\"",
        "18446744073709551616",
    ];
    let fields = [
        "country",
        "city",
        "region",
        "regionCode",
        "continent",
        "postalCode",
        "timezone",
        "latitude",
        "longitude",
        "asn",
        "asOrganization",
        "colo",
        "httpProtocol",
        "tlsVersion",
        "isEUCountry",
        "botManagement",
    ];
    let mut n = 0;
    for f in fields {
        for v in values {
            let cf: serde_json::Value = serde_json::from_str(&format!(
                "{{\"{f}\":{v},\"botManagement\":{{\"score\":{v},\"verifiedBot\":{v}}}}}"
            ))
            .unwrap();
            let facts = CfFacts::from_json(&cf);
            if let Some(lat) = facts.latitude {
                assert!((-90.0..=90.0).contains(&lat));
            }
            n += 1;
        }
    }
    assert_eq!(n, fields.len() * values.len());
}

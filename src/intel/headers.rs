//! The header contract with the origin (the README's header table): names as constants,
//! the one function that decides which client headers are ours to strip, and
//! the one function that renders our headers. Every value is printable ASCII
//! with no CR/LF, whatever the cf object or the client sent.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use super::facts::CfFacts;
use super::score::{Level, Verdict};

pub const RISK_SCORE: &str = "X-Risk-Score";
pub const RISK_LEVEL: &str = "X-Risk-Level";
pub const RISK_REASONS: &str = "X-Risk-Reasons";
pub const THREAT_SCORE: &str = "X-Threat-Score";
pub const REPUTATION_SCORE: &str = "X-Reputation-Score";
pub const GEO_COUNTRY: &str = "X-Geo-Country";
pub const GEO_CITY: &str = "X-Geo-City";
pub const GEO_REGION: &str = "X-Geo-Region";
pub const GEO_LAT: &str = "X-Geo-Lat";
pub const GEO_LON: &str = "X-Geo-Lon";
pub const GEO_ASN: &str = "X-Geo-ASN";
pub const GEO_COLO: &str = "X-Geo-Colo";
pub const INTEL_STATUS: &str = "X-Intel-Status";
/// RFC 8941 dictionary with the verdict in one header.
pub const INTEL: &str = "X-Intel";

/// True for a header name in our namespace: a client-sent copy must never
/// reach the origin, or a client could vouch for itself. Case-insensitive,
/// and `_` counts as `-`: CGI, WSGI and Rack origins map `X_Risk_Score` and
/// `X-Risk-Score` to the same variable (`HTTP_X_RISK_SCORE`), so a client's
/// underscore spelling could otherwise stand in for ours.
pub fn is_reserved(name: &str) -> bool {
    // Any separator counts as `-`: CGI/WSGI/Rack origins map `-` and `_`
    // (and some frameworks other punctuation) to the same variable.
    let n: String =
        name.trim().chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    n.starts_with("x-risk-")
        || n.starts_with("x-geo-")
        || n.starts_with("x-intel-")
        || n == "x-intel"
        || n == "x-threat-score"
        || n == "x-reputation-score"
}

/// Whether the verdict includes the subject's profile (`ok`) or was formed
/// from the request alone because the profile could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntelStatus {
    Ok,
    Degraded,
}

impl IntelStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            IntelStatus::Ok => "ok",
            IntelStatus::Degraded => "degraded",
        }
    }
}

/// Everything the headers say about one request.
#[derive(Debug, Clone)]
pub struct HeaderInput<'a> {
    pub verdict: &'a Verdict,
    /// Overrides the verdict's level (`unknown` when degraded with no verdict).
    pub level: Level,
    pub threat: u8,
    pub reputation: u8,
    pub cf: &'a CfFacts,
    pub status: IntelStatus,
    /// The per-route rule that matched (issue 18), if any.
    pub rule: Option<RuleHeader<'a>>,
    /// The request holds a valid clearance (a solved challenge), issued at
    /// this time (unix seconds; 0 for a cookie from before issue times were
    /// kept): `cleared=<t>`, so an origin that asked for a step-up
    /// (`intel::stepup`) can tell a client that has just passed one.
    pub cleared: Option<u64>,
    /// The client's fingerprint id (`intel::fingerprint`): `fp="<16 hex>"`.
    pub fingerprint: Option<&'a str>,
}

/// What `X-Intel` says of the rule that matched: `rule="login", action=block`,
/// and `dry_run` when the rule only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleHeader<'a> {
    /// `[A-Za-z0-9_.-]` (`intel::rules`): an RFC 8941 string with nothing to escape.
    pub id: &'a str,
    /// The rule's action, an RFC 8941 token (`allow`, `monitor`, `challenge`, `block`, `rate_limit`).
    pub action: &'static str,
    pub dry_run: bool,
    /// A rate-limit rule's limiter refused the request (`limited`; with
    /// `dry_run` the request was forwarded all the same).
    pub limited: bool,
}

/// Characters escaped in echoed free text: controls, non-ASCII (by
/// `percent_encoding`'s UTF-8 encoding), and `%` itself so decoding is exact.
const FREE_TEXT: &AsciiSet = &CONTROLS.add(b'%').add(b'"');

fn free_text(s: &str) -> String {
    utf8_percent_encode(s, FREE_TEXT).to_string()
}

/// Our headers, in contract order. Geo headers are omitted when unknown.
pub fn render(input: &HeaderInput<'_>) -> Vec<(&'static str, String)> {
    let v = input.verdict;
    let reasons: Vec<&str> = v.reasons().map(|r| r.code()).collect();
    let mut out = vec![
        (RISK_SCORE, v.score.to_string()),
        (RISK_LEVEL, input.level.as_str().to_string()),
        (RISK_REASONS, reasons.join(",")),
        (THREAT_SCORE, input.threat.to_string()),
        (REPUTATION_SCORE, input.reputation.to_string()),
    ];
    let cf = input.cf;
    if let Some(c) = &cf.country {
        out.push((GEO_COUNTRY, c.clone()));
    }
    if let Some(c) = &cf.city {
        out.push((GEO_CITY, free_text(c)));
    }
    if let Some(r) = &cf.region {
        out.push((GEO_REGION, free_text(r)));
    }
    if let Some((lat, lon)) = cf.coordinates() {
        out.push((GEO_LAT, format_degrees(lat)));
        out.push((GEO_LON, format_degrees(lon)));
    }
    if let Some(a) = cf.asn {
        out.push((GEO_ASN, a.to_string()));
    }
    if let Some(c) = &cf.colo {
        out.push((GEO_COLO, c.clone()));
    }
    out.push((INTEL_STATUS, input.status.as_str().to_string()));
    out.push((INTEL, structured(input, &reasons)));
    out
}

/// Up to 5 decimals (about 1 m), trailing zeros trimmed: `52.52437`, `-0.1278`.
fn format_degrees(x: f64) -> String {
    let s = format!("{x:.5}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// `score=82, level=high, reasons=("tor_exit" "path_scan"), threat=70, reputation=35`
/// (RFC 8941: integers, a token, an inner list of strings; reason codes are
/// lower-case ASCII so need no escaping), then, when a rule matched,
/// `rule="login", action=block`, `limited` and `dry_run` (boolean members: true),
/// `cleared=<unix seconds>` for a request holding a valid clearance, and
/// `fp="<16 hex>"`, the client's fingerprint, when its TLS facts are known.
fn structured(input: &HeaderInput<'_>, reasons: &[&str]) -> String {
    let list: Vec<String> = reasons.iter().map(|r| format!("\"{r}\"")).collect();
    let mut out = format!(
        "score={}, level={}, reasons=({}), threat={}, reputation={}, status={}",
        input.verdict.score,
        input.level.as_str(),
        list.join(" "),
        input.threat,
        input.reputation,
        input.status.as_str(),
    );
    if let Some(r) = &input.rule {
        // Ids are checked when the rules load; anything else is left out
        // rather than written unescaped.
        if r.id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            out.push_str(&format!(", rule=\"{}\", action={}", r.id, r.action));
            if r.limited {
                out.push_str(", limited");
            }
            if r.dry_run {
                out.push_str(", dry_run");
            }
        }
    }
    if let Some(t) = input.cleared {
        out.push_str(&format!(", cleared={t}"));
    }
    // 16 lower-case hex characters: an RFC 8941 string with nothing to escape;
    // anything else is left out rather than written unescaped.
    if let Some(fp) = input.fingerprint.filter(|f| f.len() == 16 && f.chars().all(|c| c.is_ascii_hexdigit())) {
        out.push_str(&format!(", fp=\"{fp}\""));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::intel::score::{score, Weights};
    use crate::intel::signals::{Reason, Signal};
    use serde_json::json;

    fn get<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn reserved_names() {
        for n in [
            "X-Risk-Score",
            "x-risk-level",
            "X-GEO-COUNTRY",
            "x-geo-anything",
            "X-Intel",
            "x-intel-status",
            "X-Intel-Signature",
            "x-threat-score",
            "X-Reputation-Score",
            // Underscore spellings: CGI/WSGI/Rack origins read them as ours.
            "X_Risk_Score",
            "x_geo_city",
            "X_Intel_Signature",
            "X_Intel",
            "X-Risk_Level",
            "X_THREAT_SCORE",
            "x_reputation_score",
            // Other punctuation some frameworks also fold, and our newest header.
            "X-Risk.Score",
            "X.Intel.Client.IP",
            "x-intel-client-ip",
        ] {
            assert!(is_reserved(n), "{n}");
        }
        for n in [
            "X_Risky",
            "x_intelligence",
            "X_Geography",
            "X_Forwarded_For",
            "x_threat",
            "X-Risky",
            "x-intelligence",
            "X-Geography",
            "Host",
            "User-Agent",
            "x-threat",
            "CF-Connecting-IP",
        ] {
            assert!(!is_reserved(n), "{n}");
        }
    }

    #[test]
    fn full_render() {
        let sig = |r| Signal { reason: r, points: None };
        let v = score(&[sig(Reason::TorExit), sig(Reason::PathScan)], &Weights::default());
        let cf = CfFacts::from_json(&json!({
            "country": "DE", "city": "Zürich", "region": "Land\r\nBerlin", "latitude": "52.5200",
            "longitude": "-0.12780", "asn": 3320, "colo": "FRA"
        }));
        let h = render(&HeaderInput {
            verdict: &v,
            level: v.level,
            threat: 70,
            reputation: 35,
            cf: &cf,
            status: IntelStatus::Ok,
            rule: None,
            cleared: None,
            fingerprint: None,
        });
        let names: Vec<_> = h.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                RISK_SCORE,
                RISK_LEVEL,
                RISK_REASONS,
                THREAT_SCORE,
                REPUTATION_SCORE,
                GEO_COUNTRY,
                GEO_CITY,
                GEO_REGION,
                GEO_LAT,
                GEO_LON,
                GEO_ASN,
                GEO_COLO,
                INTEL_STATUS,
                INTEL
            ]
        );
        assert_eq!(get(&h, RISK_SCORE), Some("85"));
        assert_eq!(get(&h, RISK_LEVEL), Some("high"));
        assert_eq!(get(&h, RISK_REASONS), Some("tor_exit,path_scan"));
        assert_eq!(get(&h, GEO_CITY), Some("Z%C3%BCrich"));
        assert_eq!(get(&h, GEO_REGION), Some("Land%0D%0ABerlin"));
        assert_eq!(get(&h, GEO_LAT), Some("52.52"));
        assert_eq!(get(&h, GEO_LON), Some("-0.1278"));
        assert_eq!(
            get(&h, INTEL),
            Some(r#"score=85, level=high, reasons=("tor_exit" "path_scan"), threat=70, reputation=35, status=ok"#)
        );
        for (_, value) in &h {
            assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{value:?}");
        }
    }

    #[test]
    fn a_matched_rule_adds_its_members() {
        let v = score(&[], &Weights::default());
        let cf = CfFacts::default();
        let intel_cleared = |rule, cleared| {
            let h = render(&HeaderInput {
                verdict: &v,
                level: v.level,
                threat: 0,
                reputation: 50,
                cf: &cf,
                status: IntelStatus::Ok,
                rule,
                cleared,
                fingerprint: None,
            });
            get(&h, INTEL).unwrap().to_string()
        };
        let intel = |rule| intel_cleared(rule, None);
        let login = RuleHeader { id: "login", action: "block", dry_run: true, limited: false };
        assert!(
            intel(Some(login)).ends_with(r#", status=ok, rule="login", action=block, dry_run"#),
            "{}",
            intel(Some(login))
        );
        let monitor = RuleHeader { id: "a.b-c_d", action: "rate_limit", dry_run: false, limited: false };
        assert!(intel(Some(monitor)).ends_with(r#", rule="a.b-c_d", action=rate_limit"#));
        let over = RuleHeader { id: "login", action: "rate_limit", dry_run: true, limited: true };
        assert!(intel(Some(over)).ends_with(r#", rule="login", action=rate_limit, limited, dry_run"#));
        let bad = RuleHeader { id: "a\"b", action: "block", dry_run: false, limited: false };
        assert!(!intel(Some(bad)).contains("rule="), "an id that would need escaping is left out");
        assert!(!intel(None).contains("rule="));
        assert!(intel_cleared(Some(login), Some(1_764_000_000)).ends_with(r#", dry_run, cleared=1764000000"#));
        assert!(!intel(None).contains("cleared"));
    }

    #[test]
    fn the_fingerprint_is_a_string_member_and_only_sixteen_hex_pass() {
        let v = score(&[], &Weights::default());
        let cf = CfFacts::default();
        let intel = |fingerprint| {
            let h = render(&HeaderInput {
                verdict: &v,
                level: v.level,
                threat: 0,
                reputation: 50,
                cf: &cf,
                status: IntelStatus::Ok,
                rule: None,
                cleared: Some(7),
                fingerprint,
            });
            get(&h, INTEL).unwrap().to_string()
        };
        assert!(intel(Some("0123456789abcdef")).ends_with(r#", cleared=7, fp="0123456789abcdef""#));
        assert!(!intel(None).contains("fp="));
        assert!(!intel(Some("0123456789abcde\"")).contains("fp="));
        assert!(!intel(Some("short")).contains("fp="));
    }

    #[test]
    fn unknown_geo_is_omitted() {
        let v = score(&[], &Weights::default());
        let cf = CfFacts::default();
        let h = render(&HeaderInput {
            verdict: &v,
            level: Level::Unknown,
            threat: 0,
            reputation: 50,
            cf: &cf,
            status: IntelStatus::Degraded,
            rule: None,
            cleared: None,
            fingerprint: None,
        });
        assert!(h.iter().all(|(n, _)| !n.starts_with("X-Geo-")));
        assert_eq!(get(&h, RISK_REASONS), Some(""));
        assert_eq!(get(&h, RISK_LEVEL), Some("unknown"));
        assert_eq!(
            get(&h, INTEL),
            Some("score=0, level=unknown, reasons=(), threat=0, reputation=50, status=degraded")
        );
    }

    #[test]
    fn degrees_format() {
        for (x, s) in [(52.52437, "52.52437"), (-0.1278, "-0.1278"), (10.0, "10"), (-0.000001, "0"), (0.0, "0")] {
            assert_eq!(format_degrees(x), s);
        }
    }
}

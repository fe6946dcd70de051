//! Client fingerprints on every plan (issue 19, part 3): an id for "the
//! software that made this connection", from what `request.cf` offers on all
//! plans (the TLS ClientHello's cipher and extension hashes, its length, the
//! TLS version, the HTTP protocol), Bot Management's JA4 where the zone has it,
//! and the shape of the request's header set (names, not values).
//!
//! What it is not: an identity. A popular browser's fingerprint is shared by
//! millions of honest visitors, so the id alone never adds points; it is told
//! to the origin (`X-Intel: fp="…"`) and kept in the profile, where it can be
//! joined with everything else known about the client.
//!
//! What the analytics learn (`analytics::FpAgg`, per fingerprint and slide:
//! requests, risky requests, browser and HTTP-library User-Agents, the
//! subjects and ASNs using it) shard 0's hub judges over the window each tick
//! (`judge`) and publishes to KV (`keys::FINGERPRINTS_KEY`); the request path
//! reads that (kept one slide, at most a minute, per isolate) and adds
//! - `fingerprint_swarm`: the fingerprint was used by at least
//!   `SWARM_SUBJECTS` subjects in the window, and at least `SWARM_RISKY_SHARE`
//!   of its requests were risky (medium or high, not counting the
//!   fingerprint's own reasons: the reason must not feed itself). A popular
//!   browser's fingerprint carries mostly honest traffic, so it is not one.
//! - `ua_fingerprint_mismatch`: the request's User-Agent claims a browser, and
//!   the fingerprint was seen at least `LIBRARY_REQUESTS` times in the window
//!   with HTTP-library User-Agents (curl, python-requests, Go, ...), at least
//!   `LIBRARY_PER_BROWSER` times as often as with a browser's. Not "never":
//!   the browser-claiming requests sent before the flag reached an isolate
//!   would clear it; a real browser does not share a TLS stack and header set
//!   with curl. Requests flagged with this reason do not count as a
//!   browser's, or the flag would clear itself; they are counted apart, and
//!   when they come `LIBRARY_PER_BROWSER` times as often as the library's
//!   requests the flag is lifted: an honest crowd on a fingerprint someone
//!   poisoned with a library User-Agent outweighs the poisoner again, as it
//!   did before the flag.
//!
//! Header order is not part of it: the Workers runtime hands a Worker the
//! headers sorted by name, so the order the client sent them in is gone
//! before our code runs. Only which names are present counts.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::intel::analytics::{FpAgg, UA_BROWSER, UA_FLAGGED_BROWSER, UA_LIBRARY};
use crate::intel::facts::CfFacts;
use crate::intel::score::Verdict;
use crate::intel::signals::{automation_marker, is_automation_ua, looks_like_browser, Reason};

/// `fingerprint_swarm` needs at least this many subjects on the fingerprint
/// in the window (at most `analytics::MAX_FP_SUBJECTS`, the subjects kept per
/// fingerprint and slide).
pub const SWARM_SUBJECTS: usize = 20;
/// ... and at least this share of its requests risky.
pub const SWARM_RISKY_SHARE: f64 = 0.5;
/// `ua_fingerprint_mismatch` needs the fingerprint seen this many times in
/// the window from an HTTP library ...
pub const LIBRARY_REQUESTS: u64 = 20;
/// ... at least this many times as often as a browser's User-Agent.
pub const LIBRARY_PER_BROWSER: u64 = 5;
/// A request this risky (medium or high) counts as risky for a swarm.
pub const RISKY_AT: u8 = 40;
/// At most this many fingerprints are published per reason (the most
/// used first): the KV value and each isolate's copy stay small.
pub const MAX_PUBLISHED: usize = 1_000;

/// What a User-Agent says it is, for the fingerprint's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UaKind {
    #[default]
    Other,
    /// A graphical browser's (`Mozilla/5.0 ...`), not an HTTP library's.
    Browser,
    /// An HTTP library's or a command-line tool's (`signals::is_automation_ua`).
    Library,
}

impl UaKind {
    pub fn of(ua: Option<&str>) -> UaKind {
        match ua {
            Some(u) if is_automation_ua(u) => UaKind::Library,
            Some(u) if looks_like_browser(u) => UaKind::Browser,
            _ => UaKind::Other,
        }
    }

    /// Its code in an analytics sample.
    pub fn code(self) -> u8 {
        match self {
            UaKind::Other => 0,
            UaKind::Browser => UA_BROWSER,
            UaKind::Library => UA_LIBRARY,
        }
    }
}

/// The fingerprints the request path adds a reason for (published by the
/// hub, read by every isolate).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sets {
    /// `fingerprint_swarm`.
    #[serde(default)]
    pub swarm: BTreeSet<String>,
    /// `ua_fingerprint_mismatch` (with a browser User-Agent).
    #[serde(rename = "libraryOnly", default)]
    pub library_only: BTreeSet<String>,
}

impl Sets {
    /// Keeps only well-formed ids (a KV value written by hand or damaged
    /// cannot put anything else into a header or a reason).
    pub fn checked(mut self) -> Sets {
        let ok = |f: &String| f.len() == 16 && f.bytes().all(|b| b.is_ascii_hexdigit());
        self.swarm.retain(ok);
        self.library_only.retain(ok);
        self
    }
}

/// The reasons the request path adds for `fp` (none for a verified crawler
/// or signed agent, who are known by better means).
pub fn reasons(fp: &str, sets: &Sets, user_agent: Option<&str>, verified: bool) -> Vec<Reason> {
    let mut out = Vec::new();
    if verified {
        return out;
    }
    if sets.swarm.contains(fp) {
        out.push(Reason::FingerprintSwarm);
    }
    if sets.library_only.contains(fp) && UaKind::of(user_agent) == UaKind::Browser {
        out.push(Reason::UaFingerprintMismatch);
    }
    out
}

/// The family of a User-Agent, for the statistics of its fingerprint: an
/// HTTP library's name (`curl`, `python-requests`, ...), a browser's
/// (`challenge::ua_family`; `browser` when it is none of those), `other` or
/// `none`. A fixed vocabulary, so a client cannot make up new labels.
pub fn ua_family(user_agent: Option<&str>) -> &'static str {
    let Some(ua) = user_agent.filter(|u| !u.is_empty()) else { return "none" };
    match UaKind::of(Some(ua)) {
        UaKind::Library => automation_marker(ua).map_or("library", |m| m.trim_end_matches(['/', ' ', '(', ':'])),
        UaKind::Browser => match crate::intel::challenge::ua_family(ua) {
            "other" => "browser",
            f => f,
        },
        UaKind::Other => "other",
    }
}

/// What the analytics sample says for the fingerprint's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleFacts {
    /// The User-Agent's kind (`UaKind::code`); a browser's flagged as a
    /// mismatch is `UA_FLAGGED_BROWSER`, so the flag does not clear itself.
    pub ua: u8,
    /// The User-Agent's family (`ua_family`), as it claims.
    pub family: &'static str,
    /// Risky without the fingerprint's own reasons (so a swarm's flag does
    /// not feed itself).
    pub risky: bool,
    /// The request's reasons (`Reason::bit`), its own included.
    pub reasons: u32,
}

pub fn sample_facts(verdict: &Verdict, user_agent: Option<&str>) -> SampleFacts {
    let own = |r: Reason| matches!(r, Reason::FingerprintSwarm | Reason::UaFingerprintMismatch);
    let mismatch = verdict.reasons().any(|r| r == Reason::UaFingerprintMismatch);
    let without: u32 = verdict.contributions.iter().filter(|c| !own(c.reason)).map(|c| u32::from(c.points)).sum();
    SampleFacts {
        ua: if mismatch { UA_FLAGGED_BROWSER } else { UaKind::of(user_agent).code() },
        family: ua_family(user_agent),
        risky: without.min(100) >= u32::from(RISKY_AT),
        reasons: verdict.reasons().fold(0, |bits, r| bits | r.bit()),
    }
}

/// The window's per-fingerprint statistics: the slides' `fingerprints` summed.
pub fn window<'a>(slides: impl Iterator<Item = &'a BTreeMap<String, FpAgg>>) -> BTreeMap<&'a str, FpAgg> {
    let mut window: BTreeMap<&str, FpAgg> = BTreeMap::new();
    for s in slides {
        for (k, v) in s {
            window.entry(k.as_str()).or_default().add(v);
        }
    }
    window
}

/// Does the fingerprint's window make it a swarm's?
fn is_swarm(v: &FpAgg) -> bool {
    v.subjects.members.len() >= SWARM_SUBJECTS
        && v.requests > 0
        && v.risky as f64 >= SWARM_RISKY_SHARE * v.requests as f64
}

/// ... one seen from HTTP libraries only?
fn is_library_only(v: &FpAgg) -> bool {
    v.library >= LIBRARY_REQUESTS
        && v.library >= LIBRARY_PER_BROWSER.saturating_mul(v.browser)
        && v.flagged < LIBRARY_PER_BROWSER.saturating_mul(v.library)
}

/// Judges the window's per-fingerprint statistics (the slides' `fingerprints`).
pub fn judge<'a>(slides: impl Iterator<Item = &'a BTreeMap<String, FpAgg>>) -> Sets {
    let window = window(slides);
    let mut swarm: Vec<(&str, u64)> = Vec::new();
    let mut library: Vec<(&str, u64)> = Vec::new();
    for (k, v) in &window {
        if is_swarm(v) {
            swarm.push((k, v.requests));
        }
        if is_library_only(v) {
            library.push((k, v.requests));
        }
    }
    let top = |mut v: Vec<(&str, u64)>| -> BTreeSet<String> {
        v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        v.into_iter().take(MAX_PUBLISHED).map(|(k, _)| k.to_string()).collect()
    };
    Sets { swarm: top(swarm), library_only: top(library) }.checked()
}

/// One fingerprint as the analytics API shows it (`GET /api/analytics/fingerprints`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FingerprintView {
    pub id: String,
    pub requests: u64,
    /// Of its requests, the share risky without the fingerprint's own reasons.
    pub risky_share: f64,
    /// Requests with a browser's User-Agent (not flagged) and with an HTTP library's.
    pub browser_requests: u64,
    pub library_requests: u64,
    /// Requests with a browser's User-Agent flagged `ua_fingerprint_mismatch`.
    pub flagged_requests: u64,
    /// Distinct subjects seen (`analytics::MAX_FP_SUBJECTS` kept per slide) ...
    pub subjects: usize,
    /// ... and whether more were seen than kept.
    pub more_subjects: bool,
    pub asns: Vec<u32>,
    /// Requests per User-Agent family (`ua_family`) and per reason code.
    pub user_agent_families: BTreeMap<String, u64>,
    pub reasons: BTreeMap<String, u64>,
    /// What the judgement says: the reasons requests with it get.
    pub swarm: bool,
    pub library_only: bool,
}

/// The window's `limit` most used fingerprints, the flagged ones first,
/// and how many it holds.
pub fn views<'a>(
    slides: impl Iterator<Item = &'a BTreeMap<String, FpAgg>>,
    limit: usize,
) -> (usize, Vec<FingerprintView>) {
    let window = window(slides);
    let distinct = window.len();
    let mut out: Vec<FingerprintView> = window
        .into_iter()
        .map(|(id, v)| FingerprintView {
            id: id.to_string(),
            requests: v.requests,
            risky_share: if v.requests == 0 { 0.0 } else { v.risky as f64 / v.requests as f64 },
            browser_requests: v.browser,
            library_requests: v.library,
            flagged_requests: v.flagged,
            subjects: v.subjects.members.len(),
            more_subjects: v.subjects.overflow > 0,
            swarm: is_swarm(&v),
            library_only: is_library_only(&v),
            asns: v.asns,
            user_agent_families: v.families,
            reasons: v.reasons,
        })
        .collect();
    out.sort_by(|a, b| {
        (b.swarm || b.library_only, b.requests).cmp(&(a.swarm || a.library_only, a.requests)).then(a.id.cmp(&b.id))
    });
    out.truncate(limit);
    (distinct, out)
}

/// Headers that say nothing about the client's software: those Cloudflare or
/// a proxy adds, those that come and go with the request's state (cookies,
/// credentials, a body), and signatures. Lower case; `cf-` and `x-forwarded-`
/// prefixes are left out as well.
const NOT_SHAPE: &[&str] = &[
    "authorization",
    "cdn-loop",
    "content-length",
    "content-type",
    "cookie",
    "forwarded",
    "if-modified-since",
    "if-none-match",
    "origin",
    "priority",
    "proxy-authorization",
    "range",
    "referer",
    "signature",
    "signature-agent",
    "signature-input",
    "true-client-ip",
    "via",
    "x-real-ip",
];

/// At most this many header names are read; a request with more is still
/// fingerprinted, by its first names in the runtime's (sorted) order.
pub const MAX_NAMES: usize = 64;

/// Whether a header name is part of the request's shape.
pub fn is_shape(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !(n.starts_with("cf-")
        || n.starts_with("x-forwarded-")
        || n.starts_with("x-intel")
        || n.starts_with("x-geo-")
        || n.starts_with("x-risk-")
        || n.starts_with("x-threat-")
        || n.starts_with("x-reputation-")
        || NOT_SHAPE.contains(&n.as_str()))
}

/// The fingerprint id: 16 lower-case hex characters (64 bits of SHA-256 over
/// the parts below), or `None` when the connection told us nothing about its
/// TLS stack (no cipher or extension hash, no ClientHello length, no JA4:
/// plain HTTP, or a runtime without these fields). A header set alone is too
/// common to name a client.
pub fn id(cf: &CfFacts, header_names: &[String]) -> Option<String> {
    let tls_known = cf.tls_ciphers_sha1.is_some()
        || cf.tls_extensions_sha1.is_some()
        || cf.tls_hello_length.is_some()
        || cf.ja4.is_some();
    if !tls_known {
        return None;
    }
    let mut names: Vec<String> =
        header_names.iter().take(MAX_NAMES).filter(|n| is_shape(n)).map(|n| n.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let part = |v: &Option<String>| v.clone().unwrap_or_default();
    // A version tag first, so a change of recipe changes every id rather than
    // silently mixing two recipes in the analytics.
    let text = format!(
        "fp1|{}|{}|{}|{}|{}|{}|{}",
        part(&cf.tls_ciphers_sha1),
        part(&cf.tls_extensions_sha1),
        cf.tls_hello_length.map(|n| n.to_string()).unwrap_or_default(),
        part(&cf.tls_version),
        part(&cf.http_protocol),
        part(&cf.ja4),
        names.join(","),
    );
    let digest = Sha256::digest(text.as_bytes());
    Some(hex::encode(digest.get(..8)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn chrome() -> CfFacts {
        CfFacts::from_json(&json!({
            "tlsClientCiphersSha1": "kXrN3VEKDdzz2cPKTQaKzpxVTxQ=",
            "tlsClientExtensionsSha1": "1eY97BUYYO8vDaTfHQywB1pcNdM=",
            "tlsClientHelloLength": "508", "tlsVersion": "TLSv1.3", "httpProtocol": "HTTP/2"
        }))
    }

    const BROWSER: &[&str] = &["accept", "accept-encoding", "accept-language", "sec-ch-ua", "user-agent"];

    #[test]
    fn sixteen_hex_and_stable() {
        let a = id(&chrome(), &names(BROWSER)).unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(id(&chrome(), &names(BROWSER)).unwrap(), a);
    }

    #[test]
    fn no_tls_facts_no_fingerprint() {
        let cf = CfFacts::from_json(&json!({"httpProtocol": "HTTP/1.1", "tlsVersion": "TLSv1.3"}));
        assert_eq!(id(&cf, &names(BROWSER)), None);
        assert_eq!(id(&CfFacts::default(), &names(BROWSER)), None);
        // JA4 alone is enough.
        let ja4 = CfFacts::from_json(&json!({"botManagement": {"ja4": "t13d1516h2_8daaf6152771_02713d6af862"}}));
        assert!(id(&ja4, &[]).is_some());
    }

    #[test]
    fn each_tls_part_counts() {
        let base = id(&chrome(), &names(BROWSER));
        let mut cf = chrome();
        cf.tls_ciphers_sha1 = Some("other".into());
        assert_ne!(id(&cf, &names(BROWSER)), base);
        let mut cf = chrome();
        cf.tls_hello_length = Some(517);
        assert_ne!(id(&cf, &names(BROWSER)), base);
        let mut cf = chrome();
        cf.http_protocol = Some("HTTP/1.1".into());
        assert_ne!(id(&cf, &names(BROWSER)), base);
        let mut cf = chrome();
        cf.ja4 = Some("t13d1516h2_8daaf6152771_02713d6af862".into());
        assert_ne!(id(&cf, &names(BROWSER)), base);
    }

    #[test]
    fn header_names_count_but_not_their_case_order_or_request_state() {
        let base = id(&chrome(), &names(BROWSER));
        // A library sends fewer names: another fingerprint.
        assert_ne!(id(&chrome(), &names(&["accept", "user-agent"])), base);
        // Case and order do not matter (the runtime sorts them anyway).
        let shuffled = names(&["User-Agent", "sec-ch-ua", "Accept-Language", "accept-encoding", "ACCEPT"]);
        assert_eq!(id(&chrome(), &shuffled), base);
        // Cookies, a body, a referrer, Cloudflare's and our own headers do not.
        let mut more = names(BROWSER);
        more.extend(names(&[
            "cookie",
            "content-type",
            "content-length",
            "referer",
            "cf-connecting-ip",
            "cf-ipcountry",
            "x-forwarded-for",
            "x-intel",
            "x-risk-score",
            "signature-input",
        ]));
        assert_eq!(id(&chrome(), &more), base);
    }

    fn agg(requests: u64, risky: u64, browser: u64, library: u64, subjects: usize) -> FpAgg {
        let mut a = FpAgg { requests, risky, browser, library, ..FpAgg::default() };
        a.subjects.members = (0..subjects).map(|i| format!("s{i}")).collect();
        a
    }

    fn slide(entries: &[(&str, FpAgg)]) -> BTreeMap<String, FpAgg> {
        entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    const A: &str = "00000000000000aa";
    const B: &str = "00000000000000bb";

    #[test]
    fn a_swarm_needs_many_subjects_and_mostly_risky_traffic_over_the_window() {
        // 12 + 12 subjects over two slides (distinct names: the sets union).
        let mut second = agg(30, 20, 0, 0, 0);
        second.subjects.members = (100..112).map(|i| format!("s{i}")).collect();
        let slides = [slide(&[(A, agg(30, 20, 0, 0, 12))]), slide(&[(A, second)])];
        assert!(judge(slides.iter()).swarm.contains(A));
        // One slide alone has too few subjects.
        assert!(!judge(slides.iter().take(1)).swarm.contains(A));
        // A popular browser: many subjects, mostly honest traffic.
        let browser = [slide(&[(B, agg(10_000, 300, 10_000, 0, 64))])];
        assert!(judge(browser.iter()).swarm.is_empty());
        // Exactly half risky is a swarm; just under is not.
        assert!(judge([slide(&[(A, agg(100, 50, 0, 0, 20))])].iter()).swarm.contains(A));
        assert!(judge([slide(&[(A, agg(100, 49, 0, 0, 20))])].iter()).swarm.is_empty());
    }

    #[test]
    fn library_only_needs_enough_library_requests_and_few_browsers() {
        assert!(judge([slide(&[(A, agg(20, 0, 0, 20, 1))])].iter()).library_only.contains(A));
        assert!(judge([slide(&[(A, agg(19, 0, 0, 19, 1))])].iter()).library_only.is_empty());
        assert!(judge([slide(&[(A, agg(48, 0, 8, 40, 1))])].iter()).library_only.contains(A));
        assert!(judge([slide(&[(A, agg(49, 0, 9, 40, 1))])].iter()).library_only.is_empty());
        // Flagged browser requests do not clear the flag ...
        let flagged = |n| FpAgg { flagged: n, ..agg(40, 0, 0, 40, 1) };
        assert!(judge([slide(&[(A, flagged(199))])].iter()).library_only.contains(A));
        // ... until an honest crowd outweighs the library's requests again.
        assert!(judge([slide(&[(A, flagged(200))])].iter()).library_only.is_empty());
    }

    #[test]
    fn the_view_sums_the_window_and_puts_the_flagged_first() {
        let mut curl = agg(25, 0, 0, 25, 2);
        curl.families.insert("curl".into(), 20);
        curl.reasons.insert("automation_ua".into(), 25);
        let mut more = agg(5, 0, 0, 5, 1);
        more.families.insert("curl".into(), 5);
        more.subjects.overflow = 3;
        let browser = agg(400, 4, 400, 0, 30);
        let slides = [slide(&[(A, curl), (B, browser.clone())]), slide(&[(A, more)])];
        let (distinct, v) = views(slides.iter(), 10);
        assert_eq!(distinct, 2);
        assert_eq!(v.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), [A, B], "flagged first, then by requests");
        let a = &v[0];
        assert!(a.library_only && !a.swarm && a.more_subjects);
        assert_eq!((a.requests, a.library_requests, a.browser_requests), (30, 30, 0));
        assert_eq!(a.user_agent_families.get("curl"), Some(&25));
        assert_eq!(a.reasons.get("automation_ua"), Some(&25));
        assert_eq!((v[1].risky_share, v[1].subjects, v[1].library_only), (0.01, 30, false));
        assert_eq!(views(slides.iter(), 1).1.len(), 1);
        let json = serde_json::to_value(&v[0]).unwrap();
        for k in ["riskyShare", "userAgentFamilies", "libraryOnly", "moreSubjects", "browserRequests"] {
            assert!(json.get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn only_well_formed_ids_are_kept() {
        let s = judge([slide(&[("not-hex-at-all!!", agg(20, 20, 0, 20, 30))])].iter());
        assert_eq!(s, Sets::default());
        let read: Sets = serde_json::from_str(r#"{"swarm":["x\"y", "00000000000000aa"],"libraryOnly":[]}"#).unwrap();
        assert_eq!(read.checked().swarm.into_iter().collect::<Vec<_>>(), [A]);
    }

    #[test]
    fn reasons_for_a_request() {
        let sets = Sets { swarm: [A.to_string()].into(), library_only: [B.to_string()].into() };
        let chrome = Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36");
        assert_eq!(reasons(A, &sets, Some("curl/8.5.0"), false), [Reason::FingerprintSwarm]);
        assert_eq!(reasons(B, &sets, chrome, false), [Reason::UaFingerprintMismatch]);
        // The library itself, saying what it is: no mismatch.
        assert!(reasons(B, &sets, Some("curl/8.5.0"), false).is_empty());
        assert!(reasons(B, &sets, None, false).is_empty());
        // Verified crawlers and signed agents are known by better means.
        assert!(reasons(A, &sets, chrome, true).is_empty());
        assert!(reasons("00000000000000cc", &sets, chrome, false).is_empty());
    }

    #[test]
    fn the_sample_leaves_out_the_fingerprints_own_reasons() {
        use crate::intel::score::{score, Weights};
        use crate::intel::signals::Signal;
        let w = Weights::default();
        let sig = |r| Signal { reason: r, points: None };
        let chrome =
            Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36");
        // Flagged by both reasons alone (55 points): not risky, and the
        // browser flagged as a mismatch is not counted as a browser.
        let v = score(&[sig(Reason::FingerprintSwarm), sig(Reason::UaFingerprintMismatch)], &w);
        assert!(v.score >= RISKY_AT);
        let f = sample_facts(&v, chrome);
        assert_eq!((f.ua, f.risky, f.family), (UA_FLAGGED_BROWSER, false, "chrome"));
        // ... but its reasons are the request's, its own included.
        let codes: Vec<&str> = Reason::of_bits(f.reasons).map(Reason::code).collect();
        assert_eq!(codes, ["fingerprint_swarm", "ua_fingerprint_mismatch"]);
        // Tor (risky on its own) from a library.
        let v = score(&[sig(Reason::TorExit)], &w);
        let f = sample_facts(&v, Some("python-requests/2.32"));
        assert_eq!((f.ua, f.risky, f.family), (UaKind::Library.code(), true, "python-requests"));
        assert_eq!(Reason::of_bits(f.reasons).collect::<Vec<_>>(), [Reason::TorExit]);
        let f = sample_facts(&score(&[], &w), chrome);
        assert_eq!((f.ua, f.risky, f.reasons), (UaKind::Browser.code(), false, 0));
    }

    #[test]
    fn user_agent_families_come_from_a_fixed_vocabulary() {
        let family = |ua: &str| ua_family(Some(ua));
        assert_eq!(family("curl/8.5.0"), "curl");
        assert_eq!(family("Python-Requests/2.32.3"), "python-requests");
        assert_eq!(family("Go-http-client/2.0"), "go-http-client");
        assert_eq!(family("got (https://github.com/sindresorhus/got)"), "got");
        assert_eq!(family("libwww-perl/6.72"), "libwww-perl");
        assert_eq!(
            family("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"),
            "firefox"
        );
        assert_eq!(family("Mozilla/5.0 (compatible; SomethingNew/1.0)"), "browser");
        assert_eq!(family("MyApp/1.0"), "other");
        assert_eq!(ua_family(Some("")), "none");
        assert_eq!(ua_family(None), "none");
        // A made-up User-Agent cannot make a new label.
        assert_eq!(family("curl/ ' \"<script>"), "curl");
    }

    #[test]
    fn reason_bits_round_trip_and_ignore_unknown_bits() {
        for r in Reason::ALL {
            assert_eq!(Reason::of_bits(r.bit()).collect::<Vec<_>>(), [r]);
        }
        let all = Reason::ALL.iter().fold(0u32, |b, r| b | r.bit());
        assert_eq!(Reason::of_bits(all | 1 << 31).count(), Reason::ALL.len());
    }

    #[test]
    fn names_past_the_cap_are_not_read() {
        let mut many: Vec<String> = (0..MAX_NAMES).map(|i| format!("x-h{i:03}")).collect();
        let base = id(&chrome(), &many);
        many.push("x-late".into());
        assert_eq!(id(&chrome(), &many), base);
    }
}

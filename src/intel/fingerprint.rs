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
//! Header order is not part of it: the Workers runtime hands a Worker the
//! headers sorted by name, so the order the client sent them in is gone
//! before our code runs. Only which names are present counts.

use sha2::{Digest, Sha256};

use crate::intel::facts::CfFacts;

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
#[allow(clippy::unwrap_used)]
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

    #[test]
    fn names_past_the_cap_are_not_read() {
        let mut many: Vec<String> = (0..MAX_NAMES).map(|i| format!("x-h{i:03}")).collect();
        let base = id(&chrome(), &many);
        many.push("x-late".into());
        assert_eq!(id(&chrome(), &many), base);
    }
}

//! Tokens, visitor ids and signed cookies. Comparisons of secrets are
//! constant-time; nothing here logs or returns a secret.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The name of the cookie the worker sets with `SET_VISITOR_COOKIE=true`.
pub const VISITOR_COOKIE_NAME: &str = "ei_vid";

/// Whether `presented` equals `expected`, in time independent of where they
/// differ and of their lengths (both are hashed to 32 bytes first).
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// A visitor key from a cookie value: never the value itself (it may be a
/// session secret), only a hash of it.
pub fn visitor_key(cookie_value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"edgeintel-visitor:");
    h.update(cookie_value.as_bytes());
    hex::encode(h.finalize().get(..16).unwrap_or_default())
}

fn mac(key: &str, msg: &str) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(key.as_bytes()).ok()?;
    m.update(msg.as_bytes());
    Some(m)
}

/// `id.signature` for the visitor cookie.
pub fn sign_visitor_id(key: &str, id: &str) -> Option<String> {
    let tag = mac(key, id)?.finalize().into_bytes();
    Some(format!("{id}.{}", hex::encode(tag)))
}

/// The id of a correctly signed visitor cookie value.
pub fn verify_visitor_cookie<'a>(key: &str, value: &'a str) -> Option<&'a str> {
    let (id, sig) = value.split_once('.')?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let sig = hex::decode(sig).ok()?;
    mac(key, id)?.verify_slice(&sig).ok()?;
    Some(id)
}

/// The longest `Cookie` header read. Cloudflare accepts request headers up to
/// 32 KiB in total, so no real request carries a longer one; browsers with
/// consent and analytics cookies routinely send several KB, and a shorter cap
/// would make them lose their clearance and visitor cookies (they would loop
/// through challenges and get a new visitor on every request).
pub const MAX_COOKIE_HEADER_BYTES: usize = 32 * 1024;

/// The longest value accepted for one of our cookies (`ei_clear`, `ei_vid`,
/// the configured visitor cookie). Browsers store at most 4,096 bytes per
/// cookie (RFC 6265 section 6.1 is the minimum they all implement as the cap),
/// so a longer value was not set by a browser; ours are under 200 bytes.
pub const MAX_OWN_COOKIE_VALUE_BYTES: usize = 4096;

/// The value of cookie `name` in a `Cookie` header, or `None` when the header
/// is over `MAX_COOKIE_HEADER_BYTES` or the value over
/// `MAX_OWN_COOKIE_VALUE_BYTES`. Other cookies' values are not limited: only
/// the one asked for (always one of ours) is bounded.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    if header.len() > MAX_COOKIE_HEADER_BYTES {
        return None;
    }
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| v.len() <= MAX_OWN_COOKIE_VALUE_BYTES)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(token_matches("s3cret-token", "s3cret-token"));
        assert!(!token_matches("s3cret-tokeN", "s3cret-token"));
        assert!(!token_matches("", "s3cret-token"));
        assert!(!token_matches("s3cret-token-longer", "s3cret-token"));
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer  "), None);
    }

    #[test]
    fn cookies() {
        let h = "a=1; session_id=xyz; ei_vid=abc.def";
        assert_eq!(cookie(h, "session_id"), Some("xyz"));
        assert_eq!(cookie(h, "ei_vid"), Some("abc.def"));
        assert_eq!(cookie(h, "missing"), None);
        assert_eq!(cookie("garbage", "a"), None);
        let k1 = visitor_key("xyz");
        assert_eq!(k1.len(), 32);
        assert_eq!(k1, visitor_key("xyz"));
        assert_ne!(k1, visitor_key("xyz2"));
        assert!(!k1.contains("xyz"));
    }

    #[test]
    fn long_cookie_headers() {
        // A browser with consent and analytics cookies: ~6 KB, ours last.
        let mut h: String = (0..60).map(|i| format!("_ga_{i}=GS1.1.{}; ", "7".repeat(90))).collect();
        h.push_str("ei_clear=1780000000000.abcdef");
        assert!(h.len() > 6000, "{}", h.len());
        assert_eq!(cookie(&h, "ei_clear"), Some("1780000000000.abcdef"));
        // Up to the platform's header size.
        let mut big = "x=".to_string() + &"y".repeat(MAX_COOKIE_HEADER_BYTES - 40);
        big.push_str("; ei_vid=00ff.11");
        assert!(big.len() <= MAX_COOKIE_HEADER_BYTES);
        assert_eq!(cookie(&big, "ei_vid"), Some("00ff.11"));
        // Past it: no real request carries such a header.
        let over = "x=".to_string() + &"y".repeat(MAX_COOKIE_HEADER_BYTES) + "; ei_vid=00ff.11";
        assert_eq!(cookie(&over, "ei_vid"), None);
        // An own cookie's value is bounded; another cookie's long value is not our concern.
        let value = "a".repeat(MAX_OWN_COOKIE_VALUE_BYTES);
        assert_eq!(cookie(&format!("ei_clear={value}"), "ei_clear"), Some(value.as_str()));
        let long = "a".repeat(MAX_OWN_COOKIE_VALUE_BYTES + 1);
        assert_eq!(cookie(&format!("ei_clear={long}; b=1"), "ei_clear"), None, "oversized own value refused");
        assert_eq!(cookie(&format!("other={long}; ei_clear=1.2"), "ei_clear"), Some("1.2"));
    }

    #[test]
    fn signed_visitor_cookie() {
        let key = "0123456789abcdef-key";
        let v = sign_visitor_id(key, "00ff11ee").unwrap();
        assert_eq!(verify_visitor_cookie(key, &v), Some("00ff11ee"));
        assert_eq!(verify_visitor_cookie("another-key-0123456", &v), None, "wrong key");
        let forged = v.replacen("00ff", "00fe", 1);
        assert_eq!(verify_visitor_cookie(key, &forged), None, "tampered id");
        for bad in ["", ".", "abc", "zz.00", "00ff11ee.", "00ff11ee.nothex"] {
            assert_eq!(verify_visitor_cookie(key, bad), None, "{bad:?}");
        }
    }
}

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

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.trim())
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

//! Signed headers (README: headers to the origin): `X-Intel-Signature: t=<unix>,v1=<hex>` where
//! `v1 = HMAC-SHA256(HEADER_SIGNING_KEY, canonical)` and the canonical string is
//!
//! ```text
//! <METHOD>\n<URL as the origin receives it>\n<t>\n<name>:<value>\n ...
//! ```
//!
//! with every header edgeintel set, in the order it sets them (the contract
//! order of `headers::render`, then `X-Intel-Client-IP`), names in lower
//! case. The client address is covered because the signing edge adds it as a
//! header of its own: the platform sets `CF-Connecting-IP` on the origin
//! request itself (locally it does not arrive at all), so it cannot be signed
//! as sent. A signed verdict therefore cannot be replayed for another client.
//! The body is not covered. Origins verify it with the examples in
//! `examples/` and reject stale timestamps.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const SIGNATURE: &str = "X-Intel-Signature";
/// The client address edgeintel scored, sent (and signed) with a signature.
pub const CLIENT_IP: &str = "X-Intel-Client-IP";

pub fn canonical(method: &str, url: &str, t: u64, headers: &[(&str, String)]) -> String {
    let mut s = format!("{method}\n{url}\n{t}\n");
    for (name, value) in headers {
        s.push_str(&name.to_ascii_lowercase());
        s.push(':');
        s.push_str(value);
        s.push('\n');
    }
    s
}

/// The header value for `headers` (which must not include the signature).
pub fn sign(key: &str, method: &str, url: &str, t: u64, headers: &[(&str, String)]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).ok()?;
    mac.update(canonical(method, url, t, headers).as_bytes());
    Some(format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        let h = vec![("X-Risk-Score", "45".to_string()), ("X-Risk-Level", "medium".to_string())];
        assert_eq!(
            canonical("GET", "https://example.com/a?b=1", 1_780_000_000, &h),
            "GET\nhttps://example.com/a?b=1\n1780000000\nx-risk-score:45\nx-risk-level:medium\n"
        );
        let sig = sign("secret", "GET", "https://example.com/a?b=1", 1_780_000_000, &h).unwrap_or_default();
        // Computed independently: printf 'GET\nhttps://example.com/a?b=1\n1780000000\nx-risk-score:45\nx-risk-level:medium\n' | openssl dgst -sha256 -hmac secret
        assert_eq!(sig, "t=1780000000,v1=980ddcf17c1dfa0866111edb55d35942b112e4808e71d6f40b17c6bcdd5151b9");
    }
}

//! Single-use stream tickets, checked without any storage.
//!
//! Browsers cannot set headers on a WebSocket, so the dashboard trades its
//! admin token for a short-lived ticket (`POST /api/stream-ticket`) and puts
//! it in the stream URL. The stream endpoint answers unauthenticated
//! clients, so checking a ticket must cost nothing but CPU in the isolate: a
//! ticket is `<expires ms>.<nonce>.<HMAC-SHA256 tag>`, keyed by a key derived
//! from `ADMIN_TOKEN`, which every isolate has. Only a correctly signed,
//! unexpired ticket reaches a Durable Object, and the object where the socket
//! lands remembers its nonce until it expires, so it opens one socket only.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of randomness in a ticket's nonce.
pub const NONCE_BYTES: usize = 16;
/// Longest ticket text accepted for parsing (a real one is ~110 characters).
const MAX_TICKET_LEN: usize = 200;

/// A verified ticket: its nonce (the single-use key) and when it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub nonce: String,
    pub expires_ms: u64,
}

/// The ticket key: derived from the admin token, so rotating the token
/// invalidates every outstanding ticket, and separate from it, so a ticket's
/// tag says nothing about the token.
fn key(admin_token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"edgeintel stream tickets\0");
    h.update(admin_token.as_bytes());
    h.finalize().into()
}

fn tag(admin_token: &str, expires_ms: u64, nonce: &str) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(&key(admin_token)).ok()?;
    m.update(format!("{expires_ms}.{nonce}").as_bytes());
    Some(m)
}

/// A signed ticket for `nonce` (hex of `NONCE_BYTES` random bytes) that
/// expires at `expires_ms`.
pub fn issue(admin_token: &str, nonce: &[u8; NONCE_BYTES], expires_ms: u64) -> Option<String> {
    let nonce = hex::encode(nonce);
    let t = tag(admin_token, expires_ms, &nonce)?.finalize().into_bytes();
    Some(format!("{expires_ms}.{nonce}.{}", hex::encode(t)))
}

/// Why a ticket was refused (for tests and logs; clients get a plain 401).
#[derive(Debug, PartialEq)]
pub enum Refused {
    Malformed,
    BadSignature,
    Expired,
    /// Expires further ahead than any ticket this configuration issues.
    TooFarAhead,
}

/// Checks a presented ticket: well formed, signed with this token's key, not
/// expired at `now_ms` and not valid longer than `max_ttl_ms` from now.
pub fn verify(admin_token: &str, presented: &str, now_ms: u64, max_ttl_ms: u64) -> Result<Ticket, Refused> {
    if presented.len() > MAX_TICKET_LEN {
        return Err(Refused::Malformed);
    }
    let mut parts = presented.split('.');
    let (Some(expires), Some(nonce), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Refused::Malformed);
    };
    if expires.is_empty() || expires.len() > 16 || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refused::Malformed);
    }
    let expires_ms: u64 = expires.parse().map_err(|_| Refused::Malformed)?;
    if nonce.len() != NONCE_BYTES * 2 || !nonce.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Refused::Malformed);
    }
    let sig = hex::decode(sig).map_err(|_| Refused::Malformed)?;
    // The signature first: an attacker learns nothing from the other checks.
    tag(admin_token, expires_ms, nonce)
        .ok_or(Refused::Malformed)?
        .verify_slice(&sig)
        .map_err(|_| Refused::BadSignature)?;
    if expires_ms <= now_ms {
        return Err(Refused::Expired);
    }
    if expires_ms - now_ms > max_ttl_ms {
        return Err(Refused::TooFarAhead);
    }
    Ok(Ticket { nonce: nonce.to_string(), expires_ms })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TOKEN: &str = "test-admin-token-0123456789";
    const NONCE: [u8; NONCE_BYTES] = [7; NONCE_BYTES];

    #[test]
    fn a_ticket_verifies_until_it_expires() {
        let t = issue(TOKEN, &NONCE, 61_000).unwrap();
        let ok = verify(TOKEN, &t, 1_000, 60_000).unwrap();
        assert_eq!(ok.nonce, hex::encode(NONCE));
        assert_eq!(ok.expires_ms, 61_000);
        assert_eq!(verify(TOKEN, &t, 60_999, 60_000), Ok(ok));
        assert_eq!(verify(TOKEN, &t, 61_000, 60_000), Err(Refused::Expired));
        assert_eq!(verify(TOKEN, &t, 500, 60_000), Err(Refused::TooFarAhead), "more than the TTL ahead");
    }

    #[test]
    fn another_token_or_a_changed_field_is_refused() {
        let t = issue(TOKEN, &NONCE, 61_000).unwrap();
        assert_eq!(verify("another-admin-token-000", &t, 1_000, 60_000), Err(Refused::BadSignature));
        let later = t.replacen("61000", "91000", 1);
        assert_eq!(verify(TOKEN, &later, 1_000, 600_000), Err(Refused::BadSignature), "extended expiry");
        let other_nonce = t.replacen(&hex::encode(NONCE), &hex::encode([8u8; NONCE_BYTES]), 1);
        assert_eq!(verify(TOKEN, &other_nonce, 1_000, 60_000), Err(Refused::BadSignature));
        let mut flipped = t.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(verify(TOKEN, &flipped, 1_000, 60_000), Err(Refused::BadSignature));
    }

    #[test]
    fn garbage_is_malformed_without_panicking() {
        let long = "9".repeat(500);
        let nonce = hex::encode(NONCE);
        let garbage = [
            "",
            ".",
            "..",
            "...",
            "abc",
            "1.2.3",
            "1.2.3.4",
            long.as_str(),
            "-5.aa.bb",
            "99999999999999999999.aa.bb",
            "1.ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ.00",
            "1.é.00",
        ];
        for bad in garbage {
            assert_eq!(verify(TOKEN, bad, 0, 60_000), Err(Refused::Malformed), "{bad:?}");
        }
        // Upper-case hex is not what `issue` writes: one spelling per ticket.
        let upper = format!("61000.{}.00", hex::encode([0xab_u8; NONCE_BYTES]).to_uppercase());
        assert_eq!(verify(TOKEN, &upper, 0, 60_000), Err(Refused::Malformed));
        assert_eq!(verify(TOKEN, &format!("61000.{nonce}.nothex"), 0, 60_000), Err(Refused::Malformed));
        assert_eq!(verify(TOKEN, &format!("61000.{nonce}.00"), 0, 60_000), Err(Refused::BadSignature));
    }
}

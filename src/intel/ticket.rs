//! Single-use stream tickets, checked without any storage.
//!
//! Browsers cannot set headers on a WebSocket, so the dashboard trades its
//! admin token for a short-lived ticket (`POST /api/stream-ticket`) and puts
//! it in the stream URL. The stream endpoint answers unauthenticated
//! clients, so checking a ticket must cost nothing but CPU in the isolate: a
//! ticket is `<expires ms>.<nonce>.<HMAC-SHA256 tag>` under a random 32-byte
//! key the global hub makes once and every isolate caches. The key is not
//! derived from `ADMIN_TOKEN`: a ticket seen in a log must not let anyone
//! test token guesses offline. Only a correctly signed, unexpired ticket
//! reaches a Durable Object, and the stream root remembers its nonce until
//! it expires, so it opens one socket only.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

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

/// Bytes of the ticket key.
pub const KEY_BYTES: usize = 32;
/// A verifier's clock may run this far behind the issuer's.
const CLOCK_SLACK_MS: u64 = 5_000;

fn tag(key: &[u8], expires_ms: u64, nonce: &str) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(key).ok()?;
    m.update(format!("{expires_ms}.{nonce}").as_bytes());
    Some(m)
}

/// A signed ticket for `nonce` (hex of `NONCE_BYTES` random bytes) that
/// expires at `expires_ms`.
pub fn issue(key: &[u8], nonce: &[u8; NONCE_BYTES], expires_ms: u64) -> Option<String> {
    let nonce = hex::encode(nonce);
    let t = tag(key, expires_ms, &nonce)?.finalize().into_bytes();
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

/// A ticket's fields, when it has the shape `issue` writes.
fn parse(presented: &str) -> Result<(u64, &str, Vec<u8>), Refused> {
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
    if sig.len() != 32 {
        return Err(Refused::Malformed);
    }
    Ok((expires_ms, nonce, sig))
}

/// Whether `presented` has a ticket's shape: checked before anything else,
/// so garbage is refused without even the key.
pub fn well_formed(presented: &str) -> bool {
    parse(presented).is_ok()
}

/// Checks a presented ticket: well formed, signed with `key`, not expired at
/// `now_ms` and not valid longer than `max_ttl_ms` (plus a little clock
/// slack) from now.
pub fn verify(key: &[u8], presented: &str, now_ms: u64, max_ttl_ms: u64) -> Result<Ticket, Refused> {
    let (expires_ms, nonce, sig) = parse(presented)?;
    // The signature first: an attacker learns nothing from the other checks.
    tag(key, expires_ms, nonce).ok_or(Refused::Malformed)?.verify_slice(&sig).map_err(|_| Refused::BadSignature)?;
    if expires_ms <= now_ms {
        return Err(Refused::Expired);
    }
    if expires_ms - now_ms > max_ttl_ms.saturating_add(CLOCK_SLACK_MS) {
        return Err(Refused::TooFarAhead);
    }
    Ok(Ticket { nonce: nonce.to_string(), expires_ms })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = &[42; KEY_BYTES];
    const NONCE: [u8; NONCE_BYTES] = [7; NONCE_BYTES];

    #[test]
    fn a_ticket_verifies_until_it_expires() {
        let t = issue(TOKEN, &NONCE, 61_000).unwrap();
        let ok = verify(TOKEN, &t, 1_000, 60_000).unwrap();
        assert_eq!(ok.nonce, hex::encode(NONCE));
        assert_eq!(ok.expires_ms, 61_000);
        assert_eq!(verify(TOKEN, &t, 60_999, 60_000), Ok(ok));
        assert_eq!(verify(TOKEN, &t, 61_000, 60_000), Err(Refused::Expired));
        assert_eq!(
            verify(TOKEN, &t, 500, 50_000),
            Err(Refused::TooFarAhead),
            "more than the TTL (and the slack) ahead"
        );
        assert!(verify(TOKEN, &t, 500, 60_000).is_ok(), "a verifier 500 ms behind the issuer");
    }

    #[test]
    fn another_token_or_a_changed_field_is_refused() {
        let t = issue(TOKEN, &NONCE, 61_000).unwrap();
        assert_eq!(verify(&[43; KEY_BYTES], &t, 1_000, 60_000), Err(Refused::BadSignature));
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
        assert_eq!(verify(TOKEN, &format!("61000.{nonce}.00"), 0, 60_000), Err(Refused::Malformed), "a 1-byte tag");
        assert_eq!(verify(TOKEN, &format!("61000.{nonce}.{}", "00".repeat(32)), 0, 60_000), Err(Refused::BadSignature));
        assert!(!well_formed("made-up") && well_formed(&issue(TOKEN, &NONCE, 61_000).unwrap()));
    }
}

//! Client addresses and subject keys. A subject is what a profile is kept for:
//! an IPv4 address as is, an IPv6 address grouped by its /64 prefix (one
//! customer line or host usually owns a whole /64, and rotating within it is
//! free for an attacker). Past the rotation budget (`intel::rotation`) a new
//! subject is widened: an IPv6 /64 to its /48 (`2001:db8:1::/48`), an IPv4
//! address to its /24 (`203.0.113.0/24`).

use std::net::Ipv4Addr;

use std::net::{IpAddr, Ipv6Addr};

/// The key of one subject, in a canonical text form: `203.0.113.7` or
/// `2001:db8:1:2::/64`. Parsing an IP and formatting its subject are the
/// only ways to make one, so equal subjects always have equal keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectKey(String);

impl SubjectKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a URL's host is this machine (`localhost`, `127.0.0.1`, `[::1]`):
/// the one case where outbound URLs may be plain `http` (local stand-ins in
/// tests: webhooks, crawler sources, agent key directories).
pub fn is_loopback(url: &url::Url) -> bool {
    matches!(
        url.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    )
}

/// Parses a client address from a header value. Accepts the forms proxies
/// actually send: plain v4/v6, and v6 in brackets; rejects anything else
/// (ports, lists, zone ids, garbage) rather than guessing.
pub fn parse_client_ip(raw: &str) -> Option<IpAddr> {
    let s = raw.trim();
    let s = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(s);
    let ip: IpAddr = s.parse().ok()?;
    // An IPv4-mapped v6 address (::ffff:198.51.100.7) is the v4 client.
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// The subject an address belongs to.
pub fn subject_of(ip: IpAddr) -> SubjectKey {
    match ip {
        IpAddr::V4(v4) => SubjectKey(v4.to_string()),
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            let prefix = Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0);
            SubjectKey(format!("{prefix}/64"))
        }
    }
}

/// The widened subject of an address (past the rotation budget): its /48
/// for IPv6, its /24 for IPv4.
pub fn widened_subject_of(ip: IpAddr) -> SubjectKey {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            SubjectKey(format!("{}/24", Ipv4Addr::new(a, b, c, 0)))
        }
        IpAddr::V6(v6) => {
            let [a, b, c, ..] = v6.segments();
            SubjectKey(format!("{}/48", Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0)))
        }
    }
}

/// How a subject is stored and shown. Without `IP_HASH_KEY` the key is the
/// subject itself and it is shown as is. With it, the key is
/// `h:` + HMAC-SHA256(key, subject) (truncated to 128 bits) and only a masked
/// form is shown (`203.0.113.x`, `2001:db8:1::/48`): no raw IP is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub key: SubjectKey,
    pub display: String,
}

pub fn identify(subject: &SubjectKey, hash_key: Option<&str>) -> Identity {
    use hmac::{Hmac, KeyInit, Mac};
    let Some(k) = hash_key else {
        return Identity { key: subject.clone(), display: subject.0.clone() };
    };
    let hashed = Hmac::<sha2::Sha256>::new_from_slice(k.as_bytes()).ok().map(|mut m| {
        m.update(subject.0.as_bytes());
        let tag = m.finalize().into_bytes();
        format!("h:{}", hex::encode(tag.get(..16).unwrap_or_default()))
    });
    Identity { key: SubjectKey(hashed.unwrap_or_else(|| "h:unavailable".to_string())), display: mask(subject) }
}

/// `203.0.113.7` -> `203.0.113.x`; `2001:db8:1:2::/64` -> `2001:db8:1::/48`.
/// A /64 is one household's or one host's line, an identifier in itself; a
/// /48 is a site or a provider's block, as coarse as a v4 /24.
pub fn mask(subject: &SubjectKey) -> String {
    // A widened subject is already as coarse as its mask.
    if subject.0.ends_with("/48") {
        return subject.0.clone();
    }
    if let Some(net) = subject.0.strip_suffix(".0/24") {
        return format!("{net}.x");
    }
    if let Some(prefix) = subject.0.strip_suffix("/64") {
        return match prefix.parse::<Ipv6Addr>() {
            Ok(v6) => {
                let [a, b, c, ..] = v6.segments();
                format!("{}/48", Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
            }
            Err(_) => "::/48".to_string(),
        };
    }
    match subject.0.rsplit_once('.') {
        Some((net, _)) if !subject.0.contains(':') => format!("{net}.x"),
        _ => "masked".to_string(),
    }
}

/// Parses what an API caller names: an address (`203.0.113.7`, `2001:db8::1`)
/// or a subject key (`2001:db8:1:2::/64`, a widened `2001:db8:1::/48` or
/// `203.0.113.0/24`), into the subject key.
pub fn parse_subject(raw: &str) -> Option<SubjectKey> {
    let s = raw.trim();
    if let Some(prefix) = s.strip_suffix("/64") {
        let v6: Ipv6Addr = prefix.parse().ok()?;
        return Some(subject_of(IpAddr::V6(v6)));
    }
    if let Some(prefix) = s.strip_suffix("/48") {
        let v6: Ipv6Addr = prefix.parse().ok()?;
        return Some(widened_subject_of(IpAddr::V6(v6)));
    }
    if let Some(prefix) = s.strip_suffix("/24") {
        let v4: Ipv4Addr = prefix.parse().ok()?;
        return Some(widened_subject_of(IpAddr::V4(v4)));
    }
    parse_client_ip(s).map(subject_of)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subjects_table() {
        let cases = [
            ("203.0.113.7", Some("203.0.113.7")),
            (" 198.51.100.1 ", Some("198.51.100.1")),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", Some("2001:db8:1:2::/64")),
            ("2001:db8:1:2::1", Some("2001:db8:1:2::/64")),
            ("[2001:db8::1]", Some("2001:db8::/64")),
            ("::ffff:198.51.100.7", Some("198.51.100.7")),
            ("2001:db8:1:2::/64", Some("2001:db8:1:2::/64")),
            ("not-an-ip", None),
            ("", None),
            ("203.0.113.7:443", None),
            ("203.0.113.7, 10.0.0.1", None),
            ("256.1.1.1", None),
            ("fe80::1%eth0", None),
            ("203.0.113.0/24", Some("203.0.113.0/24")),
            ("203.0.113.77/24", Some("203.0.113.0/24")),
            ("2001:db8:1:2::9/48", Some("2001:db8:1::/48")),
            ("2001:db8:1::/48", Some("2001:db8:1::/48")),
            ("203.0.113.0/16", None),
            ("2001:db8::/24", None),
            ("::ffff:198.51.100.7/24", None),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_subject(raw).as_ref().map(SubjectKey::as_str), want, "{raw:?}");
        }
    }

    #[test]
    fn hashed_identity_hides_the_ip() {
        let s = parse_subject("203.0.113.7").unwrap();
        let plain = identify(&s, None);
        assert_eq!((plain.key.as_str(), plain.display.as_str()), ("203.0.113.7", "203.0.113.7"));
        let h = identify(&s, Some("k-0123456789abcdef"));
        assert!(h.key.as_str().starts_with("h:") && h.key.as_str().len() == 34);
        assert!(!h.key.as_str().contains("203.0.113"));
        assert_eq!(h.display, "203.0.113.x");
        assert_eq!(h.key, identify(&s, Some("k-0123456789abcdef")).key, "stable");
        assert_ne!(h.key, identify(&s, Some("another-key-012345")).key, "keyed");
        let v6 = identify(&parse_subject("2001:db8:1:2::9").unwrap(), Some("k-0123456789abcdef"));
        assert_eq!(v6.display, "2001:db8:1::/48", "a /64 is a household: shown as its /48");
        let plain_v6 = identify(&parse_subject("2001:db8:1:2::9").unwrap(), None);
        assert_eq!(plain_v6.display, "2001:db8:1:2::/64", "without IP_HASH_KEY the subject is shown as is");
        assert_eq!(mask(&parse_subject("2001:db8:ffff:abcd::1").unwrap()), "2001:db8:ffff::/48");
        assert_eq!(mask(&parse_subject("::1").unwrap()), "::/48");
    }

    #[test]
    fn widened_subjects_and_their_masks() {
        let v6 = parse_client_ip("2001:db8:1:2:aaaa::1").unwrap();
        let v4 = parse_client_ip("203.0.113.7").unwrap();
        assert_eq!(widened_subject_of(v6).as_str(), "2001:db8:1::/48");
        assert_eq!(widened_subject_of(v4).as_str(), "203.0.113.0/24");
        assert_eq!(mask(&widened_subject_of(v6)), "2001:db8:1::/48");
        assert_eq!(mask(&widened_subject_of(v4)), "203.0.113.x");
        // Hashed: a widened subject has its own key, not any of its /64s'.
        let k = Some("k-0123456789abcdef");
        assert_ne!(identify(&widened_subject_of(v6), k).key, identify(&subject_of(v6), k).key);
        assert_eq!(identify(&widened_subject_of(v6), k).display, "2001:db8:1::/48");
    }

    #[test]
    fn two_addresses_in_one_64_share_a_subject() {
        let a = subject_of(parse_client_ip("2001:db8:abcd:12::1").unwrap());
        let b = subject_of(parse_client_ip("2001:db8:abcd:12:ffff::9").unwrap());
        let c = subject_of(parse_client_ip("2001:db8:abcd:13::1").unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}

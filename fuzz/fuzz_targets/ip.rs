//! Client addresses (`CF-Connecting-IP`, `X-Real-IP`) and API subjects
//! (`/api/ip/{subject}`): `parse_client_ip` and `parse_subject` never panic,
//! a parsed address prints back to itself, and a subject key parses back to
//! the same key (keys are compared as strings in storage), widened /48 and
//! /24 subjects included.
#![no_main]

use std::net::IpAddr;

use edgeintel::intel::ip::{identify, mask, parse_client_ip, parse_subject, subject_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    let ip = parse_client_ip(text);
    if text.trim().parse::<IpAddr>().is_ok() {
        assert!(ip.is_some(), "{text:?} is an address std accepts");
    }
    if let Some(ip) = ip {
        if let IpAddr::V6(v6) = ip {
            assert!(v6.to_ipv4_mapped().is_none(), "a v4-mapped address must come back as v4: {ip}");
        }
        assert_eq!(parse_client_ip(&ip.to_string()), Some(ip), "{ip} does not print back to itself");
        assert_eq!(parse_subject(text), Some(subject_of(ip)), "{text:?}: address and subject disagree");
    }

    if let Some(key) = parse_subject(text) {
        let s = key.as_str();
        assert_eq!(parse_subject(s).as_ref(), Some(&key), "subject {s:?} does not round-trip");
        if let Some(prefix) = s.strip_suffix("/48") {
            // A widened IPv6 subject (issue 17's rotation budget): a /48
            // prefix, its own mask.
            let v6: std::net::Ipv6Addr = prefix.parse().unwrap_or_else(|_| panic!("v6 /48 subject {s:?}"));
            assert_eq!(u128::from(v6) & ((1u128 << 80) - 1), 0, "{s:?} keeps more than 48 bits");
            assert_eq!(mask(&key), s, "a /48 masks as itself");
        } else if let Some(net) = s.strip_suffix("/24") {
            // A widened IPv4 subject: the /24's network address.
            let v4: std::net::Ipv4Addr = net.parse().unwrap_or_else(|_| panic!("v4 /24 subject {s:?}"));
            assert_eq!(v4.octets()[3], 0, "{s:?} is not a /24 network");
            assert!(mask(&key).ends_with(".x"), "masked {s:?}");
        } else if s.contains(':') {
            let prefix = s.strip_suffix("/64").unwrap_or_else(|| panic!("v6 subject {s:?} without /64"));
            let v6: std::net::Ipv6Addr = prefix.parse().unwrap_or_else(|_| panic!("v6 subject {s:?}"));
            assert_eq!(u128::from(v6) & u128::from(u64::MAX), 0, "{s:?} is not a /64 prefix");
            let masked = mask(&key);
            let m: std::net::Ipv6Addr = masked
                .strip_suffix("/48")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{s:?} masked as {masked:?}, not a /48"));
            assert_eq!(u128::from(m) & ((1u128 << 80) - 1), 0, "{masked:?} keeps more than 48 bits");
            assert_eq!(u128::from(m), u128::from(v6) & !((1u128 << 80) - 1), "{masked:?} is not {s:?}'s /48");
        } else {
            assert!(s.parse::<std::net::Ipv4Addr>().is_ok(), "v4 subject {s:?}");
            assert!(mask(&key).ends_with(".x") && !mask(&key).contains(s), "masked {s:?}");
        }
        let id = identify(&key, Some("fuzz-hash-key-0123456789"));
        assert!(id.key.as_str().starts_with("h:") && id.key.as_str().len() == 34, "hashed key {:?}", id.key);
    }
});

//! Allow and block lists (docs/enforcement.md): IPs, CIDRs (v4 and v6), ASNs and
//! countries. Allow beats block. Parsed and validated once; matching is a
//! linear scan over parsed entries (lists are operator-sized: a few thousand
//! entries at most, `MAX_ENTRIES`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::facts::country_code;

pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An address, or a network: (address, prefix length).
    Net(IpAddr, u8),
    Asn(u32),
    Country(String),
}

impl Entry {
    /// `203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`, `AS64496`, `country:RU`.
    pub fn parse(raw: &str) -> Result<Entry, String> {
        let s = raw.trim();
        if let Some(c) = s.strip_prefix("country:") {
            return country_code(c).map(Entry::Country).ok_or_else(|| format!("`{s}`: not a two-letter country code"));
        }
        if let Some(n) = s.strip_prefix("AS").or_else(|| s.strip_prefix("as")) {
            return n
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(Entry::Asn)
                .ok_or_else(|| format!("`{s}`: not an ASN"));
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr =
            addr.parse().map_err(|_| format!("`{s}`: not an IP, CIDR, ASN (AS64496) or country (country:XX)"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0-{max}"))?,
        };
        // The request path reads a v4-mapped client (::ffff:198.51.100.7) as
        // v4 (`ip::parse_client_ip`), so a v4-mapped entry is a v4 one too.
        if let (IpAddr::V6(v6), Some(v4_len)) = (ip, len.checked_sub(96)) {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return Ok(Entry::Net(IpAddr::V4(v4), v4_len));
            }
        }
        Ok(Entry::Net(ip, len))
    }

    pub fn matches(&self, ip: Option<IpAddr>, asn: Option<u32>, country: Option<&str>) -> bool {
        match self {
            Entry::Net(net, len) => ip.is_some_and(|ip| in_net(ip, *net, *len)),
            Entry::Asn(a) => asn == Some(*a),
            Entry::Country(c) => country == Some(c.as_str()),
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            (u32::from(a) & mask) == (u32::from(n) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            (u128::from(a) & mask) == (u128::from(n) & mask)
        }
        _ => false,
    }
}

/// The lists as operators write them (vars and the API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLists {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub block: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lists {
    pub allow: Vec<Entry>,
    pub block: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListVerdict {
    Allowed,
    Blocked,
    Neither,
}

impl Lists {
    /// Validates every entry; the error names each bad one.
    pub fn parse(raw: &RawLists) -> Result<Lists, String> {
        if raw.allow.len() + raw.block.len() > MAX_ENTRIES {
            return Err(format!("at most {MAX_ENTRIES} entries in all"));
        }
        let parse = |name: &str, v: &[String]| -> Result<Vec<Entry>, String> {
            let mut errors = Vec::new();
            let mut out = Vec::new();
            for (i, e) in v.iter().enumerate() {
                match Entry::parse(e) {
                    Ok(x) => out.push(x),
                    Err(m) => errors.push(format!("{name}[{i}] {m}")),
                }
            }
            if errors.is_empty() {
                Ok(out)
            } else {
                Err(errors.join("; "))
            }
        };
        Ok(Lists { allow: parse("allow", &raw.allow)?, block: parse("block", &raw.block)? })
    }

    /// Merges another list set (vars plus what the API stored).
    pub fn extend(&mut self, other: &Lists) {
        self.allow.extend(other.allow.iter().cloned());
        self.block.extend(other.block.iter().cloned());
    }

    /// Allow beats block.
    pub fn check(&self, ip: Option<IpAddr>, asn: Option<u32>, country: Option<&str>) -> ListVerdict {
        if self.allow.iter().any(|e| e.matches(ip, asn, country)) {
            ListVerdict::Allowed
        } else if self.block.iter().any(|e| e.matches(ip, asn, country)) {
            ListVerdict::Blocked
        } else {
            ListVerdict::Neither
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn entries_parse_and_match() {
        let table = [
            ("203.0.113.7", "203.0.113.7", true),
            ("203.0.113.7", "203.0.113.8", false),
            ("203.0.113.0/24", "203.0.113.200", true),
            ("203.0.113.0/24", "203.0.114.1", false),
            ("0.0.0.0/0", "198.51.100.1", true),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("2001:db8::/32", "203.0.113.1", false),
            ("203.0.113.0/24", "2001:db8::1", false),
            ("::/0", "2001:db8::1", true),
        ];
        for (entry, addr, want) in table {
            assert_eq!(Entry::parse(entry).unwrap().matches(ip(addr), None, None), want, "{entry} vs {addr}");
        }
        assert!(Entry::parse("AS64496").unwrap().matches(None, Some(64496), None));
        assert!(!Entry::parse("AS64496").unwrap().matches(None, Some(64497), None));
        assert!(Entry::parse("country:ru").unwrap().matches(None, None, Some("RU")));
        for bad in
            ["", "x", "203.0.113.0/33", "2001:db8::/129", "AS0", "ASx", "country:Russia", "1.2.3.4/", "1.2.3.4/-1"]
        {
            assert!(Entry::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn allow_beats_block() {
        let lists = Lists::parse(&RawLists {
            allow: vec!["203.0.113.7".into()],
            block: vec!["203.0.113.0/24".into(), "AS14061".into(), "country:XX".into()],
        })
        .unwrap();
        assert_eq!(lists.check(ip("203.0.113.7"), Some(14061), Some("XX")), ListVerdict::Allowed);
        assert_eq!(lists.check(ip("203.0.113.8"), None, None), ListVerdict::Blocked);
        assert_eq!(lists.check(ip("198.51.100.1"), Some(14061), None), ListVerdict::Blocked);
        assert_eq!(lists.check(ip("198.51.100.1"), None, Some("XX")), ListVerdict::Blocked);
        assert_eq!(lists.check(ip("198.51.100.1"), Some(3320), Some("DE")), ListVerdict::Neither);
        assert_eq!(lists.check(None, None, None), ListVerdict::Neither);
    }

    #[test]
    fn errors_name_every_bad_entry() {
        let e = Lists::parse(&RawLists { allow: vec!["ok".into()], block: vec![] }).unwrap_err();
        assert!(e.starts_with("allow[0]"), "{e}");
        let e = Lists::parse(&RawLists { allow: vec![], block: vec!["1.2.3.4".into(), "nope".into(), "AS".into()] })
            .unwrap_err();
        assert!(e.contains("block[1]") && e.contains("block[2]"), "{e}");
        let big = RawLists { allow: vec!["1.2.3.4".into(); MAX_ENTRIES + 1], block: vec![] };
        assert!(Lists::parse(&big).is_err());
        assert!(serde_json::from_str::<RawLists>(r#"{"allow":[],"deny":[]}"#).is_err(), "unknown field");
    }
}

//! The rotation budget (docs/profiles.md, "Rotation budget"): an attacker
//! rotating through the 65,536 /64s of one IPv6 /48 (or through the
//! addresses of one network) would make each a new subject, one profile
//! object each. So an isolate admits at most `ROTATION_BUDGET_PER_48` new
//! subjects per /48 and `ROTATION_BUDGET_PER_ASN` per ASN in each minute;
//! past either, the request's subject is widened (an IPv6 /64 to its /48, an
//! IPv4 address to its /24: `ip::widened_subject_of`) and carries
//! `subnet_rotation`.
//!
//! "New" is the caller's: a subject this isolate has no cached verdict for.
//! Counting happens in the isolate, in two bounded maps, so the budget costs
//! no object call; the price is that K isolates of a location admit up to K
//! times the budget between them. Pure: time is an argument.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// `ROTATION_BUDGET_PER_48` and `ROTATION_BUDGET_PER_ASN`: new subjects per
/// minute (0: no budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_48: u32,
    pub per_asn: u32,
}

/// /48s and ASNs counted at once, each. Past it the counters of earlier
/// minutes go first, then the smallest count (an attacker spreading over more
/// /48s than this in one minute gets their budgets back; the ASN budget
/// still holds them).
pub const MAX_COUNTED: usize = 4096;

const MINUTE_MS: f64 = 60_000.0;

/// How a widened profile says so (the profile API's `widened`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Widened {
    /// `/64` (IPv6) or `/32` (IPv4): what the subject would have been.
    pub from: String,
    /// `/48` or `/24`: what it is.
    pub to: String,
    /// `subnet_rotation`.
    pub reason: String,
}

impl Widened {
    /// The widening of an address's subject.
    pub fn of(ip: IpAddr) -> Widened {
        Widened::of_family(ip.is_ipv6())
    }

    /// The widening of a subject shown as `display` (a masked or plain
    /// widened subject: `2001:db8:1::/48` or `203.0.113.x`/`203.0.113.0/24`).
    pub fn of_display(display: &str) -> Widened {
        Widened::of_family(display.contains(':'))
    }

    fn of_family(v6: bool) -> Widened {
        let (from, to) = if v6 { ("/64", "/48") } else { ("/32", "/24") };
        Widened { from: from.into(), to: to.into(), reason: "subnet_rotation".into() }
    }
}

/// Counts per key within the current minute, bounded to `MAX_COUNTED` keys.
struct Counts<K> {
    map: HashMap<K, (u64, u32)>,
}

impl<K: Eq + Hash + Clone> Counts<K> {
    fn new() -> Self {
        Counts { map: HashMap::new() }
    }

    fn get(&self, key: &K, minute: u64) -> u32 {
        match self.map.get(key) {
            Some((m, n)) if *m == minute => *n,
            _ => 0,
        }
    }

    fn bump(&mut self, key: K, minute: u64) {
        if !self.map.contains_key(&key) && self.map.len() >= MAX_COUNTED {
            self.map.retain(|_, (m, _)| *m == minute);
            if self.map.len() >= MAX_COUNTED {
                let smallest = self.map.iter().min_by_key(|(_, (_, n))| *n).map(|(k, _)| k.clone());
                if let Some(k) = smallest {
                    self.map.remove(&k);
                }
            }
        }
        let entry = self.map.entry(key).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// One isolate's counters of new subjects.
pub struct Rotation {
    per_48: Counts<u64>,
    per_asn: Counts<u32>,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { per_48: Counts::new(), per_asn: Counts::new() }
    }
}

/// The /48 of an IPv6 address as a number (a map key without a string).
fn prefix_48(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V6(v6) => {
            let [a, b, c, ..] = v6.segments();
            Some((u64::from(a) << 32) | (u64::from(b) << 16) | u64::from(c))
        }
        IpAddr::V4(_) => None,
    }
}

impl Rotation {
    /// A new subject of `ip` (in `asn`) at `now`: `None` admits it as its own
    /// subject (and counts it); `Some` widens it (not counted: the widened
    /// subject is one object however many addresses land on it).
    pub fn admit(&mut self, budget: Budget, ip: IpAddr, asn: Option<u32>, now: f64) -> Option<Widened> {
        let minute = (now.max(0.0) / MINUTE_MS) as u64;
        let p48 = prefix_48(ip).filter(|_| budget.per_48 > 0);
        let asn = asn.filter(|_| budget.per_asn > 0);
        let over_48 = p48.is_some_and(|p| self.per_48.get(&p, minute) >= budget.per_48);
        let over_asn = asn.is_some_and(|a| self.per_asn.get(&a, minute) >= budget.per_asn);
        if over_48 || over_asn {
            return Some(Widened::of(ip));
        }
        if let Some(p) = p48 {
            self.per_48.bump(p, minute);
        }
        if let Some(a) = asn {
            self.per_asn.bump(a, minute);
        }
        None
    }

    /// (/48s, ASNs) counted now: bounded by `MAX_COUNTED` each.
    pub fn counted(&self) -> (usize, usize) {
        (self.per_48.len(), self.per_asn.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const BUDGET: Budget = Budget { per_48: 16, per_asn: 100 };

    #[test]
    fn a_48_gets_its_budget_per_minute_then_widens() {
        let mut r = Rotation::default();
        let t0 = 1_000_000.0 * MINUTE_MS;
        let mut own = 0;
        for i in 0..1000u32 {
            let a = ip(&format!("2001:db8:1:{i:x}::1"));
            match r.admit(BUDGET, a, Some(64496), t0 + f64::from(i)) {
                None => own += 1,
                Some(w) => {
                    assert_eq!((w.from.as_str(), w.to.as_str(), w.reason.as_str()), ("/64", "/48", "subnet_rotation"))
                }
            }
        }
        assert_eq!(own, 16, "the budget, then every new /64 widens");
        // Another /48 has its own budget.
        assert_eq!(r.admit(BUDGET, ip("2001:db8:2::1"), Some(64496), t0), None);
        // The next minute, the budget is back.
        assert_eq!(r.admit(BUDGET, ip("2001:db8:1:ffff::1"), Some(64496), t0 + MINUTE_MS), None);
    }

    #[test]
    fn the_asn_budget_widens_v4_to_its_24_and_v6_to_its_48() {
        let mut r = Rotation::default();
        let budget = Budget { per_48: 16, per_asn: 10 };
        for i in 0..10u8 {
            assert_eq!(r.admit(budget, ip(&format!("198.51.100.{i}")), Some(7), 0.0), None);
        }
        let w = r.admit(budget, ip("198.51.100.200"), Some(7), 1.0).unwrap();
        assert_eq!((w.from.as_str(), w.to.as_str()), ("/32", "/24"));
        let w = r.admit(budget, ip("2001:db8:9::1"), Some(7), 1.0).unwrap();
        assert_eq!((w.from.as_str(), w.to.as_str()), ("/64", "/48"));
        // Another ASN, or none known, is not limited by this one.
        assert_eq!(r.admit(budget, ip("203.0.113.1"), Some(8), 1.0), None);
        assert_eq!(r.admit(budget, ip("203.0.113.2"), None, 1.0), None);
    }

    #[test]
    fn zero_is_no_budget() {
        let mut r = Rotation::default();
        let off = Budget { per_48: 0, per_asn: 0 };
        for i in 0..500u32 {
            assert_eq!(r.admit(off, ip(&format!("2001:db8:1:{i:x}::1")), Some(1), 0.0), None);
        }
        assert_eq!(r.counted(), (0, 0), "nothing counted when off");
    }

    #[test]
    fn the_counters_stay_bounded() {
        let mut r = Rotation::default();
        // More /48s than the bound within one minute, then in later minutes.
        for i in 0..(3 * MAX_COUNTED as u32) {
            let a = ip(&format!("2001:{:x}:{:x}::1", i >> 16, i & 0xffff));
            let at = if i < 2 * MAX_COUNTED as u32 { 0.0 } else { f64::from(i) * 100.0 };
            let _ = r.admit(Budget { per_48: 16, per_asn: 0 }, a, None, at);
            let (p48, asns) = r.counted();
            assert!(p48 <= MAX_COUNTED && asns == 0);
        }
    }

    #[test]
    fn widened_reads_its_family_from_a_display() {
        assert_eq!(Widened::of_display("2001:db8:1::/48"), Widened::of(ip("2001:db8::1")));
        assert_eq!(Widened::of_display("203.0.113.x"), Widened::of(ip("203.0.113.1")));
    }
}

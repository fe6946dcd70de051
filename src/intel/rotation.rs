//! The rotation budget (docs/profiles.md, "Rotation budget"): an attacker
//! rotating through the 65,536 /64s of one IPv6 /48 (or through the
//! addresses of one network) would make each a new subject, one profile
//! object each. So an isolate admits at most `ROTATION_BUDGET_PER_48` new
//! subjects per /48 and `ROTATION_BUDGET_PER_ASN` per ASN in each minute;
//! past either, the request's subject is widened (an IPv6 /64 to its /48, an
//! IPv4 address to its /24: `ip::widened_subject_of`) and carries
//! `subnet_rotation`.
//!
//! "New" is a subject this isolate neither holds a cached verdict for (the
//! caller's check) nor admitted within the last `ADMITTED_FOR_MS`: an
//! admitted subject is remembered, so a device counts once however many of
//! its requests arrive before its first verdict is cached, however often its
//! cached verdict expires, and with `CACHE_TTL_MS=0`. The budget counts
//! distinct subjects, not requests. Counting happens in the isolate, in three
//! LRU maps (O(1) per request, bounded), so it costs no object call; the
//! price is that K isolates of a location admit up to K times the budget
//! between them. Pure: time is an argument.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroUsize;

use lru::LruCache;
use serde::{Deserialize, Serialize};

/// `ROTATION_BUDGET_PER_48` and `ROTATION_BUDGET_PER_ASN`: new subjects per
/// minute (0: no budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_48: u32,
    pub per_asn: u32,
}

/// /48s and ASNs counted at once, each. Past it the least recently counted
/// goes (earlier minutes' counters first, as they are older; an attacker
/// spreading over more /48s than this in one minute gets their budgets
/// back, each such /48 costing them a new subject; the ASN budget still
/// holds them).
pub const MAX_COUNTED: usize = 4096;

/// Admitted subjects remembered (least recently seen out first): ~40 bytes
/// each, under 1 MB.
pub const MAX_ADMITTED: usize = 16_384;

/// How long an admitted subject stays known without a cached verdict: a
/// device that comes back within it is not counted again.
pub const ADMITTED_FOR_MS: f64 = 10.0 * MINUTE_MS;

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

/// What the budget says about a subject with no cached verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Its own subject: admitted now (and counted), or admitted before
    /// (within `ADMITTED_FOR_MS`), or no budget applies.
    Own,
    /// Past the budget: identified as its /48 or /24 (not counted: the
    /// widened subject is one object however many addresses land on it).
    /// What the profile shows is derived there (`Widened::of_display`).
    Widened,
}

/// Counts per key within the current minute, bounded to `MAX_COUNTED` keys.
struct Counts<K: Hash + Eq> {
    map: LruCache<K, (u64, u32)>,
}

impl<K: Eq + Hash> Counts<K> {
    fn new(cap: usize) -> Self {
        Counts { map: LruCache::new(NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN)) }
    }

    fn get(&self, key: &K, minute: u64) -> u32 {
        match self.map.peek(key) {
            Some((m, n)) if *m == minute => *n,
            _ => 0,
        }
    }

    /// O(1): a full map drops its least recently bumped key.
    fn bump(&mut self, key: K, minute: u64) {
        match self.map.get_mut(&key) {
            Some(entry) if entry.0 == minute => entry.1 = entry.1.saturating_add(1),
            Some(entry) => *entry = (minute, 1),
            None => {
                self.map.push(key, (minute, 1));
            }
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A subject as a number: an IPv6 /64 or an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SubjectId {
    V4(u32),
    V6(u64),
}

fn subject_id(ip: IpAddr) -> SubjectId {
    match ip {
        IpAddr::V4(v4) => SubjectId::V4(u32::from(v4)),
        IpAddr::V6(v6) => SubjectId::V6((u128::from(v6) >> 64) as u64),
    }
}

/// One isolate's counters of new subjects and the subjects it admitted.
pub struct Rotation {
    per_48: Counts<u64>,
    per_asn: Counts<u32>,
    admitted: LruCache<SubjectId, f64>,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            per_48: Counts::new(MAX_COUNTED),
            per_asn: Counts::new(MAX_COUNTED),
            admitted: LruCache::new(NonZeroUsize::new(MAX_ADMITTED).unwrap_or(NonZeroUsize::MIN)),
        }
    }
}

/// The /48 of an IPv6 address as a number (a map key without a string).
fn prefix_48(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V6(v6) => Some((u128::from(v6) >> 80) as u64),
        IpAddr::V4(_) => None,
    }
}

impl Rotation {
    /// A subject of `ip` (in `asn`) at `now` that has no cached verdict:
    /// its own subject if this isolate admitted it within `ADMITTED_FOR_MS`
    /// (not counted again) or if its /48 and ASN are within their budgets
    /// (counted, remembered); widened otherwise.
    pub fn admit(&mut self, budget: Budget, ip: IpAddr, asn: Option<u32>, now: f64) -> Admission {
        let p48 = prefix_48(ip).filter(|_| budget.per_48 > 0);
        let asn = asn.filter(|_| budget.per_asn > 0);
        if p48.is_none() && asn.is_none() {
            return Admission::Own;
        }
        let id = subject_id(ip);
        if let Some(at) = self.admitted.get_mut(&id) {
            if now - *at <= ADMITTED_FOR_MS {
                *at = now;
                return Admission::Own;
            }
        }
        let minute = (now.max(0.0) / MINUTE_MS) as u64;
        let over_48 = p48.is_some_and(|p| self.per_48.get(&p, minute) >= budget.per_48);
        let over_asn = asn.is_some_and(|a| self.per_asn.get(&a, minute) >= budget.per_asn);
        if over_48 || over_asn {
            return Admission::Widened;
        }
        if let Some(p) = p48 {
            self.per_48.bump(p, minute);
        }
        if let Some(a) = asn {
            self.per_asn.bump(a, minute);
        }
        self.admitted.push(id, now);
        Admission::Own
    }

    /// (/48s, ASNs) counted now: bounded by `MAX_COUNTED` each.
    pub fn counted(&self) -> (usize, usize) {
        (self.per_48.len(), self.per_asn.len())
    }

    /// Subjects remembered as admitted: bounded by `MAX_ADMITTED`.
    pub fn admitted(&self) -> usize {
        self.admitted.len()
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
            if r.admit(BUDGET, a, Some(64496), t0 + f64::from(i)) == Admission::Own {
                own += 1;
            }
        }
        assert_eq!(own, 16, "the budget, then every new /64 widens");
        // Another /48 has its own budget.
        assert_eq!(r.admit(BUDGET, ip("2001:db8:2::1"), Some(64496), t0), Admission::Own);
        // The next minute, the budget is back.
        assert_eq!(r.admit(BUDGET, ip("2001:db8:1:ffff::1"), Some(64496), t0 + MINUTE_MS), Admission::Own);
    }

    #[test]
    fn the_asn_budget_widens_v4_to_its_24_and_v6_to_its_48() {
        let mut r = Rotation::default();
        let budget = Budget { per_48: 16, per_asn: 10 };
        for i in 0..10u8 {
            assert_eq!(r.admit(budget, ip(&format!("198.51.100.{i}")), Some(7), 0.0), Admission::Own);
        }
        assert_eq!(r.admit(budget, ip("198.51.100.200"), Some(7), 1.0), Admission::Widened);
        assert_eq!(r.admit(budget, ip("2001:db8:9::1"), Some(7), 1.0), Admission::Widened);
        // Another ASN, or none known, is not limited by this one.
        assert_eq!(r.admit(budget, ip("203.0.113.1"), Some(8), 1.0), Admission::Own);
        assert_eq!(r.admit(budget, ip("203.0.113.2"), None, 1.0), Admission::Own);
    }

    #[test]
    fn zero_is_no_budget() {
        let mut r = Rotation::default();
        let off = Budget { per_48: 0, per_asn: 0 };
        for i in 0..500u32 {
            assert_eq!(r.admit(off, ip(&format!("2001:db8:1:{i:x}::1")), Some(1), 0.0), Admission::Own);
        }
        assert_eq!(r.counted(), (0, 0), "nothing counted when off");
        assert_eq!(r.admitted(), 0, "nothing remembered when off");
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
            assert!(r.admitted() <= MAX_ADMITTED);
        }
    }

    #[test]
    fn a_subject_counts_once_however_many_of_its_requests_come_before_its_verdict() {
        // Concurrent first requests of one device (no verdict cached yet),
        // or CACHE_TTL_MS=0: every request reaches the budget.
        let mut r = Rotation::default();
        let budget = Budget { per_48: 2, per_asn: 0 };
        for i in 0..50u32 {
            assert_eq!(r.admit(budget, ip("2001:db8:1:1::1"), None, f64::from(i)), Admission::Own);
            // Another address in the same /64 is the same subject.
            assert_eq!(r.admit(budget, ip("2001:db8:1:1::ffff"), None, f64::from(i)), Admission::Own);
        }
        assert_eq!(r.admit(budget, ip("2001:db8:1:2::1"), None, 60.0), Admission::Own, "the second device");
        assert_eq!(r.admit(budget, ip("2001:db8:1:3::1"), None, 61.0), Admission::Widened, "the budget is 2");
        // Both admitted devices stay their own for the rest of the minute and after.
        assert_eq!(r.admit(budget, ip("2001:db8:1:1::1"), None, 62.0), Admission::Own);
        assert_eq!(r.admit(budget, ip("2001:db8:1:2::1"), None, ADMITTED_FOR_MS), Admission::Own);
        // A device gone longer than ADMITTED_FOR_MS is new again (and counted).
        let later = 2.0 * ADMITTED_FOR_MS + 1.0;
        assert_eq!(r.admit(budget, ip("2001:db8:1:1::1"), None, later), Admission::Own);
        assert_eq!(r.admit(budget, ip("2001:db8:1:4::1"), None, later), Admission::Own);
        assert_eq!(r.admit(budget, ip("2001:db8:1:5::1"), None, later), Admission::Widened);
    }

    #[test]
    fn a_full_map_evicts_the_least_recently_counted_key() {
        let mut c: Counts<u64> = Counts::new(3);
        for k in [1, 2, 3] {
            c.bump(k, 0);
        }
        c.bump(1, 0);
        c.bump(4, 0); // 2 is the least recently bumped
        assert_eq!((c.get(&1, 0), c.get(&2, 0), c.get(&3, 0), c.get(&4, 0)), (2, 0, 1, 1));
        assert_eq!(c.len(), 3);
        // A counter from an earlier minute starts over.
        c.bump(1, 1);
        assert_eq!(c.get(&1, 1), 1);
    }

    #[test]
    fn widened_reads_its_family_from_a_display() {
        assert_eq!(Widened::of_display("2001:db8:1::/48"), Widened::of(ip("2001:db8::1")));
        assert_eq!(Widened::of_display("203.0.113.x"), Widened::of(ip("203.0.113.1")));
    }
}

//! Rate limits of per-route rules (`"action": "rate_limit"`, issue 18).
//!
//! One `LimiterObject` per (rule, key) counts with a sliding-window counter:
//! the current fixed window's count plus the previous window's, weighted by
//! how much of it the sliding window still covers (the estimate Cloudflare's
//! and most gateways' limiters use). Requests refused are not counted, so a
//! client that stops is free again one period later at most. One object per
//! key counts every isolate's and location's requests: the limit is exact
//! across the network, at the price of one object call per request matched
//! while under the limit (docs/policies.md says when that is the wrong tool).
//! Isolates remember a refusal until it ends (`DenyCache`), so traffic over
//! the limit costs no object call.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::rules::LimitBy;

/// What one object keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SlidingWindow {
    /// Start of the current fixed window (ms since the epoch, a multiple of the period).
    pub start_ms: f64,
    /// Requests allowed in the previous window and in the current one.
    pub prev: u32,
    pub curr: u32,
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    pub allowed: bool,
    /// Requests left now (the `r` of the `RateLimit` header).
    pub remaining: u32,
    /// Seconds until one more request would be allowed, when refused; until
    /// the current window ends otherwise (the `t` of `RateLimit`, and `Retry-After`).
    pub reset_s: u32,
}

impl SlidingWindow {
    /// Moves the windows to the one holding `now`.
    fn advance(&mut self, now: f64, period_ms: f64) {
        let start = (now / period_ms).floor() * period_ms;
        if start == self.start_ms {
            return;
        }
        // The window just before `start` is the previous one only if it is
        // the one we counted in; a longer gap leaves nothing.
        self.prev = if (start - self.start_ms - period_ms).abs() < 0.5 { self.curr } else { 0 };
        self.curr = 0;
        self.start_ms = start;
    }

    /// The sliding estimate at `now`: all of this window, and the part of
    /// the previous one the sliding window still covers.
    fn estimate(&self, now: f64, period_ms: f64) -> f64 {
        let into = ((now - self.start_ms) / period_ms).clamp(0.0, 1.0);
        f64::from(self.prev) * (1.0 - into) + f64::from(self.curr)
    }

    /// Counts one request at `now` if the limit allows it.
    pub fn take(&mut self, now: f64, limit: u32, period_s: u32) -> Taken {
        let period_ms = f64::from(period_s.max(1)) * 1000.0;
        let limit = limit.max(1);
        self.advance(now, period_ms);
        let est = self.estimate(now, period_ms);
        if est + 1.0 <= f64::from(limit) {
            self.curr = self.curr.saturating_add(1);
            let left = f64::from(limit) - self.estimate(now, period_ms);
            let to_end = (self.start_ms + period_ms - now) / 1000.0;
            Taken { allowed: true, remaining: left.max(0.0).floor() as u32, reset_s: seconds(to_end) }
        } else {
            Taken { allowed: false, remaining: 0, reset_s: seconds(self.wait_ms(now, limit, period_ms) / 1000.0) }
        }
    }

    /// How long until the estimate leaves room for one request, if none come.
    fn wait_ms(&self, now: f64, limit: u32, period_ms: f64) -> f64 {
        let room = f64::from(limit) - 1.0;
        let (prev, curr) = (f64::from(self.prev), f64::from(self.curr));
        let into = now - self.start_ms;
        if curr <= room && prev > 0.0 {
            // Within this window: prev * (1 - e/P) + curr <= room.
            let e = period_ms * (1.0 - (room - curr) / prev);
            return (e - into).max(0.0);
        }
        // In the next window the current one is the previous: curr * (1 - e/P) <= room.
        let e = if curr > 0.0 { period_ms * (1.0 - room / curr) } else { 0.0 };
        (period_ms - into) + e.max(0.0)
    }

    /// Whether the object can forget this key: nothing counted in the
    /// current or the previous window at `now`.
    pub fn idle(&self, now: f64, period_s: u32) -> bool {
        let period_ms = f64::from(period_s.max(1)) * 1000.0;
        now >= self.start_ms + 2.0 * period_ms
    }
}

/// Whole seconds, at least 1 (an HTTP delay of 0 invites a retry storm).
fn seconds(s: f64) -> u32 {
    if s.is_finite() {
        // Rounding noise (18,000.000000000004 ms) is not another second.
        ((s - 1e-6).ceil() as u32).max(1)
    } else {
        1
    }
}

/// The object counting `rule`'s requests for one key: `<rule id>|<by>:<key>`.
/// Rule ids are `[A-Za-z0-9_.-]`, so the name splits back unambiguously.
pub fn limiter_name(rule_id: &str, by: LimitBy, key: &str) -> String {
    format!("{rule_id}|{}:{key}", by.as_str())
}

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): the rule's quota and window.
pub fn policy_header(rule_id: &str, limit: u32, period_s: u32) -> String {
    format!("\"{rule_id}\";q={limit};w={period_s}")
}

/// `RateLimit`: what is left of the quota and when it resets.
pub fn state_header(rule_id: &str, taken: &Taken) -> String {
    format!("\"{rule_id}\";r={};t={}", taken.remaining, taken.reset_s)
}

/// Refusals an isolate remembers until they end, so requests over a limit
/// cost no object call. Bounded: at `MAX_DENIED` the ended ones go first,
/// then the one ending soonest.
#[derive(Debug, Default)]
pub struct DenyCache {
    until: HashMap<String, f64>,
}

pub const MAX_DENIED: usize = 10_000;

impl DenyCache {
    /// Seconds left of a remembered refusal of `name` at `now`.
    pub fn refused(&mut self, name: &str, now: f64) -> Option<u32> {
        match self.until.get(name).copied() {
            Some(t) if t > now => Some(seconds((t - now) / 1000.0)),
            Some(_) => {
                self.until.remove(name);
                None
            }
            None => None,
        }
    }

    pub fn remember(&mut self, name: &str, now: f64, reset_s: u32) {
        if self.until.len() >= MAX_DENIED && !self.until.contains_key(name) {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_DENIED {
                let soonest = self.until.iter().min_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.until.remove(&k);
                }
            }
        }
        self.until.insert(name.to_string(), now + f64::from(reset_s) * 1000.0);
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T0: f64 = 1_800_000_000_000.0; // a multiple of 60 s

    #[test]
    fn the_limit_holds_within_a_window_and_refusals_are_not_counted() {
        let mut w = SlidingWindow::default();
        for i in 0..5 {
            let t = w.take(T0 + f64::from(i) * 1000.0, 5, 60);
            assert!(t.allowed, "request {i}");
            assert_eq!(t.remaining, 4 - i);
        }
        let refused = w.take(T0 + 10_000.0, 5, 60);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(w.curr, 5, "a refusal is not counted");
        // The 5 still weigh in after this window ends: 5 * (1 - e/60) <= 4
        // at e = 12 s into the next one, 50 + 12 s from now.
        assert_eq!(refused.reset_s, 62);
        assert!(!w.take(T0 + 60_000.0, 5, 60).allowed);
        assert!(w.take(T0 + 72_000.0, 5, 60).allowed);
    }

    #[test]
    fn the_previous_window_weighs_in_as_the_window_slides() {
        let mut w = SlidingWindow::default();
        for _ in 0..10 {
            assert!(w.take(T0 + 50_000.0, 10, 60).allowed);
        }
        // 15 s into the next window: 10 * 0.75 = 7.5 counted, room for 2.
        assert!(w.take(T0 + 75_000.0, 10, 60).allowed);
        assert!(w.take(T0 + 75_000.0, 10, 60).allowed);
        let refused = w.take(T0 + 75_000.0, 10, 60);
        assert!(!refused.allowed);
        // Room for one more when 10 * (1 - e/60) + 2 <= 9: e >= 18 s, 3 s from now.
        assert_eq!(refused.reset_s, 3);
        assert!(!w.take(T0 + 77_000.0, 10, 60).allowed);
        assert!(w.take(T0 + 78_000.0, 10, 60).allowed);
        // A gap of more than a window forgets everything.
        let mut w2 = w;
        assert!(w2.take(T0 + 200_000.0, 10, 60).allowed);
        assert_eq!((w2.prev, w2.curr), (0, 1));
    }

    #[test]
    fn a_refusal_waits_into_the_next_window_when_this_one_is_full() {
        let mut w = SlidingWindow::default();
        for _ in 0..4 {
            assert!(w.take(T0 + 30_000.0, 4, 60).allowed);
        }
        let refused = w.take(T0 + 30_000.0, 4, 60);
        // 30 s to the window's end, then 4 * (1 - e/60) <= 3: e >= 15 s.
        assert_eq!(refused.reset_s, 45);
        assert!(!w.take(T0 + 74_000.0, 4, 60).allowed);
        assert!(w.take(T0 + 75_000.0, 4, 60).allowed);
    }

    #[test]
    fn idle_after_two_periods_and_odd_inputs_do_not_panic() {
        let mut w = SlidingWindow::default();
        w.take(T0, 1, 10);
        assert!(!w.idle(T0 + 19_999.0, 10) && w.idle(T0 + 20_000.0, 10));
        let mut z = SlidingWindow::default();
        assert!(z.take(T0, 0, 0).allowed, "limits and periods are at least 1");
        assert!(!z.take(T0, 0, 0).allowed);
        let mut n = SlidingWindow::default();
        let t = n.take(f64::NAN, 3, 60);
        assert!(t.reset_s >= 1);
    }

    #[test]
    fn headers_and_names() {
        let t = Taken { allowed: false, remaining: 0, reset_s: 12 };
        assert_eq!(policy_header("login", 5, 60), "\"login\";q=5;w=60");
        assert_eq!(state_header("login", &t), "\"login\";r=0;t=12");
        assert_eq!(limiter_name("login", LimitBy::Asn, "asn:64496"), "login|asn:asn:64496");
    }

    #[test]
    fn the_deny_cache_remembers_until_the_end_and_stays_bounded() {
        let mut c = DenyCache::default();
        c.remember("a", T0, 3);
        assert_eq!(c.refused("a", T0 + 1_000.0), Some(2));
        assert_eq!(c.refused("a", T0 + 3_000.0), None);
        assert!(c.is_empty(), "an ended refusal is dropped when read");
        for i in 0..MAX_DENIED + 10 {
            c.remember(&format!("k{i}"), T0, 1 + (i % 50) as u32);
        }
        assert_eq!(c.len(), MAX_DENIED);
        assert!(c.refused(&format!("k{}", MAX_DENIED + 9), T0).is_some(), "the newest is kept");
    }
}

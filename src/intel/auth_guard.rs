//! Limits guessing of the admin token: failed authentications are counted
//! per subject (client IP subject key) in a fixed one-minute window, and a
//! subject that has failed `MAX_FAILURES_PER_WINDOW` times is refused (429)
//! until its window ends.
//!
//! The counts live in the isolate, in a bounded LRU map: counting a failure
//! costs no object call or storage write, so the limiter itself is no
//! unbounded unauthenticated cost. It is per isolate (an attacker spread over
//! many Cloudflare locations gets this allowance in each, and an IPv6 client
//! gets it per /64 it uses); the subject's profile records every failure as
//! well (the `auth_failures` signal, raising its threat for site requests),
//! but the API under the prefix does not consult that verdict.

use std::num::NonZeroUsize;

use lru::LruCache;

/// Failed authentications a subject may make per window. A person mistyping
/// or pasting a stale token fails a few times; 10 a minute (14,400 a day)
/// keeps guessing a 16+ character random token hopeless while never getting
/// in the way of an operator fixing a typo.
pub const MAX_FAILURES_PER_WINDOW: u32 = 10;
/// The counting window: one minute from a subject's first failure.
pub const WINDOW_MS: f64 = 60_000.0;
/// Subjects tracked per isolate at most (~100 bytes each: about 1 MB). Past
/// it the least recently failing subject is forgotten, not the map grown.
pub const MAX_TRACKED_SUBJECTS: usize = 10_000;

pub struct AuthGuard {
    /// subject key -> (window start ms, failures in the window)
    map: LruCache<String, (f64, u32)>,
}

impl Default for AuthGuard {
    fn default() -> Self {
        AuthGuard::new(MAX_TRACKED_SUBJECTS)
    }
}

impl AuthGuard {
    pub fn new(capacity: usize) -> AuthGuard {
        AuthGuard { map: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)) }
    }

    /// `Some(seconds)` to wait when `subject` may not try now (its
    /// `Retry-After`, at least 1), `None` when it may.
    pub fn locked_for(&mut self, subject: &str, now: f64) -> Option<u32> {
        let (start, failures) = *self.map.peek(subject)?;
        let ends = start + WINDOW_MS;
        if now >= ends || now < start {
            self.map.pop(subject);
            return None;
        }
        (failures >= MAX_FAILURES_PER_WINDOW).then(|| (((ends - now) / 1000.0).ceil() as u32).max(1))
    }

    /// Counts one failed authentication of `subject` at `now`.
    pub fn failed(&mut self, subject: &str, now: f64) {
        match self.map.get_mut(subject) {
            Some((start, failures)) if now >= *start && now < *start + WINDOW_MS => {
                *failures = failures.saturating_add(1);
            }
            _ => {
                self.map.put(subject.to_string(), (now, 1));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_780_000_000_000.0;

    #[test]
    fn the_eleventh_failure_within_a_minute_is_refused() {
        let mut g = AuthGuard::default();
        for i in 0..MAX_FAILURES_PER_WINDOW {
            let now = T0 + f64::from(i) * 1000.0;
            assert_eq!(g.locked_for("203.0.113.7", now), None, "attempt {}", i + 1);
            g.failed("203.0.113.7", now);
        }
        // The 11th attempt, 10 s after the first failure: wait the remaining 50 s.
        assert_eq!(g.locked_for("203.0.113.7", T0 + 10_000.0), Some(50));
        assert_eq!(g.locked_for("203.0.113.7", T0 + 59_500.0), Some(1));
        // Another subject is not affected.
        assert_eq!(g.locked_for("203.0.113.8", T0 + 10_000.0), None);
        // The window ends: a fresh allowance.
        assert_eq!(g.locked_for("203.0.113.7", T0 + WINDOW_MS), None);
        g.failed("203.0.113.7", T0 + WINDOW_MS);
        assert_eq!(g.locked_for("203.0.113.7", T0 + WINDOW_MS + 1.0), None);
    }

    #[test]
    fn nine_failures_and_a_pause_do_not_lock() {
        let mut g = AuthGuard::default();
        for i in 0..9 {
            g.failed("s", T0 + f64::from(i));
        }
        assert_eq!(g.locked_for("s", T0 + 100.0), None);
        // Failures after the window count in a new window.
        g.failed("s", T0 + WINDOW_MS + 5.0);
        assert_eq!(g.locked_for("s", T0 + WINDOW_MS + 6.0), None);
    }

    #[test]
    fn the_map_is_bounded() {
        let mut g = AuthGuard::new(100);
        for i in 0..10_000 {
            g.failed(&format!("198.51.{}.{}", i / 256, i % 256), T0);
        }
        assert_eq!(g.len(), 100);
        // A clock that went backwards never locks forever.
        for _ in 0..MAX_FAILURES_PER_WINDOW {
            g.failed("s", T0);
        }
        assert!(g.locked_for("s", T0 + 1.0).is_some());
        assert_eq!(g.locked_for("s", T0 - 1.0), None);
    }
}

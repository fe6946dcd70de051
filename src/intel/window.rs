//! A sliding-window counter in constant space: the count of the current fixed
//! window plus the previous one weighted by how much of it still overlaps the
//! sliding window (the estimate Cloudflare's own rate limiting uses). Two
//! numbers per counter keep per-profile state small and updates O(1).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SlidingCount {
    /// Start (ms) of the current fixed window.
    start: f64,
    current: u32,
    previous: u32,
}

impl SlidingCount {
    /// Adds `n` events at `now` to a window of `width_ms`.
    pub fn add(&mut self, now: f64, width_ms: f64, n: u32) {
        self.roll(now, width_ms);
        self.current = self.current.saturating_add(n);
    }

    /// The estimated count over the last `width_ms` before `now`.
    pub fn estimate(&self, now: f64, width_ms: f64) -> f64 {
        let mut w = *self;
        w.roll(now, width_ms);
        if width_ms <= 0.0 {
            return f64::from(w.current);
        }
        let into = ((now - w.start) / width_ms).clamp(0.0, 1.0);
        f64::from(w.previous) * (1.0 - into) + f64::from(w.current)
    }

    fn roll(&mut self, now: f64, width_ms: f64) {
        if width_ms <= 0.0 || !now.is_finite() {
            return;
        }
        if self.start == 0.0 && self.current == 0 && self.previous == 0 {
            self.start = (now / width_ms).floor() * width_ms;
            return;
        }
        let elapsed = now - self.start;
        if elapsed < width_ms {
            // Also covers a clock that went backwards: count into the current window.
            return;
        }
        let windows = (elapsed / width_ms).floor();
        self.previous = if windows < 2.0 { self.current } else { 0 };
        self.current = 0;
        self.start += windows * width_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: f64 = 60_000.0;

    #[test]
    fn counts_within_and_across_windows() {
        let mut c = SlidingCount::default();
        let t0 = 1_699_999_980_000.0; // a whole minute
        for i in 0..60 {
            c.add(t0 + f64::from(i) * 500.0, MIN, 1);
        }
        assert_eq!(c.estimate(t0 + 30_000.0, MIN), 60.0);
        // 15 s into the next window, 3/4 of the previous still counts.
        assert_eq!(c.estimate(t0 + MIN + 15_000.0, MIN), 45.0);
        c.add(t0 + MIN + 15_000.0, MIN, 10);
        assert_eq!(c.estimate(t0 + MIN + 15_000.0, MIN), 55.0);
        // Two windows later everything has gone.
        assert_eq!(c.estimate(t0 + 3.0 * MIN, MIN), 0.0);
    }

    #[test]
    fn long_gap_resets() {
        let mut c = SlidingCount::default();
        c.add(0.5 * MIN, MIN, 5);
        c.add(100.0 * MIN, MIN, 1);
        assert_eq!(c.estimate(100.0 * MIN, MIN), 1.0);
    }

    #[test]
    fn backwards_clock_and_nonsense_do_not_panic() {
        let mut c = SlidingCount::default();
        c.add(10.0 * MIN, MIN, 1);
        c.add(5.0 * MIN, MIN, 1);
        assert_eq!(c.estimate(10.0 * MIN, MIN), 2.0);
        c.add(f64::NAN, MIN, u32::MAX);
        c.add(f64::INFINITY, 0.0, 1);
        assert!(c.estimate(10.0 * MIN, MIN) >= 2.0);
    }
}

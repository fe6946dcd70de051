//! Which patterns, trends and correlations the hub pushes to the
//! intelligence stream: their news keys (`news_key` on each `intel::views`
//! type) and `changed`.
//!
//! Patterns are pushed when they are new (their `<kind>:<key>` was not in the
//! window last tick) and anomalies in the slide they occur; trends and correlations are recomputed over the whole window at
//! every tick, so pushing them every tick would repeat the same news. Each is
//! reduced to a key that changes only when what it says changes (a metric's
//! trend direction; a correlation's pair, sign and strength band), and only
//! keys absent from the previous tick are pushed.

use super::views::{Correlation, Direction, Pattern, Trend};

/// |r| at or above this is called strong; below it moderate.
const STRONG_R: f64 = 0.8;
/// Below this |r| a pair is not news at all: the views report every pair,
/// and one near zero changes sign from tick to tick.
const NEWS_R: f64 = 0.5;

impl Pattern {
    /// The key of a pattern (`<kind>:<key>`): a pattern is pushed when its
    /// key was not in the window at the previous tick.
    pub fn news_key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.key)
    }
}

impl Trend {
    /// The key of a trend that is worth a push, or `None` for a flat one.
    pub fn news_key(&self) -> Option<String> {
        if self.direction == Direction::Flat {
            return None;
        }
        Some(format!("trend:{}:{}", self.metric, self.direction.as_str()))
    }
}

impl Correlation {
    /// The key of a correlation worth a push: its kind, what it is about, and
    /// for Pearson pairs the sign and strength band of r (not r itself, which
    /// moves a little every tick); `None` for a pair with |r| under `NEWS_R`.
    pub fn news_key(&self) -> Option<String> {
        Some(match self {
            Correlation::Pearson { a, b, r, .. } => {
                if r.is_nan() || r.abs() < NEWS_R {
                    return None;
                }
                let sign = if *r < 0.0 { "negative" } else { "positive" };
                let band = if r.abs() >= STRONG_R { "strong" } else { "moderate" };
                format!("pearson:{a}~{b}:{sign}:{band}")
            }
            Correlation::TimeOfDayPeak { hour_utc, .. } => format!("time_of_day_peak:{hour_utc}"),
            Correlation::RegionThreat { key, .. } => format!("region_threat:{key}"),
        })
    }
}

/// The items whose keys were not among `previous`, and the keys of all of
/// `current` (to keep for the next tick). Items without a key are skipped.
pub fn changed<'a, T: Clone + 'a>(
    previous: &[String],
    current: impl IntoIterator<Item = (Option<String>, &'a T)>,
) -> (Vec<T>, Vec<String>) {
    let mut fresh = Vec::new();
    let mut keys = Vec::new();
    for (key, item) in current {
        let Some(key) = key else { continue };
        if !previous.contains(&key) && !keys.contains(&key) {
            fresh.push(item.clone());
        }
        keys.push(key);
    }
    keys.sort();
    keys.dedup();
    (fresh, keys)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::intel::views::{PatternKind, Severity};

    fn trend(direction: Direction, slope: f64, change_rate: f64) -> Trend {
        Trend { change_rate, direction, metric: "request_rate".into(), points: 5, slope }
    }

    fn trends(ts: &[Trend]) -> Vec<(Option<String>, &Trend)> {
        ts.iter().map(|t| (t.news_key(), t)).collect()
    }

    #[test]
    fn a_trend_is_pushed_when_it_appears_or_turns_not_every_tick() {
        let rising = trend(Direction::Up, 3.0, 0.4);
        let (fresh, keys) = changed(&[], trends(std::slice::from_ref(&rising)));
        assert_eq!(fresh, vec![rising.clone()]);
        assert_eq!(keys, vec!["trend:request_rate:up".to_string()]);
        // Next tick: still rising, a slightly different slope: nothing new.
        let still = trend(Direction::Up, 3.2, 0.45);
        let (fresh, keys) = changed(&keys, trends(&[still]));
        assert!(fresh.is_empty());
        // It turns: pushed again.
        let falling = trend(Direction::Down, -2.0, -0.3);
        let (fresh, keys) = changed(&keys, trends(std::slice::from_ref(&falling)));
        assert_eq!(fresh, vec![falling]);
        // Flat trends are not news, and a flat tick forgets the old direction.
        let flat = trend(Direction::Flat, 0.0, 0.0);
        let (fresh, keys) = changed(&keys, trends(&[flat]));
        assert!(fresh.is_empty() && keys.is_empty());
        let (fresh, _) = changed(&keys, trends(std::slice::from_ref(&rising)));
        assert_eq!(fresh, vec![rising], "rising again after flat is news again");
    }

    #[test]
    fn a_correlation_is_pushed_when_its_sign_or_band_changes() {
        let c = |r: f64| Correlation::Pearson { a: "request_rate".into(), b: "mean_risk".into(), r, points: 30 };
        fn key(v: &Correlation) -> (Option<String>, &Correlation) {
            (v.news_key(), v)
        }
        let (first, first_keys) = (c(0.85), vec![]);
        let (fresh, keys) = changed(&first_keys, [key(&first)]);
        assert_eq!(fresh.len(), 1);
        assert_eq!(keys, vec!["pearson:request_rate~mean_risk:positive:strong".to_string()]);
        let (fresh, keys) = changed(&keys, [key(&c(0.9))]);
        assert!(fresh.is_empty(), "same pair, sign and band");
        let (fresh, keys) = changed(&keys, [key(&c(0.6))]);
        assert_eq!(fresh.len(), 1, "strong to moderate");
        let (fresh, keys) = changed(&keys, [key(&c(-0.6))]);
        assert_eq!(fresh.len(), 1, "sign flipped");
        // Near zero, r flips sign with noise: not news either way.
        let (fresh, keys) = changed(&keys, [key(&c(0.1))]);
        let (fresh2, _) = changed(&keys, [key(&c(-0.1))]);
        assert!(fresh.is_empty() && fresh2.is_empty());
        assert_eq!(c(f64::NAN).news_key(), None, "an undefined r is no news");
        let region = Correlation::RegionThreat { key: "country:DE".into(), mean_threat: 80.0, samples: 12 };
        let peak = Correlation::TimeOfDayPeak { hour_utc: 14, requests: 900.0, mean: 100.0 };
        assert_eq!(region.news_key().as_deref(), Some("region_threat:country:DE"));
        assert_eq!(peak.news_key().as_deref(), Some("time_of_day_peak:14"));
    }

    #[test]
    fn a_pattern_key_is_its_kind_and_key() {
        let p = Pattern {
            description: String::new(),
            ips: vec![],
            key: "AS14061".into(),
            kind: PatternKind::HighRiskAsn,
            severity: Severity::Medium,
            support: 0,
        };
        assert_eq!(p.news_key(), "high_risk_asn:AS14061");
    }
}

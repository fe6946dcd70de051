//! Which trends and correlations the hub pushes to the intelligence stream.
//!
//! Patterns are pushed when they are new and anomalies in the slide they
//! occur; trends and correlations are recomputed over the whole window at
//! every tick, so pushing them every tick would repeat the same news. Each is
//! reduced to a key that changes only when what it says changes (a metric's
//! trend direction; a correlation's pair, sign and strength band), and only
//! keys absent from the previous tick are pushed.

use serde_json::Value;

/// |r| at or above this is called strong; below it moderate.
const STRONG_R: f64 = 0.8;
/// Below this |r| a pair is not news at all: the views report every pair,
/// and one near zero changes sign from tick to tick.
const NEWS_R: f64 = 0.5;

/// The key of a trend that is worth a push, or `None` for a flat one.
pub fn trend_key(t: &Value) -> Option<String> {
    let direction = t.get("direction").and_then(Value::as_str)?;
    if direction == "flat" {
        return None;
    }
    let metric = t.get("metric").and_then(Value::as_str).unwrap_or("");
    Some(format!("trend:{metric}:{direction}"))
}

/// The key of a correlation worth a push: its kind, what it is about, and
/// for Pearson pairs the sign and strength band of r (not r itself, which
/// moves a little every tick); `None` for a pair with |r| under `NEWS_R`.
pub fn correlation_key(c: &Value) -> Option<String> {
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Some(match c.get("kind").and_then(Value::as_str).unwrap_or("") {
        "pearson" => {
            let r = c.get("r").and_then(Value::as_f64).filter(|r| r.abs() >= NEWS_R)?;
            let sign = if r < 0.0 { "negative" } else { "positive" };
            let band = if r.abs() >= STRONG_R { "strong" } else { "moderate" };
            format!("pearson:{}~{}:{sign}:{band}", s("a"), s("b"))
        }
        "time_of_day_peak" => {
            format!("time_of_day_peak:{}", c.get("hourUtc").and_then(Value::as_u64).unwrap_or(0))
        }
        kind => format!("{kind}:{}", s("key")),
    })
}

/// The items whose keys were not among `previous`, and the keys of all of
/// `current` (to keep for the next tick). Items without a key are skipped.
pub fn changed<'a>(
    previous: &[String],
    current: impl IntoIterator<Item = (Option<String>, &'a Value)>,
) -> (Vec<Value>, Vec<String>) {
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
    use serde_json::json;

    fn trends(ts: &[Value]) -> Vec<(Option<String>, &Value)> {
        ts.iter().map(|t| (trend_key(t), t)).collect()
    }

    #[test]
    fn a_trend_is_pushed_when_it_appears_or_turns_not_every_tick() {
        let rising = json!({"metric": "request_count", "direction": "rising", "slope": 3.0, "changeRate": 0.4});
        let (fresh, keys) = changed(&[], trends(std::slice::from_ref(&rising)));
        assert_eq!(fresh, vec![rising.clone()]);
        // Next tick: still rising, a slightly different slope: nothing new.
        let still = json!({"metric": "request_count", "direction": "rising", "slope": 3.2, "changeRate": 0.45});
        let (fresh, keys) = changed(&keys, trends(&[still]));
        assert!(fresh.is_empty());
        // It turns: pushed again.
        let falling = json!({"metric": "request_count", "direction": "falling", "slope": -2.0, "changeRate": -0.3});
        let (fresh, keys) = changed(&keys, trends(std::slice::from_ref(&falling)));
        assert_eq!(fresh, vec![falling]);
        // Flat trends are not news, and a flat tick forgets the old direction.
        let flat = json!({"metric": "request_count", "direction": "flat"});
        let (fresh, keys) = changed(&keys, trends(&[flat]));
        assert!(fresh.is_empty() && keys.is_empty());
        let (fresh, _) = changed(&keys, trends(std::slice::from_ref(&rising)));
        assert_eq!(fresh, vec![rising], "rising again after flat is news again");
    }

    #[test]
    fn a_correlation_is_pushed_when_its_sign_or_band_changes() {
        let c = |r: f64| json!({"kind": "pearson", "a": "request_count", "b": "error_rate", "r": r, "points": 30});
        fn key(v: &Value) -> (Option<String>, &Value) {
            (correlation_key(v), v)
        }
        let (first, first_keys) = (c(0.85), vec![]);
        let (fresh, keys) = changed(&first_keys, [key(&first)]);
        assert_eq!(fresh.len(), 1);
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
        let region = json!({"kind": "region_threat", "key": "country:DE", "meanThreat": 80.0, "samples": 12});
        let peak = json!({"kind": "time_of_day_peak", "hourUtc": 14, "requests": 900});
        assert_eq!(correlation_key(&region).as_deref(), Some("region_threat:country:DE"));
        assert_eq!(correlation_key(&peak).as_deref(), Some("time_of_day_peak:14"));
        assert_eq!(correlation_key(&json!("garbage")).as_deref(), Some(":"), "no panic on a shape it does not know");
    }
}

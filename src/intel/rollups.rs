//! The KV rollup keys and how history reads them back (pure: the hub writes
//! the keys, `edge::api::analytics::history` lists them, both through here).
//!
//! KV's list has a prefix, a limit of 1,000 keys a page and a cursor, nothing
//! else: no start key, no reverse order. So keys are bucketed by hour and a
//! history read lists only the hour prefixes its range covers, newest hour
//! first, within a fixed budget of list calls. Its cost depends on the range
//! asked for (at most `HISTORY_MAX_MS`), never on how much history the TTL
//! keeps (issue 15, item 11: a flat prefix listed oldest first never reached
//! the newest hour once a week of 60 s slides had accumulated).
//!
//! Keys (`intel::keys::slide_key`): `metrics:v2:<name>:<hour start>:<slide
//! start>:<shard>`, so lexicographic order is time order within an hour; the
//! value is also in the key's metadata (`v`, and the
//! weight `n` it was measured over), so a page of a list is a page of points.

use std::collections::BTreeMap;

use super::keys::{hour_of, hour_prefix, parse_slide_key, HOUR_S};

/// The longest range one history call covers; a longer one is clamped to
/// its newest `HISTORY_MAX_MS` and says so.
pub const HISTORY_MAX_MS: f64 = 24.0 * 3_600_000.0;
/// KV list calls one history call may make (each returns at most 1,000 keys).
/// A Worker invocation may make 1,000 KV operations; this keeps one history
/// read far from that whatever the TTL, slide length or shard count.
pub const HISTORY_LIST_CALLS: usize = 48;
/// Keys per list page (KV's maximum).
pub const LIST_PAGE: u64 = 1000;

/// The range one history call reads, in ms since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRange {
    pub start_ms: f64,
    pub end_ms: f64,
    /// True when the range asked for was longer than `HISTORY_MAX_MS`.
    pub clamped: bool,
}

impl HistoryRange {
    pub fn new(start_ms: f64, end_ms: f64) -> HistoryRange {
        let clamped = end_ms - start_ms > HISTORY_MAX_MS;
        let start_ms = if clamped { end_ms - HISTORY_MAX_MS } else { start_ms };
        HistoryRange { start_ms, end_ms, clamped }
    }

    /// The hour buckets the range touches, newest first.
    pub fn hours(&self) -> Vec<i64> {
        if self.end_ms < self.start_ms {
            return Vec::new();
        }
        let first = hour_of((self.start_ms / 1000.0).floor() as i64);
        let last = hour_of((self.end_ms / 1000.0).floor() as i64);
        let mut out = Vec::new();
        let mut h = last;
        while h >= first {
            out.push(h);
            h -= HOUR_S;
        }
        out
    }
}

/// One value read from a key: the shard that wrote it, the value and its weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    pub shard: u32,
    pub v: f64,
    pub n: f64,
}

/// A history read in progress: which prefix to list next, what was read.
/// Hours are read newest first; an hour is kept only when all its pages
/// were read, so what is returned is always one contiguous, complete range.
#[derive(Debug, Clone)]
pub struct HistoryScan {
    name: String,
    range: HistoryRange,
    hours: Vec<i64>,
    next_hour: usize,
    calls: usize,
    /// Points of the hour being read (discarded if the budget ends inside it).
    current: Vec<(i64, Part)>,
    points: BTreeMap<i64, Vec<Part>>,
    /// Start (s) of the oldest hour read completely.
    covered_from: Option<i64>,
    out_of_budget: bool,
}

/// What a history read returns.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// `(slide start ms, parts)` oldest first.
    pub points: Vec<(f64, Vec<Part>)>,
    /// The range whose keys were all read (start > end: nothing could be read).
    pub covered_start_ms: f64,
    pub covered_end_ms: f64,
    /// True when less than the range asked for was read (too long, or the
    /// list budget ran out).
    pub clamped: bool,
    pub list_calls: usize,
}

impl HistoryScan {
    pub fn new(name: &str, start_ms: f64, end_ms: f64) -> HistoryScan {
        let range = HistoryRange::new(start_ms, end_ms);
        HistoryScan {
            name: name.to_string(),
            hours: range.hours(),
            range,
            next_hour: 0,
            calls: 0,
            current: Vec::new(),
            points: BTreeMap::new(),
            covered_from: None,
            out_of_budget: false,
        }
    }

    /// The prefix the next list call is for (with the cursor of the previous
    /// page if that page was not the hour's last); `None`: done.
    pub fn prefix(&mut self) -> Option<String> {
        let hour = *self.hours.get(self.next_hour)?;
        if self.calls >= HISTORY_LIST_CALLS {
            self.out_of_budget = true;
            return None;
        }
        Some(hour_prefix(&self.name, hour))
    }

    /// One page of the hour `prefix` named: `(key, v, n)` for each key.
    pub fn page<'a>(&mut self, keys: impl IntoIterator<Item = (&'a str, Option<f64>, Option<f64>)>, complete: bool) {
        self.calls += 1;
        for (key, v, n) in keys {
            let (Some((start, shard)), Some(v)) = (parse_slide_key(&self.name, key), v) else { continue };
            let at = start as f64 * 1000.0;
            if at >= self.range.start_ms && at <= self.range.end_ms && v.is_finite() {
                let n = n.filter(|n| n.is_finite() && *n >= 0.0).unwrap_or(0.0);
                self.current.push((start, Part { shard, v, n }));
            }
        }
        if complete {
            for (start, part) in self.current.drain(..) {
                self.points.entry(start).or_default().push(part);
            }
            self.covered_from = self.hours.get(self.next_hour).copied();
            self.next_hour += 1;
        }
    }

    pub fn finish(self) -> History {
        let clamped = self.range.clamped || self.out_of_budget;
        // Read completely: from the oldest complete hour (or the range's
        // start, if later) to the range's end.
        let covered_start_ms = match (self.out_of_budget, self.covered_from) {
            (false, _) => self.range.start_ms,
            (true, Some(h)) => (h as f64 * 1000.0).max(self.range.start_ms),
            (true, None) => self.range.end_ms,
        };
        History {
            points: self.points.into_iter().map(|(s, parts)| (s as f64 * 1000.0, parts)).collect(),
            covered_start_ms,
            covered_end_ms: self.range.end_ms,
            clamped,
            list_calls: self.calls,
        }
    }
}

/// How one slide's values of a metric from several hub shards combine
/// (issue 15, item 12). Shards partition the subjects (`shard_of`), so counts
/// of requests, events and distinct subjects add up exactly; a share or a
/// mean is weighted by what it was measured over (its `n`); a gauge of the
/// hubs' own work (lag, durations) takes the worst shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    Sum,
    Weighted,
    Max,
}

/// The merge rule of a metric of `analytics::METRIC_NAMES`.
pub fn merge_rule(name: &str) -> Merge {
    match name {
        "error_rate" | "high_risk_share" | "degraded_share" | "mean_risk" | "origin_latency_ms"
        | "consult_latency_ms" => Merge::Weighted,
        "alarm_lag_ms" | "kv_write_latency_ms" | "tick_duration_ms" => Merge::Max,
        // Counts, and `stream_clients` (only shard 0 has it, from the stream
        // root's answer; the others count 0).
        _ => Merge::Sum,
    }
}

/// The weight a slide's value of `name` was measured over (stored next to
/// the value as `n`): requests for shares, measured latencies for means, 1
/// otherwise.
pub fn weight(p: &crate::intel::analytics::SlidePoint, name: &str) -> f64 {
    match name {
        "error_rate" | "high_risk_share" | "degraded_share" | "mean_risk" => p.requests as f64,
        "origin_latency_ms" => p.origin_latency.count as f64,
        "consult_latency_ms" => p.consult_latency.count as f64,
        _ => 1.0,
    }
}

/// One slide's value of `name` from the parts the shards wrote (`None`: no part).
/// A weighted metric whose weights are all 0 (no request in any shard) is
/// the plain mean of its parts (all 0 for shares).
pub fn merge(name: &str, parts: &[Part]) -> Option<f64> {
    if parts.is_empty() {
        return None;
    }
    Some(match merge_rule(name) {
        Merge::Sum => parts.iter().map(|p| p.v).sum(),
        Merge::Max => parts.iter().map(|p| p.v).fold(f64::NEG_INFINITY, f64::max),
        Merge::Weighted => {
            let n: f64 = parts.iter().map(|p| p.n).sum();
            if n > 0.0 {
                parts.iter().map(|p| p.v * p.n).sum::<f64>() / n
            } else {
                parts.iter().map(|p| p.v).sum::<f64>() / parts.len() as f64
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::intel::keys::slide_key;

    #[test]
    fn a_range_is_clamped_to_a_day_and_lists_its_hours_newest_first() {
        let end = 1_700_003_700_000.0; // 01:15 into hour 1699999200+3600
        let r = HistoryRange::new(end - 3_600_000.0, end);
        assert!(!r.clamped);
        assert_eq!(r.hours(), vec![1_700_002_800, 1_699_999_200]);
        let week = HistoryRange::new(end - 7.0 * 86_400_000.0, end);
        assert!(week.clamped);
        assert_eq!(week.start_ms, end - HISTORY_MAX_MS);
        assert_eq!(week.hours().len(), 25);
        assert!(HistoryRange::new(end, end - 1.0).hours().is_empty());
    }

    /// Drives a scan over a simulated KV holding `keys` (sorted), with
    /// pages of `LIST_PAGE`; returns the result.
    fn run(name: &str, keys: &[String], start: f64, end: f64) -> History {
        let mut scan = HistoryScan::new(name, start, end);
        let mut offset = 0usize;
        let mut last_prefix = String::new();
        while let Some(prefix) = scan.prefix() {
            if prefix != last_prefix {
                offset = 0;
                last_prefix = prefix.clone();
            }
            let matching: Vec<&String> = keys.iter().filter(|k| k.starts_with(&prefix)).collect();
            let page: Vec<&String> = matching.iter().skip(offset).take(LIST_PAGE as usize).copied().collect();
            offset += page.len();
            let complete = offset >= matching.len();
            scan.page(page.iter().map(|k| (k.as_str(), Some(1.0), Some(1.0))), complete);
        }
        scan.finish()
    }

    #[test]
    fn the_newest_hour_costs_a_few_list_calls_whatever_the_ttl() {
        // Eight days of 60 s slides (11,520 keys), then the default last hour.
        let now_s = 1_700_003_700i64;
        let now_s = now_s - now_s % 60;
        let keys: Vec<String> = (0..11_520).map(|i| slide_key("request_count", now_s - i * 60, 0)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        let end = now_s as f64 * 1000.0;
        let h = run("request_count", &sorted, end - 3_600_000.0, end);
        assert_eq!(h.points.len(), 61, "every slide of the hour, both ends included");
        assert_eq!(h.list_calls, 2, "one call per hour bucket");
        assert!(!h.clamped);
        // A week asked for: clamped to a day, 25 buckets, read in 25 calls.
        let w = run("request_count", &sorted, end - 7.0 * 86_400_000.0, end);
        assert!(w.clamped);
        assert_eq!(w.list_calls, 25);
        assert_eq!(w.points.len(), 24 * 60 + 1);
        assert_eq!(w.covered_start_ms, end - HISTORY_MAX_MS);
    }

    #[test]
    fn the_list_budget_ends_on_a_whole_hour_and_says_what_was_covered() {
        // 1 s slides from 4 shards: 14,400 keys an hour, 15 pages each, so a
        // day is more than the budget: the newest hours are read whole, the
        // range covered says from where, and no partial hour is returned.
        let end_s = 1_700_006_400i64; // an hour boundary + 0
        let mut keys = Vec::new();
        for i in 0..(5 * 3600) {
            for shard in 0..4 {
                keys.push(slide_key("m", end_s - 1 - i, shard));
            }
        }
        keys.sort();
        let end = end_s as f64 * 1000.0 - 1.0;
        let h = run("m", &keys, end - HISTORY_MAX_MS, end);
        assert!(h.clamped);
        assert!(h.list_calls <= HISTORY_LIST_CALLS);
        // 48 calls: 3 whole hours (45 calls), the 4th hour incomplete.
        assert_eq!(h.list_calls, HISTORY_LIST_CALLS);
        assert_eq!(h.covered_start_ms, (end_s - 3 * 3600) as f64 * 1000.0);
        assert_eq!(h.points.len(), 3 * 3600);
        assert!(h.points.iter().all(|(at, parts)| *at >= h.covered_start_ms && parts.len() == 4));
    }

    fn part(shard: u32, v: f64, n: f64) -> Part {
        Part { shard, v, n }
    }

    #[test]
    fn shard_values_merge_by_metric() {
        use crate::intel::analytics::METRIC_NAMES;
        // Counts add: 3 + 5 requests, 2 + 4 distinct subjects (disjoint by shard).
        assert_eq!(merge("request_count", &[part(0, 3.0, 1.0), part(1, 5.0, 1.0)]), Some(8.0));
        assert_eq!(merge("active_profiles", &[part(0, 2.0, 1.0), part(2, 4.0, 1.0)]), Some(6.0));
        // Shares by their requests: 1 error in 10 and 3 in 30 is 4 in 40, not 0.1 + 0.1.
        assert_eq!(merge("error_rate", &[part(0, 0.1, 10.0), part(1, 0.1, 30.0)]), Some(0.1));
        assert_eq!(merge("error_rate", &[part(0, 0.5, 2.0), part(1, 0.0, 6.0)]), Some(0.125));
        // Means by their counts: 100 ms over 1 and 200 ms over 3 is 175 ms.
        assert_eq!(merge("origin_latency_ms", &[part(0, 100.0, 1.0), part(1, 200.0, 3.0)]), Some(175.0));
        assert_eq!(merge("high_risk_share", &[part(0, 0.0, 0.0), part(1, 0.0, 0.0)]), Some(0.0));
        // The hubs' own gauges: the worst shard.
        assert_eq!(merge("alarm_lag_ms", &[part(0, 12.0, 1.0), part(3, 40.0, 1.0)]), Some(40.0));
        assert_eq!(merge("tick_duration_ms", &[part(0, 5.0, 1.0), part(1, 2.0, 1.0)]), Some(5.0));
        assert_eq!(merge("request_count", &[]), None);
        // One shard: its value, whatever the rule.
        for name in METRIC_NAMES {
            assert_eq!(merge(name, &[part(0, 7.0, 3.0)]), Some(7.0), "{name}");
        }
        let p = crate::intel::analytics::SlidePoint { requests: 40, ..Default::default() };
        assert_eq!(weight(&p, "error_rate"), 40.0);
        assert_eq!(weight(&p, "request_count"), 1.0);
    }

    #[test]
    fn keys_outside_the_range_or_malformed_are_left_out() {
        let keys = [
            slide_key("m", 7200, 0),
            slide_key("m", 7260, 0),
            "metrics:v2:m:0000007200:garbage:00".to_string(),
            slide_key("m", 7320, 1),
        ];
        let mut scan = HistoryScan::new("m", 7_250_000.0, 7_400_000.0);
        assert_eq!(scan.prefix().as_deref(), Some("metrics:v2:m:0000007200:"));
        scan.page(keys.iter().map(|k| (k.as_str(), Some(2.0), None)), true);
        assert_eq!(scan.prefix(), None);
        let h = scan.finish();
        let starts: Vec<f64> = h.points.iter().map(|(s, _)| *s).collect();
        assert_eq!(starts, vec![7_260_000.0, 7_320_000.0]);
        assert!(!h.clamped);
    }
}

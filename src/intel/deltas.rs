//! Slide deltas: the tiered aggregation's unit (docs/analytics.md, "Tiers").
//! An isolate folds each request's `Sample` into a per-shard, per-slide delta
//! (the same `Slide` buckets the hub keeps) instead of queueing the raw
//! sample; an aggregator object adds the deltas of many isolates together
//! (`SlideDeltas::absorb`); the hub shard merges one summary per aggregator
//! and forward period into its window (`apply`). Every step is the same pure
//! `Slide` arithmetic, so counts, sketches (HyperLogLog, histograms) and
//! member sets come out as if the hub had ingested each sample itself
//! (within the slide's key and byte bounds, as before).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::analytics::{forgotten_key, Aggregator, AnalyticsConfig, Sample, Slide, Totals, MAX_SLIDE_BYTES};
use super::challenge::Outcome;
use super::preview::{self, Facts, Reservoir, Reservoirs};

/// Bytes a slide costs beyond its keys (the HyperLogLog's 1 KiB as hex, the
/// counters and field names): used to estimate a delta's size on the wire.
const SLIDE_OVERHEAD: usize = 2_400;
/// Bytes per latency-histogram bucket on the wire.
const BUCKET_BYTES: usize = 12;

/// One hub shard's part of a delta: slides by start (epoch seconds) and the
/// requests per UTC hour of day they hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardDelta {
    #[serde(default)]
    pub slides: BTreeMap<i64, Slide>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hours: Vec<u64>,
    /// When the oldest data in this delta was first folded (ms): the forward
    /// lag the hub reports is measured from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<f64>,
    /// A uniform sample of the requests' facts per slide, for the what-if
    /// preview (`intel::preview`; at most `preview::DELTA_CAP` per slide).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reservoirs: Reservoirs,
}

impl ShardDelta {
    fn slide(&mut self, cfg: &AnalyticsConfig, at_ms: f64, now_ms: f64) -> Option<&mut Slide> {
        let start = Aggregator::slide_start(cfg, at_ms);
        let newest = Aggregator::slide_start(cfg, now_ms);
        // The hub's own window rule (no slide far in the future or already
        // out of the window): what it would refuse is not carried.
        if start > newest + cfg.slide_s || start <= newest - cfg.window_s {
            return None;
        }
        self.since = Some(self.since.map_or(now_ms, |s| s.min(now_ms)));
        Some(self.slides.entry(start).or_insert_with(|| Slide::new(start)))
    }

    fn add_sample(&mut self, cfg: &AnalyticsConfig, s: &Sample, now_ms: f64) -> bool {
        let Some(slide) = self.slide(cfg, s.at, now_ms) else { return false };
        slide.add_sample(s, false);
        if self.hours.len() != 24 {
            self.hours = vec![0; 24];
        }
        let hour = ((s.at / 3_600_000.0).floor() as i64).rem_euclid(24) as usize;
        if let Some(h) = self.hours.get_mut(hour) {
            *h += 1;
        }
        true
    }

    fn add_facts(&mut self, cfg: &AnalyticsConfig, f: Facts, now_ms: f64) {
        let Some(start) = self.slide(cfg, f.at, now_ms).map(|s| s.start) else { return };
        self.reservoirs.entry(start).or_default().offer(f, preview::DELTA_CAP);
    }

    /// Adds another delta of the same shard.
    pub fn absorb(&mut self, o: &ShardDelta) {
        preview::merge_all(&mut self.reservoirs, &o.reservoirs, preview::DELTA_CAP);
        for (start, s) in &o.slides {
            self.slides.entry(*start).or_insert_with(|| Slide::new(*start)).absorb(s);
        }
        if !o.hours.is_empty() {
            if self.hours.len() != 24 {
                self.hours = vec![0; 24];
            }
            for (h, n) in self.hours.iter_mut().zip(&o.hours) {
                *h += n;
            }
        }
        self.since = match (self.since, o.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Requests counted in it.
    pub fn requests(&self) -> u64 {
        self.slides.values().map(|s| s.requests).sum()
    }

    /// Its size on the wire, estimated (each slide's keys are already
    /// charged in its `budget`).
    pub fn bytes(&self) -> usize {
        let slides: usize = self
            .slides
            .values()
            .map(|s| {
                SLIDE_OVERHEAD
                    + (s.budget.bytes as usize).min(MAX_SLIDE_BYTES)
                    + BUCKET_BYTES * (s.latency.buckets() + s.consult_latency.buckets())
            })
            .sum();
        slides + self.reservoirs.values().map(Reservoir::bytes).sum::<usize>()
    }
}

/// An isolate's (or an aggregator's) deltas, by hub shard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SlideDeltas {
    pub shards: BTreeMap<u32, ShardDelta>,
}

impl SlideDeltas {
    /// Folds one request's sample into `shard`'s delta; false if it falls
    /// outside the window (the hub would refuse it too).
    pub fn add_sample(&mut self, cfg: &AnalyticsConfig, shard: u32, s: &Sample, now_ms: f64) -> bool {
        self.shards.entry(shard).or_default().add_sample(cfg, s, now_ms)
    }

    /// Offers one request's facts to `shard`'s sample for the preview
    /// (outside the window: nothing, as for its sample).
    pub fn add_facts(&mut self, cfg: &AnalyticsConfig, shard: u32, f: Facts, now_ms: f64) {
        self.shards.entry(shard).or_default().add_facts(cfg, f, now_ms);
    }

    /// Counts events the API rejected (shard 0: totals are summed over shards).
    pub fn add_rejected(&mut self, cfg: &AnalyticsConfig, n: u64, now_ms: f64) {
        if let Some(slide) = self.shards.entry(0).or_default().slide(cfg, now_ms, now_ms) {
            slide.events_rejected += n;
        }
    }

    /// Counts one challenge outcome (shard 0: the counters are summed over
    /// shards) in the slide of `at`: a solution in the slide its token was
    /// issued in, so `issued - solved` of a settled slide is what was
    /// abandoned. Outside the window: the newest slide.
    pub fn add_challenge(&mut self, cfg: &AnalyticsConfig, label: &str, o: Outcome, at: f64, now_ms: f64) {
        let d = self.shards.entry(0).or_default();
        let start = match d.slide(cfg, at, now_ms) {
            Some(s) => s.start,
            None => match d.slide(cfg, now_ms, now_ms) {
                Some(s) => s.start,
                None => return,
            },
        };
        if let Some(slide) = d.slides.get_mut(&start) {
            slide.add_challenge(label, o);
        }
    }

    /// Counts observations and samples this isolate lost (shard 0).
    pub fn add_dropped(&mut self, cfg: &AnalyticsConfig, n: u64, now_ms: f64) {
        if let Some(slide) = self.shards.entry(0).or_default().slide(cfg, now_ms, now_ms) {
            slide.observations_dropped += n;
        }
    }

    /// Adds other deltas (an aggregator merging its isolates' reports).
    pub fn absorb(&mut self, o: &SlideDeltas) {
        for (shard, d) in &o.shards {
            self.shards.entry(*shard).or_default().absorb(d);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shards.values().all(|d| d.slides.is_empty())
    }

    /// Requests counted in all shards.
    pub fn requests(&self) -> u64 {
        self.shards.values().map(ShardDelta::requests).sum()
    }

    /// What is lost if these deltas never arrive: their requests and the
    /// losses they carry (counted again with the isolate's next report).
    pub fn lost_if_dropped(&self) -> u64 {
        let dropped: u64 = self.shards.values().flat_map(|d| d.slides.values()).map(|s| s.observations_dropped).sum();
        self.requests().saturating_add(dropped)
    }

    /// Estimated size on the wire.
    pub fn bytes(&self) -> usize {
        self.shards.values().map(ShardDelta::bytes).sum()
    }
}

/// What merging one summary into a hub's window did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Starts of the slides it changed (to persist).
    pub slides: Vec<i64>,
    /// Requests in slides the hub no longer takes (already rolled up or out
    /// of the window): counted, never silently gone.
    pub late: u64,
}

/// Merges one shard's summary into the hub's window at `now`: each slide
/// into the stored one (bounded), the totals and hours added. A subject the
/// hub erased at `t` joins no member set of a slide that began before `t`
/// (its samples may have been folded before the erasure reached the hub).
pub fn apply(agg: &mut Aggregator, cfg: &AnalyticsConfig, d: &ShardDelta, now_ms: f64) -> Applied {
    let mut out = Applied::default();
    for (start, slide) in &d.slides {
        let begins_ms = *start as f64 * 1000.0;
        let mut clean;
        let mut slide = slide;
        if !agg.forgotten.is_empty() {
            let erased: Vec<String> = slide
                .all_members()
                .into_iter()
                .filter(|m| agg.forgotten.get(&forgotten_key(m)).is_some_and(|t| *t >= begins_ms))
                .collect();
            if !erased.is_empty() {
                clean = slide.clone();
                for m in &erased {
                    clean.forget(m);
                }
                slide = &clean;
            }
        }
        let Some(stored) = agg.slide_mut(cfg, begins_ms, now_ms) else {
            out.late += slide.requests;
            continue;
        };
        stored.absorb(slide);
        add_totals(&mut agg.totals, slide);
        out.slides.push(*start);
    }
    // The preview's sample: kept in memory for the window's slides (an
    // erased subject's facts from before its erasure are left out).
    for (start, r) in &d.reservoirs {
        if !agg.slides.contains_key(start) {
            continue; // late (rolled up or out of the window), as its slide
        }
        let mut r = r.clone();
        if !agg.forgotten.is_empty() {
            r.items.retain(|f| agg.forgotten.get(&forgotten_key(&f.subject)).is_none_or(|t| *t < f.at));
        }
        agg.reservoirs.entry(*start).or_default().merge(&r, preview::hub_cap(cfg.window_s / cfg.slide_s.max(1)));
    }
    let oldest = agg.slides.keys().next().copied().unwrap_or(i64::MAX);
    agg.reservoirs.retain(|start, _| *start >= oldest);
    if !out.slides.is_empty() && !d.hours.is_empty() {
        if agg.hours.len() != 24 {
            agg.hours = vec![0; 24];
        }
        for (h, n) in agg.hours.iter_mut().zip(&d.hours) {
            *h += n;
        }
    }
    out
}

/// One aggregator's summary of one forward period for one hub shard
/// (`HubOp::Forward`), numbered per aggregator and shard from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub seq: u64,
    pub delta: ShardDelta,
}

/// An aggregator a hub has heard from: the highest sequence applied, and when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub seq: u64,
    pub at: f64,
}

/// How long a hub remembers an aggregator it no longer hears from (its
/// `base` says what was confirmed, so forgetting it loses nothing).
pub const SEEN_FOR_MS: f64 = 86_400_000.0;

/// What a hub shard measured of the aggregator tier (the analytics API's
/// `tier`, `/metrics`): counts since the hub started, and the newest lag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierCounters {
    /// `Forward` calls received (a call with no new summary included).
    #[serde(default)]
    pub forwards: u64,
    /// Summaries merged into the window.
    #[serde(default)]
    pub summaries: u64,
    /// Summaries skipped as already applied (a retry after a lost answer).
    #[serde(default)]
    pub duplicates: u64,
    /// Summaries refused because one before them is missing (after a hub
    /// restart: the aggregator sends them again from the hub's `applied`).
    #[serde(default)]
    pub out_of_order: u64,
    /// Requests in summaries whose slide was already rolled up or out of the window.
    #[serde(default)]
    pub late_requests: u64,
    /// Forwards that failed, as the aggregators reported them afterwards.
    #[serde(default)]
    pub forward_failures: u64,
    /// Aggregators heard from in the last day.
    #[serde(default)]
    pub aggregators: u64,
    /// Age of the oldest data in the newest applied summary when it was
    /// merged: from its first fold in an isolate to the hub (ms).
    #[serde(default)]
    pub lag_ms: Option<f64>,
}

impl TierCounters {
    /// Another shard's counters (the whole site): sums, the worst lag.
    pub fn add(&mut self, o: &TierCounters) {
        self.forwards += o.forwards;
        self.summaries += o.summaries;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.late_requests += o.late_requests;
        self.forward_failures += o.forward_failures;
        self.aggregators += o.aggregators;
        self.lag_ms = match (self.lag_ms, o.lag_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// One `Forward` as the hub receives it.
pub struct Forward<'a> {
    pub from: &'a str,
    pub base: u64,
    pub summaries: &'a [Summary],
    pub failures: u64,
}

/// The hub's side of a forward, at `now`: applies, in order, each summary
/// that follows the highest sequence applied for its aggregator (or the
/// aggregator's `base`, whichever is higher: everything up to `base` was
/// confirmed stored); skips one already applied (idempotent retries);
/// stops at a gap (a hub that restarted lost what it had not persisted:
/// the aggregator sends again from the returned sequence). Returns the
/// highest sequence applied and the slides changed (to persist).
pub fn receive(
    agg: &mut Aggregator,
    cfg: &AnalyticsConfig,
    seen: &mut BTreeMap<String, Seen>,
    counters: &mut TierCounters,
    f: &Forward<'_>,
    now_ms: f64,
) -> (u64, Vec<i64>) {
    seen.retain(|_, s| s.at >= now_ms - SEEN_FOR_MS);
    let mut applied = seen.get(f.from).map_or(0, |s| s.seq).max(f.base);
    let mut slides = Vec::new();
    counters.forwards += 1;
    counters.forward_failures += f.failures;
    for s in f.summaries {
        if s.seq <= applied {
            counters.duplicates += 1;
            continue;
        }
        if s.seq != applied + 1 {
            counters.out_of_order += 1;
            break;
        }
        let a = apply(agg, cfg, &s.delta, now_ms);
        counters.summaries += 1;
        counters.late_requests += a.late;
        if let Some(since) = s.delta.since {
            counters.lag_ms = Some((now_ms - since).max(0.0));
        }
        slides.extend(a.slides);
        applied = s.seq;
    }
    seen.insert(f.from.to_string(), Seen { seq: applied, at: now_ms });
    counters.aggregators = seen.len() as u64;
    slides.sort_unstable();
    slides.dedup();
    (applied, slides)
}

/// A report or forward period jittered by +-20% (`random`: any u32), so
/// that isolates started together do not report together.
pub fn jittered(period_ms: u32, random: u32) -> u64 {
    let fraction = f64::from(random) / f64::from(u32::MAX);
    (f64::from(period_ms) * (0.8 + 0.4 * fraction)).round() as u64
}

fn add_totals(t: &mut Totals, s: &Slide) {
    t.requests += s.requests;
    t.events += s.events;
    t.events_rejected += s.events_rejected;
    t.degraded += s.degraded;
    t.do_errors += s.do_errors;
    t.server_errors += s.server_errors;
    t.high_risk += s.high_risk;
    t.enforced += s.enforced;
    t.observations_dropped += s.observations_dropped;
    t.fail_closed += s.fail_closed;
    for (k, v) in &s.rules {
        super::analytics::add_rule_hits(&mut t.rules, k, v, super::analytics::MAX_RULE_TOTALS);
    }
    for (k, v) in &s.challenges {
        super::challenge::add_counts(&mut t.challenges, k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intel::analytics::Consult;

    fn cfg() -> AnalyticsConfig {
        AnalyticsConfig { slide_s: 60, window_s: 300, ..AnalyticsConfig::default() }
    }

    fn sample(at: f64, subject: &str, risk: u8, status: u16) -> Sample {
        Sample {
            at,
            subject: subject.into(),
            country: Some("DE".into()),
            asn: Some(3320),
            risk,
            threat: 10,
            status,
            latency_ms: Some(12.0),
            consult: Consult::Ok,
            consult_ms: Some(3.0),
            probe: (status == 404).then(|| "/.env".to_string()),
            ..Sample::default()
        }
    }

    const NOW: f64 = 1_700_000_040_000.0;

    /// The same samples, ingested one by one by a hub or folded by three
    /// isolates, merged by two aggregators and applied at the hub: the same window.
    #[test]
    fn tiers_give_the_hub_the_window_it_would_have_built_itself() {
        let c = cfg();
        let samples: Vec<Sample> = (0..300)
            .map(|i| {
                let at = NOW - 90_000.0 + f64::from(i) * 300.0;
                let status = [200u16, 404, 401, 503].get(i as usize % 4).copied().unwrap_or(200);
                sample(at, &format!("10.0.{}.{}", i % 7, i % 13), (i % 100) as u8, status)
            })
            .collect();
        let mut direct = Aggregator::default();
        for s in &samples {
            assert!(direct.ingest_sample(&c, s, NOW));
        }
        let mut isolates = vec![SlideDeltas::default(); 3];
        for (i, s) in samples.iter().enumerate() {
            if let Some(iso) = isolates.get_mut(i % 3) {
                assert!(iso.add_sample(&c, 0, s, NOW));
            }
        }
        let mut aggs = vec![SlideDeltas::default(); 2];
        for (i, d) in isolates.iter().enumerate() {
            if let Some(a) = aggs.get_mut(i % 2) {
                a.absorb(d);
            }
        }
        let mut hub = Aggregator::default();
        for a in &aggs {
            let d = a.shards.get(&0).cloned().unwrap_or_default();
            let applied = apply(&mut hub, &c, &d, NOW);
            assert_eq!(applied.late, 0);
        }
        assert_eq!(hub.totals, direct.totals);
        assert_eq!(hub.hours, direct.hours);
        assert_eq!(hub.slides.len(), direct.slides.len());
        for (start, d) in &direct.slides {
            let h = hub.slides.get(start).cloned().unwrap_or_default();
            assert_eq!(h.point(), d.point(), "slide {start}");
            assert_eq!(h.unique, d.unique);
            let sorted = |m: &crate::intel::analytics::Members| {
                let mut v = m.members.clone();
                v.sort();
                (v, m.overflow)
            };
            assert_eq!(sorted(&h.auth_failures), sorted(&d.auth_failures));
            assert_eq!(h.probes.keys().collect::<Vec<_>>(), d.probes.keys().collect::<Vec<_>>());
            for (k, a) in &d.countries {
                let b = h.countries.get(k).cloned().unwrap_or_default();
                assert_eq!((b.requests, b.risk_sum, b.threat_sum), (a.requests, a.risk_sum, a.threat_sum));
                assert_eq!(sorted(&b.high_risk), sorted(&a.high_risk));
            }
        }
    }

    #[test]
    fn losses_rejections_and_shards_are_kept_apart() {
        let c = cfg();
        let mut d = SlideDeltas::default();
        assert!(d.is_empty());
        d.add_sample(&c, 2, &sample(NOW, "a", 10, 200), NOW);
        d.add_rejected(&c, 3, NOW);
        d.add_dropped(&c, 5, NOW);
        assert_eq!(d.requests(), 1);
        assert_eq!(d.lost_if_dropped(), 6);
        let zero = d.shards.get(&0).cloned().unwrap_or_default();
        let mut hub = Aggregator::default();
        apply(&mut hub, &c, &zero, NOW);
        assert_eq!((hub.totals.requests, hub.totals.events_rejected, hub.totals.observations_dropped), (0, 3, 5));
        // A sample outside the window is not carried (the hub would refuse it).
        assert!(!d.add_sample(&c, 0, &sample(NOW - 400_000.0, "a", 1, 200), NOW));
        // Round trip as the wire carries it (numeric keys in JSON maps).
        let json = serde_json::to_string(&d).unwrap_or_default();
        assert_eq!(serde_json::from_str::<SlideDeltas>(&json).ok(), Some(d.clone()));
        assert!(d.bytes() >= SLIDE_OVERHEAD * 2);
    }

    #[test]
    fn challenge_outcomes_reach_the_hub_through_every_tier_in_their_issue_slide() {
        use crate::intel::challenge::{counters, SlideCounts};
        let c = cfg();
        let (a, b) = (SlideDeltas::default(), SlideDeltas::default());
        let (mut a, mut b) = (a, b);
        let issued_at = NOW - 120_000.0;
        a.add_challenge(&c, "score|tor_exit", Outcome::Issued, issued_at, NOW);
        a.add_challenge(&c, "score|tor_exit", Outcome::Issued, issued_at, NOW);
        // Solved in another isolate, two minutes later: counted in the issue slide.
        b.add_challenge(
            &c,
            "score|tor_exit",
            Outcome::Solved { solve_ms: Some(3_000), noscript: true },
            issued_at,
            NOW,
        );
        b.add_challenge(&c, "unknown|none", Outcome::Failed, NOW, NOW);
        // An aggregator absorbs both; the hub applies its summary (round trip on the wire).
        let mut agg = SlideDeltas::default();
        agg.absorb(&a);
        agg.absorb(&b);
        let json = serde_json::to_string(&agg).unwrap_or_default();
        let agg: SlideDeltas = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(agg.requests(), 0, "challenge outcomes are not requests");
        let mut hub = Aggregator::default();
        apply(&mut hub, &c, agg.shards.get(&0).unwrap_or(&ShardDelta::default()), NOW);
        let start = Aggregator::slide_start(&c, issued_at);
        let tor = hub.slides.get(&start).and_then(|s| s.challenges.get("score|tor_exit")).copied().unwrap_or_default();
        assert_eq!((tor.issued, tor.solved, tor.solved_noscript, tor.solve_ms), (2, 1, 1, 3_000));
        assert_eq!(hub.totals.challenges.get("unknown|none").map(|x| x.failed), Some(1));
        let out = counters(
            &hub.totals.challenges,
            hub.slides.values().map(|s| SlideCounts { counts: &s.challenges, settled: false }),
        );
        let tor = out.iter().find(|x| x.reason == "tor_exit").map(|x| x.window).unwrap_or_default();
        assert_eq!((tor.issued, tor.solved, tor.pending, tor.abandoned), (2, 1, 1, 0));
    }

    #[test]
    fn a_slide_the_hub_rolled_up_is_counted_late_not_merged() {
        let c = cfg();
        let mut d = SlideDeltas::default();
        d.add_sample(&c, 0, &sample(NOW - 61_000.0, "a", 10, 200), NOW);
        d.add_sample(&c, 0, &sample(NOW, "b", 10, 200), NOW);
        let mut hub = Aggregator { last_rolled: Aggregator::slide_start(&c, NOW - 61_000.0), ..Aggregator::default() };
        let applied = apply(&mut hub, &c, d.shards.get(&0).unwrap_or(&ShardDelta::default()), NOW);
        assert_eq!((applied.late, applied.slides.len(), hub.totals.requests), (1, 1, 1));
    }

    #[test]
    fn an_erased_subject_folded_before_its_erasure_joins_no_member_set() {
        let c = cfg();
        let mut d = SlideDeltas::default();
        d.add_sample(&c, 0, &sample(NOW - 1000.0, "gone", 90, 401), NOW);
        d.add_sample(&c, 0, &sample(NOW - 1000.0, "kept", 90, 401), NOW);
        let mut hub = Aggregator::default();
        hub.forget("gone", NOW - 500.0);
        apply(&mut hub, &c, d.shards.get(&0).unwrap_or(&ShardDelta::default()), NOW);
        let slide = hub.slides.values().next().cloned().unwrap_or_default();
        assert_eq!(slide.requests, 2);
        assert_eq!(slide.auth_failures.members, vec!["kept".to_string()]);
        assert!(slide.all_members().iter().all(|m| m != "gone"));
    }

    fn summary(seq: u64, at: f64, subject: &str) -> Summary {
        let mut d = SlideDeltas::default();
        d.add_sample(&cfg(), 0, &sample(at, subject, 10, 200), at);
        Summary { seq, delta: d.shards.get(&0).cloned().unwrap_or_default() }
    }

    fn fwd(summaries: &[Summary], base: u64) -> Forward<'_> {
        Forward { from: "agg:FRA:0", base, summaries, failures: 0 }
    }

    /// Sequences make forwarding idempotent: a retry after a lost answer
    /// is skipped, a gap (a hub that lost what it had not persisted) stops
    /// until the aggregator re-sends, and `base` covers what was confirmed.
    #[test]
    fn forwards_are_applied_once_and_in_order() {
        let c = cfg();
        let (mut agg, mut seen, mut n) = (Aggregator::default(), BTreeMap::new(), TierCounters::default());
        let s: Vec<Summary> = (1..=4).map(|i| summary(i, NOW - 1000.0, &format!("s{i}"))).collect();
        let part = |r: std::ops::Range<usize>| s.get(r).unwrap_or_default().to_vec();
        let (applied, slides) = receive(&mut agg, &c, &mut seen, &mut n, &fwd(&part(0..2), 0), NOW);
        assert_eq!((applied, slides.len(), agg.totals.requests), (2, 1, 2));
        // The same two again (the answer was lost), then 3 and 4.
        let (applied, _) = receive(&mut agg, &c, &mut seen, &mut n, &fwd(&s, 0), NOW);
        assert_eq!((applied, agg.totals.requests, n.duplicates), (4, 4, 2));
        // A hub that restarted from a state that had applied 1: 3 and 4 wait for 2.
        let mut seen2 = BTreeMap::from([("agg:FRA:0".to_string(), Seen { seq: 1, at: NOW })]);
        let mut fresh = Aggregator::default();
        let (applied, _) = receive(&mut fresh, &c, &mut seen2, &mut n, &fwd(&part(2..4), 0), NOW);
        assert_eq!((applied, fresh.totals.requests, n.out_of_order), (1, 0, 1));
        let (applied, _) = receive(&mut fresh, &c, &mut seen2, &mut n, &fwd(&part(1..4), 0), NOW);
        assert_eq!((applied, fresh.totals.requests), (4, 3));
        // A hub that forgot the aggregator: `base` says 1..=3 are stored.
        let mut blank = Aggregator::default();
        let (applied, _) = receive(&mut blank, &c, &mut BTreeMap::new(), &mut n, &fwd(&part(3..4), 3), NOW);
        assert_eq!((applied, blank.totals.requests), (4, 1));
        assert!(n.lag_ms.is_some_and(|l| l >= 0.0));
        // Aggregators not heard from for a day are forgotten.
        let quiet = Forward { from: "agg:AMS:1", base: 0, summaries: &[], failures: 2 };
        receive(&mut agg, &c, &mut seen, &mut n, &quiet, NOW + SEEN_FOR_MS + 1.0);
        assert_eq!((seen.len(), n.forward_failures), (1, 2));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(jittered(2000, 0), 1600);
        assert_eq!(jittered(2000, u32::MAX), 2400);
        assert!((1600..=2400).contains(&jittered(2000, 12345678)));
    }

    #[test]
    fn an_attacked_delta_stays_within_the_slide_bounds_when_absorbed() {
        let c = cfg();
        let mut hub = Aggregator::default();
        for round in 0..20 {
            let mut d = SlideDeltas::default();
            for i in 0..500 {
                let mut s = sample(NOW, &format!("subject-{round}-{i}"), 95, 404);
                s.probe = Some(format!("/probe/{round}/{i}"));
                s.country = Some(format!("C{round}{i}"));
                d.add_sample(&c, 0, &s, NOW);
            }
            apply(&mut hub, &c, d.shards.get(&0).unwrap_or(&ShardDelta::default()), NOW);
        }
        let slide = hub.slides.values().next().cloned().unwrap_or_default();
        assert_eq!(slide.requests, 10_000);
        assert!(slide.budget.bytes as usize <= MAX_SLIDE_BYTES);
        assert!(slide.budget.dropped > 0);
        assert!(serde_json::to_string(&slide).map(|j| j.len()).unwrap_or(0) < 4 * MAX_SLIDE_BYTES);
    }
}

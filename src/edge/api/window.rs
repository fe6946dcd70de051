//! The analytics window as readers see it: the raw window of every hub
//! shard, merged (`merge_shards`) with the same pure code the hub uses, so
//! `HUB_SHARDS` > 1 changes nothing for readers. Shared by the analytics
//! views and the Prometheus exposition.

use futures::future::join_all;
use worker::Env;

use crate::bindings;
use crate::config::Hub;
use crate::error::ApiError;
use crate::intel::alerting::RuleState;
use crate::intel::analytics::{
    merge_shards, rule_counters, Aggregator, AnalyticsConfig, RuleCounter, ShardPart, SlidePoint,
};
use crate::intel::challenge::{self, ChallengeCounter, SlideCounts};
use crate::intel::deltas::TierCounters;
use crate::intel::keys::hub_name;
use crate::intel::sketch::Hll;
use crate::intel::wire::{HubOp, WindowState};
use crate::platform::call_object;

/// The merged window of all shards.
pub struct Merged {
    pub agg: Aggregator,
    pub shards: Vec<WindowState>,
}

impl Merged {
    pub fn points(&self) -> Vec<SlidePoint> {
        self.agg.slides.values().map(|s| s.point()).collect()
    }

    /// Each per-route rule's hits, since start and in the window.
    pub fn rule_counters(&self) -> Vec<RuleCounter> {
        rule_counters(&self.agg.totals.rules, self.agg.slides.values())
    }

    /// The challenge counters per trigger and reason, since start and in
    /// the window; a slide's challenges count as abandoned once a token
    /// issued at its end has expired (`intel::challenge::counters`).
    pub fn challenge_counters(&self, analytics: &AnalyticsConfig, now_ms: f64) -> Vec<ChallengeCounter> {
        let ttl_s = (crate::intel::enforce::TOKEN_TTL_MS / 1000.0) as i64;
        let now_s = (now_ms / 1000.0) as i64;
        let slides = self
            .agg
            .slides
            .values()
            .map(|s| SlideCounts { counts: &s.challenges, settled: s.start + analytics.slide_s + ttl_s <= now_s });
        challenge::counters(&self.agg.totals.challenges, slides)
    }

    /// The alert rules' states: shard 0 (`global`) evaluates them for the
    /// whole site; other shards keep none.
    pub fn rules(&self) -> &[RuleState] {
        self.shards.first().map_or(&[], |s| &s.rules)
    }

    /// The aggregator tier as all shards measured it (`deltas::TierCounters`).
    pub fn tier(&self) -> TierCounters {
        let mut t = TierCounters::default();
        for s in &self.shards {
            t.add(&s.tier);
        }
        t
    }

    pub fn stream_clients(&self) -> usize {
        self.shards.first().map_or(0, |s| s.stream_clients)
    }

    /// The newest closed slide's point (the "current" measured values).
    pub fn latest_closed(&self, analytics: &AnalyticsConfig, now: f64) -> Option<SlidePoint> {
        self.agg.window(analytics, now, true).last().map(|s| s.point())
    }

    /// Distinct subjects in the window (HyperLogLog estimate).
    pub fn active_profiles(&self) -> f64 {
        let mut h = Hll::default();
        for s in self.agg.slides.values() {
            h.merge(&s.unique);
        }
        h.estimate().round()
    }
}

/// Every shard's window (`hub.shards` of them), merged; 503 if any shard does not answer.
pub async fn merged(env: &Env, hub: &Hub) -> Result<Merged, ApiError> {
    let calls = (0..hub.shards).map(|i| {
        let name = hub_name(i);
        async move { call_object::<_, WindowState>(env, bindings::HUB, &name, &HubOp::Window).await }
    });
    let mut shards = Vec::new();
    for r in join_all(calls).await {
        match r {
            Ok((200, Some(w))) => shards.push(w),
            Ok((s, _)) => return Err(ApiError::new(503, "analytics_unavailable", format!("a hub shard answered {s}"))),
            Err(e) => return Err(e.public("analytics_unavailable", "an analytics hub did not answer; retry")),
        }
    }
    let parts: Vec<ShardPart> = shards.iter().map(|w| w.as_shard()).collect();
    let agg = merge_shards(&parts);
    Ok(Merged { agg, shards })
}

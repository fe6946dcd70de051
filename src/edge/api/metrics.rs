//! `GET /metrics`: the merged analytics window (`window::merged`) in
//! Prometheus text exposition (version 0.0.4), for a scraper holding the
//! admin token.

use serde_json::json;
use web_sys::Response;

use crate::clock::now_ms;
use crate::edge::respond;
use crate::error::ApiError;
use crate::intel::alerting::State;
use crate::intel::analytics::{AnalyticsConfig, RuleHitsView};
use crate::intel::challenge::ChallengeView;
use crate::intel::sketch::Histogram;

use super::common::Call;
use super::window::{merged, Merged};

/// A rule's dry-run counts in the places of its real ones, so one picker reads both.
fn dry_view(h: &RuleHitsView) -> RuleHitsView {
    RuleHitsView { hits: h.dry_run_hits, enforced: h.dry_run_would_enforce, ..RuleHitsView::default() }
}

pub async fn prometheus(c: Call<'_>) -> Result<Response, ApiError> {
    let now = now_ms();
    let m = merged(c.io.env, &c.config.hub).await?;
    Ok(exposition(&m, &c.config.analytics, now))
}

/// Prometheus text exposition (version 0.0.4): monotonic totals as
/// counters, the analytics window's measurements as gauges.
fn exposition(m: &Merged, analytics: &AnalyticsConfig, now: f64) -> Response {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        if samples.is_empty() {
            return;
        }
        out.push_str(&format!("# HELP edgeintel_{name} {help}\n# TYPE edgeintel_{name} {kind}\n"));
        for (labels, v) in samples {
            out.push_str(&format!("edgeintel_{name}{labels} {v}\n"));
        }
    };
    let t = &m.agg.totals;
    let c = |v: u64| vec![(String::new(), v as f64)];
    metric("request_count", "counter", "Requests recorded by the analytics hubs since they started.", c(t.requests));
    metric("events_processed", "counter", "Profile events received by the hubs.", c(t.events));
    metric("events_rejected", "counter", "Events rejected by POST /api/events.", c(t.events_rejected));
    metric("degraded_count", "counter", "Requests forwarded degraded (profile timeout or error).", c(t.degraded));
    metric("do_errors", "counter", "Profile consults that failed with an error.", c(t.do_errors));
    metric("origin_errors", "counter", "Origin answers of 5xx (including unreachable: 502).", c(t.server_errors));
    metric("enforced_count", "counter", "Requests the edge challenged or blocked itself.", c(t.enforced));
    // Per-route rules (docs/policies.md): since the hubs started, by rule,
    // action and dry run; `enforced` counts the requests the rule answered
    // itself (or, in a dry run, would have).
    let rules = m.rule_counters();
    let rule_samples = |pick: fn(&RuleHitsView) -> u64| -> Vec<(String, f64)> {
        rules
            .iter()
            .flat_map(|r| {
                let (real, dry) = (pick(&r.since_start), pick(&dry_view(&r.since_start)));
                [("false", real), ("true", dry)].map(|(d, v)| {
                    let label = |s: &str| s.replace(['"', '\\', '\n'], "_");
                    (format!("{{rule=\"{}\",action=\"{}\",dry_run=\"{d}\"}}", label(&r.id), label(&r.action)), v as f64)
                })
            })
            .collect()
    };
    metric("rule_hits", "counter", "Requests a per-route rule decided (dry runs apart).", rule_samples(|h| h.hits));
    metric(
        "rule_enforced",
        "counter",
        "Requests a per-route rule answered itself: challenge, block or 429 (in a dry run: would have).",
        rule_samples(|h| h.enforced),
    );
    // Challenges (docs/enforcement.md, "Challenge metrics"): since the hubs
    // started, by trigger (score, rule, step_up), rule id and top reason.
    let challenges = m.challenge_counters(analytics, now);
    let challenge_samples = |pick: fn(&ChallengeView) -> Option<u64>| -> Vec<(String, f64)> {
        challenges
            .iter()
            .filter_map(|ch| {
                let label = |s: &str| s.replace(['"', '\\', '\n'], "_");
                let rule = ch.rule.as_deref().unwrap_or("");
                let labels = format!(
                    "{{trigger=\"{}\",rule=\"{}\",reason=\"{}\"}}",
                    label(&ch.trigger),
                    label(rule),
                    label(&ch.reason)
                );
                pick(&ch.since_start).map(|v| (labels, v as f64))
            })
            .collect()
    };
    metric("challenges_issued", "counter", "Challenges the edge issued.", challenge_samples(|v| Some(v.issued)));
    metric(
        "challenges_solved",
        "counter",
        "Challenges solved (the no-script wait included).",
        challenge_samples(|v| Some(v.solved)),
    );
    metric(
        "challenges_solved_noscript",
        "counter",
        "Challenges passed by the no-script wait instead of the proof-of-work.",
        challenge_samples(|v| Some(v.solved_noscript)),
    );
    metric("challenges_failed", "counter", "Challenge answers refused.", challenge_samples(|v| Some(v.failed)));
    metric(
        "challenges_abandoned",
        "gauge",
        "Challenges issued longer ago than a token lives and never solved (a page's challenged subresources count too).",
        challenge_samples(|v| Some(v.abandoned)),
    );
    metric(
        "challenge_solve_ms_mean",
        "gauge",
        "Mean milliseconds from issue to solution since start (proof-of-work and no-script; not Turnstile; only labels with a timed solution).",
        challenge_samples(|v| v.mean_solve_ms),
    );
    let site_failures = m.shards.first().map_or(0, |s| s.site_failures);
    metric(
        "site_evaluation_failures",
        "counter",
        "Ticks whose alert rules and insights were not evaluated: a hub shard did not answer shard 0.",
        c(site_failures),
    );
    metric(
        "fail_closed_count",
        "counter",
        "Requests FAIL_MODE=closed answered with 503 instead of forwarding them degraded.",
        c(t.fail_closed),
    );
    metric(
        "observations_dropped",
        "counter",
        "Observations and samples lost: a profile flush or an analytics report failed twice.",
        c(t.observations_dropped),
    );
    // The aggregator tier as the hub shards measured it (docs/analytics.md, "Tiers").
    let tier = m.tier();
    metric(
        "aggregator_forwards",
        "counter",
        "Forward calls the hub shards received from aggregator objects.",
        c(tier.forwards),
    );
    metric("aggregator_summaries", "counter", "Aggregator summaries merged by the hub shards.", c(tier.summaries));
    metric(
        "aggregator_duplicates",
        "counter",
        "Aggregator summaries received again (a retry after a lost answer) and skipped.",
        c(tier.duplicates),
    );
    metric(
        "aggregator_forward_failures",
        "counter",
        "Aggregator forwards that failed (reported by the aggregators once one succeeded; kept and sent again).",
        c(tier.forward_failures),
    );
    metric(
        "aggregator_late_requests",
        "counter",
        "Requests in summaries that reached their hub after their slide was rolled up (not counted in the totals).",
        c(tier.late_requests),
    );
    metric(
        "aggregators",
        "gauge",
        "Aggregator objects the hub shards heard from in the last day.",
        c(tier.aggregators),
    );
    if let Some(lag) = tier.lag_ms {
        metric(
            "aggregator_lag_ms",
            "gauge",
            "Age of the oldest data in the newest merged summary: from its first fold in an isolate to the hub.",
            vec![(String::new(), lag)],
        );
    }
    let mut lat = Histogram::default();
    let mut consult = Histogram::default();
    for s in m.agg.slides.values() {
        lat.merge(&s.latency);
        consult.merge(&s.consult_latency);
    }
    let quantiles = |h: &Histogram| -> Vec<(String, f64)> {
        [0.5, 0.95, 0.99].iter().filter_map(|q| h.quantile(*q).map(|v| (format!("{{quantile=\"{q}\"}}"), v))).collect()
    };
    metric("origin_latency_ms", "gauge", "Origin latency over the analytics window, by quantile.", quantiles(&lat));
    metric(
        "consult_latency_ms",
        "gauge",
        "Profile consult latency over the analytics window, by quantile.",
        quantiles(&consult),
    );
    if let Some(p) = m.latest_closed(analytics, now) {
        metric(
            "error_rate",
            "gauge",
            "Share of 5xx origin answers in the newest closed slide.",
            vec![(String::new(), p.error_rate)],
        );
        metric(
            "high_risk_share",
            "gauge",
            "Share of requests scoring 75+ in the newest closed slide.",
            vec![(String::new(), p.high_risk_share)],
        );
    }
    metric(
        "active_profiles",
        "gauge",
        "Distinct subjects in the analytics window (HyperLogLog estimate).",
        vec![(String::new(), m.active_profiles())],
    );
    metric(
        "stream_clients",
        "gauge",
        "Open WebSocket stream clients on the global hub.",
        vec![(String::new(), m.stream_clients() as f64)],
    );
    let gauge =
        |f: fn(&crate::intel::analytics::Gauges) -> Option<f64>| m.agg.slides.values().rev().find_map(|s| f(&s.gauges));
    let g = |v: Option<f64>| v.map(|v| vec![(String::new(), v)]).unwrap_or_default();
    metric("alarm_lag_ms", "gauge", "How late the last analytics tick fired.", g(gauge(|x| x.alarm_lag_ms)));
    metric(
        "kv_write_latency_ms",
        "gauge",
        "Time of the last tick's KV rollup writes.",
        g(gauge(|x| x.kv_write_latency_ms)),
    );
    metric(
        "tick_duration_ms",
        "gauge",
        "Duration of the last analytics tick (wall time across its I/O).",
        g(gauge(|x| x.tick_duration_ms)),
    );
    let states: Vec<(String, f64)> = m
        .rules()
        .iter()
        .map(|r| {
            let v = match r.state {
                State::Firing => 2.0,
                State::Pending => 1.0,
                _ => 0.0,
            };
            (format!("{{rule=\"{}\"}}", r.rule.replace(['"', '\\', '\n'], "_")), v)
        })
        .collect();
    metric("alert_state", "gauge", "Alert rule state: 0 inactive or resolved, 1 pending, 2 firing.", states);
    let init = web_sys::ResponseInit::new();
    init.set_status(200);
    if let Ok(h) = web_sys::Headers::new() {
        let _ = h.set("content-type", "text/plain; version=0.0.4; charset=utf-8");
        let _ = h.set("cache-control", "no-store");
        init.set_headers(h.as_ref());
    }
    Response::new_with_opt_str_and_init(Some(&out), &init)
        .unwrap_or_else(|_| respond::json(500, &json!({"error": "internal"})))
}

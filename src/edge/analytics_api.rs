//! The read side of analytics (SPEC 5 and 6): every endpoint fetches the raw
//! window of each hub shard, merges them (`merge_shards`) and derives its
//! view with the same pure code the hub uses, so `HUB_SHARDS` > 1 changes
//! nothing for readers. History comes from the KV rollups.

use futures::future::join_all;
use serde_json::{json, Value};
use web_sys::Response;
use worker::Env;

use crate::clock::now_ms;
use crate::config::Config;
use crate::error::ApiError;
use crate::intel::alerting::{RuleState, State};
use crate::intel::analytics::{
    hub_name, merge_shards, Aggregator, LatencySummary, ShardPart, SlidePoint, METRIC_NAMES,
};
use crate::intel::rollups::{self, HistoryScan};
use crate::intel::sketch::{Histogram, Hll};
use crate::objects::hub::{self, HubOp, WindowState};
use crate::platform::call_object;

use super::api::iso;
use super::respond;

/// The merged window of all shards.
pub struct Merged {
    pub agg: Aggregator,
    pub shards: Vec<WindowState>,
}

impl Merged {
    fn points(&self) -> Vec<SlidePoint> {
        self.agg.slides.values().map(|s| s.point()).collect()
    }

    /// The alert rules' states: shard 0 (`global`) evaluates them for the
    /// whole site; other shards keep none.
    fn rules(&self) -> &[RuleState] {
        self.shards.first().map_or(&[], |s| &s.rules)
    }

    fn stream_clients(&self) -> usize {
        self.shards.first().map_or(0, |s| s.stream_clients)
    }

    /// The newest closed slide's point (the "current" measured values).
    fn latest_closed(&self, config: &Config, now: f64) -> Option<SlidePoint> {
        self.agg.window(&config.analytics, now, true).last().map(|s| s.point())
    }
}

pub async fn merged(env: &Env, config: &Config) -> Result<Merged, ApiError> {
    let calls = (0..config.hub_shards).map(|i| {
        let name = hub_name(i);
        async move { call_object::<_, WindowState>(env, hub::BINDING, &name, &HubOp::Window).await }
    });
    let mut shards = Vec::new();
    for r in join_all(calls).await {
        match r {
            Ok((200, Some(w))) => shards.push(w),
            Ok((s, _)) => return Err(ApiError::new(503, "analytics_unavailable", format!("a hub shard answered {s}"))),
            Err(e) => {
                worker::console_error!("edgeintel: hub unavailable: {}", e.0);
                return Err(ApiError::new(503, "analytics_unavailable", "an analytics hub did not answer; retry"));
            }
        }
    }
    let parts: Vec<ShardPart> =
        shards.iter().map(|w| ShardPart { slides: &w.slides, hours: &w.hours, totals: &w.totals }).collect();
    let agg = merge_shards(&parts);
    Ok(Merged { agg, shards })
}

fn window_json(config: &Config) -> Value {
    json!({"slideSeconds": config.analytics.slide_s, "windowSeconds": config.analytics.window_s})
}

fn active_profiles(m: &Merged) -> f64 {
    let mut h = Hll::default();
    for s in m.agg.slides.values() {
        h.merge(&s.unique);
    }
    h.estimate().round()
}

/// Routes `/api/intelligence/analytics`, `/api/analytics/*`, `/api/performance/*`
/// (other than the stream) and `/metrics`. `None`: not an analytics path.
pub async fn route(
    env: &Env,
    config: &Config,
    api: &str,
    query: &str,
    queued: usize,
) -> Option<Result<Response, ApiError>> {
    let now = now_ms();
    let known = matches!(
        api,
        "intelligence/analytics"
            | "analytics/insights"
            | "analytics/patterns"
            | "analytics/trends"
            | "analytics/anomalies"
            | "analytics/correlations"
            | "performance/health"
            | "performance/alerts"
            | "metrics"
    ) || api.starts_with("performance/metrics/");
    if !known {
        return None;
    }
    Some(route_known(env, config, api, query, queued, now).await)
}

async fn route_known(
    env: &Env,
    config: &Config,
    api: &str,
    query: &str,
    queued: usize,
    now: f64,
) -> Result<Response, ApiError> {
    if let Some(rest) = api.strip_prefix("performance/metrics/") {
        if let Some(name) = rest.strip_suffix("/history") {
            return history(env, name, query, now).await;
        }
        let m = merged(env, config).await?;
        return metric(&m, config, rest, query, now);
    }
    let m = merged(env, config).await?;
    let views = m.agg.views(&config.analytics, now);
    let ts = iso(now);
    let body = match api {
        "intelligence/analytics" => {
            let latest = m.latest_closed(config, now);
            let points = m.points();
            json!({
                "metrics": {
                    "latestSlide": latest,
                    "totals": m.agg.totals,
                    "kvWrites": m.shards.first().map(|s| s.kv_writes.clone()).unwrap_or_default(),
                    "kvPending": m.shards.iter().map(|s| s.kv_pending).sum::<usize>(),
                    "kvFailures": m.shards.iter().map(|s| s.kv_failures).sum::<u64>(),
                    "kvDropped": m.shards.iter().map(|s| s.kv_dropped).sum::<u64>(),
                    "lastTick": m.shards.first().and_then(|s| s.last_tick).map(iso),
                },
                "activeProfiles": active_profiles(&m),
                "queueSize": queued,
                "subscriptions": {"streamClients": m.stream_clients(), "intelligence": m.shards.first().map_or(0, |s| s.intel_clients)},
                "series": {"slideSeconds": config.analytics.slide_s, "windowSeconds": config.analytics.window_s, "slides": points},
                "hubShards": config.hub_shards,
                "isolate": {
                    "requests": crate::platform::isolate_counts().0,
                    "objectCalls": crate::platform::isolate_counts().1,
                    "objectCallsByBinding": crate::platform::calls_by_binding().into_iter().map(|(k, v)| (k, Value::from(v))).collect::<serde_json::Map<String, Value>>(),
                },
                "timestamp": ts,
            })
        }
        "analytics/insights" => {
            let mut insights = Vec::new();
            for p in &views.patterns {
                insights.push(json!({"kind": "pattern", "severity": p.get("severity"), "description": p.get("description"), "data": p}));
            }
            for t in views.trends.iter().filter(|t| t.get("direction").and_then(Value::as_str) != Some("flat")) {
                let d = format!(
                    "{} is trending {} ({:+.0}% over the window)",
                    t.get("metric").and_then(Value::as_str).unwrap_or(""),
                    t.get("direction").and_then(Value::as_str).unwrap_or(""),
                    t.get("changeRate").and_then(Value::as_f64).unwrap_or(0.0) * 100.0
                );
                insights.push(json!({"kind": "trend", "severity": "low", "description": d, "data": t}));
            }
            for a in &views.anomalies {
                let d = format!(
                    "{} ({}) is {:.1} standard deviations from the window",
                    a.get("metric").and_then(Value::as_str).unwrap_or(""),
                    a.get("scope").and_then(Value::as_str).unwrap_or(""),
                    a.get("z").and_then(Value::as_f64).unwrap_or(0.0)
                );
                insights.push(json!({"kind": "anomaly", "severity": "medium", "description": d, "data": a}));
            }
            json!({"insights": insights, "window": window_json(config), "timestamp": ts})
        }
        "analytics/patterns" => json!({"patterns": views.patterns, "window": window_json(config), "timestamp": ts}),
        "analytics/trends" => json!({"trends": views.trends, "window": window_json(config), "timestamp": ts}),
        "analytics/anomalies" => json!({"anomalies": views.anomalies, "window": window_json(config), "timestamp": ts}),
        "analytics/correlations" => {
            json!({"correlations": views.correlations, "window": window_json(config), "timestamp": ts})
        }
        "performance/health" => json!({"health": health(&m, config, now), "timestamp": ts}),
        "performance/alerts" => {
            let rules: Vec<Value> = m
                .rules()
                .iter()
                .map(|r| {
                    let rule = config.alert_rules.iter().find(|x| x.name == r.rule);
                    json!({
                        "rule": r.rule, "state": r.state, "since": iso(r.since), "value": r.value,
                        "severity": rule.map(|x| x.severity), "message": rule.map(|x| x.message.clone()),
                        "metric": rule.map(|x| x.metric.clone()), "threshold": rule.map(|x| x.threshold),
                    })
                })
                .collect();
            let active: Vec<&Value> = rules
                .iter()
                .filter(|r| matches!(r.get("state").and_then(Value::as_str), Some("pending") | Some("firing")))
                .collect();
            json!({"alerts": active, "rules": rules, "timestamp": ts})
        }
        "metrics" => return Ok(prometheus(&m, config, now)),
        _ => return Err(ApiError::not_found("no such analytics view")),
    };
    Ok(respond::json(200, &body))
}

fn health(m: &Merged, config: &Config, now: f64) -> Value {
    let latest = m.latest_closed(config, now);
    let firing: Vec<&str> = m.rules().iter().filter(|r| r.state == State::Firing).map(|r| r.rule.as_str()).collect();
    let status = if firing.is_empty() { "healthy" } else { "degraded" };
    let window_requests: u64 = m.agg.slides.values().map(|s| s.requests).sum();
    json!({
        "status": status,
        "firingAlerts": firing,
        "requestsInWindow": window_requests,
        "errorRate": latest.as_ref().map(|p| p.error_rate),
        "degradedShare": latest.as_ref().map(|p| p.degraded_share),
        "originLatencyP95Ms": latest.as_ref().and_then(|p| p.origin_latency.p95),
        "alarmLagMs": m.agg.slides.values().rev().find_map(|s| s.gauges.alarm_lag_ms),
        "lastTick": m.shards.first().and_then(|s| s.last_tick).map(iso),
        // When the alert rules last judged the whole site (with several
        // shards, a tick evaluates nothing while a shard does not answer).
        "rulesEvaluatedAt": m.shards.first().and_then(|s| s.site_evaluated_at).map(iso),
        "siteEvaluationFailures": m.shards.first().map_or(0, |s| s.site_failures),
        "streamClients": m.stream_clients(),
        "activeProfiles": active_profiles(m),
    })
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn metric(m: &Merged, config: &Config, name: &str, query: &str, now: f64) -> Result<Response, ApiError> {
    if !METRIC_NAMES.contains(&name) {
        return Err(ApiError::not_found(format!("unknown metric `{name}`; known: {}", METRIC_NAMES.join(", "))));
    }
    let window_ms = config.analytics.window_s as f64 * 1000.0;
    let timeframe =
        match query_param(query, "timeframe") {
            None => window_ms,
            Some(t) => t.parse::<f64>().ok().filter(|t| t.is_finite() && *t > 0.0).ok_or_else(|| {
                ApiError::new(400, "bad_timeframe", "`timeframe` is a positive number of milliseconds")
            })?,
        };
    let slides: Vec<_> = m
        .agg
        .slides
        .values()
        .filter(|s| (s.start as f64 + config.analytics.slide_s as f64) * 1000.0 > now - timeframe)
        .collect();
    let values: Vec<f64> = slides.iter().filter_map(|s| s.point().metric(name)).collect();
    let mut stats = json!({
        "average": (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64),
        "min": values.iter().copied().reduce(f64::min),
        "max": values.iter().copied().reduce(f64::max),
        "count": values.len(),
        "latest": values.last(),
    });
    if name == "origin_latency_ms" || name == "consult_latency_ms" {
        let mut h = Histogram::default();
        for s in &slides {
            h.merge(if name == "origin_latency_ms" { &s.latency } else { &s.consult_latency });
        }
        let l = LatencySummary::of(&h);
        stats = json!({"average": l.avg, "min": l.min, "max": l.max, "count": l.count, "latest": values.last(),
            "p50": l.p50, "p95": l.p95, "p99": l.p99});
    }
    let covered = if timeframe > window_ms { "the analytics window (older values: /history)" } else { "the timeframe" };
    Ok(respond::json(200, &json!({"metrics": stats, "timeframe": timeframe, "covers": covered, "timestamp": iso(now)})))
}

async fn history(env: &Env, name: &str, query: &str, now: f64) -> Result<Response, ApiError> {
    if !METRIC_NAMES.contains(&name) {
        return Err(ApiError::not_found(format!("unknown metric `{name}`")));
    }
    let num = |k: &str, default: f64| -> Result<f64, ApiError> {
        match query_param(query, k) {
            None => Ok(default),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| ApiError::new(400, "bad_range", format!("`{k}` is a time in ms since the epoch"))),
        }
    };
    let start = num("start", now - 3_600_000.0)?;
    let end = num("end", now)?;
    let kv = env.kv(hub::KV_BINDING).map_err(|_| ApiError::new(503, "kv_unavailable", "no METRICS KV binding"))?;
    // Newest hour bucket first, each listed to its end, within a fixed budget
    // of list calls (`intel::rollups`): the cost of a read depends on the
    // range asked for, never on how much history the TTL keeps.
    let mut scan = HistoryScan::new(name, start, end);
    let mut cursor: Option<String> = None;
    while let Some(prefix) = scan.prefix() {
        let mut list = kv.list().prefix(prefix).limit(rollups::LIST_PAGE);
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await.map_err(|e| ApiError::new(503, "kv_unavailable", e.to_string()))?;
        let meta = |k: &worker::kv::Key, f: &str| k.metadata.as_ref().and_then(|m| m.get(f)).and_then(Value::as_f64);
        // A page that says more follows but gives no cursor ends the hour.
        let complete = page.list_complete || page.cursor.is_none();
        scan.page(page.keys.iter().map(|k| (k.name.as_str(), meta(k, "v"), meta(k, "n"))), complete);
        cursor = if complete { None } else { page.cursor };
    }
    let h = scan.finish();
    // Each shard wrote its own key for a slide: merged by the metric's rule;
    // `shards` says how many were found (KV is eventually consistent).
    let points: Vec<Value> = h
        .points
        .iter()
        .filter_map(|(at, parts)| {
            rollups::merge(name, parts).map(|v| json!({"value": v, "timestamp": at, "shards": parts.len()}))
        })
        .collect();
    Ok(respond::json(
        200,
        &json!({
            "metrics": points,
            "count": points.len(),
            "range": {"start": h.covered_start_ms, "end": h.covered_end_ms, "clamped": h.clamped, "listCalls": h.list_calls},
            "timestamp": iso(now),
        }),
    ))
}

/// Prometheus text exposition (version 0.0.4): monotonic totals as
/// counters, the analytics window's measurements as gauges.
fn prometheus(m: &Merged, config: &Config, now: f64) -> Response {
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
        "Observations and samples lost: a profile or hub flush failed twice.",
        c(t.observations_dropped),
    );
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
    if let Some(p) = m.latest_closed(config, now) {
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
        vec![(String::new(), active_profiles(m))],
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

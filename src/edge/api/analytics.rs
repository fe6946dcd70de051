//! The read side of analytics (docs/api.md, docs/analytics.md): the views of the merged
//! window (`window::merged`) under `/api/intelligence/analytics`,
//! `/api/analytics/*` and `/api/performance/*` (the stream aside), each
//! derived with the same pure code the hub uses. History comes from the KV
//! rollups.

use serde_json::{json, Value};
use web_sys::Response;

use crate::bindings;
use crate::clock::now_ms;
use crate::edge::{record, respond};
use crate::error::ApiError;
use crate::intel::alerting::State;
use crate::intel::analytics::{AnalyticsConfig, LatencySummary, Totals, METRIC_NAMES};
use crate::intel::fingerprint;
use crate::intel::rollups::{self, HistoryScan};
use crate::intel::sketch::Histogram;
use crate::intel::views::{Direction, Views};

use super::common::{iso, query_param, Call};
use super::window::{merged, Merged};

fn window_json(analytics: &AnalyticsConfig) -> Value {
    json!({"slideSeconds": analytics.slide_s, "windowSeconds": analytics.window_s})
}

/// The merged window, its views at `now`, and `now` (read before the hubs are asked).
async fn views(c: &Call<'_>) -> Result<(Views, f64), ApiError> {
    let now = now_ms();
    let m = merged(c.io.env, &c.config.hub).await?;
    Ok((m.agg.views(&c.config.analytics, now), now))
}

/// `GET /api/intelligence/analytics`: the overview (totals, the newest
/// closed slide, the series, the KV writer's and this isolate's counters).
pub async fn overview(c: Call<'_>) -> Result<Response, ApiError> {
    let now = now_ms();
    let queued = record::queued();
    let config = c.config;
    let m = merged(c.io.env, &config.hub).await?;
    let latest = m.latest_closed(&config.analytics, now);
    let points = m.points();
    Ok(respond::json(
        200,
        &json!({
            "metrics": {
                "latestSlide": latest,
                // The per-rule counters are `rules` below, named.
                "totals": Totals { rules: Default::default(), challenges: Default::default(), ..m.agg.totals.clone() },
                "kvWrites": m.shards.first().map(|s| s.kv_writes.clone()).unwrap_or_default(),
                "kvPending": m.shards.iter().map(|s| s.kv_pending).sum::<usize>(),
                "kvFailures": m.shards.iter().map(|s| s.kv_failures).sum::<u64>(),
                "kvDropped": m.shards.iter().map(|s| s.kv_dropped).sum::<u64>(),
                "lastTick": m.shards.first().and_then(|s| s.last_tick).map(iso),
            },
            "activeProfiles": m.active_profiles(),
            "queueSize": queued,
            "subscriptions": {"streamClients": m.stream_clients(), "intelligence": m.shards.first().map_or(0, |s| s.intel_clients)},
            "series": {"slideSeconds": config.analytics.slide_s, "windowSeconds": config.analytics.window_s, "slides": points},
            "rules": m.rule_counters(),
            "challenges": m.challenge_counters(&config.analytics, now),
            "hubShards": config.hub.shards,
            "tier": m.tier(),
            "isolate": {
                "requests": crate::platform::isolate_counts().0,
                "objectCalls": crate::platform::isolate_counts().1,
                "objectCallsByBinding": crate::platform::calls_by_binding().into_iter().map(|(k, v)| (k, Value::from(v))).collect::<serde_json::Map<String, Value>>(),
            },
            "timestamp": iso(now),
        }),
    ))
}

/// `GET /api/analytics/insights`: patterns, moving trends and anomalies, described.
pub async fn insights(c: Call<'_>) -> Result<Response, ApiError> {
    let (views, now) = views(&c).await?;
    let mut insights = Vec::new();
    for p in &views.patterns {
        insights.push(json!({"kind": "pattern", "severity": p.severity, "description": p.description, "data": p}));
    }
    for t in views.trends.iter().filter(|t| t.direction != Direction::Flat) {
        let d = format!(
            "{} is trending {} ({:+.0}% over the window)",
            t.metric,
            t.direction.as_str(),
            t.change_rate * 100.0
        );
        insights.push(json!({"kind": "trend", "severity": "low", "description": d, "data": t}));
    }
    for a in &views.anomalies {
        let d = format!("{} ({}) is {:.1} standard deviations from the window", a.metric, a.scope, a.z);
        insights.push(json!({"kind": "anomaly", "severity": "medium", "description": d, "data": a}));
    }
    Ok(respond::json(
        200,
        &json!({"insights": insights, "window": window_json(&c.config.analytics), "timestamp": iso(now)}),
    ))
}

/// One view of the window with the window's shape and the time.
fn view_reply(c: &Call<'_>, name: &str, value: Value, now: f64) -> Response {
    let mut body = serde_json::Map::new();
    body.insert(name.to_string(), value);
    body.insert("window".into(), window_json(&c.config.analytics));
    body.insert("timestamp".into(), json!(iso(now)));
    respond::json(200, &Value::Object(body))
}

/// `GET /api/analytics/patterns`.
pub async fn patterns(c: Call<'_>) -> Result<Response, ApiError> {
    let (views, now) = views(&c).await?;
    Ok(view_reply(&c, "patterns", json!(views.patterns), now))
}

/// `GET /api/analytics/trends`.
pub async fn trends(c: Call<'_>) -> Result<Response, ApiError> {
    let (views, now) = views(&c).await?;
    Ok(view_reply(&c, "trends", json!(views.trends), now))
}

/// `GET /api/analytics/anomalies`.
pub async fn anomalies(c: Call<'_>) -> Result<Response, ApiError> {
    let (views, now) = views(&c).await?;
    Ok(view_reply(&c, "anomalies", json!(views.anomalies), now))
}

/// `GET /api/analytics/correlations`.
pub async fn correlations(c: Call<'_>) -> Result<Response, ApiError> {
    let (views, now) = views(&c).await?;
    Ok(view_reply(&c, "correlations", json!(views.correlations), now))
}

/// Fingerprints `GET /api/analytics/fingerprints` lists by default, and at most.
const FINGERPRINTS_DEFAULT: usize = 100;
const FINGERPRINTS_MAX: usize = 1_000;

/// `GET /api/analytics/fingerprints?limit=`: the window's most used client
/// fingerprints (`intel::fingerprint`), the flagged ones first, with who
/// uses them and how, and what the judgement says of each.
pub async fn fingerprints(c: Call<'_>) -> Result<Response, ApiError> {
    let query = c.query();
    let limit = match query_param(&query, "limit") {
        None => FINGERPRINTS_DEFAULT,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=FINGERPRINTS_MAX).contains(n)).ok_or_else(|| {
            ApiError::new(400, "bad_limit", format!("`limit` is a whole number from 1 to {FINGERPRINTS_MAX}"))
        })?,
    };
    let now = now_ms();
    let m = merged(c.io.env, &c.config.hub).await?;
    let (distinct, list) = fingerprint::views(m.agg.slides.values().map(|s| &s.fingerprints), limit);
    Ok(respond::json(
        200,
        &json!({
            "fingerprints": list,
            // How many the window holds (the list stops at `limit`).
            "distinct": distinct,
            "window": window_json(&c.config.analytics),
            "timestamp": iso(now),
        }),
    ))
}

/// `GET /api/performance/health`: the window's health (firing alerts, error
/// rate, lags); liveness is `GET /health/intelligence`.
pub async fn health(c: Call<'_>) -> Result<Response, ApiError> {
    let now = now_ms();
    let m = merged(c.io.env, &c.config.hub).await?;
    Ok(respond::json(200, &json!({"health": health_of(&m, &c.config.analytics, now), "timestamp": iso(now)})))
}

/// `GET /api/performance/alerts`: every rule's state; `alerts` are the pending and firing ones.
pub async fn alerts(c: Call<'_>) -> Result<Response, ApiError> {
    let now = now_ms();
    let config = c.config;
    let m = merged(c.io.env, &config.hub).await?;
    let rules: Vec<Value> = m
        .rules()
        .iter()
        .map(|r| {
            let rule = config.hub.alert_rules.iter().find(|x| x.name == r.rule);
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
    Ok(respond::json(200, &json!({"alerts": active, "rules": rules, "timestamp": iso(now)})))
}

fn health_of(m: &Merged, analytics: &AnalyticsConfig, now: f64) -> Value {
    let latest = m.latest_closed(analytics, now);
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
        // The aggregator tier (docs/analytics.md, "Tiers"): forwards failed
        // and the newest summary's lag.
        "aggregatorForwardFailures": m.tier().forward_failures,
        "aggregatorLagMs": m.tier().lag_ms,
        "streamClients": m.stream_clients(),
        // What the stream root's bounds cost since it started (docs/streams.md, "Bounds").
        "streamRoot": m.shards.first().map(|s| json!({
            "droppedMessages": s.stream_root.dropped,
            "lateDeliveries": s.stream_root.late_deliveries,
            "uncountedDropped": s.stream_root.uncounted_dropped,
        })),
        "activeProfiles": m.active_profiles(),
    })
}

/// `GET /api/performance/metrics/{name}`: one metric over the window (or a
/// shorter `?timeframe=` in ms).
pub async fn metric(c: Call<'_>) -> Result<Response, ApiError> {
    let now = now_ms();
    let (config, name, query) = (c.config, c.param("name"), c.query());
    let m = merged(c.io.env, &config.hub).await?;
    if !METRIC_NAMES.contains(&name) {
        return Err(ApiError::not_found(format!("unknown metric `{name}`; known: {}", METRIC_NAMES.join(", "))));
    }
    let window_ms = config.analytics.window_s as f64 * 1000.0;
    let timeframe =
        match query_param(&query, "timeframe") {
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

/// `GET /api/performance/metrics/{name}/history`: the metric's KV rollups
/// between `?start=` and `?end=` (ms; default: the last hour).
pub async fn history(c: Call<'_>) -> Result<Response, ApiError> {
    let now = now_ms();
    let (env, name, query) = (c.io.env, c.param("name"), c.query());
    if !METRIC_NAMES.contains(&name) {
        return Err(ApiError::not_found(format!("unknown metric `{name}`")));
    }
    let num = |k: &str, default: f64| -> Result<f64, ApiError> {
        match query_param(&query, k) {
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
    let kv = env.kv(bindings::METRICS).map_err(|_| ApiError::new(503, "kv_unavailable", "no METRICS KV binding"))?;
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
        let page = list.execute().await.map_err(|e| {
            ApiError::new(503, "kv_unavailable", "the metrics store did not answer; retry").with_detail(e.to_string())
        })?;
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

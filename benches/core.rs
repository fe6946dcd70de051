//! Native benchmarks of the pure core (`npm run bench` runs them with
//! `cargo bench`): the request path's own work (cf parsing, signals, score,
//! the client fingerprint, headers) and the analytics aggregator at 1 thousand, 100 thousand and 1
//! million events in the window. Numbers go to BENCHMARKS.md.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // a benchmark, not a request path

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use edgeintel::intel::analytics::{Aggregator, AnalyticsConfig, Sample};
use edgeintel::intel::facts::{CfFacts, RequestFacts};
use edgeintel::intel::fingerprint;
use edgeintel::intel::headers::{render, HeaderInput, IntelStatus};
use edgeintel::intel::score::{score, Weights};
use edgeintel::intel::signals::{request_signals, SignalConfig};

const CF: &str = r#"{"country":"DE","city":"Berlin","region":"Land Berlin","regionCode":"BE","continent":"EU",
"postalCode":"10115","timezone":"Europe/Berlin","latitude":"52.52437","longitude":"13.41053","asn":16276,
"asOrganization":"OVH SAS","colo":"FRA","httpProtocol":"HTTP/2","tlsVersion":"TLSv1.3","isEUCountry":"1",
"tlsClientCiphersSha1":"kXrN3VEKDdzz2cPKTQaKzpxVTxQ=","tlsClientExtensionsSha1":"1eY97BUYYO8vDaTfHQywB1pcNdM=",
"tlsClientHelloLength":"508","botManagement":{"score":12,"verifiedBot":false}}"#;

fn request() -> RequestFacts {
    RequestFacts {
        method: "GET".into(),
        path: "/wp-login.php?redirect_to=%2Fadmin".into(),
        user_agent: Some("python-requests/2.32.3".into()),
        accept: Some("*/*".into()),
        accept_language: None,
        header_names: vec!["accept".into(), "accept-encoding".into(), "user-agent".into()],
    }
}

/// parse cf + signals + score + fingerprint + headers: what the request path computes itself.
fn core_path(c: &mut Criterion) {
    let cfg = SignalConfig::default();
    let weights = Weights::default();
    let req = request();
    c.bench_function("core_path (cf parse + signals + score + headers)", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_str(black_box(CF)).unwrap_or_default();
            let cf = CfFacts::from_json(&v);
            let signals = request_signals(&cf, &req, &cfg);
            let verdict = score(&signals, &weights);
            let fp = fingerprint::id(&cf, &req.header_names);
            let headers = render(&HeaderInput {
                verdict: &verdict,
                level: verdict.level,
                threat: 0,
                reputation: 50,
                cf: &cf,
                status: IntelStatus::Ok,
                rule: None,
                cleared: None,
                fingerprint: fp.as_deref(),
            });
            black_box(headers)
        })
    });
    let v: serde_json::Value = serde_json::from_str(CF).unwrap_or_default();
    c.bench_function("cf parse (JSON value -> CfFacts)", |b| b.iter(|| black_box(CfFacts::from_json(black_box(&v)))));
}

fn sample(i: u64, now: f64) -> Sample {
    Sample {
        at: now - (i % 290_000) as f64,
        subject: format!("198.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        country: Some(["DE", "US", "FR", "JP", "BR"][(i % 5) as usize].to_string()),
        asn: Some(3320 + (i % 40) as u32),
        risk: (i % 100) as u8,
        threat: (i % 90) as u8,
        status: if i.is_multiple_of(50) { 404 } else { 200 },
        latency_ms: Some(5.0 + (i % 200) as f64),
        probe: i.is_multiple_of(97).then(|| "/.env".to_string()),
        // A fingerprint on every request, from 200 distinct ones.
        fp: Some(format!("{:016x}", i % 200)),
        fp_ua: (i % 3) as u8,
        fp_risky: i.is_multiple_of(4),
        fp_family: Some(["chrome", "curl", "python-requests"][(i % 3) as usize].to_string()),
        fp_reasons: if i.is_multiple_of(4) { 1 << 11 | 1 << 9 } else { 0 },
        ..Sample::default()
    }
}

/// The time of `iters` runs, each ingesting every sample into a new aggregator.
fn ingest_runs(cfg: &AnalyticsConfig, samples: &[Sample], now: f64, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut agg = Aggregator::default();
        let t = Instant::now();
        for s in samples {
            agg.ingest_sample(cfg, s, now);
        }
        total += t.elapsed();
        black_box(&agg);
    }
    total
}

/// Per-event ingest cost and tick (views) time with 1k, 100k, 1M events in
/// the window: the per-event cost should stay flat and the tick bounded.
fn analytics(c: &mut Criterion) {
    let cfg = AnalyticsConfig::default();
    let now = 1_780_000_200_000.0;
    let mut group = c.benchmark_group("analytics");
    group.sample_size(10);
    for n in [1_000u64, 100_000, 1_000_000] {
        let samples: Vec<Sample> = (0..n).map(|i| sample(i, now)).collect();
        group.bench_function(format!("ingest {n} events (time per run of {n})"), |b| {
            b.iter_custom(|iters| ingest_runs(&cfg, &samples, now, iters))
        });
        let mut agg = Aggregator::default();
        for s in &samples {
            agg.ingest_sample(&cfg, s, now);
        }
        group.bench_function(format!("tick views with {n} events in the window"), |b| {
            b.iter(|| black_box(agg.views(&cfg, now)))
        });
        group.bench_function(format!("fingerprint judgement with {n} events in the window"), |b| {
            b.iter(|| black_box(fingerprint::judge(agg.slides.values().map(|s| &s.fingerprints))))
        });
        if n == 100_000 {
            // The same events without a fingerprint: what the fingerprint
            // statistics cost per event, measured in the same run.
            let plain: Vec<Sample> = samples
                .iter()
                .map(|s| Sample { fp: None, fp_ua: 0, fp_risky: false, fp_family: None, fp_reasons: 0, ..s.clone() })
                .collect();
            group.bench_function(format!("ingest without fingerprints, {n} events (time per run of {n})"), |b| {
                b.iter_custom(|iters| ingest_runs(&cfg, &plain, now, iters))
            });
        }
        let bytes = serde_json::to_string(&agg).map(|s| s.len()).unwrap_or(0);
        println!("analytics state with {n} events in the window: {bytes} bytes serialized");
    }
    group.finish();
}

criterion_group!(benches, core_path, analytics);
criterion_main!(benches);

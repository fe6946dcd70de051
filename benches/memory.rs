//! Memory of the in-isolate state as distinct client IPs pass through
//! (`npm run bench`; the issue asks for 100,000). The verdict cache is the one
//! per-IP structure in the isolate that outlives a flush window, so it is what
//! could grow without limit; it is the pure core's `TtlLru`, measured here
//! natively with a counting allocator: live heap bytes after 1,000 ... 100,000
//! distinct IPs, each with a verdict carrying two signals, at the default
//! bound (`CACHE_MAX_ENTRIES`, 10,000). The runtime step of bench.mjs
//! complements it with workerd's resident memory after 20,000 new IPs.
//! Writes target/bench-memory.json.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // a benchmark, not a request path

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

use edgeintel::config::Config;
use edgeintel::intel::cache::TtlLru;
use edgeintel::intel::profile::ProfileVerdict;
use edgeintel::intel::signals::{Reason, Signal};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let config = Config::from_vars(|_| None).unwrap(); // the defaults
    let region = Region::new(GLOBAL);
    let mut cache: TtlLru<ProfileVerdict> =
        TtlLru::new(config.consult.cache_max_entries, f64::from(config.consult.cache_ttl_ms));
    let checkpoints = [1_000usize, 10_000, 20_000, 50_000, 100_000];
    let mut rows = Vec::new();
    let mut now = 0.0;
    for i in 1..=100_000usize {
        let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        let verdict = ProfileVerdict {
            exists: true,
            threat: 40,
            reputation: 45,
            signals: vec![
                Signal { reason: Reason::HostingAsn, points: None },
                Signal { reason: Reason::HighVelocity, points: None },
            ],
            step_ups: Vec::new(),
        };
        now += 1.0; // 1 ms apart: all within the TTL, so only the bound evicts
        cache.put(&ip, verdict, now);
        if checkpoints.contains(&i) {
            let c = region.change();
            let bytes = c.bytes_allocated as i64 - c.bytes_deallocated as i64;
            println!("memory: {i:>7} distinct IPs -> {:>6} entries, {:>9} live heap bytes", cache.len(), bytes);
            rows.push(format!(r#"{{"distinctIps":{i},"entries":{},"liveHeapBytes":{bytes}}}"#, cache.len()));
        }
    }
    let json = format!(r#"{{"bound":{},"checkpoints":[{}]}}"#, cache.capacity(), rows.join(","));
    std::fs::create_dir_all("target").unwrap();
    std::fs::write("target/bench-memory.json", json).unwrap();
}

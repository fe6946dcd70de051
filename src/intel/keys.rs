//! Every storage key and object name the code builds, and how each is read
//! back: KV keys (the analytics rollups, the allow/block lists), Durable
//! Object names (the hub's shards, the aggregators), and the keys of SQLite
//! rows whose key is made rather than taken as is (the hub's meta row, the
//! store's schema version, spent challenge solutions). Build and parse live
//! side by side and are tested both ways, so a key is never built in one
//! file and taken apart with `split` in another.
//!
//! Not here: the stream objects' names (`root`, `relay:<n>`), built and
//! parsed with the rest of the streams' logic in `intel::fanout`; a
//! subject's key (the name of its profile object, `ip::identify`: an address
//! or a hashed one), and a visitor's id (`edge::visitor`), which are
//! identities rather than layouts.
//!
//! Rollup key: `metrics:v2:<name>:<hour start>:<slide start>:<shard>`,
//! seconds since the epoch in 10 digits and the shard in 2, so lexicographic
//! order is time order within an hour (`intel::rollups` says why keys are
//! bucketed by hour).

/// The version segment of every rollup key (`v1` keys, flat by metric, are no
/// longer read; they expire by their TTL).
pub const ROLLUP_PREFIX: &str = "metrics:v2";
/// Seconds in a rollup key's hour bucket.
pub const HOUR_S: i64 = 3600;
/// The KV key of the allow and block lists (`/api/lists`).
pub const LISTS_KEY: &str = "config:v1:lists";
/// Well-known crawlers' published ranges as the Cron Trigger last fetched
/// them (`intel::crawlers::Stored`).
pub const CRAWLERS_KEY: &str = "config:v1:crawlers";

/// The fingerprints shard 0's hub judged over the window
/// (`intel::fingerprint::Sets`), read by the request path.
pub const FINGERPRINTS_KEY: &str = "config:v1:fingerprints";

/// A signed agent's key directory as fetched from its origin
/// (`edge::signed_agent`; KV expires it).
pub fn agent_directory_key(origin: &str) -> String {
    format!("agents:v1:{origin}")
}
/// The KV key of the per-route rules stored through `/api/config/rules`.
pub const RULES_KEY: &str = "config:v1:rules";
/// The hub's one meta row (`meta` table, `key` column).
pub const HUB_META_ROW: &str = "hub";
/// The hub's alert-webhook outbox row (`meta` table; `webhooks::Outbox`, shard 0 only).
pub const HUB_WEBHOOKS_ROW: &str = "webhooks:v1";
/// The profile store's schema version row (`meta` table, `key` column).
pub const SCHEMA_VERSION_ROW: &str = "schema_version";
/// The object name of hub shard 0, also the global stream hub.
pub const GLOBAL_HUB: &str = "global";
const SHARD_PREFIX: &str = "shard-";
const SOLUTION_PREFIX: &str = "pow:";

/// The start (s) of the hour bucket a slide start falls in.
pub fn hour_of(slide_start_s: i64) -> i64 {
    let s = slide_start_s.max(0);
    s - s.rem_euclid(HOUR_S)
}

/// The key of one metric of one slide, written by one hub shard.
pub fn slide_key(name: &str, slide_start_s: i64, shard: u32) -> String {
    let start = slide_start_s.max(0);
    format!("{ROLLUP_PREFIX}:{name}:{:010}:{start:010}:{shard:02}", hour_of(start))
}

/// `(slide start s, shard)` of a slide key of `name`; `None` for anything else.
pub fn parse_slide_key(name: &str, key: &str) -> Option<(i64, u32)> {
    let rest = key.strip_prefix(ROLLUP_PREFIX)?.strip_prefix(':')?.strip_prefix(name)?.strip_prefix(':')?;
    let mut parts = rest.split(':');
    let hour: i64 = parts.next()?.parse().ok()?;
    let start: i64 = parts.next()?.parse().ok()?;
    let shard: u32 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && hour_of(start) == hour).then_some((start, shard))
}

/// The prefix of one metric's keys in one hour bucket (what a history read lists).
pub fn hour_prefix(name: &str, hour_start_s: i64) -> String {
    format!("{ROLLUP_PREFIX}:{name}:{:010}:", hour_of(hour_start_s))
}

/// The key of a shard's newest slide point.
pub fn latest_key(shard: u32) -> String {
    format!("{ROLLUP_PREFIX}:latest:{shard:02}")
}

/// The shard of a `latest_key`.
pub fn parse_latest_key(key: &str) -> Option<u32> {
    let shard = key.strip_prefix(ROLLUP_PREFIX)?.strip_prefix(":latest:")?;
    (shard.len() >= 2 && shard.bytes().all(|b| b.is_ascii_digit())).then(|| shard.parse().ok()).flatten()
}

/// The object name of hub shard `i`: shard 0 (`global`) also evaluates the
/// site's alert rules and insights and counts the streams' events.
pub fn hub_name(i: u32) -> String {
    if i == 0 {
        GLOBAL_HUB.to_string()
    } else {
        format!("{SHARD_PREFIX}{i}")
    }
}

/// The regions aggregators are keyed by: Cloudflare's continent codes
/// (`request.cf.continent`). Anything else (absent, "T1" for Tor, a value we
/// do not know) is `other`, so there are at most 8 regions and object names
/// stay bounded whatever a request's `cf` says.
pub const REGIONS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];
/// The region of a request whose continent is unknown.
pub const OTHER_REGION: &str = "other";

/// The region (aggregator key) of a request's continent.
pub fn region_of(continent: Option<&str>) -> &'static str {
    continent
        .map(str::trim)
        .and_then(|c| REGIONS.iter().find(|r| r.eq_ignore_ascii_case(c)))
        .copied()
        .unwrap_or(OTHER_REGION)
}

/// The aggregator object an isolate reports to: `agg:<region>:<i>`, with
/// `i` its (random) isolate id modulo `AGGREGATORS_PER_REGION`, so that a
/// region's isolates spread over its aggregators. The region is a continent
/// (`region_of`), not a location: the hub and the stream root hear from
/// every aggregator once per forward period, so the number of aggregators
/// must stay small (8 regions x `AGGREGATORS_PER_REGION`), and an
/// aggregator's load must not depend on how isolates crowd into one colo.
pub fn aggregator_name(region: &str, isolate: u64, per_region: u32) -> String {
    let i = isolate % u64::from(per_region.max(1));
    format!("agg:{region}:{i}")
}

/// The shard index of a hub object name (`hub_name`'s inverse).
pub fn shard_index(name: &str) -> Option<u32> {
    if name == GLOBAL_HUB {
        return Some(0);
    }
    name.strip_prefix(SHARD_PREFIX)?.parse().ok().filter(|i| *i > 0)
}

/// The hub's `spent_tickets` id of a solved challenge (its token's nonce);
/// stream tickets are kept by their bare nonce, so the two never collide.
pub fn solution_key(nonce: &str) -> String {
    format!("{SOLUTION_PREFIX}{nonce}")
}

/// The nonce of a `solution_key`.
pub fn parse_solution_key(key: &str) -> Option<&str> {
    key.strip_prefix(SOLUTION_PREFIX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slide_keys_sort_in_time_order_and_parse_back() {
        let a = slide_key("request_count", 1_700_000_000, 0);
        assert_eq!(a, "metrics:v2:request_count:1699999200:1700000000:00");
        let b = slide_key("request_count", 1_700_000_060, 3);
        let c = slide_key("request_count", 1_700_003_600, 0);
        assert!(a < b && b < c);
        // Fixed width: a short number never sorts after a long one.
        assert!(slide_key("x", 999, 0) < slide_key("x", 1000, 0));
        assert!(b.starts_with(&hour_prefix("request_count", 1_700_000_060)));
        assert!(!c.starts_with(&hour_prefix("request_count", 1_700_000_060)));
        // Another metric whose name extends this one is not this one.
        assert_eq!(parse_slide_key("request_count", &slide_key("request_count_x", 60, 0)), None);
        assert_eq!(parse_slide_key("request_count", "metrics:v1:request_count:1700000000"), None);
        assert_eq!(parse_slide_key("request_count", "metrics:v2:request_count:0000000000:1700000000:00"), None);
        assert_eq!(parse_slide_key("request_count", &(a.clone() + ":extra")), None);
    }

    #[test]
    fn every_key_round_trips() {
        for name in ["request_count", "origin_latency_ms", "m"] {
            for start in [0, 59, 3600, 1_700_000_000, 9_999_999_999] {
                for shard in [0, 1, 7, 63, 99] {
                    let key = slide_key(name, start, shard);
                    assert_eq!(parse_slide_key(name, &key), Some((start, shard)), "{key}");
                    assert!(key.starts_with(&hour_prefix(name, start)));
                }
            }
        }
        for shard in [0, 2, 63, 99, 100] {
            assert_eq!(parse_latest_key(&latest_key(shard)), Some(shard));
        }
        assert_eq!(latest_key(2), "metrics:v2:latest:02");
        assert_eq!(parse_latest_key("metrics:v2:latest:"), None);
        assert_eq!(parse_latest_key("metrics:v2:latest:+1"), None);
        assert_eq!(hub_name(0), "global");
        assert_eq!(hub_name(3), "shard-3");
        for i in [0, 1, 3, 63, u32::MAX] {
            assert_eq!(shard_index(&hub_name(i)), Some(i));
        }
        assert_eq!(shard_index("shard-0"), None);
        assert_eq!(shard_index("shard-x"), None);
        assert_eq!(solution_key("abc"), "pow:abc");
        assert_eq!(parse_solution_key(&solution_key("abc")), Some("abc"));
        assert_eq!(parse_solution_key("abc"), None);
        assert_eq!(LISTS_KEY, "config:v1:lists");
        assert_eq!(RULES_KEY, "config:v1:rules");
    }

    #[test]
    fn aggregators_are_keyed_by_a_bounded_region() {
        assert_eq!(region_of(Some("EU")), "EU");
        assert_eq!(region_of(Some(" na ")), "NA");
        for odd in [None, Some(""), Some("XX"), Some("T1"), Some("EUROPE"), Some("E\u{301}")] {
            assert_eq!(region_of(odd), OTHER_REGION, "{odd:?}");
        }
        assert_eq!(aggregator_name("EU", 35, 16), "agg:EU:3");
        assert_eq!(aggregator_name(OTHER_REGION, 7, 0), "agg:other:0");
        // Every isolate id lands on one of the region's aggregators.
        let names: std::collections::BTreeSet<String> =
            (0..1000u64).map(|i| aggregator_name("AS", i * 7919, 16)).collect();
        assert_eq!(names.len(), 16);
    }
}

//! The Worker's binding names, one constant each, as `wrangler.toml` declares
//! them (and `tests/harness.mjs` binds them for the tests): the code never
//! spells a binding as a bare string. A native test checks that each is
//! declared in `wrangler.toml`.

/// One `ProfileObject` per subject (Durable Object namespace).
pub const PROFILES: &str = "PROFILES";
/// One `VisitorObject` per visitor cookie (Durable Object namespace).
pub const VISITORS: &str = "VISITORS";
/// The `AggregatorObject`s: the analytics' middle tier, `agg:<region>:<i>` (Durable Object namespace).
pub const AGGREGATORS: &str = "AGGREGATORS";
/// The `HubObject` shards: analytics, stream-ticket keys, challenge solutions (Durable Object namespace).
pub const HUB: &str = "HUB";
/// The `StreamObject`s: the global streams' root and relays (Durable Object namespace).
pub const STREAMS: &str = "STREAMS";
/// The `LimiterObject`s: one per rate-limit rule and key (Durable Object namespace).
pub const LIMITS: &str = "LIMITS";
/// KV: the analytics rollups and the allow/block lists (`intel::keys`).
pub const METRICS: &str = "METRICS";
/// Static assets: the dashboard (`www/`).
pub const ASSETS: &str = "ASSETS";

/// Every binding above.
pub const ALL: [&str; 8] = [PROFILES, VISITORS, AGGREGATORS, HUB, STREAMS, LIMITS, METRICS, ASSETS];

#[cfg(test)]
mod tests {
    #[test]
    fn every_binding_is_declared_in_wrangler_toml() {
        let toml = include_str!("../wrangler.toml");
        let declared = |name: &str| {
            toml.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#'))
                .any(|l| l.contains(&format!("name = \"{name}\"")) || l.starts_with(&format!("binding = \"{name}\"")))
        };
        for name in super::ALL {
            assert!(declared(name), "{name} is not declared in wrangler.toml");
        }
        assert!(!declared("NOPE"));
    }
}

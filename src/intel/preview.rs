//! What-if preview (issue 18, docs/policies.md "Preview"): a candidate
//! policy (rules, `ENFORCE`, thresholds) evaluated against a uniform sample
//! of the site's recent requests, before it is turned on.
//!
//! The sample is a reservoir per slide, kept by the analytics tiers like the
//! slides' counts: each isolate offers every request's `Facts` to its report
//! (Algorithm R, `DELTA_CAP` per slide), each aggregator merges its isolates'
//! reservoirs, and each hub shard merges the aggregators' into its own
//! (`HUB_CAP` per slide, in memory) for the slides of its window. A merge
//! keeps the sample uniform: every kept item stands for the same number of
//! requests (`Reservoir::merge`). The preview merges the window's
//! reservoirs (at most `PREVIEW_CAP` items) and decides each item with the
//! same pure functions the request path uses (`rules::first_match`,
//! `enforce::decide_policy`).
//!
//! Randomness comes from a hash of the inputs (splitmix64), so this module
//! stays pure and its tests exact; the requests themselves are the entropy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::enforce::{decide_policy, Action, DecideInput, Mode};
use super::lists::ListVerdict;
use super::rules::{first_match, LimitBy, RouteRule, RuleAction, RuleInput};
use super::signals::Reason;

/// Items per slide in an isolate's or an aggregator's delta.
pub const DELTA_CAP: usize = 128;
/// Items per slide a hub shard keeps.
pub const HUB_CAP: usize = 512;
/// Items one preview evaluates at most (over the whole window).
pub const PREVIEW_CAP: usize = 2_000;
/// The longest path kept (longer ones are cut: a rule's prefix still holds).
pub const MAX_PATH: usize = 256;
/// Subjects `topSubjects` lists.
const TOP_SUBJECTS: usize = 10;

/// What a policy decides a request on: its facts, as the request path saw
/// them. `subject` is the profile key (the HMAC of the address when
/// `IP_HASH_KEY` is set, never the raw IP then); the path has no query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    #[serde(rename = "t")]
    pub at: f64,
    #[serde(rename = "s")]
    pub subject: String,
    #[serde(rename = "p")]
    pub path: String,
    #[serde(rename = "m")]
    pub method: String,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(rename = "r")]
    pub score: u8,
    #[serde(rename = "n", default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    #[serde(rename = "b", default, skip_serializing_if = "std::ops::Not::not")]
    pub verified_bot: bool,
    /// The lists' verdict then: 1 allowed, 2 blocked, 0 neither (the lists
    /// are not re-read: a preview changes the policy, not the lists).
    #[serde(rename = "l", default, skip_serializing_if = "is_zero")]
    pub list: u8,
    #[serde(rename = "w", default, skip_serializing_if = "std::ops::Not::not")]
    pub widened: bool,
    /// Held a valid clearance (passes a challenge).
    #[serde(rename = "k", default, skip_serializing_if = "std::ops::Not::not")]
    pub cleared: bool,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Facts {
    pub fn list_code(v: ListVerdict) -> u8 {
        match v {
            ListVerdict::Neither => 0,
            ListVerdict::Allowed => 1,
            ListVerdict::Blocked => 2,
        }
    }

    fn list_verdict(&self) -> ListVerdict {
        match self.list {
            1 => ListVerdict::Allowed,
            2 => ListVerdict::Blocked,
            _ => ListVerdict::Neither,
        }
    }

    /// A path cut to `MAX_PATH` bytes (at a character boundary), no query.
    pub fn path_of(path: &str) -> String {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let mut cut = path.len().min(MAX_PATH);
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.get(..cut).unwrap_or("").to_string()
    }

    fn bytes(&self) -> usize {
        64 + self.subject.len() + self.path.len() + self.method.len() + 16 * self.reasons.len()
    }
}

/// A uniform sample of the requests a tier saw in one slide: `seen` of
/// them, `items` kept; each item stands for `seen / items.len()` requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reservoir {
    #[serde(rename = "n")]
    pub seen: u64,
    #[serde(rename = "i", default)]
    pub items: Vec<Facts>,
}

impl Reservoir {
    /// Algorithm R: the n-th request replaces a random item with probability cap/n.
    pub fn offer(&mut self, f: Facts, cap: usize) {
        self.seen += 1;
        if self.items.len() < cap {
            self.items.push(f);
            return;
        }
        let r = mix(self.seen ^ f.at.to_bits() ^ hash(&f.subject) ^ hash(&f.path).rotate_left(17));
        let j = r % self.seen;
        if let Some(slot) = usize::try_from(j).ok().and_then(|j| self.items.get_mut(j)) {
            *slot = f;
        }
    }

    /// Merges another tier's sample of the same slide, keeping at most `cap`
    /// items that each stand for the same number of requests: the side
    /// whose items stand for fewer requests is thinned to match, then both
    /// are thinned alike down to `cap`.
    pub fn merge(&mut self, o: &Reservoir, cap: usize) {
        if o.items.is_empty() {
            self.seen += o.seen;
            return;
        }
        let (a, b) = (std::mem::take(&mut self.items), o.items.clone());
        let wa = if a.is_empty() { 0.0 } else { self.seen as f64 / a.len() as f64 };
        let wb = o.seen as f64 / b.len() as f64;
        let w = wa.max(wb).max(1.0);
        let mut ka = ((a.len() as f64) * wa / w).round() as usize;
        let mut kb = ((b.len() as f64) * wb / w).round() as usize;
        if ka + kb > cap {
            let scale = cap as f64 / (ka + kb) as f64;
            ka = ((ka as f64) * scale).floor() as usize;
            kb = cap - ka;
        }
        let mut seed = mix(self.seen ^ o.seen.rotate_left(32) ^ (a.len() as u64) << 20 ^ b.len() as u64);
        let mut items = pick(a, ka.min(cap), &mut seed);
        items.extend(pick(b, kb, &mut seed));
        self.seen += o.seen;
        self.items = items;
    }

    /// Its size on the wire, estimated.
    pub fn bytes(&self) -> usize {
        16 + self.items.iter().map(Facts::bytes).sum::<usize>()
    }
}

/// `k` items of `v` chosen uniformly (a partial Fisher-Yates shuffle).
fn pick(mut v: Vec<Facts>, k: usize, seed: &mut u64) -> Vec<Facts> {
    let k = k.min(v.len());
    for i in 0..k {
        *seed = mix(*seed);
        let span = (v.len() - i) as u64;
        let j = i + (*seed % span) as usize;
        v.swap(i, j);
    }
    v.truncate(k);
    v
}

/// splitmix64's finaliser: a well-mixed 64-bit value from any input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a string.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Reservoirs by slide start, as deltas and hub shards carry them.
pub type Reservoirs = BTreeMap<i64, Reservoir>;

/// Merges `from` into `into`, slide by slide.
pub fn merge_all(into: &mut Reservoirs, from: &Reservoirs, cap: usize) {
    for (start, r) in from {
        into.entry(*start).or_default().merge(r, cap);
    }
}

/// One sample of the window: the window's reservoirs merged (at most `cap` items).
pub fn window_sample<'a>(slides: impl IntoIterator<Item = &'a Reservoir>, cap: usize) -> Reservoir {
    let mut out = Reservoir::default();
    for r in slides {
        out.merge(r, cap);
    }
    out
}

/// A policy to evaluate: the rules in order, the mode and its thresholds.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    pub rules: &'a [RouteRule],
    pub mode: Mode,
    pub challenge_at: u8,
    pub block_at: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Actions {
    pub forward: u64,
    pub challenge: u64,
    pub block: u64,
    pub rate_limit: u64,
}

impl Actions {
    fn add(&mut self, a: Action, n: u64) {
        match a {
            Action::Forward => self.forward += n,
            Action::Challenge => self.challenge += n,
            Action::Block => self.block += n,
            Action::RateLimit => self.rate_limit += n,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleOutcome {
    pub action: &'static str,
    pub dry_run: bool,
    /// Sampled requests the rule decided.
    pub matched: u64,
    /// Of those, the ones it would answer itself (challenge, block, 429).
    pub would_enforce: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectOutcome {
    pub subject: String,
    pub evaluated: u64,
    pub challenge: u64,
    pub block: u64,
    pub rate_limit: u64,
}

/// What a policy would have done to the sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub evaluated: u64,
    pub actions: Actions,
    pub by_rule: BTreeMap<String, RuleOutcome>,
    pub top_subjects: Vec<SubjectOutcome>,
}

/// Decides every item of `sample` with `policy`. `span_s` is how many
/// seconds the sample covers, for the rate-limit estimate: a `rate_limit`
/// rule's key is estimated to send `matches x (seen / items) x period / span`
/// requests a period; past the limit, the share `1 - limit / estimate` of
/// its sampled requests counts as `rate_limit` (the limiter itself counts
/// exactly; a sample can only estimate). `by: visitor` is estimated per
/// subject (the sample keeps no visitor).
pub fn evaluate(sample: &Reservoir, policy: &Policy<'_>, span_s: f64) -> Outcome {
    let mut out = Outcome { evaluated: sample.items.len() as u64, ..Outcome::default() };
    let mut subjects: BTreeMap<&str, SubjectOutcome> = BTreeMap::new();
    // Rate-limited requests are settled after the pass, per (rule, key).
    let mut limited: BTreeMap<(usize, String), Vec<&str>> = BTreeMap::new();
    for f in &sample.items {
        let input = DecideInput {
            mode: policy.mode,
            score: f.score,
            challenge_at: policy.challenge_at,
            block_at: policy.block_at,
            verified_bot: f.verified_bot,
            list: f.list_verdict(),
            cleared: f.cleared,
            widened: f.widened,
        };
        let rule = first_match(
            policy.rules,
            &RuleInput {
                path: &f.path,
                method: &f.method,
                country: f.country.as_deref(),
                asn: f.asn,
                reasons: &f.reasons,
                score: f.score,
            },
        );
        let d = decide_policy(&input, rule);
        let s = subjects
            .entry(&f.subject)
            .or_insert_with(|| SubjectOutcome { subject: f.subject.clone(), ..SubjectOutcome::default() });
        s.evaluated += 1;
        if let Some(r) = d.rule {
            let o = out.by_rule.entry(r.rule.id.clone()).or_insert_with(|| RuleOutcome {
                action: r.rule.action.as_str(),
                dry_run: r.rule.dry_run,
                ..RuleOutcome::default()
            });
            o.matched += 1;
            if r.rule.action == RuleAction::RateLimit && d.action == Action::Forward && !r.rule.dry_run {
                let key = match r.rule.rate_limit.as_ref().map(|l| l.by) {
                    Some(LimitBy::Asn) => format!("asn:{}", f.asn.unwrap_or(0)),
                    _ => f.subject.clone(),
                };
                let i = policy.rules.iter().position(|x| std::ptr::eq(x, r.rule)).unwrap_or(0);
                limited.entry((i, key)).or_default().push(&f.subject);
                continue;
            }
            if r.would != Action::Forward {
                o.would_enforce += 1;
            }
        }
        out.actions.add(d.action, 1);
        count(s, d.action, 1);
    }
    let per_item = if sample.items.is_empty() { 0.0 } else { sample.seen as f64 / sample.items.len() as f64 };
    for ((i, _), members) in limited {
        let Some(rule) = policy.rules.get(i) else { continue };
        let Some(limit) = &rule.rate_limit else { continue };
        let n = members.len() as u64;
        let estimate = n as f64 * per_item * f64::from(limit.period_seconds) / span_s.max(1.0);
        let over = if estimate > f64::from(limit.requests) { 1.0 - f64::from(limit.requests) / estimate } else { 0.0 };
        let refused = ((n as f64) * over).round() as u64;
        if let Some(o) = out.by_rule.get_mut(&rule.id) {
            o.would_enforce += refused;
        }
        out.actions.add(Action::RateLimit, refused);
        out.actions.add(Action::Forward, n - refused);
        // Who gets the refusals: the key's requests in order (for `by:
        // subject` all one subject; for `asn`, spread as sampled).
        for (k, subject) in members.iter().enumerate() {
            if let Some(s) = subjects.get_mut(subject) {
                count(s, if (k as u64) < refused { Action::RateLimit } else { Action::Forward }, 1);
            }
        }
    }
    let mut top: Vec<SubjectOutcome> =
        subjects.into_values().filter(|s| s.challenge + s.block + s.rate_limit > 0).collect();
    top.sort_by(|a, b| {
        (b.challenge + b.block + b.rate_limit)
            .cmp(&(a.challenge + a.block + a.rate_limit))
            .then(a.subject.cmp(&b.subject))
    });
    top.truncate(TOP_SUBJECTS);
    out.top_subjects = top;
    out
}

fn count(s: &mut SubjectOutcome, a: Action, n: u64) {
    match a {
        Action::Challenge => s.challenge += n,
        Action::Block => s.block += n,
        Action::RateLimit => s.rate_limit += n,
        Action::Forward => {}
    }
}

/// The API's answer: the candidate's outcome, with what the policy in force
/// would do to the same sample beside it, and what the sample stands for.
pub fn answer(sample: &Reservoir, candidate: &Outcome, current: &Outcome, span_s: f64) -> Value {
    let mut v = serde_json::to_value(candidate).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("represents".into(), json!(sample.seen));
        o.insert("spanSeconds".into(), json!(span_s.round()));
        o.insert("current".into(), json!({"actions": current.actions, "evaluated": current.evaluated}));
    }
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::intel::rules::parse_rules;

    fn facts(i: usize, subject: &str, path: &str, score: u8) -> Facts {
        Facts {
            at: 1_000.0 + i as f64,
            subject: subject.into(),
            path: path.into(),
            method: "GET".into(),
            country: Some("DE".into()),
            asn: Some(3320),
            score,
            reasons: vec![],
            verified_bot: false,
            list: 0,
            widened: false,
            cleared: false,
        }
    }

    #[test]
    fn a_reservoir_keeps_a_uniform_bounded_sample() {
        // 10,000 requests, half to /a (the first 5,000), into 100 slots: about half stay /a.
        let mut r = Reservoir::default();
        for i in 0..10_000 {
            r.offer(facts(i, &format!("s{i}"), if i < 5_000 { "/a" } else { "/b" }, 0), 100);
        }
        assert_eq!((r.seen, r.items.len()), (10_000, 100));
        let a = r.items.iter().filter(|f| f.path == "/a").count();
        assert!((30..=70).contains(&a), "{a} of 100 from the first half");
    }

    #[test]
    fn a_merge_keeps_every_item_standing_for_as_many_requests() {
        // A saw 1,000 (100 kept: 10 each), B saw 10 (10 kept: 1 each):
        // B is thinned to 1 item, so the merged sample stays uniform.
        let mut a = Reservoir::default();
        for i in 0..1_000 {
            a.offer(facts(i, "a", "/a", 0), 100);
        }
        let mut b = Reservoir::default();
        for i in 0..10 {
            b.offer(facts(i, "b", "/b", 0), 100);
        }
        let mut m = a.clone();
        m.merge(&b, 500);
        assert_eq!(m.seen, 1_010);
        assert_eq!(m.items.iter().filter(|f| f.path == "/b").count(), 1);
        assert_eq!(m.items.len(), 101);
        // Merged into a smaller cap: both thinned alike.
        let mut small = a.clone();
        small.merge(&a, 50);
        assert_eq!((small.seen, small.items.len()), (2_000, 50));
        // Into an empty one: a copy; an empty one merged: only its count.
        let mut e = Reservoir::default();
        e.merge(&b, 500);
        assert_eq!((e.seen, e.items.len()), (b.seen, b.items.len()));
        e.merge(&Reservoir { seen: 5, items: vec![] }, 500);
        assert_eq!(e.seen, 15);
    }

    #[test]
    fn evaluates_rules_the_mode_and_estimates_rate_limits() {
        let rules = parse_rules(
            &serde_json::from_str::<serde_json::Value>(
                r#"[{"id": "admin", "match": {"path": "/admin*"}, "action": "block"},
                {"id": "beta", "match": {"path": "/beta"}, "action": "challenge", "dryRun": true},
                {"id": "login", "match": {"path": "/login"}, "action": "rate_limit",
                 "rateLimit": {"requests": 10, "periodSeconds": 60}}]"#,
            )
            .unwrap(),
        )
        .unwrap();
        let mut items = Vec::new();
        for i in 0..3 {
            items.push(facts(i, "x", "/admin/users", 0));
        }
        items.push(facts(3, "y", "/beta", 0));
        items.push(facts(4, "z", "/", 70));
        items.push(facts(5, "w", "/", 10));
        // 40 logins by one subject in the sample, each standing for 1 request, over 60 s: 4x the limit.
        for i in 0..40 {
            items.push(facts(10 + i, "l", "/login", 0));
        }
        let mut allowed = facts(99, "ok", "/admin", 90);
        allowed.list = 1;
        items.push(allowed);
        let sample = Reservoir { seen: items.len() as u64, items };
        let policy = Policy { rules: &rules, mode: Mode::Block, challenge_at: 40, block_at: 65 };
        let o = evaluate(&sample, &policy, 60.0);
        assert_eq!(o.evaluated, 47);
        assert_eq!(o.actions, Actions { forward: 1 + 1 + 1 + 10, challenge: 0, block: 3 + 1, rate_limit: 30 });
        assert_eq!(o.by_rule["admin"].matched, 3);
        assert_eq!(
            (o.by_rule["beta"].matched, o.by_rule["beta"].would_enforce),
            (1, 1),
            "a dry run counts what it would do"
        );
        assert_eq!((o.by_rule["login"].matched, o.by_rule["login"].would_enforce), (40, 30));
        assert_eq!(o.top_subjects[0].subject, "l");
        assert_eq!(o.top_subjects[0].rate_limit, 30);
        assert_eq!(o.top_subjects.iter().map(|s| s.subject.as_str()).collect::<Vec<_>>(), ["l", "x", "z"]);
        // The same sample with no rules and ENFORCE=off: everything forwarded.
        let off = evaluate(&sample, &Policy { rules: &[], mode: Mode::Off, challenge_at: 40, block_at: 65 }, 60.0);
        assert_eq!(off.actions.forward, 47);
        assert!(off.top_subjects.is_empty() && off.by_rule.is_empty());
    }

    #[test]
    fn paths_are_cut_without_their_query() {
        assert_eq!(Facts::path_of("/a?b=c"), "/a");
        let long = format!("/{}", "é".repeat(300));
        let cut = Facts::path_of(&long);
        assert!(cut.len() <= MAX_PATH && long.starts_with(&cut));
    }
}

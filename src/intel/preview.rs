//! What-if preview (issue 18, docs/policies.md "Preview"): a candidate
//! policy (rules, `ENFORCE`, thresholds) evaluated against a uniform sample
//! of the site's recent requests, before it is turned on.
//!
//! The sample is a reservoir per slide, kept by the analytics tiers like the
//! slides' counts: each isolate offers every request's `Facts` to its report
//! (`DELTA_CAP` per slide), each aggregator merges its isolates' reservoirs,
//! and each hub shard merges the aggregators' into its own (in memory, at
//! most `HUB_WINDOW_CAP` over its window) for the slides of its window. It is
//! a bottom-k sample: every request gets a random priority where it is seen
//! (`Facts::priority`, from the platform's random source), and every tier
//! keeps the `cap` lowest priorities. The union's lowest are the lowest of
//! all requests, so each merge is exactly a uniform sample of everything
//! merged, however unequal the parts (a quiet isolate or region is not
//! thinned away by a busy one). The preview merges the window's reservoirs
//! (at most `PREVIEW_CAP` items) and decides each item with the same pure
//! functions the request path uses (`rules::first_match`,
//! `enforce::decide_policy`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::enforce::{decide_policy, Action, DecideInput, Mode};
use super::lists::ListVerdict;
use super::rules::{first_match, LimitBy, RouteRule, RuleAction, RuleInput};
use super::signals::Reason;

/// Items per slide in an isolate's or an aggregator's delta.
pub const DELTA_CAP: usize = 128;
/// Items a hub shard keeps over its whole window (split evenly over its
/// slides: `hub_cap`), so memory does not grow with the number of slides.
pub const HUB_WINDOW_CAP: usize = 8_192;
/// The longest method kept (a custom method is cut).
pub const MAX_METHOD: usize = 16;
/// Sampled requests of one key a rate-limit estimate needs: one or two
/// sampled hits of a key say nothing of its rate when each sampled request
/// stands for many (a million one-request clients are not over any limit).
pub const MIN_KEY_HITS: u64 = 3;
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
    /// The random priority the bottom-k sample keeps the lowest of
    /// (uniform over u64, drawn once per request where it is seen).
    #[serde(rename = "q", default)]
    pub priority: u64,
}

fn cut(s: &str, max: usize) -> String {
    let mut at = s.len().min(max);
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.get(..at).unwrap_or("").to_string()
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
        cut(path.split(['?', '#']).next().unwrap_or(""), MAX_PATH)
    }

    /// A method cut to `MAX_METHOD` bytes.
    pub fn method_of(method: &str) -> String {
        cut(method, MAX_METHOD)
    }

    fn bytes(&self) -> usize {
        64 + self.subject.len() + self.path.len() + self.method.len() + 16 * self.reasons.len()
    }
}

/// A uniform sample of the requests a tier saw in one slide: `seen` of
/// them; `items` holds every one whose priority is at most `threshold`
/// (each request is in with the same chance), so each item stands for
/// about `seen / items.len()` requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservoir {
    #[serde(rename = "n")]
    pub seen: u64,
    #[serde(rename = "i", default)]
    pub items: Vec<Facts>,
    /// `u64::MAX` until an item was left out; then the highest priority kept.
    #[serde(rename = "h", default = "no_threshold")]
    pub threshold: u64,
}

impl Default for Reservoir {
    fn default() -> Reservoir {
        Reservoir { seen: 0, items: Vec::new(), threshold: u64::MAX }
    }
}

fn no_threshold() -> u64 {
    u64::MAX
}

impl Reservoir {
    /// Counts a request and keeps its facts if their priority is among the
    /// `cap` lowest seen.
    pub fn offer(&mut self, f: Facts, cap: usize) {
        self.seen += 1;
        self.keep(f, cap);
    }

    fn keep(&mut self, f: Facts, cap: usize) {
        if f.priority > self.threshold {
            return;
        }
        self.items.push(f);
        if self.items.len() > cap {
            self.trim(cap);
        }
    }

    /// Keeps the `cap` lowest priorities; the highest kept is the new threshold.
    fn trim(&mut self, cap: usize) {
        self.items.sort_by_key(|f| f.priority);
        self.items.truncate(cap);
        self.threshold = self.items.last().map_or(0, |f| f.priority);
    }

    /// Merges another tier's sample of the same slide: the items both hold
    /// under the lower threshold (below it each side holds every request it
    /// saw), at most `cap` of them, and both counts. Exactly a uniform
    /// sample of every request the two saw, however unequal they are.
    pub fn merge(&mut self, o: &Reservoir, cap: usize) {
        self.seen += o.seen;
        self.threshold = self.threshold.min(o.threshold);
        let t = self.threshold;
        self.items.retain(|f| f.priority <= t);
        self.items.extend(o.items.iter().filter(|f| f.priority <= t).cloned());
        if self.items.len() > cap {
            self.trim(cap);
        }
    }

    /// Drops a subject's items (an erasure), and the requests they stood for
    /// from `seen`, so the others do not seem to stand for more.
    pub fn forget(&mut self, subject: &str) {
        let before = self.items.len();
        let weight = self.weight();
        self.items.retain(|f| f.subject != subject);
        let removed = (before - self.items.len()) as f64 * weight;
        self.seen = self.seen.saturating_sub(removed.round() as u64);
    }

    /// How many requests each item stands for.
    pub fn weight(&self) -> f64 {
        if self.items.is_empty() {
            0.0
        } else {
            self.seen as f64 / self.items.len() as f64
        }
    }

    /// Its size on the wire, estimated.
    pub fn bytes(&self) -> usize {
        16 + self.items.iter().map(Facts::bytes).sum::<usize>()
    }
}

/// Items per slide a hub shard keeps for a window of `slides` slides.
pub fn hub_cap(slides: i64) -> usize {
    (HUB_WINDOW_CAP / usize::try_from(slides.max(1)).unwrap_or(1)).max(DELTA_CAP)
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
    /// Spelled as in `actions` (and the contract's `rate_limit`).
    #[serde(rename = "rate_limit")]
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
/// rule's key with at least `MIN_KEY_HITS` sampled requests is estimated to
/// send `matches x (seen / items) x period / span` requests a period; past
/// the limit, the share `1 - limit / estimate` of its sampled requests
/// counts as `rate_limit` (for a dry run: in `wouldEnforce` only, the
/// requests forwarded). The limiter itself counts exactly; a sample can only
/// estimate. `by: visitor` is estimated per subject (the sample keeps no
/// visitor).
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
            if r.rule.action == RuleAction::RateLimit && d.action == Action::Forward {
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
    let per_item = sample.weight();
    for ((i, _), members) in limited {
        let Some(rule) = policy.rules.get(i) else { continue };
        let Some(limit) = &rule.rate_limit else { continue };
        let n = members.len() as u64;
        let estimate = n as f64 * per_item * f64::from(limit.period_seconds) / span_s.max(1.0);
        let over = if n >= MIN_KEY_HITS && estimate > f64::from(limit.requests) {
            1.0 - f64::from(limit.requests) / estimate
        } else {
            0.0
        };
        let would = (((n as f64) * over).round() as u64).min(n);
        if let Some(o) = out.by_rule.get_mut(&rule.id) {
            o.would_enforce += would;
        }
        // A dry run forwards them all; the origin is told `limited`.
        let refused = if rule.dry_run { 0 } else { would };
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

    /// splitmix64: the tests' stand-in for the platform's random priorities.
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

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
            priority: mix(i as u64 ^ 0x5eed),
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
        assert!(r.items.iter().all(|f| f.priority <= r.threshold));
    }

    #[test]
    fn merges_stay_uniform_however_unequal_the_parts() {
        // One busy report (1,280 requests) and 100 quiet ones of 3 (300): the
        // quiet ones are 19% of the traffic, and keep about that share.
        let (mut n, mut merged) = (0, Reservoir::default());
        let mut busy = Reservoir::default();
        for _ in 0..1_280 {
            busy.offer(facts(n, "busy", "/busy", 0), DELTA_CAP);
            n += 1;
        }
        merged.merge(&busy, 400);
        for _ in 0..100 {
            let mut quiet = Reservoir::default();
            for _ in 0..3 {
                quiet.offer(facts(n, "quiet", "/quiet", 0), DELTA_CAP);
                n += 1;
            }
            merged.merge(&quiet, 400);
        }
        assert_eq!(merged.seen, 1_580);
        assert!(merged.items.len() <= DELTA_CAP.max(400));
        let quiet = merged.items.iter().filter(|f| f.path == "/quiet").count() as f64 / merged.items.len() as f64;
        assert!((0.08..=0.32).contains(&quiet), "quiet share {quiet:.2} of {} items", merged.items.len());
        // The same requests offered to one reservoir keep exactly the same items.
        let mut one = Reservoir::default();
        for i in 0..n {
            one.offer(facts(i, if i < 1_280 { "busy" } else { "quiet" }, "/", 0), DELTA_CAP);
        }
        let mut a: Vec<u64> = merged.items.iter().map(|f| f.priority).filter(|p| *p <= one.threshold).collect();
        a.sort_unstable();
        let mut b: Vec<u64> = one.items.iter().map(|f| f.priority).collect();
        b.sort_unstable();
        assert_eq!(a, b, "a merge is the lowest priorities of all the requests");
    }

    #[test]
    fn an_erasure_takes_the_subjects_share_of_the_count() {
        let mut r = Reservoir::default();
        for i in 0..1_000 {
            r.offer(facts(i, if i % 2 == 0 { "gone" } else { "kept" }, "/", 0), 100);
        }
        let weight = r.weight();
        r.forget("gone");
        assert!(r.items.iter().all(|f| f.subject == "kept"));
        assert!((r.weight() - weight).abs() < 0.01, "the others stand for as many as before");
        assert!((400..=600).contains(&r.seen), "{}", r.seen);
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
        let sample = Reservoir { seen: items.len() as u64, items, threshold: u64::MAX };
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
        // As a dry run, the limit is reported and nothing refused.
        let mut dry = rules.clone();
        dry[2].dry_run = true;
        let o = evaluate(&sample, &Policy { rules: &dry, mode: Mode::Block, challenge_at: 40, block_at: 65 }, 60.0);
        assert_eq!((o.actions.rate_limit, o.by_rule["login"].would_enforce), (0, 30));
        // The same sample with no rules and ENFORCE=off: everything forwarded.
        let off = evaluate(&sample, &Policy { rules: &[], mode: Mode::Off, challenge_at: 40, block_at: 65 }, 60.0);
        assert_eq!(off.actions.forward, 47);
        assert!(off.top_subjects.is_empty() && off.by_rule.is_empty());
    }

    #[test]
    fn a_thinned_sample_does_not_invent_rate_limited_clients() {
        // A million logins by a million clients over 600 s, 2,000 sampled: no
        // client is over 10 a minute, and one sampled hit each says so.
        let rules = parse_rules(
            &serde_json::from_str::<serde_json::Value>(
                r#"[{"id": "login", "match": {"path": "/login"}, "action": "rate_limit",
                     "rateLimit": {"requests": 10, "periodSeconds": 60}}]"#,
            )
            .unwrap(),
        )
        .unwrap();
        let items: Vec<Facts> = (0..2_000).map(|i| facts(i, &format!("c{i}"), "/login", 0)).collect();
        let sample = Reservoir { seen: 1_000_000, items, threshold: u64::MAX / 500 };
        let o = evaluate(&sample, &Policy { rules: &rules, mode: Mode::Off, challenge_at: 40, block_at: 65 }, 600.0);
        assert_eq!((o.actions.rate_limit, o.actions.forward), (0, 2_000));
    }

    #[test]
    fn paths_are_cut_without_their_query() {
        assert_eq!(Facts::path_of("/a?b=c"), "/a");
        let long = format!("/{}", "é".repeat(300));
        let cut = Facts::path_of(&long);
        assert!(cut.len() <= MAX_PATH && long.starts_with(&cut));
    }
}

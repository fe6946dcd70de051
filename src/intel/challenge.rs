//! Challenges that respect real people (issue 19, docs/enforcement.md):
//! what a challenge and its clearance are bound to (`CLEARANCE_BINDING`),
//! how hard the proof-of-work is for a given score, the wait of the path for
//! browsers without JavaScript, why a challenge was issued (carried in its
//! token so a solution can be counted against it), and the challenge
//! counters of the analytics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a challenge token and its clearance cookie are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Binding {
    /// The request's own subject (its IPv4 address or IPv6 /64): a clearance
    /// works from that address only.
    #[default]
    Subject,
    /// The signed visitor (`ei_vid`, or the hashed `VISITOR_COOKIE`) plus the
    /// browser family of its User-Agent: the same browser keeps its clearance
    /// when it moves between IPv4 and IPv6 or between networks. Requests
    /// without a visitor fall back to the subject.
    Visitor,
}

impl Binding {
    pub fn parse(s: &str) -> Option<Binding> {
        match s {
            "subject" => Some(Binding::Subject),
            "visitor" => Some(Binding::Visitor),
            _ => None,
        }
    }
}

/// The browser family of a User-Agent: coarse on purpose, so a browser
/// update or a new OS version keeps the clearance, while a cookie pair
/// copied into a different client family does not carry over.
pub fn ua_family(ua: &str) -> &'static str {
    // Order matters: Edge, Opera and Samsung Internet also say "Chrome/",
    // Chrome also says "Safari/".
    let has = |m: &str| ua.contains(m);
    if has("Edg/") || has("EdgA/") || has("EdgiOS/") {
        "edge"
    } else if has("OPR/") || has("Opera") {
        "opera"
    } else if has("SamsungBrowser/") {
        "samsung"
    } else if has("Firefox/") || has("FxiOS/") {
        "firefox"
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        "chrome"
    } else if has("Safari/") {
        "safari"
    } else {
        "other"
    }
}

/// The string a token and a clearance are signed with. `subject` is the
/// request's own subject key; `visitor` the visitor key when the request
/// presented its visitor cookie (a visitor minted for this very request
/// has no cookie in the browser yet and is not used).
pub fn bound_to(binding: Binding, subject: &str, visitor: Option<&str>, user_agent: Option<&str>) -> String {
    match (binding, visitor) {
        (Binding::Visitor, Some(v)) => format!("visitor:{v}|{}", ua_family(user_agent.unwrap_or(""))),
        _ => subject.to_string(),
    }
}

/// The proof-of-work settings (`CHALLENGE_DIFFICULTY`, `_MAX`, `_STEP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difficulty {
    /// Leading zero bits at `CHALLENGE_AT` (and for a challenge by rule or step-up below it).
    pub base: u8,
    /// Never more than this (at least `base`).
    pub max: u8,
    /// Points above `CHALLENGE_AT` per extra bit (each bit doubles the
    /// expected work); 0 keeps the difficulty at `base`.
    pub step: u8,
}

impl Difficulty {
    /// `base + floor((score - challenge_at) / step)`, at most `max`.
    pub fn for_score(&self, score: u8, challenge_at: u8) -> u8 {
        if self.step == 0 || score <= challenge_at {
            return self.base;
        }
        let extra = (score - challenge_at) / self.step;
        self.base.saturating_add(extra).min(self.max.max(self.base))
    }
}

/// Seconds a browser without JavaScript waits before it may take the
/// no-script path (`CHALLENGE_NOSCRIPT_WAIT_SECONDS`, plus as many seconds
/// again per bit above the base difficulty); `None` when the path is off.
pub fn noscript_wait_s(base_wait_s: u32, difficulty: u8, base: u8) -> Option<u32> {
    if base_wait_s == 0 {
        return None;
    }
    let extra = u32::from(difficulty.saturating_sub(base));
    Some(base_wait_s.saturating_mul(1 + extra).min(MAX_NOSCRIPT_WAIT_S))
}

/// The longest no-script wait: half a token's life, so the page's refresh
/// always lands while its token is still valid (`enforce::TOKEN_TTL_MS`).
pub const MAX_NOSCRIPT_WAIT_S: u32 = (crate::intel::enforce::TOKEN_TTL_MS / 2000.0) as u32;

/// Why a challenge was issued: what decided it and the request's top reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Why {
    /// `score` (`CHALLENGE_AT`), `rule:<id>` or `step_up` (the origin asked).
    pub trigger: String,
    /// The reason with the most points, or `none`.
    pub reason: String,
}

/// The longest label a token carries (a rule id is at most 64 characters).
const MAX_LABEL: usize = 128;

impl Why {
    /// `<trigger>|<reason>`: the counters' key and the token's label.
    pub fn label(&self) -> String {
        format!("{}|{}", self.trigger, self.reason)
    }

    /// Reads a label back (from a token or a counters key); anything
    /// malformed is `None` and counted nowhere.
    pub fn from_label(label: &str) -> Option<Why> {
        if label.len() > MAX_LABEL {
            return None;
        }
        let (trigger, reason) = label.split_once('|')?;
        let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-:".contains(c));
        // The reason is a known code: a label that comes back unsigned
        // (Turnstile's form) cannot invent reasons.
        let known = reason == "none" || super::signals::Reason::from_code(reason).is_some();
        (ok(trigger) && known).then(|| Why { trigger: trigger.to_string(), reason: reason.to_string() })
    }

    /// The rule id of a `rule:<id>` trigger.
    pub fn rule(&self) -> Option<&str> {
        self.trigger.strip_prefix("rule:")
    }
}

/// One challenge outcome, as an isolate counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A challenge answer was sent (page or JSON).
    Issued,
    /// A solution was accepted; `solve_ms` from issue to solution (unknown
    /// for Turnstile), `noscript` when it came by the no-script wait.
    Solved { solve_ms: Option<u64>, noscript: bool },
    /// A solution was refused (wrong work, expired, another client's token, reused).
    Failed,
}

/// Challenge counters of one `<trigger>|<reason>` label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeCounts {
    #[serde(rename = "i", default)]
    pub issued: u64,
    #[serde(rename = "s", default)]
    pub solved: u64,
    /// Of `solved`, those that came by the no-script wait.
    #[serde(rename = "n", default)]
    pub solved_noscript: u64,
    #[serde(rename = "f", default)]
    pub failed: u64,
    /// Sum of the solve times (ms) of the `timed` solutions, for the mean.
    #[serde(rename = "t", default)]
    pub solve_ms: u64,
    #[serde(rename = "m", default)]
    pub timed: u64,
}

impl ChallengeCounts {
    pub fn count(&mut self, o: Outcome) {
        match o {
            Outcome::Issued => self.issued += 1,
            Outcome::Solved { solve_ms, noscript } => {
                self.solved += 1;
                self.solved_noscript += u64::from(noscript);
                if let Some(ms) = solve_ms {
                    self.solve_ms = self.solve_ms.saturating_add(ms);
                    self.timed += 1;
                }
            }
            Outcome::Failed => self.failed += 1,
        }
    }

    pub fn add(&mut self, o: &ChallengeCounts) {
        self.issued += o.issued;
        self.solved += o.solved;
        self.solved_noscript += o.solved_noscript;
        self.failed += o.failed;
        self.solve_ms = self.solve_ms.saturating_add(o.solve_ms);
        self.timed += o.timed;
    }
}

/// Labels kept per slide and in the totals since start; past it a new label
/// is not counted (triggers x reasons: 200 stored + 200 `RULES` rules and
/// the score's and step-ups' reasons fit many times over).
pub const MAX_LABELS: usize = 1_000;

/// Adds `c` of `label` to a bounded map of counters.
pub fn add_counts(map: &mut BTreeMap<String, ChallengeCounts>, label: &str, c: &ChallengeCounts) {
    if let Some(have) = map.get_mut(label) {
        have.add(c);
    } else if map.len() < MAX_LABELS {
        map.insert(label.to_string(), *c);
    }
}

/// One label's counters as the API, `/metrics` and the dashboard show them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeCounter {
    pub trigger: String,
    /// The rule id for a `rule:<id>` trigger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub reason: String,
    pub since_start: ChallengeView,
    pub window: ChallengeView,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeView {
    pub issued: u64,
    pub solved: u64,
    pub solved_noscript: u64,
    pub failed: u64,
    /// Issued more than a token's lifetime ago and never solved:
    /// `issued - solved` over the slides that ended before then (a solution
    /// is counted in the slide its token was issued in). Challenges of the
    /// last `TOKEN_TTL` are still `pending`.
    pub abandoned: u64,
    pub pending: u64,
    /// Mean time from issue to solution (ms), when any timed one was solved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_solve_ms: Option<u64>,
}

/// Counters of one slide, with whether its challenges can still be solved.
pub struct SlideCounts<'a> {
    pub counts: &'a BTreeMap<String, ChallengeCounts>,
    /// The slide ended more than a token's lifetime ago.
    pub settled: bool,
}

fn view(c: &ChallengeCounts, pending: u64) -> ChallengeView {
    let unsolved = c.issued.saturating_sub(c.solved);
    ChallengeView {
        issued: c.issued,
        solved: c.solved,
        solved_noscript: c.solved_noscript,
        failed: c.failed,
        abandoned: unsolved.saturating_sub(pending),
        pending,
        mean_solve_ms: (c.timed > 0).then(|| c.solve_ms / c.timed),
    }
}

/// Every label counted since start or in the window's slides, busiest in
/// the window first.
pub fn counters<'a>(
    totals: &BTreeMap<String, ChallengeCounts>,
    slides: impl Iterator<Item = SlideCounts<'a>>,
) -> Vec<ChallengeCounter> {
    let mut window: BTreeMap<String, ChallengeCounts> = BTreeMap::new();
    let mut pending: BTreeMap<String, u64> = BTreeMap::new();
    for s in slides {
        for (k, c) in s.counts {
            add_counts(&mut window, k, c);
            if !s.settled {
                *pending.entry(k.clone()).or_default() += c.issued.saturating_sub(c.solved);
            }
        }
    }
    let keys: std::collections::BTreeSet<&String> = totals.keys().chain(window.keys()).collect();
    let mut out: Vec<ChallengeCounter> = keys
        .into_iter()
        .filter_map(|k| {
            let why = Why::from_label(k)?;
            let p = pending.get(k).copied().unwrap_or(0);
            Some(ChallengeCounter {
                rule: why.rule().map(str::to_string),
                trigger: if why.rule().is_some() { "rule".to_string() } else { why.trigger.clone() },
                reason: why.reason,
                since_start: view(&totals.get(k).copied().unwrap_or_default(), p),
                window: view(&window.get(k).copied().unwrap_or_default(), p),
            })
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.window.issued));
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const EDGE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0";
    const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

    #[test]
    fn browser_families_survive_updates_and_tell_browsers_apart() {
        assert_eq!(ua_family(CHROME), "chrome");
        assert_eq!(ua_family(&CHROME.replace("131.0.0.0", "132.0.6834.83")), "chrome");
        assert_eq!(ua_family(EDGE), "edge");
        assert_eq!(ua_family(SAFARI), "safari");
        assert_eq!(ua_family(FIREFOX), "firefox");
        assert_eq!(ua_family("curl/8.5.0"), "other");
        assert_eq!(ua_family(""), "other");
    }

    #[test]
    fn visitor_binding_is_the_visitor_and_family_and_falls_back_to_the_subject() {
        let v4 = bound_to(Binding::Visitor, "203.0.113.7", Some("vk"), Some(CHROME));
        let v6 = bound_to(Binding::Visitor, "2001:db8:1:2::/64", Some("vk"), Some(CHROME));
        assert_eq!(v4, v6, "the same browser on IPv4 and IPv6");
        assert_eq!(v4, "visitor:vk|chrome");
        assert_ne!(v4, bound_to(Binding::Visitor, "203.0.113.7", Some("vk"), Some(FIREFOX)));
        assert_ne!(v4, bound_to(Binding::Visitor, "203.0.113.7", Some("other"), Some(CHROME)));
        assert_eq!(bound_to(Binding::Visitor, "203.0.113.7", None, Some(CHROME)), "203.0.113.7");
        assert_eq!(bound_to(Binding::Subject, "203.0.113.7", Some("vk"), Some(CHROME)), "203.0.113.7");
        assert_eq!(Binding::parse("visitor"), Some(Binding::Visitor));
        assert_eq!(Binding::parse("ip"), None);
    }

    #[test]
    fn difficulty_grows_a_bit_per_step_above_the_threshold_and_is_capped() {
        let d = Difficulty { base: 16, max: 20, step: 10 };
        assert_eq!(d.for_score(75, 75), 16);
        assert_eq!(d.for_score(40, 75), 16, "a rule's challenge below the threshold");
        assert_eq!(d.for_score(84, 75), 16);
        assert_eq!(d.for_score(85, 75), 17);
        assert_eq!(d.for_score(100, 75), 18);
        assert_eq!(d.for_score(100, 0), 20, "capped");
        assert_eq!(Difficulty { step: 0, ..d }.for_score(100, 0), 16, "step 0: fixed");
        assert_eq!(Difficulty { base: 28, max: 28, step: 1 }.for_score(100, 0), 28);
        assert_eq!(Difficulty { base: 16, max: 10, step: 1 }.for_score(100, 0), 16, "max below base: base");
    }

    #[test]
    fn the_noscript_wait_grows_with_the_difficulty_and_zero_turns_it_off() {
        assert_eq!(noscript_wait_s(5, 16, 16), Some(5));
        assert_eq!(noscript_wait_s(5, 18, 16), Some(15));
        assert_eq!(noscript_wait_s(0, 18, 16), None);
        // Capped at half a token's life (150 s), so the refresh is never too late.
        assert_eq!(MAX_NOSCRIPT_WAIT_S, 150);
        assert_eq!(noscript_wait_s(100, 20, 16), Some(150));
        assert_eq!(noscript_wait_s(300, 16, 16), Some(150));
    }

    #[test]
    fn labels_round_trip_and_refuse_garbage() {
        let w = Why { trigger: "rule:login.v2".into(), reason: "tor_exit".into() };
        assert_eq!(Why::from_label(&w.label()), Some(w.clone()));
        assert_eq!(w.rule(), Some("login.v2"));
        assert_eq!(Why::from_label("score"), None);
        assert_eq!(Why::from_label("score|<script>"), None);
        assert_eq!(Why::from_label("score|made_up"), None, "not a reason code");
        assert!(Why::from_label("step_up|none").is_some());
        assert_eq!(Why::from_label(&format!("score|{}", "a".repeat(200))), None);
    }

    #[test]
    fn counters_split_pending_from_abandoned_and_average_solve_times() {
        let mut recent = BTreeMap::new();
        let mut old = BTreeMap::new();
        let mut c = ChallengeCounts::default();
        for _ in 0..4 {
            c.count(Outcome::Issued);
        }
        c.count(Outcome::Solved { solve_ms: Some(2_000), noscript: false });
        c.count(Outcome::Solved { solve_ms: Some(4_000), noscript: true });
        c.count(Outcome::Failed);
        old.insert("score|tor_exit".to_string(), c);
        let mut r = ChallengeCounts::default();
        r.count(Outcome::Issued);
        recent.insert("score|tor_exit".to_string(), r);
        let mut totals = BTreeMap::new();
        add_counts(&mut totals, "score|tor_exit", &c);
        add_counts(&mut totals, "score|tor_exit", &r);
        let out = counters(
            &totals,
            [SlideCounts { counts: &old, settled: true }, SlideCounts { counts: &recent, settled: false }].into_iter(),
        );
        assert_eq!(out.len(), 1);
        let w = out[0].window;
        assert_eq!((w.issued, w.solved, w.solved_noscript, w.failed), (5, 2, 1, 1));
        assert_eq!((w.abandoned, w.pending, w.mean_solve_ms), (2, 1, Some(3_000)));
        assert_eq!(
            (out[0].trigger.as_str(), out[0].reason.as_str(), out[0].rule.as_deref()),
            ("score", "tor_exit", None)
        );
        assert_eq!(out[0].since_start, w);
    }

    #[test]
    fn the_maps_are_bounded() {
        let mut m = BTreeMap::new();
        for i in 0..(MAX_LABELS + 10) {
            add_counts(&mut m, &format!("rule:r{i}|none"), &ChallengeCounts { issued: 1, ..Default::default() });
        }
        assert_eq!(m.len(), MAX_LABELS);
    }
}

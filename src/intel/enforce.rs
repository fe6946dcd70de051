//! Decide (docs/enforcement.md) and the self-hosted proof-of-work challenge.
//!
//! Modes: `off` (monitor: always forward), `challenge` (score >= `CHALLENGE_AT`
//! gets the challenge), `block` (score >= `BLOCK_AT` is blocked, from
//! `CHALLENGE_AT` challenged). The allow list always forwards, the block list
//! always blocks (when enforcing). Verified bots are never challenged or
//! blocked on score alone. A request widened by the rotation budget
//! (`subnet_rotation`) is at most challenged on score: its score is mostly
//! its /48's (or /24's), a crowd that may hold one attacker and many
//! neighbours, so it never blocks a device for what others did. A valid
//! clearance cookie passes a challenge.
//!
//! The challenge: the worker issues a signed token bound to the subject; the
//! browser finds a counter such that SHA-256(`token:counter`) starts with
//! `difficulty` zero bits; the worker verifies the signature, age and work and
//! sets a signed, expiring clearance cookie bound to the subject. No
//! third-party service is involved.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::lists::ListVerdict;
use super::rules::{RouteRule, RuleAction};
use super::stepup::StepUpAction;

type HmacSha256 = Hmac<Sha256>;

pub const CLEARANCE_COOKIE: &str = "ei_clear";
/// A challenge token is valid this long after it was issued.
pub const TOKEN_TTL_MS: f64 = 5.0 * 60_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Challenge,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Forward,
    Challenge,
    Block,
    /// Over a rate-limit rule's limit: 429 (`intel::ratelimit`).
    RateLimit,
}

impl Action {
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Forward => "forward",
            Action::Challenge => "challenge",
            Action::Block => "block",
            Action::RateLimit => "rate_limit",
        }
    }
}

pub struct DecideInput {
    pub mode: Mode,
    pub score: u8,
    pub challenge_at: u8,
    pub block_at: u8,
    pub verified_bot: bool,
    pub list: ListVerdict,
    pub cleared: bool,
    /// Identified as its widened /48 or /24 (`subnet_rotation`): a block
    /// by score becomes a challenge.
    pub widened: bool,
}

pub fn decide(i: &DecideInput) -> Action {
    if i.mode == Mode::Off || i.list == ListVerdict::Allowed {
        return Action::Forward;
    }
    if i.list == ListVerdict::Blocked {
        return Action::Block;
    }
    if i.verified_bot {
        return Action::Forward;
    }
    let by_score = match i.mode {
        Mode::Block if i.score >= i.block_at && !i.widened => Action::Block,
        Mode::Block | Mode::Challenge if i.score >= i.challenge_at => Action::Challenge,
        _ => Action::Forward,
    };
    if by_score == Action::Challenge && i.cleared {
        Action::Forward
    } else {
        by_score
    }
}

/// What a matched rule made of a request (issue 18): the rule, and what it
/// would do (`would`); for a dry run the request is forwarded all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleDecision<'r> {
    pub rule: &'r RouteRule,
    pub would: Action,
}

/// The decision for a request: what happens, and the rule that decided, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'r> {
    pub action: Action,
    pub rule: Option<RuleDecision<'r>>,
}

/// The whole policy (docs/policies.md): the allow list forwards and the
/// block list blocks (when `ENFORCE` is on) before any rule; then the first
/// matching rule (`rules::first_match`, passed in as `rule`) decides,
/// whatever `ENFORCE` says; no rule falls back to `decide` (the mode and its
/// thresholds). A rule that matches on `minScore` judges by score, so it
/// keeps the score's exemptions: a verified bot is not challenged or blocked
/// by it, and a widened subject (`subnet_rotation`) is challenged instead of
/// blocked. A valid clearance passes a challenge rule. A dry run forwards
/// and reports what the rule would have done.
pub fn decide_policy<'r>(i: &DecideInput, rule: Option<&'r RouteRule>) -> Decision<'r> {
    let listed = i.list == ListVerdict::Allowed || (i.list == ListVerdict::Blocked && i.mode != Mode::Off);
    let Some(rule) = rule.filter(|_| !listed) else {
        return Decision { action: decide(i), rule: None };
    };
    let by_score = rule.when.min_score.is_some();
    let mut would = match rule.action {
        RuleAction::Allow | RuleAction::Monitor => Action::Forward,
        RuleAction::Challenge if i.cleared => Action::Forward,
        RuleAction::Challenge => Action::Challenge,
        RuleAction::Block => Action::Block,
        // Forwarded unless the limiter refuses it: `over_limit`, once it answered.
        RuleAction::RateLimit => Action::Forward,
    };
    if by_score && i.verified_bot {
        would = Action::Forward;
    }
    if by_score && i.widened && would == Action::Block {
        would = if i.cleared { Action::Forward } else { Action::Challenge };
    }
    let action = if rule.dry_run { Action::Forward } else { would };
    Decision { action, rule: Some(RuleDecision { rule, would }) }
}

/// A rate-limit rule's decision once its limiter refused the request: 429,
/// or for a dry run forwarded with what would have happened. Any other
/// decision is returned as it is.
pub fn over_limit(d: Decision<'_>) -> Decision<'_> {
    match d.rule {
        Some(r) if r.rule.action == RuleAction::RateLimit => {
            // A dry run keeps what was decided before the limiter: a forward,
            // or what an origin's step-up made of it (never loosened here).
            let action = if r.rule.dry_run { d.action } else { Action::RateLimit };
            Decision { action, rule: Some(RuleDecision { rule: r.rule, would: Action::RateLimit }) }
        }
        _ => d,
    }
}

/// A step-up from the origin (`intel::stepup::demand`) over the policy's
/// decision. It only makes the answer stricter: a challenge where the
/// request would be forwarded, a block where it would be forwarded or
/// challenged. The allow list is exempt, as it is from every rule; `ENFORCE`
/// does not matter (the origin asked). A dry-run rule's forward is
/// stepped up too: the dry run is the rule's, the step-up the origin's.
pub fn step_up(d: Decision<'_>, demand: Option<StepUpAction>, list: ListVerdict) -> Decision<'_> {
    let action = match (demand, d.action) {
        _ if list == ListVerdict::Allowed => d.action,
        (Some(StepUpAction::Block), Action::Forward | Action::Challenge) => Action::Block,
        (Some(StepUpAction::Challenge), Action::Forward) => Action::Challenge,
        _ => d.action,
    };
    Decision { action, ..d }
}

fn mac(key: &str, parts: &[&str]) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(key.as_bytes()).ok()?;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            m.update(b"|");
        }
        m.update(p.as_bytes());
    }
    Some(m)
}

/// Labels longer than this are cut (rule ids are shorter).
const MAX_LABEL_BYTES: usize = 256;

/// XORs `bytes` with a keystream from `key` and `parts` (HMAC-SHA256 in
/// counter mode): hides why a challenge was issued from the client (SECURITY.md:
/// the reasons are not told to the client, which would teach an attacker what
/// to change), while the edge reads it back. Its own inverse.
fn mask(key: &str, parts: &[&str], bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    for (block, chunk) in bytes.chunks(32).enumerate() {
        let n = block.to_string();
        let mut all: Vec<&str> = vec!["label"];
        all.extend_from_slice(parts);
        all.push(&n);
        let pad = mac(key, &all)?.finalize().into_bytes();
        out.extend(chunk.iter().zip(pad.iter()).map(|(b, p)| b ^ p));
    }
    Some(out)
}

fn cut(label: &str) -> &[u8] {
    label.as_bytes().get(..MAX_LABEL_BYTES).unwrap_or(label.as_bytes())
}

/// `nonce.issued.difficulty.label.sig` (hex / decimal, URL- and
/// cookie-safe): `label` is why the challenge was issued
/// (`challenge::Why::label`), masked (`m` and hex: the client cannot read
/// it) and signed with the rest so a solution is counted against what
/// issued it.
pub fn issue_token(
    key: &str,
    bound: &str,
    nonce_hex: &str,
    issued_ms: u64,
    difficulty: u8,
    label: &str,
) -> Option<String> {
    let (i, d) = (issued_ms.to_string(), difficulty.to_string());
    let l = format!("m{}", hex::encode(mask(key, &[nonce_hex, &i], cut(label))?));
    let sig = mac(key, &["challenge", bound, nonce_hex, &i, &d, &l])?.finalize().into_bytes();
    Some(format!("{nonce_hex}.{i}.{d}.{l}.{}", hex::encode(sig)))
}

/// What a genuine token says.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenFacts {
    pub issued_ms: f64,
    pub difficulty: u8,
    /// Why it was issued (`challenge::Why::label`); empty for a token from
    /// before labels (`nonce.issued.difficulty.sig`).
    pub label: String,
}

/// A token that was issued to `bound` with `key` and is not expired.
pub fn check_token(key: &str, bound: &str, token: &str, now_ms: f64) -> Result<TokenFacts, &'static str> {
    let parts: Vec<&str> = token.split('.').collect();
    let (nonce, issued, diff, label_hex, sig) = match parts.as_slice() {
        [n, i, d, l, s] => (*n, *i, *d, Some(*l), *s),
        [n, i, d, s] => (*n, *i, *d, None, *s),
        _ => return Err("malformed token"),
    };
    let sig = hex::decode(sig).map_err(|_| "malformed token")?;
    let m = match label_hex {
        Some(l) => mac(key, &["challenge", bound, nonce, issued, diff, l]),
        None => mac(key, &["challenge", bound, nonce, issued, diff]),
    };
    m.ok_or("bad key")?.verify_slice(&sig).map_err(|_| "token not issued to this client")?;
    let issued_ms: f64 = issued.parse().map_err(|_| "malformed token")?;
    if !(now_ms - issued_ms >= -5_000.0 && now_ms - issued_ms <= TOKEN_TTL_MS) {
        return Err("token expired");
    }
    let difficulty: u8 = diff.parse().map_err(|_| "malformed token")?;
    let label = match label_hex {
        // Masked (`issue_token`), or plain hex in a token from before.
        Some(l) => match l.strip_prefix('m') {
            Some(m) => hex::decode(m).ok().and_then(|b| mask(key, &[nonce, issued], &b)),
            None => hex::decode(l).ok(),
        }
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or("malformed token")?,
        None => String::new(),
    };
    Ok(TokenFacts { issued_ms, difficulty, label })
}

/// Why a Turnstile challenge was shown, for its page to send back
/// (`nonce.masked.sig`): masked like a token's label, and signed, so the
/// answer cannot name a label the edge did not issue.
pub fn seal_label(key: &str, nonce_hex: &str, label: &str) -> Option<String> {
    let masked = hex::encode(mask(key, &["why", nonce_hex], cut(label))?);
    let sig = mac(key, &["why", nonce_hex, &masked])?.finalize().into_bytes();
    Some(format!("{nonce_hex}.{masked}.{}", hex::encode(sig)))
}

/// The label `seal_label` sealed, if `sealed` is one of ours.
pub fn open_label(key: &str, sealed: &str) -> Option<String> {
    let mut parts = sealed.split('.');
    let (nonce, masked, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || sealed.len() > 4 * MAX_LABEL_BYTES {
        return None;
    }
    mac(key, &["why", nonce, masked])?.verify_slice(&hex::decode(sig).ok()?).ok()?;
    String::from_utf8(mask(key, &["why", nonce], &hex::decode(masked).ok()?)?).ok()
}

/// Leading zero bits of a digest.
pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut n = 0;
    for b in digest {
        if *b == 0 {
            n += 8;
        } else {
            n += b.leading_zeros();
            break;
        }
    }
    n
}

/// The work: SHA-256(`token:counter`) has at least `difficulty` leading zero bits.
pub fn work_ok(token: &str, counter: u64, difficulty: u8) -> bool {
    let digest = Sha256::digest(format!("{token}:{counter}").as_bytes());
    leading_zero_bits(&digest) >= u32::from(difficulty)
}

/// Finds a counter (test helper, and what the page's script does).
pub fn solve(token: &str, difficulty: u8) -> u64 {
    (0..u64::MAX).find(|c| work_ok(token, *c, difficulty)).unwrap_or(0)
}

/// The single-use id of a challenge token and when it stops mattering (its
/// expiry): a solved token is accepted once, so the id is remembered until then.
pub fn solution_id(token: &str) -> Option<(String, f64)> {
    let mut parts = token.split('.');
    let nonce = parts.next().filter(|n| !n.is_empty() && n.len() <= 64)?;
    let issued: f64 = parts.next()?.parse().ok().filter(|t: &f64| t.is_finite())?;
    Some((super::keys::solution_key(nonce), issued + TOKEN_TTL_MS))
}

/// Checks a solved challenge for `subject` at `now`.
pub fn verify_solution(
    key: &str,
    bound: &str,
    token: &str,
    counter: u64,
    now_ms: f64,
    min_difficulty: u8,
) -> Result<TokenFacts, &'static str> {
    let facts = check_token(key, bound, token, now_ms)?;
    if facts.difficulty < min_difficulty {
        return Err("token too easy");
    }
    if !work_ok(token, counter, facts.difficulty) {
        return Err("work not done");
    }
    Ok(facts)
}

/// The no-script path (docs/enforcement.md): a genuine token, for this
/// client, whose holder waited `wait_s(difficulty)` seconds since it was
/// issued. Weaker than the work: any client that waits passes.
pub fn verify_wait(
    key: &str,
    bound: &str,
    token: &str,
    now_ms: f64,
    wait_s: impl Fn(u8) -> Option<u32>,
) -> Result<TokenFacts, &'static str> {
    let facts = check_token(key, bound, token, now_ms)?;
    let Some(wait) = wait_s(facts.difficulty) else { return Err("the no-script path is off") };
    if now_ms - facts.issued_ms < f64::from(wait) * 1000.0 {
        return Err("too early: wait the time the page says");
    }
    Ok(facts)
}

/// The clearance cookie value: `<expires ms>.<issued ms>.<sig>` bound to the
/// subject. The issue time lets a step-up from the origin (`intel::stepup`)
/// refuse a clearance solved before it asked.
pub fn clearance(key: &str, subject: &str, issued_ms: u64, expires_ms: u64) -> Option<String> {
    let (e, i) = (expires_ms.to_string(), issued_ms.to_string());
    let sig = mac(key, &["clearance", subject, &e, &i])?.finalize().into_bytes();
    Some(format!("{e}.{i}.{}", hex::encode(sig)))
}

/// When a clearance cookie value was issued (ms), if it is genuine, for this
/// subject and unexpired. A value from before issue times were signed
/// (`<expires>.<sig>`) is still genuine, issued at 0: before any step-up.
pub fn clearance_issued(key: &str, subject: &str, value: &str, now_ms: f64) -> Option<f64> {
    let parts: Vec<&str> = value.splitn(3, '.').collect();
    let (e, i, sig) = match parts.as_slice() {
        [e, i, sig] => (*e, Some(*i), *sig),
        [e, sig] => (*e, None, *sig),
        _ => return None,
    };
    let (Ok(sig), Ok(expires)) = (hex::decode(sig), e.parse::<f64>()) else { return None };
    let issued = match i {
        Some(i) => i.parse::<f64>().ok()?,
        None => 0.0,
    };
    let m = match i {
        Some(i) => mac(key, &["clearance", subject, e, i])?,
        None => mac(key, &["clearance", subject, e])?,
    };
    (m.verify_slice(&sig).is_ok() && expires > now_ms).then_some(issued)
}

/// Whether a clearance cookie value is genuine, for this subject, unexpired.
pub fn clearance_valid(key: &str, subject: &str, value: &str, now_ms: f64) -> bool {
    clearance_issued(key, subject, value, now_ms).is_some()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn input(mode: Mode, score: u8) -> DecideInput {
        DecideInput {
            mode,
            score,
            challenge_at: 75,
            block_at: 90,
            verified_bot: false,
            list: ListVerdict::Neither,
            cleared: false,
            widened: false,
        }
    }

    fn rule(json: serde_json::Value) -> RouteRule {
        crate::intel::rules::parse_rules(&serde_json::json!([json])).unwrap().remove(0)
    }

    #[test]
    fn policy_lists_first_then_the_rule_whatever_the_mode_then_the_mode() {
        let block = rule(serde_json::json!({"id": "b", "action": "block"}));
        let allow = rule(serde_json::json!({"id": "a", "action": "allow"}));
        // A rule decides even in monitor mode (it is the operator's explicit policy).
        let d = decide_policy(&input(Mode::Off, 0), Some(&block));
        assert_eq!(
            (d.action, d.rule.map(|r| (r.rule.id.as_str(), r.would))),
            (Action::Block, Some(("b", Action::Block)))
        );
        // An allow rule forwards what the thresholds would block.
        assert_eq!(decide_policy(&input(Mode::Block, 100), Some(&allow)).action, Action::Forward);
        // No rule: the mode and its thresholds.
        assert_eq!(decide_policy(&input(Mode::Block, 100), None), Decision { action: Action::Block, rule: None });
        // The lists come before any rule.
        let mut i = input(Mode::Off, 0);
        i.list = ListVerdict::Allowed;
        assert_eq!(decide_policy(&i, Some(&block)), Decision { action: Action::Forward, rule: None });
        let mut i = input(Mode::Challenge, 0);
        i.list = ListVerdict::Blocked;
        assert_eq!(decide_policy(&i, Some(&allow)), Decision { action: Action::Block, rule: None });
        // In monitor mode the block list does not block, so the rule decides.
        let mut i = input(Mode::Off, 0);
        i.list = ListVerdict::Blocked;
        assert_eq!(decide_policy(&i, Some(&allow)).rule.map(|r| r.rule.id.as_str()), Some("a"));
    }

    #[test]
    fn policy_dry_runs_forward_and_say_what_would_have_happened() {
        let dry = rule(serde_json::json!({"id": "d", "action": "block", "dryRun": true}));
        let d = decide_policy(&input(Mode::Block, 0), Some(&dry));
        assert_eq!(d.action, Action::Forward);
        assert_eq!(d.rule.map(|r| r.would), Some(Action::Block));
        let challenge = rule(serde_json::json!({"id": "c", "action": "challenge"}));
        let mut i = input(Mode::Off, 0);
        assert_eq!(decide_policy(&i, Some(&challenge)).action, Action::Challenge);
        i.cleared = true;
        assert_eq!(decide_policy(&i, Some(&challenge)).action, Action::Forward, "a clearance passes a challenge rule");
    }

    #[test]
    fn policy_rules_on_score_keep_the_score_exemptions() {
        let risky = rule(serde_json::json!({"id": "r", "match": {"minScore": 40}, "action": "block"}));
        let plain = rule(serde_json::json!({"id": "p", "match": {"path": "/admin*"}, "action": "block"}));
        let mut bot = input(Mode::Off, 90);
        bot.verified_bot = true;
        assert_eq!(decide_policy(&bot, Some(&risky)).action, Action::Forward, "a verified bot is not blocked on score");
        assert_eq!(decide_policy(&bot, Some(&plain)).action, Action::Block, "but a rule on the path applies to it");
        let mut crowd = input(Mode::Off, 90);
        crowd.widened = true;
        assert_eq!(
            decide_policy(&crowd, Some(&risky)).action,
            Action::Challenge,
            "a widened subject is challenged, not blocked, on score"
        );
        assert_eq!(decide_policy(&crowd, Some(&plain)).action, Action::Block);
    }

    #[test]
    fn modes_at_below_and_above_thresholds() {
        let table = [
            (Mode::Off, 100, Action::Forward),
            (Mode::Challenge, 74, Action::Forward),
            (Mode::Challenge, 75, Action::Challenge),
            (Mode::Challenge, 100, Action::Challenge),
            (Mode::Block, 74, Action::Forward),
            (Mode::Block, 75, Action::Challenge),
            (Mode::Block, 89, Action::Challenge),
            (Mode::Block, 90, Action::Block),
            (Mode::Block, 100, Action::Block),
        ];
        for (mode, score, want) in table {
            assert_eq!(decide(&input(mode, score)), want, "{mode:?} {score}");
        }
    }

    #[test]
    fn a_widened_request_is_challenged_not_blocked_on_score_but_lists_still_block() {
        let widened = |mode, score, list, cleared| {
            let mut i = input(mode, score);
            i.widened = true;
            i.list = list;
            i.cleared = cleared;
            decide(&i)
        };
        assert_eq!(widened(Mode::Block, 100, ListVerdict::Neither, false), Action::Challenge);
        assert_eq!(widened(Mode::Block, 80, ListVerdict::Neither, false), Action::Challenge);
        assert_eq!(widened(Mode::Block, 50, ListVerdict::Neither, false), Action::Forward);
        // Cleared (its own /64's clearance): a challenge passes.
        assert_eq!(widened(Mode::Block, 100, ListVerdict::Neither, true), Action::Forward);
        assert_eq!(widened(Mode::Block, 0, ListVerdict::Blocked, true), Action::Block, "the block list still blocks");
        assert_eq!(widened(Mode::Block, 100, ListVerdict::Allowed, false), Action::Forward);
        assert_eq!(widened(Mode::Off, 100, ListVerdict::Neither, false), Action::Forward);
    }

    #[test]
    fn lists_bots_and_clearance() {
        let mut i = input(Mode::Block, 100);
        i.list = ListVerdict::Allowed;
        assert_eq!(decide(&i), Action::Forward, "allow beats everything");
        let mut i = input(Mode::Challenge, 0);
        i.list = ListVerdict::Blocked;
        assert_eq!(decide(&i), Action::Block);
        let mut i = input(Mode::Off, 100);
        i.list = ListVerdict::Blocked;
        assert_eq!(decide(&i), Action::Forward, "monitor mode never acts");
        let mut i = input(Mode::Block, 100);
        i.verified_bot = true;
        assert_eq!(decide(&i), Action::Forward, "verified bots not blocked on score");
        i.list = ListVerdict::Blocked;
        assert_eq!(decide(&i), Action::Block, "but the block list still applies");
        let mut i = input(Mode::Block, 80);
        i.cleared = true;
        assert_eq!(decide(&i), Action::Forward, "clearance passes a challenge");
        i.score = 95;
        assert_eq!(decide(&i), Action::Block, "not a block");
    }

    #[test]
    fn a_token_from_before_labels_still_verifies_and_the_wait_path_needs_the_wait() {
        let key = "challenge-key-0123456789";
        let now = 1_780_000_000_000.0;
        // The earlier `nonce.issued.difficulty.sig`, as it was signed then.
        let sig = mac(key, &["challenge", "s", "ab", "1780000000000", "4"]).unwrap().finalize().into_bytes();
        let old = format!("ab.1780000000000.4.{}", hex::encode(sig));
        let c = solve(&old, 4);
        assert_eq!(verify_solution(key, "s", &old, c, now, 4).map(|f| f.label), Ok(String::new()));

        let token = issue_token(key, "s", "cd", now as u64, 18, "score|tor_exit").unwrap();
        let wait = |d: u8| super::super::challenge::noscript_wait_s(5, d, 16);
        assert_eq!(verify_wait(key, "s", &token, now + 14_000.0, wait), Err("too early: wait the time the page says"));
        assert!(verify_wait(key, "s", &token, now + 15_000.0, wait).is_ok());
        assert_eq!(verify_wait(key, "t", &token, now + 15_000.0, wait), Err("token not issued to this client"));
        assert_eq!(verify_wait(key, "s", &token, now + TOKEN_TTL_MS + 1.0, wait), Err("token expired"));
        assert_eq!(verify_wait(key, "s", &token, now + 15_000.0, |_| None), Err("the no-script path is off"));
    }

    #[test]
    fn proof_of_work_round_trip() {
        let key = "challenge-key-0123456789";
        let now = 1_780_000_000_000.0;
        let token = issue_token(key, "203.0.113.7", "a1b2c3", now as u64, 8, "score|tor_exit").unwrap();
        let counter = solve(&token, 8);
        let facts = verify_solution(key, "203.0.113.7", &token, counter, now + 1000.0, 8).unwrap();
        assert_eq!(facts, TokenFacts { issued_ms: now, difficulty: 8, label: "score|tor_exit".into() });
        assert_eq!(
            verify_solution(key, "203.0.113.8", &token, counter, now, 8),
            Err("token not issued to this client")
        );
        assert_eq!(
            verify_solution(key, "203.0.113.7", &token, counter, now + TOKEN_TTL_MS + 1.0, 8),
            Err("token expired")
        );
        assert_eq!(verify_solution(key, "203.0.113.7", &token, counter, now, 12), Err("token too easy"));
        let wrong = (0..).find(|c| !work_ok(&token, *c, 8)).unwrap();
        assert_eq!(verify_solution(key, "203.0.113.7", &token, wrong, now, 8), Err("work not done"));
        let forged = token.replacen(".8.", ".1.", 1);
        assert!(verify_solution(key, "203.0.113.7", &forged, counter, now, 1).is_err());
        let relabelled = issue_token(key, "203.0.113.7", "a1b2c3", now as u64, 8, "step_up|none").unwrap();
        let (head, tail) = (token.rsplit_once('.').unwrap().0, relabelled.rsplit_once('.').unwrap().1);
        assert!(verify_solution(key, "203.0.113.7", &format!("{head}.{tail}"), counter, now, 1).is_err());
        for bad in ["", "a.b", "a.b.c.d.e.f", "x.1.8.zz", "x.1.8.zz.00"] {
            assert!(verify_solution(key, "203.0.113.7", bad, 0, now, 1).is_err(), "{bad}");
        }
        // The client cannot read why it was challenged: not in the token's
        // text, and two tokens for the same reason look unrelated.
        let plain = hex::encode("score|tor_exit");
        assert!(!token.contains(&plain) && !token.contains("tor_exit"), "{token}");
        let again = issue_token(key, "203.0.113.7", "d4e5f6", now as u64, 8, "score|tor_exit").unwrap();
        assert_ne!(token.split('.').nth(3), again.split('.').nth(3));
        // A label longer than 32 bytes (several blocks of the keystream) comes back whole.
        let long = format!("rule|{}", "r".repeat(100));
        let t = issue_token(key, "s", "ab", now as u64, 8, &long).unwrap();
        assert_eq!(verify_solution(key, "s", &t, solve(&t, 8), now, 8).map(|f| f.label), Ok(long));
    }

    #[test]
    fn a_turnstile_label_is_masked_and_signed() {
        let key = "challenge-key-0123456789";
        let sealed = seal_label(key, "a1b2", "rule|gate").unwrap();
        assert!(!sealed.contains(&hex::encode("rule|gate")));
        assert_eq!(open_label(key, &sealed).as_deref(), Some("rule|gate"));
        assert_eq!(open_label("another-key-0123456789", &sealed), None);
        // A made-up label, or a sealed one changed, is not ours.
        let (nonce, rest) = sealed.split_once('.').unwrap();
        let (masked, sig) = rest.split_once('.').unwrap();
        let mut m = hex::decode(masked).unwrap();
        if let Some(b) = m.first_mut() {
            *b ^= 1;
        }
        assert_eq!(open_label(key, &format!("{nonce}.{}.{sig}", hex::encode(m))), None);
        for bad in ["", "rule|anything", "a.b", "a.b.c.d", &"a".repeat(2000)] {
            assert_eq!(open_label(key, bad), None, "{bad}");
        }
    }

    #[test]
    fn a_step_up_only_makes_the_answer_stricter_and_spares_the_allow_list() {
        let d = |action| Decision { action, rule: None };
        let (c, b) = (Some(StepUpAction::Challenge), Some(StepUpAction::Block));
        let none = ListVerdict::Neither;
        assert_eq!(step_up(d(Action::Forward), c, none).action, Action::Challenge);
        assert_eq!(step_up(d(Action::Forward), b, none).action, Action::Block);
        assert_eq!(step_up(d(Action::Challenge), b, none).action, Action::Block);
        assert_eq!(step_up(d(Action::Block), c, none).action, Action::Block);
        assert_eq!(step_up(d(Action::RateLimit), c, none).action, Action::RateLimit);
        assert_eq!(step_up(d(Action::Forward), None, none).action, Action::Forward);
        assert_eq!(step_up(d(Action::Forward), b, ListVerdict::Allowed).action, Action::Forward);
    }

    #[test]
    fn a_dry_run_limit_does_not_undo_a_step_up() {
        let rule = crate::intel::rules::parse_rules(
            &serde_json::from_str::<serde_json::Value>(
                r#"[{"id": "l", "action": "rate_limit", "rateLimit": {"requests": 1, "periodSeconds": 60}, "dryRun": true}]"#,
            )
            .unwrap(),
        )
        .unwrap();
        let i = input(Mode::Off, 0);
        let d = decide_policy(&i, rule.first());
        let stepped = step_up(d, Some(StepUpAction::Block), ListVerdict::Neither);
        assert_eq!(over_limit(stepped).action, Action::Block, "the step-up's block stays");
        assert_eq!(over_limit(d).action, Action::Forward, "a dry run alone forwards");
    }

    #[test]
    fn clearance_cookie() {
        let key = "challenge-key-0123456789";
        let v = clearance(key, "203.0.113.7", 1_500, 2_000).unwrap();
        assert_eq!(clearance_issued(key, "203.0.113.7", &v, 1_999.0), Some(1_500.0));
        assert!(
            !clearance_valid(key, "203.0.113.7", &v.replacen(".1500.", ".1000.", 1), 1_999.0),
            "tampered issue time"
        );
        // A cookie of the earlier format (no issue time) is genuine, issued before any step-up.
        let legacy = {
            let sig = mac(key, &["clearance", "203.0.113.7", "2000"]).unwrap().finalize().into_bytes();
            format!("2000.{}", hex::encode(sig))
        };
        assert_eq!(clearance_issued(key, "203.0.113.7", &legacy, 1_999.0), Some(0.0));
        assert!(clearance_valid(key, "203.0.113.7", &v, 1_999.0));
        assert!(!clearance_valid(key, "203.0.113.7", &v, 2_000.0), "expired");
        assert!(!clearance_valid(key, "203.0.113.8", &v, 1_000.0), "bound to the subject");
        assert!(!clearance_valid("other-key-0123456789", "203.0.113.7", &v, 1_000.0), "forged");
        assert!(!clearance_valid(key, "203.0.113.7", &v.replacen("2000", "9000", 1), 1_000.0), "tampered expiry");
        assert!(!clearance_valid(key, "203.0.113.7", "garbage", 0.0));
        assert_eq!(leading_zero_bits(&[0, 0, 0x10]), 19);
        assert_eq!(leading_zero_bits(&[0xff]), 0);
    }

    #[test]
    fn a_solution_has_one_id_until_its_token_expires() {
        let (id, until) = solution_id("abcd.1780000000000.20.ff").unwrap();
        assert_eq!(id, "pow:abcd");
        assert_eq!(until, 1_780_000_000_000.0 + TOKEN_TTL_MS);
        for bad in ["", ".", "abcd", "abcd.x.20.ff", ".1.2.3"] {
            assert_eq!(solution_id(bad), None, "{bad:?}");
        }
    }
}

//! Step-up from the origin (issue 18, docs/policies.md "Step-up"): an origin
//! response carrying
//!
//! ```text
//! X-Intel-Step-Up: challenge; scope="/checkout"; ttl=600
//! ```
//!
//! makes edgeintel challenge (or, with `block`, refuse) that client's next
//! requests whose path starts with `scope`, for `ttl` seconds, unless it
//! holds a clearance issued after the step-up. The client is its subject and,
//! where known, its visitor. The header is an RFC 8941 Item: a token with
//! parameters. `scope` defaults to `/` (the whole site), `ttl` to
//! `DEFAULT_TTL_S`; unknown parameters are ignored (RFC 8941 lets a field
//! grow them), anything else malformed refuses the whole header.
//!
//! The parser is written here rather than taken from the `sfv` crate: the one
//! Item shape needed is ~80 lines, and `sfv` brings `rust_decimal` and
//! `indexmap` into a wasm module already over its size target.

use serde::{Deserialize, Serialize};

use super::rules::PathForms;

/// The response header an origin sets (case-insensitive, as every header).
pub const HEADER: &str = "x-intel-step-up";
/// `ttl` when the header names none.
pub const DEFAULT_TTL_S: u64 = 600;
/// The longest `ttl` taken (a day); longer ones are refused, not cut.
pub const MAX_TTL_S: u64 = 86_400;
/// The longest `scope`.
pub const MAX_SCOPE_LEN: usize = 512;
/// Step-ups kept per subject or visitor: the newest win, the oldest go.
pub const MAX_PER_CLIENT: usize = 16;
/// The longest header value read at all.
const MAX_HEADER_LEN: usize = 1_024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepUpAction {
    Challenge,
    Block,
}

impl StepUpAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            StepUpAction::Challenge => "challenge",
            StepUpAction::Block => "block",
        }
    }
}

/// One step-up in force for a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepUp {
    pub action: StepUpAction,
    /// A path prefix, starting with `/`.
    pub scope: String,
    /// When the origin asked (ms): a clearance issued before it does not pass.
    pub at: f64,
    /// When it ends (ms).
    pub until: f64,
}

impl StepUp {
    pub fn active(&self, now: f64) -> bool {
        now < self.until
    }

    /// Whether a request path is in scope. A step-up stops requests, so, like
    /// a stopping rule, either reading of the path is enough (`PathForms`):
    /// `/x/..%2Fcheckout` is in the scope `/checkout`.
    pub fn covers(&self, path: &PathForms) -> bool {
        // Case is ignored: many origins (Express by default) route
        // `/Checkout` as `/checkout`, and covering more only makes the answer stricter.
        let scope = PathForms::of(&self.scope);
        let starts = |p: &str, s: &str| p.to_ascii_lowercase().starts_with(&s.to_ascii_lowercase());
        starts(&path.raw, &scope.raw) || starts(&path.normalised, &scope.normalised)
    }
}

/// Reads the header's value at `now` (ms). `Err` says what is wrong, for the log.
pub fn parse(value: &str, now: f64) -> Result<StepUp, String> {
    if value.len() > MAX_HEADER_LEN {
        return Err(format!("longer than {MAX_HEADER_LEN} bytes"));
    }
    let mut p = Parser { s: value.trim_matches(' ').as_bytes(), i: 0 };
    let action = match p.token()?.as_str() {
        "challenge" => StepUpAction::Challenge,
        "block" => StepUpAction::Block,
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(format!("unknown action {shown:?} (challenge or block)"));
        }
    };
    let (mut scope, mut ttl) = (None, None);
    while p.eat(b';') {
        p.spaces();
        let key = p.key()?;
        let value = if p.eat(b'=') { p.bare_item()? } else { Bare::Boolean };
        // RFC 8941: a repeated parameter's last value wins.
        match (key.as_str(), value) {
            ("scope", Bare::String(s)) => scope = Some(s),
            ("scope", _) => return Err("scope must be a string".into()),
            ("ttl", Bare::Integer(n)) => ttl = Some(n),
            ("ttl", _) => return Err("ttl must be an integer".into()),
            _ => {}
        }
    }
    if !p.done() {
        return Err(format!("unexpected {:?} at byte {}", char::from(p.peek().unwrap_or(b'?')), p.i));
    }
    let scope = scope.unwrap_or_else(|| "/".into());
    if !scope.starts_with('/') || scope.len() > MAX_SCOPE_LEN {
        return Err(format!("scope must be a path starting with / of at most {MAX_SCOPE_LEN} characters"));
    }
    let ttl = ttl.unwrap_or(DEFAULT_TTL_S as i64);
    let ttl = u64::try_from(ttl).ok().filter(|t| (1..=MAX_TTL_S).contains(t));
    let Some(ttl) = ttl else { return Err(format!("ttl must be 1..={MAX_TTL_S} seconds")) };
    Ok(StepUp { action, scope, at: now, until: now + ttl as f64 * 1000.0 })
}

/// Adds a step-up to a client's list: expired ones go, one with the same
/// action and scope is replaced, and past `MAX_PER_CLIENT` the oldest go.
pub fn add(list: &mut Vec<StepUp>, s: StepUp, now: f64) {
    list.retain(|o| o.active(now) && !(o.action == s.action && o.scope == s.scope));
    list.push(s);
    list.sort_by(|a, b| a.at.total_cmp(&b.at));
    let excess = list.len().saturating_sub(MAX_PER_CLIENT);
    list.drain(..excess);
}

/// What the step-ups in force ask of a request to `path`, for a client
/// whose clearance (if any) was issued at `cleared_at` (ms): `Some(Block)`
/// if a block covers it; `Some(Challenge)` if a challenge covers it that
/// the clearance predates; `None` otherwise. A clearance never lifts a block.
pub fn demand<'a>(
    lists: impl IntoIterator<Item = &'a StepUp>,
    path: &PathForms,
    cleared_at: Option<f64>,
    now: f64,
) -> Option<StepUpAction> {
    lists
        .into_iter()
        .filter(|s| s.active(now) && s.covers(path))
        .filter(|s| s.action == StepUpAction::Block || cleared_at.is_none_or(|c| c < s.at))
        .map(|s| s.action)
        .max()
}

enum Bare {
    String(String),
    Integer(i64),
    Token,
    Boolean,
    Decimal,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.i += 1;
        }
        hit
    }
    fn spaces(&mut self) {
        while self.eat(b' ') {}
    }
    fn take_while(&mut self, ok: impl Fn(u8) -> bool) -> String {
        let start = self.i;
        while self.peek().is_some_and(&ok) {
            self.i += 1;
        }
        self.s.get(start..self.i).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
    }
    /// sf-token: ALPHA / "*", then tchar / ":" / "/".
    fn token(&mut self) -> Result<String, String> {
        if !self.peek().is_some_and(|c| c.is_ascii_alphabetic() || c == b'*') {
            return Err("expected a token (challenge or block)".into());
        }
        Ok(self.take_while(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)))
    }
    /// key: lcalpha / "*", then lcalpha / DIGIT / "_" / "-" / "." / "*".
    fn key(&mut self) -> Result<String, String> {
        if !self.peek().is_some_and(|c| c.is_ascii_lowercase() || c == b'*') {
            return Err(format!("expected a parameter name at byte {}", self.i));
        }
        Ok(self.take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c)))
    }
    fn bare_item(&mut self) -> Result<Bare, String> {
        match self.peek() {
            Some(b'"') => self.string().map(Bare::String),
            Some(b'?') => {
                self.i += 1;
                match self.peek() {
                    Some(b'0' | b'1') => {
                        self.i += 1;
                        Ok(Bare::Boolean)
                    }
                    _ => Err("a boolean is ?0 or ?1".into()),
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => self.token().map(|_| Bare::Token),
            _ => Err(format!("expected a value at byte {}", self.i)),
        }
    }
    /// sf-string: printable ASCII, `\"` and `\\` the only escapes.
    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // the opening quote
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                        _ => return Err("a string escapes only \" and \\".into()),
                    }
                    self.i += 1;
                }
                Some(c @ 0x20..=0x7e) => {
                    out.push(char::from(c));
                    self.i += 1;
                }
                Some(_) => return Err("a string holds printable ASCII only".into()),
            }
        }
    }
    /// sf-integer (at most 15 digits) or sf-decimal (read and ignored).
    fn number(&mut self) -> Result<Bare, String> {
        let negative = self.eat(b'-');
        let digits = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() || digits.len() > 15 {
            return Err("an integer has 1 to 15 digits".into());
        }
        if self.eat(b'.') {
            let fraction = self.take_while(|c| c.is_ascii_digit());
            if fraction.is_empty() || fraction.len() > 3 || digits.len() > 12 {
                return Err("malformed decimal".into());
            }
            return Ok(Bare::Decimal);
        }
        let n: i64 = digits.parse().map_err(|_| "malformed integer".to_string())?;
        Ok(Bare::Integer(if negative { -n } else { n }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const NOW: f64 = 1_000_000.0;

    #[test]
    fn reads_the_contract_example_and_its_defaults() {
        let s = parse("challenge; scope=\"/checkout\"; ttl=600", NOW).unwrap();
        assert_eq!(
            s,
            StepUp { action: StepUpAction::Challenge, scope: "/checkout".into(), at: NOW, until: NOW + 600_000.0 }
        );
        let s = parse("block", NOW).unwrap();
        assert_eq!(
            (s.action, s.scope.as_str(), s.until),
            (StepUpAction::Block, "/", NOW + DEFAULT_TTL_S as f64 * 1000.0)
        );
        // No space after `;`, surrounding spaces, unknown parameters of each type, repeats (last wins).
        let s = parse("  challenge;ttl=5;x=?1;y=tok;z=1.5;w;scope=\"/a\";scope=\"/b \\\"q\\\"\"  ", NOW).unwrap();
        assert_eq!((s.scope.as_str(), s.until), ("/b \"q\"", NOW + 5_000.0));
    }

    #[test]
    fn refuses_what_is_not_the_contract() {
        for bad in [
            "",
            "allow",
            "Challenge",
            "\"challenge\"",
            "challenge; scope=/checkout",
            "challenge; scope=\"checkout\"",
            "challenge; ttl=\"600\"",
            "challenge; ttl=0",
            "challenge; ttl=-5",
            "challenge; ttl=86401",
            "challenge; ttl=1234567890123456",
            "challenge; Scope=\"/a\"",
            "challenge; scope=\"/a",
            "challenge; scope=\"/\\a\"",
            "challenge; scope=\"/\u{e9}\"",
            "challenge, block",
            "challenge; ttl=5 x",
            "challenge;",
        ] {
            assert!(parse(bad, NOW).is_err(), "{bad:?}");
        }
        assert!(parse(&format!("block; scope=\"/{}\"", "a".repeat(MAX_SCOPE_LEN)), NOW).is_err(), "scope too long");
        assert!(parse(&format!("block; x=\"{}\"", "a".repeat(2_000)), NOW).is_err(), "header too long");
    }

    #[test]
    fn scope_is_a_prefix_in_either_reading_of_the_path() {
        let s = parse("challenge; scope=\"/checkout\"", NOW).unwrap();
        for inside in
            ["/checkout", "/checkout/pay", "/checkout?x=1", "//checkout", "/x/..%2Fcheckout", "/x/../checkout"]
        {
            assert!(s.covers(&PathForms::of(inside)), "{inside}");
        }
        for outside in ["/", "/check", "/cart"] {
            assert!(!s.covers(&PathForms::of(outside)), "{outside}");
        }
    }

    #[test]
    fn a_clearance_passes_a_challenge_only_if_issued_after_it_and_never_a_block() {
        let ch = parse("challenge; scope=\"/checkout\"; ttl=60", NOW).unwrap();
        let path = PathForms::of("/checkout/pay");
        assert_eq!(demand([&ch], &path, None, NOW + 1.0), Some(StepUpAction::Challenge));
        assert_eq!(demand([&ch], &path, Some(NOW - 1.0), NOW + 1.0), Some(StepUpAction::Challenge), "cleared before");
        assert_eq!(demand([&ch], &path, Some(NOW + 0.5), NOW + 1.0), None, "cleared after");
        assert_eq!(demand([&ch], &path, None, NOW + 60_000.0), None, "expired");
        assert_eq!(demand([&ch], &PathForms::of("/"), None, NOW + 1.0), None, "out of scope");
        let bl = parse("block; scope=\"/checkout/pay\"; ttl=60", NOW).unwrap();
        assert_eq!(demand([&ch, &bl], &path, Some(NOW + 0.5), NOW + 1.0), Some(StepUpAction::Block));
        assert_eq!(demand([&ch, &bl], &PathForms::of("/checkout"), None, NOW + 1.0), Some(StepUpAction::Challenge));
    }

    #[test]
    fn a_client_keeps_a_bounded_list() {
        let mut list = Vec::new();
        for i in 0..40 {
            let s = parse(&format!("challenge; scope=\"/p{}\"; ttl=60", i % 20), NOW + f64::from(i)).unwrap();
            add(&mut list, s, NOW + f64::from(i));
        }
        assert_eq!(list.len(), MAX_PER_CLIENT);
        assert!(list.iter().all(|s| s.at >= NOW + 24.0), "the newest kept, a repeat replaced");
        add(&mut list, parse("block; ttl=1", NOW + 100.0).unwrap(), NOW + 100.0);
        add(&mut list, parse("block; ttl=1", NOW + 61_000.0).unwrap(), NOW + 61_000.0);
        assert_eq!(list.len(), 1, "expired ones go");
    }
}
